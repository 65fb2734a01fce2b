//! E-mail analysis: what a message carries that threat intelligence can know.
//!
//! [`analyse`] reads a message (RFC 5322, MIME) and lists its observables with where each was
//! found: the sender's addresses and their domains (`From`, `Sender`, `Reply-To`,
//! `Return-Path`), the public addresses of the relays in its `Received` headers, the links in
//! its text and HTML bodies, and each attachment's name and MD5/SHA-1/SHA-256, inside
//! attached messages too. The server matches them against the indicators and counts each match
//! as a sighting by the mail part, which is how a phishing wave reported by one institution
//! shows up on the indicators the CERT already holds.
//!
//! MIME is parsed by `mail-parser`; this crate only decides what to take from it. The input is
//! untrusted: its size, the number of parts read, the depth of attached messages and the
//! number of links are bounded ([`Limits`]), and what is past a bound is left unread and
//! counted, never an error.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};
use qalxan_intel::{Kind, Observable};
use regex::Regex;
use serde::Serialize;
use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::OnceLock;

/// Bounds on the work one message may cause.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest message read, in bytes.
    pub max_bytes: usize,
    /// Parts (bodies and attachments) read, over all nested messages.
    pub max_parts: usize,
    /// Depth of messages attached to messages.
    pub max_depth: usize,
    /// Distinct links kept.
    pub max_links: usize,
    /// Distinct observables kept in all (each costs the server a lookup).
    pub max_observables: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 32 << 20,
            max_parts: 1_000,
            max_depth: 4,
            max_links: 2_000,
            max_observables: 5_000,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MailError {
    #[error("the message is {size} bytes, more than the {limit} read")]
    TooLarge { size: usize, limit: usize },
    #[error("not an e-mail message: no header could be read")]
    NotMail,
}

/// An observable and where in the message it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Found {
    #[serde(flatten)]
    pub observable: Observable,
    /// `From`, `Reply-To`, `Received`, `link in the text body`, `attachment invoice.zip`...;
    /// inside an attached message, prefixed with `attached message N: `.
    pub place: String,
}

/// What [`analyse`] read.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Analysis {
    pub subject: Option<String>,
    /// Each observable once, at the first place it was found.
    pub found: Vec<Found>,
    /// Parts, links and observables left out because of [`Limits`].
    pub skipped: usize,
}

/// Reads a message's observables.
pub fn analyse(raw: &[u8], limits: &Limits) -> Result<Analysis, MailError> {
    if raw.len() > limits.max_bytes {
        return Err(MailError::TooLarge {
            size: raw.len(),
            limit: limits.max_bytes,
        });
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::NotMail)?;
    if message.parts.first().is_none_or(|p| p.headers.is_empty()) {
        return Err(MailError::NotMail);
    }
    let mut reader = Reader {
        limits,
        out: Analysis {
            subject: message.subject().map(str::to_owned),
            ..Analysis::default()
        },
        seen: HashSet::new(),
        parts: 0,
        links: 0,
        attached: 0,
    };
    reader.message(&message, "", 0);
    Ok(reader.out)
}

struct Reader<'l> {
    limits: &'l Limits,
    out: Analysis,
    seen: HashSet<(Kind, String)>,
    parts: usize,
    links: usize,
    attached: usize,
}

impl Reader<'_> {
    /// Keeps an observable not seen before; whether it did.
    fn add(&mut self, observable: Observable, place: impl FnOnce() -> String) -> bool {
        if self
            .seen
            .contains(&(observable.kind, observable.value.clone()))
        {
            return false;
        }
        if self.out.found.len() >= self.limits.max_observables {
            self.out.skipped += 1;
            return false;
        }
        self.seen
            .insert((observable.kind, observable.value.clone()));
        self.out.found.push(Found {
            observable,
            place: place(),
        });
        true
    }

    fn message(&mut self, message: &Message<'_>, prefix: &str, depth: usize) {
        let senders = [
            ("From", message.from()),
            ("Sender", message.sender()),
            ("Reply-To", message.reply_to()),
            ("Return-Path", message.return_path().as_address()),
        ];
        for (header, address) in senders {
            for addr in address.into_iter().flat_map(|a| a.iter()) {
                let Some(text) = addr.address() else { continue };
                if let Ok(email) = Observable::new(Kind::Email, text) {
                    let domain = email
                        .value
                        .rsplit_once('@')
                        .and_then(|(_, d)| Observable::new(Kind::Domain, d).ok());
                    self.add(email, || format!("{prefix}{header}"));
                    if let Some(domain) = domain {
                        self.add(domain, || format!("{prefix}{header} domain"));
                    }
                }
            }
        }
        // Return-Path is often a bare text header rather than an address list.
        if let Some(text) = message.return_path().as_text() {
            let text = text.trim_matches(['<', '>', ' ']);
            if let Ok(email) = Observable::new(Kind::Email, text) {
                self.add(email, || format!("{prefix}Return-Path"));
            }
        }
        for received in message.received_all() {
            let ip = received.from_ip.or(match &received.from {
                Some(mail_parser::Host::IpAddr(ip)) => Some(*ip),
                _ => None,
            });
            if let Some(ip) = ip.filter(is_public) {
                let kind = if ip.is_ipv4() { Kind::Ipv4 } else { Kind::Ipv6 };
                if let Ok(ob) = Observable::new(kind, &ip.to_string()) {
                    self.add(ob, || format!("{prefix}Received"));
                }
            }
        }
        for (i, part) in message.parts.iter().enumerate() {
            if self.parts >= self.limits.max_parts {
                self.out.skipped += message.parts.len() - i;
                return;
            }
            self.parts += 1;
            match &part.body {
                PartType::Multipart(_) => {}
                PartType::Text(text) | PartType::Html(text) => {
                    let html = matches!(part.body, PartType::Html(_));
                    // A text or HTML file sent as an attachment (the usual phishing page) is
                    // an attachment too: its name and hashes, besides its links.
                    let name = part.attachment_name().map(str::to_owned);
                    let attached = name.is_some()
                        || part
                            .content_disposition()
                            .is_some_and(|d| d.is_attachment());
                    if attached {
                        self.attachment(part.contents(), name.clone(), prefix);
                    }
                    let what = match (attached, html) {
                        (true, _) => {
                            format!("attachment {}", name.as_deref().unwrap_or("(no name)"))
                        }
                        (false, true) => "HTML body".to_owned(),
                        (false, false) => "text body".to_owned(),
                    };
                    self.links(text, || format!("{prefix}{what}"));
                }
                PartType::Binary(_) | PartType::InlineBinary(_) => {
                    let name = part.attachment_name().map(str::to_owned);
                    self.attachment(part.contents(), name, prefix);
                }
                PartType::Message(inner) => {
                    self.attached += 1;
                    if depth + 1 >= self.limits.max_depth {
                        self.out.skipped += 1;
                        continue;
                    }
                    let prefix = format!("{prefix}attached message {}: ", self.attached);
                    self.message(inner, &prefix, depth + 1);
                }
            }
        }
    }

    fn attachment(&mut self, data: &[u8], name: Option<String>, prefix: &str) {
        use sha2::Digest;
        let place = format!(
            "{prefix}attachment {}",
            name.as_deref().unwrap_or("(no name)")
        );
        if let Some(name) = name.as_deref() {
            if let Ok(ob) = Observable::new(Kind::Filename, name) {
                self.add(ob, || place.clone());
            }
        }
        let digests = [
            (Kind::Sha256, hex(&sha2::Sha256::digest(data))),
            (Kind::Sha1, hex(&sha1::Sha1::digest(data))),
            (Kind::Md5, hex(&md5::Md5::digest(data))),
        ];
        for (kind, digest) in digests {
            if let Ok(ob) = Observable::new(kind, &digest) {
                self.add(ob, || place.clone());
            }
        }
    }

    fn links(&mut self, text: &str, place: impl Fn() -> String) {
        static LINK: OnceLock<Regex> = OnceLock::new();
        let link = LINK.get_or_init(|| {
            // A link ends where a URL cannot continue: space, quotes, angle brackets.
            #[allow(clippy::unwrap_used)] // A constant pattern.
            Regex::new(r#"(?i)\bhttps?://[^\s"'<>`]+"#).unwrap()
        });
        for m in link.find_iter(text) {
            if self.links >= self.limits.max_links {
                self.out.skipped += 1;
                return;
            }
            let url = m
                .as_str()
                .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', ']']);
            let url = html_unescape(url);
            if let Ok(ob) = Observable::new(Kind::Url, &url) {
                // Only distinct links count: repeating a harmless link must not push the
                // others out.
                if self.add(ob, &place) {
                    self.links += 1;
                }
            }
        }
    }
}

/// Links in HTML attributes carry `&amp;` for `&`.
fn html_unescape(s: &str) -> String {
    s.replace("&amp;", "&")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Addresses a relay could be reached at from the Internet (private, loopback and
/// link-local ones say nothing about the sender).
fn is_public(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHISH: &str = "Return-Path: <bounce@mailer.bad-bank.example>\r\n\
Received: from mx.bad-bank.example (mx.bad-bank.example [45.9.148.3])\r\n\
\tby mx.cert.example with ESMTP id 1; Tue, 24 Nov 2026 10:00:00 +0000\r\n\
Received: from internal (internal [10.0.0.5]) by mx.bad-bank.example; Tue, 24 Nov 2026 09:59:59 +0000\r\n\
From: \"Your Bank\" <security@Bad-Bank.Example>\r\n\
Reply-To: collect@drop.example\r\n\
To: victim@institution.example\r\n\
Subject: Verify your account\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: multipart/alternative; boundary=\"b2\"\r\n\
\r\n\
--b2\r\n\
Content-Type: text/plain\r\n\
\r\n\
Log in at http://login.bad-bank.example/verify?id=1. Thanks.\r\n\
--b2\r\n\
Content-Type: text/html\r\n\
\r\n\
<a href=\"https://login.bad-bank.example/verify?id=1&amp;x=2\">log in</a>\r\n\
--b2--\r\n\
--b1\r\n\
Content-Type: application/octet-stream; name=\"invoice.exe\"\r\n\
Content-Disposition: attachment; filename=\"invoice.exe\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
TVqQAAMAAAAEAAAA\r\n\
--b1--\r\n";

    fn values(a: &Analysis) -> Vec<(Kind, &str, &str)> {
        a.found
            .iter()
            .map(|f| {
                (
                    f.observable.kind,
                    f.observable.value.as_str(),
                    f.place.as_str(),
                )
            })
            .collect()
    }

    #[test]
    fn a_phishing_message_gives_its_senders_relays_links_and_attachment() {
        let a = analyse(PHISH.as_bytes(), &Limits::default()).unwrap();
        assert_eq!(a.subject.as_deref(), Some("Verify your account"));
        let v = values(&a);
        assert!(v.contains(&(Kind::Email, "security@bad-bank.example", "From")));
        assert!(v.contains(&(Kind::Domain, "bad-bank.example", "From domain")));
        assert!(v.contains(&(Kind::Email, "collect@drop.example", "Reply-To")));
        assert!(v.contains(&(Kind::Email, "bounce@mailer.bad-bank.example", "Return-Path")));
        assert!(v.contains(&(Kind::Ipv4, "45.9.148.3", "Received")));
        assert!(
            !v.iter().any(|(_, value, _)| *value == "10.0.0.5"),
            "private relays say nothing: {v:?}"
        );
        assert!(v.iter().any(|(k, value, place)| *k == Kind::Url
            && value.starts_with("http://login.bad-bank.example/verify")
            && *place == "text body"));
        assert!(v.iter().any(|(k, value, place)| *k == Kind::Url
            && value.contains("x=2")
            && !value.contains("&amp;")
            && *place == "HTML body"));
        assert!(v.contains(&(Kind::Filename, "invoice.exe", "attachment invoice.exe")));
        // The attachment's bytes are the base64 body decoded: "MZ\x90\0\x03\0\0\0\x04\0\0\0".
        let body = [0x4d, 0x5a, 0x90, 0, 3, 0, 0, 0, 4, 0, 0, 0];
        use sha2::Digest;
        let sha256 = hex(&sha2::Sha256::digest(body));
        assert!(v.contains(&(Kind::Sha256, sha256.as_str(), "attachment invoice.exe")));
        assert_eq!(a.skipped, 0);
    }

    #[test]
    fn attached_messages_are_read_within_the_depth_limit() {
        let inner =
            "From: inner@nested.example\r\nSubject: inner\r\n\r\nsee https://nested.example/x\r\n";
        let outer = format!(
            "From: forwarder@cert.example\r\nSubject: Fwd\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"z\"\r\n\r\n--z\r\nContent-Type: text/plain\r\n\r\nfyi\r\n\
             --z\r\nContent-Type: message/rfc822\r\n\r\n{inner}--z--\r\n"
        );
        let a = analyse(outer.as_bytes(), &Limits::default()).unwrap();
        let v = values(&a);
        assert!(
            v.contains(&(
                Kind::Email,
                "inner@nested.example",
                "attached message 1: From"
            )),
            "{v:?}"
        );
        assert!(v.iter().any(|(k, value, place)| *k == Kind::Url
            && value.starts_with("https://nested.example/x")
            && *place == "attached message 1: text body"));
        let shallow = Limits {
            max_depth: 1,
            ..Limits::default()
        };
        let a = analyse(outer.as_bytes(), &shallow).unwrap();
        assert!(!values(&a)
            .iter()
            .any(|(_, value, _)| value.contains("nested")));
        assert_eq!(a.skipped, 1);
    }

    #[test]
    fn limits_and_garbage_are_clear_errors_or_counts() {
        let small = Limits {
            max_bytes: 10,
            ..Limits::default()
        };
        assert_eq!(
            analyse(PHISH.as_bytes(), &small).unwrap_err(),
            MailError::TooLarge {
                size: PHISH.len(),
                limit: 10
            }
        );
        assert_eq!(
            analyse(b"", &Limits::default()).unwrap_err(),
            MailError::NotMail
        );
        let few_links = Limits {
            max_links: 1,
            ..Limits::default()
        };
        let a = analyse(PHISH.as_bytes(), &few_links).unwrap();
        assert_eq!(
            a.found
                .iter()
                .filter(|f| f.observable.kind == Kind::Url)
                .count(),
            1
        );
        assert_eq!(a.skipped, 1);
    }

    #[test]
    fn text_attachments_are_attachments_and_repeated_links_count_once() {
        let repeated = "see http://harmless.example/ ".repeat(50);
        let msg = format!(
            "From: a@sender.example\r\nSubject: s\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"q\"\r\n\r\n--q\r\n\
             Content-Type: text/plain\r\n\r\n{repeated} and https://phish.example/login\r\n--q\r\n\
             Content-Type: text/html; name=\"page.html\"\r\n\
             Content-Disposition: attachment; filename=\"page.html\"\r\n\r\n\
             <form action=\"https://collect.example/post\"></form>\r\n--q--\r\n"
        );
        let two_links = Limits {
            max_links: 2,
            ..Limits::default()
        };
        let a = analyse(msg.as_bytes(), &two_links).unwrap();
        let v = values(&a);
        assert!(
            v.iter()
                .any(|(k, value, _)| *k == Kind::Url && value.starts_with("https://phish.example")),
            "a repeated link does not use up the limit: {v:?}"
        );
        assert!(
            v.contains(&(Kind::Filename, "page.html", "attachment page.html")),
            "{v:?}"
        );
        assert!(v
            .iter()
            .any(|(k, _, place)| *k == Kind::Sha256 && *place == "attachment page.html"));
        assert_eq!(a.skipped, 1, "the third distinct link: {v:?}");

        let few = Limits {
            max_observables: 3,
            ..Limits::default()
        };
        let a = analyse(msg.as_bytes(), &few).unwrap();
        assert_eq!(a.found.len(), 3);
        assert!(a.skipped > 0);
    }
}
