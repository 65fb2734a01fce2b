//! Running a [`Plan`] over one HTTP transaction: the variables a request yields, the rules of
//! each phase in order with ModSecurity v2's semantics, and the decision.
//!
//! Semantics kept from ModSecurity v2, which CRS 3.3 is tested against: a rule's
//! non-disruptive actions (setvar, capture, ctl...) run once for every value that matches;
//! a chain matches when every link does; `skipAfter` jumps to a marker of the current phase;
//! DetectionOnly logs everything and interrupts nothing.

use crate::body::{self, take_pair, Pairs};
use crate::compile::{
    AllowScope, BodyProcessor, Ctl, Disruptive, Effect, EngineMode, Entry, Plan, Rule, SetVarOp,
    Target, TargetSelector,
};
use crate::macros::{MacroString, Resolver};
use crate::operator::atoi;
use crate::syntax::IdRange;
use rustc_hash::FxHashMap as HashMap;
use std::borrow::Cow;
use std::rc::Rc;

/// An HTTP request as the gateway received it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: Vec<u8>,
    /// The request target as sent: `/path?query` (or an absolute URL).
    pub uri: Vec<u8>,
    /// e.g. `HTTP/1.1`
    pub protocol: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
    pub remote_addr: String,
    pub remote_port: u16,
    pub server_addr: String,
    pub server_port: u16,
}

/// An upstream's response, for phases 3 and 4.
#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub protocol: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// One rule that matched and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleMatch {
    pub id: u64,
    pub phase: u8,
    pub msg: String,
    pub data: String,
    pub severity: Option<u8>,
    pub tags: Vec<String>,
    /// What matched, e.g. `ARGS:q`.
    pub variable: String,
    /// Where the rule is written.
    pub file: String,
    pub line: u32,
}

/// Why a transaction was stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interruption {
    pub status: u16,
    pub rule_id: u64,
    /// `deny`, `drop` or `redirect`.
    pub action: &'static str,
    pub redirect: Option<String>,
}

/// A transaction being evaluated. Create one per request, feed it the phases in order.
pub struct Transaction<'p> {
    plan: &'p Plan,
    engine: EngineMode,
    request_body_access: bool,
    request_body_limit: usize,
    body_processor: Option<BodyProcessor>,
    force_body_variable: bool,
    /// Single-valued variables by name.
    single: HashMap<&'static str, Vec<u8>>,
    args_get: Pairs,
    args_post: Pairs,
    headers: Pairs,
    cookies: Pairs,
    files: Pairs,
    file_sizes: Pairs,
    part_headers: Pairs,
    /// The XML body's text (what `XML:/*` selects) and its attribute values (`XML://@*`).
    xml_text: Option<Vec<u8>>,
    xml_attributes: Vec<Vec<u8>>,
    response_headers: Pairs,
    tx: TxTable,
    /// By [`crate::compile::ScalarRead::slot`], the value a scalar test last read, while TX
    /// has not changed since.
    tx_reads: Vec<std::cell::Cell<TxRead>>,
    collections: HashMap<String, HashMap<String, Vec<u8>>>,
    /// Where `initcol` reads persistent collections from and `finish` writes them back.
    persist: Option<&'p crate::persist::Collections>,
    /// Collections `initcol` opened from `persist`: name, key, and what the rules changed.
    opened: Vec<(String, String, crate::persist::Changes)>,
    env: HashMap<String, Vec<u8>>,
    matched_var: (String, Vec<u8>),
    matched_vars: Pairs,
    removed_ids: Vec<IdRange>,
    removed_tags: Vec<std::sync::Arc<crate::operator::Regexp>>,
    removed_targets: Vec<(Vec<IdRange>, Target)>,
    removed_targets_by_tag: Vec<(std::sync::Arc<crate::operator::Regexp>, Target)>,
    pub matches: Vec<RuleMatch>,
    pub interruption: Option<Interruption>,
    allowed: bool,
    started: std::time::Instant,
    /// The buffer the prefilter collects a group's values into, kept between groups.
    items: Vec<Item<'static>>,
    /// The values a rule matched, kept between rules (empty between them).
    found: Vec<Found>,
    /// Emptied (name, value) buffers of MATCHED_VARS, for the next matches to fill.
    spare: Pairs,
    /// A buffer `setvar` builds values in, kept between rules.
    scratch: Vec<u8>,
    /// Emptied buffers of single-valued variables, for the next ones to fill.
    bytes: Vec<Vec<u8>>,
    /// Transformed values by (address and length of the original, transformation chain).
    /// `None` when the chain leaves the value as it is.
    transform_cache: std::cell::RefCell<TransformCache>,
    /// The current phase's prefilter verdicts: the slots of rules that may match, among the
    /// groups searched so far.
    possible: crate::prefilter::Bits,
    searched: crate::prefilter::Bits,
    /// What the prefilter learnt this phase of each variable the groups read, by
    /// [`crate::prefilter::Source::id`]; `summarized` says which are this phase's (the
    /// others keep their buffers for reuse).
    summaries: Vec<Summary>,
    summarized: crate::prefilter::Bits,
    /// The slots a group's rules meet in one value, kept between groups.
    met: crate::prefilter::Bits,
}

/// A variable's values as they are, taken together: the classes of their bytes and the
/// slots whose conditions one of them meets. A group whose chain acts on none of those
/// classes meets, through the variable, exactly the conditions its values meet as they are.
#[derive(Default)]
struct Summary {
    classes: u32,
    /// Whether the variable's rules have literals to search for (else no hits are known).
    searched: bool,
    /// The slots met in one of the values (words of a set of the phase's slots).
    hits: Vec<u64>,
    /// Each value's classes, in the order the variable gives them (the same all phase long:
    /// request data does not change within one).
    classes_each: Vec<u32>,
    /// Each value's hits, one set after another.
    hits_each: Vec<u64>,
}

impl Summary {
    /// Whether the variable's value number `at` may meet a rule's conditions: it does not
    /// when the rule's chain leaves it as it is (case aside) and its literals are missing
    /// from it, which is what the operator would then find. Unknown values may.
    fn may_hold(&self, filter: &crate::prefilter::ValueFilter, at: usize) -> bool {
        let width = self.hits.len();
        let (Some(classes), Some(hits)) = (
            self.classes_each.get(at),
            self.hits_each.get(at * width..(at + 1) * width),
        ) else {
            return true;
        };
        classes & filter.acts_on != 0
            || filter
                .slots
                .clone()
                .all(|slot| crate::prefilter::has_in(hits, slot))
    }
}

/// TX, with a count of its changes: every change goes through [`TxTable::map_mut`], so a
/// value read at one count is the value while the count stays.
#[derive(Default)]
struct TxTable {
    map: HashMap<String, Vec<u8>>,
    version: u64,
    /// Which of the capture keys `0`..`9` may be set (bit per digit): a match clears the ones
    /// it did not capture, usually none of them set.
    digits: u16,
}

impl TxTable {
    fn map_mut(&mut self) -> &mut HashMap<String, Vec<u8>> {
        self.version = self.version.wrapping_add(1);
        &mut self.map
    }

    /// Notes a key about to be written, for [`TxTable::digits`].
    fn may_set(&mut self, key: &str) {
        if let [d @ b'0'..=b'9'] = key.as_bytes() {
            self.digits |= 1 << (d - b'0');
        }
    }
}

impl std::ops::Deref for TxTable {
    type Target = HashMap<String, Vec<u8>>;

    fn deref(&self) -> &Self::Target {
        &self.map
    }
}

/// The longest value `setvar` stores. Without a bound, rules that double a variable
/// (`setvar:tx.a=%{tx.a}%{tx.a}`, forty times) would take all memory, in every transaction
/// and, for phase 1's prelude, when the plan is built (`qalxan waf check` of a rule file).
const MAX_VARIABLE_LEN: usize = 1 << 20;

/// The longest TX value [`Transaction::tx_read`] remembers (CRS's levels and scores).
const TX_SHORT: usize = 22;

/// What [`Transaction::tx_read`] remembers of a key: at which count of TX's changes, and the
/// value then (`None`: no such variable).
#[derive(Clone, Copy)]
struct TxRead {
    version: u64,
    value: Option<([u8; TX_SHORT], u8)>,
}

impl Default for TxRead {
    fn default() -> Self {
        // A count TX reaches only after 2^64 changes: never current.
        TxRead {
            version: u64::MAX,
            value: None,
        }
    }
}

/// A value [`Transaction::tx_read`] found: remembered, or in the table.
enum TxValue<'a> {
    Short([u8; TX_SHORT], u8),
    Table(&'a [u8]),
}

impl TxValue<'_> {
    fn bytes(&self) -> &[u8] {
        match self {
            TxValue::Short(bytes, len) => &bytes[..usize::from(*len)],
            TxValue::Table(v) => v,
        }
    }
}

/// What the leading rules of phase 1 leave behind when they read and change nothing but TX
/// ([`Rule::touches_only_tx`]), log nothing and stop nothing: the same in every transaction.
/// CRS begins that way (its setup's and initialization's `&TX:x "@eq 0"` defaults and the
/// scores it zeroes: some forty variables, about a tenth of a benign GET's work). The plan
/// runs those rules once, on a transaction of its own, and keeps the result; a transaction
/// starts phase 1 from it, at the first rule that reads anything else. Rules among them that
/// neither read nor change what they do ([`Rule::independent_of_tx`]: modsecurity.conf's
/// body-processor rules) still run in every transaction, before the result is taken in.
#[derive(Debug)]
pub(crate) struct Prelude {
    /// The phase-1 entry the transaction goes on from.
    resume: usize,
    /// The rules before `resume` that still run, in order.
    aside: Vec<usize>,
    /// How many rules it covers.
    pub(crate) rules: usize,
    engine_before: EngineMode,
    engine_after: EngineMode,
    tx: Vec<(String, Vec<u8>)>,
    digits: u16,
    removed_ids: Vec<IdRange>,
    removed_tags: Vec<std::sync::Arc<crate::operator::Regexp>>,
    removed_targets: Vec<(Vec<IdRange>, Target)>,
    removed_targets_by_tag: Vec<(std::sync::Arc<crate::operator::Regexp>, Target)>,
    /// MATCHED_VAR as the last of the prelude's rules to match left it, when one did after
    /// the rules set aside.
    matched_var: Option<(String, Vec<u8>)>,
    /// MATCHED_VARS, when the last rule before `resume` is one of the prelude's.
    matched_vars: Option<Pairs>,
}

/// What [`Prelude::of`] learns while it runs the prelude's rules.
struct Simulation {
    /// By phase-1 entry, the rules to set aside.
    aside: Vec<bool>,
    /// The rules set aside that the run reached, in order.
    visited: Vec<usize>,
    /// Whether the last rule reached was set aside.
    last_aside: bool,
    /// The entry that last changed MATCHED_VAR.
    last_write: Option<usize>,
    /// MATCHED_VAR before the current rule ran, to see whether it changes it.
    matched_var: (String, Vec<u8>),
    /// The first rule that matched and logs or disrupts: the prelude ends before it.
    stop: Option<usize>,
}

impl Prelude {
    /// Runs `plan`'s leading TX-only rules of phase 1, up to the first that logs or
    /// disrupts (what it does then is each transaction's to record); `None` when there are
    /// none.
    pub(crate) fn of(plan: &Plan) -> Option<Prelude> {
        let entries = &plan.phases[0];
        let mut aside = vec![false; entries.len()];
        let mut ctl_before = false;
        let mut end = entries.len();
        for (i, e) in entries.iter().enumerate() {
            let Entry::Rule(r) = e else { continue };
            if r.touches_only_tx() {
                ctl_before |= r.has_ctl();
            } else if !ctl_before && r.independent_of_tx() {
                // After a `ctl` it might see rules removed that, run first, it would not.
                aside[i] = true;
            } else {
                end = i;
                break;
            }
        }
        loop {
            let mut sim = Simulation {
                aside: aside.clone(),
                visited: Vec::new(),
                last_aside: false,
                last_write: None,
                matched_var: Default::default(),
                stop: None,
            };
            let mut tx = Transaction::new(plan);
            if tx.engine == EngineMode::Off {
                return None;
            }
            tx.begin_phase(1);
            let resume = tx.run_entries(1, 0, end, Some(&mut sim));
            if let Some(at) = sim.stop {
                end = at;
                continue;
            }
            if tx.interruption.is_some()
                || tx.allowed
                || !tx.matches.is_empty()
                || tx.engine == EngineMode::Off
            {
                return None;
            }
            // MATCHED_VAR is the last match's. The rules set aside run first; when one of
            // them comes after the prelude's last match, the prelude ends before it.
            if let Some(at) = sim
                .visited
                .iter()
                .find(|&&a| sim.last_write.is_some_and(|w| a > w))
            {
                end = *at;
                continue;
            }
            let rules = entries[..resume]
                .iter()
                .enumerate()
                .filter(|(i, e)| matches!(e, Entry::Rule(_)) && !aside[*i])
                .count();
            if rules == 0 {
                return None;
            }
            let mut kept: Vec<(String, Vec<u8>)> =
                tx.tx.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            // In a fixed order: the plan is the same however often it is built.
            kept.sort();
            return Some(Prelude {
                resume,
                aside: sim.visited,
                rules,
                engine_before: plan.settings.engine,
                engine_after: tx.engine,
                tx: kept,
                digits: tx.tx.digits,
                removed_ids: tx.removed_ids.clone(),
                removed_tags: tx.removed_tags.clone(),
                removed_targets: tx.removed_targets.clone(),
                removed_targets_by_tag: tx.removed_targets_by_tag.clone(),
                matched_var: sim.last_write.map(|_| tx.matched_var.clone()),
                matched_vars: (!sim.last_aside).then(|| tx.matched_vars.clone()),
            });
        }
    }
}

/// The tables and buffers of a transaction, emptied, that the next transaction on the same
/// thread starts from. Allocating CRS-sized tables and freeing them on every request cost
/// about a tenth of a benign request's instructions; Coraza pools its transactions for the
/// same reason. Nothing of one request is visible to the next: tables are emptied before
/// they are kept (the transformation cache, keyed by addresses, above all), value buffers
/// too, and the spare (name, value) pairs are emptied by `take_pair`, their only way out.
struct Buffers {
    single: HashMap<&'static str, Vec<u8>>,
    args_get: Pairs,
    args_post: Pairs,
    headers: Pairs,
    cookies: Pairs,
    tx: TxTable,
    tx_reads: Vec<std::cell::Cell<TxRead>>,
    matched_var: (String, Vec<u8>),
    matched_vars: Pairs,
    found: Vec<Found>,
    spare: Pairs,
    scratch: Vec<u8>,
    bytes: Vec<Vec<u8>>,
    items: Vec<Item<'static>>,
    transform_cache: TransformCache,
    possible: crate::prefilter::Bits,
    searched: crate::prefilter::Bits,
    summaries: Vec<Summary>,
    summarized: crate::prefilter::Bits,
    met: crate::prefilter::Bits,
}

impl Buffers {
    fn sized_for_crs() -> Buffers {
        Buffers {
            single: HashMap::with_capacity_and_hasher(64, Default::default()),
            args_get: Vec::new(),
            args_post: Vec::new(),
            headers: Vec::new(),
            cookies: Vec::new(),
            tx: TxTable {
                map: HashMap::with_capacity_and_hasher(128, Default::default()),
                version: 0,
                digits: 0,
            },
            tx_reads: Vec::new(),
            matched_var: (String::new(), Vec::new()),
            matched_vars: Vec::new(),
            found: Vec::new(),
            spare: Vec::new(),
            scratch: Vec::new(),
            bytes: Vec::new(),
            items: Vec::with_capacity(32),
            transform_cache: HashMap::with_capacity_and_hasher(512, Default::default()),
            possible: Default::default(),
            searched: Default::default(),
            summaries: Vec::new(),
            summarized: Default::default(),
            met: Default::default(),
        }
    }
}

thread_local! {
    static SPARE_BUFFERS: std::cell::RefCell<Option<Buffers>> = const { std::cell::RefCell::new(None) };
}

impl Drop for Transaction<'_> {
    fn drop(&mut self) {
        let mut b = Buffers {
            single: std::mem::take(&mut self.single),
            args_get: std::mem::take(&mut self.args_get),
            args_post: std::mem::take(&mut self.args_post),
            headers: std::mem::take(&mut self.headers),
            cookies: std::mem::take(&mut self.cookies),
            tx: std::mem::take(&mut self.tx),
            tx_reads: std::mem::take(&mut self.tx_reads),
            matched_var: std::mem::take(&mut self.matched_var),
            matched_vars: std::mem::take(&mut self.matched_vars),
            found: std::mem::take(&mut self.found),
            spare: std::mem::take(&mut self.spare),
            scratch: std::mem::take(&mut self.scratch),
            bytes: std::mem::take(&mut self.bytes),
            items: recycle(std::mem::take(&mut self.items)),
            transform_cache: std::mem::take(self.transform_cache.get_mut()),
            possible: std::mem::take(&mut self.possible),
            searched: std::mem::take(&mut self.searched),
            summaries: std::mem::take(&mut self.summaries),
            summarized: std::mem::take(&mut self.summarized),
            met: std::mem::take(&mut self.met),
        };
        // Values and pairs become buffers for the next transaction's, but for the big ones (a
        // large body) and beyond what a CRS-sized request needs.
        const KEPT: usize = 1 << 14;
        for (_, mut v) in b.single.drain() {
            if b.bytes.len() < 256 && v.capacity() <= KEPT {
                v.clear();
                b.bytes.push(v);
            }
        }
        for pairs in [
            &mut b.args_get,
            &mut b.args_post,
            &mut b.headers,
            &mut b.cookies,
        ] {
            for (k, v) in pairs.drain(..) {
                if b.spare.len() < 512 && k.capacity() <= KEPT && v.capacity() <= KEPT {
                    b.spare.push((k, v));
                }
            }
        }
        for (k, v) in b.tx.map_mut().drain() {
            if b.spare.len() < 512 && k.capacity() <= KEPT && v.capacity() <= KEPT {
                b.spare.push((k, v));
            }
        }
        b.tx.digits = 0;
        b.matched_var.0.clear();
        b.matched_var.1.clear();
        // The spare pairs keep what they held: `take_pair`, their only way out, empties them.
        b.spare.append(&mut b.matched_vars);
        b.found.clear();
        b.scratch.clear();
        b.transform_cache.clear();
        for s in &mut b.summaries {
            s.hits.clear();
            s.classes_each.clear();
            s.hits_each.clear();
        }
        // Buffers that grew past what CRS needs (a request with thousands of arguments) go.
        if b.spare.len() > 1024 || b.transform_cache.capacity() > 4096 || b.tx.capacity() > 1024 {
            return;
        }
        // `try_with`: threads being torn down have no spare to fill.
        let _ = SPARE_BUFFERS.try_with(|spare| {
            if let Ok(mut spare) = spare.try_borrow_mut() {
                *spare = Some(b);
            }
        });
    }
}

/// Transformed values by (address and length of the original, transformation chain).
type TransformCache = HashMap<(usize, usize, u32), Option<Rc<[u8]>>>;

/// A value a rule inspects, and where it came from.
struct Item<'a> {
    collection: &'static str,
    cacheable: bool,
    key: Option<&'a str>,
    value: Cow<'a, [u8]>,
}

/// A value after transformations: the original, a shared cached result, or a fresh one.
enum Transformed<'a> {
    Borrowed(&'a [u8]),
    Shared(Rc<[u8]>),
    Owned(Vec<u8>),
}

impl std::ops::Deref for Transformed<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Transformed::Borrowed(b) => b,
            Transformed::Shared(r) => r,
            Transformed::Owned(v) => v,
        }
    }
}

impl Item<'_> {
    /// Appends the variable's name as ModSecurity writes it (`ARGS:q`, `REQUEST_URI`) to `name`.
    fn write_name(&self, name: &mut String) {
        name.push_str(self.collection);
        if let Some(k) = self.key {
            name.push(':');
            name.push_str(k);
        }
    }
}

/// A value that matched, with what the operator captured.
struct Found {
    name: String,
    value: Vec<u8>,
    captures: Option<Vec<Vec<u8>>>,
}

/// Lookups of `%{...}` macros in the transaction.
impl Resolver for Transaction<'_> {
    fn resolve(&self, collection: &str, key: Option<&str>) -> Option<Cow<'_, [u8]>> {
        if collection == "TX" {
            // The common case, without building a target: keys are stored lower-cased.
            let key = key?;
            let value = match self.tx.get(key) {
                Some(v) => Some(v),
                None if key.bytes().any(|b| b.is_ascii_uppercase()) => {
                    self.tx.get(&key.to_ascii_lowercase())
                }
                None => None,
            };
            return value.map(|v| Cow::Borrowed(v.as_slice()));
        }
        let name = crate::syntax::names::lookup(crate::syntax::names::VARIABLES, collection)?;
        let kind = crate::compile::Coll::of(name);
        let target = Target {
            collection: name,
            kind,
            selector: key.map(|k| TargetSelector::Key(k.to_ascii_lowercase())),
            count: false,
            exclude: false,
            cacheable: kind.cacheable(name),
        };
        let mut first = None;
        self.collect(&target, &mut |item| {
            if first.is_none() {
                first = Some(Cow::Owned(item.value.into_owned()));
            }
        });
        first
    }
}

/// Whether two targets name the same variable (single-valued ones share a kind).
fn same_collection(a: &Target, b: &Target) -> bool {
    a.kind == b.kind && (a.kind != crate::compile::Coll::Single || a.collection == b.collection)
}

fn pairs_matching<'a, 's>(
    pairs: &'a Pairs,
    sel: &'s Option<TargetSelector>,
) -> impl Iterator<Item = &'a (String, Vec<u8>)> + use<'a, 's> {
    pairs
        .iter()
        .filter(move |(k, _)| sel.as_ref().is_none_or(|s| s.matches(k)))
}

impl<'p> Transaction<'p> {
    pub fn new(plan: &'p Plan) -> Transaction<'p> {
        let s = &plan.settings;
        let b = SPARE_BUFFERS
            .with(|spare| spare.borrow_mut().take())
            .unwrap_or_else(Buffers::sized_for_crs);
        Transaction {
            plan,
            engine: s.engine,
            request_body_access: s.request_body_access,
            request_body_limit: s.request_body_limit,
            body_processor: None,
            force_body_variable: false,
            single: b.single,
            args_get: b.args_get,
            args_post: b.args_post,
            headers: b.headers,
            cookies: b.cookies,
            files: Vec::new(),
            file_sizes: Vec::new(),
            part_headers: Vec::new(),
            xml_text: None,
            xml_attributes: Vec::new(),
            response_headers: Vec::new(),
            tx: b.tx,
            tx_reads: {
                // Entries of earlier transactions are stale: TX changed since (it emptied).
                let mut reads = b.tx_reads;
                reads.resize(plan.scalar_keys, Default::default());
                reads
            },
            collections: HashMap::default(),
            persist: None,
            opened: Vec::new(),
            env: HashMap::default(),
            matched_var: b.matched_var,
            matched_vars: b.matched_vars,
            found: b.found,
            spare: b.spare,
            scratch: b.scratch,
            bytes: b.bytes,
            removed_ids: Vec::new(),
            removed_tags: Vec::new(),
            removed_targets: Vec::new(),
            removed_targets_by_tag: Vec::new(),
            matches: Vec::new(),
            interruption: None,
            allowed: false,
            started: std::time::Instant::now(),
            items: b.items,
            transform_cache: std::cell::RefCell::new(b.transform_cache),
            possible: b.possible,
            searched: b.searched,
            summaries: b.summaries,
            summarized: b.summarized,
            met: b.met,
        }
    }

    /// Keeps the persistent collections (`initcol`) in `collections`: read when a rule opens
    /// them, written back by [`Transaction::finish`]. Without it they last one transaction.
    pub fn with_collections(mut self, collections: &'p crate::persist::Collections) -> Self {
        self.persist = Some(collections);
        self
    }

    /// Evaluates a whole request: headers (phase 1) and body (phase 2).
    pub fn evaluate_request(plan: &'p Plan, request: &Request) -> Transaction<'p> {
        Transaction::new(plan).request(request)
    }

    /// Phases 1 and 2 of this transaction over `request`.
    pub fn request(mut self, request: &Request) -> Transaction<'p> {
        self.process_request_headers(request);
        self.run_phase(1);
        if self.interruption.is_none() {
            self.process_request_body(request);
            self.run_phase(2);
        }
        self
    }

    /// Phases 3 and 4 (response headers and body) and then the logging phase.
    pub fn evaluate_response(&mut self, response: &Response) {
        if self.interruption.is_none() {
            self.single
                .insert("RESPONSE_STATUS", response.status.to_string().into_bytes());
            self.single
                .insert("RESPONSE_PROTOCOL", response.protocol.clone());
            self.response_headers = response.headers.clone();
            self.run_phase(3);
        }
        if self.interruption.is_none() && self.plan.settings.response_body_access {
            self.single.insert("RESPONSE_BODY", response.body.clone());
            self.run_phase(4);
        }
    }

    /// The logging phase; call once at the end. Persistent collections the transaction
    /// changed are written back here.
    pub fn finish(&mut self) {
        let interrupted = self.interruption.take();
        self.run_phase(5);
        self.interruption = interrupted;
        if let Some(store) = self.persist {
            let empty = HashMap::default();
            for (collection, key, changes) in std::mem::take(&mut self.opened) {
                let current = self.collections.get(&collection).unwrap_or(&empty);
                store.store(
                    &collection,
                    &key,
                    current,
                    &changes,
                    self.plan.settings.collection_timeout,
                );
            }
        }
    }

    /// The engine mode in force (rules may have changed it with `ctl:ruleEngine`).
    pub fn engine_mode(&self) -> EngineMode {
        self.engine
    }

    /// The transaction's UNIQUE_ID.
    pub fn unique_id(&self) -> String {
        self.single
            .get("UNIQUE_ID")
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    }

    pub fn tx_value(&self, key: &str) -> Option<&[u8]> {
        self.tx.get(&key.to_ascii_lowercase()).map(Vec::as_slice)
    }

    /// CRS's inbound anomaly score, if CRS computed one.
    pub fn anomaly_score(&self) -> i64 {
        self.tx_value("anomaly_score")
            .or_else(|| self.tx_value("blocking_inbound_anomaly_score"))
            .map(atoi)
            .unwrap_or(0)
    }

    fn process_request_headers(&mut self, r: &Request) {
        let uri: &[u8] = &r.uri;
        // REQUEST_URI never holds a scheme or host, even for an absolute request target.
        let local: &[u8] = match uri.windows(3).position(|w| w == b"://") {
            Some(p) if uri.first() != Some(&b'/') => {
                let after = &uri[p + 3..];
                after
                    .iter()
                    .position(|&b| b == b'/')
                    .map_or(b"/", |s| &after[s..])
            }
            _ => uri,
        };
        let (path, query) = match local.iter().position(|&b| b == b'?') {
            Some(q) => (&local[..q], Some(&local[q + 1..])),
            None => (local, None),
        };
        // Apache hands ModSecurity the path percent-decoded (its r->uri); so do we.
        let path = if path.contains(&b'%') {
            Cow::Owned(crate::transform::percent_decode(path))
        } else {
            Cow::Borrowed(path)
        };
        let basename = path
            .iter()
            .rposition(|&b| b == b'/')
            .map_or(&path[..], |i| &path[i + 1..]);
        self.set_single("REQUEST_METHOD", &r.method);
        self.set_single("REQUEST_URI_RAW", uri);
        self.set_single("REQUEST_URI", local);
        self.set_single("REQUEST_FILENAME", &path);
        self.set_single("PATH_INFO", b"");
        self.set_single("REQUEST_BASENAME", basename);
        self.set_single("REQUEST_PROTOCOL", &r.protocol);
        let line = self.single_mut("REQUEST_LINE");
        line.extend_from_slice(&r.method);
        line.push(b' ');
        line.extend_from_slice(&r.uri);
        line.push(b' ');
        line.extend_from_slice(&r.protocol);
        self.set_single("REMOTE_ADDR", r.remote_addr.as_bytes());
        self.set_single("REMOTE_HOST", r.remote_addr.as_bytes());
        write_number(self.single_mut("REMOTE_PORT"), r.remote_port.into());
        self.set_single("SERVER_ADDR", r.server_addr.as_bytes());
        write_number(self.single_mut("SERVER_PORT"), r.server_port.into());
        {
            use std::io::Write;
            // Writing to a Vec cannot fail.
            let _ = write!(self.single_mut("UNIQUE_ID"), "{:x}", rand_id());
        }
        for flag in [
            "REQBODY_ERROR",
            "INBOUND_DATA_ERROR",
            "URLENCODED_ERROR",
            "MULTIPART_STRICT_ERROR",
            "MULTIPART_UNMATCHED_BOUNDARY",
        ] {
            self.set_flag(flag, false);
        }
        self.set_single("HIGHEST_SEVERITY", b"255");
        self.set_single("QUERY_STRING", query.unwrap_or_default());
        if let Some(q) = query {
            let invalid = body::parse_urlencoded(
                q,
                self.plan.settings.argument_separator,
                self.plan.settings.arguments_limit,
                &mut self.args_get,
                &mut self.spare,
            );
            if invalid {
                self.set_flag("URLENCODED_ERROR", true);
            }
        }
        for (name, value) in &r.headers {
            let (mut k, mut v) = take_pair(&mut self.spare);
            k.push_str(name);
            v.extend_from_slice(value);
            self.headers.push((k, v));
            if name.eq_ignore_ascii_case("cookie") {
                body::parse_cookies(value, &mut self.cookies, &mut self.spare);
            }
            if name.eq_ignore_ascii_case("host") {
                self.set_single("SERVER_NAME", value);
            }
        }
        let content_type = r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map_or(&[][..], |(_, v)| v.as_slice());
        let begins = |prefix: &[u8]| {
            content_type
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
        };
        self.body_processor = if begins(b"application/x-www-form-urlencoded") {
            Some(BodyProcessor::UrlEncoded)
        } else if begins(b"multipart/form-data") {
            Some(BodyProcessor::Multipart)
        } else {
            None
        };
        self.set_processor(self.body_processor);
    }

    /// The buffer of a single-valued variable, emptied: its own when it is set, else one an
    /// earlier value left (request data takes no allocation once a thread has served one).
    fn single_mut(&mut self, name: &'static str) -> &mut Vec<u8> {
        let value = self
            .single
            .entry(name)
            .or_insert_with(|| self.bytes.pop().unwrap_or_default());
        value.clear();
        value
    }

    fn set_single(&mut self, name: &'static str, value: &[u8]) {
        self.single_mut(name).extend_from_slice(value);
    }

    /// REQBODY_PROCESSOR names the processor from the headers on (empty when there is none),
    /// so phase 1 rules can react to it.
    fn set_processor(&mut self, processor: Option<BodyProcessor>) {
        self.body_processor = processor;
        let name = match processor {
            Some(BodyProcessor::UrlEncoded) => "URLENCODED",
            Some(BodyProcessor::Multipart) => "MULTIPART",
            Some(BodyProcessor::Json) => "JSON",
            Some(BodyProcessor::Xml) => "XML",
            None => "",
        };
        self.set_single("REQBODY_PROCESSOR", name.as_bytes());
    }

    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }

    fn set_flag(&mut self, name: &'static str, on: bool) {
        self.set_single(name, if on { b"1" } else { b"0" });
    }

    fn body_error(&mut self, message: String) {
        self.single.insert("REQBODY_ERROR", b"1".to_vec());
        self.single.insert("REQBODY_PROCESSOR_ERROR", b"1".to_vec());
        self.single
            .insert("REQBODY_ERROR_MSG", message.clone().into_bytes());
        self.single
            .insert("REQBODY_PROCESSOR_ERROR_MSG", message.into_bytes());
    }

    fn process_request_body(&mut self, r: &Request) {
        write_number(
            self.single_mut("REQUEST_BODY_LENGTH"),
            i64::try_from(r.body.len()).unwrap_or(i64::MAX),
        );
        if !self.request_body_access || r.body.is_empty() {
            return;
        }
        let limit = self.request_body_limit;
        let body: &[u8] = if r.body.len() > limit {
            self.set_flag("INBOUND_DATA_ERROR", true);
            &r.body[..limit]
        } else {
            &r.body
        };
        let settings = &self.plan.settings;
        let processor = self.body_processor;
        // As in ModSecurity v2: the raw body is a variable for URL-encoded bodies, or when a
        // rule forces it (CRS does for bodies no processor reads).
        if processor == Some(BodyProcessor::UrlEncoded) || self.force_body_variable {
            self.single.insert("REQUEST_BODY", body.to_vec());
        }
        match processor {
            Some(BodyProcessor::UrlEncoded) => {
                let invalid = body::parse_urlencoded(
                    body,
                    settings.argument_separator,
                    settings.arguments_limit,
                    &mut self.args_post,
                    &mut self.spare,
                );
                if invalid {
                    self.set_flag("URLENCODED_ERROR", true);
                }
            }
            Some(BodyProcessor::Multipart) => {
                let content_type = self.header("content-type").unwrap_or_default();
                let m = body::parse_multipart(&content_type, body, settings.arguments_limit);
                self.args_post = m.args.clone();
                self.files = m
                    .files
                    .iter()
                    .map(|(n, f)| (n.clone(), f.clone()))
                    .collect();
                self.file_sizes = m
                    .file_sizes
                    .iter()
                    .map(|(n, s)| (n.clone(), s.to_string().into_bytes()))
                    .collect();
                self.part_headers = m.part_headers.clone();
                let combined: usize = m.file_sizes.iter().map(|(_, s)| s).sum();
                self.single
                    .insert("FILES_COMBINED_SIZE", combined.to_string().into_bytes());
                for (flag, on) in [
                    ("MULTIPART_BOUNDARY_QUOTED", m.boundary_quoted),
                    ("MULTIPART_BOUNDARY_WHITESPACE", m.boundary_whitespace),
                    ("MULTIPART_DATA_BEFORE", m.data_before),
                    ("MULTIPART_DATA_AFTER", m.data_after),
                    ("MULTIPART_HEADER_FOLDING", m.header_folding),
                    ("MULTIPART_LF_LINE", m.lf_line),
                    ("MULTIPART_CRLF_LF_LINES", m.crlf_lf_lines),
                    ("MULTIPART_MISSING_SEMICOLON", m.missing_semicolon),
                    ("MULTIPART_INVALID_QUOTING", m.invalid_quoting),
                    ("MULTIPART_INVALID_PART", m.invalid_part),
                    ("MULTIPART_INVALID_HEADER_FOLDING", m.invalid_header_folding),
                    ("MULTIPART_FILE_LIMIT_EXCEEDED", m.file_limit_exceeded),
                    ("MULTIPART_UNMATCHED_BOUNDARY", m.unmatched_boundary),
                    ("MULTIPART_STRICT_ERROR", m.strict_error()),
                ] {
                    self.set_flag(flag, on);
                }
                if let Some(e) = m.error {
                    self.body_error(e);
                }
            }
            Some(BodyProcessor::Json) => {
                let mut args = Vec::new();
                let result = body::parse_json(
                    body,
                    settings.json_depth_limit,
                    settings.arguments_limit,
                    &mut args,
                );
                self.args_post = args;
                if let Err(e) = result {
                    self.body_error(e);
                }
            }
            Some(BodyProcessor::Xml) => match body::parse_xml(body, settings.json_depth_limit) {
                Ok((text, attributes)) => {
                    self.xml_text = Some(text);
                    self.xml_attributes = attributes;
                }
                Err(e) => self.body_error(e),
            },
            None => {}
        }
        let combined: usize = self
            .args_get
            .iter()
            .chain(&self.args_post)
            .map(|(k, v)| k.len() + v.len())
            .sum();
        self.single
            .insert("ARGS_COMBINED_SIZE", combined.to_string().into_bytes());
    }

    /// Appends the values `target` selects.
    /// Hands each of a target's values to `out`, borrowed from the transaction where it can.
    fn collect<'a>(&'a self, target: &Target, out: &mut impl FnMut(Item<'a>)) {
        use crate::compile::Coll;
        let sel = &target.selector;
        let c = target.collection;
        let cacheable = target.cacheable;
        let item = |key: Option<&'a str>, value: Cow<'a, [u8]>| Item {
            collection: c,
            cacheable,
            key,
            value,
        };
        let mut from_pairs = |pairs: &'a Pairs, names: bool| {
            for (k, v) in pairs_matching(pairs, sel) {
                let value: &'a [u8] = if names { k.as_bytes() } else { v };
                out(item(Some(k), Cow::Borrowed(value)));
            }
        };
        match target.kind {
            Coll::Args | Coll::ArgsNames => {
                let names = target.kind == Coll::ArgsNames;
                from_pairs(&self.args_get, names);
                from_pairs(&self.args_post, names);
            }
            Coll::ArgsGet => from_pairs(&self.args_get, false),
            Coll::ArgsPost => from_pairs(&self.args_post, false),
            Coll::ArgsGetNames => from_pairs(&self.args_get, true),
            Coll::ArgsPostNames => from_pairs(&self.args_post, true),
            Coll::RequestHeaders => from_pairs(&self.headers, false),
            Coll::RequestHeadersNames => from_pairs(&self.headers, true),
            Coll::RequestCookies => from_pairs(&self.cookies, false),
            Coll::RequestCookiesNames => from_pairs(&self.cookies, true),
            Coll::ResponseHeaders => from_pairs(&self.response_headers, false),
            Coll::ResponseHeadersNames => from_pairs(&self.response_headers, true),
            Coll::Files => from_pairs(&self.files, false),
            Coll::FilesNames => from_pairs(&self.files, true),
            Coll::FilesSizes => from_pairs(&self.file_sizes, false),
            Coll::MultipartPartHeaders => from_pairs(&self.part_headers, false),
            Coll::MatchedVars => from_pairs(&self.matched_vars, false),
            Coll::MatchedVarsNames => from_pairs(&self.matched_vars, true),
            Coll::Xml => {
                // The two XPath forms CRS uses: attribute values, or the document's text.
                let attributes = matches!(sel, Some(TargetSelector::XPath(x)) if x.contains('@'));
                let values: &'a [Vec<u8>] = if attributes {
                    &self.xml_attributes
                } else {
                    self.xml_text.as_slice()
                };
                for v in values {
                    out(item(None, Cow::Borrowed(v)));
                }
            }
            Coll::Tx | Coll::Env | Coll::Persistent => {
                let map = match target.kind {
                    Coll::Tx => Some(&self.tx.map),
                    Coll::Env => Some(&self.env),
                    _ => self.collections.get(c),
                };
                let Some(map) = map else { return };
                match sel {
                    // Keys are stored lower-cased: a named key is one lookup.
                    Some(TargetSelector::Key(k)) => {
                        if let Some((k, v)) = map.get_key_value(k.as_str()) {
                            out(item(Some(k), Cow::Borrowed(v)));
                        }
                    }
                    _ => {
                        for (k, v) in map {
                            if sel.as_ref().is_none_or(|s| s.matches(k)) {
                                out(item(Some(k), Cow::Borrowed(v)));
                            }
                        }
                    }
                }
            }
            Coll::MatchedVar => out(item(None, Cow::Borrowed(&self.matched_var.1))),
            Coll::MatchedVarName => out(item(None, Cow::Borrowed(self.matched_var.0.as_bytes()))),
            Coll::Duration => out(item(
                None,
                Cow::Owned(self.started.elapsed().as_micros().to_string().into_bytes()),
            )),
            Coll::TimeEpoch => out(item(
                None,
                Cow::Owned(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0)
                        .to_string()
                        .into_bytes(),
                ),
            )),
            Coll::Single => {
                if let Some(v) = self.single.get(c) {
                    out(item(None, Cow::Borrowed(v)));
                }
            }
        }
    }

    fn target_removed(&self, rule: &Rule, target: &Target, key: Option<&str>) -> bool {
        if self.removed_targets.is_empty() && self.removed_targets_by_tag.is_empty() {
            return false;
        }
        let hits = |t: &Target| {
            same_collection(t, target)
                && match (&t.selector, key) {
                    (None, _) => true,
                    (Some(s), Some(k)) => s.matches(k),
                    (Some(_), None) => false,
                }
        };
        self.removed_targets
            .iter()
            .any(|(ids, t)| ids.iter().any(|r| r.contains(rule.id)) && hits(t))
            || self
                .removed_targets_by_tag
                .iter()
                .any(|(re, t)| rule.has_tag(re) && hits(t))
    }

    /// The values a rule inspects: its targets minus its exclusions and run-time removals.
    /// Hands each value a rule inspects to `visit`: its targets' values, less its exclusions
    /// and the targets `ctl` removed, or their counts. A visitor rather than a list: most
    /// rules read one or two values, and a list per rule was a large part of their cost.
    fn for_each_value<'a>(&'a self, rule: &'a Rule, head: &Rule, visit: &mut impl FnMut(Item<'a>)) {
        let filtered = rule.targets.iter().any(|t| t.exclude)
            || !self.removed_targets.is_empty()
            || !self.removed_targets_by_tag.is_empty();
        for (read, target) in rule.targets.iter().filter(|t| !t.exclude).enumerate() {
            // The summary of the variable the target's values come from, when it rules out
            // values one by one (see `may_hold`).
            let summary = rule.value_filter.as_deref().and_then(|f| {
                let id = f.sources.get(read).copied().flatten()?;
                Some((f, self.summary(id)?))
            });
            let kept = |item: &Item<'_>| {
                !filtered || {
                    let key = item.key;
                    let excluded = rule.targets.iter().filter(|t| t.exclude).any(|x| {
                        same_collection(x, target)
                            && match (&x.selector, key) {
                                (Some(s), Some(k)) => s.matches(k),
                                _ => false,
                            }
                    });
                    !excluded && !self.target_removed(head, target, key)
                }
            };
            if target.count {
                let mut n = 0usize;
                self.collect(target, &mut |item| n += usize::from(kept(&item)));
                let key = match &target.selector {
                    Some(TargetSelector::Key(k)) => Some(k.as_str()),
                    _ => None,
                };
                visit(Item {
                    collection: target.collection,
                    cacheable: false,
                    key,
                    value: Cow::Owned(n.to_string().into_bytes()),
                });
            } else if let Some((f, summary)) = summary {
                let mut at = 0;
                self.collect(target, &mut |item| {
                    at += 1;
                    if summary.may_hold(f, at - 1) && kept(&item) {
                        visit(item)
                    }
                });
            } else {
                self.collect(target, &mut |item| {
                    if kept(&item) {
                        visit(item)
                    }
                });
            }
        }
    }

    /// What the prefilter learnt this phase of a variable's values, if it looked at them.
    fn summary(&self, id: u32) -> Option<&Summary> {
        let summary = self.summaries.get(id as usize)?;
        (self.summarized.has(id) && summary.searched).then_some(summary)
    }

    fn rule_removed(&self, rule: &Rule) -> bool {
        self.removed_ids.iter().any(|r| r.contains(rule.id))
            || self.removed_tags.iter().any(|re| rule.has_tag(re))
    }

    /// Runs one phase's rules in order.
    pub fn run_phase(&mut self, phase: u8) {
        if self.engine == EngineMode::Off || (self.allowed && phase < 5) {
            return;
        }
        self.begin_phase(phase);
        let mut start = 0;
        if phase == 1 {
            if let Some(prelude) = &self.plan.prelude {
                if self.at_prelude(prelude) {
                    // The rules the prelude stood aside for run as they would have: nothing
                    // they read or do depends on the prelude's rules, nor the other way.
                    for &at in &prelude.aside {
                        self.run_entries(phase, at, at + 1, None);
                    }
                    self.restore(prelude);
                    start = prelude.resume;
                }
            }
        }
        self.run_entries(phase, start, usize::MAX, None);
    }

    /// Empties what the prefilter learnt in the last phase.
    fn begin_phase(&mut self, phase: u8) {
        let filter = &self.plan.filters[(phase - 1) as usize];
        self.possible.reset(filter.slots);
        self.searched.reset(filter.groups.len());
        let sources = filter.literals_of_source.len();
        if self.summaries.len() < sources {
            self.summaries.resize_with(sources, Summary::default);
        }
        self.summarized.reset(sources);
    }

    /// Runs `phase`'s entries from `start` until one disrupts, the engine is turned off, or
    /// the next entry to run is at `end` or beyond; returns that entry's index. With `sim`,
    /// the rules it marks are noted instead of run (see [`Prelude::of`]).
    fn run_entries(
        &mut self,
        phase: u8,
        start: usize,
        end: usize,
        mut sim: Option<&mut Simulation>,
    ) -> usize {
        let plan = self.plan;
        let entries = &plan.phases[(phase - 1) as usize];
        let filter = &plan.filters[(phase - 1) as usize];
        let mut i = start;
        let end = end.min(entries.len());
        while i < end {
            let Entry::Rule(rule) = &entries[i] else {
                i += 1;
                continue;
            };
            i += 1;
            if self.rule_removed(rule) {
                continue;
            }
            if let Some(sim) = sim.as_deref_mut() {
                if sim.aside[i - 1] {
                    sim.visited.push(i - 1);
                    sim.last_aside = true;
                    continue;
                }
                sim.last_aside = false;
                if self.matched_var != sim.matched_var {
                    sim.matched_var.clone_from(&self.matched_var);
                }
            }
            if rule
                .filter_slot
                .is_some_and(|slot| !self.may_match(filter, slot))
            {
                // No value holds its literals: it matches nothing, as evaluating would find.
                self.clear_matched_vars();
                continue;
            }
            let matched = self.eval_chain(rule);
            if let Some(sim) = sim.as_deref_mut() {
                if self.matched_var != sim.matched_var {
                    sim.last_write = Some(i - 1);
                }
                if matched && (rule.log || !matches!(rule.disruptive, Disruptive::Pass)) {
                    // What it logs or decides is each transaction's to record.
                    sim.stop = Some(i - 1);
                    return i - 1;
                }
            }
            if !matched {
                continue;
            }
            if self.apply_disruptive(rule, phase) {
                return i;
            }
            if let Some(to) = rule.skip_to {
                i = to + 1;
            } else if rule.skip > 0 {
                let mut skipped = 0;
                while skipped < rule.skip && i < entries.len() {
                    if matches!(entries[i], Entry::Rule(_)) {
                        skipped += 1;
                    }
                    i += 1;
                }
            }
            if self.engine == EngineMode::Off {
                return i;
            }
        }
        i
    }

    /// Whether the transaction is where the prelude was taken: at the start of phase 1 with
    /// nothing a rule could have changed yet.
    fn at_prelude(&self, prelude: &Prelude) -> bool {
        self.engine == prelude.engine_before
            && self.tx.is_empty()
            && self.matched_var.0.is_empty()
            && self.matched_var.1.is_empty()
            && self.matched_vars.is_empty()
            && self.matches.is_empty()
            && self.removed_ids.is_empty()
            && self.removed_tags.is_empty()
            && self.removed_targets.is_empty()
            && self.removed_targets_by_tag.is_empty()
    }

    /// Takes TX, the engine's state and the matched variables as the prelude's rules leave
    /// them, into the transaction's own buffers.
    fn restore(&mut self, prelude: &Prelude) {
        let mut spare = std::mem::take(&mut self.spare);
        let map = self.tx.map_mut();
        for (k, v) in &prelude.tx {
            let (mut key, mut value) = take_pair(&mut spare);
            key.push_str(k);
            value.extend_from_slice(v);
            map.insert(key, value);
        }
        self.tx.digits = prelude.digits;
        self.engine = prelude.engine_after;
        self.removed_ids.extend_from_slice(&prelude.removed_ids);
        self.removed_tags.extend_from_slice(&prelude.removed_tags);
        self.removed_targets
            .extend_from_slice(&prelude.removed_targets);
        self.removed_targets_by_tag
            .extend_from_slice(&prelude.removed_targets_by_tag);
        if let Some((name, value)) = &prelude.matched_var {
            self.matched_var.0.clear();
            self.matched_var.0.push_str(name);
            self.matched_var.1.clear();
            self.matched_var.1.extend_from_slice(value);
        }
        if let Some(pairs) = &prelude.matched_vars {
            spare.append(&mut self.matched_vars);
            for (k, v) in pairs {
                let (mut key, mut value) = take_pair(&mut spare);
                key.push_str(k);
                value.extend_from_slice(v);
                self.matched_vars.push((key, value));
            }
        }
        self.spare = spare;
    }

    /// Evaluates a rule and its chain; returns whether the whole chain matched.
    fn eval_chain(&mut self, head: &'p Rule) -> bool {
        self.clear_matched_vars();
        let mut link = head;
        loop {
            if !self.eval_rule(link, head) {
                return false;
            }
            match &link.chain {
                Some(next) => link = next,
                None => break,
            }
        }
        if head.log && head.id != 0 {
            let msg = head
                .msg
                .as_ref()
                .map(|m| String::from_utf8_lossy(&m.expand(self)).into_owned())
                .unwrap_or_default();
            let data = head
                .logdata
                .as_ref()
                .map(|m| String::from_utf8_lossy(&m.expand(self)).into_owned())
                .unwrap_or_default();
            if let Some(sev) = head.severity {
                let current = self
                    .single
                    .get("HIGHEST_SEVERITY")
                    .map(|v| atoi(v))
                    .unwrap_or(255);
                if i64::from(sev) < current {
                    self.single
                        .insert("HIGHEST_SEVERITY", sev.to_string().into_bytes());
                }
            }
            self.matches.push(RuleMatch {
                id: head.id,
                phase: head.phase,
                msg,
                data,
                severity: head.severity,
                tags: head.tags.clone(),
                variable: self.matched_var.0.clone(),
                file: head.location.file.display().to_string(),
                line: head.location.line,
            });
        }
        true
    }

    /// Evaluates one link: its values through its transformations and operator; runs its
    /// effects for every value that matches (after all values are read, so reading borrows
    /// the transaction's data instead of copying it).
    fn eval_rule(&mut self, rule: &'p Rule, head: &'p Rule) -> bool {
        let Some(operator) = &rule.operator else {
            // SecAction: always matches.
            self.run_effects(rule);
            return true;
        };
        let mut found = std::mem::take(&mut self.found);
        let mut spare = std::mem::take(&mut self.spare);
        match &rule.scalar {
            Some(test)
                if self.removed_targets.is_empty() && self.removed_targets_by_tag.is_empty() =>
            {
                self.scalar_found(test, &mut found, &mut spare)
            }
            _ => self.found_values(rule, head, operator, &mut found, &mut spare),
        }
        self.spare = spare;
        let any = !found.is_empty();
        for f in found.drain(..) {
            if rule.capture {
                if let Some(captures) = &f.captures {
                    for (i, key) in CAPTURE_KEYS.iter().enumerate() {
                        match captures.get(i) {
                            // In place when TX:i exists: no key or buffer to allocate.
                            Some(c) => {
                                self.tx.may_set(key);
                                match self.tx.map_mut().get_mut(*key) {
                                    Some(v) => {
                                        v.clear();
                                        v.extend_from_slice(c);
                                    }
                                    None => {
                                        self.tx.map_mut().insert((*key).to_owned(), c.clone());
                                    }
                                }
                            }
                            None if self.tx.digits & (1 << i) != 0 => {
                                self.tx.digits &= !(1 << i);
                                self.tx.map_mut().remove(*key);
                            }
                            None => {}
                        }
                    }
                }
            }
            // MATCHED_VAR keeps its buffers; MATCHED_VARS takes the found ones: no copies.
            self.matched_var.0.clear();
            self.matched_var.0.push_str(&f.name);
            self.matched_var.1.clear();
            self.matched_var.1.extend_from_slice(&f.value);
            self.matched_vars.push((f.name, f.value));
            if !rule.effects.is_empty() {
                self.run_effects(rule);
            }
        }
        self.found = found;
        any
    }

    /// The values a rule's operator matches (after its transformations), each with its name
    /// and captures, in `found`; the names and values fill buffers from `spare`.
    fn found_values(
        &self,
        rule: &'p Rule,
        head: &'p Rule,
        operator: &'p crate::operator::CompiledOperator,
        found: &mut Vec<Found>,
        spare: &mut Pairs,
    ) {
        let capture = rule.capture && !operator.negated;
        // A match takes a (name, value) pair from `spare`, so matching allocates only while
        // a transaction holds more matched values at once than it did before.
        let mut keep = |item: &Item<'_>, value: &[u8], result: Option<crate::operator::OpMatch>| {
            let (mut name, mut copy) = take_pair(spare);
            item.write_name(&mut name);
            copy.extend_from_slice(value);
            found.push(Found {
                name,
                value: copy,
                captures: result.map(|m| m.captures),
            });
        };
        self.for_each_value(rule, head, &mut |item| {
            if !rule.multi_match {
                let value = match rule.changes {
                    // Nothing in the chain acts on the value's bytes: it is its own result.
                    Some(c)
                        if !rule.transformations.is_empty()
                            && crate::prefilter::classes_of(&item.value) & c == 0 =>
                    {
                        Transformed::Borrowed(item.value.as_ref())
                    }
                    _ => self.transformed(
                        &item,
                        &rule.transformations,
                        &rule.transform_ids,
                        rule.transformations.len(),
                    ),
                };
                let result = operator.run(&value, capture, self);
                if result.is_some() != operator.negated {
                    keep(&item, &value, result);
                }
                return;
            }
            // multiMatch, as ModSecurity v2 runs it: the operator sees the original value
            // and the value after every transformation that changed it.
            let mut previous = Transformed::Borrowed(item.value.as_ref());
            for n in 0..=rule.transformations.len() {
                let candidate =
                    self.transformed(&item, &rule.transformations, &rule.transform_ids, n);
                if n > 0 && *candidate == *previous {
                    continue;
                }
                let result = operator.run(&candidate, capture, self);
                if result.is_some() != operator.negated {
                    keep(&item, &candidate, result);
                }
                previous = candidate;
            }
        });
    }

    /// [`Self::found_values`] for a rule that compares TX variables with a number.
    fn scalar_found(
        &self,
        test: &crate::compile::ScalarTest,
        found: &mut Vec<Found>,
        spare: &mut Pairs,
    ) {
        use crate::compile::Operand;
        let operand = match &test.operand {
            Operand::Number(n) => *n,
            Operand::Tx(key) => self.tx.get(key).map_or(0, |v| atoi(v)),
        };
        for read in &test.reads {
            let value = self.tx_read(read);
            let (number, text): (i64, &[u8]) = match (read.count, &value) {
                (true, Some(_)) => (1, b"1"),
                (true, None) => (0, b"0"),
                (false, Some(v)) => (atoi(v.bytes()), v.bytes()),
                (false, None) => continue,
            };
            if test.compare.holds(number, operand) != test.negated {
                let (mut name, mut copy) = take_pair(spare);
                name.push_str(&read.name);
                copy.extend_from_slice(text);
                found.push(Found {
                    name,
                    value: copy,
                    captures: None,
                });
            }
        }
    }

    /// A TX variable a scalar test reads. CRS reads the same few (its paranoia level above
    /// all) a hundred and fifty times a request with TX unchanged in between: a short value
    /// is remembered by the key's slot until TX changes, and read again without a lookup.
    fn tx_read(&self, read: &crate::compile::ScalarRead) -> Option<TxValue<'_>> {
        let memo = self.tx_reads.get(read.slot as usize);
        if let Some(m) = memo.map(std::cell::Cell::get) {
            if m.version == self.tx.version {
                return m.value.map(|(bytes, len)| TxValue::Short(bytes, len));
            }
        }
        let value = self.tx.get(&read.key).map(Vec::as_slice);
        if let Some(memo) = memo {
            let short = match value {
                None => Some(None),
                Some(v) if v.len() <= TX_SHORT => {
                    let mut bytes = [0; TX_SHORT];
                    bytes[..v.len()].copy_from_slice(v);
                    Some(Some((bytes, v.len() as u8)))
                }
                Some(_) => None,
            };
            if let Some(value) = short {
                memo.set(TxRead {
                    version: self.tx.version,
                    value,
                });
            }
        }
        value.map(TxValue::Table)
    }

    /// Empties MATCHED_VARS, keeping its buffers for the next matches.
    fn clear_matched_vars(&mut self) {
        self.spare.append(&mut self.matched_vars);
    }

    /// A value after the first `n` of a rule's transformations, from the per-transaction cache
    /// when the value cannot change during the transaction (request data, not TX and
    /// friends). Each prefix of the chain is cached on the way, so rules whose chains begin
    /// alike share the work.
    fn transformed<'a>(
        &self,
        item: &'a Item<'a>,
        transformations: &[crate::transform::Transformation],
        ids: &[u32],
        n: usize,
    ) -> Transformed<'a> {
        self.transformed_after(item, transformations, ids, n, 0)
    }

    /// [`Transaction::transformed`], told that the chain's first `same` steps leave this value
    /// byte for byte as it is: those steps are neither run nor looked up.
    fn transformed_after<'a>(
        &self,
        item: &'a Item<'a>,
        transformations: &[crate::transform::Transformation],
        ids: &[u32],
        n: usize,
        same: usize,
    ) -> Transformed<'a> {
        if n <= same {
            return Transformed::Borrowed(item.value.as_ref());
        }
        if !(item.cacheable && matches!(item.value, Cow::Borrowed(_))) {
            return match crate::transform::apply_all(&transformations[..n], &item.value) {
                Cow::Borrowed(b) => Transformed::Borrowed(b),
                Cow::Owned(v) => Transformed::Owned(v),
            };
        }
        let key = (item.value.as_ptr() as usize, item.value.len(), ids[n - 1]);
        if let Some(v) = self.transform_cache.borrow().get(&key) {
            return match v {
                Some(shared) => Transformed::Shared(shared.clone()),
                None => Transformed::Borrowed(item.value.as_ref()),
            };
        }
        let base = self.transformed_after(item, transformations, ids, n - 1, same);
        let changed = match transformations[n - 1].apply(&base) {
            Cow::Borrowed(_) => None,
            // Some transformations always write (`cmdLine`, `normalizePath`...): an unchanged
            // copy is not kept, and the next steps see the value they had.
            Cow::Owned(v) if v == *base => None,
            Cow::Owned(v) => Some(v),
        };
        // The cache holds `None` for "the original value", never a copy of it.
        let (entry, result) = match (changed, base) {
            (None, Transformed::Borrowed(b)) => (None, Transformed::Borrowed(b)),
            (None, Transformed::Shared(shared)) => {
                (Some(shared.clone()), Transformed::Shared(shared))
            }
            (Some(v), _) | (None, Transformed::Owned(v)) => {
                let shared: Rc<[u8]> = v.into();
                (Some(shared.clone()), Transformed::Shared(shared))
            }
        };
        self.transform_cache.borrow_mut().insert(key, entry);
        result
    }

    /// Whether the rule in `slot` of the phase's prefilter may match: its group is searched
    /// the first time one of its rules is reached (see [`crate::prefilter`]).
    fn may_match(&mut self, filter: &crate::prefilter::PhaseFilter, slot: u32) -> bool {
        let Some(&g) = filter.group_of.get(slot as usize) else {
            return true;
        };
        if !self.searched.has(g) {
            self.searched.set(g);
            if let Some(group) = filter.groups.get(g as usize) {
                self.search_group(filter, group);
            }
        }
        self.possible.has(slot)
    }

    /// Searches a group's values for its rules' literals and records which rules may match.
    /// Out of line: it runs once per group and phase, and inlined it would crowd the rule loop.
    #[inline(never)]
    fn search_group(
        &mut self,
        filter: &crate::prefilter::PhaseFilter,
        group: &crate::prefilter::Group,
    ) {
        use crate::prefilter::Bits;
        let mut possible = std::mem::take(&mut self.possible);
        let mut summaries = std::mem::take(&mut self.summaries);
        let mut summarized = std::mem::take(&mut self.summarized);
        let mut items = recycle(std::mem::take(&mut self.items));
        let mut found = std::mem::take(&mut self.met);
        found.reset(filter.slots);
        let width = Bits::words_for(filter.slots);
        for source in &group.sources {
            let id = source.id as usize;
            let Some(summary) = summaries.get_mut(id) else {
                // Ids index the phase's variables, so this cannot happen; were it to, every
                // reader may match (skipping one unseen would not be exact).
                possible.add_all(source);
                continue;
            };
            let mut collected = false;
            if !summarized.has(source.id) {
                summarized.set(source.id);
                items.clear();
                self.collect(&source.target, &mut |item| items.push(item));
                collected = true;
                let literals = filter
                    .literals_of_source
                    .get(id)
                    .copied()
                    .flatten()
                    .and_then(|at| filter.source_literals.get(at as usize));
                summary.classes = 0;
                summary.searched = literals.is_some();
                summary.hits.clear();
                summary.hits.resize(width, 0);
                summary.classes_each.clear();
                summary.hits_each.clear();
                for item in &items {
                    let raw = item.value.as_ref();
                    let c = crate::prefilter::classes_of(raw);
                    summary.classes |= c;
                    summary.classes_each.push(c);
                    if let Some(l) = literals {
                        let at = summary.hits_each.len();
                        summary.hits_each.resize(at + width, 0);
                        let h = &mut summary.hits_each[at..];
                        l.search(raw, h);
                        crate::prefilter::union_words(&mut summary.hits, h);
                    }
                }
            }
            let summary = &*summary;
            if summary.searched && group.acts_on.is_some_and(|c| c & summary.classes == 0) {
                // No value changes on the way: what they hold as they are is what counts.
                possible.add_single(&summary.hits, source);
                if !source.combined.is_empty() {
                    // Rules with several conditions need them met by one value.
                    for h in summary.hits_each.chunks(width) {
                        possible.add_combined(h, source);
                    }
                }
                continue;
            }
            if !collected {
                items.clear();
                self.collect(&source.target, &mut |item| items.push(item));
            }
            debug_assert_eq!(items.len(), summary.classes_each.len());
            for (k, (item, classes)) in items.iter().zip(&summary.classes_each).enumerate() {
                let raw = item.value.as_ref();
                let hits = summary
                    .searched
                    .then(|| summary.hits_each.get(k * width..(k + 1) * width))
                    .flatten();
                let untouched = group.acts_on.is_some_and(|c| c & classes == 0);
                if let (true, Some(hits)) = (untouched, hits) {
                    possible.add_met(hits, source);
                    continue;
                }
                // The value the group's rules see: after the whole chain, or after each step
                // for multiMatch rules. One that differs from the original only in case is
                // the same to the search.
                found.clear_in(source.words.clone());
                // The leading steps that change none of the value's bytes (case included).
                let unchanged = group
                    .prefix_changes
                    .iter()
                    .take_while(|c| c.is_some_and(|c| c & classes == 0))
                    .count();
                let steps = group.transformations.len();
                let first = if group.multi_match { 0 } else { steps };
                for n in first..=steps {
                    // A prefix that leaves the value as it was (case aside): its hits are known.
                    let same = n == 0
                        || group
                            .prefix_acts_on
                            .get(n - 1)
                            .copied()
                            .flatten()
                            .is_some_and(|c| c & classes == 0);
                    if let (true, Some(hits)) = (same, hits) {
                        found.union_in(hits, source.words.clone());
                        continue;
                    }
                    let value = self.transformed_after(
                        item,
                        &group.transformations,
                        &group.transform_ids,
                        n,
                        unchanged,
                    );
                    match (value.eq_ignore_ascii_case(raw), hits) {
                        (true, Some(hits)) => found.union_in(hits, source.words.clone()),
                        _ => group.literals.search(&value, found.words_mut()),
                    }
                }
                possible.add_met(found.words(), source);
            }
        }
        let items = recycle(items);
        self.met = found;
        self.summarized = summarized;
        self.summaries = summaries;
        self.items = items;
        self.possible = possible;
    }

    fn run_effects(&mut self, rule: &Rule) {
        for effect in &rule.effects {
            match effect {
                Effect::SetVar {
                    collection,
                    key,
                    fixed_key,
                    op,
                } => {
                    // The new value goes through a buffer of the transaction's: it may be read
                    // from the very table it is written to (`setvar:tx.a=%{tx.b}`).
                    let mut value = std::mem::take(&mut self.scratch);
                    value.clear();
                    // Keys are stored lower-cased; most are written in the rule. One with
                    // macros is built in a spare (name, value) pair, given back after.
                    let mut built = None;
                    let key: &str = match (fixed_key, &mut built) {
                        (Some(k), _) => k,
                        (None, built) => {
                            key.expand_into(self, &mut value);
                            let (mut name, empty) = take_pair(&mut self.spare);
                            name.push_str(&String::from_utf8_lossy(&value));
                            name.make_ascii_lowercase();
                            value.clear();
                            &built.insert((name, empty)).0
                        }
                    };
                    // `+=` / `-=`: what to add (the current value is read where it is written).
                    let delta = match op {
                        SetVarOp::Delete => None,
                        SetVarOp::Set(v) => {
                            v.expand_into(self, &mut value);
                            value.truncate(MAX_VARIABLE_LEN);
                            None
                        }
                        SetVarOp::Add(v) => Some(atoi(&v.expand(self))),
                        SetVarOp::Sub(v) => Some(atoi(&v.expand(self)).saturating_neg()),
                    };
                    if collection != "TX" && !self.opened.is_empty() {
                        self.note_change(collection, key, op, delta);
                    }
                    let mut spare = std::mem::take(&mut self.spare);
                    if collection == "TX" {
                        self.tx.may_set(key);
                    }
                    let map = self.collection_mut(collection);
                    if matches!(op, SetVarOp::Delete) {
                        map.remove(key);
                    } else if let Some(slot) = map.get_mut(key) {
                        // In place: the key and the buffer are reused.
                        match delta {
                            Some(by) => {
                                let n = atoi(slot).saturating_add(by);
                                slot.clear();
                                write_number(slot, n);
                            }
                            None => {
                                slot.clear();
                                slot.extend_from_slice(&value);
                            }
                        }
                    } else {
                        // A new variable takes a key and a buffer left by an earlier one.
                        let (mut k, mut v) = take_pair(&mut spare);
                        k.push_str(key);
                        match delta {
                            Some(by) => write_number(&mut v, by),
                            None => v.extend_from_slice(&value),
                        }
                        map.insert(k, v);
                    }
                    spare.extend(built);
                    self.spare = spare;
                    self.scratch = value;
                }
                Effect::InitCol { collection, key } => self.open_collection(collection, key),
                // Within a transaction nothing expires: the lifetime starts when it is stored.
                Effect::ExpireVar {
                    collection,
                    key,
                    seconds,
                } => {
                    let seconds = atoi(&seconds.expand(self)).max(0) as u64;
                    let key = String::from_utf8_lossy(&key.expand(self)).to_ascii_lowercase();
                    if let Some((.., changes)) =
                        self.opened.iter_mut().find(|(c, ..)| c == collection)
                    {
                        changes.expire.insert(key, seconds);
                    }
                }
                Effect::SetEnv { name, value } => {
                    let name = String::from_utf8_lossy(&name.expand(self)).into_owned();
                    let value = value.expand(self).into_owned();
                    self.env.insert(name, value);
                }
                Effect::Ctl(ctl) => self.apply_ctl(ctl),
            }
        }
    }

    /// `initcol`: the collection's stored record becomes the transaction's (once per
    /// collection, as in ModSecurity: a second `initcol` of the same one is ignored).
    fn open_collection(&mut self, collection: &str, key: &MacroString) {
        if matches!(collection, "TX" | "ENV") || self.collections.contains_key(collection) {
            return;
        }
        let Some(store) = self.persist else {
            self.collections.entry(collection.to_owned()).or_default();
            return;
        };
        let key = String::from_utf8_lossy(&key.expand(self)).into_owned();
        let mut vars = HashMap::default();
        store.load_into(
            collection,
            &key,
            self.plan.settings.collection_timeout,
            &mut vars,
        );
        self.collections.insert(collection.to_owned(), vars);
        self.opened
            .push((collection.to_owned(), key, Default::default()));
    }

    /// Remembers how a `setvar` changed an opened persistent collection, for the merge.
    /// Records a change to a persistent collection: `delta` for `+=`/`-=`, what it added.
    fn note_change(&mut self, collection: &str, key: &str, op: &SetVarOp, delta: Option<i64>) {
        let delta = match op {
            SetVarOp::Add(_) | SetVarOp::Sub(_) => delta,
            SetVarOp::Set(_) | SetVarOp::Delete => None,
        };
        let Some((.., changes)) = self.opened.iter_mut().find(|(c, ..)| c == collection) else {
            return;
        };
        match delta {
            Some(d) if !changes.set.contains(key) => {
                let net = changes.deltas.entry(key.to_owned()).or_default();
                *net = net.saturating_add(d);
            }
            Some(_) => {}
            None => {
                changes.set.insert(key.to_owned());
            }
        }
    }

    fn collection_mut(&mut self, name: &str) -> &mut HashMap<String, Vec<u8>> {
        match name {
            "TX" => self.tx.map_mut(),
            "ENV" => &mut self.env,
            other => self.collections.entry(other.to_owned()).or_default(),
        }
    }

    fn apply_ctl(&mut self, ctl: &Ctl) {
        match ctl {
            Ctl::RuleEngine(mode) => self.engine = *mode,
            Ctl::RuleRemoveById(ids) => self.removed_ids.extend(ids.iter().copied()),
            Ctl::RuleRemoveByTag(re) => self.removed_tags.push(re.clone()),
            Ctl::RuleRemoveTargetById(ids, t) => {
                self.removed_targets.push((ids.clone(), t.clone()))
            }
            Ctl::RuleRemoveTargetByTag(re, t) => {
                self.removed_targets_by_tag.push((re.clone(), t.clone()))
            }
            Ctl::RequestBodyProcessor(p) => self.set_processor(Some(*p)),
            Ctl::RequestBodyAccess(on) => self.request_body_access = *on,
            Ctl::RequestBodyLimit(n) => self.request_body_limit = *n,
            Ctl::ForceRequestBodyVariable(on) => self.force_body_variable = *on,
            Ctl::Audit => {}
        }
    }

    /// Applies a matched rule's disruptive action; returns whether the phase stops.
    fn apply_disruptive(&mut self, rule: &Rule, phase: u8) -> bool {
        if self.engine != EngineMode::On {
            return false;
        }
        let (action, status, redirect) = match &rule.disruptive {
            Disruptive::Pass | Disruptive::Block => return false,
            Disruptive::Allow(scope) => {
                match scope {
                    AllowScope::All => self.allowed = true,
                    AllowScope::Request if phase <= 2 => self.allowed = true,
                    _ => {}
                }
                return true;
            }
            Disruptive::Deny => ("deny", rule.status.unwrap_or(403), None),
            Disruptive::Drop => ("drop", rule.status.unwrap_or(403), None),
            Disruptive::Redirect(to) => (
                "redirect",
                rule.status
                    .filter(|s| (300..400).contains(s))
                    .unwrap_or(302),
                Some(String::from_utf8_lossy(&to.expand(self)).into_owned()),
            ),
        };
        self.interruption = Some(Interruption {
            status,
            rule_id: rule.id,
            action,
            redirect,
        });
        true
    }
}

/// An empty buffer of items with another lifetime, keeping its allocation: values borrow the
/// transaction only while one rule reads them, and the buffer outlives each of those borrows.
/// (Collecting a `Vec`'s emptied iterator into one of the same layout reuses its memory.)
#[allow(clippy::unnecessary_filter_map)] // The map is what changes the lifetime.
fn recycle<'b>(mut items: Vec<Item<'_>>) -> Vec<Item<'b>> {
    items.clear();
    items.into_iter().filter_map(|_| None).collect()
}

/// Writes a number in decimal, as `setvar` stores counters (by hand: CRS adds to its scores
/// dozens of times a request, and the formatting machinery cost more than the addition).
fn write_number(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    out.extend_from_slice(&digits[at..]);
}

/// TX:0..TX:9, where captures go.
const CAPTURE_KEYS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compile::compile_str;
    use std::path::Path;

    fn plan(rules: &str) -> Plan {
        compile_str(rules, Path::new("t.conf")).unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn numbers_are_written_as_formatting_writes_them() {
        for n in [0, 7, -7, 10, -305, 1_000_000, i64::MAX, i64::MIN] {
            let mut out = b"x".to_vec();
            write_number(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes());
        }
    }

    fn get(uri: &str) -> Request {
        Request {
            method: b"GET".to_vec(),
            uri: uri.as_bytes().to_vec(),
            protocol: b"HTTP/1.1".to_vec(),
            headers: vec![("Host".into(), b"localhost".to_vec())],
            remote_addr: "192.0.2.1".into(),
            ..Request::default()
        }
    }

    fn ids(tx: &Transaction) -> Vec<u64> {
        tx.matches.iter().map(|m| m.id).collect()
    }

    #[test]
    fn a_capture_clears_the_groups_it_did_not_capture() {
        // TX:1 set by a two-group capture, TX:3 by setvar: a one-group capture leaves only
        // TX:0, as ModSecurity does; TX:4 was never set and stays unset.
        let p = plan(
            r#"SecRule ARGS:a "@rx (x)(y)" "id:1,phase:1,pass,nolog,capture,setvar:tx.3=set"
SecRule ARGS:b "@rx z" "id:2,phase:1,pass,nolog,capture"
SecRule TX:1 "@rx ." "id:3,phase:1,pass,log"
SecRule TX:3 "@rx ." "id:4,phase:1,pass,log"
SecRule TX:0 "@streq z" "id:5,phase:1,pass,log"
SecRule &TX:4 "@eq 0" "id:6,phase:1,pass,log""#,
        );
        let tx = Transaction::evaluate_request(&p, &get("/?a=xy&b=z"));
        assert_eq!(ids(&tx), [5, 6]);
        assert_eq!(tx.tx_value("1"), None);
        // Without the second capture both stay.
        let tx = Transaction::evaluate_request(&p, &get("/?a=xy"));
        assert_eq!(ids(&tx), [3, 4, 6]);
    }

    #[test]
    fn the_prelude_leaves_what_its_rules_would() {
        // Rules 1-4 read and write only TX (a default, a macro, a capture, a skip): run once
        // when the plan is built. Rule 5 reads the request; 6 reads what the prelude left in
        // MATCHED_VAR_NAME and TX:1.
        let rules = r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=4"
SecRule &TX:b "@eq 0" "id:2,phase:1,pass,nolog,setvar:tx.b=%{tx.a}0"
SecRule TX:b "@rx (4)" "id:3,phase:1,pass,nolog,capture,setvar:tx.c=+%{tx.1}"
SecRule TX:a "@eq 4" "id:4,phase:1,pass,nolog,skipAfter:END"
SecAction "id:40,phase:1,pass,nolog,setvar:tx.c=100"
SecMarker END
SecRule ARGS "@rx ." "id:5,phase:1,pass,log,setvar:tx.c=+1"
SecRule MATCHED_VAR_NAME "@streq TX:a" "id:6,phase:1,pass,log,chain"
    SecRule TX:1 "@streq 4" "setvar:tx.seen=%{tx.c}""#;
        let p = plan(rules);
        assert_eq!(p.stats.prelude, 5, "rules 1-4 and 40, which 4 skips");
        for uri in ["/", "/?x=y", "/?x=y&z=w"] {
            let tx = Transaction::evaluate_request(&p, &get(uri));
            let full = plan(rules).without_shortcuts();
            let plain = Transaction::evaluate_request(&full, &get(uri));
            assert_eq!(ids(&tx), ids(&plain), "{uri}");
            for key in ["a", "b", "c", "1", "seen"] {
                assert_eq!(tx.tx_value(key), plain.tx_value(key), "{uri}: TX:{key}");
            }
        }
        let tx = Transaction::evaluate_request(&p, &get("/"));
        assert_eq!(ids(&tx), [6]);
        assert_eq!(tx.tx_value("seen"), Some(&b"4"[..]));
        let tx = Transaction::evaluate_request(&p, &get("/?x=y"));
        assert_eq!(tx.tx_value("c"), Some(&b"5"[..]));
        // A leading rule that logs, or reads the request, ends the prelude where it stands.
        let p = plan(
            r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=1"
SecRule TX:a "@eq 1" "id:2,phase:1,pass,log"
SecAction "id:3,phase:1,pass,nolog,setvar:tx.b=1""#,
        );
        assert_eq!(p.stats.prelude, 1);
        let tx = Transaction::evaluate_request(&p, &get("/"));
        assert_eq!(ids(&tx), [2]);
        assert_eq!(tx.tx_value("b"), Some(&b"1"[..]));
        let p = plan(
            r#"SecAction "id:1,phase:1,pass,nolog,setvar:tx.a=1"
SecRule TX:a "@eq 1" "id:2,phase:1,deny,status:406,nolog"
SecAction "id:3,phase:1,pass,nolog,setvar:tx.b=1""#,
        );
        assert_eq!(p.stats.prelude, 1);
        let tx = Transaction::evaluate_request(&p, &get("/"));
        assert_eq!(tx.interruption.as_ref().map(|i| i.status), Some(406));
        assert_eq!(tx.tx_value("b"), None);
        let p = plan(
            r#"SecRule REQUEST_URI "@rx ." "id:1,phase:1,pass,nolog,setvar:tx.a=1"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.b=1""#,
        );
        assert_eq!(p.stats.prelude, 0);
    }

    /// The plan's outcome equals the one evaluating every rule, on each request.
    fn same_as_without_shortcuts(rules: &str, requests: &[Request]) {
        let p = plan(rules);
        let full = plan(rules).without_shortcuts();
        for r in requests {
            let tx = Transaction::evaluate_request(&p, r);
            let plain = Transaction::evaluate_request(&full, r);
            let data = |t: &Transaction| {
                t.matches
                    .iter()
                    .map(|m| (m.id, m.data.clone()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(data(&tx), data(&plain), "{r:?}");
            for key in ["a", "b", "c"] {
                assert_eq!(tx.tx_value(key), plain.tx_value(key), "{r:?}: TX:{key}");
            }
        }
    }

    #[test]
    fn rules_the_prelude_stands_aside_for_run_in_every_transaction() {
        // 1 and 4 read the request but neither TX nor MATCHED_VAR: they run per transaction,
        // 2 and 3 once. 4 may match after the prelude's last match (3), MATCHED_VAR would
        // then be its: the prelude ends before it.
        let rules = r#"SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "^application/json" "id:1,phase:1,pass,nolog,t:lowercase,ctl:requestBodyProcessor=JSON"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.a=1"
SecRule TX:a "@eq 1" "id:3,phase:1,pass,nolog,setvar:tx.b=2"
SecRule ARGS:q "@rx ." "id:4,phase:1,pass,log"
SecAction "id:5,phase:1,pass,nolog,setvar:tx.c=3"
SecRule MATCHED_VAR_NAME "@rx ^(?:ARGS:q|TX:a)$" "id:6,phase:1,pass,log,capture,logdata:'%{TX.0}'"
SecRule ARGS:json.x "@eq 1" "id:8,phase:2,pass,log""#;
        assert_eq!(plan(rules).stats.prelude, 2, "rules 2 and 3");
        let mut json = get("/?q=v");
        json.headers
            .push(("Content-Type".into(), b"Application/JSON".to_vec()));
        json.method = b"POST".to_vec();
        json.body = br#"{"x": 1}"#.to_vec();
        same_as_without_shortcuts(rules, &[get("/"), get("/?q=v"), json.clone()]);
        let p = plan(rules);
        let tx = Transaction::evaluate_request(&p, &get("/?q=v"));
        assert_eq!(ids(&tx), [4, 6]);
        assert_eq!(tx.matches[1].data, "ARGS:q", "4 matched after 3");
        let tx = Transaction::evaluate_request(&p, &get("/"));
        assert_eq!(ids(&tx), [6]);
        assert_eq!(tx.matches[0].data, "TX:a", "3 matched last");
        assert_eq!(ids(&Transaction::evaluate_request(&p, &json)), [4, 6, 8]);

        // What a prelude's `ctl` changes holds for the rules after it; a rule set aside
        // after a `ctl` ends the prelude (the rule it removes would then be run).
        let rules = r#"SecRule ARGS:q "@rx ." "id:1,phase:1,pass,log"
SecAction "id:2,phase:1,pass,nolog,setvar:tx.a=1,ctl:ruleRemoveById=4-5,ctl:ruleRemoveTargetById=6;ARGS:q"
SecAction "id:3,phase:1,pass,nolog,setvar:tx.b=2"
SecRule ARGS:q "@rx ." "id:4,phase:1,pass,log"
SecRule ARGS "@rx ." "id:5,phase:1,pass,log"
SecRule ARGS "@rx ." "id:6,phase:1,pass,log""#;
        assert_eq!(plan(rules).stats.prelude, 2, "rules 2 and 3");
        same_as_without_shortcuts(rules, &[get("/"), get("/?q=v"), get("/?q=v&r=w")]);
        let p = plan(rules);
        let tx = Transaction::evaluate_request(&p, &get("/?q=v"));
        assert_eq!(ids(&tx), [1]);
        let tx = Transaction::evaluate_request(&p, &get("/?q=v&r=w"));
        assert_eq!(ids(&tx), [1, 6]);
    }

    #[test]
    fn a_variable_doubled_again_and_again_stays_bounded() {
        let mut rules = String::from("SecAction \"id:1,phase:1,pass,nolog,setvar:tx.a=xy\"\n");
        for id in 2..60 {
            rules.push_str(&format!(
                "SecAction \"id:{id},phase:1,pass,nolog,setvar:tx.a=%{{tx.a}}%{{tx.a}}\"\n"
            ));
        }
        rules.push_str("SecRule TX:a \"@rx ^(?:xy)+$\" \"id:100,phase:1,pass,log\"\n");
        let p = plan(&rules);
        assert_eq!(
            p.stats.prelude, 59,
            "the doubling runs when the plan is built"
        );
        let tx = Transaction::evaluate_request(&p, &get("/"));
        assert_eq!(tx.tx_value("a").map(<[u8]>::len), Some(MAX_VARIABLE_LEN));
        assert_eq!(ids(&tx), [100]);
    }

    #[test]
    fn args_are_decoded_and_transformed() {
        let p = plan(
            r#"SecRule ARGS "@rx <script" "id:1,phase:2,deny,t:none,t:lowercase,msg:'XSS in %{MATCHED_VAR_NAME}'"
SecRule ARGS_NAMES "@streq token" "id:2,phase:1,pass,log""#,
        );
        let tx = Transaction::evaluate_request(&p, &get("/?q=%3CSCRIPT%3Ealert(1)&token=x"));
        assert_eq!(ids(&tx), [2, 1]);
        assert_eq!(tx.matches[1].msg, "XSS in ARGS:q");
        let i = tx.interruption.as_ref().unwrap();
        assert_eq!((i.status, i.rule_id), (403, 1));
    }

    #[test]
    fn chains_setvar_skip_after_and_counting() {
        let p = plan(
            r#"SecAction "id:10,phase:1,pass,nolog,setvar:tx.score=0"
SecRule REQUEST_METHOD "@streq GET" "id:11,phase:1,pass,nolog,chain"
    SecRule &ARGS "@ge 2" "setvar:tx.score=+3"
SecRule TX:SCORE "@lt 1" "id:12,phase:1,pass,nolog,skipAfter:END"
SecRule ARGS "@rx ." "id:13,phase:1,pass,log,setvar:tx.score=+1"
SecMarker END
SecRule TX:score "@ge 5" "id:14,phase:1,deny,status:406,log""#,
        );
        let tx = Transaction::evaluate_request(&p, &get("/?a=1&b=2"));
        assert_eq!(
            tx.tx_value("score"),
            Some(&b"5"[..]),
            "3 + one per matching argument"
        );
        assert_eq!(ids(&tx), [13, 14]);
        assert_eq!(tx.interruption.as_ref().unwrap().status, 406);
        let tx = Transaction::evaluate_request(&p, &get("/?a=1"));
        assert_eq!(tx.tx_value("score"), Some(&b"0"[..]));
        assert!(ids(&tx).is_empty(), "rule 13 skipped");
    }

    #[test]
    fn exclusions_and_ctl_removals() {
        let p = plan(
            r#"SecRule REQUEST_URI "@beginsWith /login" "id:1,phase:1,pass,nolog,ctl:ruleRemoveTargetById=3;ARGS:password"
SecRule ARGS|!ARGS:safe "@contains bad" "id:2,phase:1,pass,log"
SecRule ARGS "@contains bad" "id:3,phase:1,pass,log""#,
        );
        let tx = Transaction::evaluate_request(&p, &get("/login?safe=bad&password=bad"));
        assert_eq!(ids(&tx), [2, 3]);
        assert_eq!(
            tx.matches[0].variable, "ARGS:password",
            "!ARGS:safe excluded safe"
        );
        assert_eq!(
            tx.matches[1].variable, "ARGS:safe",
            "the ctl removed password from rule 3"
        );
    }

    #[test]
    fn patterns_with_macros_follow_each_transactions_values() {
        let p = plan(
            r#"SecRule ARGS:allow "@rx ." "id:1,phase:1,pass,nolog,setvar:tx.allowed=%{MATCHED_VAR}"
SecRule ARGS:v "!@rx ^(?:%{tx.allowed})$" "id:2,phase:1,deny,log"
SecRule ARGS:v "@rx %{tx.allowed}" "id:3,phase:1,pass,log""#,
        );
        for _ in 0..2 {
            let tx = Transaction::evaluate_request(&p, &get("/?allow=a|b&v=b"));
            assert_eq!(ids(&tx), [3], "b is allowed");
            let tx = Transaction::evaluate_request(&p, &get("/?allow=a|c&v=b"));
            assert_eq!(
                ids(&tx),
                [2],
                "b is not allowed: the pattern is the new expansion"
            );
        }
        let tx = Transaction::evaluate_request(&p, &get("/?allow=(&v=("));
        assert!(
            !ids(&tx).contains(&3),
            "an expansion that does not compile matches nothing"
        );
    }

    #[test]
    fn multi_match_sees_the_original_and_every_change() {
        let p = plan(
            r#"SecRule ARGS "@contains a" "id:1,phase:1,pass,nolog,multiMatch,t:lowercase,t:urlDecode,setvar:tx.n=+1"
SecRule ARGS "@contains a" "id:2,phase:1,pass,nolog,t:lowercase,setvar:tx.m=+1""#,
        );
        let tx = Transaction::evaluate_request(&p, &get("/?x=a"));
        assert_eq!(
            tx.tx_value("n"),
            Some(&b"1"[..]),
            "unchanged values are not seen again"
        );
        let tx = Transaction::evaluate_request(&p, &get("/?x=A%2561"));
        assert_eq!(
            tx.tx_value("n"),
            Some(&b"2"[..]),
            "after t:lowercase (a%61) and after t:urlDecode (aa), not the original"
        );
        assert_eq!(
            tx.tx_value("m"),
            Some(&b"1"[..]),
            "the same prefix, cached, for rule 2"
        );
    }

    #[test]
    fn detection_only_logs_without_interrupting() {
        let p = plan("SecRuleEngine DetectionOnly\nSecRule ARGS \"@rx x\" \"id:1,phase:1,deny\"");
        let tx = Transaction::evaluate_request(&p, &get("/?a=x"));
        assert_eq!(ids(&tx), [1]);
        assert!(tx.interruption.is_none());
    }

    #[test]
    fn bodies_become_arguments() {
        let p = plan(
            r#"SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "application/json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule ARGS:json.user.name "@streq admin" "id:2,phase:2,pass,log"
SecRule REQBODY_ERROR "!@eq 0" "id:3,phase:2,pass,log""#,
        );
        let mut r = get("/api");
        r.method = b"POST".to_vec();
        r.headers
            .push(("Content-Type".into(), b"application/json".to_vec()));
        r.body = br#"{"user":{"name":"admin"}}"#.to_vec();
        assert_eq!(ids(&Transaction::evaluate_request(&p, &r)), [2]);
        r.body = b"{broken".to_vec();
        assert_eq!(ids(&Transaction::evaluate_request(&p, &r)), [3]);
    }
}
