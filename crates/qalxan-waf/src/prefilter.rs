//! Skipping the rules that cannot match this transaction, decided from literals.
//!
//! Why: on a benign request almost every CRS rule matches nothing, and each (rule, value)
//! pair cost about 1,000 instructions of collecting, cache lookups and bookkeeping around a
//! regex engine that rejects the value in under 200. But nearly every `@rx` pattern CRS writes
//! needs one of a few literals to match (`select`, `<script`, `/etc/`...), and `@pm` is
//! nothing but literals. So at compile time each eligible rule gets the literals one of which
//! any value it matches contains ([`required_literals`]), and the rules of a phase are grouped
//! by transformation chain. When a phase first reaches a rule of a group, the group's values
//! are searched once (Aho-Corasick) for the literals of all its rules; the rules whose
//! literals occur in none of their values are then skipped whole. A rule that matches no
//! value has no effect, so skipping it is the same as evaluating it.
//!
//! Most values of a benign request hold none of the bytes a chain acts on (`%`, `&`, `\`,
//! whitespace...: [`Transformation::acts_on`]), so the chain would leave them as they are:
//! such a value is searched once, as it is, for every literal of the phase, and that search
//! serves every group.
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
use aho_corasick::AhoCorasick;

/// The rules of one phase that may be skipped, grouped by transformation chain.
#[derive(Debug, Default)]
pub struct PhaseFilter {
    /// Eligible rules: each has a slot (its `filter_slot`), a bit in the verdicts.
    pub(crate) slots: usize,
    pub(crate) groups: Vec<Group>,
    /// Each slot's group: groups are searched when one of their rules is first reached, so
    /// the groups of rules a paranoia level skips cost nothing.
    pub(crate) group_of: Vec<u32>,
    /// Every literal of the phase, for searching a value once for all the groups whose
    /// chains leave it as it is (most values of a benign request: no `%`, `&`, `\\`...).
    pub(crate) all_literals: Option<Literals>,
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
    /// Every member's literals.
    pub(crate) literals: Literals,
    /// The variables the members read, each with the slots of the rules that read it.
    pub(crate) sources: Vec<Source>,
}

#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) target: Target,
    pub(crate) readers: Bits,
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
    classes
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

    pub(crate) fn union(&mut self, other: &Bits) {
        for (w, x) in self.0.iter_mut().zip(&other.0) {
            *w |= x;
        }
    }

    /// Adds the slots in both `a` and `b`.
    pub(crate) fn union_of_both(&mut self, a: &Bits, b: &Bits) {
        for (w, (x, y)) in self.0.iter_mut().zip(a.0.iter().zip(&b.0)) {
            *w |= x & y;
        }
    }

    pub(crate) fn has(&self, slot: u32) -> bool {
        self.0
            .get(slot as usize / 64)
            .is_some_and(|w| w & (1 << (slot % 64)) != 0)
    }
}

/// The literals one of which every value the operator matches contains (lower-cased);
/// `None` when there is no such set or the rule is not eligible.
pub(crate) fn required_literals(rule: &Rule) -> Option<Vec<Vec<u8>>> {
    let operator = rule.operator.as_ref()?;
    if operator.negated {
        return None;
    }
    let literals = match &operator.op {
        Op::Rx(Regexp::Linear(re)) => regex_literals(re.as_str())?,
        Op::Pm(_, phrases) => phrases.iter().map(|p| p.as_bytes().to_vec()).collect(),
        // Matches exactly when a byte outside the ranges occurs.
        Op::ByteRange(allowed) => (0..=255u8)
            .filter(|&b| !allowed[b as usize])
            .map(|b| vec![b])
            .collect(),
        // A bad escape needs a `%`; bad UTF-8, a byte above ASCII.
        Op::ValidateUrlEncoding => vec![b"%".to_vec()],
        Op::ValidateUtf8Encoding => (0x80..=0xffu8).map(|b| vec![b]).collect(),
        _ => return None,
    };
    let mut literals: Vec<Vec<u8>> = literals
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
    Some(minimal(literals))
}

/// Literals, one of which occurs (ASCII case aside) in every value the pattern matches, as
/// the linear engine compiles it (bytes, no Unicode, `.` matching newlines).
///
/// Why not `regex-syntax`'s literal extractor alone: it finds what a match starts or ends
/// with, and CRS patterns often start with a class (`[\s\S]`, `[^a-z]`) and end with one,
/// with the telling words in the middle. [`factors`] finds those.
fn regex_literals(pattern: &str) -> Option<Vec<Vec<u8>>> {
    let hir = regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
        .ok()?;
    factors(&hir).best()
}

/// The most literals a set holds before it is given up (a class of a few bytes repeated
/// multiplies quickly).
const MAX_SET: usize = 256;

/// What a part of a pattern says about the values it matches: `exact`, a superset of the
/// strings it matches (lower-cased); `needs`, literals one of which each of them contains.
#[derive(Default)]
struct Factors {
    exact: Option<Vec<Vec<u8>>>,
    needs: Option<Vec<Vec<u8>>>,
}

impl Factors {
    /// The better of `needs` and `exact`: sets with the empty string say nothing.
    fn best(self) -> Option<Vec<Vec<u8>>> {
        better(self.needs, self.exact)
    }
}

/// Orders candidate sets: a longer shortest literal first (fewer chance hits), then fewer
/// literals. Sets holding the empty string are no candidates.
fn better(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    let score = |s: &Option<Vec<Vec<u8>>>| {
        s.as_ref().and_then(|s| {
            let shortest = s.iter().map(Vec::len).min()?;
            (shortest > 0).then_some((shortest.min(8), usize::MAX - s.len()))
        })
    };
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
            needs: None,
        },
        HirKind::Literal(l) => Factors {
            exact: normalized(vec![l.0.to_vec()]),
            needs: None,
        },
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
            Factors { exact, needs: None }
        }
        HirKind::Capture(c) => factors(&c.sub),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return Factors::default();
            }
            let sub = factors(&r.sub);
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
            }
        }
        HirKind::Concat(children) => {
            let mut needs = None;
            // The product of the run of exact children since the last inexact one.
            let mut run: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
            let mut all_exact = true;
            let mut whole: Option<Vec<Vec<u8>>> = Some(vec![Vec::new()]);
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
                            run = Some(e.clone());
                        }
                        whole = whole.as_ref().and_then(|w| product(w, e));
                        needs = better(needs, run.clone());
                    }
                    None => {
                        all_exact = false;
                        run = Some(vec![Vec::new()]);
                    }
                }
                needs = better(needs, f.best());
            }
            Factors {
                exact: if all_exact { whole } else { None },
                needs,
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
            Factors { exact, needs }
        }
    }
}

/// Whether the rule reads only request data, so its outcome is fixed for a phase.
fn reads_request_data(rule: &Rule) -> bool {
    let read: Vec<&Target> = rule.targets.iter().filter(|t| !t.exclude).collect();
    !read.is_empty()
        && read
            .iter()
            .all(|t| !t.count && t.kind.cacheable(t.collection))
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
    slot: u32,
    literals: Vec<Vec<u8>>,
    sources: Vec<Target>,
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
    let mut slots = 0u32;
    for entry in entries.iter_mut() {
        let Entry::Rule(rule) = entry else { continue };
        if !reads_request_data(rule) {
            continue;
        }
        let Some(literals) = required_literals(rule) else {
            continue;
        };
        let sources: Vec<Target> = rule
            .targets
            .iter()
            .filter(|t| !t.exclude)
            .map(source_of)
            .collect();
        rule.filter_slot = Some(slots);
        let member = Member {
            slot: slots,
            literals,
            sources,
        };
        slots += 1;
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
    let members_all: Vec<(u32, Vec<Vec<u8>>)> = by_chain
        .iter()
        .flat_map(|p| p.members.iter().map(|m| (m.slot, m.literals.clone())))
        .collect();
    let mut groups = Vec::new();
    let mut group_of = vec![0; slots as usize];
    for mut pending in by_chain {
        let members = std::mem::take(&mut pending.members);
        match group(pending, &members, slots as usize) {
            Some(g) => {
                for m in &members {
                    group_of[m.slot as usize] = groups.len() as u32;
                }
                groups.push(g)
            }
            // Cannot happen with the literals above; if it did, the members' slots would
            // never be set and the rules never run, so take them out of the filter instead.
            None => {
                for entry in entries.iter_mut() {
                    if let Entry::Rule(rule) = entry {
                        if members.iter().any(|m| Some(m.slot) == rule.filter_slot) {
                            rule.filter_slot = None;
                        }
                    }
                }
            }
        }
    }
    let all_literals = Literals::new(
        members_all.iter().map(|(slot, l)| (*slot, l.as_slice())),
        slots as usize,
    );
    PhaseFilter {
        slots: slots as usize,
        groups,
        group_of,
        all_literals,
    }
}

/// Literals of several rules, searched together: which rules have a literal in a value.
#[derive(Debug)]
pub(crate) struct Literals {
    /// Literals of two bytes or more, ASCII case aside.
    longer: AhoCorasick,
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
        let kind = (longer.len() <= 300).then_some(aho_corasick::AhoCorasickKind::DFA);
        let longer = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .kind(kind)
            .build(&longer)
            .ok()?;
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

    /// Adds to `hits` the slots of the rules with a literal in `value`.
    pub(crate) fn search(&self, value: &[u8], hits: &mut Bits) {
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
                        hits.union(slots);
                    }
                }
            }
        }
        for m in self.longer.find_overlapping_iter(value) {
            for &slot in &self.owners[m.pattern().as_usize()] {
                hits.set(slot);
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
    let mut sources: Vec<Source> = Vec::new();
    for m in members {
        for t in &m.sources {
            let at = match sources.iter().position(|s| same_source(&s.target, t)) {
                Some(at) => at,
                None => {
                    sources.push(Source {
                        target: t.clone(),
                        readers: Bits::new(slots),
                    });
                    sources.len() - 1
                }
            };
            sources[at].readers.set(m.slot);
        }
    }
    let literals = Literals::new(
        members.iter().map(|m| (m.slot, m.literals.as_slice())),
        slots,
    )?;
    let mut acts_on = 0;
    let mut all_known = true;
    for t in &transformations {
        match t.acts_on() {
            Some(bytes) => bytes
                .iter()
                .for_each(|&b| acts_on |= BYTE_CLASSES[b as usize]),
            None => all_known = false,
        }
    }
    debug_assert!(transformations.iter().all(|t| t
        .acts_on()
        .is_none_or(|bytes| bytes.iter().all(|&b| BYTE_CLASSES[b as usize] != 0))));
    Some(Group {
        multi_match,
        acts_on: all_known.then_some(acts_on),
        transformations,
        transform_ids,
        literals,
        sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lits(p: &str) -> Option<Vec<String>> {
        regex_literals(p).map(|v| {
            v.into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn literals_are_necessary_or_absent() {
        // The longest word a match must contain, in lower case.
        assert_eq!(lits("(?i)union\\s+select"), Some(vec!["select".into()]));
        // Words inside: every branch of an alternation gives one.
        assert_eq!(
            lits("[\\s\\S](?:ON(?:load|error)|xlink:href)\\s*="),
            Some(vec!["onerror".into(), "onload".into(), "xlink:href".into()])
        );
        // Case-insensitive pairs and small classes multiply out.
        assert_eq!(
            lits("(?i)\\.\\.[/\\\\]"),
            Some(vec!["../".into(), "..\\".into()])
        );
        // Anything may match: no literal is required.
        assert_eq!(lits("^.*$"), None);
        assert_eq!(lits("[a-z]+"), None);
        assert_eq!(lits("a?"), None);
        assert_eq!(lits("abc|[a-z]+"), None);
        // A suffix is required when no prefix is.
        assert_eq!(lits("[a-z]+\\.php"), Some(vec![".php".into()]));
    }

    #[test]
    fn every_crs_match_contains_a_literal() {
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
                let Some(literals) = required_literals(rule) else {
                    continue;
                };
                let Some(op) = &rule.operator else { continue };
                for s in samples {
                    if op.run(s, false, &crate::macros::NoMacros).is_some() {
                        let lower = s.to_ascii_lowercase();
                        assert!(
                            literals
                                .iter()
                                .any(|l| lower.windows(l.len()).any(|w| w == l.as_slice())),
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
