//! Rewrites a PCRE pattern (as ModSecurity compiles it: bytes, no UTF) into the `regex`
//! crate's syntax with the same meaning, or says it cannot.
//!
//! Most of CRS's patterns differ from `regex` syntax only in spelling: PCRE takes `{` as a
//! literal when it does not start a quantifier, `[` and `&&`/`~~` as literals inside a class,
//! `\<`, `\'` and other escaped punctuation as the character itself, and non-ASCII characters
//! as the bytes they are made of. Constructs that need backtracking (lookaround,
//! backreferences, atomic groups, possessive quantifiers...) have no linear-time equivalent:
//! for those [`translate`] returns `None` and the pattern goes to PCRE2.

use std::fmt::Write;

/// The pattern in `regex` syntax, or `None` if it needs a backtracking engine.
pub fn translate(pattern: &str) -> Option<String> {
    let b = pattern.as_bytes();
    let mut out = String::with_capacity(pattern.len() + 16);
    let mut i = 0;
    let mut in_class = false;
    // Position just after the class opener (`[` or `[^`), where `]` is a literal.
    let mut class_start = 0;
    // Whether the last class item was a single character, so a `-` after it makes a range.
    let mut last_single = false;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' {
            let n = *b.get(i + 1)?;
            if n.is_ascii_digit() && n != b'0' && !in_class {
                return None; // a backreference
            }
            match n {
                // Escapes PCRE has and `regex` lacks, or reads differently.
                b'K' | b'G' | b'Z' | b'R' | b'X' | b'C' | b'h' | b'H' | b'V' | b'N' | b'g'
                | b'k' => return None,
                b'e' => {
                    out.push_str("\\x1b");
                    last_single = true;
                }
                n if n.is_ascii_alphanumeric() => {
                    out.push('\\');
                    out.push(n as char);
                    // \xHH and \x{...}, \0, \cX carry their argument along.
                    match n {
                        b'x' if b.get(i + 2) == Some(&b'{') => {
                            let close = pattern[i..].find('}')?;
                            out.push_str(&pattern[i + 2..i + close + 1]);
                            i += close + 1;
                            last_single = true;
                            continue;
                        }
                        b'x' => {
                            let digits = b[i + 2..]
                                .iter()
                                .take(2)
                                .take_while(|d| d.is_ascii_hexdigit())
                                .count();
                            out.push_str(&pattern[i + 2..i + 2 + digits]);
                            i += 2 + digits;
                            last_single = true;
                            continue;
                        }
                        b'0' => {
                            let digits = b[i + 2..]
                                .iter()
                                .take(2)
                                .take_while(|d| (b'0'..=b'7').contains(d))
                                .count();
                            let value =
                                u32::from_str_radix(&pattern[i + 1..i + 2 + digits], 8).ok()?;
                            out.truncate(out.len() - 2);
                            let _ = write!(out, "\\x{value:02x}");
                            i += 2 + digits;
                            last_single = true;
                            continue;
                        }
                        _ => {}
                    }
                    last_single = matches!(n, b'n' | b'r' | b't' | b'f' | b'v' | b'a');
                }
                // Escaped punctuation, space or any other byte: the byte itself.
                _ => {
                    let ch = pattern[i + 1..].chars().next()?;
                    let mut buf = [0u8; 4];
                    for byte in ch.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\x{byte:02x}");
                    }
                    i += 1 + ch.len_utf8();
                    last_single = true;
                    continue;
                }
            }
            i += 2;
            continue;
        }
        if c >= 0x80 {
            // Non-UTF PCRE sees a multibyte character as its bytes.
            let _ = write!(out, "\\x{c:02x}");
            i += 1;
            last_single = true;
            continue;
        }
        if in_class {
            match c {
                b']' if i == class_start => out.push_str("\\]"),
                b']' => {
                    out.push(']');
                    in_class = false;
                }
                b'[' if b.get(i + 1) == Some(&b':') => {
                    // A POSIX class such as [:alpha:], which both engines know.
                    let close = pattern[i..].find(":]")?;
                    out.push_str(&pattern[i..i + close + 2]);
                    i += close + 2;
                    last_single = false;
                    continue;
                }
                b'[' | b'&' | b'~' => {
                    let _ = write!(out, "\\x{c:02x}");
                    last_single = true;
                    i += 1;
                    continue;
                }
                b'-' => {
                    let next = b.get(i + 1).copied();
                    let range = last_single && i > class_start && next.is_some_and(|n| n != b']');
                    if range {
                        out.push('-');
                        last_single = false;
                    } else {
                        out.push_str("\\-");
                        last_single = true;
                    }
                    i += 1;
                    continue;
                }
                _ => out.push(c as char),
            }
            last_single = true;
            i += 1;
            continue;
        }
        match c {
            b'(' => {
                const BACKTRACKING: [&[u8]; 10] = [
                    b"?=", b"?!", b"?<=", b"?<!", b"?>", b"?(", b"?#", b"?R", b"?|", b"?&",
                ];
                if BACKTRACKING.iter().any(|g| b[i + 1..].starts_with(g)) {
                    return None; // lookaround, atomic group, conditional, recursion...
                }
                out.push('(');
            }
            b'[' => {
                in_class = true;
                out.push('[');
                i += 1;
                if b.get(i) == Some(&b'^') {
                    out.push('^');
                    i += 1;
                }
                class_start = i;
                last_single = false;
                continue;
            }
            b'{' => match quantifier_len(&b[i..]) {
                Some(len) => {
                    out.push_str(&pattern[i..i + len]);
                    i += len;
                    if b.get(i) == Some(&b'+') {
                        return None; // possessive
                    }
                    continue;
                }
                None => out.push_str("\\{"),
            },
            b'}' => out.push_str("\\}"),
            b'*' | b'+' | b'?' => {
                out.push(c as char);
                if b.get(i + 1) == Some(&b'+') {
                    return None; // possessive
                }
            }
            _ => out.push(c as char),
        }
        i += 1;
    }
    if in_class {
        return None;
    }
    Some(out)
}

/// Length of `{n}`, `{n,}` or `{n,m}` at the start of `s`, if it is one.
fn quantifier_len(s: &[u8]) -> Option<usize> {
    let close = s.iter().position(|&c| c == b'}')?;
    let inner = &s[1..close];
    let (min, max) = match inner.iter().position(|&c| c == b',') {
        Some(comma) => (&inner[..comma], Some(&inner[comma + 1..])),
        None => (inner, None),
    };
    let digits = |d: &[u8]| d.iter().all(u8::is_ascii_digit);
    (!min.is_empty() && digits(min) && max.is_none_or(digits)).then_some(close + 1)
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn literal_braces_and_brackets() {
        assert_eq!(translate(r"\s+{").unwrap(), r"\s+\{");
        assert_eq!(translate(r"{{.*?}}").unwrap(), r"\{\{.*?\}\}");
        assert_eq!(translate(r"a{2,3}b{4}c{1,}").unwrap(), r"a{2,3}b{4}c{1,}");
        assert_eq!(translate(r"[^!\]{}[]").unwrap(), r"[^!\x5d{}\x5b]");
        assert_eq!(translate(r"[]a]").unwrap(), r"[\]a]");
        assert_eq!(translate(r"[[:alpha:]_]").unwrap(), r"[[:alpha:]_]");
    }

    #[test]
    fn escaped_punctuation_and_bytes() {
        assert_eq!(
            translate(r#"[\'"\<\>\&]"#).unwrap(),
            r#"[\x27"\x3c\x3e\x26]"#
        );
        assert_eq!(translate(r"\<script").unwrap(), r"\x3cscript");
        assert_eq!(translate("[´’]").unwrap(), r"[\xc2\xb4\xe2\x80\x99]");
        assert_eq!(translate(r"\w-.").unwrap(), r"\w-.");
        assert_eq!(translate(r"[\w-.]").unwrap(), r"[\w\-.]");
        assert_eq!(translate(r"[a-z&&b]").unwrap(), r"[a-z\x26\x26b]");
        assert_eq!(translate(r"\x5c\0\012").unwrap(), r"\x5c\x00\x0a");
    }

    #[test]
    fn backtracking_constructs_are_refused() {
        for p in [
            r"(?<!a)b", r"a(?=b)", r"(a)\1", r"a*+b", r"a++", r"(?>a)", r"a{2}+", r"\Z",
        ] {
            assert_eq!(translate(p), None, "{p}");
        }
        assert_eq!(
            translate(r"\(?|b").unwrap(),
            r"\x28?|b",
            "an escaped paren opens no group"
        );
    }
}
