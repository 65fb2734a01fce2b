//! What an indicator is about, and the one spelling each value is stored in.
//!
//! Two reports of the same address or domain must become one indicator, so every value goes
//! through [`normalize`] before it is stored or looked up: domains lower-cased and in IDNA
//! (punycode) form, URLs canonicalised by the `url` crate (WHATWG rules), CIDR ranges with
//! their host bits cleared, hashes in lower-case hex. Defanged values as analysts write them in
//! reports (`hxxp://evil[.]example`) are refanged first.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The kinds of value an indicator can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Ipv4,
    Ipv6,
    /// An IPv4 or IPv6 network (a single address is stored as `ipv4`/`ipv6`).
    Cidr,
    Domain,
    Url,
    Email,
    Md5,
    Sha1,
    Sha256,
    Filename,
    /// A phone number in E.164 form (`+994...`), for fraud calls and SMS.
    Phone,
    /// The first 6 to 8 digits of a payment card: the issuer of cards used in fraud.
    CardBin,
    /// A messenger account as `platform:username`, e.g. `telegram:fake_support_bot`.
    Messenger,
    /// A YARA rule's source text.
    Yara,
    /// A STIX 2.1 pattern that does not reduce to one value.
    StixPattern,
}

impl Kind {
    pub const ALL: &'static [Kind] = &[
        Kind::Ipv4,
        Kind::Ipv6,
        Kind::Cidr,
        Kind::Domain,
        Kind::Url,
        Kind::Email,
        Kind::Md5,
        Kind::Sha1,
        Kind::Sha256,
        Kind::Filename,
        Kind::Phone,
        Kind::CardBin,
        Kind::Messenger,
        Kind::Yara,
        Kind::StixPattern,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ipv4 => "ipv4",
            Kind::Ipv6 => "ipv6",
            Kind::Cidr => "cidr",
            Kind::Domain => "domain",
            Kind::Url => "url",
            Kind::Email => "email",
            Kind::Md5 => "md5",
            Kind::Sha1 => "sha1",
            Kind::Sha256 => "sha256",
            Kind::Filename => "filename",
            Kind::Phone => "phone",
            Kind::CardBin => "card-bin",
            Kind::Messenger => "messenger",
            Kind::Yara => "yara",
            Kind::StixPattern => "stix-pattern",
        }
    }

    /// Whether the defences can enforce the kind directly (the gateway, the scanners).
    pub fn is_blockable(self) -> bool {
        matches!(
            self,
            Kind::Ipv4
                | Kind::Ipv6
                | Kind::Cidr
                | Kind::Domain
                | Kind::Url
                | Kind::Md5
                | Kind::Sha1
                | Kind::Sha256
        )
    }

    pub fn is_hash(self) -> bool {
        matches!(self, Kind::Md5 | Kind::Sha1 | Kind::Sha256)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = ObservableError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let alias = match s.as_str() {
            "ip" | "ipv4-addr" | "ip-src" | "ip-dst" => Some(Kind::Ipv4),
            "ipv6-addr" => Some(Kind::Ipv6),
            "domain-name" | "hostname" => Some(Kind::Domain),
            "email-addr" | "email-src" | "email-dst" => Some(Kind::Email),
            "sha-1" => Some(Kind::Sha1),
            "sha-256" => Some(Kind::Sha256),
            "file" | "file-name" => Some(Kind::Filename),
            "phone-number" => Some(Kind::Phone),
            "bin" | "cardbin" | "card_bin" => Some(Kind::CardBin),
            "pattern" | "stix" => Some(Kind::StixPattern),
            _ => None,
        };
        alias
            .or_else(|| Kind::ALL.iter().copied().find(|k| k.as_str() == s))
            .ok_or_else(|| ObservableError {
                kind: None,
                value: s.clone(),
                reason: format!(
                    "unknown indicator type (expected one of: {})",
                    Kind::ALL
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }
}

/// A value that is not a valid instance of its kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}'{value}': {reason}", kind.map(|k| format!("{k} ")).unwrap_or_default())]
pub struct ObservableError {
    pub kind: Option<Kind>,
    pub value: String,
    pub reason: String,
}

fn invalid(kind: Kind, value: &str, reason: impl Into<String>) -> ObservableError {
    ObservableError {
        kind: Some(kind),
        value: value.chars().take(200).collect(),
        reason: reason.into(),
    }
}

/// Values longer than this are refused: no real indicator is, and they would bloat the lists.
pub const MAX_VALUE_LEN: usize = 8192;
/// YARA rules and STIX patterns may be longer.
pub const MAX_RULE_LEN: usize = 256 * 1024;

/// Undoes the defanging analysts apply so values in reports cannot be clicked.
pub fn refang(s: &str) -> String {
    let mut out = s.trim().to_owned();
    for (from, to) in [
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("[:]", ":"),
        ("[://]", "://"),
        ("[@]", "@"),
        ("[at]", "@"),
        ("[/]", "/"),
    ] {
        out = out.replace(from, to);
    }
    for (from, to) in [("hxxps://", "https://"), ("hxxp://", "http://")] {
        if out
            .get(..from.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(from))
        {
            out = format!("{to}{}", &out[from.len()..]);
        }
    }
    out
}

/// The canonical spelling of `raw` as a value of `kind`; single-address CIDR ranges become
/// addresses, so the returned kind may differ from the one asked for.
pub fn normalize(kind: Kind, raw: &str) -> Result<(Kind, String), ObservableError> {
    let limit = if matches!(kind, Kind::Yara | Kind::StixPattern) {
        MAX_RULE_LEN
    } else {
        MAX_VALUE_LEN
    };
    if raw.len() > limit {
        return Err(invalid(kind, raw, format!("longer than {limit} bytes")));
    }
    if raw.trim().is_empty() {
        return Err(invalid(kind, raw, "empty"));
    }
    let v = match kind {
        Kind::Yara | Kind::StixPattern => raw.trim().to_owned(),
        _ => refang(raw),
    };
    match kind {
        Kind::Ipv4 | Kind::Ipv6 | Kind::Cidr => normalize_ip(kind, &v),
        Kind::Domain => qalxan_core::normalize_domain(&v.to_lowercase())
            .map(|d| (Kind::Domain, d))
            .map_err(|m| invalid(kind, &v, m)),
        Kind::Url => normalize_url(&v).map(|u| (Kind::Url, u)),
        Kind::Email => normalize_email(&v).map(|e| (Kind::Email, e)),
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => {
            let want = match kind {
                Kind::Md5 => 32,
                Kind::Sha1 => 40,
                _ => 64,
            };
            if v.len() != want || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    kind,
                    &v,
                    format!("expected {want} hexadecimal digits"),
                ));
            }
            Ok((kind, v.to_ascii_lowercase()))
        }
        Kind::Filename => {
            if v.contains(['/', '\0']) {
                return Err(invalid(
                    kind,
                    &v,
                    "a file name has no '/' (give the name only)",
                ));
            }
            Ok((kind, v))
        }
        Kind::Phone => normalize_phone(&v).map(|p| (kind, p)),
        Kind::CardBin => {
            let digits: String = v.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
            if !(6..=8).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid(kind, &v, "expected the card's first 6 to 8 digits"));
            }
            Ok((kind, digits))
        }
        Kind::Messenger => normalize_messenger(&v).map(|m| (kind, m)),
        Kind::Yara => {
            if !v.contains("rule") || !v.contains('{') || !v.contains("condition") {
                return Err(invalid(
                    kind,
                    &v,
                    "not a YARA rule (expected `rule NAME { ... condition: ... }`)",
                ));
            }
            Ok((kind, v))
        }
        Kind::StixPattern => {
            crate::pattern::Pattern::parse(&v).map_err(|e| invalid(kind, &v, e.to_string()))?;
            Ok((kind, v))
        }
    }
}

fn normalize_ip(kind: Kind, v: &str) -> Result<(Kind, String), ObservableError> {
    if let Ok(ip) = v.parse::<IpAddr>() {
        return Ok(ip_kind(ip));
    }
    let net = v
        .parse::<IpNet>()
        .map_err(|_| invalid(kind, v, "not an IP address or CIDR range"))?
        .trunc();
    if net.prefix_len() == net.max_prefix_len() {
        return Ok(ip_kind(net.addr()));
    }
    Ok((Kind::Cidr, net.to_string()))
}

fn ip_kind(ip: IpAddr) -> (Kind, String) {
    // `::ffff:1.2.3.4` is an IPv4 address; one spelling keeps one indicator.
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(a) => (Kind::Ipv4, a.to_string()),
        IpAddr::V6(a) => (Kind::Ipv6, a.to_string()),
    }
}

fn normalize_url(v: &str) -> Result<String, ObservableError> {
    let with_scheme = if v.contains("://") {
        v.to_owned()
    } else {
        format!("http://{v}")
    };
    let mut url =
        url::Url::parse(&with_scheme).map_err(|e| invalid(Kind::Url, v, e.to_string()))?;
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(invalid(Kind::Url, v, "a URL needs a host"));
    }
    // The fragment never reaches the server, so it cannot tell two requests apart.
    url.set_fragment(None);
    Ok(url.to_string())
}

fn normalize_email(v: &str) -> Result<String, ObservableError> {
    let v = v.trim_start_matches("mailto:");
    let (local, domain) = v
        .rsplit_once('@')
        .ok_or_else(|| invalid(Kind::Email, v, "an e-mail address needs '@'"))?;
    if local.is_empty() || local.contains(char::is_whitespace) {
        return Err(invalid(
            Kind::Email,
            v,
            "the part before '@' is empty or has spaces",
        ));
    }
    let domain = qalxan_core::normalize_domain(&domain.to_lowercase())
        .map_err(|m| invalid(Kind::Email, v, format!("domain: {m}")))?;
    Ok(format!("{}@{domain}", local.to_lowercase()))
}

fn normalize_phone(v: &str) -> Result<String, ObservableError> {
    let compact: String = v
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '(' | ')' | '.' | '\u{a0}'))
        .collect();
    let digits = if let Some(rest) = compact.strip_prefix('+') {
        rest
    } else if let Some(rest) = compact.strip_prefix("00") {
        rest
    } else {
        return Err(invalid(
            Kind::Phone,
            v,
            "give the number in international form (+ and country code)",
        ));
    };
    if !(7..=15).contains(&digits.len()) || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid(Kind::Phone, v, "expected 7 to 15 digits after '+'"));
    }
    Ok(format!("+{digits}"))
}

fn normalize_messenger(v: &str) -> Result<String, ObservableError> {
    let lower = v.to_lowercase();
    let (platform, name) = if let Some(rest) = lower
        .strip_prefix("https://t.me/")
        .or_else(|| lower.strip_prefix("http://t.me/"))
        .or_else(|| lower.strip_prefix("t.me/"))
    {
        ("telegram", rest.trim_end_matches('/'))
    } else if let Some((p, n)) = lower.split_once(':') {
        (p.trim(), n.trim())
    } else {
        ("telegram", lower.as_str())
    };
    let name = name.trim_start_matches('@');
    let platform_ok = !platform.is_empty()
        && platform
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !platform_ok {
        return Err(invalid(Kind::Messenger, v, "expected platform:username"));
    }
    if name.is_empty() || name.len() > 64 || name.contains(char::is_whitespace) {
        return Err(invalid(
            Kind::Messenger,
            v,
            "the user name is empty, too long or has spaces",
        ));
    }
    Ok(format!("{platform}:{name}"))
}

/// The kind a bare value most likely is, for `qalxan intel match VALUE` and plain lists.
pub fn guess(raw: &str) -> Option<Kind> {
    let v = refang(raw);
    if v.is_empty() {
        return None;
    }
    if v.starts_with('[') && v.contains(':') && v.contains(']') {
        return Some(Kind::StixPattern);
    }
    if v.parse::<IpAddr>().is_ok() {
        return Some(if v.contains(':') {
            Kind::Ipv6
        } else {
            Kind::Ipv4
        });
    }
    if v.parse::<IpNet>().is_ok() {
        return Some(Kind::Cidr);
    }
    if v.bytes().all(|b| b.is_ascii_hexdigit()) {
        match v.len() {
            32 => return Some(Kind::Md5),
            40 => return Some(Kind::Sha1),
            64 => return Some(Kind::Sha256),
            _ => {}
        }
    }
    if v.contains("://") || v.to_ascii_lowercase().starts_with("t.me/") {
        return Some(if v.to_ascii_lowercase().contains("t.me/") {
            Kind::Messenger
        } else {
            Kind::Url
        });
    }
    if v.starts_with('@') || v.starts_with("telegram:") {
        return Some(Kind::Messenger);
    }
    if v.contains('@') && normalize_email(&v).is_ok() {
        return Some(Kind::Email);
    }
    if (v.starts_with('+') || v.starts_with("00")) && normalize_phone(&v).is_ok() {
        return Some(Kind::Phone);
    }
    if v.contains('/') {
        let host = v.split('/').next().unwrap_or("");
        if looks_like_domain(host) {
            return Some(Kind::Url);
        }
    }
    if looks_like_domain(&v) {
        return Some(Kind::Domain);
    }
    if v.contains('.') && !v.contains(char::is_whitespace) {
        return Some(Kind::Filename);
    }
    None
}

/// A domain has a last label that is a word (a TLD), not a file extension we know.
fn looks_like_domain(v: &str) -> bool {
    const FILE_EXTENSIONS: &[&str] = &[
        "exe", "dll", "doc", "docx", "docm", "xls", "xlsx", "xlsm", "ppt", "pptx", "pdf", "rtf",
        "zip", "rar", "7z", "js", "vbs", "ps1", "bat", "cmd", "scr", "lnk", "hta", "iso", "img",
        "txt", "jar", "msi", "bin", "dat", "tmp", "sys", "apk", "elf", "sh", "py", "html", "htm",
    ];
    let Some(tld) = v.rsplit('.').next() else {
        return false;
    };
    v.contains('.')
        && !FILE_EXTENSIONS.contains(&tld.to_ascii_lowercase().as_str())
        && tld.len() >= 2
        && (tld.chars().all(char::is_alphabetic) || tld.starts_with("xn--"))
        && qalxan_core::normalize_domain(&v.to_lowercase()).is_ok()
}

/// A normalised value with its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Observable {
    pub kind: Kind,
    pub value: String,
}

impl Observable {
    pub fn new(kind: Kind, raw: &str) -> Result<Observable, ObservableError> {
        let (kind, value) = normalize(kind, raw)?;
        Ok(Observable { kind, value })
    }

    /// Guesses the kind, then normalises.
    pub fn guess(raw: &str) -> Result<Observable, ObservableError> {
        let kind = guess(raw).ok_or_else(|| ObservableError {
            kind: None,
            value: raw.chars().take(200).collect(),
            reason: "cannot tell what kind of value this is; name the type".to_owned(),
        })?;
        Observable::new(kind, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(kind: Kind, v: &str) -> String {
        match normalize(kind, v) {
            Ok((_, s)) => s,
            Err(e) => panic!("{v}: {e}"),
        }
    }

    #[test]
    fn values_get_one_spelling() {
        assert_eq!(norm(Kind::Domain, "Evil.EXAMPLE."), "evil.example");
        assert_eq!(
            norm(Kind::Domain, "bücher.example"),
            "xn--bcher-kva.example"
        );
        assert_eq!(norm(Kind::Domain, "evil[.]example"), "evil.example");
        assert_eq!(
            norm(Kind::Url, "hxxp://Evil.Example:80/a/../b?q=1#frag"),
            "http://evil.example/b?q=1"
        );
        assert_eq!(norm(Kind::Url, "evil.example/x"), "http://evil.example/x");
        assert_eq!(norm(Kind::Cidr, "10.1.2.3/8"), "10.0.0.0/8");
        assert_eq!(normalize(Kind::Cidr, "10.1.2.3/32").unwrap().0, Kind::Ipv4);
        assert_eq!(norm(Kind::Ipv6, "2001:DB8:0::1"), "2001:db8::1");
        assert_eq!(norm(Kind::Ipv6, "::ffff:1.2.3.4"), "1.2.3.4");
        assert_eq!(norm(Kind::Email, "Boss@Bank.EXAMPLE"), "boss@bank.example");
        assert_eq!(
            norm(Kind::Md5, "D41D8CD98F00B204E9800998ECF8427E"),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(norm(Kind::Phone, "+994 (12) 555-12-34"), "+994125551234");
        assert_eq!(norm(Kind::Phone, "00994125551234"), "+994125551234");
        assert_eq!(norm(Kind::CardBin, "4169 73"), "416973");
        assert_eq!(
            norm(Kind::Messenger, "https://t.me/Fake_Support_Bot"),
            "telegram:fake_support_bot"
        );
        assert_eq!(
            norm(Kind::Messenger, "@fake_support_bot"),
            "telegram:fake_support_bot"
        );
        assert_eq!(
            norm(Kind::Messenger, "whatsapp:+994501234567"),
            "whatsapp:+994501234567"
        );
    }

    #[test]
    fn bad_values_say_why() {
        for (kind, v) in [
            (Kind::Md5, "abc"),
            (Kind::Ipv4, "300.1.1.1"),
            (Kind::Domain, "localhost"),
            (Kind::Email, "nobody"),
            (Kind::Phone, "12345"),
            (Kind::CardBin, "12ab56"),
            (Kind::Url, "http://"),
            (Kind::StixPattern, "[file:size = ]"),
            (Kind::Yara, "not a rule"),
            (Kind::Filename, ""),
        ] {
            let e = normalize(kind, v).expect_err(v);
            assert!(!e.reason.is_empty(), "{e}");
        }
        let e = normalize(Kind::Md5, "abc").unwrap_err();
        assert_eq!(e.to_string(), "md5 'abc': expected 32 hexadecimal digits");
    }

    #[test]
    fn kinds_are_guessed() {
        for (v, kind) in [
            ("1.2.3.4", Kind::Ipv4),
            ("2001:db8::1", Kind::Ipv6),
            ("10.0.0.0/8", Kind::Cidr),
            ("evil.example", Kind::Domain),
            ("evil[.]example", Kind::Domain),
            ("http://evil.example/x", Kind::Url),
            ("evil.example/payload", Kind::Url),
            ("a@evil.example", Kind::Email),
            ("d41d8cd98f00b204e9800998ecf8427e", Kind::Md5),
            ("da39a3ee5e6b4b0d3255bfef95601890afd80709", Kind::Sha1),
            ("+994125551234", Kind::Phone),
            ("invoice.exe", Kind::Filename),
            ("t.me/fake_bot", Kind::Messenger),
            ("[ipv4-addr:value = '1.2.3.4']", Kind::StixPattern),
        ] {
            assert_eq!(guess(v), Some(kind), "{v}");
        }
        assert_eq!(guess("hello world"), None);
        assert_eq!(guess("Trump’s_Attack.docx"), Some(Kind::Filename));
        for k in Kind::ALL {
            assert_eq!(k.as_str().parse::<Kind>().unwrap(), *k);
        }
    }
}
