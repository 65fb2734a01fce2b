//! Alerts: what every part raises, and the key that folds a flood of them into one.
//!
//! A gateway that blocks a scanner's ten thousand requests raises one alert with a count of ten
//! thousand, not ten thousand alerts: alerts with the same key that arrive while an open alert
//! with that key was last seen within the window add to it. The key names what an analyst
//! would call "the same thing": which part saw it, what kind of thing, for which institution,
//! and the one value that identifies it (the attacking address, the file's hash, the site).

use qalxan_core::{EventKind, Severity};
use serde_json::Value;

/// Longest alert key, title or observable value kept; longer input is cut.
pub const MAX_TEXT: usize = 512;
/// Observables kept per alert: an aggregated alert keeps the first ones it saw.
pub const MAX_OBSERVABLES: usize = 20;

/// An alert about to be stored (before aggregation).
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDraft {
    /// What folds alerts together (see the module documentation).
    pub key: String,
    /// The kind of detection, such as `waf.blocked` or `phishing.reported`.
    pub rule: String,
    pub title: String,
    pub severity: Severity,
    pub institution_id: Option<i64>,
    /// (kind, value) pairs, in the threat-intelligence vocabulary (`ipv4`, `sha256`, `url`...).
    pub observables: Vec<(String, String)>,
    pub count: i64,
    /// Unix milliseconds.
    pub occurred_at: i64,
}

/// The default key: rule, institution and the identifying value.
pub fn key(rule: &str, institution_id: Option<i64>, value: &str) -> String {
    let inst = institution_id.map_or_else(|| "-".to_owned(), |i| i.to_string());
    cut(&format!("{rule}|{inst}|{value}"))
}

/// Cuts `s` to [`MAX_TEXT`] bytes at a character boundary.
pub fn cut(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

fn attr<'a>(attributes: &'a Value, name: &str) -> Option<&'a str> {
    attributes
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn ip_kind(ip: &str) -> &'static str {
    if ip.contains(':') {
        "ipv6"
    } else {
        "ipv4"
    }
}

/// The alert an event from a part of the platform raises, if it raises one. Figures that are
/// not detections (indicators added, incidents opened) raise none.
pub fn from_event(
    kind: EventKind,
    severity: Severity,
    institution_id: Option<i64>,
    count: i64,
    occurred_at: i64,
    attributes: &Value,
) -> Option<AlertDraft> {
    let mut observables = Vec::new();
    let client = attr(attributes, "client_ip");
    if let Some(ip) = client {
        observables.push((ip_kind(ip).to_owned(), ip.to_owned()));
    }
    let host = attr(attributes, "host").unwrap_or("");
    let (rule, value, title) = match kind {
        EventKind::RequestBlocked => {
            if let Some(indicator) = attr(attributes, "indicator") {
                let what = attr(attributes, "blocklist").unwrap_or("indicator");
                (
                    "intel.sighting",
                    indicator.to_owned(),
                    format!("Known-bad {what} seen: {indicator}"),
                )
            } else {
                let ip = client.unwrap_or("unknown address");
                (
                    "waf.blocked",
                    ip.to_owned(),
                    format!("Malicious requests from {ip}"),
                )
            }
        }
        EventKind::DdosDetected => {
            let target = if host.is_empty() { "a site" } else { host };
            (
                "ddos.detected",
                host.to_owned(),
                format!("Denial-of-service flood against {target}"),
            )
        }
        EventKind::AddressBanned => {
            let ip = client.unwrap_or("unknown address");
            (
                "gateway.banned",
                ip.to_owned(),
                format!("Address {ip} banned by the gateway"),
            )
        }
        EventKind::FileInfected => {
            let signature = attr(attributes, "signature").unwrap_or("unknown signature");
            if let Some(h) = attr(attributes, "sha256") {
                observables.push(("sha256".to_owned(), h.to_owned()));
            }
            (
                "scan.infected",
                signature.to_owned(),
                format!("Infected file: {signature}"),
            )
        }
        EventKind::DocumentNeutralized => {
            let sha = attr(attributes, "sha256").unwrap_or("");
            if !sha.is_empty() {
                observables.push(("sha256".to_owned(), sha.to_owned()));
            }
            let file = attr(attributes, "file").unwrap_or("a document");
            (
                "doc.malicious",
                sha.to_owned(),
                format!("Malicious document neutralised: {file}"),
            )
        }
        EventKind::IndicatorAdded
        | EventKind::IncidentOpened
        | EventKind::IncidentClosed
        | EventKind::VictimRecorded => return None,
    };
    if let Some(indicator) = attr(attributes, "indicator") {
        if !observables.iter().any(|(_, v)| v == indicator) {
            let kind = attr(attributes, "blocklist").unwrap_or("value");
            observables.push((kind.to_owned(), indicator.to_owned()));
        }
    }
    observables.iter_mut().for_each(|(_, v)| *v = cut(v));
    observables.truncate(MAX_OBSERVABLES);
    Some(AlertDraft {
        key: key(rule, institution_id, &value),
        rule: rule.to_owned(),
        title: cut(&title),
        severity,
        institution_id,
        observables,
        count: count.max(1),
        occurred_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_from_one_address_share_a_key() {
        let a = from_event(
            EventKind::RequestBlocked,
            Severity::High,
            Some(3),
            1,
            0,
            &json!({"client_ip": "203.0.113.9", "uri": "/a"}),
        );
        let b = from_event(
            EventKind::RequestBlocked,
            Severity::High,
            Some(3),
            5,
            1,
            &json!({"client_ip": "203.0.113.9", "uri": "/b"}),
        );
        let (a, b) = (a.expect("alert"), b.expect("alert"));
        assert_eq!(a.key, b.key);
        assert_eq!(a.key, "waf.blocked|3|203.0.113.9");
        assert_eq!(b.count, 5);
        assert_eq!(
            a.observables,
            vec![("ipv4".to_owned(), "203.0.113.9".to_owned())]
        );
    }

    #[test]
    fn a_flood_is_keyed_by_its_target() {
        let a = from_event(
            EventKind::DdosDetected,
            Severity::High,
            None,
            1,
            0,
            &json!({"client_ip": "198.51.100.1", "host": "gov.example"}),
        )
        .expect("alert");
        assert_eq!(a.key, "ddos.detected|-|gov.example");
        assert!(from_event(
            EventKind::IncidentOpened,
            Severity::Low,
            None,
            1,
            0,
            &json!({})
        )
        .is_none());
    }

    #[test]
    fn long_values_are_cut_on_char_boundaries() {
        let s = "ə".repeat(400);
        let c = cut(&s);
        assert!(c.len() <= MAX_TEXT && s.starts_with(&c));
    }
}
