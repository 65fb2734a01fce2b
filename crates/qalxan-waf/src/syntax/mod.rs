//! SecLang as written: the directives of a rule set, parsed but not yet interpreted.
//!
//! Every name is checked against [`names`] and stored in its canonical spelling; every
//! directive, variable, operator and action keeps its [`Location`] so later stages can report
//! `file:line:column`.

pub mod lexer;
pub mod names;
pub(crate) mod parser;

pub use parser::parse_str;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where something was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: Arc<Path>,
    pub line: u32,
    pub column: u32,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
    }
}

/// A problem in a rule file, at a place in it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct SyntaxError {
    pub location: Location,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Directive {
    pub location: Location,
    pub kind: DirectiveKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum DirectiveKind {
    /// `SecRule VARIABLES OPERATOR [ACTIONS]`
    Rule(Rule),
    /// `SecAction ACTIONS`: a rule that always matches.
    Action(Vec<Action>),
    /// `SecMarker NAME`: a target for `skipAfter`.
    Marker(String),
    /// `SecDefaultAction ACTIONS`: defaults for the rules of one phase that follow.
    DefaultAction(Vec<Action>),
    /// `SecRuleRemoveById 1 2 100-200`
    RemoveById(Vec<IdRange>),
    /// `SecRuleRemoveByTag REGEX`
    RemoveByTag(String),
    /// `SecRuleRemoveByMsg REGEX`
    RemoveByMsg(String),
    /// `SecRuleUpdateTargetById|ByTag|ByMsg WHICH TARGETS [REPLACED]`
    UpdateTarget {
        which: RuleSelector,
        targets: Vec<Variable>,
        replaced: Option<String>,
    },
    /// `SecRuleUpdateActionById ID ACTIONS`
    UpdateAction { id: u64, actions: Vec<Action> },
    /// Engine settings (`SecRuleEngine On`, `SecRequestBodyLimit 131072`, ...), kept as written
    /// and interpreted when the rule set is compiled. `name` is canonical.
    Setting {
        name: &'static str,
        args: Vec<String>,
    },
}

/// Which rules a directive or `ctl` action applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleSelector {
    Ids(Vec<IdRange>),
    Tag(String),
    Msg(String),
}

/// A rule id or an inclusive range of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub first: u64,
    pub last: u64,
}

impl IdRange {
    pub fn contains(&self, id: u64) -> bool {
        (self.first..=self.last).contains(&id)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub variables: Vec<Variable>,
    pub operator: Operator,
    pub actions: Vec<Action>,
}

/// One entry of a rule's variable list, e.g. `!REQUEST_COOKIES:/__utm/` or `&TX:anomaly_score`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variable {
    pub location: Location,
    /// `!`: exclude what `selector` names from the collection.
    pub exclude: bool,
    /// `&`: the number of matching elements instead of their values.
    pub count: bool,
    /// Canonical collection name, e.g. `REQUEST_HEADERS`.
    pub name: &'static str,
    pub selector: Option<Selector>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `ARGS:id`: elements with this key (case-insensitive).
    Key(String),
    /// `ARGS:/^id_/`: elements whose key matches.
    Regex(String),
    /// `XML:/*`: an XPath expression.
    XPath(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub location: Location,
    /// `!@rx ...`
    pub negated: bool,
    /// Canonical name, e.g. `rx`, `pmFromFile`.
    pub name: &'static str,
    pub argument: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub location: Location,
    /// Canonical name, e.g. `setvar`, `skipAfter`, `t`.
    pub name: &'static str,
    pub value: Option<String>,
}

/// A whole rule set: the directives of every file, in order, with `Include`s resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuleFile {
    pub directives: Vec<Directive>,
    /// Every file read, in order.
    pub files: Vec<PathBuf>,
}

impl RuleFile {
    /// Appends another rule set's directives after this one's, as if it were included here.
    pub fn append(&mut self, other: RuleFile) {
        self.directives.extend(other.directives);
        self.files.extend(other.files);
    }
}
