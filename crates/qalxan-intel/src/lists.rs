//! CSV and plain lists of indicators.
//!
//! Plain lists are what most public feeds publish: one value per line, `#` comments; the kind
//! of each value is guessed. CSV has a header naming its columns: `type` and `value` are
//! required, `tlp`, `confidence`, `source`, `tags` (separated by `;`), `description` and
//! `valid_until` (RFC 3339) are optional. Quoting follows RFC 4180.

use crate::observable::{Kind, Observable};
use crate::{FormatError, Import, Indicator, MAX_OBJECTS};
use qalxan_core::Tlp;

/// Splits one CSV record (RFC 4180 quoting; records do not span lines here).
fn csv_fields(line: &str, at: &str) -> Result<Vec<String>, FormatError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if field_start => {
                quoted = true;
                field_start = false;
            }
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            }
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                field_start = true;
            }
            c => {
                cur.push(c);
                field_start = false;
            }
        }
    }
    if quoted {
        return Err(FormatError::new(at, "unterminated quoted field"));
    }
    out.push(cur);
    Ok(out)
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace(['\n', '\r'], " "))
    } else {
        s.to_owned()
    }
}

/// Reads CSV (when the first line is a header with `type` and `value`) or a plain list.
pub fn import_text(text: &str, source: &str, default_tlp: Tlp) -> Result<Import, FormatError> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim();
        !t.is_empty() && !t.starts_with('#')
    });
    let Some((_, first)) = lines.clone().next() else {
        return Ok(Import::default());
    };
    let header = csv_fields(first, "line 1")?;
    let lower: Vec<String> = header
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| lower.iter().position(|h| h == name);
    let mut out = Import::default();
    if let (Some(type_col), Some(value_col)) = (col("type"), col("value")) {
        lines.next();
        for (n, line) in lines {
            let at = format!("line {}", n + 1);
            if out.indicators.len() >= MAX_OBJECTS {
                return Err(FormatError::new(
                    at,
                    format!("more than {MAX_OBJECTS} indicators"),
                ));
            }
            let f = csv_fields(line, &at)?;
            let get = |c: Option<usize>| {
                c.and_then(|c| f.get(c))
                    .map(|s| s.trim())
                    .filter(|s| !s.is_empty())
            };
            let kind: Kind = get(Some(type_col)).unwrap_or_default().parse().map_err(
                |e: crate::ObservableError| {
                    FormatError::new(format!("{at}, column type"), e.reason)
                },
            )?;
            let value = get(Some(value_col))
                .ok_or_else(|| FormatError::new(format!("{at}, column value"), "empty"))?;
            let ob = Observable::new(kind, value)
                .map_err(|e| FormatError::new(format!("{at}, column value"), e.to_string()))?;
            let mut ind = Indicator::new(ob, get(col("source")).unwrap_or(source));
            ind.tlp = match get(col("tlp")) {
                Some(t) => Tlp::parse_lenient(t)
                    .map_err(|e| FormatError::new(format!("{at}, column tlp"), e.to_string()))?,
                None => default_tlp,
            };
            if let Some(c) = get(col("confidence")) {
                ind.confidence = c.parse::<u8>().ok().filter(|c| *c <= 100).ok_or_else(|| {
                    FormatError::new(
                        format!("{at}, column confidence"),
                        format!("'{c}' is not 0 to 100"),
                    )
                })?;
            }
            if let Some(t) = get(col("tags")) {
                ind.tags = t
                    .split(';')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect();
            }
            if let Some(d) = get(col("description")) {
                ind.description = d.to_owned();
            }
            if let Some(v) = get(col("valid_until")) {
                ind.valid_until = Some(qalxan_core::parse_rfc3339(v).map_err(|e| {
                    FormatError::new(format!("{at}, column valid_until"), e.to_string())
                })?);
            }
            out.indicators.push(ind);
        }
        return Ok(out);
    }
    let lines: Vec<(usize, &str)> = lines.take(MAX_OBJECTS + 1).collect();
    if lines.len() > MAX_OBJECTS {
        let n = lines.get(MAX_OBJECTS).map_or(0, |(n, _)| *n);
        return Err(FormatError::new(
            format!("line {}", n + 1),
            format!("more than {MAX_OBJECTS} values"),
        ));
    }
    // Plain lists are the big feeds (millions of hashes): their lines are read on every core,
    // in chunks whose results are joined in the file's order.
    use rayon::prelude::*;
    let parts: Vec<(Vec<Indicator>, Vec<String>)> = lines
        .par_chunks(16 * 1024)
        .map(|chunk| {
            let mut indicators = Vec::with_capacity(chunk.len());
            let mut skipped = Vec::new();
            for (n, line) in chunk {
                // Feeds often add a comment after the value.
                let value = line.split(['#', '\t']).next().unwrap_or_default().trim();
                let value = value.split(' ').next().unwrap_or_default();
                match Observable::guess(value) {
                    Ok(ob) => {
                        let mut ind = Indicator::new(ob, source);
                        ind.tlp = default_tlp;
                        indicators.push(ind);
                    }
                    Err(e) => skipped.push(format!("line {}: {e}", n + 1)),
                }
            }
            (indicators, skipped)
        })
        .collect();
    out.indicators.reserve(lines.len());
    for (indicators, skipped) in parts {
        out.indicators.extend(indicators);
        out.skipped.extend(skipped);
    }
    Ok(out)
}

/// Indicators as CSV with the columns `import_text` reads.
pub fn export_csv(indicators: &[Indicator]) -> String {
    let mut out = String::from("type,value,tlp,confidence,source,tags,description,valid_until\n");
    for i in indicators {
        let until = i
            .valid_until
            .map(qalxan_core::format_rfc3339)
            .unwrap_or_default();
        out.push_str(
            &[
                i.kind.as_str().to_owned(),
                csv_quote(&i.value),
                i.tlp.as_str().to_owned(),
                i.confidence.to_string(),
                csv_quote(&i.source),
                csv_quote(&i.tags.join(";")),
                csv_quote(&i.description),
                until,
            ]
            .join(","),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_and_errors() {
        let csv = "type,value,tlp,tags,description\n\
                   domain,Evil.Example,green,phishing;bank,\"Fake bank, login page\"\n\
                   phone,+994 12 555 12 34,red,,\"He said \"\"call me\"\"\"\n";
        let imp = import_text(csv, "file", Tlp::Amber).unwrap();
        assert_eq!(imp.indicators.len(), 2);
        assert_eq!(imp.indicators[0].value, "evil.example");
        assert_eq!(imp.indicators[0].tags, vec!["phishing", "bank"]);
        assert_eq!(imp.indicators[0].description, "Fake bank, login page");
        assert_eq!(imp.indicators[1].tlp, Tlp::Red);
        assert_eq!(imp.indicators[1].description, "He said \"call me\"");
        let again = import_text(&export_csv(&imp.indicators), "x", Tlp::Clear).unwrap();
        assert_eq!(again.indicators, imp.indicators);
        let e = import_text("type,value\nmd5,abc\n", "f", Tlp::Amber).unwrap_err();
        assert_eq!(e.location, "line 2, column value");
    }

    #[test]
    fn plain_lists_guess_kinds() {
        let imp = import_text(
            "# feed\n203.0.113.9\nevil[.]example # c2\nnot a value\n",
            "feed",
            Tlp::Clear,
        )
        .unwrap();
        let kinds: Vec<_> = imp.indicators.iter().map(|i| i.kind).collect();
        assert_eq!(kinds, vec![Kind::Ipv4, Kind::Domain]);
        assert_eq!(imp.skipped.len(), 1);
    }
}
