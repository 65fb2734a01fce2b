//! From file text to directives' words, the way Apache's configuration reader (which
//! ModSecurity v2, the engine CRS 3.3 is tested on, relies on) splits them:
//!
//! - a line ending in `\` continues on the next one (the backslash and line break go, the next
//!   line's indentation stays);
//! - blank lines and lines starting with `#` are skipped;
//! - words are separated by whitespace; a word may be quoted with `"` or `'`, and inside a word
//!   `\\` stands for `\` and `\"` (or `\'` in single quotes) for the quote: every other backslash
//!   is kept, so regular expressions survive as written.
//!
//! Written by hand because no crate reads Apache configuration syntax; every position is kept so
//! errors can name the file, line and column.

/// One directive's text with continuation lines joined, and where each piece came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalLine {
    pub text: String,
    /// `(offset in text, line, column)` at the start of each physical line's piece.
    segments: Vec<(usize, u32, u32)>,
}

impl LogicalLine {
    /// The 1-based line and column in the file of byte `offset` of [`LogicalLine::text`].
    pub fn position(&self, offset: usize) -> (u32, u32) {
        let (start, line, column) = self
            .segments
            .iter()
            .rev()
            .find(|(start, _, _)| *start <= offset)
            .copied()
            .unwrap_or((0, 1, 1));
        let chars = self
            .text
            .get(start..offset)
            .map_or(0, |s| s.chars().count());
        (line, column + chars as u32)
    }
}

/// Splits a configuration file into logical lines, skipping blanks and comments.
pub fn logical_lines(source: &str) -> Vec<LogicalLine> {
    let mut out = Vec::new();
    let mut current: Option<LogicalLine> = None;
    for (index, raw) in source.split('\n').enumerate() {
        let line_no = index as u32 + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if current.is_none() {
            let trimmed = line.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
        }
        let logical = current.get_or_insert_with(|| LogicalLine {
            text: String::new(),
            segments: Vec::new(),
        });
        let body = line.trim_end();
        logical.segments.push((logical.text.len(), line_no, 1));
        match body.strip_suffix('\\') {
            Some(continued) => logical.text.push_str(continued),
            None => {
                logical.text.push_str(body);
                out.extend(current.take());
            }
        }
    }
    // A continuation on the last line of a file ends the directive there.
    out.extend(current.take());
    out
}

/// A word of a directive: its text with quotes and escapes resolved, and where it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    /// Byte offset in the logical line of the word's first character (inside its quotes).
    pub offset: usize,
}

/// Splits a logical line into words; an unterminated quote is an error at its offset.
pub fn words(line: &str) -> Result<Vec<Word>, (usize, String)> {
    let bytes = line.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let quote = match bytes[i] {
            q @ (b'"' | b'\'') => Some(q),
            _ => None,
        };
        let start = if quote.is_some() { i + 1 } else { i };
        let mut j = start;
        let mut text = Vec::new();
        loop {
            match (bytes.get(j), quote) {
                (None, Some(q)) => {
                    return Err((i, format!("missing closing {} quote", q as char)));
                }
                (None, None) => break,
                (Some(&c), Some(q)) if c == q => {
                    j += 1;
                    break;
                }
                (Some(c), None) if c.is_ascii_whitespace() => break,
                (Some(b'\\'), q) => match bytes.get(j + 1) {
                    Some(&n) if n == b'\\' || Some(n) == q => {
                        text.push(n);
                        j += 2;
                    }
                    _ => {
                        text.push(b'\\');
                        j += 1;
                    }
                },
                (Some(&c), _) => {
                    text.push(c);
                    j += 1;
                }
            }
        }
        out.push(Word {
            // Only ASCII bytes were removed or replaced, so the text is still UTF-8.
            text: String::from_utf8_lossy(&text).into_owned(),
            offset: start,
        });
        i = j;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continuation_lines_join_and_keep_positions() {
        let src =
            "# comment\n\nSecRule ARGS \"@rx a\" \\\n    \"id:1,\\\n    deny\"\nSecMarker END\r\n";
        let lines = logical_lines(src);
        assert_eq!(lines.len(), 2);
        assert_eq!(
            lines[0].text,
            "SecRule ARGS \"@rx a\"     \"id:1,    deny\""
        );
        assert_eq!(lines[0].position(0), (3, 1));
        let deny = lines[0].text.find("deny").unwrap();
        assert_eq!(lines[0].position(deny), (5, 5));
        assert_eq!(lines[1].text, "SecMarker END");
        assert_eq!(lines[1].position(10), (6, 11));
    }

    #[test]
    fn words_follow_apache_quoting() {
        let w = words(r#"SecRule ARGS "@rx a\"b\\c\d" 'x y' plain\\z"#).unwrap();
        let texts: Vec<_> = w.iter().map(|w| w.text.as_str()).collect();
        assert_eq!(
            texts,
            ["SecRule", "ARGS", r#"@rx a"b\c\d"#, "x y", r"plain\z"]
        );
        assert_eq!(w[2].offset, 14);
        assert_eq!(words(r#"SecRule ARGS "@rx a"#).unwrap_err().0, 13);
    }
}
