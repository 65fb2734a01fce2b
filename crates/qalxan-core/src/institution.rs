//! The constituency: institutions the CERT protects, and the checks their fields must pass
//! before anything stores them.

use crate::Timestamp;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// A field that failed validation, named the way the API and the forms name it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The editable fields of an institution. Construct through [`InstitutionFields::validated`]
/// so stored data is always normalised.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InstitutionFields {
    /// Unique (case-insensitively) name, e.g. "Ministry of Health".
    pub name: String,
    /// Sector, e.g. "government", "health", "finance", "energy".
    #[serde(default)]
    pub sector: String,
    #[serde(default)]
    pub contact_name: String,
    #[serde(default)]
    pub contact_email: String,
    #[serde(default)]
    pub contact_phone: String,
    /// Domains the institution owns; stored lower-case, internationalised names as punycode.
    #[serde(default)]
    pub domains: Vec<String>,
    /// Address ranges the institution owns, in CIDR notation (a bare address is a /32 or /128).
    #[serde(default)]
    pub ip_ranges: Vec<String>,
    #[serde(default)]
    pub notes: String,
}

const MAX_TEXT: usize = 500;
const MAX_NOTES: usize = 10_000;
const MAX_LIST: usize = 1_000;

impl InstitutionFields {
    /// Trims, normalises and checks every field; the first problem is reported with its field.
    pub fn validated(mut self) -> Result<Self, FieldError> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() {
            return Err(FieldError::new("name", "must not be empty"));
        }
        for (field, value, max) in [
            ("name", &mut self.name, MAX_TEXT),
            ("sector", &mut self.sector, MAX_TEXT),
            ("contact_name", &mut self.contact_name, MAX_TEXT),
            ("contact_email", &mut self.contact_email, MAX_TEXT),
            ("contact_phone", &mut self.contact_phone, MAX_TEXT),
            ("notes", &mut self.notes, MAX_NOTES),
        ] {
            *value = value.trim().to_owned();
            if value.chars().count() > max {
                return Err(FieldError::new(
                    field,
                    format!("longer than {max} characters"),
                ));
            }
            if field != "notes" && value.chars().any(char::is_control) {
                return Err(FieldError::new(field, "contains control characters"));
            }
        }
        self.sector = self.sector.to_lowercase();
        if !self.contact_email.is_empty() && !looks_like_email(&self.contact_email) {
            return Err(FieldError::new(
                "contact_email",
                format!("'{}' is not an e-mail address", self.contact_email),
            ));
        }
        if self.domains.len() > MAX_LIST || self.ip_ranges.len() > MAX_LIST {
            return Err(FieldError::new(
                if self.domains.len() > MAX_LIST {
                    "domains"
                } else {
                    "ip_ranges"
                },
                format!("more than {MAX_LIST} entries"),
            ));
        }
        let mut domains = Vec::with_capacity(self.domains.len());
        for (i, d) in self.domains.iter().enumerate() {
            let d = d.trim();
            if d.is_empty() {
                continue;
            }
            let norm = normalize_domain(d)
                .map_err(|m| FieldError::new(format!("domains[{i}]"), format!("'{d}': {m}")))?;
            if !domains.contains(&norm) {
                domains.push(norm);
            }
        }
        self.domains = domains;
        let mut ranges = Vec::with_capacity(self.ip_ranges.len());
        for (i, r) in self.ip_ranges.iter().enumerate() {
            let r = r.trim();
            if r.is_empty() {
                continue;
            }
            let net = parse_ip_range(r).ok_or_else(|| {
                FieldError::new(
                    format!("ip_ranges[{i}]"),
                    format!("'{r}' is not an IP address or CIDR range"),
                )
            })?;
            let text = net.to_string();
            if !ranges.contains(&text) {
                ranges.push(text);
            }
        }
        self.ip_ranges = ranges;
        Ok(self)
    }

    /// Case-insensitive identity of the name, used for uniqueness.
    pub fn name_key(&self) -> String {
        self.name.to_lowercase()
    }
}

/// An institution as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Institution {
    pub id: crate::InstitutionId,
    #[serde(flatten)]
    pub fields: InstitutionFields,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

fn looks_like_email(s: &str) -> bool {
    match s.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !s.chars().any(char::is_whitespace)
                && !domain.contains('@')
        }
        None => false,
    }
}

/// Lower-cases a domain name and turns an internationalised one into punycode (IDNA 2008/UTS 46).
pub fn normalize_domain(d: &str) -> Result<String, String> {
    let d = d.trim_end_matches('.');
    let ascii =
        idna::domain_to_ascii_strict(d).map_err(|_| "not a valid domain name".to_owned())?;
    if ascii.len() > 253 || !ascii.contains('.') {
        return Err("not a fully qualified domain name".to_owned());
    }
    Ok(ascii)
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address; host bits are cleared so each range
/// has one spelling.
pub fn parse_ip_range(s: &str) -> Option<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Some(net.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(name: &str) -> InstitutionFields {
        InstitutionFields {
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn normalises_domains_and_ranges() {
        let f = InstitutionFields {
            domains: vec![
                "Gov.Example.".into(),
                "bücher.example".into(),
                "gov.example".into(),
            ],
            ip_ranges: vec![
                "10.1.2.3/8".into(),
                "192.0.2.7".into(),
                "2001:db8::1/32".into(),
            ],
            sector: " Health ".into(),
            ..fields("  Ministry  ")
        }
        .validated()
        .unwrap();
        assert_eq!(f.name, "Ministry");
        assert_eq!(f.sector, "health");
        assert_eq!(f.domains, ["gov.example", "xn--bcher-kva.example"]);
        assert_eq!(f.ip_ranges, ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]);
    }

    #[test]
    fn errors_name_the_field() {
        let err = fields("").validated().unwrap_err();
        assert_eq!(err.field, "name");
        let err = InstitutionFields {
            ip_ranges: vec!["10.0.0.0/8".into(), "10.0.0.300".into()],
            ..fields("x")
        }
        .validated()
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ip_ranges[1]: '10.0.0.300' is not an IP address or CIDR range"
        );
        let err = InstitutionFields {
            domains: vec!["localhost".into()],
            ..fields("x")
        }
        .validated()
        .unwrap_err();
        assert_eq!(err.field, "domains[0]");
        let err = InstitutionFields {
            contact_email: "nobody".into(),
            ..fields("x")
        }
        .validated()
        .unwrap_err();
        assert_eq!(err.field, "contact_email");
    }
}
