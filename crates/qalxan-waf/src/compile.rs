//! From parsed directives to a [`Plan`]: the rules of each phase in order, with default actions
//! merged in, chains linked, markers placed, removals and updates applied, operators compiled
//! and every macro parsed. A plan is immutable; many threads evaluate one at once, and a new
//! rule set means a new plan swapped in whole.

use crate::macros::MacroString;
use crate::operator::{CompiledOperator, Regexp};
use crate::syntax::{
    Action, DirectiveKind, IdRange, Location, RuleFile, RuleSelector, Selector, SyntaxError,
    Variable,
};
use crate::transform::Transformation;
use std::collections::{HashMap, HashSet};

use std::path::Path;

/// Whether rules run and may interrupt transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineMode {
    On,
    Off,
    DetectionOnly,
}

/// How the request body is parsed into variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyProcessor {
    UrlEncoded,
    Multipart,
    Json,
    Xml,
}

/// Engine settings from the `Sec...` configuration directives.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub engine: EngineMode,
    pub request_body_access: bool,
    /// Largest request body inspected, files included.
    pub request_body_limit: usize,
    /// Largest request body without files.
    pub request_body_no_files_limit: usize,
    /// Past the limit: refuse the request (`Reject`) or inspect only the start.
    pub request_body_limit_reject: bool,
    pub response_body_access: bool,
    pub response_body_limit: usize,
    pub response_body_mime_types: Vec<String>,
    pub argument_separator: u8,
    pub arguments_limit: usize,
    pub json_depth_limit: usize,
    /// Seconds a persistent collection's record lives after its last update.
    pub collection_timeout: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            engine: EngineMode::On,
            request_body_access: false,
            request_body_limit: 13_107_200,
            request_body_no_files_limit: 1_048_576,
            request_body_limit_reject: true,
            response_body_access: false,
            response_body_limit: 524_288,
            response_body_mime_types: vec!["text/plain".into(), "text/html".into()],
            argument_separator: b'&',
            arguments_limit: 1000,
            json_depth_limit: 512,
            collection_timeout: 3600,
        }
    }
}

/// What a rule does to the transaction when it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Disruptive {
    Pass,
    Deny,
    Drop,
    /// `allow` (whole transaction), `allow:request` or `allow:phase`.
    Allow(AllowScope),
    Redirect(MacroString),
    /// The phase's default disruptive action (`SecDefaultAction`).
    Block,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AllowScope {
    All,
    Request,
    Phase,
}

/// The collections the evaluator reads, resolved once from their names so evaluation
/// dispatches on a number instead of comparing strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coll {
    Args,
    ArgsGet,
    ArgsPost,
    ArgsNames,
    ArgsGetNames,
    ArgsPostNames,
    RequestHeaders,
    RequestHeadersNames,
    RequestCookies,
    RequestCookiesNames,
    ResponseHeaders,
    ResponseHeadersNames,
    Files,
    FilesNames,
    FilesSizes,
    MultipartPartHeaders,
    MatchedVars,
    MatchedVarsNames,
    Xml,
    Tx,
    Env,
    /// IP, GLOBAL, SESSION, USER, RESOURCE: collections `initcol` opens.
    Persistent,
    MatchedVar,
    MatchedVarName,
    Duration,
    TimeEpoch,
    /// A variable with one value (REQUEST_URI, REMOTE_ADDR, ...).
    Single,
}

impl Coll {
    pub fn of(name: &str) -> Coll {
        match name {
            "ARGS" => Coll::Args,
            "ARGS_GET" => Coll::ArgsGet,
            "ARGS_POST" => Coll::ArgsPost,
            "ARGS_NAMES" => Coll::ArgsNames,
            "ARGS_GET_NAMES" => Coll::ArgsGetNames,
            "ARGS_POST_NAMES" => Coll::ArgsPostNames,
            "REQUEST_HEADERS" => Coll::RequestHeaders,
            "REQUEST_HEADERS_NAMES" => Coll::RequestHeadersNames,
            "REQUEST_COOKIES" => Coll::RequestCookies,
            "REQUEST_COOKIES_NAMES" => Coll::RequestCookiesNames,
            "RESPONSE_HEADERS" => Coll::ResponseHeaders,
            "RESPONSE_HEADERS_NAMES" => Coll::ResponseHeadersNames,
            "FILES" => Coll::Files,
            "FILES_NAMES" => Coll::FilesNames,
            "FILES_SIZES" => Coll::FilesSizes,
            "MULTIPART_PART_HEADERS" => Coll::MultipartPartHeaders,
            "MATCHED_VARS" => Coll::MatchedVars,
            "MATCHED_VARS_NAMES" => Coll::MatchedVarsNames,
            "XML" => Coll::Xml,
            "TX" => Coll::Tx,
            "ENV" => Coll::Env,
            "IP" | "GLOBAL" | "SESSION" | "USER" | "RESOURCE" => Coll::Persistent,
            "MATCHED_VAR" => Coll::MatchedVar,
            "MATCHED_VAR_NAME" => Coll::MatchedVarName,
            "DURATION" => Coll::Duration,
            "TIME_EPOCH" => Coll::TimeEpoch,
            _ => Coll::Single,
        }
    }

    /// Whether the collection's values are set once per transaction (request data), so a
    /// transformed value may be cached by the address of the original.
    pub fn cacheable(self, name: &str) -> bool {
        match self {
            Coll::Args
            | Coll::ArgsGet
            | Coll::ArgsPost
            | Coll::ArgsNames
            | Coll::ArgsGetNames
            | Coll::ArgsPostNames
            | Coll::RequestHeaders
            | Coll::RequestHeadersNames
            | Coll::RequestCookies
            | Coll::RequestCookiesNames
            | Coll::Files
            | Coll::FilesNames
            | Coll::Xml => true,
            Coll::Single => matches!(
                name,
                "REQUEST_FILENAME"
                    | "REQUEST_BASENAME"
                    | "REQUEST_URI"
                    | "REQUEST_URI_RAW"
                    | "REQUEST_LINE"
                    | "QUERY_STRING"
                    | "REQUEST_BODY"
                    | "REQUEST_METHOD"
                    | "REQUEST_PROTOCOL"
            ),
            _ => false,
        }
    }
}

/// A variable a rule reads (or excludes).
#[derive(Debug, Clone)]
pub struct Target {
    pub collection: &'static str,
    pub kind: Coll,
    pub selector: Option<TargetSelector>,
    pub count: bool,
    pub exclude: bool,
    /// [`Coll::cacheable`] for the collection, decided once.
    pub cacheable: bool,
}

#[derive(Debug, Clone)]
pub enum TargetSelector {
    /// Lower-cased key.
    Key(String),
    Regex(std::sync::Arc<KeyRegex>),
    XPath(String),
}

impl TargetSelector {
    pub fn matches(&self, key: &str) -> bool {
        match self {
            TargetSelector::Key(k) => k.eq_ignore_ascii_case(key),
            TargetSelector::Regex(re) => re.matches(key),
            TargetSelector::XPath(_) => true,
        }
    }
}

/// A key regex (`ARGS:/^id_/`), case-insensitive as ModSecurity's are.
#[derive(Debug)]
pub struct KeyRegex {
    regex: Regexp,
    /// The pattern when it is a plain word, perhaps anchored at the start (CRS's
    /// `REQUEST_COOKIES:/__utm/` exclusion on a hundred rules, `TX:/^HEADER_NAME_/` run over
    /// every TX variable): lower-cased, and whether it must begin the key. Compared
    /// directly, as the regex would match it, without the regex engine's per-call setup.
    word: Option<(String, bool)>,
}

impl KeyRegex {
    pub fn new(pattern: &str) -> Result<KeyRegex, String> {
        let (anchored, rest) = match pattern.strip_prefix('^') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let plain = !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        Ok(KeyRegex {
            regex: Regexp::new(&format!("(?i){pattern}"))?,
            word: plain.then(|| (rest.to_ascii_lowercase(), anchored)),
        })
    }

    pub fn matches(&self, key: &str) -> bool {
        let key = key.as_bytes();
        match &self.word {
            Some((word, true)) => key
                .get(..word.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(word.as_bytes())),
            Some((word, false)) => key
                .windows(word.len())
                .any(|w| w.eq_ignore_ascii_case(word.as_bytes())),
            None => self.regex.is_match(key),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum SetVarOp {
    Set(MacroString),
    Add(MacroString),
    Sub(MacroString),
    Delete,
}

/// An action with an effect on the transaction, run in the order the rule lists them.
#[derive(Debug, Clone)]
pub enum Effect {
    SetVar {
        collection: String,
        key: MacroString,
        /// The key lower-cased, when it is written in the rule (no macro).
        fixed_key: Option<String>,
        op: SetVarOp,
    },
    ExpireVar {
        collection: String,
        key: MacroString,
        seconds: MacroString,
    },
    InitCol {
        collection: String,
        key: MacroString,
    },
    SetEnv {
        name: MacroString,
        value: MacroString,
    },
    Ctl(Ctl),
}

/// Run-time changes to the engine for one transaction.
#[derive(Debug, Clone)]
pub enum Ctl {
    RuleEngine(EngineMode),
    RuleRemoveById(Vec<IdRange>),
    RuleRemoveByTag(std::sync::Arc<Regexp>),
    RuleRemoveTargetById(Vec<IdRange>, Target),
    RuleRemoveTargetByTag(std::sync::Arc<Regexp>, Target),
    RequestBodyProcessor(BodyProcessor),
    RequestBodyAccess(bool),
    RequestBodyLimit(usize),
    ForceRequestBodyVariable(bool),
    /// Audit-log settings: accepted, without effect on detection.
    Audit,
}

/// A compiled rule (or `SecAction`, or one link of a chain).
#[derive(Debug)]
pub struct Rule {
    /// 0 for chain links after the first.
    pub id: u64,
    pub phase: u8,
    pub location: Location,
    /// Empty for `SecAction`, which always matches.
    pub targets: Vec<Target>,
    pub operator: Option<CompiledOperator>,
    pub transformations: Vec<Transformation>,
    /// Identifies each prefix of `transformations` (the first one, the first two, ...) among
    /// the plan's distinct chains, so results are cached and shared between rules whose chains
    /// begin alike.
    pub transform_ids: Vec<u32>,
    pub disruptive: Disruptive,
    pub status: Option<u16>,
    pub log: bool,
    pub capture: bool,
    pub multi_match: bool,
    pub msg: Option<MacroString>,
    pub logdata: Option<MacroString>,
    pub severity: Option<u8>,
    pub tags: Vec<String>,
    pub skip: u32,
    pub skip_after: Option<String>,
    /// Where `skip_after` lands: the index of its marker in this rule's phase.
    pub skip_to: Option<usize>,
    pub effects: Vec<Effect>,
    pub chain: Option<Box<Rule>>,
    /// The rule's bit in its phase's prefilter verdicts, when the prefilter covers it.
    pub filter_slot: Option<u32>,
    /// How the prefilter's findings rule out single values of a rule that may match.
    pub value_filter: Option<Box<crate::prefilter::ValueFilter>>,
    /// The rule as a comparison of TX variables with a number, when it is one.
    pub scalar: Option<ScalarTest>,
    /// The byte classes its transformations may change ([`crate::prefilter::chain_changes`]):
    /// a value without them is inspected as it is, without the transformation cache.
    pub changes: Option<u32>,
}

/// A rule that compares TX variables (or whether they exist) with a number: CRS's
/// paranoia-level gates (`TX:EXECUTING_PARANOIA_LEVEL "@lt 2"`), its defaults
/// (`&TX:x "@eq 0"`) and its score checks, about half of the rules a benign request reaches.
/// The evaluator answers these with a table lookup and a comparison instead of collecting,
/// transforming and copying values; what they match, and in which order, is unchanged.
#[derive(Debug)]
pub struct ScalarTest {
    pub reads: Vec<ScalarRead>,
    pub compare: Compare,
    pub operand: Operand,
    pub negated: bool,
}

/// One TX variable a [`ScalarTest`] reads.
#[derive(Debug)]
pub struct ScalarRead {
    /// Lower-cased, as TX keys are stored.
    pub key: String,
    /// The key's number among those the plan's scalar tests read: where the transaction
    /// remembers the value it last found (see `Transaction::tx_read`).
    pub slot: u32,
    /// `&TX:key`: whether it exists (0 or 1) rather than its value.
    pub count: bool,
    /// `TX:key`, the name MATCHED_VAR_NAME takes.
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ge,
    Gt,
    Le,
    Lt,
}

impl Compare {
    pub fn holds(self, value: i64, operand: i64) -> bool {
        match self {
            Compare::Eq => value == operand,
            Compare::Ge => value >= operand,
            Compare::Gt => value > operand,
            Compare::Le => value <= operand,
            Compare::Lt => value < operand,
        }
    }
}

/// What a [`ScalarTest`] compares with: a number written in the rule, or a TX variable's
/// value (lower-cased key; missing or not a number counts as 0, as `atoi` reads it).
#[derive(Debug)]
pub enum Operand {
    Number(i64),
    Tx(String),
}

impl ScalarTest {
    /// The rule's test, when it has the shape: a numeric operator on TX variables named by
    /// key, no transformation, no capture (`capture` would clear TX:0-9), no `multiMatch`.
    fn of(rule: &Rule) -> Option<ScalarTest> {
        use crate::operator::Op;
        let op = rule.operator.as_ref()?;
        if !rule.transformations.is_empty() || rule.capture || rule.multi_match {
            return None;
        }
        let (compare, text) = match &op.op {
            Op::Eq(t) => (Compare::Eq, t),
            Op::Ge(t) => (Compare::Ge, t),
            Op::Gt(t) => (Compare::Gt, t),
            Op::Le(t) => (Compare::Le, t),
            Op::Lt(t) => (Compare::Lt, t),
            _ => return None,
        };
        let operand = match (text.literal(), text.single_variable()) {
            (Some(l), _) => Operand::Number(crate::operator::atoi(&l)),
            (None, Some(("TX", Some(key)))) => Operand::Tx(key.to_ascii_lowercase()),
            _ => return None,
        };
        if rule.targets.is_empty() || rule.targets.len() > 64 {
            return None;
        }
        let reads = rule
            .targets
            .iter()
            .map(|t| match (&t.kind, &t.selector, t.exclude) {
                (Coll::Tx, Some(TargetSelector::Key(key)), false) => Some(ScalarRead {
                    key: key.clone(),
                    slot: 0,
                    count: t.count,
                    name: format!("{}:{key}", t.collection),
                }),
                _ => None,
            })
            .collect::<Option<Vec<_>>>()?;
        Some(ScalarTest {
            reads,
            compare,
            operand,
            negated: op.negated,
        })
    }
}

impl Rule {
    pub fn has_tag(&self, re: &Regexp) -> bool {
        self.tags.iter().any(|t| re.is_match(t.as_bytes()))
    }

    /// Whether the rule (every link of its chain) reads nothing but TX and changes nothing
    /// but TX and which rules run: its outcome is then the same in every transaction that
    /// reaches it with the same TX. What it logs or blocks is not looked at here.
    pub fn touches_only_tx(&self) -> bool {
        let tx_only = |m: &MacroString| m.reads_only("TX");
        self.targets.iter().all(|t| t.kind == Coll::Tx)
            && self
                .operator
                .as_ref()
                .and_then(|o| o.argument())
                .is_none_or(tx_only)
            && self.filter_slot.is_none()
            && self.effects.iter().all(|e| match e {
                Effect::SetVar {
                    collection,
                    key,
                    op,
                    ..
                } => {
                    collection == "TX"
                        && tx_only(key)
                        && match op {
                            SetVarOp::Set(v) | SetVarOp::Add(v) | SetVarOp::Sub(v) => tx_only(v),
                            SetVarOp::Delete => true,
                        }
                }
                Effect::Ctl(
                    Ctl::RuleEngine(_)
                    | Ctl::RuleRemoveById(_)
                    | Ctl::RuleRemoveByTag(_)
                    | Ctl::RuleRemoveTargetById(..)
                    | Ctl::RuleRemoveTargetByTag(..),
                ) => true,
                Effect::Ctl(_)
                | Effect::ExpireVar { .. }
                | Effect::InitCol { .. }
                | Effect::SetEnv { .. } => false,
            })
            && self.chain.as_deref().is_none_or(Rule::touches_only_tx)
    }

    /// Whether the rule has a `ctl` action.
    pub fn has_ctl(&self) -> bool {
        self.effects.iter().any(|e| matches!(e, Effect::Ctl(_)))
            || self.chain.as_deref().is_some_and(Rule::has_ctl)
    }

    /// Whether rules that touch only TX may run before or after this one alike: it reads
    /// neither TX nor what the last match left (MATCHED_VAR...), changes neither, and does
    /// not decide which rules run (no skip, no disruptive action but `pass`, no `ctl` but
    /// the request body's). modsecurity.conf's body-processor rules are of this kind.
    pub fn independent_of_tx(&self) -> bool {
        fn link(r: &Rule) -> bool {
            let free = |m: &MacroString| {
                !m.reads_any(&[
                    "TX",
                    "MATCHED_VAR",
                    "MATCHED_VAR_NAME",
                    "MATCHED_VARS",
                    "MATCHED_VARS_NAMES",
                ])
            };
            r.targets.iter().all(|t| {
                !matches!(
                    t.kind,
                    Coll::Tx
                        | Coll::MatchedVar
                        | Coll::MatchedVarName
                        | Coll::MatchedVars
                        | Coll::MatchedVarsNames
                )
            }) && r.operator.as_ref().and_then(|o| o.argument()).is_none_or(free)
                // Expanded only when the rule logs, after its own match set MATCHED_VAR.
                && [&r.msg, &r.logdata]
                    .into_iter()
                    .flatten()
                    .all(|m| !m.reads_any(&["TX"]))
                && !r.capture
                && r.skip == 0
                && r.skip_after.is_none()
                && r.effects.iter().all(|e| {
                    matches!(
                        e,
                        Effect::Ctl(
                            Ctl::RequestBodyProcessor(_)
                                | Ctl::RequestBodyAccess(_)
                                | Ctl::RequestBodyLimit(_)
                                | Ctl::ForceRequestBodyVariable(_)
                                | Ctl::Audit
                        )
                    )
                })
                && r.chain.as_deref().is_none_or(link)
        }
        matches!(self.disruptive, Disruptive::Pass) && link(self)
    }

    pub fn msg_text(&self) -> Option<String> {
        self.msg.as_ref().and_then(|m| {
            m.literal()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
        })
    }
}

/// An entry of a phase: a rule, or a marker `skipAfter` jumps to.
#[derive(Debug)]
pub enum Entry {
    Rule(Box<Rule>),
    Marker(String),
}

/// Counts for logs and `qalxan waf check`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanStats {
    pub rules: usize,
    pub regex_linear: usize,
    pub regex_pcre2: usize,
    /// Rules the prefilter may skip (see [`crate::prefilter`]).
    pub prefiltered: usize,
    /// Leading rules of phase 1 run once when the plan is built, not per transaction (see
    /// `eval::Prelude`).
    pub prelude: usize,
}

/// A compiled rule set, ready to evaluate transactions.
#[derive(Debug)]
pub struct Plan {
    /// Entries of phases 1 to 5.
    pub phases: [Vec<Entry>; 5],
    pub settings: Settings,
    pub stats: PlanStats,
    /// Per phase, the rules that may be skipped when none of their literals occurs.
    pub(crate) filters: [crate::prefilter::PhaseFilter; 5],
    /// How many distinct TX keys scalar tests read ([`ScalarRead::slot`]).
    pub(crate) scalar_keys: usize,
    /// What phase 1's leading TX-only rules leave, for transactions to start from.
    pub(crate) prelude: Option<crate::eval::Prelude>,
}

fn err(location: &Location, message: impl Into<String>) -> SyntaxError {
    SyntaxError {
        location: location.clone(),
        message: message.into(),
    }
}

fn on_off(args: &[String], at: &Location) -> Result<bool, SyntaxError> {
    match args.first().map(|a| a.to_ascii_lowercase()).as_deref() {
        Some("on") => Ok(true),
        Some("off") => Ok(false),
        _ => Err(err(at, "expected On or Off")),
    }
}

fn number(args: &[String], at: &Location) -> Result<usize, SyntaxError> {
    args.first()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| err(at, "expected a number"))
}

fn engine_mode(value: &str, at: &Location) -> Result<EngineMode, SyntaxError> {
    match value.to_ascii_lowercase().as_str() {
        "on" => Ok(EngineMode::On),
        "off" => Ok(EngineMode::Off),
        "detectiononly" => Ok(EngineMode::DetectionOnly),
        _ => Err(err(
            at,
            format!("'{value}' is not On, Off or DetectionOnly"),
        )),
    }
}

fn phase_number(value: &str) -> u8 {
    match value.trim().to_ascii_lowercase().as_str() {
        "request" => 2,
        "response" => 4,
        "logging" => 5,
        n => n.parse().unwrap_or(2),
    }
}

fn severity_number(value: &str) -> Option<u8> {
    const NAMES: [&str; 8] = [
        "EMERGENCY",
        "ALERT",
        "CRITICAL",
        "ERROR",
        "WARNING",
        "NOTICE",
        "INFO",
        "DEBUG",
    ];
    let v = value.trim();
    v.parse().ok().or_else(|| {
        NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(v))
            .map(|p| p as u8)
    })
}

fn compile_target(v: &Variable) -> Result<Target, SyntaxError> {
    let selector = match &v.selector {
        None => None,
        Some(Selector::Key(k)) => Some(TargetSelector::Key(k.to_ascii_lowercase())),
        Some(Selector::Regex(r)) => Some(TargetSelector::Regex(std::sync::Arc::new(
            KeyRegex::new(r).map_err(|e| err(&v.location, e))?,
        ))),
        Some(Selector::XPath(x)) => Some(TargetSelector::XPath(x.clone())),
    };
    let kind = Coll::of(v.name);
    Ok(Target {
        collection: v.name,
        kind,
        selector,
        count: v.count,
        exclude: v.exclude,
        cacheable: kind.cacheable(v.name),
    })
}

/// `collection.key` as `setvar` and friends write it.
fn split_var(spec: &str, at: &Location) -> Result<(String, MacroString), SyntaxError> {
    let (collection, key) = spec.split_once('.').ok_or_else(|| {
        err(
            at,
            format!("'{spec}' must be collection.name, e.g. tx.score"),
        )
    })?;
    Ok((
        collection.trim().to_ascii_uppercase(),
        MacroString::parse(key.trim()),
    ))
}

fn parse_ids(text: &str, at: &Location) -> Result<Vec<IdRange>, SyntaxError> {
    text.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|p| !p.is_empty())
        .map(|part| {
            let bad = || err(at, format!("'{part}' is not a rule id or range"));
            match part.split_once('-') {
                Some((a, b)) => Ok(IdRange {
                    first: a.parse().map_err(|_| bad())?,
                    last: b.parse().map_err(|_| bad())?,
                }),
                None => {
                    let id = part.parse().map_err(|_| bad())?;
                    Ok(IdRange {
                        first: id,
                        last: id,
                    })
                }
            }
        })
        .collect()
}

fn ctl_target(text: &str, at: &Location) -> Result<Target, SyntaxError> {
    let vars = crate::syntax::parser::parse_variables_text(text, &|_| at.clone())?;
    let first = vars
        .first()
        .ok_or_else(|| err(at, "ctl: no target given"))?;
    compile_target(first)
}

fn tag_regex(text: &str, at: &Location) -> Result<std::sync::Arc<Regexp>, SyntaxError> {
    Regexp::new(text)
        .map(std::sync::Arc::new)
        .map_err(|e| err(at, e))
}

fn compile_ctl(value: &str, at: &Location) -> Result<Ctl, SyntaxError> {
    let (name, arg) = value
        .split_once('=')
        .ok_or_else(|| err(at, format!("ctl '{value}' must be name=value")))?;
    let arg = arg.trim();
    Ok(match name.trim().to_ascii_lowercase().as_str() {
        "ruleengine" => Ctl::RuleEngine(engine_mode(arg, at)?),
        "ruleremovebyid" => Ctl::RuleRemoveById(parse_ids(arg, at)?),
        "ruleremovebytag" => Ctl::RuleRemoveByTag(tag_regex(arg, at)?),
        "ruleremovetargetbyid" => {
            let (ids, target) = arg
                .split_once(';')
                .ok_or_else(|| err(at, "ruleRemoveTargetById needs ID;TARGET"))?;
            Ctl::RuleRemoveTargetById(parse_ids(ids, at)?, ctl_target(target, at)?)
        }
        "ruleremovetargetbytag" => {
            let (tag, target) = arg
                .split_once(';')
                .ok_or_else(|| err(at, "ruleRemoveTargetByTag needs TAG;TARGET"))?;
            Ctl::RuleRemoveTargetByTag(tag_regex(tag, at)?, ctl_target(target, at)?)
        }
        "requestbodyprocessor" => {
            Ctl::RequestBodyProcessor(match arg.to_ascii_uppercase().as_str() {
                "URLENCODED" => BodyProcessor::UrlEncoded,
                "MULTIPART" => BodyProcessor::Multipart,
                "JSON" => BodyProcessor::Json,
                "XML" => BodyProcessor::Xml,
                other => return Err(err(at, format!("unknown request body processor '{other}'"))),
            })
        }
        "requestbodyaccess" => Ctl::RequestBodyAccess(on_off(&[arg.to_owned()], at)?),
        "requestbodylimit" => Ctl::RequestBodyLimit(number(&[arg.to_owned()], at)?),
        "forcerequestbodyvariable" => Ctl::ForceRequestBodyVariable(on_off(&[arg.to_owned()], at)?),
        "auditengine" | "auditlogparts" => Ctl::Audit,
        other => return Err(err(at, format!("ctl:{other} is not supported by Qalxan"))),
    })
}

/// A rule's action list, before defaults are merged in.
#[derive(Default)]
struct ActionSet {
    id: Option<u64>,
    phase: Option<u8>,
    disruptive: Option<Disruptive>,
    status: Option<u16>,
    log: Option<bool>,
    capture: bool,
    multi_match: bool,
    chain: bool,
    msg: Option<MacroString>,
    logdata: Option<MacroString>,
    severity: Option<u8>,
    tags: Vec<String>,
    /// `None` when the rule's own list starts with (or contains) `t:none`.
    inherit_transformations: bool,
    transformations: Vec<Transformation>,
    skip: u32,
    skip_after: Option<(String, Location)>,
    effects: Vec<Effect>,
}

fn action_set(actions: &[Action]) -> Result<ActionSet, SyntaxError> {
    let mut s = ActionSet {
        inherit_transformations: true,
        ..ActionSet::default()
    };
    for a in actions {
        let at = &a.location;
        let v = a.value.as_deref().unwrap_or("");
        match a.name {
            "id" => s.id = v.trim().parse().ok(),
            "phase" => s.phase = Some(phase_number(v)),
            "pass" => s.disruptive = Some(Disruptive::Pass),
            "deny" => s.disruptive = Some(Disruptive::Deny),
            "drop" => s.disruptive = Some(Disruptive::Drop),
            "block" => s.disruptive = Some(Disruptive::Block),
            "allow" => {
                s.disruptive = Some(Disruptive::Allow(match v.to_ascii_lowercase().as_str() {
                    "request" => AllowScope::Request,
                    "phase" => AllowScope::Phase,
                    _ => AllowScope::All,
                }))
            }
            "redirect" => s.disruptive = Some(Disruptive::Redirect(MacroString::parse(v))),
            "status" => s.status = v.trim().parse().ok(),
            "log" => s.log = Some(true),
            "nolog" => s.log = Some(false),
            "capture" => s.capture = true,
            "multiMatch" => s.multi_match = true,
            "chain" => s.chain = true,
            "msg" => s.msg = Some(MacroString::parse(v)),
            "logdata" => s.logdata = Some(MacroString::parse(v)),
            "severity" => s.severity = severity_number(v),
            "tag" => s.tags.push(v.to_owned()),
            "t" => match Transformation::from_name(v.trim()) {
                Some(t) => s.transformations.push(t),
                None if v.trim().eq_ignore_ascii_case("none") => {
                    s.transformations.clear();
                    s.inherit_transformations = false;
                }
                None => return Err(err(at, format!("unknown transformation '{v}'"))),
            },
            "skip" => s.skip = v.trim().parse().unwrap_or(0),
            "skipAfter" => s.skip_after = Some((v.trim().to_owned(), at.clone())),
            "setvar" => {
                let v = v.trim();
                let (spec, op) = if let Some(rest) = v.strip_prefix('!') {
                    (rest, SetVarOp::Delete)
                } else if let Some((spec, value)) = v.split_once('=') {
                    let op = if let Some(n) = value.strip_prefix('+') {
                        SetVarOp::Add(MacroString::parse(n))
                    } else if let Some(n) = value.strip_prefix('-') {
                        SetVarOp::Sub(MacroString::parse(n))
                    } else {
                        SetVarOp::Set(MacroString::parse(value))
                    };
                    (spec, op)
                } else {
                    (v, SetVarOp::Set(MacroString::parse("1")))
                };
                let (collection, key) = split_var(spec, at)?;
                let fixed_key = key
                    .literal()
                    .and_then(|k| std::str::from_utf8(&k).ok().map(str::to_ascii_lowercase));
                s.effects.push(Effect::SetVar {
                    collection,
                    key,
                    fixed_key,
                    op,
                });
            }
            "expirevar" => {
                let (spec, seconds) = v.split_once('=').unwrap_or((v, "0"));
                let (collection, key) = split_var(spec, at)?;
                s.effects.push(Effect::ExpireVar {
                    collection,
                    key,
                    seconds: MacroString::parse(seconds),
                });
            }
            "initcol" => {
                let (collection, key) = v
                    .split_once('=')
                    .ok_or_else(|| err(at, "initcol needs collection=key"))?;
                s.effects.push(Effect::InitCol {
                    collection: collection.trim().to_ascii_uppercase(),
                    key: MacroString::parse(key),
                });
            }
            "setenv" => {
                let (name, value) = v.split_once('=').unwrap_or((v, "1"));
                s.effects.push(Effect::SetEnv {
                    name: MacroString::parse(name),
                    value: MacroString::parse(value),
                });
            }
            "ctl" => s.effects.push(Effect::Ctl(compile_ctl(v, at)?)),
            // Metadata and audit-log settings that do not change detection.
            "ver"
            | "rev"
            | "maturity"
            | "accuracy"
            | "auditlog"
            | "noauditlog"
            | "sanitiseArg"
            | "sanitiseMatched"
            | "sanitiseMatchedBytes"
            | "sanitiseRequestHeader"
            | "sanitiseResponseHeader"
            | "xmlns" => {}
            other => {
                return Err(err(
                    at,
                    format!("action '{other}' is not supported by Qalxan"),
                ))
            }
        }
    }
    Ok(s)
}

/// The defaults `SecDefaultAction` sets for one phase.
#[derive(Clone)]
struct Defaults {
    disruptive: Disruptive,
    log: bool,
    status: Option<u16>,
    transformations: Vec<Transformation>,
}

impl Default for Defaults {
    fn default() -> Self {
        Defaults {
            disruptive: Disruptive::Pass,
            log: true,
            status: None,
            transformations: Vec::new(),
        }
    }
}

impl Plan {
    /// Compiles a loaded rule set. Every problem is reported, each at its place.
    pub fn compile(file: &RuleFile) -> Result<Plan, Vec<SyntaxError>> {
        let mut errors = Vec::new();
        let mut settings = Settings::default();
        let mut defaults: [Defaults; 5] = Default::default();
        // Rules in definition order, each with its chain; markers interleaved.
        let mut entries: Vec<(Option<Rule>, Option<String>)> = Vec::new();
        // The links of a chain being read, head first.
        let mut chain_stack: Vec<Rule> = Vec::new();
        let mut ids: HashSet<u64> = HashSet::new();
        let mut stats = PlanStats::default();
        let mut chains: HashMap<Vec<Transformation>, u32> = HashMap::new();

        for d in &file.directives {
            let base = d
                .location
                .file
                .parent()
                .unwrap_or(Path::new("."))
                .to_path_buf();
            let result: Result<(), SyntaxError> = (|| {
                match &d.kind {
                    DirectiveKind::Rule(_) | DirectiveKind::Action(_) => {
                        let (targets, operator, actions) = match &d.kind {
                            DirectiveKind::Rule(r) => (
                                r.variables
                                    .iter()
                                    .map(compile_target)
                                    .collect::<Result<Vec<_>, _>>()?,
                                Some(CompiledOperator::compile(&r.operator, &base)?),
                                &r.actions,
                            ),
                            DirectiveKind::Action(a) => (Vec::new(), None, a),
                            _ => unreachable!("matched above"),
                        };
                        if let Some(crate::operator::CompiledOperator {
                            op: crate::operator::Op::Rx(re),
                            ..
                        }) = &operator
                        {
                            match re.engine() {
                                crate::operator::RegexEngine::Linear => stats.regex_linear += 1,
                                crate::operator::RegexEngine::Pcre2 => stats.regex_pcre2 += 1,
                            }
                        }
                        let set = action_set(actions)?;
                        let in_chain = !chain_stack.is_empty();
                        let phase = if in_chain {
                            chain_stack[0].phase
                        } else {
                            set.phase.unwrap_or(2)
                        };
                        if !(1..=5).contains(&phase) {
                            return Err(err(&d.location, format!("phase {phase} does not exist")));
                        }
                        let def = &defaults[(phase - 1) as usize];
                        let id = match (in_chain, set.id) {
                            (false, Some(id)) => {
                                if !ids.insert(id) {
                                    return Err(err(
                                        &d.location,
                                        format!("another rule already has id {id}"),
                                    ));
                                }
                                id
                            }
                            (false, None) => return Err(err(&d.location, "the rule has no id")),
                            (true, _) => 0,
                        };
                        let mut transformations = if set.inherit_transformations {
                            def.transformations.clone()
                        } else {
                            Vec::new()
                        };
                        transformations.extend(set.transformations);
                        let transform_ids = (1..=transformations.len())
                            .map(|n| {
                                let next_id = chains.len() as u32;
                                *chains
                                    .entry(transformations[..n].to_vec())
                                    .or_insert(next_id)
                            })
                            .collect();
                        // `block` means the phase's default disruptive action.
                        let disruptive = match set.disruptive {
                            Some(Disruptive::Block) | None => def.disruptive.clone(),
                            Some(other) => other,
                        };
                        let mut rule = Rule {
                            id,
                            phase,
                            location: d.location.clone(),
                            targets,
                            operator,
                            transformations,
                            transform_ids,
                            disruptive,
                            status: set.status.or(def.status),
                            log: set.log.unwrap_or(def.log),
                            capture: set.capture,
                            multi_match: set.multi_match,
                            msg: set.msg,
                            logdata: set.logdata,
                            severity: set.severity,
                            tags: set.tags,
                            skip: set.skip,
                            skip_after: set.skip_after.map(|(m, _)| m),
                            skip_to: None,
                            effects: set.effects,
                            chain: None,
                            filter_slot: None,
                            value_filter: None,
                            scalar: None,
                            changes: None,
                        };
                        rule.scalar = ScalarTest::of(&rule);
                        rule.changes = crate::prefilter::chain_changes(&rule.transformations);
                        stats.rules += 1;
                        chain_stack.push(rule);
                        if !set.chain {
                            // Link the chain from its tail to its head.
                            let mut tail: Option<Rule> = None;
                            while let Some(mut link) = chain_stack.pop() {
                                link.chain = tail.map(Box::new);
                                tail = Some(link);
                            }
                            entries.push((tail, None));
                        }
                    }
                    DirectiveKind::Marker(name) => entries.push((None, Some(name.clone()))),
                    DirectiveKind::DefaultAction(actions) => {
                        let set = action_set(actions)?;
                        let phase = set.phase.unwrap_or(2);
                        if !(1..=5).contains(&phase) {
                            return Err(err(&d.location, format!("phase {phase} does not exist")));
                        }
                        defaults[(phase - 1) as usize] = Defaults {
                            disruptive: match set.disruptive {
                                Some(Disruptive::Block) | None => Disruptive::Pass,
                                Some(other) => other,
                            },
                            log: set.log.unwrap_or(true),
                            status: set.status,
                            transformations: set.transformations,
                        };
                    }
                    DirectiveKind::RemoveById(ranges) => {
                        for (rule, _) in &mut entries {
                            if rule
                                .as_ref()
                                .is_some_and(|r| ranges.iter().any(|x| x.contains(r.id)))
                            {
                                *rule = None;
                            }
                        }
                    }
                    DirectiveKind::RemoveByTag(tag) => {
                        let re = tag_regex(tag, &d.location)?;
                        for (rule, _) in &mut entries {
                            if rule.as_ref().is_some_and(|r| r.has_tag(&re)) {
                                *rule = None;
                            }
                        }
                    }
                    DirectiveKind::RemoveByMsg(msg) => {
                        let re = tag_regex(msg, &d.location)?;
                        for (rule, _) in &mut entries {
                            if rule
                                .as_ref()
                                .and_then(Rule::msg_text)
                                .is_some_and(|m| re.is_match(m.as_bytes()))
                            {
                                *rule = None;
                            }
                        }
                    }
                    DirectiveKind::UpdateTarget { which, targets, .. } => {
                        let compiled = targets
                            .iter()
                            .map(compile_target)
                            .collect::<Result<Vec<_>, _>>()?;
                        let tag_re = match which {
                            RuleSelector::Tag(t) | RuleSelector::Msg(t) => {
                                Some(tag_regex(t, &d.location)?)
                            }
                            RuleSelector::Ids(_) => None,
                        };
                        for rule in entries.iter_mut().filter_map(|(r, _)| r.as_mut()) {
                            let hit = match which {
                                RuleSelector::Ids(ranges) => {
                                    ranges.iter().any(|x| x.contains(rule.id))
                                }
                                RuleSelector::Tag(_) => {
                                    tag_re.as_ref().is_some_and(|re| rule.has_tag(re))
                                }
                                RuleSelector::Msg(_) => tag_re.as_ref().is_some_and(|re| {
                                    rule.msg_text().is_some_and(|m| re.is_match(m.as_bytes()))
                                }),
                            };
                            if hit {
                                rule.targets.extend(compiled.iter().cloned());
                            }
                        }
                    }
                    DirectiveKind::UpdateAction { id, actions } => {
                        let set = action_set(actions)?;
                        if let Some(rule) = entries
                            .iter_mut()
                            .filter_map(|(r, _)| r.as_mut())
                            .find(|r| r.id == *id)
                        {
                            if let Some(dis) = set.disruptive {
                                rule.disruptive = dis;
                            }
                            if let Some(log) = set.log {
                                rule.log = log;
                            }
                            if set.msg.is_some() {
                                rule.msg = set.msg;
                            }
                            if set.severity.is_some() {
                                rule.severity = set.severity;
                            }
                            if !set.tags.is_empty() {
                                rule.tags = set.tags;
                            }
                            rule.effects.extend(set.effects);
                        }
                    }
                    DirectiveKind::Setting { name, args } => {
                        apply_setting(&mut settings, name, args, &d.location)?
                    }
                }
                Ok(())
            })();
            if let Err(e) = result {
                errors.push(e);
            }
        }
        if let Some(open) = chain_stack.first() {
            errors.push(err(&open.location, "the rule's chain has no next rule"));
        }

        let mut phases: [Vec<Entry>; 5] = Default::default();
        for (rule, marker) in entries {
            match (rule, marker) {
                (Some(rule), _) => {
                    phases[(rule.phase - 1) as usize].push(Entry::Rule(Box::new(rule)))
                }
                (None, Some(name)) => {
                    for p in &mut phases {
                        p.push(Entry::Marker(name.clone()));
                    }
                }
                (None, None) => {}
            }
        }
        // Every skipAfter must find its marker in its phase; where it lands is fixed now.
        for phase in &mut phases {
            let markers: HashMap<String, usize> = phase
                .iter()
                .enumerate()
                .filter_map(|(i, e)| match e {
                    Entry::Marker(m) => Some((m.clone(), i)),
                    Entry::Rule(_) => None,
                })
                .collect();
            for (i, e) in phase.iter_mut().enumerate() {
                if let Entry::Rule(r) = e {
                    if let Some(m) = &r.skip_after {
                        match markers.get(m) {
                            Some(&at) if at > i => r.skip_to = Some(at),
                            Some(_) => errors.push(err(
                                &r.location,
                                format!("skipAfter: SecMarker '{m}' comes before the rule"),
                            )),
                            None => errors.push(err(
                                &r.location,
                                format!("skipAfter: no SecMarker named '{m}'"),
                            )),
                        }
                    }
                }
            }
        }
        let filters = phases.each_mut().map(|p| crate::prefilter::build(p));
        stats.prefiltered = phases
            .iter()
            .flatten()
            .filter(|e| matches!(e, Entry::Rule(r) if r.filter_slot.is_some()))
            .count();
        // Each key scalar tests read gets a number, the same wherever it is read.
        let mut keys: HashMap<String, u32> = HashMap::default();
        fn number(rule: &mut Rule, keys: &mut HashMap<String, u32>) {
            for read in rule.scalar.iter_mut().flat_map(|t| t.reads.iter_mut()) {
                let next = keys.len() as u32;
                read.slot = *keys.entry(read.key.clone()).or_insert(next);
            }
            if let Some(next) = rule.chain.as_deref_mut() {
                number(next, keys);
            }
        }
        for entry in phases.iter_mut().flatten() {
            if let Entry::Rule(rule) = entry {
                number(rule, &mut keys);
            }
        }
        if errors.is_empty() {
            let mut plan = Plan {
                phases,
                settings,
                stats,
                filters,
                scalar_keys: keys.len(),
                prelude: None,
            };
            plan.prelude = crate::eval::Prelude::of(&plan);
            plan.stats.prelude = plan.prelude.as_ref().map_or(0, |p| p.rules);
            Ok(plan)
        } else {
            Err(errors)
        }
    }

    /// The same plan evaluating every rule the general way: without skipping those whose
    /// literals a transaction lacks ([`crate::prefilter`]), without answering TX
    /// comparisons directly ([`ScalarTest`]) and with every value through the
    /// transformation cache ([`Rule::changes`]). The results are the same, only slower: for
    /// checking exactly that, and for measuring what the shortcuts save.
    pub fn without_shortcuts(mut self) -> Plan {
        self.filters = Default::default();
        self.stats.prefiltered = 0;
        self.prelude = None;
        self.stats.prelude = 0;
        fn plain(rule: &mut Rule) {
            rule.scalar = None;
            rule.filter_slot = None;
            rule.value_filter = None;
            rule.changes = None;
            if let Some(next) = rule.chain.as_deref_mut() {
                plain(next);
            }
        }
        for entry in self.phases.iter_mut().flatten() {
            if let Entry::Rule(rule) = entry {
                plain(rule);
            }
        }
        self
    }

    /// Index of the entry after marker `name` in `phase` (1-5).
    pub fn marker_index(&self, phase: u8, name: &str) -> Option<usize> {
        self.phases
            .get((phase as usize).wrapping_sub(1))?
            .iter()
            .position(|e| matches!(e, Entry::Marker(m) if m == name))
    }

    /// All rules (chain heads) with their phase, for lookups by id.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.phases.iter().flatten().filter_map(|e| match e {
            Entry::Rule(r) => Some(r.as_ref()),
            Entry::Marker(_) => None,
        })
    }

    /// Rule ids present, for checks.
    pub fn ids(&self) -> HashMap<u64, u8> {
        self.rules().map(|r| (r.id, r.phase)).collect()
    }
}

fn apply_setting(
    s: &mut Settings,
    name: &str,
    args: &[String],
    at: &Location,
) -> Result<(), SyntaxError> {
    match name {
        "SecRuleEngine" => s.engine = engine_mode(args.first().map_or("", String::as_str), at)?,
        "SecRequestBodyAccess" => s.request_body_access = on_off(args, at)?,
        "SecRequestBodyLimit" => s.request_body_limit = number(args, at)?,
        "SecRequestBodyNoFilesLimit" => s.request_body_no_files_limit = number(args, at)?,
        "SecRequestBodyLimitAction" => {
            s.request_body_limit_reject = args
                .first()
                .is_some_and(|a| a.eq_ignore_ascii_case("reject"))
        }
        "SecResponseBodyAccess" => s.response_body_access = on_off(args, at)?,
        "SecResponseBodyLimit" => s.response_body_limit = number(args, at)?,
        "SecResponseBodyMimeType" => {
            s.response_body_mime_types.extend(
                args.iter()
                    .flat_map(|a| a.split_whitespace())
                    .map(str::to_ascii_lowercase),
            );
        }
        "SecResponseBodyMimeTypesClear" => s.response_body_mime_types.clear(),
        "SecArgumentSeparator" => {
            s.argument_separator = *args
                .first()
                .and_then(|a| a.as_bytes().first())
                .ok_or_else(|| err(at, "expected one character"))?
        }
        "SecArgumentsLimit" => s.arguments_limit = number(args, at)?,
        "SecRequestBodyJsonDepthLimit" => s.json_depth_limit = number(args, at)?,
        "SecCollectionTimeout" => s.collection_timeout = number(args, at)? as u64,
        // Settings for logging, storage and features outside detection: accepted as they are.
        _ => {}
    }
    Ok(())
}

/// Compiles rule text held in memory (tests, rules typed into a form).
pub fn compile_str(text: &str, name: &Path) -> Result<Plan, Vec<SyntaxError>> {
    let file = crate::load_str(text, name, &crate::LoadLimits::default()).map_err(|e| e.errors)?;
    Plan::compile(&file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_regexes_of_plain_words_match_as_the_regex_does() {
        let keys = [
            "__utma",
            "x__UTMz",
            "__ut",
            "header_name_host",
            "HEADER_NAME_",
            "my_header_name_x",
            "",
            "id-1",
            "ID-12",
        ];
        for pattern in [
            "__utm",
            "^HEADER_NAME_",
            "^id-",
            "id-1",
            "^(?:a|b)$",
            "s?dw[a-f0-9]+",
        ] {
            let fast = KeyRegex::new(pattern).unwrap();
            let slow = Regexp::new(&format!("(?i){pattern}")).unwrap();
            for key in keys {
                assert_eq!(
                    fast.matches(key),
                    slow.is_match(key.as_bytes()),
                    "{pattern} on {key}"
                );
            }
        }
        assert!(KeyRegex::new("__utm").unwrap().word.is_some());
        assert!(KeyRegex::new("^(?:a|b)$").unwrap().word.is_none());
    }
}
