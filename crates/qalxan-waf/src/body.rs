//! Request data into arguments, as ModSecurity's processors do: URL-encoded pairs (query string
//! and form bodies), cookies, multipart/form-data with the `MULTIPART_*` anomaly flags CRS
//! checks, JSON flattened into `json.a.b` names, and XML text. Every parser is bounded: by the
//! caller's body limit, by an argument count, and for JSON and XML by nesting depth.
//!
//! Hand-written where ModSecurity's exact behaviour matters (names, flags, what counts as an
//! error) and no crate reproduces it; JSON and XML use serde_json and quick-xml underneath.

use crate::transform::Transformation;

/// Name/value pairs as they were sent, in order.
pub type Pairs = Vec<(String, Vec<u8>)>;

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// An empty name and value buffer: one of `spare` (buffers an earlier request or match left)
/// when there is one.
pub(crate) fn take_pair(spare: &mut Pairs) -> (String, Vec<u8>) {
    let (mut name, mut value) = spare.pop().unwrap_or_default();
    name.clear();
    value.clear();
    (name, value)
}

/// A pair of `name` and `value` in buffers from `spare`.
fn pair_in(spare: &mut Pairs, name: &[u8], value: &[u8]) -> (String, Vec<u8>) {
    let (mut k, mut v) = take_pair(spare);
    k.push_str(&String::from_utf8_lossy(name));
    v.extend_from_slice(value);
    (k, v)
}

/// Splits `a=1&b=2` into decoded pairs (`+` is a space, invalid `%` escapes stay); returns
/// whether an escape was invalid (ModSecurity's URLENCODED_ERROR). The pairs take their
/// buffers from `spare` while it has some.
pub fn parse_urlencoded(
    data: &[u8],
    separator: u8,
    limit: usize,
    out: &mut Pairs,
    spare: &mut Pairs,
) -> bool {
    let mut invalid = false;
    for pair in data.split(|&b| b == separator) {
        if pair.is_empty() {
            continue;
        }
        if out.len() >= limit {
            break;
        }
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &pair[pair.len()..]),
        };
        invalid |= !valid_escapes(name) || !valid_escapes(value);
        let decode = |b| Transformation::UrlDecode.apply(b);
        out.push(pair_in(spare, &decode(name), &decode(value)));
    }
    invalid
}

fn valid_escapes(b: &[u8]) -> bool {
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if i + 2 >= b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

/// Version 0 cookies: `a=1; b=2`, names and values as sent (in buffers from `spare`).
pub fn parse_cookies(header: &[u8], out: &mut Pairs, spare: &mut Pairs) {
    for part in header.split(|&b| b == b';') {
        let part = trim(part);
        if part.is_empty() {
            continue;
        }
        match part.iter().position(|&b| b == b'=') {
            Some(i) => out.push(pair_in(spare, &part[..i], &part[i + 1..])),
            None => out.push(pair_in(spare, part, b"")),
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// What a multipart body held, and what was wrong with it.
#[derive(Debug, Default)]
pub struct Multipart {
    pub args: Pairs,
    /// Field name to file name.
    pub files: Pairs,
    pub file_sizes: Vec<(String, usize)>,
    /// Field name to each of its part's header lines.
    pub part_headers: Pairs,
    pub error: Option<String>,
    pub boundary_quoted: bool,
    pub boundary_whitespace: bool,
    pub data_before: bool,
    pub data_after: bool,
    pub header_folding: bool,
    pub lf_line: bool,
    pub crlf_lf_lines: bool,
    pub missing_semicolon: bool,
    pub invalid_quoting: bool,
    pub invalid_part: bool,
    pub invalid_header_folding: bool,
    pub unmatched_boundary: bool,
    pub file_limit_exceeded: bool,
}

impl Multipart {
    /// ModSecurity's MULTIPART_STRICT_ERROR: any of the anomalies.
    pub fn strict_error(&self) -> bool {
        self.error.is_some()
            || self.boundary_quoted
            || self.boundary_whitespace
            || self.data_before
            || self.data_after
            || self.header_folding
            || self.lf_line
            || self.missing_semicolon
            || self.invalid_quoting
            || self.invalid_part
            || self.invalid_header_folding
            || self.file_limit_exceeded
    }
}

/// The boundary from a `multipart/form-data; boundary=...` content type, with its flags.
fn boundary(content_type: &str, m: &mut Multipart) -> Option<Vec<u8>> {
    let lower = content_type.to_ascii_lowercase();
    let at = lower.find("boundary")?;
    let rest = &content_type[at + "boundary".len()..];
    let after_ws = rest.trim_start();
    if after_ws.len() != rest.len() {
        m.boundary_whitespace = true;
    }
    let value = after_ws.strip_prefix('=')?;
    if value.starts_with([' ', '\t']) {
        m.boundary_whitespace = true;
    }
    let value = value.trim_start();
    let value = if let Some(q) = value.strip_prefix('"') {
        m.boundary_quoted = true;
        q.split('"').next().unwrap_or_default()
    } else {
        value.split(';').next().unwrap_or_default().trim_end()
    };
    if value.is_empty() || value.len() > 70 {
        return None;
    }
    if value.contains([' ', '\t']) {
        m.boundary_whitespace = true;
    }
    Some(value.as_bytes().to_vec())
}

/// Parses the Content-Disposition of a part: `form-data; name="a"; filename="b"`.
fn disposition(value: &[u8], m: &mut Multipart) -> Option<(String, Option<String>)> {
    let text = lossy(value);
    let text = text.trim_start();
    if text.len() < 9 || !text[..9].eq_ignore_ascii_case("form-data") {
        m.invalid_part = true;
        return None;
    }
    let after = text[9..].trim_start();
    let rest = match after.strip_prefix(';') {
        Some(rest) => rest,
        None => {
            if !after.is_empty() {
                m.missing_semicolon = true;
            }
            after
        }
    };
    let mut name = None;
    let mut filename = None;
    let mut s = rest.trim_start();
    while !s.is_empty() {
        let Some(eq) = s.find('=') else {
            m.invalid_part = true;
            break;
        };
        let key = s[..eq].trim().to_ascii_lowercase();
        let mut v = s[eq + 1..].trim_start();
        let value;
        if let Some(q) = v.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            if n == '"' || n == '\\' {
                                out.push(n);
                            } else {
                                out.push('\\');
                                out.push(n);
                            }
                        }
                    }
                    '"' => {
                        end = Some(i);
                        break;
                    }
                    _ => out.push(c),
                }
            }
            let Some(end) = end else {
                m.invalid_quoting = true;
                break;
            };
            value = out;
            v = &q[end + 1..];
        } else {
            if v.starts_with('\'') {
                m.invalid_quoting = true;
            }
            let end = v.find(';').unwrap_or(v.len());
            value = v[..end].trim_end().to_owned();
            v = &v[end..];
        }
        match key.as_str() {
            "name" => name = Some(value),
            "filename" | "filename*" => filename = Some(value),
            _ => m.invalid_part = true,
        }
        let v = v.trim_start();
        if v.is_empty() {
            break;
        }
        match v.strip_prefix(';') {
            Some(next) => s = next.trim_start(),
            None => {
                m.missing_semicolon = true;
                s = v;
            }
        }
    }
    Some((name?, filename))
}

/// Parses a multipart/form-data body into fields, files and anomaly flags.
pub fn parse_multipart(content_type: &str, body: &[u8], limit: usize) -> Multipart {
    let mut m = Multipart::default();
    let Some(boundary) = boundary(content_type, &mut m) else {
        m.error = Some("Multipart: Invalid boundary in C-T (missing or too long).".into());
        return m;
    };
    let mut delimiter = b"--".to_vec();
    delimiter.extend_from_slice(&boundary);

    // Lines with their terminators, so LF-only lines can be flagged.
    let mut lines: Vec<(&[u8], bool)> = Vec::new(); // (content, ended with CRLF)
    let mut start = 0;
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            let crlf = i > start && body[i - 1] == b'\r';
            let end = if crlf { i - 1 } else { i };
            lines.push((&body[start..end], crlf));
            start = i + 1;
        }
    }
    if start < body.len() {
        lines.push((&body[start..], true));
    }
    let (mut crlf_seen, mut lf_seen) = (false, false);

    #[derive(PartialEq)]
    enum State {
        Preamble,
        Headers,
        Data,
        Done,
    }
    let mut state = State::Preamble;
    let mut name: Option<String> = None;
    let mut filename: Option<String> = None;
    let mut data: Vec<u8> = Vec::new();
    let mut part_headers: Vec<Vec<u8>> = Vec::new();
    let mut last_header: Option<usize> = None;
    let mut files = 0usize;

    let finish_part = |m: &mut Multipart,
                       name: &mut Option<String>,
                       filename: &mut Option<String>,
                       data: &mut Vec<u8>,
                       headers: &mut Vec<Vec<u8>>| {
        if let Some(n) = name.take() {
            for h in headers.drain(..) {
                m.part_headers.push((n.clone(), h));
            }
            match filename.take() {
                Some(f) => {
                    m.file_sizes.push((n.clone(), data.len()));
                    m.files.push((n, f.into_bytes()));
                }
                None => {
                    if m.args.len() < limit {
                        m.args.push((n, std::mem::take(data)));
                    }
                }
            }
        } else if !headers.is_empty() {
            m.invalid_part = true;
        }
        headers.clear();
        data.clear();
    };

    for (line, crlf) in lines {
        let is_delimiter = line.starts_with(&delimiter);
        let rest = if is_delimiter {
            &line[delimiter.len()..]
        } else {
            &[][..]
        };
        let closing = is_delimiter && rest.starts_with(b"--");
        let boundary_line = is_delimiter && (closing || trim(rest).is_empty());
        if state != State::Done {
            if crlf {
                crlf_seen = true;
            } else {
                lf_seen = true;
            }
        }
        if boundary_line {
            if state == State::Data || state == State::Headers {
                if state == State::Headers {
                    m.invalid_part = true;
                }
                // The CRLF before a delimiter belongs to the delimiter.
                if data.ends_with(b"\r\n") {
                    data.truncate(data.len() - 2);
                } else if data.ends_with(b"\n") {
                    data.truncate(data.len() - 1);
                }
                finish_part(
                    &mut m,
                    &mut name,
                    &mut filename,
                    &mut data,
                    &mut part_headers,
                );
            }
            if state == State::Done {
                m.data_after = true;
                continue;
            }
            state = if closing { State::Done } else { State::Headers };
            last_header = None;
            continue;
        }
        match state {
            State::Preamble => {
                if !line.is_empty() {
                    m.data_before = true;
                }
            }
            State::Headers => {
                if line.is_empty() {
                    state = State::Data;
                    continue;
                }
                if line[0] == b' ' || line[0] == b'\t' {
                    m.header_folding = true;
                    match last_header {
                        Some(i) => {
                            part_headers[i].extend_from_slice(trim(line));
                        }
                        None => m.invalid_header_folding = true,
                    }
                    continue;
                }
                let Some(colon) = line.iter().position(|&b| b == b':') else {
                    m.invalid_part = true;
                    continue;
                };
                let header_name = lossy(trim(&line[..colon])).to_ascii_lowercase();
                let value = trim(&line[colon + 1..]);
                part_headers.push(line.to_vec());
                last_header = Some(part_headers.len() - 1);
                if header_name == "content-disposition" {
                    match disposition(value, &mut m) {
                        Some((n, f)) => {
                            if f.is_some() {
                                files += 1;
                                if files > 100 {
                                    m.file_limit_exceeded = true;
                                }
                            }
                            name = Some(n);
                            filename = f;
                        }
                        None => m.invalid_part = true,
                    }
                }
            }
            State::Data => {
                if line.starts_with(b"--") && !is_delimiter && !line.is_empty() {
                    m.unmatched_boundary |= line.len() > 2 && line.len() <= delimiter.len() + 4;
                }
                data.extend_from_slice(line);
                data.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
            }
            State::Done => {
                if !line.is_empty() {
                    m.data_after = true;
                }
            }
        }
    }
    m.lf_line = lf_seen && !crlf_seen;
    m.crlf_lf_lines = lf_seen && crlf_seen;
    if state != State::Done {
        if state != State::Preamble {
            finish_part(
                &mut m,
                &mut name,
                &mut filename,
                &mut data,
                &mut part_headers,
            );
        }
        m.error = Some("Multipart: Final boundary missing.".into());
    }
    m
}

/// JSON flattened into arguments: `{"a":{"b":[1,"x"]}}` gives `json.a.b.0=1`, `json.a.b.1=x`.
pub fn parse_json(
    body: &[u8],
    depth_limit: usize,
    limit: usize,
    out: &mut Pairs,
) -> Result<(), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("JSON parsing error: {e}"))?;
    fn walk(
        v: &serde_json::Value,
        name: &mut String,
        depth: usize,
        max: usize,
        limit: usize,
        out: &mut Pairs,
    ) -> Result<(), String> {
        if depth > max {
            return Err(format!("JSON is nested deeper than {max}"));
        }
        if out.len() >= limit {
            return Ok(());
        }
        match v {
            serde_json::Value::Object(map) => {
                for (k, child) in map {
                    let len = name.len();
                    name.push('.');
                    name.push_str(k);
                    walk(child, name, depth + 1, max, limit, out)?;
                    name.truncate(len);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = name.len();
                    name.push('.');
                    name.push_str(&i.to_string());
                    walk(child, name, depth + 1, max, limit, out)?;
                    name.truncate(len);
                }
            }
            serde_json::Value::String(s) => out.push((name.clone(), s.as_bytes().to_vec())),
            serde_json::Value::Null => out.push((name.clone(), Vec::new())),
            other => out.push((name.clone(), other.to_string().into_bytes())),
        }
        Ok(())
    }
    let mut name = String::from("json");
    walk(&value, &mut name, 0, depth_limit, limit, out)
}

/// The text of an XML document (what `XML:/*` yields), and its attribute values.
pub fn parse_xml(body: &[u8], depth_limit: usize) -> Result<(Vec<u8>, Vec<Vec<u8>>), String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(body);
    let mut text = Vec::new();
    let mut attributes = Vec::new();
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut buf = Vec::new();
    loop {
        match reader.read_event_into(&mut buf) {
            Ok(Event::Start(e)) => {
                depth += 1;
                seen_root = true;
                if depth > depth_limit {
                    return Err(format!("XML is nested deeper than {depth_limit}"));
                }
                for a in e.attributes().flatten() {
                    attributes.push(a.value.into_owned());
                }
            }
            Ok(Event::Empty(e)) => {
                seen_root = true;
                for a in e.attributes().flatten() {
                    attributes.push(a.value.into_owned());
                }
            }
            Ok(Event::End(_)) => depth = depth.saturating_sub(1),
            Ok(Event::Text(t)) => {
                if depth > 0 {
                    let raw = t.into_inner();
                    text.extend_from_slice(&Transformation::HtmlEntityDecode.apply(&raw));
                }
            }
            Ok(Event::CData(c)) => text.extend_from_slice(&c.into_inner()),
            Ok(Event::Eof) => break,
            Ok(_) => {}
            Err(e) => return Err(format!("XML parsing error: {e}")),
        }
        buf.clear();
    }
    if !seen_root {
        return Err("XML parsing error: no root element".into());
    }
    if depth != 0 {
        return Err("XML parsing error: unclosed element".into());
    }
    Ok((text, attributes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlencoded_pairs() {
        let mut out = Pairs::new();
        // Spare buffers hold what an earlier request left: none of it shows.
        let mut spare = vec![("old".to_owned(), b"stale".to_vec())];
        let invalid = parse_urlencoded(b"a=1&b=x+y%21&&c&d=%zz", b'&', 100, &mut out, &mut spare);
        assert!(spare.is_empty());
        assert!(invalid);
        let got: Vec<_> = out
            .iter()
            .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "1".into()),
                ("b", "x y!".into()),
                ("c", "".into()),
                ("d", "%zz".into())
            ]
        );
    }

    #[test]
    fn cookies() {
        let mut out = Pairs::new();
        parse_cookies(
            b"a=1; b = 2;c",
            &mut out,
            &mut vec![("x".into(), b"y".to_vec())],
        );
        assert_eq!(
            out,
            [
                ("a".into(), b"1".to_vec()),
                ("b ".into(), b" 2".to_vec()),
                ("c".into(), vec![])
            ]
        );
    }

    #[test]
    fn multipart_fields_files_and_flags() {
        let body = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nhello\r\n--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"x.php\"\r\nContent-Type: text/plain\r\n\r\n<?php\r\n--XyZ--\r\n";
        let m = parse_multipart("multipart/form-data; boundary=XyZ", body, 100);
        assert_eq!(m.args, [("a".into(), b"hello".to_vec())]);
        assert_eq!(m.files, [("f".into(), b"x.php".to_vec())]);
        assert_eq!(m.file_sizes, [("f".into(), 5)]);
        assert!(!m.strict_error(), "{m:?}");

        let m = parse_multipart(
            "multipart/form-data; boundary=\"XyZ\"",
            b"junk\r\n--XyZ\r\nContent-Disposition: form-data; name=a\r\n\r\nv\r\n",
            100,
        );
        assert!(m.boundary_quoted && m.data_before && m.error.is_some() && m.strict_error());

        let m = parse_multipart(
            "multipart/form-data; boundary=XyZ",
            b"--XyZ\nContent-Disposition: form-data name=\"a\"\n\nv\n--XyZ--\n",
            100,
        );
        assert!(m.lf_line && m.missing_semicolon, "{m:?}");
    }

    #[test]
    fn json_flattens() {
        let mut out = Pairs::new();
        parse_json(br#"{"a":{"b":[1,"x"]},"c":null}"#, 10, 100, &mut out).unwrap();
        let names: Vec<_> = out.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["json.a.b.0", "json.a.b.1", "json.c"]);
        assert!(parse_json(b"{", 10, 100, &mut out).is_err());
        assert!(parse_json(br#"[[[[1]]]]"#, 2, 100, &mut out).is_err());
    }

    #[test]
    fn xml_text() {
        let (text, attrs) = parse_xml(
            br#"<a x="1"><b>hi &amp; </b><c><![CDATA[<x>]]></c></a>"#,
            10,
        )
        .unwrap();
        assert_eq!(text, b"hi & <x>");
        assert_eq!(attrs, [b"1".to_vec()]);
        assert!(parse_xml(b"<a><b></a>", 10).is_err());
    }
}
