//! Operators (`@rx`, `@pm`, `@eq`, ...): compiled once from a rule's text, then run on each
//! value a rule inspects, with ModSecurity v2's semantics.
//!
//! `@rx` compiles on the linear-time `regex` crate (bytes, ASCII classes, `.` matching
//! newlines, `$` only at the very end: PCRE's DOTALL and DOLLAR_ENDONLY as ModSecurity sets
//! them). The few patterns it cannot take (lookaround, backreferences, `\Z`...) go to PCRE2,
//! ModSecurity's own engine; [`RegexEngine`] tells which one a rule got. `@pm` runs on
//! Aho-Corasick. `@detectSQLi`/`@detectXSS` use libinjectionrs, a Rust port of the
//! libinjection library ModSecurity links.

use crate::macros::{MacroString, Resolver};
use crate::syntax::{Location, Operator, SyntaxError};
use aho_corasick::AhoCorasick;
use ipnet::IpNet;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Which engine runs a regular expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegexEngine {
    /// The linear-time `regex` crate.
    Linear,
    /// PCRE2 (backtracking), for patterns that need it.
    Pcre2,
}

/// A compiled regular expression on either engine.
#[derive(Debug)]
pub enum Regexp {
    Linear(regex::bytes::Regex),
    Pcre2(pcre2::bytes::Regex),
    /// A pattern every input matches whole (`^.*$`, which CRS runs on every header name to
    /// capture it): answered without running an engine.
    Everything(regex::bytes::Regex),
}

impl Regexp {
    /// Compiles with ModSecurity's options, on the linear engine when the pattern allows.
    pub fn new(pattern: &str) -> Result<Regexp, String> {
        let linear = crate::pcre::translate(pattern).and_then(|translated| {
            regex::bytes::RegexBuilder::new(&translated)
                .unicode(false)
                .dot_matches_new_line(true)
                .size_limit(256 << 20)
                .dfa_size_limit(64 << 20)
                .build()
                .ok()
        });
        match linear {
            Some(re) if matches_everything(re.as_str()) => Ok(Regexp::Everything(re)),
            Some(re) => Ok(Regexp::Linear(re)),
            None => pcre2::bytes::RegexBuilder::new()
                .dotall(true)
                .jit_if_available(true)
                .build(pattern)
                .map(Regexp::Pcre2)
                .map_err(|e| format!("invalid regular expression: {e}")),
        }
    }

    pub fn engine(&self) -> RegexEngine {
        match self {
            Regexp::Linear(_) | Regexp::Everything(_) => RegexEngine::Linear,
            Regexp::Pcre2(_) => RegexEngine::Pcre2,
        }
    }

    pub fn is_match(&self, input: &[u8]) -> bool {
        match self {
            Regexp::Linear(re) => re.is_match(input),
            Regexp::Everything(_) => true,
            // A PCRE2 error (its match limit) counts as no match, as in ModSecurity.
            Regexp::Pcre2(re) => re.is_match(input).unwrap_or(false),
        }
    }

    /// The match and its groups (group 0 first), up to `max` of them.
    pub fn captures(&self, input: &[u8], max: usize) -> Option<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        match self {
            Regexp::Everything(_) => {
                if max > 0 {
                    out.push(input.to_vec());
                }
            }
            Regexp::Linear(re) => {
                let caps = re.captures(input)?;
                for g in caps.iter().take(max) {
                    out.push(g.map(|m| m.as_bytes().to_vec()).unwrap_or_default());
                }
            }
            Regexp::Pcre2(re) => {
                let caps = re.captures(input).ok()??;
                for i in 0..caps.len().min(max) {
                    out.push(
                        caps.get(i)
                            .map(|m| m.as_bytes().to_vec())
                            .unwrap_or_default(),
                    );
                }
            }
        }
        Some(out)
    }
}

/// A linear-engine pattern's syntax tree as that engine reads it (bytes, no Unicode, `.`
/// matching newlines), for what is decided from a pattern's shape at load.
pub(crate) fn linear_hir(pattern: &str) -> Option<regex_syntax::hir::Hir> {
    regex_syntax::ParserBuilder::new()
        .unicode(false)
        .utf8(false)
        .dot_matches_new_line(true)
        .build()
        .parse(pattern)
        .ok()
}

/// Whether `pattern` (as the linear engine compiles it) is `^.*$`: a start, any bytes, an
/// end, which every input matches whole.
fn matches_everything(pattern: &str) -> bool {
    use regex_syntax::hir::{Class, HirKind, Look};
    let Some(hir) = linear_hir(pattern) else {
        return false;
    };
    let HirKind::Concat(parts) = hir.kind() else {
        return false;
    };
    let any_bytes = |h: &regex_syntax::hir::Hir| match h.kind() {
        HirKind::Repetition(r) if r.min == 0 && r.max.is_none() => match r.sub.kind() {
            HirKind::Class(Class::Bytes(c)) => {
                c.ranges().len() == 1 && c.ranges()[0].start() == 0 && c.ranges()[0].end() == 255
            }
            _ => false,
        },
        _ => false,
    };
    matches!(parts.as_slice(), [start, dots, end]
        if matches!(start.kind(), HirKind::Look(Look::Start))
            && any_bytes(dots)
            && matches!(end.kind(), HirKind::Look(Look::End)))
}

/// Regular expressions compiled from a dynamic pattern's expansions, by expansion. Bounded:
/// a pattern built from request data could otherwise grow it without end.
#[derive(Debug, Default)]
pub struct DynamicRegexes(std::sync::Mutex<HashMap<Vec<u8>, Option<Arc<Regexp>>>>);

impl DynamicRegexes {
    const MAX: usize = 64;

    /// The compiled expansion; `None` when it is not a valid expression (no match, as in
    /// ModSecurity).
    fn get(&self, pattern: &[u8]) -> Option<Arc<Regexp>> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(re) = map.get(pattern) {
            return re.clone();
        }
        let re = Regexp::new(&String::from_utf8_lossy(pattern))
            .ok()
            .map(Arc::new);
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(pattern.to_vec(), re.clone());
        re
    }
}

/// A compiled operator.
#[derive(Debug)]
pub struct CompiledOperator {
    pub negated: bool,
    pub op: Op,
}

#[derive(Debug)]
pub enum Op {
    Rx(Regexp),
    /// A pattern with macros, compiled when it runs (and kept: the expansions CRS writes come
    /// from its setup and repeat in every transaction).
    RxDynamic(MacroString, DynamicRegexes),
    /// `@pm`/`@pmFromFile`: any of the phrases, case-insensitively (the phrases are kept for
    /// the prefilter).
    Pm(Box<AhoCorasick>, Vec<String>),
    StrEq(MacroString),
    StrMatch(MacroString),
    Contains(MacroString),
    ContainsWord(MacroString),
    BeginsWith(MacroString),
    EndsWith(MacroString),
    Within(MacroString),
    Eq(MacroString),
    Ge(MacroString),
    Gt(MacroString),
    Le(MacroString),
    Lt(MacroString),
    IpMatch(Vec<IpNet>),
    /// Bytes allowed by `@validateByteRange`.
    ByteRange(Box<[bool; 256]>),
    ValidateUrlEncoding,
    ValidateUtf8Encoding,
    DetectSqli,
    DetectXss,
    VerifyCc(Regexp),
    Unconditional,
    NoMatch,
    /// An operator that needs something this deployment does not have (`@geoLookup` without a
    /// GeoIP database, `@rbl` in an engine that does no network I/O): it never matches.
    Unavailable(&'static str),
}

/// What an operator found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpMatch {
    /// The values for TX:0..TX:9 when the rule captures.
    pub captures: Vec<Vec<u8>>,
}

fn error(location: &Location, message: String) -> SyntaxError {
    SyntaxError {
        location: location.clone(),
        message,
    }
}

/// Reads phrase files for `@pmFromFile`: one phrase per line, `#` comments and blank lines
/// skipped; relative names are relative to the rule file's folder.
fn phrase_files(arg: &str, base: &Path, at: &Location) -> Result<Vec<String>, SyntaxError> {
    let mut phrases = Vec::new();
    for name in arg.split_whitespace() {
        let path = if Path::new(name).is_absolute() {
            Path::new(name).to_path_buf()
        } else {
            base.join(name)
        };
        let text = std::fs::read(&path).map_err(|e| {
            error(
                at,
                format!("cannot read phrase file {}: {e}", path.display()),
            )
        })?;
        for line in String::from_utf8_lossy(&text).lines() {
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                phrases.push(line.to_owned());
            }
        }
    }
    Ok(phrases)
}

fn phrase_matcher(phrases: &[String], at: &Location) -> Result<Op, SyntaxError> {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(phrases)
        .map(|ac| Op::Pm(Box::new(ac), phrases.to_vec()))
        .map_err(|e| error(at, format!("cannot build the phrase matcher: {e}")))
}

fn byte_ranges(arg: &str, at: &Location) -> Result<Box<[bool; 256]>, SyntaxError> {
    let mut allowed = Box::new([false; 256]);
    for part in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || error(at, format!("'{part}' is not a byte or byte range (0-255)"));
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<u8>().map_err(|_| bad())?,
                b.trim().parse::<u8>().map_err(|_| bad())?,
            ),
            None => {
                let v = part.parse::<u8>().map_err(|_| bad())?;
                (v, v)
            }
        };
        if a > b {
            return Err(bad());
        }
        for v in a..=b {
            allowed[v as usize] = true;
        }
    }
    Ok(allowed)
}

fn ip_list(
    entries: impl Iterator<Item = String>,
    at: &Location,
) -> Result<Vec<IpNet>, SyntaxError> {
    let mut nets = Vec::new();
    for e in entries {
        let e = e.trim();
        if e.is_empty() || e.starts_with('#') {
            continue;
        }
        let net = e
            .parse::<IpNet>()
            .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| error(at, format!("'{e}' is not an IP address or CIDR range")))?;
        nets.push(net.trunc());
    }
    Ok(nets)
}

impl CompiledOperator {
    /// The argument's macros, for operators whose argument may have some.
    pub fn argument(&self) -> Option<&MacroString> {
        match &self.op {
            Op::RxDynamic(m, _)
            | Op::StrEq(m)
            | Op::StrMatch(m)
            | Op::Contains(m)
            | Op::ContainsWord(m)
            | Op::BeginsWith(m)
            | Op::EndsWith(m)
            | Op::Within(m)
            | Op::Eq(m)
            | Op::Ge(m)
            | Op::Gt(m)
            | Op::Le(m)
            | Op::Lt(m) => Some(m),
            Op::Rx(_)
            | Op::Pm(..)
            | Op::IpMatch(_)
            | Op::ByteRange(_)
            | Op::ValidateUrlEncoding
            | Op::ValidateUtf8Encoding
            | Op::DetectSqli
            | Op::DetectXss
            | Op::VerifyCc(_)
            | Op::Unconditional
            | Op::NoMatch
            | Op::Unavailable(_) => None,
        }
    }

    /// Compiles `op`; files it names are looked up relative to `base` (the rule file's folder).
    pub fn compile(op: &Operator, base: &Path) -> Result<CompiledOperator, SyntaxError> {
        let at = &op.location;
        let arg = op.argument.as_str();
        let text = || MacroString::parse(arg);
        let kind = match op.name {
            "rx" => {
                let m = MacroString::parse(arg);
                if m.is_dynamic() {
                    Op::RxDynamic(m, DynamicRegexes::default())
                } else {
                    Op::Rx(Regexp::new(arg).map_err(|e| error(at, e))?)
                }
            }
            "pm" => phrase_matcher(
                &arg.split_whitespace()
                    .map(str::to_owned)
                    .collect::<Vec<_>>(),
                at,
            )?,
            "pmf" | "pmFromFile" => phrase_matcher(&phrase_files(arg, base, at)?, at)?,
            "streq" => Op::StrEq(text()),
            "strmatch" => Op::StrMatch(text()),
            "contains" => Op::Contains(text()),
            "containsWord" => Op::ContainsWord(text()),
            "beginsWith" => Op::BeginsWith(text()),
            "endsWith" => Op::EndsWith(text()),
            "within" => Op::Within(text()),
            "eq" => Op::Eq(text()),
            "ge" => Op::Ge(text()),
            "gt" => Op::Gt(text()),
            "le" => Op::Le(text()),
            "lt" => Op::Lt(text()),
            "ipMatch" => Op::IpMatch(ip_list(arg.split(',').map(str::to_owned), at)?),
            "ipMatchF" | "ipMatchFromFile" => {
                let mut lines = Vec::new();
                for name in arg.split_whitespace() {
                    let path = base.join(name);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| error(at, format!("cannot read {}: {e}", path.display())))?;
                    lines.extend(text.lines().map(str::to_owned));
                }
                Op::IpMatch(ip_list(lines.into_iter(), at)?)
            }
            "validateByteRange" => Op::ByteRange(byte_ranges(arg, at)?),
            "validateUrlEncoding" => Op::ValidateUrlEncoding,
            "validateUtf8Encoding" => Op::ValidateUtf8Encoding,
            "detectSQLi" => Op::DetectSqli,
            "detectXSS" => Op::DetectXss,
            "verifyCC" => Op::VerifyCc(Regexp::new(arg).map_err(|e| error(at, e))?),
            "unconditionalMatch" => Op::Unconditional,
            "noMatch" => Op::NoMatch,
            "geoLookup" => Op::Unavailable("@geoLookup: no GeoIP database is configured"),
            "rbl" => Op::Unavailable("@rbl: the engine does no DNS lookups"),
            other => {
                return Err(error(
                    at,
                    format!("operator @{other} is not supported by Qalxan"),
                ));
            }
        };
        Ok(CompiledOperator {
            negated: op.negated,
            op: kind,
        })
    }

    /// Runs the operator on `input`, ignoring negation (the caller applies it). With
    /// `capture`, the match carries the values for TX:0..TX:9.
    pub fn run(&self, input: &[u8], capture: bool, macros: &dyn Resolver) -> Option<OpMatch> {
        let hit = |b: bool| b.then(OpMatch::default);
        match &self.op {
            Op::Rx(re) => run_regex(re, input, capture),
            Op::RxDynamic(m, compiled) => {
                let re = compiled.get(&m.expand(macros))?;
                run_regex(&re, input, capture)
            }
            Op::Pm(ac, _) => ac.find(input).map(|m| OpMatch {
                captures: if capture {
                    vec![input[m.range()].to_vec()]
                } else {
                    Vec::new()
                },
            }),
            Op::StrEq(p) => hit(input == p.expand(macros).as_ref()),
            Op::StrMatch(p) | Op::Contains(p) => hit(contains(input, &p.expand(macros))),
            Op::ContainsWord(p) => hit(contains_word(input, &p.expand(macros))),
            Op::BeginsWith(p) => hit(input.starts_with(&p.expand(macros))),
            Op::EndsWith(p) => hit(input.ends_with(&p.expand(macros))),
            Op::Within(p) => hit(input.is_empty() || contains(&p.expand(macros), input)),
            Op::Eq(p) => hit(atoi(input) == atoi(&p.expand(macros))),
            Op::Ge(p) => hit(atoi(input) >= atoi(&p.expand(macros))),
            Op::Gt(p) => hit(atoi(input) > atoi(&p.expand(macros))),
            Op::Le(p) => hit(atoi(input) <= atoi(&p.expand(macros))),
            Op::Lt(p) => hit(atoi(input) < atoi(&p.expand(macros))),
            Op::IpMatch(nets) => {
                let ip: IpAddr = std::str::from_utf8(input).ok()?.trim().parse().ok()?;
                hit(nets.iter().any(|n| n.contains(&ip)))
            }
            Op::ByteRange(allowed) => {
                let bad = input.iter().find(|&&b| !allowed[b as usize])?;
                Some(OpMatch {
                    captures: if capture {
                        vec![vec![*bad]]
                    } else {
                        Vec::new()
                    },
                })
            }
            Op::ValidateUrlEncoding => hit(!valid_url_encoding(input)),
            Op::ValidateUtf8Encoding => hit(std::str::from_utf8(input).is_err()),
            Op::DetectSqli => {
                if cannot_be_sqli(input) {
                    return None;
                }
                // `SqliState` rather than `detect_sqli`, which fingerprints the input once more
                // after deciding: the deciding pass already left its fingerprint.
                let mut state =
                    libinjectionrs::SqliState::new(input, libinjectionrs::SqliFlags::FLAG_NONE);
                state.detect().then(|| OpMatch {
                    captures: if capture {
                        vec![state.fingerprint_string().into_bytes()]
                    } else {
                        Vec::new()
                    },
                })
            }
            Op::DetectXss => {
                hit(!cannot_be_xss(input) && libinjectionrs::detect_xss(input).is_injection())
            }
            Op::VerifyCc(re) => {
                let m = re.captures(input, 1)?;
                let digits: Vec<u8> = m
                    .first()?
                    .iter()
                    .filter(|b| b.is_ascii_digit())
                    .map(|b| b - b'0')
                    .collect();
                hit(luhn(&digits))
            }
            Op::Unconditional => hit(true),
            Op::NoMatch | Op::Unavailable(_) => None,
        }
    }
}

/// Whether libinjection's SQLi test cannot flag `input`: only letters, digits and `_`
/// (session ids, most names and many values), for which the test costs thousands of
/// instructions a value. Why it is exact: libinjection reads such a value as at most two
/// tokens, a number and then a word (a word runs to the end, digits included), with no quote
/// for its quoted passes and no comment for its MySQL one. A fingerprint of one token is on
/// its list only as `X` (evil input), which neither gives; of two tokens, a number and a word
/// give only `1U` (number, UNION), which its whitelist lets pass when there are just two
/// tokens. `tests::injection_shortcuts_agree_with_libinjection` checks it against the
/// library on SQL's keywords glued to numbers and 100,000 generated values.
fn cannot_be_sqli(input: &[u8]) -> bool {
    input
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// Whether libinjection's XSS test cannot flag `input`: it holds neither `<` nor `=`. Why
/// it is exact (read off the tokenizer of the libinjection port in use): the test flags a
/// doctype, a tag name, a comment (all of which start with a `<` in text), or an attribute
/// value that follows a suspect attribute name, and an attribute value follows a name only
/// after `=`. In the contexts that start inside an attribute value (unquoted, or in one of
/// three quotes), that first value has no name before it. So without `<` and `=` every
/// context yields text, names and nameless values, none of which it flags: User-Agent and
/// Accept headers, paths and most arguments among them. Checked in the same test as
/// [`cannot_be_sqli`], on generated values of every other byte.
fn cannot_be_xss(input: &[u8]) -> bool {
    memchr::memchr2(b'<', b'=', input).is_none()
}

fn run_regex(re: &Regexp, input: &[u8], capture: bool) -> Option<OpMatch> {
    // Most values do not match: find that out with the fast engine before capturing.
    if !re.is_match(input) {
        return None;
    }
    if capture {
        re.captures(input, 10).map(|captures| OpMatch { captures })
    } else {
        Some(OpMatch::default())
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || memchr_find(haystack, needle).is_some()
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if haystack.len() <= SHORT_HAYSTACK {
        find_in_short(haystack, needle)
    } else {
        memchr::memmem::find(haystack, needle)
    }
}

/// Up to this length a haystack is searched by [`find_in_short`]: `memmem` prepares a
/// searcher per needle (some 500 instructions), more than scanning a short haystack costs,
/// and `@within` searches a short list (`%{tx.restricted_headers}`) for each value.
const SHORT_HAYSTACK: usize = 256;

/// `haystack`'s first occurrence of `needle`, for short haystacks: the positions of one of
/// the needle's first bytes (a letter or digit if there is one: CRS's lists are separated by
/// `/`, ` ` and `|`, which would stop the scan everywhere) are found with `memchr`, and the
/// needle compared there.
fn find_in_short(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let n = needle.len();
    if n == 0 {
        return Some(0);
    }
    if n > haystack.len() {
        return None;
    }
    let at = needle
        .iter()
        .take(4)
        .position(u8::is_ascii_alphanumeric)
        .unwrap_or(0);
    // The needle starts `at` bytes before the byte found, and must end inside the haystack.
    let last_start = haystack.len() - n;
    memchr::memchr_iter(needle[at], &haystack[at..=last_start + at])
        .find(|&start| &haystack[start..start + n] == needle)
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `word` occurs with no word character on either side.
fn contains_word(haystack: &[u8], word: &[u8]) -> bool {
    if word.is_empty() {
        return true;
    }
    let mut from = 0;
    while let Some(i) = haystack.get(from..).and_then(|h| memchr_find(h, word)) {
        let start = from + i;
        let end = start + word.len();
        let before = start == 0 || !is_word(haystack[start - 1]);
        let after = end == haystack.len() || !is_word(haystack[end]);
        if before && after {
            return true;
        }
        from = start + 1;
    }
    false
}

/// C's `atoi`: leading whitespace, a sign, digits; anything else ends the number (saturating
/// where C would overflow).
pub(crate) fn atoi(s: &[u8]) -> i64 {
    let mut i = 0;
    while i < s.len() && matches!(s[i], b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r') {
        i += 1;
    }
    let negative = match s.get(i) {
        Some(b'-') => {
            i += 1;
            true
        }
        Some(b'+') => {
            i += 1;
            false
        }
        _ => false,
    };
    let mut n: i64 = 0;
    while let Some(d) = s.get(i).filter(|d| d.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(i64::from(d - b'0'));
        i += 1;
    }
    if negative {
        -n
    } else {
        n
    }
}

/// `validate_url_encoding`: every `%` must be followed by two hex digits.
fn valid_url_encoding(input: &[u8]) -> bool {
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            if i + 2 >= input.len()
                || !input[i + 1].is_ascii_hexdigit()
                || !input[i + 2].is_ascii_hexdigit()
            {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn luhn(digits: &[u8]) -> bool {
    if digits.len() < 12 {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let x = d * 2;
                if x > 9 {
                    x - 9
                } else {
                    x
                }
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::macros::NoMacros;
    use std::sync::Arc;

    #[test]
    fn a_pattern_every_input_matches_whole_runs_no_engine() {
        let inputs: [&[u8]; 4] = [b"", b"user-agent", b"a\nb\n", b"\xff\x00"];
        for pattern in ["^.*$", "(?s)^.*$"] {
            let re = Regexp::new(pattern).unwrap();
            assert!(matches!(re, Regexp::Everything(_)), "{pattern}");
            for input in inputs {
                assert!(re.is_match(input));
                assert_eq!(re.captures(input, 10), Some(vec![input.to_vec()]));
            }
        }
        // Near misses keep the engine: they do not match everything, or capture more.
        for pattern in ["^.+$", "^.*x$", "^(.*)$", ".*", "^[^\n]*$", "^.*$|x"] {
            let re = Regexp::new(pattern).unwrap();
            assert!(!matches!(re, Regexp::Everything(_)), "{pattern}");
        }
    }

    fn op(name: &'static str, arg: &str) -> CompiledOperator {
        let o = Operator {
            location: Location {
                file: Arc::from(Path::new("t.conf")),
                line: 1,
                column: 1,
            },
            negated: false,
            name,
            argument: arg.to_owned(),
        };
        CompiledOperator::compile(&o, Path::new(".")).unwrap()
    }

    fn m(o: &CompiledOperator, input: &[u8]) -> bool {
        o.run(input, false, &NoMacros).is_some()
    }

    #[test]
    fn regexes_run_with_modsecurity_options() {
        let rx = op("rx", r"^a.b$");
        assert!(m(&rx, b"a\nb"), "DOTALL");
        assert!(!m(&rx, b"a\nb\n"), "DOLLAR_ENDONLY");
        assert!(m(&op("rx", r"(?i)select\s"), b"SeLeCt\t"));
        assert!(m(&op("rx", r"\xff"), b"\xff"));
        assert!(!m(&op("rx", r"\w"), "é".as_bytes()), "ASCII classes");
        let caps = op("rx", r"(\d+)-(\d+)")
            .run(b"x 12-34", true, &NoMacros)
            .unwrap();
        assert_eq!(
            caps.captures,
            [b"12-34".to_vec(), b"12".to_vec(), b"34".to_vec()]
        );
        // Lookbehind needs backtracking: PCRE2 takes it.
        let lb = op("rx", r"(?<!&amp);|'");
        assert!(matches!(&lb.op, Op::Rx(re) if re.engine() == RegexEngine::Pcre2));
        assert!(m(&lb, b"a'b") && m(&lb, b"x;") && !m(&lb, b"&amp;"));
    }

    #[test]
    fn phrases_ignore_case() {
        let pm = op("pm", "nikto sqlmap");
        assert!(m(&pm, b"Mozilla (SQLMap/1.0)"));
        assert!(!m(&pm, b"curl"));
        assert_eq!(
            pm.run(b"x NIKTO", true, &NoMacros).unwrap().captures,
            [b"NIKTO".to_vec()]
        );
    }

    #[test]
    fn strings_and_numbers() {
        assert!(m(&op("streq", "GET"), b"GET") && !m(&op("streq", "GET"), b"get"));
        assert!(m(&op("beginsWith", "/adm"), b"/admin"));
        assert!(m(&op("endsWith", ".php"), b"/x.php"));
        assert!(m(&op("contains", "..;"), b"/a/..;/b"));
        assert!(
            m(&op("containsWord", "select"), b"1 select x")
                && !m(&op("containsWord", "select"), b"selection")
        );
        let within = op("within", "GET HEAD POST");
        assert!(m(&within, b"HEAD") && m(&within, b"") && !m(&within, b"PUT"));
        assert!(m(&op("eq", "0"), b"abc"), "atoi of text is 0");
        assert!(m(&op("ge", "5"), b" 7x") && !m(&op("lt", "-1"), b"3"));
        assert!(m(&op("gt", "2"), b"99999999999999999999999"));
    }

    #[test]
    fn validators() {
        let range = op("validateByteRange", "32-126, 9");
        assert!(!m(&range, b"hello\tworld"));
        assert!(m(&range, b"nul\0"));
        let url = op("validateUrlEncoding", "");
        assert!(!m(&url, b"a%20b") && m(&url, b"a%2") && m(&url, b"%zz"));
        let utf8 = op("validateUtf8Encoding", "");
        assert!(!m(&utf8, "héllo".as_bytes()) && m(&utf8, b"\xc0\xaf"));
        let ip = op("ipMatch", "127.0.0.1,10.0.0.0/8,::1");
        assert!(
            m(&ip, b"10.1.2.3") && m(&ip, b"::1") && !m(&ip, b"192.168.0.1") && !m(&ip, b"nope")
        );
    }

    #[test]
    fn injections() {
        let sqli = op("detectSQLi", "");
        // The fingerprint captured is the one libinjection reports (as ModSecurity's TX:0),
        // including for inputs only the quote-context passes catch.
        for input in [
            &b"1' OR '1'='1"[..],
            b"1 union select 1,2--",
            b"admin\" or 1=1#",
        ] {
            let hit = sqli.run(input, true, &NoMacros).unwrap();
            let expected = libinjectionrs::detect_sqli(input).fingerprint.unwrap();
            assert_eq!(hit.captures, [expected.to_string().into_bytes()]);
        }
        assert!(!m(&sqli, b"hello world"));
        let xss = op("detectXSS", "");
        assert!(m(&xss, b"<script>alert(1)</script>"));
        assert!(!m(&xss, b"just text"));
    }

    /// A reproducible stream of pseudo-random numbers for generated test inputs.
    fn xorshift(seed: u64) -> impl FnMut() -> usize {
        let mut x = seed;
        move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as usize
        }
    }

    /// The short-haystack search finds what `memmem` finds, where `memmem` finds it.
    #[test]
    fn short_haystacks_are_searched_as_memmem_searches() {
        let list = b"/accept-charset/ /content-encoding/ /proxy/ /lock-token/ /content-range/ /if/";
        for needle in [
            &b"/proxy/"[..],
            b"/if/",
            b"/host/",
            b"/accept-charset/",
            b"/content-range/",
            b"/",
            b"",
            b"/if/ ",
            b"xy",
        ] {
            assert_eq!(
                find_in_short(list, needle),
                memchr::memmem::find(list, needle),
                "{:?}",
                String::from_utf8_lossy(needle)
            );
        }
        let bytes = b"ab/ -.1";
        let mut next = xorshift(0x2545_F491_4F6C_DD1D);
        for _ in 0..50_000 {
            let hay: Vec<u8> = (0..next() % 40)
                .map(|_| bytes[next() % bytes.len()])
                .collect();
            let needle: Vec<u8> = (0..next() % 6)
                .map(|_| bytes[next() % bytes.len()])
                .collect();
            assert_eq!(
                find_in_short(&hay, &needle),
                memchr::memmem::find(&hay, &needle),
                "{hay:?} {needle:?}"
            );
        }
    }

    /// The shortcuts that skip libinjection say "cannot" only where libinjection says no.
    #[test]
    fn injection_shortcuts_agree_with_libinjection() {
        let sqli = |v: &[u8]| {
            libinjectionrs::SqliState::new(v, libinjectionrs::SqliFlags::FLAG_NONE).detect()
        };
        let xss = |v: &[u8]| libinjectionrs::detect_xss(v).is_injection();
        // SQL's words, as libinjection's own table holds many of them, alone and glued.
        let keywords = [
            "UNION",
            "SELECT",
            "OR",
            "AND",
            "XOR",
            "DIV",
            "NOT",
            "NULL",
            "LIKE",
            "SLEEP",
            "BENCHMARK",
            "WAITFOR",
            "DELAY",
            "EXEC",
            "EXECUTE",
            "DROP",
            "INSERT",
            "DELETE",
            "UPDATE",
            "HAVING",
            "ORDER",
            "GROUP",
            "CHAR",
            "CONCAT",
            "VERSION",
            "USER",
            "SP_PASSWORD",
            "XP_CMDSHELL",
            "INFORMATION_SCHEMA",
            "LOAD_FILE",
            "OUTFILE",
            "TRUE",
            "FALSE",
            "IF",
            "CASE",
            "WHEN",
            "THEN",
            "ELSE",
            "END",
            "UTL_HTTP",
            "DBMS_PIPE",
        ];
        for k in keywords {
            for v in [
                k.to_owned(),
                k.to_lowercase(),
                format!("{k}1"),
                format!("_{k}"),
            ] {
                assert!(cannot_be_sqli(v.as_bytes()));
                assert!(!sqli(v.as_bytes()), "{v}");
            }
        }
        let word: Vec<u8> = (b'0'..=b'9')
            .chain(b'a'..=b'z')
            .chain(b'A'..=b'Z')
            .collect();
        // Every byte but `<` and `=`: quotes, `>`, `/`, `&`, whitespace and NUL included, the
        // ones that make libinjection's tokenizer change state; attribute names it lists
        // (`onload`, `style`, `src`...) and the bytes of entities among them.
        let bytes: Vec<u8> = (0..=255u8).filter(|b| !matches!(b, b'<' | b'=')).collect();
        let words: [&[u8]; 12] = [
            b" onload",
            b" onerror ",
            b" style",
            b" src",
            b" href",
            b"javascript:",
            b"!DOCTYPE",
            b"&#60;",
            b"\"",
            b"'",
            b"`",
            b">",
        ];
        let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
        for i in 0..100_000 {
            let len = 1 + next() % 24;
            let mut v = Vec::new();
            for _ in 0..len {
                match next() % 4 {
                    0 => v.extend_from_slice(words[next() % words.len()]),
                    _ => v.push(bytes[next() % bytes.len()]),
                }
            }
            assert!(cannot_be_xss(&v));
            assert!(!xss(&v), "{:?}", String::from_utf8_lossy(&v));
            // Numbers glued to keywords (`1union`, `0x1or`) among them.
            let v: Vec<u8> = match i % 3 {
                0 => (0..len).map(|_| word[next() % word.len()]).collect(),
                1 => (0..len).map(|_| word[next() % 10]).collect(),
                _ => format!("{}{}", next() % 1000, keywords[next() % keywords.len()]).into_bytes(),
            };
            assert!(cannot_be_sqli(&v));
            assert!(!sqli(&v), "{:?}", String::from_utf8_lossy(&v));
        }
        // And they do not claim what they cannot see.
        for v in [&b"1 union"[..], b"a b", b"'", b"1-1", b"x.y"] {
            assert!(!cannot_be_sqli(v), "{:?}", String::from_utf8_lossy(v));
        }
        for v in [&b"<b"[..], b"x=y", b"a onload=x"] {
            assert!(!cannot_be_xss(v), "{:?}", String::from_utf8_lossy(v));
        }
        // One `=` is enough for the library: the shortcut must leave such values to it.
        assert!(xss(b"a onload=x") && xss(b"x' style=y"));
        // Values the old, narrower test sent to the library: whitespace, quotes, `>`, `/`.
        for v in [
            &b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"[..],
            b"a onload 'x' \"y\" `z` > / &lt; style src",
        ] {
            assert!(cannot_be_xss(v));
            assert!(!xss(v), "{:?}", String::from_utf8_lossy(v));
        }
    }

    #[test]
    fn unsupported_operators_are_errors_with_a_place() {
        let o = Operator {
            location: Location {
                file: Arc::from(Path::new("t.conf")),
                line: 3,
                column: 9,
            },
            negated: false,
            name: "fuzzyHash",
            argument: String::new(),
        };
        let e = CompiledOperator::compile(&o, Path::new(".")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "t.conf:3:9: operator @fuzzyHash is not supported by Qalxan"
        );
    }
}
