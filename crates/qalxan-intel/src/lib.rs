//! Qalxan's threat-intelligence engine: no I/O, no SQL, no HTTP.
//!
//! - [`observable`]: the kinds of value an indicator holds and their one canonical spelling;
//! - [`warninglist`]: well-known benign values that must not become blocking indicators;
//! - [`pattern`]: STIX 2.1 patterns (parser, checks, evaluator, reduction to observables);
//! - [`stix`] and [`misp`]: bundles and MISP events in and out; [`lists`]: CSV and plain lists;
//! - [`compiled`]: the lists the gateway and scanners match against, built for lookups in
//!   O(1) (exact values, hashes) and O(log n) (CIDR ranges).
//!
//! Data flows one way: a file or feed is parsed into [`Indicator`]s (normalised, warninglisted),
//! the store keeps them, and [`compiled::Lists`] is rebuilt from the store for the defences.

pub mod compiled;
pub mod lists;
pub mod misp;
pub mod observable;
pub mod pattern;
pub mod stix;
pub mod warninglist;

pub use observable::{Kind, Observable, ObservableError};
pub use pattern::{Pattern, PatternError};

use qalxan_core::Tlp;
use serde::{Deserialize, Serialize};

/// An indicator as the importers produce it and the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Indicator {
    pub kind: Kind,
    /// Normalised (see [`observable::normalize`]).
    pub value: String,
    pub tlp: Tlp,
    /// 0 to 100, as STIX's confidence.
    pub confidence: u8,
    /// Who said so: a partner, a feed, a part of Qalxan (`gateway`, `scan`), an analyst.
    pub source: String,
    pub tags: Vec<String>,
    pub description: String,
    /// Unix milliseconds.
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// After this the indicator no longer blocks (Unix milliseconds).
    pub valid_until: Option<i64>,
    /// The STIX indicator it came from, so exports keep its id.
    pub stix_id: Option<String>,
    /// Whether the defences enforce it (false for warninglisted values unless forced).
    pub blocking: bool,
    /// The warninglist the value is on, if any.
    pub warninglist: Option<String>,
}

impl Indicator {
    /// A new indicator with the defaults (TLP:AMBER, confidence 50, blocking unless the value is
    /// on a warninglist).
    pub fn new(observable: Observable, source: &str) -> Indicator {
        let warninglist = warninglist::check(&observable).map(str::to_owned);
        Indicator {
            blocking: warninglist.is_none() && observable.kind.is_blockable(),
            warninglist,
            kind: observable.kind,
            value: observable.value,
            tlp: Tlp::Amber,
            confidence: 50,
            source: source.to_owned(),
            tags: Vec::new(),
            description: String::new(),
            first_seen: None,
            last_seen: None,
            valid_until: None,
            stix_id: None,
        }
    }

    pub fn observable(&self) -> Observable {
        Observable {
            kind: self.kind,
            value: self.value.clone(),
        }
    }
}

/// What an import read: the indicators, the STIX objects to keep as they are (for TAXII and
/// round trips), and what it had to skip, each with where and why.
#[derive(Debug, Default)]
pub struct Import {
    pub indicators: Vec<Indicator>,
    pub objects: Vec<serde_json::Value>,
    pub skipped: Vec<String>,
}

/// A file that could not be read as the format it claims, with where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {message}")]
pub struct FormatError {
    /// A JSON path (`objects[3].pattern`) or `line N`.
    pub location: String,
    pub message: String,
}

impl FormatError {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> FormatError {
        FormatError {
            location: location.into(),
            message: message.into(),
        }
    }
}

/// Imports are bounded: no feed legitimately has more objects in one file.
pub const MAX_OBJECTS: usize = 20_000_000;
/// JSON nesting beyond this is refused before parsing (serde_json's own limit is 128).
pub const MAX_JSON_DEPTH: usize = 100;

/// Detects the format of an import by content: STIX bundle, MISP event or feed manifest, CSV or
/// a plain list of values.
pub fn import_any(data: &[u8], source: &str, default_tlp: Tlp) -> Result<Import, FormatError> {
    let text = std::str::from_utf8(data)
        .map_err(|e| FormatError::new(format!("byte {}", e.valid_up_to()), "not UTF-8 text"))?;
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') && !trimmed.starts_with("[ipv") {
        let value: serde_json::Value = serde_json::from_str(trimmed).map_err(|e| {
            FormatError::new(
                format!("line {} column {}", e.line(), e.column()),
                e.to_string(),
            )
        })?;
        if value.get("type").and_then(|t| t.as_str()) == Some("bundle")
            || value.get("spec_version").is_some()
        {
            return stix::import_bundle(&value, source, default_tlp);
        }
        return misp::import(&value, source, default_tlp);
    }
    lists::import_text(trimmed, source, default_tlp)
}
