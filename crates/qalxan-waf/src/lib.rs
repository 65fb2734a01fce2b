//! Qalxan's web application firewall engine: rules in SecLang, the language of ModSecurity in
//! which the OWASP Core Rule Set (CRS) is written, loaded unmodified.
//!
//! The engine is built in stages, as yara-x builds YARA: [`syntax`] reads rule files into
//! directives with their locations ([`load`] resolves `Include`s); the compiler (to come) turns
//! them into an immutable plan shared by every thread; the evaluator runs a plan over an HTTP
//! transaction the caller hands in. The crate does no network I/O and knows nothing of servers:
//! the gateway feeds it transactions.

pub mod audit;
pub mod body;
pub mod compile;
pub mod eval;
pub mod load;
pub mod macros;
pub mod operator;
mod pcre;
pub mod persist;
pub mod prefilter;
pub mod regression;
pub mod syntax;
pub mod transform;

pub use compile::{EngineMode, Plan};
pub use eval::{Interruption, Request, Response, RuleMatch, Transaction};
pub use load::{load, load_all, load_str, LoadErrors, LoadLimits};
pub use persist::Collections;
pub use syntax::{Directive, DirectiveKind, Location, RuleFile, SyntaxError};
pub use transform::Transformation;

/// Counts of what a rule set defines, for `qalxan waf check` and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub rules: usize,
    /// Rules continuing a chain (counted in `rules` too).
    pub chained: usize,
    pub actions: usize,
    pub markers: usize,
    pub settings: usize,
}

impl RuleFile {
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            files: self.files.len(),
            ..Summary::default()
        };
        let mut in_chain = false;
        for d in &self.directives {
            match &d.kind {
                DirectiveKind::Rule(rule) => {
                    s.rules += 1;
                    if in_chain {
                        s.chained += 1;
                    }
                    in_chain = rule.actions.iter().any(|a| a.name == "chain");
                }
                DirectiveKind::Action(_) => s.actions += 1,
                DirectiveKind::Marker(_) => s.markers += 1,
                _ => s.settings += 1,
            }
        }
        s
    }
}
