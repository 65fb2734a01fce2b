//! Skipping the rules that cannot match this transaction, decided from literals.
//!
//! Why: on a benign request almost every CRS rule matches nothing, and each (rule, value)
//! pair cost about 1,000 instructions of collecting, cache lookups and bookkeeping around a
//! regex engine that rejects the value in under 200. But nearly every `@rx` pattern CRS writes
//! needs one of a few literals to match (`select`, `<script`, `/etc/`...), and `@pm` is
//! nothing but literals. So at compile time each eligible rule gets up to three sets of
//! literals such that any value it matches contains one literal of each set (`on[a-z]+=`
//! needs `on` and `=`), and the rules of a phase are grouped by transformation chain. When a
//! phase first reaches a rule of a group, the group's values are searched once
//! (Aho-Corasick) for the literals of all its rules; the rules whose literals do not all
//! occur in one of their values are then skipped whole. A rule that matches no value has no
//! effect, so skipping it is the same as evaluating it.
//!
//! Most values of a benign request hold none of the bytes a chain acts on (`%`, `&`, `\`,
//! whitespace...: [`Transformation::acts_on`]), so the chain would leave them as they are:
//! such a value is searched once, as it is, for the literals of every rule that reads its
//! variable (one set per variable, so a header is not searched for the thousands of phrases
//! only arguments are checked for), and that search serves every group of the phase.
//!
//! What keeps this exact:
//! - A rule is eligible only when its outcome is a function of request data alone: a
//!   non-negated `@rx` (on the linear engine, whose syntax `regex-syntax` reads), `@pm` or
//!   `@validateByteRange`/`@validateUrlEncoding`/`@validateUtf8Encoding` (which need a byte
//!   outside a set), no macros, and every target a collection fixed for the whole
//!   transaction ([`crate::compile::Coll::cacheable`]), not counted. A `multiMatch` rule's
//!   values are searched after every step of its chain, as it sees them.
//! - The values a group inspects are a superset of any member's: exclusions (`!ARGS:x`),
//!   regex key selectors and run-time `ctl:ruleRemoveTarget*` only ever narrow a rule's
//!   values, so they are ignored here and applied when a rule that may match runs.
//! - Literals are searched ASCII-case-insensitively, a superset of any case-sensitive
//!   search; the unit tests check on CRS's own patterns that every match holds one.
//! - Request data does not change within a phase (the body is parsed before phase 2 starts),
//!   so a group's verdicts hold for the rest of the phase.

use crate::compile::{Entry, Rule, Target, TargetSelector};
use crate::operator::{Op, Regexp};
use crate::transform::Transformation;

/// The rules of one phase that may be skipped, grouped by transformation chain.
#[derive(Debug, Default)]
pub struct PhaseFilter {
    /// Conditions: a rule's first is its slot (its `filter_slot`, its bit in the verdicts),
    /// its others (see [`Factors::all`]) follow it.
    pub(crate) slots: usize,
    pub(crate) groups: Vec<Group>,
    /// Each slot's group: groups are searched when one of their rules is first reached, so
    /// the groups of rules a paranoia level skips cost nothing.
    pub(crate) group_of: Vec<u32>,
    /// For each distinct variable the groups read (by [`Source::id`]), the literals of every
    /// rule that reads it, as an index into `source_literals`: a value is searched as it is
    /// once for all the groups whose chains leave it so (most values of a benign request:
    /// no `%`, `&`, `\\`...). Per variable rather than for the whole phase: a header is not
    /// searched for the thousands of phrases only arguments are checked for, and the smaller
    /// sets fit a DFA.
    pub(crate) literals_of_source: Vec<Option<u32>>,
    /// The distinct literal sets `literals_of_source` points into (variables read by the
    /// same rules share one).
    pub(crate) source_literals: Vec<Literals>,
}

/// What tells, value by value, that a rule that may match in a phase cannot match one of its
/// values: the rule runs when one value holds its literals, and needs not look at the others
/// (CRS's XSS rules read every cookie, argument and name; one of them holding `on` is no
/// reason to run a regex over the rest).
#[derive(Debug)]
pub struct ValueFilter {
    /// For each target the rule reads (its exclusions left out), in order: the variable
    /// ([`Source::id`]) whose summary lists that target's values in the order the target
    /// gives them; `None` for a key regex, which gives some of them.
    pub(crate) sources: Vec<Option<u32>>,
    /// The slots of the rule's conditions: a value that may match meets all of them.
    pub(crate) slots: std::ops::Range<u32>,
    /// The classes the rule's chain acts on ([`Group::acts_on`]): a value with none of them
    /// reaches the operator as it is, case aside, so its summary's hits are the operator's.
    pub(crate) acts_on: u32,
}

/// Eligible rules sharing a transformation chain.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) transformations: Vec<Transformation>,
    /// The chain's ids in the transformation cache (see [`Rule::transform_ids`]).
    pub(crate) transform_ids: Vec<u32>,
    /// The members are `multiMatch` rules: the operator sees the value after every step of
    /// the chain, so the search does too.
    pub(crate) multi_match: bool,
    /// The classes of the bytes the chain acts on (see [`Transformation::acts_on`] and
    /// [`byte_classes`]): a value with none of them is searched as it is. `None` when the
    /// chain may change any value.
    pub(crate) acts_on: Option<u32>,
    /// For each prefix of the chain (its first step, first two...), the classes it acts on
    /// as [`Group::acts_on`] counts them; `None` from the first step that may change any
    /// value. A value with none of a prefix's classes leaves it the same, case aside.
    pub(crate) prefix_acts_on: Vec<Option<u32>>,
    /// For each prefix, the classes it may change, case included ([`chain_changes`]): a
    /// value with none of them comes out of the prefix byte for byte as it went in.
    pub(crate) prefix_changes: Vec<Option<u32>>,
    /// Every member's literals.
    pub(crate) literals: Literals,
    /// The variables the members read, each with the slots of the rules that read it.
    pub(crate) sources: Vec<Source>,
}

#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) target: Target,
    /// The slots of the rules with one condition that read it.
    pub(crate) readers: Bits,
    /// The rules with several conditions that read it: slot, other conditions. Such a rule
    /// may match when one value meets all of them.
    pub(crate) combined: Vec<(u32, Vec<u32>)>,
    /// The words of the verdicts its group's slots lie in.
    pub(crate) words: std::ops::Range<usize>,
    /// The variable's number in the phase, the same in every group that reads it: what a
    /// transaction learns of a variable's values as they are serves all those groups.
    pub(crate) id: u32,
}

/// Each byte's class bit: one per byte some transformation acts on, high bytes together,
/// everything else none. A value's classes, OR-ed over its bytes, tell in one pass which
/// chains would leave it as it is.
pub(crate) static BYTE_CLASSES: [u32; 256] = byte_classes();

const fn byte_classes() -> [u32; 256] {
    const ACTED_ON: &[u8] = b"%+&\\\0 \t\n\x0b\x0c\r\"'^,;/.*<!-#0";
    let mut classes = [0u32; 256];
    let mut i = 0;
    while i < ACTED_ON.len() {
        classes[ACTED_ON[i] as usize] = 1 << i;
        i += 1;
    }
    let mut b = 0x80;
    while b < 256 {
        classes[b] = 1 << 31;
        b += 1;
    }
    // Letters by case: no transformation the prefilter weighs acts on them (its search
    // ignores case), but `lowercase` and `cmdLine` change upper-case ones.
    let mut b = 0;
    while b < 26 {
        classes[b'A' as usize + b] = UPPER_CASE;
        classes[b'a' as usize + b] = LOWER_CASE;
        b += 1;
    }
    classes
}

const UPPER_CASE: u32 = 1 << 24;
const LOWER_CASE: u32 = 1 << 25;

/// The classes of the bytes a chain of transformations may change, case included: a value
/// with none of them comes out of the chain as it went in. `None` when a step may change
/// any value (`base64Decode`, `length`...).
pub(crate) fn chain_changes(chain: &[Transformation]) -> Option<u32> {
    let mut classes = 0;
    for t in chain {
        classes |= classes_of(t.acts_on()?);
        classes |= match t {
            Transformation::Lowercase | Transformation::CmdLine => UPPER_CASE,
            Transformation::Uppercase => LOWER_CASE,
            _ => 0,
        };
    }
    Some(classes)
}

/// The classes of a value's bytes.
pub(crate) fn classes_of(value: &[u8]) -> u32 {
    value.iter().fold(0, |c, &b| c | BYTE_CLASSES[b as usize])
}

/// A fixed-size set of slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    pub(crate) fn new(len: usize) -> Bits {
        Bits(vec![0; len.div_ceil(64)])
    }

    /// Empties the set and sizes it for `len` slots, keeping its buffer.
    pub(crate) fn reset(&mut self, len: usize) {
        self.0.clear();
        self.0.resize(len.div_ceil(64), 0);
    }

    pub(crate) fn set(&mut self, slot: u32) {
        if let Some(w) = self.0.get_mut(slot as usize / 64) {
            *w |= 1 << (slot % 64);
        }
    }

    /// The words holding the set, 64 slots each: sets of one phase are this long.
    pub(crate) fn words(&self) -> &[u64] {
        &self.0
    }

    pub(crate) fn words_mut(&mut self) -> &mut [u64] {
        &mut self.0
    }

    /// How many words a set of `len` slots takes.
    pub(crate) fn words_for(len: usize) -> usize {
        len.div_ceil(64)
    }

    /// Adds the slots of `other` (words of a set as long) in the given words.
    pub(crate) fn union_in(&mut self, other: &[u64], words: std::ops::Range<usize>) {
        union_words(&mut self.0[words.clone()], &other[words]);
    }

    /// Empties the given words.
    pub(crate) fn clear_in(&mut self, words: std::ops::Range<usize>) {
        self.0[words].fill(0);
    }

    /// Adds the slots `source`'s readers may match given the conditions `hits` met in one
    /// of its values.
    pub(crate) fn add_met(&mut self, hits: &[u64], source: &Source) {
        self.add_single(hits, source);
        self.add_combined(hits, source);
    }

    /// The part of [`Bits::add_met`] for the rules with one condition: met in any of a
    /// variable's values is met, so the union of their hits serves for all of them.
    pub(crate) fn add_single(&mut self, hits: &[u64], source: &Source) {
        let words = source.words.clone();
        for ((w, x), y) in self.0[words.clone()]
            .iter_mut()
            .zip(&hits[words.clone()])
            .zip(&source.readers.0[words])
        {
            *w |= x & y;
        }
    }

    /// The part of [`Bits::add_met`] for the rules with several conditions, which one value
    /// must meet together.
    pub(crate) fn add_combined(&mut self, hits: &[u64], source: &Source) {
        for (slot, extras) in &source.combined {
            if has_in(hits, *slot) && extras.iter().all(|e| has_in(hits, *e)) {
                self.set(*slot);
            }
        }
    }

    /// Adds every slot of `source`'s readers, as if each condition were met.
    pub(crate) fn add_all(&mut self, source: &Source) {
        union_words(&mut self.0, &source.readers.0);
        for (slot, _) in &source.combined {
            self.set(*slot);
        }
    }

    pub(crate) fn has(&self, slot: u32) -> bool {
        has_in(&self.0, slot)
    }
}

/// Whether the set held in `words` has `slot`.
pub(crate) fn has_in(words: &[u64], slot: u32) -> bool {
    words
        .get(slot as usize / 64)
        .is_some_and(|w| w & (1 << (slot % 64)) != 0)
}

/// Adds the set held in `other` to the one in `words`.
pub(crate) fn union_words(words: &mut [u64], other: &[u64]) {
    for (w, x) in words.iter_mut().zip(other) {
        *w |= x;
    }
}

/// Sets of literals (lower-cased) such that every value the operator matches contains one
/// literal of each, the best set first; `None` when there is no such set or the rule is not
/// eligible.
pub(crate) fn required_literals(rule: &Rule) -> Option<Vec<Vec<Vec<u8>>>> {
    let operator = rule.operator.as_ref()?;
    if operator.negated {
        return None;
    }
    let sets = match &operator.op {
        Op::Rx(Regexp::Linear(re)) => regex_literals(re.as_str())?,
        Op::Pm(_, phrases) => vec![phrases.iter().map(|p| p.as_bytes().to_vec()).collect()],
        // Matches exactly when a byte outside the ranges occurs.
        Op::ByteRange(allowed) => vec![(0..=255u8)
            .filter(|&b| !allowed[b as usize])
            .map(|b| vec![b])
            .collect()],
        // A bad escape needs a `%`; bad UTF-8, a byte above ASCII.
        Op::ValidateUrlEncoding => vec![vec![b"%".to_vec()]],
        Op::ValidateUtf8Encoding => vec![(0x80..=0xffu8).map(|b| vec![b]).collect()],
        _ => return None,
    };
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        let mut literals: Vec<Vec<u8>> = set
            .into_iter()
            .map(|mut l| {
                l.make_ascii_lowercase();
                l
            })
            .collect();
        if literals.is_empty() || literals.iter().any(Vec::is_empty) {
            return None;
        }
        literals.sort_unstable();
        literals.dedup();
        out.push(minimal(literals));
    }
    Some(out)
}

/// Sets of literals such that every value the pattern matches holds (ASCII case aside) one
/// literal of each set, the best set first, as the linear engine compiles the pattern
/// (bytes, no Unicode, `.` matching newlines).
///
/// Why not `regex-syntax`'s literal extractor alone: it finds what a match starts or ends
/// with, and CRS patterns often start with a class (`[\s\S]`, `[^a-z]`) and end with one,
/// with the telling words in the middle. [`factors`] finds those.
fn regex_literals(pattern: &str) -> Option<Vec<Vec<Vec<u8>>>> {
    let hir = crate::operator::linear_hir(pattern)?;
    let f = factors(&hir);
    let mut all = f.all;
    all.extend(better(f.needs, f.exact));
    let conjuncts = best_sets(all, MAX_CONJUNCTS);
    (!conjuncts.is_empty()).then_some(conjuncts)
}

/// The most literals a set holds before it is given up (a class of a few bytes repeated
/// multiplies quickly).
const MAX_SET: usize = 256;

/// What a part of a pattern says about the values it matches: `exact`, a superset of the
/// strings it matches (lower-cased); `needs`, literals one of which each of them contains;
/// `all`, sets of which each holds as `needs` does, all at once (the parts of a
/// concatenation: `on[a-z]+=` needs `on` and `=`).
#[derive(Default)]
struct Factors {
    exact: Option<Vec<Vec<u8>>>,
    needs: Option<Vec<Vec<u8>>>,
    all: Vec<Vec<Vec<u8>>>,
}

/// How many sets a rule's literals may come in, all required (see [`Factors::all`]).
const MAX_CONJUNCTS: usize = 3;

/// A set's rank as a filter: a longer shortest literal first (fewer chance hits), then
/// fewer literals; `None` for a set with the empty string, which says nothing.
fn score(set: &[Vec<u8>]) -> Option<(usize, usize)> {
    let shortest = set.iter().map(Vec::len).min()?;
    (shortest > 0).then_some((shortest.min(8), usize::MAX - set.len()))
}

/// The `n` best sets of `sets`, leaving out those another chosen one implies (every literal
/// of `select` holds one of `{c}`: requiring `c` as well says nothing more).
fn best_sets(mut sets: Vec<Vec<Vec<u8>>>, n: usize) -> Vec<Vec<Vec<u8>>> {
    sets.retain(|s| score(s).is_some());
    sets.sort_by(|a, b| score(b).cmp(&score(a)).then_with(|| a.cmp(b)));
    let contains = |l: &[u8], k: &[u8]| l.windows(k.len()).any(|w| w == k);
    let implies = |t: &[Vec<u8>], s: &[Vec<u8>]| t.iter().all(|l| s.iter().any(|k| contains(l, k)));
    let mut chosen: Vec<Vec<Vec<u8>>> = Vec::new();
    for set in sets {
        if chosen.len() == n {
            break;
        }
        if !chosen.iter().any(|c| implies(c, &set)) {
            chosen.push(set);
        }
    }
    chosen
}

impl Factors {
    /// The better of `needs` and `exact`: sets with the empty string say nothing.
    fn best(self) -> Option<Vec<Vec<u8>>> {
        better(self.needs, self.exact)
    }
}

/// The better of two candidate sets (see [`score`]).
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let score = |s: &Option<Vec<Vec<u8>>>| s.as_deref().and_then(score);
    match (score(&a), score(&b)) {
        (Some(x), Some(y)) if y > x => b,
        (Some(_), _) => a,
        (None, Some(_)) => b,
        (None, None) => None,
    }
}

/// Drops the literals that contain another one: a value holding the longer holds the shorter,
/// so the shorter alone says as much (and the search reports fewer matches).
fn minimal(mut set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    // Quadratic: long phrase lists (`@pmFromFile`) are kept as they are.
    if set.len() > 512 {
        return set;
    }
    set.sort_by_key(Vec::len);
    let mut kept: Vec<Vec<u8>> = Vec::with_capacity(set.len());
    for l in set {
        let redundant = kept
            .iter()
            .any(|k| l.windows(k.len()).any(|w| w == k.as_slice()));
        if !redundant {
            kept.push(l);
        }
    }
    kept.sort_unstable();
    kept
}

fn normalized(mut set: Vec<Vec<u8>>) -> Option<Vec<Vec<u8>>> {
    for l in &mut set {
        l.make_ascii_lowercase();
    }
    set.sort_unstable();
    set.dedup();
    (set.len() <= MAX_SET).then_some(set)
}

/// Every concatenation of a string of `a` with one of `b`, if there are not too many.
fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len().saturating_mul(b.len()) > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut l = x.clone();
            l.extend_from_slice(y);
            out.push(l);
        }
    }
    normalized(out)
}

fn factors(hir: &regex_syntax::hir::Hir) -> Factors {
    use regex_syntax::hir::{Class, HirKind};
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Factors {
            exact: Some(vec![Vec::new()]),
            ..Factors::default()
        },
        HirKind::Literal(l) => {
            let exact = normalized(vec![l.0.to_vec()]);
            Factors {
                all: exact.iter().cloned().collect(),
                exact,
                needs: None,
            }
        }
        HirKind::Class(class) => {
            let mut bytes = Vec::new();
            let mut count = 0usize;
            match class {
                Class::Bytes(c) => {
                    for r in c.iter() {
                        count += usize::from(r.end() - r.start()) + 1;
                        if count > 2 * MAX_SET {
                            break;
                        }
                        bytes.extend((r.start()..=r.end()).map(|b| vec![b]));
                    }
                }
                Class::Unicode(c) => {
                    for r in c.iter() {
                        let (s, e) = (u32::from(r.start()), u32::from(r.end()));
                        count += (e - s) as usize + 1;
                        if e > 0x7f || count > 2 * MAX_SET {
                            count = usize::MAX;
                            break;
                        }
                        bytes.extend((s..=e).map(|b| vec![b as u8]));
                    }
                }
            }
            // A class of more than a handful of bytes is as good as any byte.
            let exact = if count <= 16 { normalized(bytes) } else { None };
            Factors {
                all: exact.iter().cloned().collect(),
                exact,
                needs: None,
            }
        }
        HirKind::Capture(c) => factors(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return Factors::default();
            }
            let sub = factors(&r.sub);
            // Every repetition holds what one holds.
            let all = sub.all.clone();
            let exact = match (r.max, &sub.exact) {
                (Some(max), Some(e)) if max == r.min && max <= 4 => {
                    let mut acc = vec![Vec::new()];
                    for _ in 0..max {
                        match product(&acc, e) {
                            Some(p) => acc = p,
                            None => {
                                return Factors {
                                    exact: None,
                                    needs: sub.best(),
                                    all,
                                }
                            }
                        }
                    }
                    Some(acc)
                }
                _ => None,
            };
            Factors {
                exact,
                needs: sub.best(),
                all,
            }
        }
        HirKind::Concat(children) => {
            let mut needs = None;
            let mut all = Vec::new();
            // The product of the run of exact children since the last inexact one.
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            let mut whole: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut previous: Vec<Vec<u8>> = Vec::new();
            for child in children {
                let f = factors(child);
                match &f.exact {
                    Some(e) => {
                        run = match &run {
                            Some(r) => product(r, e),
                            None => None,
                        };
                        if run.is_none() {
                            // Too many: start a new run with this child.
                            all.push(previous.clone());
                            run = Some(e.clone());
                        }
                        whole = whole.as_ref().and_then(|w| product(w, e));
                        needs = better(needs, run.clone());
                    }
                    None => {
                        all_exact = false;
                        all.extend(run.replace(vec![Vec::new()]));
                    }
                }
                previous = run.clone().unwrap_or_default();
                all.extend(f.all.iter().cloned());
                needs = better(needs, f.best());
            }
            all.extend(run);
            all.extend(needs.iter().cloned());
            Factors {
                exact: if all_exact { whole } else { None },
                needs,
                all: best_sets(all, 2 * MAX_CONJUNCTS),
            }
        }
        HirKind::Alternation(children) => {
            let mut exact = Some(Vec::new());
            let mut needs = Some(Vec::new());
            for child in children {
                let f = factors(child);
                exact = match (exact, &f.exact) {
                    (Some(mut acc), Some(e)) => {
                        acc.extend(e.iter().cloned());
                        normalized(acc)
                    }
                    _ => None,
                };
                needs = match (needs, f.best()) {
                    (Some(mut acc), Some(n)) => {
                        acc.extend(n);
                        normalized(acc)
                    }
                    _ => None,
                };
            }
            Factors {
                all: better(needs.clone(), exact.clone()).into_iter().collect(),
                exact,
                needs,
            }
        }
    }
}

/// Whether the rule reads only request data, so its outcome is fixed for a phase.
fn reads_request_data(rule: &Rule) -> bool {
    let read: Vec<&Target> = rule.targets.iter().filter(|t| !t.exclude).collect();
    !read.is_empty() && read.iter().all(|t| !t.count && t.cacheable)
}

/// The variable a group collects for `target`: the whole collection, except named keys and
/// XPath (which picks XML's text or its attributes).
fn source_of(target: &Target) -> Target {
    let selector = match &target.selector {
        Some(TargetSelector::Key(k)) => Some(TargetSelector::Key(k.clone())),
        Some(TargetSelector::XPath(x)) => Some(TargetSelector::XPath(x.clone())),
        Some(TargetSelector::Regex(_)) | None => None,
    };
    Target {
        collection: target.collection,
        kind: target.kind,
        selector,
        count: false,
        exclude: false,
        cacheable: target.cacheable,
    }
}

fn same_source(a: &Target, b: &Target) -> bool {
    let selector = |t: &Target| match &t.selector {
        Some(TargetSelector::Key(k)) => Some(("key", k.clone())),
        Some(TargetSelector::XPath(x)) => Some(("xpath", x.clone())),
        _ => None,
    };
    a.collection == b.collection && a.kind == b.kind && selector(a) == selector(b)
}

struct Member {
    /// The rule's place in its phase.
    entry: usize,
    /// Each condition's slot and literals; the first one's slot is the rule's. Never empty.
    conditions: Vec<(u32, Vec<Vec<u8>>)>,
    sources: Vec<Target>,
}

impl Member {
    fn slot(&self) -> u32 {
        self.conditions.first().map_or(0, |(s, _)| *s)
    }

    /// Slots of the conditions after the first.
    fn extras(&self) -> Vec<u32> {
        self.conditions.iter().skip(1).map(|(s, _)| *s).collect()
    }
}

/// A group being gathered.
struct Pending {
    transformations: Vec<Transformation>,
    multi_match: bool,
    transform_ids: Vec<u32>,
    members: Vec<Member>,
}

/// Gives each eligible rule of a phase its slot and builds the phase's groups.
pub(crate) fn build(entries: &mut [Entry]) -> PhaseFilter {
    // By chain and multiMatch, in order of first appearance.
    let mut by_chain: Vec<Pending> = Vec::new();
    for (at, entry) in entries.iter_mut().enumerate() {
        let Entry::Rule(rule) = entry else { continue };
        if !reads_request_data(rule) {
            continue;
        }
        let Some(sets) = required_literals(rule) else {
            continue;
        };
        let sources: Vec<Target> = rule
            .targets
            .iter()
            .filter(|t| !t.exclude)
            .map(source_of)
            .collect();
        let member = Member {
            entry: at,
            conditions: sets.into_iter().map(|set| (0, set)).collect(),
            sources,
        };
        match by_chain.iter_mut().find(|p| {
            p.transformations == rule.transformations && p.multi_match == rule.multi_match
        }) {
            Some(p) => p.members.push(member),
            None => by_chain.push(Pending {
                transformations: rule.transformations.clone(),
                multi_match: rule.multi_match,
                transform_ids: rule.transform_ids.clone(),
                members: vec![member],
            }),
        }
    }
    // Slots group by group, so a group's work on the verdicts touches its own words only.
    let mut slots = 0u32;
    for pending in &mut by_chain {
        for m in &mut pending.members {
            for (slot, _) in &mut m.conditions {
                *slot = slots;
                slots += 1;
            }
        }
    }
    let conditions: Vec<(u32, Vec<Vec<u8>>)> = by_chain
        .iter()
        .flat_map(|p| p.members.iter().flat_map(|m| m.conditions.iter().cloned()))
        .collect();
    let mut groups = Vec::new();
    let mut group_of = vec![0; slots as usize];
    // The filtered rules: their place, their conditions' slots, what their chain acts on.
    let mut filtered = Vec::new();
    for mut pending in by_chain {
        let members = std::mem::take(&mut pending.members);
        // Without its group a rule is simply not filtered.
        let Some(g) = group(pending, &members, slots as usize) else {
            continue;
        };
        for m in &members {
            group_of[m.slot() as usize] = groups.len() as u32;
            if let Some(Entry::Rule(rule)) = entries.get_mut(m.entry) {
                rule.filter_slot = Some(m.slot());
                let conditions = m.slot()..m.slot() + m.conditions.len() as u32;
                filtered.push((m.entry, conditions, g.acts_on));
            }
        }
        groups.push(g)
    }
    let mut distinct: Vec<Target> = Vec::new();
    for source in groups.iter_mut().flat_map(|g| g.sources.iter_mut()) {
        let id = match distinct.iter().position(|t| same_source(t, &source.target)) {
            Some(id) => id,
            None => {
                distinct.push(source.target.clone());
                distinct.len() - 1
            }
        };
        source.id = id as u32;
    }
    for (entry, slots, acts_on) in filtered {
        let (Some(Entry::Rule(rule)), Some(acts_on)) = (entries.get_mut(entry), acts_on) else {
            continue;
        };
        let sources = rule
            .targets
            .iter()
            .filter(|t| !t.exclude)
            .map(|t| match t.selector {
                Some(TargetSelector::Regex(_)) => None,
                _ => distinct
                    .iter()
                    .position(|d| same_source(d, t))
                    .map(|id| id as u32),
            })
            .collect();
        rule.value_filter = Some(Box::new(ValueFilter {
            sources,
            slots,
            acts_on,
        }));
    }
    // Each variable's readers: the slots of their conditions, all of them (a rule with
    // several conditions needs each one's verdict).
    let mut readers: Vec<std::collections::BTreeSet<u32>> =
        vec![Default::default(); distinct.len()];
    for source in groups.iter().flat_map(|g| g.sources.iter()) {
        let set = &mut readers[source.id as usize];
        for (w, word) in source.readers.0.iter().enumerate() {
            let mut word = *word;
            while word != 0 {
                set.insert(w as u32 * 64 + word.trailing_zeros());
                word &= word - 1;
            }
        }
        for (slot, extras) in &source.combined {
            set.insert(*slot);
            set.extend(extras.iter().copied());
        }
    }
    let mut source_literals: Vec<Literals> = Vec::new();
    let mut sets: Vec<&std::collections::BTreeSet<u32>> = Vec::new();
    let literals_of_source = readers
        .iter()
        .map(|set| {
            if let Some(at) = sets.iter().position(|s| *s == set) {
                return Some(at as u32);
            }
            let literals = Literals::new(
                conditions
                    .iter()
                    .filter(|(slot, _)| set.contains(slot))
                    .map(|(slot, l)| (*slot, l.as_slice())),
                slots as usize,
                SOURCE_DFA_LITERALS,
            )?;
            sets.push(set);
            source_literals.push(literals);
            Some(source_literals.len() as u32 - 1)
        })
        .collect();
    PhaseFilter {
        slots: slots as usize,
        groups,
        group_of,
        literals_of_source,
        source_literals,
    }
}

/// The most literals a group's search runs as a DFA (more: a contiguous NFA).
const GROUP_DFA_LITERALS: usize = 300;
/// The same for a variable's literals, searched in most of a request's values.
const SOURCE_DFA_LITERALS: usize = 600;

/// Literals of several rules, searched together: which rules have a literal in a value.
#[derive(Debug)]
pub(crate) struct Literals {
    /// Literals of two bytes or more, ASCII case aside.
    longer: Automaton,
    /// For each of `longer`, the slots of the rules that need it.
    owners: Vec<Vec<u32>>,
    /// One-byte literals (lower-cased) and the slots of the rules that need each: found from
    /// the set of bytes a value holds rather than at each occurrence (a User-Agent has
    /// dozens of spaces, dots and slashes).
    bytes: Vec<(u8, Bits)>,
    /// Each byte's entry in `bytes` (`u16::MAX`: none), both cases of a letter alike.
    byte_index: Box<[u16; 256]>,
}

impl Literals {
    fn new<'a>(
        members: impl Iterator<Item = (u32, &'a [Vec<u8>])>,
        slots: usize,
        dfa_up_to: usize,
    ) -> Option<Literals> {
        let mut longer: Vec<&[u8]> = Vec::new();
        let mut owners: Vec<Vec<u32>> = Vec::new();
        let mut index: std::collections::HashMap<&[u8], usize> = Default::default();
        let mut bytes: Vec<(u8, Bits)> = Vec::new();
        for (slot, literals) in members {
            for l in literals {
                if let [b] = l.as_slice() {
                    let b = b.to_ascii_lowercase();
                    match bytes.iter_mut().find(|(x, _)| *x == b) {
                        Some((_, s)) => s.set(slot),
                        None => {
                            let mut s = Bits::new(slots);
                            s.set(slot);
                            bytes.push((b, s));
                        }
                    }
                    continue;
                }
                let i = *index.entry(l.as_slice()).or_insert_with(|| {
                    longer.push(l);
                    owners.push(Vec::new());
                    longer.len() - 1
                });
                owners[i].push(slot);
            }
        }
        // A DFA is the fastest search and grows with the literals: long phrase lists
        // (`@pmFromFile`) would cost tens of MB per plan for a few percent.
        let longer = if longer.len() <= dfa_up_to {
            Automaton::Dfa(
                aho_corasick::dfa::Builder::new()
                    .match_kind(aho_corasick::MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .prefilter(false)
                    .build(&longer)
                    .ok()?,
            )
        } else {
            Automaton::Nfa(
                aho_corasick::nfa::contiguous::Builder::new()
                    .match_kind(aho_corasick::MatchKind::Standard)
                    .ascii_case_insensitive(true)
                    .prefilter(false)
                    .build(&longer)
                    .ok()?,
            )
        };
        let mut byte_index = Box::new([u16::MAX; 256]);
        for (i, (b, _)) in bytes.iter().enumerate() {
            byte_index[usize::from(*b)] = i as u16;
            byte_index[usize::from(b.to_ascii_uppercase())] = i as u16;
        }
        Some(Literals {
            longer,
            owners,
            bytes,
            byte_index,
        })
    }

    /// Adds to `hits` (the words of a set of the phase's slots) the slots of the rules with a
    /// literal in `value`.
    pub(crate) fn search(&self, value: &[u8], hits: &mut [u64]) {
        if !self.bytes.is_empty() {
            let mut present = [0u64; 4];
            for &b in value {
                present[usize::from(b >> 6)] |= 1 << (b & 63);
            }
            for (w, mut word) in present.into_iter().enumerate() {
                while word != 0 {
                    let b = w * 64 + word.trailing_zeros() as usize;
                    word &= word - 1;
                    if let Some((_, slots)) = self.bytes.get(usize::from(self.byte_index[b])) {
                        union_words(hits, &slots.0);
                    }
                }
            }
        }
        let mut found = |pattern: usize| {
            for &slot in self.owners.get(pattern).map_or(&[][..], Vec::as_slice) {
                if let Some(w) = hits.get_mut(slot as usize / 64) {
                    *w |= 1 << (slot % 64);
                }
            }
        };
        match &self.longer {
            Automaton::Dfa(dfa) => each_match(dfa, value, &mut found),
            Automaton::Nfa(nfa) => each_match(nfa, value, &mut found),
        }
    }
}

/// An Aho-Corasick automaton over a set's literals, walked directly (see [`each_match`]).
#[derive(Debug)]
enum Automaton {
    Dfa(aho_corasick::dfa::DFA),
    Nfa(aho_corasick::nfa::contiguous::NFA),
}

/// Calls `found` with every literal that ends at each byte of `haystack`: what an
/// overlapping search reports, without its iterator's bookkeeping between matches. The
/// values searched are short and most bytes match nothing, so the walk is most of the cost:
/// here it is a table step and a comparison per byte.
fn each_match<A: aho_corasick::automaton::Automaton>(
    automaton: &A,
    haystack: &[u8],
    found: &mut impl FnMut(usize),
) {
    use aho_corasick::Anchored;
    let Ok(mut state) = automaton.start_state(Anchored::No) else {
        return;
    };
    for &byte in haystack {
        state = automaton.next_state(Anchored::No, state, byte);
        if automaton.is_special(state) {
            if automaton.is_dead(state) {
                return;
            }
            if automaton.is_match(state) {
                for i in 0..automaton.match_len(state) {
                    found(automaton.match_pattern(state, i).as_usize());
                }
            }
        }
    }
}

fn group(pending: Pending, members: &[Member], slots: usize) -> Option<Group> {
    let Pending {
        transformations,
        multi_match,
        transform_ids,
        ..
    } = pending;
    let first = members.iter().map(Member::slot).min()? as usize;
    let last = members
        .iter()
        .flat_map(|m| m.conditions.iter().map(|(s, _)| *s))
        .max()? as usize;
    let words = first / 64..last / 64 + 1;
    let mut sources: Vec<Source> = Vec::new();
    for m in members {
        for t in &m.sources {
            let at = match sources.iter().position(|s| same_source(&s.target, t)) {
                Some(at) => at,
                None => {
                    sources.push(Source {
                        target: t.clone(),
                        readers: Bits::new(slots),
                        combined: Vec::new(),
                        words: words.clone(),
                        id: 0,
                    });
                    sources.len() - 1
                }
            };
            let (slot, extras) = (m.slot(), m.extras());
            if extras.is_empty() {
                sources[at].readers.set(slot);
            } else if !sources[at].combined.iter().any(|(s, _)| *s == slot) {
                sources[at].combined.push((slot, extras));
            }
        }
    }
    let literals = Literals::new(
        members
            .iter()
            .flat_map(|m| m.conditions.iter().map(|(s, l)| (*s, l.as_slice()))),
        slots,
        GROUP_DFA_LITERALS,
    )?;
    debug_assert!(transformations.iter().all(|t| t
        .acts_on()
        .is_none_or(|bytes| bytes.iter().all(|&b| BYTE_CLASSES[b as usize] != 0))));
    let mut prefix = Some(0u32);
    let prefix_acts_on = transformations
        .iter()
        .map(|t| {
            prefix = prefix.and_then(|p| Some(p | classes_of(t.acts_on()?)));
            prefix
        })
        .collect::<Vec<_>>();
    let prefix_changes = (1..=transformations.len())
        .map(|n| chain_changes(&transformations[..n]))
        .collect();
    Some(Group {
        multi_match,
        // The whole chain's: its longest prefix's (an empty chain acts on nothing).
        acts_on: prefix_acts_on.last().copied().unwrap_or(Some(0)),
        prefix_acts_on,
        prefix_changes,
        transformations,
        transform_ids,
        literals,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pattern's conjuncts, each a set of literals.
    fn lits(p: &str) -> Option<Vec<Vec<String>>> {
        regex_literals(p).map(|sets| {
            sets.into_iter()
                .map(|set| {
                    set.into_iter()
                        .map(|l| String::from_utf8_lossy(&l).into_owned())
                        .collect()
                })
                .collect()
        })
    }

    fn one(set: &[&str]) -> Option<Vec<Vec<String>>> {
        Some(vec![set.iter().map(|s| s.to_string()).collect()])
    }

    #[test]
    fn literals_are_necessary_or_absent() {
        // Every word a match must contain, in lower case, the longest first; then the rest
        // (here a space of some kind).
        let space: Vec<String> = ["\t", "\n", "\x0b", "\x0c", "\r", " "]
            .map(String::from)
            .to_vec();
        assert_eq!(
            lits("(?i)union\\s+select"),
            Some(vec![vec!["select".into()], vec!["union".into()], space])
        );
        // Words inside: every branch of an alternation gives one.
        assert_eq!(
            lits("[\\s\\S](?:ON(?:load|error)|xlink:href)\\s*="),
            Some(vec![
                vec!["onerror".into(), "onload".into(), "xlink:href".into()],
                vec!["=".into()]
            ])
        );
        // Case-insensitive pairs and small classes multiply out.
        assert_eq!(lits("(?i)\\.\\.[/\\\\]"), one(&["../", "..\\"]));
        // Anything may match: no literal is required.
        assert_eq!(lits("^.*$"), None);
        assert_eq!(lits("[a-z]+"), None);
        assert_eq!(lits("a?"), None);
        assert_eq!(lits("abc|[a-z]+"), None);
        // A suffix is required when no prefix is.
        assert_eq!(lits("[a-z]+\\.php"), one(&[".php"]));
    }

    #[test]
    fn every_crs_match_contains_a_literal_of_each_set() {
        // The property the prefilter rests on, checked on CRS's own patterns and attacks.
        let Ok(plan) = crate::regression::load_crs(
            "SecRuleEngine On\n",
            std::path::Path::new("/etc/modsecurity/crs/crs-setup.conf"),
            "",
            std::path::Path::new("/usr/share/modsecurity-crs/rules"),
        ) else {
            eprintln!("skipped: Debian's modsecurity-crs is not installed");
            return;
        };
        let samples: &[&[u8]] = &[
            b"1' UNION SELECT password FROM users--",
            b"<script>alert(1)</script>",
            b"<img src=x onerror=alert(1)>",
            b"../../../../etc/passwd",
            b";cat /etc/passwd",
            b"${jndi:ldap://x}",
            b"() { :; }; /bin/bash -c id",
            b"javascript:alert(document.cookie)",
            b"1 or 1=1",
            b"<?php system($_GET['c']); ?>",
            b"select * from information_schema.tables",
            b"Mozilla/5.0 (compatible; Nmap Scripting Engine)",
        ];
        let mut checked = 0;
        for entries in &plan.phases {
            for entry in entries {
                let Entry::Rule(rule) = entry else { continue };
                let Some(sets) = required_literals(rule) else {
                    continue;
                };
                let Some(op) = &rule.operator else { continue };
                for s in samples {
                    if op.run(s, false, &crate::macros::NoMacros).is_some() {
                        let lower = s.to_ascii_lowercase();
                        let holds = |set: &Vec<Vec<u8>>| {
                            set.iter()
                                .any(|l| lower.windows(l.len()).any(|w| w == l.as_slice()))
                        };
                        assert!(
                            sets.iter().all(holds),
                            "rule {} matches {:?} but the prefilter would skip it",
                            rule.id,
                            String::from_utf8_lossy(s)
                        );
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 20, "only {checked} matches checked");
    }
}
