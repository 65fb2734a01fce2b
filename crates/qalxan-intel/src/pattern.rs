//! STIX 2.1 patterns: parser, checks, evaluator, and reduction to plain observables.
//!
//! Written by hand: no Rust crate parses STIX patterning, and the grammar (STIX 2.1 part 9,
//! the OASIS `STIXPattern.g4`) is small enough for a recursive-descent parser that reports
//! errors by column. Beyond the grammar it applies the checks the OASIS validator
//! (`stix2-patterns`) makes, so both agree on what is valid: known hash algorithms must have
//! their length, and one qualifier type may not be applied twice directly to the same `[...]`.
//!
//! Limits: patterns longer than [`MAX_PATTERN_LEN`] or nested deeper than [`MAX_DEPTH`] are
//! refused; evaluation keeps at most [`MAX_BINDINGS`] candidate matches per expression and
//! compiles `MATCHES` regexes with a size limit, so no pattern runs away with memory or time.

use crate::observable::{Kind, Observable};
use ipnet::IpNet;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

pub const MAX_PATTERN_LEN: usize = 64 * 1024;
pub const MAX_DEPTH: usize = 64;
pub const MAX_BINDINGS: usize = 10_000;

/// Why a pattern is not valid, with the 1-based column (in characters) where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column {column}: {message}")]
pub struct PatternError {
    pub column: usize,
    pub message: String,
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    pub root: ObsExpr,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ObsExpr {
    Simple(CompExpr),
    And(Box<ObsExpr>, Box<ObsExpr>),
    Or(Box<ObsExpr>, Box<ObsExpr>),
    FollowedBy(Box<ObsExpr>, Box<ObsExpr>),
    Qualified(Box<ObsExpr>, Qualifier),
    /// A parenthesised group: kept so qualifier checks can tell `([a]) WITHIN` from `[a] WITHIN`.
    Group(Box<ObsExpr>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Qualifier {
    Within { seconds: f64 },
    Repeats { times: u64 },
    StartStop { start_ms: i64, stop_ms: i64 },
}

#[derive(Debug, Clone, PartialEq)]
pub enum CompExpr {
    And(Box<CompExpr>, Box<CompExpr>),
    Or(Box<CompExpr>, Box<CompExpr>),
    Test(PropTest),
}

#[derive(Debug, Clone, PartialEq)]
pub enum PropTest {
    Compare {
        path: ObjectPath,
        negated: bool,
        op: Op,
        value: Literal,
    },
    Exists(ObjectPath),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectPath {
    pub object_type: String,
    pub steps: Vec<Step>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Index(i64),
    Any,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Like,
    Matches,
    IsSubset,
    IsSuperset,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Binary(Vec<u8>),
    Timestamp(i64),
    Set(Vec<Literal>),
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    LBrack,
    RBrack,
    LParen,
    RParen,
    Colon,
    Dot,
    Comma,
    Star,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// An identifier; `true` when it contains a hyphen (allowed for object types only).
    Ident(String, bool),
    Kw(&'static str),
    Str(String),
    Int(i64),
    Float(f64),
    Bin(Vec<u8>),
    Ts(i64),
    Bool(bool),
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::LBrack => f.write_str("'['"),
            Tok::RBrack => f.write_str("']'"),
            Tok::LParen => f.write_str("'('"),
            Tok::RParen => f.write_str("')'"),
            Tok::Colon => f.write_str("':'"),
            Tok::Dot => f.write_str("'.'"),
            Tok::Comma => f.write_str("','"),
            Tok::Star => f.write_str("'*'"),
            Tok::Eq => f.write_str("'='"),
            Tok::Ne => f.write_str("'!='"),
            Tok::Lt => f.write_str("'<'"),
            Tok::Le => f.write_str("'<='"),
            Tok::Gt => f.write_str("'>'"),
            Tok::Ge => f.write_str("'>='"),
            Tok::Ident(s, _) => write!(f, "'{s}'"),
            Tok::Kw(k) => write!(f, "{k}"),
            Tok::Str(_) => f.write_str("a string"),
            Tok::Int(i) => write!(f, "{i}"),
            Tok::Float(x) => write!(f, "{x}"),
            Tok::Bin(_) => f.write_str("a binary literal"),
            Tok::Ts(_) => f.write_str("a timestamp"),
            Tok::Bool(b) => write!(f, "{b}"),
            Tok::Eof => f.write_str("the end of the pattern"),
        }
    }
}

const KEYWORDS: &[&str] = &[
    "AND",
    "OR",
    "NOT",
    "FOLLOWEDBY",
    "LIKE",
    "MATCHES",
    "ISSUPERSET",
    "ISSUBSET",
    "EXISTS",
    "IN",
    "START",
    "STOP",
    "SECONDS",
    "WITHIN",
    "REPEATS",
    "TIMES",
];

struct Lexer<'a> {
    src: &'a str,
    pos: usize,
}

fn column(src: &str, byte: usize) -> usize {
    src[..byte.min(src.len())].chars().count() + 1
}

impl<'a> Lexer<'a> {
    fn err(&self, at: usize, message: impl Into<String>) -> PatternError {
        PatternError {
            column: column(self.src, at),
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut it = self.src[self.pos..].chars();
        it.next();
        it.next()
    }

    fn tokens(mut self) -> Result<Vec<(Tok, usize)>, PatternError> {
        let mut out = Vec::new();
        loop {
            self.skip_space()?;
            let start = self.pos;
            let Some(c) = self.peek() else {
                out.push((Tok::Eof, start));
                return Ok(out);
            };
            let tok = match c {
                '[' => self.one(Tok::LBrack),
                ']' => self.one(Tok::RBrack),
                '(' => self.one(Tok::LParen),
                ')' => self.one(Tok::RParen),
                ':' => self.one(Tok::Colon),
                ',' => self.one(Tok::Comma),
                '*' => self.one(Tok::Star),
                '=' => {
                    self.pos += if self.src[self.pos..].starts_with("==") {
                        2
                    } else {
                        1
                    };
                    Tok::Eq
                }
                '!' if self.peek2() == Some('=') => {
                    self.pos += 2;
                    Tok::Ne
                }
                '<' => {
                    if self.src[self.pos..].starts_with("<>") {
                        self.pos += 2;
                        Tok::Ne
                    } else if self.src[self.pos..].starts_with("<=") {
                        self.pos += 2;
                        Tok::Le
                    } else {
                        self.one(Tok::Lt)
                    }
                }
                '>' => {
                    if self.src[self.pos..].starts_with(">=") {
                        self.pos += 2;
                        Tok::Ge
                    } else {
                        self.one(Tok::Gt)
                    }
                }
                '\'' => Tok::Str(self.string()?),
                't' | 'b' | 'h' if self.peek2() == Some('\'') => {
                    self.pos += 1;
                    let body = self.string()?;
                    match c {
                        't' => Tok::Ts(parse_timestamp(&body).ok_or_else(|| {
                            self.err(
                                start,
                                format!(
                                    "'{body}' is not a STIX timestamp (YYYY-MM-DDTHH:MM:SS[.s]Z)"
                                ),
                            )
                        })?),
                        'b' => Tok::Bin(decode_base64(&body).ok_or_else(|| {
                            self.err(start, "a binary literal b'...' must be base64")
                        })?),
                        _ => Tok::Bin(decode_hex(&body).ok_or_else(|| {
                            self.err(
                                start,
                                "a hex literal h'...' must have an even number of hex digits",
                            )
                        })?),
                    }
                }
                '.' if !self.peek2().is_some_and(|d| d.is_ascii_digit()) => self.one(Tok::Dot),
                '+' | '-' | '.' | '0'..='9' => self.number()?,
                c if c.is_ascii_alphabetic() || c == '_' => {
                    let len = self.src[self.pos..]
                        .find(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'))
                        .unwrap_or(self.src.len() - self.pos);
                    let word = &self.src[self.pos..self.pos + len];
                    self.pos += len;
                    if let Some(kw) = KEYWORDS.iter().find(|k| **k == word) {
                        Tok::Kw(kw)
                    } else if word == "true" || word == "false" {
                        Tok::Bool(word == "true")
                    } else {
                        Tok::Ident(word.to_owned(), word.contains('-'))
                    }
                }
                other => return Err(self.err(start, format!("unexpected character '{other}'"))),
            };
            out.push((tok, start));
        }
    }

    fn one(&mut self, t: Tok) -> Tok {
        self.pos += 1;
        t
    }

    fn skip_space(&mut self) -> Result<(), PatternError> {
        loop {
            let rest = &self.src[self.pos..];
            if let Some(c) = rest.chars().next().filter(|c| c.is_whitespace()) {
                self.pos += c.len_utf8();
            } else if let Some(body) = rest.strip_prefix("/*") {
                let end = body
                    .find("*/")
                    .ok_or_else(|| self.err(self.pos, "unterminated comment"))?;
                self.pos += end + 4;
            } else if rest.starts_with("//") {
                self.pos += rest.find('\n').unwrap_or(rest.len());
            } else {
                return Ok(());
            }
        }
    }

    /// A quoted string at `pos` (the opening quote); only `\'` and `\\` are escapes.
    fn string(&mut self) -> Result<String, PatternError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        let mut chars = self.src[self.pos..].char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\'' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                '\\' => match chars.next() {
                    Some((_, e @ ('\'' | '\\'))) => out.push(e),
                    _ => {
                        return Err(
                            self.err(self.pos + i, "in a string only \\' and \\\\ are escapes")
                        )
                    }
                },
                c => out.push(c),
            }
        }
        Err(self.err(start, "unterminated string"))
    }

    fn number(&mut self) -> Result<Tok, PatternError> {
        let start = self.pos;
        let bytes = self.src.as_bytes();
        let mut end = self.pos;
        if matches!(bytes[end], b'+' | b'-') {
            end += 1;
        }
        let int_start = end;
        while end < bytes.len() && bytes[end].is_ascii_digit() {
            end += 1;
        }
        let int_digits = &self.src[int_start..end];
        if end < bytes.len() && bytes[end] == b'.' {
            let frac_start = end + 1;
            let mut e = frac_start;
            while e < bytes.len() && bytes[e].is_ascii_digit() {
                e += 1;
            }
            if e == frac_start {
                return Err(self.err(start, "a number needs digits after '.'"));
            }
            self.pos = e;
            let text = &self.src[start..e];
            return text
                .parse::<f64>()
                .map(Tok::Float)
                .map_err(|_| self.err(start, format!("'{text}' is not a number")));
        }
        if int_digits.is_empty() {
            return Err(self.err(start, "expected a number"));
        }
        if int_digits.len() > 1 && int_digits.starts_with('0') {
            return Err(self.err(start, "integers have no leading zeros"));
        }
        self.pos = end;
        let text = &self.src[start..end];
        text.trim_start_matches('+')
            .parse::<i64>()
            .map(Tok::Int)
            .map_err(|_| self.err(start, format!("'{text}' is out of range")))
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` as the grammar's TimestampLiteral allows (which does not
/// check the day against the month, as the OASIS validator does not), in Unix milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let rest = &s[19..];
    let frac = if let Some(r) = rest.strip_prefix('.') {
        let digits = r.strip_suffix('Z')?;
        if digits.is_empty() || !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        let ms: String = digits.chars().chain("000".chars()).take(3).collect();
        ms.parse::<i64>().ok()?
    } else if rest == "Z" {
        0
    } else {
        return None;
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + frac)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm); it accepts
/// day 31 of any month, as the pattern grammar does.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    if b.len() % 4 != 0 {
        return None;
    }
    let pad = b.iter().rev().take_while(|c| **c == b'=').count();
    if pad > 2 {
        return None;
    }
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    let mut acc = 0u32;
    let mut n = 0;
    for &c in &b[..b.len() - pad] {
        let v = ALPHABET.iter().position(|a| *a == c)? as u32;
        acc = (acc << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((acc >> n) as u8);
        }
    }
    Some(out)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'a> {
    src: &'a str,
    toks: Vec<(Tok, usize)>,
    i: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.toks[self.i.min(self.toks.len() - 1)].0
    }

    fn at(&self) -> usize {
        self.toks[self.i.min(self.toks.len() - 1)].1
    }

    fn next(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.i < self.toks.len() - 1 {
            self.i += 1;
        }
        t
    }

    fn err_here(&self, message: impl Into<String>) -> PatternError {
        PatternError {
            column: column(self.src, self.at()),
            message: message.into(),
        }
    }

    fn unexpected(&self, wanted: &str) -> PatternError {
        self.err_here(format!("expected {wanted}, found {}", self.peek()))
    }

    fn expect(&mut self, t: Tok, wanted: &str) -> Result<(), PatternError> {
        if *self.peek() == t {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected(wanted))
        }
    }

    fn kw(&mut self, k: &str) -> bool {
        if matches!(self.peek(), Tok::Kw(x) if *x == k) {
            self.next();
            true
        } else {
            false
        }
    }

    fn enter(&mut self) -> Result<(), PatternError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_here(format!("nested deeper than {MAX_DEPTH} levels")));
        }
        Ok(())
    }

    fn observation_expressions(&mut self) -> Result<ObsExpr, PatternError> {
        self.enter()?;
        let mut left = self.observation_or()?;
        while self.kw("FOLLOWEDBY") {
            let right = self.observation_or()?;
            left = ObsExpr::FollowedBy(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn observation_or(&mut self) -> Result<ObsExpr, PatternError> {
        let mut left = self.observation_and()?;
        while self.kw("OR") {
            let right = self.observation_and()?;
            left = ObsExpr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn observation_and(&mut self) -> Result<ObsExpr, PatternError> {
        let mut left = self.observation()?;
        while self.kw("AND") {
            let right = self.observation()?;
            left = ObsExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn observation(&mut self) -> Result<ObsExpr, PatternError> {
        let mut expr = match self.peek() {
            Tok::LBrack => {
                self.next();
                let c = self.comparison_or()?;
                self.expect(Tok::RBrack, "']' or AND/OR")?;
                ObsExpr::Simple(c)
            }
            Tok::LParen => {
                self.next();
                let inner = self.observation_expressions()?;
                self.expect(Tok::RParen, "')'")?;
                ObsExpr::Group(Box::new(inner))
            }
            _ => return Err(self.unexpected("'[' or '('")),
        };
        // Qualifier types applied directly to a [...] may not repeat (the OASIS validator's rule).
        let simple = matches!(expr, ObsExpr::Simple(_));
        let mut seen: Vec<&'static str> = Vec::new();
        loop {
            let at = self.at();
            let (name, q) = if self.kw("WITHIN") {
                let seconds = match self.next() {
                    Tok::Int(n) if n >= 0 => n as f64,
                    Tok::Float(x) if x >= 0.0 => x,
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected("a positive number of seconds after WITHIN"));
                    }
                };
                if !self.kw("SECONDS") {
                    return Err(self.unexpected("SECONDS"));
                }
                ("WITHIN", Qualifier::Within { seconds })
            } else if self.kw("REPEATS") {
                let times = match self.next() {
                    Tok::Int(n) if n >= 0 => n as u64,
                    _ => {
                        self.i -= 1;
                        return Err(self.unexpected("a positive integer after REPEATS"));
                    }
                };
                if !self.kw("TIMES") {
                    return Err(self.unexpected("TIMES"));
                }
                ("REPEATS", Qualifier::Repeats { times })
            } else if self.kw("START") {
                let Tok::Ts(start_ms) = self.next() else {
                    self.i -= 1;
                    return Err(self.unexpected("a timestamp t'...' after START"));
                };
                if !self.kw("STOP") {
                    return Err(self.unexpected("STOP"));
                }
                let Tok::Ts(stop_ms) = self.next() else {
                    self.i -= 1;
                    return Err(self.unexpected("a timestamp t'...' after STOP"));
                };
                ("STARTSTOP", Qualifier::StartStop { start_ms, stop_ms })
            } else {
                break;
            };
            if simple {
                if seen.contains(&name) {
                    return Err(PatternError {
                        column: column(self.src, at),
                        message: format!("duplicate qualifier type {name} on one observation"),
                    });
                }
                seen.push(name);
            }
            expr = ObsExpr::Qualified(Box::new(expr), q);
        }
        Ok(expr)
    }

    fn comparison_or(&mut self) -> Result<CompExpr, PatternError> {
        self.enter()?;
        let mut left = self.comparison_and()?;
        while self.kw("OR") {
            let right = self.comparison_and()?;
            left = CompExpr::Or(Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn comparison_and(&mut self) -> Result<CompExpr, PatternError> {
        let mut left = self.prop_test()?;
        while self.kw("AND") {
            let right = self.prop_test()?;
            left = CompExpr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn prop_test(&mut self) -> Result<CompExpr, PatternError> {
        if *self.peek() == Tok::LParen {
            self.next();
            let inner = self.comparison_or()?;
            self.expect(Tok::RParen, "')'")?;
            return Ok(inner);
        }
        if self.kw("EXISTS") {
            return Ok(CompExpr::Test(PropTest::Exists(self.object_path()?)));
        }
        let path_at = self.at();
        let path = self.object_path()?;
        let negated = self.kw("NOT");
        let op_at = self.at();
        let op = match self.next() {
            Tok::Eq => Op::Eq,
            Tok::Ne => Op::Ne,
            Tok::Lt => Op::Lt,
            Tok::Le => Op::Le,
            Tok::Gt => Op::Gt,
            Tok::Ge => Op::Ge,
            Tok::Kw("IN") => Op::In,
            Tok::Kw("LIKE") => Op::Like,
            Tok::Kw("MATCHES") => Op::Matches,
            Tok::Kw("ISSUBSET") => Op::IsSubset,
            Tok::Kw("ISSUPERSET") => Op::IsSuperset,
            _ => {
                self.i -= 1;
                return Err(self.unexpected(
                    "a comparison operator (=, !=, <, >, IN, LIKE, MATCHES, ISSUBSET, ISSUPERSET)",
                ));
            }
        };
        let value_at = self.at();
        let value = match op {
            Op::In => self.set_literal()?,
            Op::Like | Op::Matches | Op::IsSubset | Op::IsSuperset => match self.next() {
                Tok::Str(s) => Literal::Str(s),
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("a quoted string"));
                }
            },
            _ => {
                let lit = self.primitive_literal()?;
                if matches!(lit, Literal::Bool(_)) && !matches!(op, Op::Eq | Op::Ne) {
                    return Err(PatternError {
                        column: column(self.src, value_at),
                        message: "true/false can only be compared with = or !=".to_owned(),
                    });
                }
                lit
            }
        };
        if let Op::IsSubset | Op::IsSuperset = op {
            if let Literal::Str(s) = &value {
                if s.parse::<IpNet>().is_err() && s.parse::<IpAddr>().is_err() {
                    return Err(PatternError {
                        column: column(self.src, value_at),
                        message: format!("'{s}' is not an IP address or CIDR range"),
                    });
                }
            }
        }
        check_hash(&path, op, &value).map_err(|message| PatternError {
            column: column(self.src, path_at.max(op_at.min(path_at))),
            message,
        })?;
        Ok(CompExpr::Test(PropTest::Compare {
            path,
            negated,
            op,
            value,
        }))
    }

    fn primitive_literal(&mut self) -> Result<Literal, PatternError> {
        Ok(match self.next() {
            Tok::Int(i) => Literal::Int(i),
            Tok::Float(x) => Literal::Float(x),
            Tok::Str(s) => Literal::Str(s),
            Tok::Bool(b) => Literal::Bool(b),
            Tok::Bin(b) => Literal::Binary(b),
            Tok::Ts(t) => Literal::Timestamp(t),
            _ => {
                self.i -= 1;
                return Err(self.unexpected(
                    "a value (a quoted string, number, true/false, b'..', h'..' or t'..')",
                ));
            }
        })
    }

    fn set_literal(&mut self) -> Result<Literal, PatternError> {
        self.expect(Tok::LParen, "'(' starting the set after IN")?;
        let mut items = Vec::new();
        if *self.peek() == Tok::RParen {
            self.next();
            return Ok(Literal::Set(items));
        }
        loop {
            items.push(self.primitive_literal()?);
            match self.next() {
                Tok::Comma => continue,
                Tok::RParen => return Ok(Literal::Set(items)),
                _ => {
                    self.i -= 1;
                    return Err(self.unexpected("',' or ')'"));
                }
            }
        }
    }

    fn object_path(&mut self) -> Result<ObjectPath, PatternError> {
        let object_type = match self.next() {
            Tok::Ident(s, _) => s,
            _ => {
                self.i -= 1;
                return Err(self.unexpected("an object path such as file:name"));
            }
        };
        self.expect(Tok::Colon, "':' after the object type")?;
        let mut steps = vec![match self.next() {
            Tok::Ident(s, false) => Step::Key(s),
            Tok::Str(s) => Step::Key(s),
            Tok::Ident(s, true) => {
                self.i -= 1;
                return Err(self.err_here(format!("property '{s}' has a hyphen: quote it")));
            }
            _ => {
                self.i -= 1;
                return Err(self.unexpected("a property name"));
            }
        }];
        loop {
            match self.peek() {
                Tok::Dot => {
                    self.next();
                    steps.push(match self.next() {
                        Tok::Ident(s, false) => Step::Key(s),
                        Tok::Str(s) => Step::Key(s),
                        _ => {
                            self.i -= 1;
                            return Err(self.unexpected("a property name after '.'"));
                        }
                    });
                }
                Tok::LBrack => {
                    self.next();
                    steps.push(match self.next() {
                        Tok::Int(i) => Step::Index(i),
                        Tok::Star => Step::Any,
                        _ => {
                            self.i -= 1;
                            return Err(self.unexpected("an index or '*'"));
                        }
                    });
                    self.expect(Tok::RBrack, "']'")?;
                }
                _ => break,
            }
        }
        Ok(ObjectPath { object_type, steps })
    }
}

/// The OASIS validator's hash check: a known algorithm's value must have its length.
fn check_hash(path: &ObjectPath, op: Op, value: &Literal) -> Result<(), String> {
    if !path
        .steps
        .iter()
        .any(|s| *s == Step::Key("hashes".to_owned()))
    {
        return Ok(());
    }
    let Some(Step::Key(algo)) = path.steps.last() else {
        return Ok(());
    };
    let key = algo.to_ascii_uppercase().replace('-', "");
    let hex =
        |n: &[usize], s: &str| n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit());
    let check = |s: &str| -> bool {
        match key.as_str() {
            "MD5" => hex(&[32], s),
            "MD6" => hex(&[32, 40, 56, 64, 96, 128], s),
            "RIPEMD160" | "SHA1" => hex(&[40], s),
            "SHA224" | "SHA3224" => hex(&[56], s),
            "SHA256" | "SHA3256" => hex(&[64], s),
            "SHA384" | "SHA3384" => hex(&[96], s),
            "SHA512" | "SHA3512" | "WHIRLPOOL" => hex(&[128], s),
            "SSDEEP" => {
                (1..=128).contains(&s.len())
                    && s.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/+:.".contains(&b))
            }
            _ => true,
        }
    };
    let strings: Vec<&str> = match value {
        Literal::Str(s) => vec![s],
        Literal::Set(items) => items
            .iter()
            .filter_map(|l| match l {
                Literal::Str(s) => Some(s.as_str()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    };
    if matches!(op, Op::Eq | Op::Ne | Op::In) {
        for s in strings {
            if !check(s) {
                return Err(format!("'{s}' is not a valid {algo} hash"));
            }
        }
    }
    Ok(())
}

impl Pattern {
    /// Parses and checks a pattern.
    pub fn parse(src: &str) -> Result<Pattern, PatternError> {
        if src.len() > MAX_PATTERN_LEN {
            return Err(PatternError {
                column: 1,
                message: format!("longer than {MAX_PATTERN_LEN} bytes"),
            });
        }
        let toks = Lexer { src, pos: 0 }.tokens()?;
        let mut p = Parser {
            src,
            toks,
            i: 0,
            depth: 0,
        };
        if !matches!(p.peek(), Tok::LBrack | Tok::LParen) {
            return Err(p.err_here("a pattern starts with '[' (an observation) or '('"));
        }
        let root = p.observation_expressions()?;
        if *p.peek() != Tok::Eof {
            return Err(p.unexpected("AND, OR, FOLLOWEDBY, a qualifier or the end"));
        }
        Ok(Pattern { root })
    }

    /// The values the pattern matches when it is only equality tests on well-known
    /// properties joined by OR (the shape of nearly every shared indicator), else `None`.
    /// Such patterns feed the blocklists directly.
    pub fn observables(&self) -> Option<Vec<Observable>> {
        let mut out = Vec::new();
        collect_obs(&self.root, &mut out)?;
        out.sort();
        out.dedup();
        Some(out)
    }

    /// Whether the observations (each a set of cyber-observable objects seen at one time)
    /// match the pattern.
    pub fn matches(&self, observations: &[Observation]) -> bool {
        let mut regexes = RegexCache::default();
        !bindings(&self.root, observations, &mut regexes).is_empty()
    }
}

fn collect_obs(e: &ObsExpr, out: &mut Vec<Observable>) -> Option<()> {
    match e {
        ObsExpr::Simple(c) => collect_comp(c, out),
        ObsExpr::Or(a, b) => {
            collect_obs(a, out)?;
            collect_obs(b, out)
        }
        ObsExpr::Group(inner) => collect_obs(inner, out),
        _ => None,
    }
}

fn collect_comp(c: &CompExpr, out: &mut Vec<Observable>) -> Option<()> {
    match c {
        CompExpr::Or(a, b) => {
            collect_comp(a, out)?;
            collect_comp(b, out)
        }
        CompExpr::And(..) => None,
        CompExpr::Test(PropTest::Exists(_)) => None,
        CompExpr::Test(PropTest::Compare {
            path,
            negated: false,
            op,
            value,
        }) => {
            let kind = path_kind(path)?;
            let values: Vec<&Literal> = match (op, value) {
                (Op::Eq, v) => vec![v],
                (Op::In, Literal::Set(items)) => items.iter().collect(),
                (Op::IsSubset, v) if matches!(kind, Kind::Ipv4 | Kind::Ipv6) => vec![v],
                _ => return None,
            };
            for v in values {
                let Literal::Str(s) = v else { return None };
                let s = match (kind, path.object_type.as_str()) {
                    (Kind::Messenger, "x-telegram-account") => format!("telegram:{s}"),
                    _ => s.clone(),
                };
                let kind = if matches!(kind, Kind::Ipv4 | Kind::Ipv6) && s.contains('/') {
                    Kind::Cidr
                } else {
                    kind
                };
                out.push(Observable::new(kind, &s).ok()?);
            }
            Some(())
        }
        CompExpr::Test(_) => None,
    }
}

/// The indicator kind a property path holds, for the paths indicators use.
pub fn path_kind(path: &ObjectPath) -> Option<Kind> {
    let keys: Vec<&str> = path
        .steps
        .iter()
        .map(|s| match s {
            Step::Key(k) => Some(k.as_str()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    Some(match (path.object_type.as_str(), keys.as_slice()) {
        ("ipv4-addr", ["value"]) => Kind::Ipv4,
        ("ipv6-addr", ["value"]) => Kind::Ipv6,
        ("network-traffic", ["dst_ref" | "src_ref", "value"]) => Kind::Ipv4,
        ("domain-name", ["value"]) => Kind::Domain,
        ("url", ["value"]) => Kind::Url,
        ("email-addr", ["value"]) => Kind::Email,
        ("email-message", ["from_ref" | "sender_ref", "value"]) => Kind::Email,
        ("file", ["name"]) => Kind::Filename,
        ("file", ["hashes", algo]) => match algo.to_ascii_uppercase().replace('-', "").as_str() {
            "MD5" => Kind::Md5,
            "SHA1" => Kind::Sha1,
            "SHA256" => Kind::Sha256,
            _ => return None,
        },
        ("x-telegram-account", ["username"]) => Kind::Messenger,
        ("x-messenger-account", ["value"]) => Kind::Messenger,
        ("x-phone-number", ["value"]) => Kind::Phone,
        ("x-payment-card", ["bin"]) => Kind::CardBin,
        _ => return None,
    })
}

/// The STIX pattern that matches one observable.
pub fn pattern_for(o: &Observable) -> String {
    let q = |s: &str| format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"));
    match o.kind {
        Kind::Ipv4 => format!("[ipv4-addr:value = {}]", q(&o.value)),
        Kind::Ipv6 => format!("[ipv6-addr:value = {}]", q(&o.value)),
        Kind::Cidr => {
            let t = if o.value.contains(':') {
                "ipv6-addr"
            } else {
                "ipv4-addr"
            };
            format!("[{t}:value ISSUBSET {}]", q(&o.value))
        }
        Kind::Domain => format!("[domain-name:value = {}]", q(&o.value)),
        Kind::Url => format!("[url:value = {}]", q(&o.value)),
        Kind::Email => format!("[email-addr:value = {}]", q(&o.value)),
        Kind::Md5 => format!("[file:hashes.MD5 = {}]", q(&o.value)),
        Kind::Sha1 => format!("[file:hashes.'SHA-1' = {}]", q(&o.value)),
        Kind::Sha256 => format!("[file:hashes.'SHA-256' = {}]", q(&o.value)),
        Kind::Filename => format!("[file:name = {}]", q(&o.value)),
        Kind::Phone => format!("[x-phone-number:value = {}]", q(&o.value)),
        Kind::CardBin => format!("[x-payment-card:bin = {}]", q(&o.value)),
        Kind::Messenger => match o.value.strip_prefix("telegram:") {
            Some(name) => format!("[x-telegram-account:username = {}]", q(name)),
            None => format!("[x-messenger-account:value = {}]", q(&o.value)),
        },
        Kind::Yara | Kind::StixPattern => o.value.clone(),
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation

/// What was seen at one time: cyber-observable objects (STIX SCOs as JSON), which may refer to
/// each other by id (`dst_ref`, `resolves_to_refs`).
#[derive(Debug, Clone)]
pub struct Observation {
    pub time_ms: i64,
    objects: Vec<Value>,
    by_id: HashMap<String, usize>,
}

impl Observation {
    pub fn new(time_ms: i64, objects: Vec<Value>) -> Observation {
        let by_id = objects
            .iter()
            .enumerate()
            .filter_map(|(i, o)| Some((o.get("id")?.as_str()?.to_owned(), i)))
            .collect();
        Observation {
            time_ms,
            objects,
            by_id,
        }
    }

    /// One observable as the SCO the standard patterns look at.
    pub fn of(time_ms: i64, o: &Observable) -> Observation {
        let object = match o.kind {
            Kind::Ipv4 => serde_json::json!({"type": "ipv4-addr", "value": o.value}),
            Kind::Ipv6 => serde_json::json!({"type": "ipv6-addr", "value": o.value}),
            Kind::Cidr if o.value.contains(':') => {
                serde_json::json!({"type": "ipv6-addr", "value": o.value})
            }
            Kind::Cidr => serde_json::json!({"type": "ipv4-addr", "value": o.value}),
            Kind::Domain => serde_json::json!({"type": "domain-name", "value": o.value}),
            Kind::Url => serde_json::json!({"type": "url", "value": o.value}),
            Kind::Email => serde_json::json!({"type": "email-addr", "value": o.value}),
            Kind::Md5 => serde_json::json!({"type": "file", "hashes": {"MD5": o.value}}),
            Kind::Sha1 => serde_json::json!({"type": "file", "hashes": {"SHA-1": o.value}}),
            Kind::Sha256 => serde_json::json!({"type": "file", "hashes": {"SHA-256": o.value}}),
            Kind::Filename => serde_json::json!({"type": "file", "name": o.value}),
            Kind::Phone => serde_json::json!({"type": "x-phone-number", "value": o.value}),
            Kind::CardBin => serde_json::json!({"type": "x-payment-card", "bin": o.value}),
            Kind::Messenger => match o.value.strip_prefix("telegram:") {
                Some(n) => serde_json::json!({"type": "x-telegram-account", "username": n}),
                None => serde_json::json!({"type": "x-messenger-account", "value": o.value}),
            },
            Kind::Yara | Kind::StixPattern => serde_json::json!({"type": "artifact"}),
        };
        Observation::new(time_ms, vec![object])
    }
}

#[derive(Default)]
struct RegexCache(HashMap<String, Option<regex::Regex>>);

impl RegexCache {
    fn get(&mut self, pattern: &str) -> Option<&regex::Regex> {
        self.0
            .entry(pattern.to_owned())
            .or_insert_with(|| {
                regex::RegexBuilder::new(pattern)
                    .size_limit(1 << 20)
                    .dfa_size_limit(1 << 20)
                    .build()
                    .ok()
            })
            .as_ref()
    }
}

type Binding = Vec<usize>;

fn bindings(e: &ObsExpr, obs: &[Observation], rx: &mut RegexCache) -> Vec<Binding> {
    let mut out = match e {
        ObsExpr::Simple(c) => (0..obs.len())
            .filter(|&i| comp_matches(c, &obs[i], rx))
            .map(|i| vec![i])
            .collect(),
        ObsExpr::Group(inner) => bindings(inner, obs, rx),
        ObsExpr::Or(a, b) => {
            let mut v = bindings(a, obs, rx);
            v.extend(bindings(b, obs, rx));
            v
        }
        ObsExpr::And(a, b) | ObsExpr::FollowedBy(a, b) => {
            let left = bindings(a, obs, rx);
            let right = bindings(b, obs, rx);
            let ordered = matches!(e, ObsExpr::FollowedBy(..));
            let mut v = Vec::new();
            'outer: for l in &left {
                for r in &right {
                    if l.iter().any(|i| r.contains(i)) {
                        continue;
                    }
                    if ordered {
                        let last_l = l.iter().map(|&i| obs[i].time_ms).max().unwrap_or(0);
                        let first_r = r.iter().map(|&i| obs[i].time_ms).min().unwrap_or(0);
                        if last_l > first_r {
                            continue;
                        }
                    }
                    let mut joined = l.clone();
                    joined.extend(r);
                    v.push(joined);
                    if v.len() >= MAX_BINDINGS {
                        break 'outer;
                    }
                }
            }
            v
        }
        ObsExpr::Qualified(inner, q) => {
            let v = bindings(inner, obs, rx);
            match q {
                Qualifier::Within { seconds } => v
                    .into_iter()
                    .filter(|b| {
                        let times = b.iter().map(|&i| obs[i].time_ms);
                        let span = times.clone().max().unwrap_or(0) - times.min().unwrap_or(0);
                        (span as f64) <= seconds * 1000.0
                    })
                    .collect(),
                Qualifier::StartStop { start_ms, stop_ms } => v
                    .into_iter()
                    .filter(|b| {
                        b.iter()
                            .all(|&i| (*start_ms..*stop_ms).contains(&obs[i].time_ms))
                    })
                    .collect(),
                Qualifier::Repeats { times } => repeats(v, *times as usize, obs),
            }
        }
    };
    for b in &mut out {
        b.sort_unstable();
        b.dedup();
    }
    out.truncate(MAX_BINDINGS);
    out
}

/// `times` disjoint matches joined into one, tried from each starting match in time order so
/// that a later WITHIN sees the tightest windows.
fn repeats(mut v: Vec<Binding>, times: usize, obs: &[Observation]) -> Vec<Binding> {
    if times == 0 {
        return v;
    }
    let start = |b: &Binding| b.iter().map(|&i| obs[i].time_ms).min().unwrap_or(0);
    v.sort_by_key(start);
    let mut out = Vec::new();
    for first in 0..v.len() {
        let mut used: Binding = v[first].clone();
        let mut count = 1;
        for b in &v[first + 1..] {
            if count == times {
                break;
            }
            if b.iter().all(|i| !used.contains(i)) {
                used.extend(b);
                count += 1;
            }
        }
        if count == times {
            out.push(used);
        }
    }
    out
}

fn comp_types<'a>(c: &'a CompExpr, out: &mut Vec<&'a str>) {
    match c {
        CompExpr::And(a, b) | CompExpr::Or(a, b) => {
            comp_types(a, out);
            comp_types(b, out);
        }
        CompExpr::Test(PropTest::Exists(p)) | CompExpr::Test(PropTest::Compare { path: p, .. }) => {
            if !out.contains(&p.object_type.as_str()) {
                out.push(&p.object_type);
            }
        }
    }
}

/// Tests on one object type must hold for the same object (`[file:name = 'a' AND file:size = 1]`
/// is one file); tests on different types each need some object of theirs.
fn comp_matches(c: &CompExpr, obs: &Observation, rx: &mut RegexCache) -> bool {
    let mut types = Vec::new();
    comp_types(c, &mut types);
    if let [only] = types.as_slice() {
        return obs
            .objects
            .iter()
            .filter(|o| o.get("type").and_then(Value::as_str) == Some(only))
            .any(|o| comp_on(c, o, obs, rx));
    }
    match c {
        CompExpr::And(a, b) => comp_matches(a, obs, rx) && comp_matches(b, obs, rx),
        CompExpr::Or(a, b) => comp_matches(a, obs, rx) || comp_matches(b, obs, rx),
        CompExpr::Test(_) => false,
    }
}

fn comp_on(c: &CompExpr, object: &Value, obs: &Observation, rx: &mut RegexCache) -> bool {
    match c {
        CompExpr::And(a, b) => comp_on(a, object, obs, rx) && comp_on(b, object, obs, rx),
        CompExpr::Or(a, b) => comp_on(a, object, obs, rx) || comp_on(b, object, obs, rx),
        CompExpr::Test(PropTest::Exists(p)) => !resolve(object, &p.steps, obs).is_empty(),
        CompExpr::Test(PropTest::Compare {
            path,
            negated,
            op,
            value,
        }) => {
            let found = resolve(object, &path.steps, obs);
            if found.is_empty() {
                return false;
            }
            let binary = path.steps.last().is_some_and(
                |s| matches!(s, Step::Key(k) if k.ends_with("_bin") || k.ends_with("_hex")),
            );
            let hex = path
                .steps
                .last()
                .is_some_and(|s| matches!(s, Step::Key(k) if k.ends_with("_hex")));
            found
                .iter()
                .any(|v| test_value(v, *op, value, binary, hex, rx) != *negated)
        }
    }
}

fn resolve<'a>(object: &'a Value, steps: &[Step], obs: &'a Observation) -> Vec<&'a Value> {
    let mut current = vec![object];
    for (n, step) in steps.iter().enumerate() {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Key(k) => {
                    if let Some(x) = v.get(k) {
                        let is_ref = k.ends_with("_ref") || k.ends_with("_refs");
                        let deref = is_ref && n + 1 < steps.len();
                        match x {
                            Value::String(id) if deref => {
                                if let Some(&i) = obs.by_id.get(id) {
                                    next.push(&obs.objects[i]);
                                }
                            }
                            other => next.push(other),
                        }
                    }
                }
                Step::Index(i) => {
                    if let Some(arr) = v.as_array() {
                        let idx = if *i < 0 { arr.len() as i64 + i } else { *i };
                        if let Some(x) = usize::try_from(idx).ok().and_then(|i| arr.get(i)) {
                            next.push(deref_item(x, obs));
                        }
                    }
                }
                Step::Any => {
                    if let Some(arr) = v.as_array() {
                        next.extend(arr.iter().map(|x| deref_item(x, obs)));
                    }
                }
            }
        }
        current = next;
    }
    current
}

/// List items of `_refs` properties are ids; a path stepping through them means the objects.
fn deref_item<'a>(x: &'a Value, obs: &'a Observation) -> &'a Value {
    match x {
        Value::String(id) if id.contains("--") => {
            obs.by_id.get(id).map(|&i| &obs.objects[i]).unwrap_or(x)
        }
        other => other,
    }
}

fn test_value(
    v: &Value,
    op: Op,
    lit: &Literal,
    binary: bool,
    hex: bool,
    rx: &mut RegexCache,
) -> bool {
    use std::cmp::Ordering;
    let ordering = |lit: &Literal| -> Option<Ordering> {
        match (v, lit) {
            (Value::Number(n), Literal::Int(i)) => n.as_f64()?.partial_cmp(&(*i as f64)),
            (Value::Number(n), Literal::Float(x)) => n.as_f64()?.partial_cmp(x),
            (Value::Bool(b), Literal::Bool(l)) => Some(b.cmp(l)),
            (Value::String(s), Literal::Timestamp(t)) => Some(parse_timestamp(s)?.cmp(t)),
            (Value::String(s), Literal::Binary(b)) => {
                let bytes = if hex {
                    decode_hex(s)?
                } else {
                    decode_base64(s)?
                };
                Some(bytes.as_slice().cmp(b.as_slice()))
            }
            (Value::String(s), Literal::Str(l)) if binary && !hex => {
                Some(decode_base64(s)?.as_slice().cmp(l.as_bytes()))
            }
            (Value::String(s), Literal::Str(l)) => Some(s.as_str().cmp(l.as_str())),
            _ => None,
        }
    };
    match op {
        Op::Eq => ordering(lit) == Some(Ordering::Equal),
        Op::Ne => ordering(lit).is_some_and(|o| o != Ordering::Equal),
        Op::Lt => ordering(lit) == Some(Ordering::Less),
        Op::Le => matches!(ordering(lit), Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ordering(lit) == Some(Ordering::Greater),
        Op::Ge => matches!(ordering(lit), Some(Ordering::Greater | Ordering::Equal)),
        Op::In => match lit {
            Literal::Set(items) => items.iter().any(|l| ordering(l) == Some(Ordering::Equal)),
            _ => false,
        },
        Op::Like => match (v, lit) {
            (Value::String(s), Literal::Str(l)) => {
                rx.get(&like_to_regex(l)).is_some_and(|r| r.is_match(s))
            }
            _ => false,
        },
        Op::Matches => match (v, lit) {
            (Value::String(s), Literal::Str(l)) => rx.get(l).is_some_and(|r| r.is_match(s)),
            _ => false,
        },
        Op::IsSubset | Op::IsSuperset => match (v, lit) {
            (Value::String(s), Literal::Str(l)) => {
                let (Some(a), Some(b)) = (as_net(s), as_net(l)) else {
                    return false;
                };
                if op == Op::IsSubset {
                    b.contains(&a)
                } else {
                    a.contains(&b)
                }
            }
            _ => false,
        },
    }
}

fn as_net(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

fn like_to_regex(like: &str) -> String {
    let mut out = String::from("(?s)^");
    for c in like.chars() {
        match c {
            '%' => out.push_str(".*"),
            '_' => out.push('.'),
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn valid(p: &str) -> Pattern {
        Pattern::parse(p).unwrap_or_else(|e| panic!("{p}: {e}"))
    }

    #[test]
    fn errors_name_the_column() {
        let e = Pattern::parse("[file:size = ]").unwrap_err();
        assert_eq!(e.column, 14, "{e}");
        let e = Pattern::parse("[domain-name:value = 'a'] AND").unwrap_err();
        assert_eq!(e.column, 30, "{e}");
        let e = Pattern::parse("[file:hashes.'SHA-256' = 'f00']").unwrap_err();
        assert!(e.message.contains("not a valid SHA-256 hash"), "{e}");
        let e = Pattern::parse("[a:b = 'x'] WITHIN 1 SECONDS WITHIN 2 SECONDS").unwrap_err();
        assert!(e.message.contains("duplicate qualifier"), "{e}");
        valid("([a:b = 'x']) WITHIN 1 SECONDS WITHIN 2 SECONDS");
        assert!(Pattern::parse("[a:b = 'x' ").is_err());
        assert!(Pattern::parse(&"(".repeat(200)).is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(
            parse_timestamp("2016-06-01T01:30:00.123Z"),
            Some(1_464_744_600_123)
        );
        assert_eq!(parse_timestamp("2024-01-15T25:00:00Z"), None);
        assert!(parse_timestamp("2024-02-30T12:00:00Z").is_some());
    }

    #[test]
    fn simple_patterns_reduce_to_observables() {
        let p = valid("[ipv4-addr:value = '198.51.100.1'] OR [domain-name:value = 'Evil.Example' OR url:value = 'http://evil.example/x']");
        let obs = p.observables().unwrap();
        let kinds: Vec<_> = obs.iter().map(|o| (o.kind, o.value.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Ipv4, "198.51.100.1"),
                (Kind::Domain, "evil.example"),
                (Kind::Url, "http://evil.example/x")
            ]
        );
        assert!(valid("[file:name = 'a' AND file:size = 1]")
            .observables()
            .is_none());
        assert!(valid("[ipv4-addr:value = '1.2.3.4'] WITHIN 5 SECONDS")
            .observables()
            .is_none());
        let cidr = valid("[ipv4-addr:value ISSUBSET '10.0.0.0/8']")
            .observables()
            .unwrap();
        assert_eq!(cidr[0].kind, Kind::Cidr);
        for o in [
            Observable::new(Kind::Sha1, "da39a3ee5e6b4b0d3255bfef95601890afd80709").unwrap(),
            Observable::new(Kind::Messenger, "@fake_bot").unwrap(),
            Observable::new(Kind::Cidr, "2001:db8::/32").unwrap(),
            Observable::new(Kind::Phone, "+994125551234").unwrap(),
            Observable::new(Kind::Filename, "it's.exe").unwrap(),
        ] {
            let text = pattern_for(&o);
            let back = valid(&text).observables().unwrap();
            assert_eq!(back, vec![o.clone()], "{text}");
            assert!(valid(&text).matches(&[Observation::of(0, &o)]), "{text}");
        }
    }

    #[test]
    fn evaluation() {
        let obs = vec![
            Observation::new(
                1000,
                vec![
                    json!({"type": "network-traffic", "id": "network-traffic--1", "dst_ref": "ipv4-addr--1", "dst_port": 443, "src_packets": 3}),
                    json!({"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "10.1.2.3"}),
                ],
            ),
            Observation::new(
                5000,
                vec![
                    json!({"type": "file", "name": "foo.dll", "size": 2048, "hashes": {"MD5": "79054025255fb1a26e4bc422aef54eb4"}}),
                ],
            ),
            Observation::new(
                9000,
                vec![json!({"type": "file", "name": "bar.exe", "size": 10})],
            ),
        ];
        let m = |p: &str| valid(p).matches(&obs);
        assert!(m(
            "[network-traffic:dst_port IN (443, 8443) AND network-traffic:src_packets != 0]"
        ));
        assert!(m("[network-traffic:dst_ref.value ISSUBSET '10.0.0.0/8']"));
        assert!(!m(
            "[network-traffic:dst_ref.value ISSUBSET '192.168.0.0/16']"
        ));
        assert!(m("[file:name LIKE 'foo%' AND file:size >= 1024]"));
        assert!(
            !m("[file:name = 'foo.dll' AND file:size < 100]"),
            "same object"
        );
        assert!(m("[file:name MATCHES '^bar\\\\.exe$']"));
        assert!(m("[file:name NOT = 'foo.dll']"));
        assert!(!m("[file:missing = 'x']"));
        assert!(m(
            "[ipv4-addr:value = '10.1.2.3'] FOLLOWEDBY [file:name = 'foo.dll']"
        ));
        assert!(!m(
            "[file:name = 'foo.dll'] FOLLOWEDBY [ipv4-addr:value = '10.1.2.3']"
        ));
        assert!(m(
            "([ipv4-addr:value = '10.1.2.3'] AND [file:name = 'bar.exe']) WITHIN 8 SECONDS"
        ));
        assert!(!m(
            "([ipv4-addr:value = '10.1.2.3'] AND [file:name = 'bar.exe']) WITHIN 7 SECONDS"
        ));
        assert!(m("[file:size > 0] REPEATS 2 TIMES"));
        assert!(!m("[file:size > 0] REPEATS 3 TIMES"));
        assert!(m(
            "[file:size > 0] START t'1970-01-01T00:00:04Z' STOP t'1970-01-01T00:00:06Z'"
        ));
        assert!(!m(
            "[file:name = 'bar.exe'] START t'1970-01-01T00:00:04Z' STOP t'1970-01-01T00:00:06Z'"
        ));
        assert!(m("[file:hashes.MD5 = '79054025255fb1a26e4bc422aef54eb4']"));
        assert!(m("[file:name = 'nope'] OR [file:name = 'foo.dll']"));
        assert!(m("[x:y = 'nope'] OR [file:name = 'foo.dll']"));
        assert!(m("[EXISTS file:hashes.MD5]") || m("[file:size = 10]"));
    }
}
