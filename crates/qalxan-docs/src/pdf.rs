//! PDF: a tolerant object reader and the analysis of active content (JavaScript, actions
//! run on open, launches, embedded files, forms that submit, remote references).
//!
//! Written by hand rather than on `lopdf`: malicious PDFs have broken cross-reference
//! tables, wrong stream lengths and objects hidden in object streams, and a reader that
//! trusts the xref misses exactly those. This one scans the file for `N G obj` headers (the
//! last definition wins, as with incremental updates), expands object streams, and decodes
//! streams through the standard filters with an output limit. [`write`] serialises the same
//! model, which is how disarm rebuilds a file.

use std::collections::BTreeMap;
use std::io::Read;

use crate::report::{Context, Severity};

/// Nesting of arrays and dictionaries a parser follows.
const MAX_NESTING: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    Null,
    Bool(bool),
    /// A number as written (integers and reals keep their spelling).
    Num(String),
    /// A name, `#xx` escapes decoded.
    Name(Vec<u8>),
    Str(Vec<u8>),
    Array(Vec<Obj>),
    Dict(Dict),
    Ref(u32, u16),
    Stream(Dict, Vec<u8>),
}

/// A dictionary in file order (PDF writers and readers care about nothing else).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dict(pub Vec<(Vec<u8>, Obj)>);

impl Dict {
    pub fn get(&self, key: &[u8]) -> Option<&Obj> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let before = self.0.len();
        self.0.retain(|(k, _)| k != key);
        self.0.len() != before
    }
    pub fn name(&self, key: &[u8]) -> Option<&[u8]> {
        match self.get(key) {
            Some(Obj::Name(n)) => Some(n),
            _ => None,
        }
    }
}

impl Obj {
    pub fn as_dict(&self) -> Option<&Dict> {
        match self {
            Obj::Dict(d) | Obj::Stream(d, _) => Some(d),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Obj::Num(n) => n.parse().ok(),
            _ => None,
        }
    }
}

/// A parsed document: objects by number (the last definition of each), trailers, and what
/// the reader noticed on the way.
#[derive(Debug, Default)]
pub struct Document {
    pub objects: BTreeMap<u32, (u16, Obj)>,
    /// Trailer dictionaries and cross-reference stream dictionaries, in file order.
    pub trailers: Vec<Dict>,
    /// Names written with `#xx` escapes where a plain letter would do: (decoded name, count).
    pub escaped_names: BTreeMap<Vec<u8>, usize>,
    pub version: String,
    /// Bytes after the last `%%EOF`.
    pub trailing_bytes: usize,
    pub problems: Vec<String>,
    pub object_streams: usize,
    /// The password that decrypted the document (often empty), when it was encrypted.
    pub decrypted_with: Option<String>,
}

impl Document {
    pub fn get(&self, num: u32) -> Option<&Obj> {
        self.objects.get(&num).map(|(_, o)| o)
    }

    /// Follows a reference (a few levels, never in a loop).
    pub fn resolve<'a>(&'a self, mut o: &'a Obj) -> &'a Obj {
        for _ in 0..8 {
            match o {
                Obj::Ref(n, _) => match self.get(*n) {
                    Some(t) => o = t,
                    None => return &Obj::Null,
                },
                _ => return o,
            }
        }
        o
    }

    /// The trailer entry `key` from the last trailer that has it.
    pub fn trailer(&self, key: &[u8]) -> Option<&Obj> {
        self.trailers.iter().rev().find_map(|t| t.get(key))
    }
}

struct Lexer<'a> {
    d: &'a [u8],
    pos: usize,
    escaped: &'a mut BTreeMap<Vec<u8>, usize>,
}

fn is_ws(b: u8) -> bool {
    matches!(b, 0 | 9 | 10 | 12 | 13 | 32)
}

fn is_delim(b: u8) -> bool {
    matches!(
        b,
        b'(' | b')' | b'<' | b'>' | b'[' | b']' | b'{' | b'}' | b'/' | b'%'
    )
}

impl Lexer<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.d.len() {
            let b = self.d[self.pos];
            if is_ws(b) {
                self.pos += 1;
            } else if b == b'%' {
                while self.pos < self.d.len()
                    && self.d[self.pos] != b'\n'
                    && self.d[self.pos] != b'\r'
                {
                    self.pos += 1;
                }
            } else {
                break;
            }
        }
    }

    fn regular(&mut self) -> &[u8] {
        let start = self.pos;
        while self.pos < self.d.len() && !is_ws(self.d[self.pos]) && !is_delim(self.d[self.pos]) {
            self.pos += 1;
        }
        &self.d[start..self.pos]
    }

    fn value(&mut self, depth: usize) -> Option<Obj> {
        if depth > MAX_NESTING {
            return None;
        }
        self.skip_ws();
        let b = *self.d.get(self.pos)?;
        match b {
            b'/' => {
                self.pos += 1;
                let raw = self.regular().to_vec();
                Some(Obj::Name(self.decode_name(&raw)))
            }
            b'(' => Some(Obj::Str(self.literal())),
            b'<' if self.d.get(self.pos + 1) == Some(&b'<') => {
                self.pos += 2;
                let mut dict = Vec::new();
                loop {
                    self.skip_ws();
                    match self.d.get(self.pos) {
                        None => return Some(Obj::Dict(Dict(dict))),
                        Some(b'>') => {
                            self.pos += if self.d.get(self.pos + 1) == Some(&b'>') {
                                2
                            } else {
                                1
                            };
                            return Some(Obj::Dict(Dict(dict)));
                        }
                        Some(b'/') => {
                            self.pos += 1;
                            let raw = self.regular().to_vec();
                            let key = self.decode_name(&raw);
                            let v = self.value(depth + 1).unwrap_or(Obj::Null);
                            dict.push((key, v));
                        }
                        Some(_) => {
                            // Junk where a key belongs: skip one token.
                            let before = self.pos;
                            if self.value(depth + 1).is_none() || self.pos == before {
                                self.pos += 1;
                            }
                        }
                    }
                    if dict.len() > 100_000 {
                        return Some(Obj::Dict(Dict(dict)));
                    }
                }
            }
            b'<' => {
                self.pos += 1;
                let start = self.pos;
                while self.pos < self.d.len() && self.d[self.pos] != b'>' {
                    self.pos += 1;
                }
                let s = hex_decode(&self.d[start..self.pos]);
                self.pos = (self.pos + 1).min(self.d.len());
                Some(Obj::Str(s))
            }
            b'[' => {
                self.pos += 1;
                let mut items = Vec::new();
                loop {
                    self.skip_ws();
                    match self.d.get(self.pos) {
                        None => return Some(Obj::Array(items)),
                        Some(b']') => {
                            self.pos += 1;
                            return Some(Obj::Array(items));
                        }
                        Some(_) => {
                            let before = self.pos;
                            match self.value(depth + 1) {
                                Some(v) => items.push(v),
                                None => {
                                    if self.pos == before {
                                        self.pos += 1;
                                    }
                                }
                            }
                        }
                    }
                    if items.len() > 1_000_000 {
                        return Some(Obj::Array(items));
                    }
                }
            }
            b']' | b')' | b'>' | b'{' | b'}' => {
                self.pos += 1;
                None
            }
            _ => {
                let tok = self.regular();
                if tok.is_empty() {
                    self.pos += 1;
                    return None;
                }
                match tok {
                    b"true" => Some(Obj::Bool(true)),
                    b"false" => Some(Obj::Bool(false)),
                    b"null" => Some(Obj::Null),
                    t if t
                        .iter()
                        .all(|c| c.is_ascii_digit() || matches!(c, b'+' | b'-' | b'.')) =>
                    {
                        let num = String::from_utf8_lossy(t).into_owned();
                        // `n g R`: look ahead without consuming unless it is a reference.
                        if let Ok(n) = num.parse::<u32>() {
                            let save = self.pos;
                            self.skip_ws();
                            let g = self.regular().to_vec();
                            self.skip_ws();
                            if !g.is_empty()
                                && g.iter().all(u8::is_ascii_digit)
                                && self.d.get(self.pos) == Some(&b'R')
                                && self
                                    .d
                                    .get(self.pos + 1)
                                    .is_none_or(|&c| is_ws(c) || is_delim(c))
                            {
                                self.pos += 1;
                                let g = std::str::from_utf8(&g)
                                    .ok()
                                    .and_then(|s| s.parse().ok())
                                    .unwrap_or(0);
                                return Some(Obj::Ref(n, g));
                            }
                            self.pos = save;
                        }
                        Some(Obj::Num(num))
                    }
                    // A keyword (obj, endobj, stream, R...) ends a value.
                    _ => None,
                }
            }
        }
    }

    fn decode_name(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len());
        let mut escaped_letter = false;
        let mut i = 0;
        while i < raw.len() {
            if raw[i] == b'#' {
                if let (Some(h), Some(l)) = (
                    raw.get(i + 1).and_then(|c| (*c as char).to_digit(16)),
                    raw.get(i + 2).and_then(|c| (*c as char).to_digit(16)),
                ) {
                    let c = (h * 16 + l) as u8;
                    if c.is_ascii_alphanumeric() {
                        escaped_letter = true;
                    }
                    out.push(c);
                    i += 3;
                    continue;
                }
            }
            out.push(raw[i]);
            i += 1;
        }
        if escaped_letter {
            *self.escaped.entry(out.clone()).or_insert(0) += 1;
        }
        out
    }

    fn literal(&mut self) -> Vec<u8> {
        self.pos += 1;
        let mut out = Vec::new();
        let mut level = 1;
        while self.pos < self.d.len() {
            let b = self.d[self.pos];
            self.pos += 1;
            match b {
                b'\\' => {
                    let Some(&n) = self.d.get(self.pos) else {
                        break;
                    };
                    self.pos += 1;
                    match n {
                        b'n' => out.push(b'\n'),
                        b'r' => out.push(b'\r'),
                        b't' => out.push(b'\t'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'\r' => {
                            if self.d.get(self.pos) == Some(&b'\n') {
                                self.pos += 1;
                            }
                        }
                        b'\n' => {}
                        b'0'..=b'7' => {
                            let mut v = (n - b'0') as u32;
                            for _ in 0..2 {
                                match self.d.get(self.pos) {
                                    Some(&c @ b'0'..=b'7') => {
                                        v = v * 8 + (c - b'0') as u32;
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(v as u8);
                        }
                        other => out.push(other),
                    }
                }
                b'(' => {
                    level += 1;
                    out.push(b);
                }
                b')' => {
                    level -= 1;
                    if level == 0 {
                        break;
                    }
                    out.push(b);
                }
                _ => out.push(b),
            }
        }
        out
    }
}

fn hex_decode(s: &[u8]) -> Vec<u8> {
    let digits: Vec<u8> = s
        .iter()
        .filter_map(|&b| (b as char).to_digit(16).map(|v| v as u8))
        .collect();
    digits
        .chunks(2)
        .map(|p| p[0] << 4 | p.get(1).copied().unwrap_or(0))
        .collect()
}

/// Finds `N G obj` headers: returns (object number, generation, position after `obj`).
fn object_headers(d: &[u8], max: usize) -> Vec<(u32, u16, usize)> {
    let mut out = Vec::new();
    for p in memchr::memmem::find_iter(d, b"obj") {
        if out.len() >= max {
            break;
        }
        // Not "endobj", and followed by a delimiter.
        if p >= 3 && &d[p - 3..p] == b"end" {
            continue;
        }
        if d.get(p + 3).is_some_and(|&c| !is_ws(c) && !is_delim(c)) {
            continue;
        }
        let mut i = p;
        let back_ws = |i: &mut usize| {
            let s = *i;
            while *i > 0 && is_ws(d[*i - 1]) {
                *i -= 1;
            }
            s != *i
        };
        if !back_ws(&mut i) {
            continue;
        }
        let gen_end = i;
        while i > 0 && d[i - 1].is_ascii_digit() && gen_end - i < 5 {
            i -= 1;
        }
        if i == gen_end || !back_ws(&mut i) {
            continue;
        }
        let num_end = i;
        while i > 0 && d[i - 1].is_ascii_digit() && num_end - i < 10 {
            i -= 1;
        }
        if i == num_end || (i > 0 && !is_ws(d[i - 1]) && !is_delim(d[i - 1])) {
            continue;
        }
        let num = std::str::from_utf8(&d[i..num_end])
            .ok()
            .and_then(|s| s.parse().ok());
        let gen = std::str::from_utf8(d[num_end..gen_end].trim_ascii())
            .ok()
            .and_then(|s| s.parse().ok());
        if let (Some(n), Some(g)) = (num, gen) {
            out.push((n, g, p + 3));
        }
    }
    out
}

/// Reads a document. Never fails: whatever could not be read is in `problems`.
pub fn parse(d: &[u8], max_objects: usize, max_decoded: usize) -> Document {
    parse_with(d, max_objects, max_decoded, &[""])
}

/// [`parse`], trying `passwords` (as user passwords) on an encrypted document.
pub fn parse_with(
    d: &[u8],
    max_objects: usize,
    max_decoded: usize,
    passwords: &[&str],
) -> Document {
    let mut doc = Document::default();
    if let Some(p) = memchr::memmem::find(&d[..d.len().min(1024)], b"%PDF-") {
        doc.version = String::from_utf8_lossy(&d[p + 5..(p + 8).min(d.len())]).into_owned();
    }
    if let Some(p) = memchr::memmem::rfind(d, b"%%EOF") {
        let rest = &d[p + 5..];
        doc.trailing_bytes = rest.iter().filter(|b| !is_ws(**b)).count();
    }
    let mut escaped = BTreeMap::new();
    for (num, gen, at) in object_headers(d, max_objects) {
        let mut lx = Lexer {
            d,
            pos: at,
            escaped: &mut escaped,
        };
        let Some(mut value) = lx.value(0) else {
            doc.problems
                .push(format!("object {num} {gen}: no value after obj"));
            continue;
        };
        lx.skip_ws();
        if let Obj::Dict(dict) = &value {
            if d.get(lx.pos..).is_some_and(|r| r.starts_with(b"stream")) {
                let mut start = lx.pos + 6;
                if d.get(start) == Some(&b'\r') {
                    start += 1;
                }
                if d.get(start) == Some(&b'\n') {
                    start += 1;
                }
                let declared = dict
                    .get(b"Length")
                    .and_then(Obj::as_int)
                    .map(|l| l as usize);
                let end = match declared {
                    Some(l)
                        if start.checked_add(l).is_some_and(|e| {
                            e <= d.len() && {
                                let after = &d[e..d.len().min(e + 20)];
                                let t =
                                    after.iter().position(|b| !is_ws(*b)).unwrap_or(after.len());
                                after[t..].starts_with(b"endstream")
                            }
                        }) =>
                    {
                        start + l
                    }
                    _ => {
                        if declared.is_some() {
                            doc.problems
                                .push(format!("object {num} {gen}: stream /Length is wrong"));
                        }
                        let e = memchr::memmem::find(&d[start.min(d.len())..], b"endstream")
                            .map_or(d.len(), |p| start + p);
                        let mut e = e.max(start);
                        while e > start && matches!(d[e - 1], b'\r' | b'\n') {
                            e -= 1;
                        }
                        e
                    }
                };
                let raw = d.get(start..end).unwrap_or_default().to_vec();
                value = Obj::Stream(dict.clone(), raw);
            }
        }
        if let Obj::Stream(dict, _) | Obj::Dict(dict) = &value {
            if dict.name(b"Type") == Some(b"XRef") {
                doc.trailers.push(dict.clone());
            }
        }
        doc.objects.insert(num, (gen, value));
    }
    // Classic trailers.
    for p in memchr::memmem::find_iter(d, b"trailer") {
        let mut lx = Lexer {
            d,
            pos: p + 7,
            escaped: &mut escaped,
        };
        if let Some(Obj::Dict(t)) = lx.value(0) {
            doc.trailers.push(t);
        }
    }
    // Encryption: strings and streams of direct objects, before object streams are read.
    if let Some(enc_ref) = doc.trailer(b"Encrypt").cloned() {
        let enc_num = match enc_ref {
            Obj::Ref(n, _) => Some(n),
            _ => None,
        };
        if let Some((key, pw)) = passwords
            .iter()
            .find_map(|p| crate::pdfcrypt::open(&doc, &[p]).map(|k| (k, p.to_string())))
        {
            for (&num, (gen, obj)) in doc.objects.iter_mut() {
                if Some(num) != enc_num {
                    key.decrypt_obj(num, *gen, obj, 0);
                }
            }
            doc.decrypted_with = Some(pw);
        }
    }
    // Object streams: objects compressed together, which byte scanners never see.
    let streams: Vec<(u32, Dict, Vec<u8>)> = doc
        .objects
        .iter()
        .filter_map(|(n, (_, o))| match o {
            Obj::Stream(dict, raw) if dict.name(b"Type") == Some(b"ObjStm") => {
                Some((*n, dict.clone(), raw.clone()))
            }
            _ => None,
        })
        .collect();
    let mut budget = max_decoded;
    for (n, dict, raw) in streams {
        doc.object_streams += 1;
        let data = match decode_stream(&dict, &raw, budget.min(max_decoded)) {
            Ok(data) => data,
            Err(e) => {
                doc.problems.push(format!("object stream {n}: {e}"));
                continue;
            }
        };
        budget = budget.saturating_sub(data.len());
        let count = dict
            .get(b"N")
            .and_then(Obj::as_int)
            .unwrap_or(0)
            .clamp(0, 100_000) as usize;
        let first = dict.get(b"First").and_then(Obj::as_int).unwrap_or(0).max(0) as usize;
        let mut lx = Lexer {
            d: &data,
            pos: 0,
            escaped: &mut escaped,
        };
        let mut index = Vec::new();
        for _ in 0..count {
            let (Some(num), Some(off)) = (
                lx.value(0).and_then(|v| v.as_int()),
                lx.value(0).and_then(|v| v.as_int()),
            ) else {
                break;
            };
            index.push((num as u32, off as usize));
        }
        for (num, off) in index {
            if doc.objects.len() >= max_objects {
                break;
            }
            lx.pos = first.saturating_add(off);
            if let Some(v) = lx.value(0) {
                doc.objects.entry(num).or_insert((0, v));
            }
        }
    }
    doc.escaped_names = escaped;
    doc
}

/// The filters of a stream, as names.
fn filters(dict: &Dict) -> Vec<Vec<u8>> {
    match dict.get(b"Filter") {
        Some(Obj::Name(n)) => vec![n.clone()],
        Some(Obj::Array(a)) => a
            .iter()
            .filter_map(|o| match o {
                Obj::Name(n) => Some(n.clone()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Decodes a stream through its filters, producing at most `max` bytes. Image filters
/// (DCT, JPX, JBIG2, CCITT) end decoding: their output is pixels, not content.
pub fn decode_stream(dict: &Dict, raw: &[u8], max: usize) -> Result<Vec<u8>, String> {
    let mut cur = raw.to_vec();
    for f in filters(dict) {
        cur = match f.as_slice() {
            b"FlateDecode" | b"Fl" => {
                let mut out = Vec::new();
                let r = flate2::read::ZlibDecoder::new(&cur[..])
                    .take(max as u64)
                    .read_to_end(&mut out);
                if out.is_empty() {
                    // Some writers omit the zlib header.
                    let _ = flate2::read::DeflateDecoder::new(&cur[..])
                        .take(max as u64)
                        .read_to_end(&mut out);
                }
                if let (Err(e), true) = (r, out.is_empty()) {
                    return Err(format!("FlateDecode: {e}"));
                }
                out
            }
            b"ASCIIHexDecode" | b"AHx" => {
                let end = cur.iter().position(|&b| b == b'>').unwrap_or(cur.len());
                hex_decode(&cur[..end])
            }
            b"ASCII85Decode" | b"A85" => ascii85(&cur),
            b"LZWDecode" | b"LZW" => {
                let mut dec =
                    weezl::decode::Decoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8);
                let mut out = Vec::new();
                let r = dec.into_stream(&mut out).decode(&cur[..]);
                if r.status.is_err() && out.is_empty() {
                    return Err("LZWDecode: corrupt data".into());
                }
                out.truncate(max);
                out
            }
            b"RunLengthDecode" | b"RL" => run_length(&cur, max),
            b"Crypt" => cur,
            other => {
                return Err(format!(
                    "filter {} not decoded",
                    String::from_utf8_lossy(other)
                ))
            }
        };
        if cur.len() >= max {
            cur.truncate(max);
        }
    }
    Ok(cur)
}

fn ascii85(d: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut group = [0u32; 5];
    let mut n = 0;
    let data = d.strip_prefix(b"<~").unwrap_or(d);
    for &b in data {
        match b {
            b'~' => break,
            b'z' if n == 0 => out.extend_from_slice(&[0, 0, 0, 0]),
            b'!'..=b'u' => {
                group[n] = (b - b'!') as u32;
                n += 1;
                if n == 5 {
                    let v = group
                        .iter()
                        .fold(0u32, |acc, &g| acc.wrapping_mul(85).wrapping_add(g));
                    out.extend_from_slice(&v.to_be_bytes());
                    n = 0;
                }
            }
            _ => {}
        }
    }
    if n > 1 {
        for g in group.iter_mut().skip(n) {
            *g = 84;
        }
        let v = group
            .iter()
            .fold(0u32, |acc, &g| acc.wrapping_mul(85).wrapping_add(g));
        out.extend_from_slice(&v.to_be_bytes()[..n - 1]);
    }
    out
}

fn run_length(d: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < d.len() && out.len() < max {
        let n = d[i];
        i += 1;
        match n {
            128 => break,
            0..=127 => {
                let end = (i + n as usize + 1).min(d.len());
                out.extend_from_slice(&d[i..end]);
                i = end;
            }
            _ => {
                if let Some(&b) = d.get(i) {
                    out.extend(std::iter::repeat_n(b, 257 - n as usize));
                }
                i += 1;
            }
        }
    }
    out
}

/// Text of a string or stream holding script: strings as they are, streams decoded.
fn text_of(doc: &Document, o: &Obj, max: usize) -> Option<String> {
    match doc.resolve(o) {
        Obj::Str(s) => Some(pdf_text(s)),
        Obj::Stream(d, raw) => decode_stream(d, raw, max).ok().map(|b| pdf_text(&b)),
        _ => None,
    }
}

/// PDF text strings are PDFDocEncoding or UTF-16BE with a BOM.
fn pdf_text(s: &[u8]) -> String {
    if let Some(rest) = s.strip_prefix(&[0xfe, 0xff]) {
        let u: Vec<u16> = rest
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
            .collect();
        return String::from_utf16_lossy(&u);
    }
    String::from_utf8_lossy(s).into_owned()
}

/// Keys whose escaped spelling (`/J#61vaScript`) is a known evasion.
const WATCHED: &[&[u8]] = &[
    b"JS",
    b"JavaScript",
    b"OpenAction",
    b"AA",
    b"Launch",
    b"EmbeddedFile",
    b"EmbeddedFiles",
    b"URI",
    b"SubmitForm",
    b"GoToR",
    b"GoToE",
    b"RichMedia",
    b"XFA",
    b"AcroForm",
    b"ObjStm",
    b"Encrypt",
    b"JBIG2Decode",
    b"ImportData",
    b"Names",
    b"S",
    b"Type",
    b"Filter",
    b"FlateDecode",
];

pub(crate) fn analyze(cx: &mut Context<'_>, data: &[u8], location: &str, depth: u32) {
    let mut passwords: Vec<&str> = vec![""];
    passwords.extend(cx.opts.passwords.iter().map(String::as_str));
    let doc = parse_with(data, cx.opts.limits.max_items, cx.decode_cap(), &passwords);
    let at = |n: u32| -> String {
        if location.is_empty() {
            format!("obj {n}")
        } else {
            format!("{location}/obj {n}")
        }
    };
    for p in doc.problems.iter().take(20) {
        cx.malformed(location, p.clone());
    }
    if doc.objects.is_empty() {
        cx.malformed(location, "no objects found");
    }
    if doc.trailer(b"Encrypt").is_some() {
        cx.flags.encrypted = true;
        let filter = doc
            .trailer(b"Encrypt")
            .map(|e| doc.resolve(e))
            .and_then(Obj::as_dict)
            .and_then(|d| d.name(b"Filter"))
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_else(|| "unknown".into());
        match &doc.decrypted_with {
            Some(pw) if pw.is_empty() => cx.add(
                "pdf.encrypted",
                Severity::Low,
                location,
                format!("encrypted PDF ({filter} security handler) that opens without a password; analysed after decryption"),
            ),
            Some(pw) => cx.add(
                "pdf.encrypted",
                Severity::Medium,
                location,
                format!("encrypted PDF ({filter} security handler); opened with the configured password \"{pw}\""),
            ),
            None => cx.add(
                "pdf.encrypted",
                Severity::Medium,
                location,
                format!("encrypted PDF ({filter} security handler) with an unknown password; strings and streams were not decrypted"),
            ),
        }
    }
    for (name, count) in &doc.escaped_names {
        if WATCHED.contains(&name.as_slice()) {
            cx.flags.suspicious = true;
            cx.add(
                "pdf.name_obfuscation",
                Severity::High,
                location,
                format!(
                    "/{} written with #xx escapes {count} time(s) to hide it from scanners",
                    String::from_utf8_lossy(name)
                ),
            );
        }
    }
    if doc.trailing_bytes > 0 {
        cx.add(
            "pdf.trailing_data",
            Severity::Low,
            location,
            format!("{} bytes after the last %%EOF", doc.trailing_bytes),
        );
    }
    if doc.object_streams > 0 {
        cx.add(
            "pdf.objstm",
            Severity::Info,
            location,
            format!("{} object stream(s), expanded", doc.object_streams),
        );
    }
    let mut open_action = false;
    let mut auto_js = false;
    let mut js_found = false;
    let cap = cx.decode_cap();
    for (&num, (_, obj)) in &doc.objects {
        let loc = at(num);
        for d in nested_dicts(obj) {
            if d.get(b"OpenAction").is_some() {
                open_action = true;
                cx.flags.open_action = true;
                let target = d.get(b"OpenAction").map(|o| doc.resolve(o));
                let is_dest = matches!(target, Some(Obj::Array(_)));
                cx.add(
                    "pdf.open_action",
                    if is_dest {
                        Severity::Info
                    } else {
                        Severity::Low
                    },
                    &loc,
                    if is_dest {
                        "/OpenAction shows a page when the document opens".into()
                    } else {
                        "/OpenAction runs an action when the document opens".into()
                    },
                );
                if let Some(a) = target.and_then(Obj::as_dict) {
                    if a.name(b"S") == Some(b"JavaScript") || a.get(b"JS").is_some() {
                        auto_js = true;
                    }
                }
            }
            if let Some(aa) = d.get(b"AA") {
                cx.add(
                    "pdf.additional_actions",
                    Severity::Medium,
                    &loc,
                    "/AA: actions run on page or form events".into(),
                );
                if let Some(aa) = doc.resolve(aa).as_dict() {
                    for (_, a) in &aa.0 {
                        if let Some(a) = doc.resolve(a).as_dict() {
                            if a.name(b"S") == Some(b"JavaScript") || a.get(b"JS").is_some() {
                                auto_js = true;
                            }
                        }
                    }
                }
            }
            let action = d.name(b"S");
            if let Some(js) = d.get(b"JS") {
                js_found = true;
                cx.flags.javascript = true;
                cx.flags.suspicious = true;
                let code = text_of(&doc, js, cap).unwrap_or_default();
                cx.add(
                    "pdf.javascript",
                    Severity::Medium,
                    &loc,
                    format!(
                        "JavaScript action ({} characters): {}",
                        code.len(),
                        code.chars().take(200).collect::<String>()
                    ),
                );
                cx.scripts.push(crate::Script {
                    kind: "javascript",
                    location: loc.clone(),
                    code,
                });
            } else if action == Some(b"JavaScript") {
                js_found = true;
                cx.flags.javascript = true;
                cx.flags.suspicious = true;
                cx.add(
                    "pdf.javascript",
                    Severity::Medium,
                    &loc,
                    "JavaScript action".into(),
                );
            }
            if d.get(b"JavaScript").is_some() {
                // A /Names dictionary with a /JavaScript name tree: document-level scripts.
                js_found = true;
                cx.flags.javascript = true;
                cx.flags.suspicious = true;
                cx.add(
                    "pdf.javascript",
                    Severity::Medium,
                    &loc,
                    "document-level JavaScript (/Names /JavaScript), run when the document opens"
                        .into(),
                );
                auto_js = true;
            }
            match action {
                Some(b"Launch") => {
                    cx.flags.launch = true;
                    cx.flags.suspicious = true;
                    let what = d
                        .get(b"F")
                        .or(d.get(b"Win"))
                        .map(|f| describe(&doc, f))
                        .unwrap_or_default();
                    cx.add(
                        "pdf.launch",
                        Severity::High,
                        &loc,
                        format!("/Launch action starts a program: {what}"),
                    );
                }
                Some(b"URI") => {
                    cx.flags.external_refs = true;
                    let uri = d.get(b"URI").map(|u| describe(&doc, u)).unwrap_or_default();
                    cx.add("pdf.uri", Severity::Info, &loc, format!("link to {uri}"));
                }
                Some(b"SubmitForm") => {
                    cx.flags.external_refs = true;
                    let to = d.get(b"F").map(|u| describe(&doc, u)).unwrap_or_default();
                    cx.add(
                        "pdf.submit_form",
                        Severity::Low,
                        &loc,
                        format!("form data is sent to {to}"),
                    );
                }
                Some(b"GoToR") | Some(b"GoToE") => {
                    cx.flags.external_refs = true;
                    let to = d.get(b"F").map(|u| describe(&doc, u)).unwrap_or_default();
                    cx.add(
                        "pdf.remote_goto",
                        Severity::Low,
                        &loc,
                        format!("opens another document: {to}"),
                    );
                }
                Some(b"ImportData") => {
                    cx.flags.external_refs = true;
                    cx.add(
                        "pdf.import_data",
                        Severity::Low,
                        &loc,
                        "imports form data from a file".into(),
                    );
                }
                _ => {}
            }
            if d.get(b"Launch").is_some() {
                cx.flags.launch = true;
                cx.flags.suspicious = true;
                cx.add("pdf.launch", Severity::High, &loc, "/Launch entry".into());
            }
            if d.get(b"RichMedia").is_some() || d.name(b"Subtype") == Some(b"RichMedia") {
                cx.add(
                    "pdf.richmedia",
                    Severity::Medium,
                    &loc,
                    "rich media (Flash/video) annotation".into(),
                );
            }
            if d.get(b"XFA").is_some() {
                cx.add(
                    "pdf.xfa",
                    Severity::Low,
                    &loc,
                    "XFA form (XML forms can carry scripts)".into(),
                );
            }
            if d.get(b"AcroForm").is_some() {
                cx.add(
                    "pdf.acroform",
                    Severity::Info,
                    &loc,
                    "interactive form".into(),
                );
            }
            if d.get(b"EmbeddedFiles").is_some() {
                cx.flags.embedded_files = true;
                cx.add(
                    "pdf.embedded_files",
                    Severity::Low,
                    &loc,
                    "/EmbeddedFiles name tree".into(),
                );
            }
            if d.name(b"Type") == Some(b"Filespec") {
                if let Some(ef) = d.get(b"EF").map(|e| doc.resolve(e)).and_then(Obj::as_dict) {
                    cx.flags.embedded_files = true;
                    let name = d
                        .get(b"UF")
                        .or(d.get(b"F"))
                        .map(|f| describe(&doc, f))
                        .unwrap_or_else(|| "unnamed".into());
                    let dangerous = crate::report::is_dangerous_name(&name);
                    cx.add(
                        "pdf.embedded_file",
                        if dangerous {
                            Severity::High
                        } else {
                            Severity::Low
                        },
                        &loc,
                        if dangerous {
                            format!("embedded file {name}, a file Windows runs when opened")
                        } else {
                            format!("embedded file {name}")
                        },
                    );
                    for (_, f) in &ef.0 {
                        if let Obj::Stream(sd, raw) = doc.resolve(f) {
                            if let Ok(bytes) = decode_stream(sd, raw, cx.decode_cap()) {
                                if cx.charge(bytes.len(), &loc) {
                                    cx.analyze(&bytes, &format!("{loc}/{name}"), depth + 1);
                                }
                            }
                        }
                    }
                }
            }
            if d.name(b"Type") == Some(b"EmbeddedFile") {
                cx.flags.embedded_files = true;
            }
        }
    }
    let _ = open_action;
    if js_found && auto_js {
        cx.add(
            "pdf.auto_javascript",
            Severity::High,
            location,
            "JavaScript runs by itself when the document opens".into(),
        );
    }
}

/// Every dictionary in an object, nested ones included (a catalog's inline /Names, an
/// annotation's inline /A action).
fn nested_dicts(o: &Obj) -> Vec<&Dict> {
    let mut out = Vec::new();
    let mut stack = vec![(o, 0usize)];
    while let Some((o, depth)) = stack.pop() {
        if depth > MAX_NESTING || out.len() > 10_000 {
            break;
        }
        match o {
            Obj::Dict(d) | Obj::Stream(d, _) => {
                out.push(d);
                stack.extend(d.0.iter().map(|(_, v)| (v, depth + 1)));
            }
            Obj::Array(a) => stack.extend(a.iter().map(|v| (v, depth + 1))),
            _ => {}
        }
    }
    out
}

/// A short, printable rendering of a value for an indicator.
fn describe(doc: &Document, o: &Obj) -> String {
    let s = match doc.resolve(o) {
        Obj::Str(s) => pdf_text(s),
        Obj::Name(n) => String::from_utf8_lossy(n).into_owned(),
        Obj::Dict(d) => {
            let mut parts = Vec::new();
            for k in [&b"F"[..], b"UF", b"P", b"Parameters"] {
                if let Some(v) = d.get(k) {
                    parts.push(describe(doc, v));
                }
            }
            parts.join(" ")
        }
        _ => String::new(),
    };
    s.chars().take(300).collect()
}

/// Serialises a document as a new PDF with a fresh cross-reference table. Object streams
/// are written out as plain objects, so nothing stays hidden in compressed containers.
pub fn write(doc: &Document) -> Vec<u8> {
    let mut out = Vec::new();
    let version = if doc.version.len() == 3 {
        doc.version.as_str()
    } else {
        "1.7"
    };
    out.extend_from_slice(format!("%PDF-{version}\n%\u{e2}\u{e3}\u{cf}\u{d3}\n").as_bytes());
    // (number, offset, generation) of each object written, in number order.
    let mut written: Vec<(u32, usize, u16)> = Vec::with_capacity(doc.objects.len());
    for (&num, (gen, obj)) in &doc.objects {
        if let Obj::Stream(d, _) = obj {
            if matches!(d.name(b"Type"), Some(b"ObjStm") | Some(b"XRef")) {
                continue;
            }
        }
        if num == 0 {
            continue;
        }
        written.push((num, out.len(), *gen));
        out.extend_from_slice(format!("{num} {gen} obj\n").as_bytes());
        write_obj(&mut out, obj);
        out.extend_from_slice(b"\nendobj\n");
    }
    // Subsections of consecutive numbers: object numbers may be sparse (or huge), and the
    // table lists only what exists.
    let xref = out.len();
    out.extend_from_slice(b"xref\n0 1\n0000000000 65535 f \n");
    let mut i = 0;
    while i < written.len() {
        let mut j = i + 1;
        while j < written.len() && written[j].0 == written[j - 1].0 + 1 {
            j += 1;
        }
        out.extend_from_slice(format!("{} {}\n", written[i].0, j - i).as_bytes());
        for (_, off, gen) in &written[i..j] {
            out.extend_from_slice(format!("{off:010} {gen:05} n \n").as_bytes());
        }
        i = j;
    }
    let mut trailer = Dict::default();
    // One more than the highest object number written (object and xref streams are not).
    let size = written.last().map_or(1, |(n, _, _)| u64::from(*n) + 1);
    trailer
        .0
        .push((b"Size".to_vec(), Obj::Num(size.to_string())));
    for key in [&b"Root"[..], b"Info", b"ID", b"Encrypt"] {
        if key == b"Encrypt" && doc.decrypted_with.is_some() {
            continue;
        }
        if let Some(v) = doc.trailer(key) {
            trailer.0.push((key.to_vec(), v.clone()));
        }
    }
    out.extend_from_slice(b"trailer\n");
    write_obj(&mut out, &Obj::Dict(trailer));
    out.extend_from_slice(format!("\nstartxref\n{xref}\n%%EOF\n").as_bytes());
    out
}

fn write_name(out: &mut Vec<u8>, n: &[u8]) {
    out.push(b'/');
    for &b in n {
        if b.is_ascii_graphic() && !is_delim(b) && b != b'#' {
            out.push(b);
        } else {
            out.extend_from_slice(format!("#{b:02X}").as_bytes());
        }
    }
}

fn write_obj(out: &mut Vec<u8>, o: &Obj) {
    match o {
        Obj::Null => out.extend_from_slice(b"null"),
        Obj::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        Obj::Num(n) => out.extend_from_slice(n.as_bytes()),
        Obj::Name(n) => write_name(out, n),
        Obj::Str(s) => {
            out.push(b'<');
            for b in s {
                out.extend_from_slice(format!("{b:02X}").as_bytes());
            }
            out.push(b'>');
        }
        Obj::Array(a) => {
            out.push(b'[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b' ');
                }
                write_obj(out, v);
            }
            out.push(b']');
        }
        Obj::Dict(d) => write_dict(out, d),
        Obj::Ref(n, g) => out.extend_from_slice(format!("{n} {g} R").as_bytes()),
        Obj::Stream(d, raw) => {
            let mut d = d.clone();
            d.remove(b"Length");
            d.0.push((b"Length".to_vec(), Obj::Num(raw.len().to_string())));
            write_dict(out, &d);
            out.extend_from_slice(b"\nstream\n");
            out.extend_from_slice(raw);
            out.extend_from_slice(b"\nendstream");
        }
    }
}

fn write_dict(out: &mut Vec<u8>, d: &Dict) {
    out.extend_from_slice(b"<<");
    for (k, v) in &d.0 {
        write_name(out, k);
        out.push(b' ');
        write_obj(out, v);
        out.push(b' ');
    }
    out.extend_from_slice(b">>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexer_values() {
        let src = b"1 0 obj << /Type /Catalog /J#61vaScript 2 0 R /Arr [1 2.5 (a\\(b\\)) <41 42>] >> endobj";
        let doc = parse(src, 100, 1 << 20);
        let d = doc.get(1).and_then(Obj::as_dict).expect("dict");
        assert_eq!(d.get(b"JavaScript"), Some(&Obj::Ref(2, 0)));
        assert_eq!(
            d.get(b"Arr"),
            Some(&Obj::Array(vec![
                Obj::Num("1".into()),
                Obj::Num("2.5".into()),
                Obj::Str(b"a(b)".to_vec()),
                Obj::Str(b"AB".to_vec())
            ]))
        );
        assert_eq!(doc.escaped_names.get(b"JavaScript".as_slice()), Some(&1));
    }

    #[test]
    fn filters_decode() {
        assert_eq!(ascii85(b"87cURD]i,\"Ebo80~>"), b"Hello World!");
        assert_eq!(
            run_length(&[2, b'a', b'b', b'c', 254, b'x', 128], 100),
            b"abcxxx"
        );
    }

    #[test]
    fn deep_nesting_is_bounded() {
        let mut src = b"1 0 obj ".to_vec();
        src.extend(std::iter::repeat_n(b'[', 100_000));
        let doc = parse(&src, 100, 1 << 20);
        assert!(doc.objects.len() <= 1);
    }
}
