//! Transformations (`t:` actions): functions from bytes to bytes with ModSecurity v2's exact
//! semantics, quirks included, since CRS's regular expressions and regression tests were written
//! against them. Each is ported from ModSecurity v2's `re_tfns.c`/`msc_util.c`; the comments
//! name the behaviours that are easy to get wrong.
//!
//! Values are bytes, not strings: requests carry whatever they carry. Each function returns
//! `Cow::Borrowed` when it would not change its input, so a chain over clean data allocates
//! nothing.

use std::borrow::Cow;

/// A transformation a rule applies to a variable's value before the operator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transformation {
    Base64Decode,
    Base64DecodeExt,
    Base64Encode,
    CmdLine,
    CompressWhitespace,
    CssDecode,
    EscapeSeqDecode,
    HexDecode,
    HexEncode,
    HtmlEntityDecode,
    JsDecode,
    Length,
    Lowercase,
    Md5,
    NormalizePath,
    NormalizePathWin,
    ParityEven7bit,
    ParityOdd7bit,
    ParityZero7bit,
    RemoveComments,
    RemoveCommentsChar,
    RemoveNulls,
    RemoveWhitespace,
    ReplaceComments,
    ReplaceNulls,
    Sha1,
    SqlHexDecode,
    Trim,
    TrimLeft,
    TrimRight,
    Uppercase,
    UrlDecode,
    UrlDecodeUni,
    UrlEncode,
    Utf8ToUnicode,
}

impl Transformation {
    /// The bytes without which the transformation leaves a value as it is, ASCII case
    /// aside; `None` when it may change any value (hashes, encodings, `length`...). The
    /// prefilter searches a value free of its chain's bytes as it is, without transforming.
    pub fn acts_on(self) -> Option<&'static [u8]> {
        use Transformation::*;
        const SPACE: &[u8] = b" \t\n\x0b\x0c\r\xa0";
        Some(match self {
            Lowercase | Uppercase => b"",
            UrlDecode | UrlDecodeUni => b"%+",
            HtmlEntityDecode => b"&",
            JsDecode | CssDecode | EscapeSeqDecode => b"\\",
            RemoveNulls | ReplaceNulls => b"\0",
            CompressWhitespace | RemoveWhitespace | Trim | TrimLeft | TrimRight => SPACE,
            CmdLine => b"\"'\\^,; \t\r\n",
            NormalizePath => b"/.",
            NormalizePathWin => b"/.\\",
            RemoveComments | RemoveCommentsChar | ReplaceComments => b"/*<!-#",
            SqlHexDecode => b"0",
            Utf8ToUnicode | ParityZero7bit => &HIGH,
            Base64Decode | Base64DecodeExt | Base64Encode | HexDecode | HexEncode | Length
            | Md5 | Sha1 | UrlEncode | ParityEven7bit | ParityOdd7bit => return None,
        })
    }

    /// The transformation named `name` (as in `t:name`); `None` for `none`, which is not a
    /// transformation but clears the list before it, and for unknown names.
    pub fn from_name(name: &str) -> Option<Transformation> {
        use Transformation::*;
        Some(match name.to_ascii_lowercase().as_str() {
            "base64decode" => Base64Decode,
            "base64decodeext" => Base64DecodeExt,
            "base64encode" => Base64Encode,
            "cmdline" => CmdLine,
            "compresswhitespace" => CompressWhitespace,
            "cssdecode" => CssDecode,
            "escapeseqdecode" => EscapeSeqDecode,
            "hexdecode" => HexDecode,
            "hexencode" => HexEncode,
            "htmlentitydecode" => HtmlEntityDecode,
            "jsdecode" => JsDecode,
            "length" => Length,
            "lowercase" => Lowercase,
            "md5" => Md5,
            "normalisepath" | "normalizepath" => NormalizePath,
            "normalisepathwin" | "normalizepathwin" => NormalizePathWin,
            "parityeven7bit" => ParityEven7bit,
            "parityodd7bit" => ParityOdd7bit,
            "parityzero7bit" => ParityZero7bit,
            "removecomments" => RemoveComments,
            "removecommentschar" => RemoveCommentsChar,
            "removenulls" => RemoveNulls,
            "removewhitespace" => RemoveWhitespace,
            "replacecomments" => ReplaceComments,
            "replacenulls" => ReplaceNulls,
            "sha1" => Sha1,
            "sqlhexdecode" => SqlHexDecode,
            "trim" => Trim,
            "trimleft" => TrimLeft,
            "trimright" => TrimRight,
            "uppercase" => Uppercase,
            "urldecode" => UrlDecode,
            "urldecodeuni" => UrlDecodeUni,
            "urlencode" => UrlEncode,
            "utf8tounicode" => Utf8ToUnicode,
            _ => return None,
        })
    }

    pub fn apply<'a>(self, input: &'a [u8]) -> Cow<'a, [u8]> {
        use Transformation::*;
        match self {
            Base64Decode => Cow::Owned(base64_decode(input, false)),
            Base64DecodeExt => Cow::Owned(base64_decode(input, true)),
            Base64Encode => Cow::Owned(base64_encode(input)),
            CmdLine => Cow::Owned(cmd_line(input)),
            CompressWhitespace => compress_whitespace(input),
            CssDecode => if_contains(input, b'\\', css_decode),
            EscapeSeqDecode => if_contains(input, b'\\', escape_seq_decode),
            HexDecode => Cow::Owned(hex_decode(input)),
            HexEncode => Cow::Owned(hex_encode(input)),
            HtmlEntityDecode => if_contains(input, b'&', html_entity_decode),
            JsDecode => if_contains(input, b'\\', js_decode),
            Length => Cow::Owned(input.len().to_string().into_bytes()),
            Lowercase => map_bytes(input, |b| b.to_ascii_lowercase()),
            Md5 => {
                use md5::Digest;
                Cow::Owned(md5::Md5::digest(input).to_vec())
            }
            NormalizePath => Cow::Owned(normalize_path(input, false)),
            NormalizePathWin => Cow::Owned(normalize_path(input, true)),
            ParityEven7bit => map_bytes(input, |b| parity(b, true)),
            ParityOdd7bit => map_bytes(input, |b| parity(b, false)),
            ParityZero7bit => map_bytes(input, |b| b & 0x7f),
            RemoveComments => Cow::Owned(remove_comments(input)),
            RemoveCommentsChar => Cow::Owned(remove_comments_char(input)),
            RemoveNulls => retain(input, |b| b != 0),
            RemoveWhitespace => retain(input, |b| !is_space(b) && b != NBSP),
            ReplaceComments => if_contains(input, b'/', replace_comments),
            ReplaceNulls => map_bytes(input, |b| if b == 0 { b' ' } else { b }),
            Sha1 => {
                use sha1::Digest;
                Cow::Owned(sha1::Sha1::digest(input).to_vec())
            }
            SqlHexDecode => Cow::Owned(sql_hex_decode(input)),
            Trim => Cow::Borrowed(trim_right(trim_left(input))),
            TrimLeft => Cow::Borrowed(trim_left(input)),
            TrimRight => Cow::Borrowed(trim_right(input)),
            Uppercase => map_bytes(input, |b| b.to_ascii_uppercase()),
            UrlDecode => {
                if input.iter().any(|&b| b == b'%' || b == b'+') {
                    Cow::Owned(url_decode(input, false, true))
                } else {
                    Cow::Borrowed(input)
                }
            }
            UrlDecodeUni => {
                if input.iter().any(|&b| b == b'%' || b == b'+') {
                    Cow::Owned(url_decode(input, true, true))
                } else {
                    Cow::Borrowed(input)
                }
            }
            UrlEncode => Cow::Owned(url_encode(input)),
            Utf8ToUnicode => {
                if input.is_ascii() {
                    Cow::Borrowed(input)
                } else {
                    Cow::Owned(utf8_to_unicode(input))
                }
            }
        }
    }
}

/// Applies `transformations` in order.
pub fn apply_all<'a>(transformations: &[Transformation], input: &'a [u8]) -> Cow<'a, [u8]> {
    let mut value = Cow::Borrowed(input);
    for t in transformations {
        value = match value {
            Cow::Borrowed(b) => t.apply(b),
            Cow::Owned(v) => Cow::Owned(t.apply(&v).into_owned()),
        };
    }
    value
}

const NBSP: u8 = 0xa0;

/// The bytes outside ASCII.
const HIGH: [u8; 128] = {
    let mut b = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        b[i] = 128 + i as u8;
        i += 1;
    }
    b
};

/// C's `isspace` in the C locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

fn is_odigit(b: u8) -> bool {
    (b'0'..=b'7').contains(&b)
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// ModSecurity's `x2c`: two hex digits to a byte. Callers check the digits where ModSecurity
/// does; where it does not (hexDecode), its arithmetic on other characters is reproduced.
fn x2c(hi: u8, lo: u8) -> u8 {
    let digit = |c: u8| -> u8 {
        if c >= b'A' {
            (c & 0xdf).wrapping_sub(b'A').wrapping_add(10)
        } else {
            c.wrapping_sub(b'0')
        }
    };
    digit(hi).wrapping_mul(16).wrapping_add(digit(lo))
}

fn if_contains(input: &[u8], byte: u8, f: fn(&[u8]) -> Vec<u8>) -> Cow<'_, [u8]> {
    if input.contains(&byte) {
        Cow::Owned(f(input))
    } else {
        Cow::Borrowed(input)
    }
}

fn map_bytes(input: &[u8], f: impl Fn(u8) -> u8) -> Cow<'_, [u8]> {
    match input.iter().position(|&b| f(b) != b) {
        None => Cow::Borrowed(input),
        Some(first) => {
            let mut out = input.to_vec();
            for b in &mut out[first..] {
                *b = f(*b);
            }
            Cow::Owned(out)
        }
    }
}

fn retain(input: &[u8], keep: impl Fn(u8) -> bool) -> Cow<'_, [u8]> {
    if input.iter().all(|&b| keep(b)) {
        Cow::Borrowed(input)
    } else {
        Cow::Owned(input.iter().copied().filter(|&b| keep(b)).collect())
    }
}

fn trim_left(input: &[u8]) -> &[u8] {
    let start = input
        .iter()
        .position(|&b| !is_space(b))
        .unwrap_or(input.len());
    &input[start..]
}

fn trim_right(input: &[u8]) -> &[u8] {
    let end = input
        .iter()
        .rposition(|&b| !is_space(b))
        .map_or(0, |i| i + 1);
    &input[..end]
}

fn parity(b: u8, even: bool) -> u8 {
    let odd_bits = b.count_ones() % 2 == 1;
    if odd_bits == even {
        b | 0x80
    } else {
        b & 0x7f
    }
}

/// `urldecode_nonstrict_inplace_ex` and, with `unicode`, `urldecode_uni_nonstrict_inplace_ex`
/// (no code page map): invalid escapes stay as written, `+` is a space, `%uHHHH` keeps only its
/// low byte, and full-width ASCII (`%uff01`..`%uff5e`) becomes ASCII.
fn url_decode(input: &[u8], unicode: bool, plus_is_space: bool) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        match input[i] {
            b'%' if unicode && i + 1 < n && matches!(input[i + 1], b'u' | b'U') => {
                if i + 5 < n && input[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit) {
                    let mut c = x2c(input[i + 4], input[i + 5]);
                    if c > 0
                        && c < 0x5f
                        && matches!(input[i + 2], b'f' | b'F')
                        && matches!(input[i + 3], b'f' | b'F')
                    {
                        c += 0x20;
                    }
                    out.push(c);
                    i += 6;
                } else {
                    out.extend_from_slice(&input[i..i + 2]);
                    i += 2;
                }
            }
            b'%' => {
                if i + 2 < n && input[i + 1].is_ascii_hexdigit() && input[i + 2].is_ascii_hexdigit()
                {
                    out.push(x2c(input[i + 1], input[i + 2]));
                    i += 3;
                } else {
                    out.push(b'%');
                    i += 1;
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// `%XX` escapes decoded, `+` kept: how a URL path (not a query or form) is decoded.
pub(crate) fn percent_decode(input: &[u8]) -> Vec<u8> {
    url_decode(input, false, false)
}

fn url_encode(input: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(input.len() * 3);
    for &c in input {
        match c {
            b' ' => out.push(b'+'),
            b'*' | b'0'..=b'9' | b'A'..=b'Z' | b'a'..=b'z' => out.push(c),
            _ => out.extend_from_slice(&[b'%', HEX[(c >> 4) as usize], HEX[(c & 15) as usize]]),
        }
    }
    out
}

/// Digits after `&#`/`&#x` as C's `strtol` reads them, then cast to a byte.
fn entity_number(digits: &[u8], radix: u32) -> u8 {
    let mut value: i64 = 0;
    for &d in digits {
        value = value
            .saturating_mul(i64::from(radix))
            .saturating_add(i64::from(hex_value(d)));
    }
    value as u8
}

/// `html_entities_decode_inplace`: `&#DDD;`, `&#xHH;` (the `;` optional; the number cast to a
/// byte), and only the named entities quot, amp, lt, gt and nbsp (to 0xa0); everything else is
/// copied. The output is never longer than the input.
fn html_entity_decode(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let mut copy = 1;
        if input[i] == b'&' && i + 1 < n {
            let mut j = i + 1;
            if input[j] == b'#' {
                copy += 1;
                if j + 1 < n {
                    j += 1;
                    let hex = matches!(input[j], b'x' | b'X');
                    let mut ok = true;
                    if hex {
                        copy += 1;
                        if j + 1 < n {
                            j += 1;
                        } else {
                            ok = false;
                        }
                    }
                    if ok {
                        let k = j;
                        while j < n
                            && (if hex {
                                input[j].is_ascii_hexdigit()
                            } else {
                                input[j].is_ascii_digit()
                            })
                        {
                            j += 1;
                        }
                        if j > k {
                            out.push(entity_number(&input[k..j], if hex { 16 } else { 10 }));
                            i = if j < n && input[j] == b';' { j + 1 } else { j };
                            continue;
                        }
                    }
                }
            } else {
                let k = j;
                while j < n && input[j].is_ascii_alphanumeric() {
                    j += 1;
                }
                if j > k {
                    let name = input[k..j].to_ascii_lowercase();
                    let decoded = match name.as_slice() {
                        b"quot" => Some(b'"'),
                        b"amp" => Some(b'&'),
                        b"lt" => Some(b'<'),
                        b"gt" => Some(b'>'),
                        b"nbsp" => Some(NBSP),
                        _ => None,
                    };
                    match decoded {
                        Some(c) => {
                            out.push(c);
                            i = if j < n && input[j] == b';' { j + 1 } else { j };
                            continue;
                        }
                        None => copy = j - k + 1,
                    }
                }
            }
        }
        let end = (i + copy).min(n);
        out.extend_from_slice(&input[i..end]);
        i = end;
    }
    out
}

/// Low byte of `\uHHHH`/`%uHHHH`, with full-width ASCII (U+FF01..U+FF5E) shifted to ASCII.
fn unicode_low_byte(h: &[u8]) -> u8 {
    let mut c = x2c(h[2], h[3]);
    if c > 0 && c < 0x5f && matches!(h[0], b'f' | b'F') && matches!(h[1], b'f' | b'F') {
        c += 0x20;
    }
    c
}

/// `js_decode_nonstrict_inplace`: `\uHHHH` (low byte, full-width shifted), `\xHH`, octal
/// `\OOO` (at most one byte: a third digit is used only after 0-3), the C escapes, and `\c` is
/// `c` for any other character.
fn js_decode(input: &[u8]) -> Vec<u8> {
    decode_escapes(input, true)
}

/// `ansi_c_sequences_decode_inplace`: like jsDecode without `\u`, and an unknown escape keeps
/// its backslash.
fn escape_seq_decode(input: &[u8]) -> Vec<u8> {
    decode_escapes(input, false)
}

fn decode_escapes(input: &[u8], js: bool) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if js
            && i + 5 < n
            && input[i + 1] == b'u'
            && input[i + 2..i + 6].iter().all(u8::is_ascii_hexdigit)
        {
            out.push(unicode_low_byte(&input[i + 2..i + 6]));
            i += 6;
        } else if i + 3 < n
            && (input[i + 1] == b'x' || (!js && input[i + 1] == b'X'))
            && input[i + 2].is_ascii_hexdigit()
            && input[i + 3].is_ascii_hexdigit()
        {
            out.push(x2c(input[i + 2], input[i + 3]));
            i += 4;
        } else if i + 1 < n && is_odigit(input[i + 1]) {
            let mut j = 0;
            while i + 1 + j < n && j < 3 {
                j += 1;
                if !input.get(i + 1 + j).copied().is_some_and(is_odigit) {
                    break;
                }
            }
            // jsDecode keeps to one byte (\400 is \40 then 0); escapeSeqDecode truncates.
            if js && j == 3 && input[i + 1] > b'3' {
                j = 2;
            }
            let value = input[i + 1..i + 1 + j]
                .iter()
                .fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            out.push(value as u8);
            i += 1 + j;
        } else if i + 1 < n {
            let c = input[i + 1];
            let decoded = match c {
                b'a' => Some(0x07),
                b'b' => Some(0x08),
                b'f' => Some(0x0c),
                b'n' => Some(b'\n'),
                b'r' => Some(b'\r'),
                b't' => Some(b'\t'),
                b'v' => Some(0x0b),
                b'\\' | b'?' | b'\'' | b'"' => Some(c),
                _ if js => Some(c),
                _ => None,
            };
            match decoded {
                Some(d) => out.push(d),
                None => out.extend_from_slice(&[b'\\', c]),
            }
            i += 2;
        } else {
            out.push(b'\\');
            i += 1;
        }
    }
    out
}

/// `css_decode_inplace`: `\` and 1-6 hex digits gives one byte from the last two digits (with
/// ModSecurity's full-width handling for 4-6 digits) and eats one following whitespace; an
/// escaped newline disappears; `\c` is `c`; a trailing `\` disappears.
fn css_decode(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if input[i] != b'\\' {
            out.push(input[i]);
            i += 1;
            continue;
        }
        if i + 1 >= n {
            i += 1;
            continue;
        }
        i += 1;
        let mut j = 0;
        while j < 6 && i + j < n && input[i + j].is_ascii_hexdigit() {
            j += 1;
        }
        if j == 0 {
            if input[i] == b'\n' {
                i += 1;
            } else {
                out.push(input[i]);
                i += 1;
            }
            continue;
        }
        let last_two = |s: &[u8]| x2c(s[j - 2], s[j - 1]);
        let digits = &input[i..i + j];
        let (mut c, fullcheck) = match j {
            1 => (hex_value(digits[0]), false),
            2 | 3 => (last_two(digits), false),
            4 => (last_two(digits), true),
            5 => (last_two(digits), digits[0] == b'0'),
            _ => (last_two(digits), digits[0] == b'0' && digits[1] == b'0'),
        };
        if fullcheck
            && c > 0
            && c < 0x5f
            && matches!(digits[j - 3], b'f' | b'F')
            && matches!(digits[j - 4], b'f' | b'F')
        {
            c += 0x20;
        }
        out.push(c);
        if i + j < n && is_space(input[i + j]) {
            j += 1;
        }
        i += j;
    }
    out
}

/// `cmdline`: drops `"` `'` `\` `^`, folds runs of space , ; tab CR LF into one space, drops a
/// space before `/` or `(`, and lower-cases the rest.
fn cmd_line(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut space = false;
    for &c in input {
        match c {
            b'"' | b'\'' | b'\\' | b'^' => {}
            b' ' | b',' | b';' | b'\t' | b'\r' | b'\n' => {
                if !space {
                    out.push(b' ');
                    space = true;
                }
            }
            b'/' | b'(' => {
                if space {
                    out.pop();
                }
                space = false;
                out.push(c);
            }
            _ => {
                out.push(c.to_ascii_lowercase());
                space = false;
            }
        }
    }
    out
}

/// Runs of whitespace (C `isspace` and 0xa0) become one space, a trailing run included.
fn compress_whitespace(input: &[u8]) -> Cow<'_, [u8]> {
    let needs = input
        .windows(2)
        .any(|w| (is_space(w[0]) || w[0] == NBSP) && (is_space(w[1]) || w[1] == NBSP))
        || input
            .iter()
            .any(|&b| (is_space(b) || b == NBSP) && b != b' ');
    if !needs {
        return Cow::Borrowed(input);
    }
    let mut out = Vec::with_capacity(input.len());
    let mut pending = false;
    for &c in input {
        if is_space(c) || c == NBSP {
            pending = true;
        } else {
            if pending {
                out.push(b' ');
                pending = false;
            }
            out.push(c);
        }
    }
    if pending {
        out.push(b' ');
    }
    Cow::Owned(out)
}

/// `remove_comments`: drops `/* ... */` and `<!-- ... -->`; `--` and `#` end the value; an
/// unterminated comment leaves one space.
fn remove_comments(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut in_comment = false;
    let mut i = 0;
    while i < n {
        if !in_comment {
            if input[i..].starts_with(b"/*") {
                in_comment = true;
                i += 2;
            } else if input[i..].starts_with(b"<!--") {
                in_comment = true;
                i += 4;
            } else if input[i..].starts_with(b"--") || input[i] == b'#' {
                break;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i..].starts_with(b"*/") {
            in_comment = false;
            i += 2;
        } else if input[i..].starts_with(b"-->") {
            in_comment = false;
            i += 3;
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
    out
}

/// `remove_comments_char`: drops the comment markers `/*`, `*/`, `<!--`, `-->`, `--` and `#`.
fn remove_comments_char(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        let rest = &input[i..];
        let skip = if rest.starts_with(b"/*") || rest.starts_with(b"*/") {
            2
        } else if rest.starts_with(b"<!--") {
            4
        } else if rest.starts_with(b"-->") {
            3
        } else if rest.starts_with(b"--") {
            2
        } else if rest[0] == b'#' {
            1
        } else {
            out.push(rest[0]);
            1
        };
        i += skip;
    }
    out
}

/// `replace_comments`: each `/* ... */` (an unterminated one to the end) becomes one space.
fn replace_comments(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut in_comment = false;
    let mut i = 0;
    while i < n {
        if !in_comment {
            if input[i..].starts_with(b"/*") {
                in_comment = true;
                i += 2;
            } else {
                out.push(input[i]);
                i += 1;
            }
        } else if input[i..].starts_with(b"*/") {
            in_comment = false;
            out.push(b' ');
            i += 2;
        } else {
            i += 1;
        }
    }
    if in_comment {
        out.push(b' ');
    }
    out
}

/// `hex2bytes_inplace`: pairs of characters to bytes, unchecked (as ModSecurity); an odd last
/// character is dropped.
fn hex_decode(input: &[u8]) -> Vec<u8> {
    input.chunks_exact(2).map(|p| x2c(p[0], p[1])).collect()
}

fn hex_encode(input: &[u8]) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(input.len() * 2);
    for &b in input {
        out.extend_from_slice(&[HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
    }
    out
}

/// `0x` followed by hex digit pairs becomes those bytes; anything else is copied.
fn sql_hex_decode(input: &[u8]) -> Vec<u8> {
    let n = input.len();
    let mut out = Vec::with_capacity(n);
    let mut i = 0;
    while i < n {
        if input[i] == b'0'
            && i + 3 < n
            && matches!(input[i + 1], b'x' | b'X')
            && input[i + 2].is_ascii_hexdigit()
            && input[i + 3].is_ascii_hexdigit()
        {
            i += 2;
            while i + 1 < n && input[i].is_ascii_hexdigit() && input[i + 1].is_ascii_hexdigit() {
                out.push(x2c(input[i], input[i + 1]));
                i += 2;
            }
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

fn base64_value(b: u8) -> Option<u8> {
    match b {
        b'A'..=b'Z' => Some(b - b'A'),
        b'a'..=b'z' => Some(b - b'a' + 26),
        b'0'..=b'9' => Some(b - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// APR's decoder stops at the first character outside the alphabet (padding included);
/// base64DecodeExt skips such characters instead. A last partial group yields what it holds.
fn base64_decode(input: &[u8], skip_invalid: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 4 * 3 + 3);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in input {
        let Some(v) = base64_value(b) else {
            if skip_invalid {
                continue;
            }
            break;
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

fn base64_encode(input: &[u8]) -> Vec<u8> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]);
            } else {
                out.push(b'=');
            }
        }
    }
    out
}

/// UTF-8 sequences become `%uHHHH` (lower-case hex, at least four digits), so a following
/// urlDecodeUni sees them as ModSecurity does; invalid bytes are copied as they are.
fn utf8_to_unicode(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() * 2);
    let mut i = 0;
    while i < input.len() {
        let c = input[i];
        let len = match c {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf4 => 4,
            _ => 0,
        };
        let seq = input.get(i..i + len.max(1)).unwrap_or(&input[i..]);
        let valid = len > 1 && seq.len() == len && seq[1..].iter().all(|b| b & 0xc0 == 0x80);
        if !valid {
            out.push(c);
            i += 1;
            continue;
        }
        let mut code = u32::from(c & (0x7f >> len));
        for b in &seq[1..] {
            code = (code << 6) | u32::from(b & 0x3f);
        }
        let overlong = matches!(
            (len, code),
            (2, 0..=0x7f) | (3, 0..=0x7ff) | (4, 0..=0xffff)
        );
        if overlong || (0xd800..=0xdfff).contains(&code) || code > 0x10ffff {
            out.push(c);
            i += 1;
            continue;
        }
        out.extend_from_slice(format!("%u{code:04x}").as_bytes());
        i += len;
    }
    out
}

/// `normalize_path_inplace`: removes `.` and `x/..` segments and repeated slashes without going
/// above the root (a relative path keeps the `..` it cannot resolve); with `win`, backslashes
/// are slashes. A trailing slash survives only if there was one.
fn normalize_path(input: &[u8], win: bool) -> Vec<u8> {
    if input.is_empty() {
        return Vec::new();
    }
    let mut buf = input.to_vec();
    let is_sep = |b: u8| b == b'/' || (win && b == b'\\');
    let end = buf.len() as isize - 1;
    let relative = !is_sep(buf[0]);
    let trailing = is_sep(buf[end as usize]);
    let (mut src, mut dst): (isize, isize) = (0, 0);
    let mut hitroot = false;
    let mut done = false;
    while !done && src <= end && dst <= end {
        let s = src as usize;
        if win {
            if buf[s] == b'\\' {
                buf[s] = b'/';
            }
            if src < end && buf[s + 1] == b'\\' {
                buf[s + 1] = b'/';
            }
        }
        let mut skip_copy = false;
        let mut normalize = true;
        if src == end {
            done = true;
        } else if buf[s + 1] != b'/' {
            normalize = false;
        }
        if normalize {
            if src != end && buf[s] == b'/' {
                // An empty segment: the copy below skips the repeated slashes.
            } else if buf[s] == b'.' {
                if dst > 0 && buf[(dst - 1) as usize] == b'.' {
                    if relative && (hitroot || dst - 2 <= 0) {
                        hitroot = true;
                    } else {
                        dst -= 3;
                        while dst > 0 && buf[dst as usize] != b'/' {
                            dst -= 1;
                        }
                        if dst <= 0 {
                            hitroot = true;
                            dst = 0;
                            if !relative && src == end {
                                dst += 1;
                            }
                        }
                        if done {
                            skip_copy = true;
                        } else {
                            src += 1;
                        }
                    }
                } else if dst == 0 {
                    if done {
                        skip_copy = true;
                    } else {
                        src += 1;
                    }
                } else if buf[(dst - 1) as usize] == b'/' {
                    if done {
                        skip_copy = true;
                    } else {
                        dst -= 1;
                        src += 1;
                    }
                }
            } else if dst > 0 {
                hitroot = false;
            }
        }
        if !skip_copy && src <= end {
            let mut s = src as usize;
            if buf[s] == b'/' {
                while (s as isize) < end && is_sep(buf[s + 1]) {
                    s += 1;
                }
                src = s as isize;
                if relative && dst == 0 {
                    src += 1;
                    continue;
                }
            }
            buf[dst as usize] = buf[s];
            dst += 1;
            src += 1;
        }
    }
    let mut len = dst.max(0) as usize;
    if !trailing && len > 0 && buf[len - 1] == b'/' {
        len -= 1;
    }
    buf.truncate(len);
    buf
}

#[cfg(test)]
mod tests {
    use super::Transformation::{self, *};

    fn t(tr: Transformation, input: &[u8]) -> Vec<u8> {
        tr.apply(input).into_owned()
    }

    fn s(tr: Transformation, input: &str) -> String {
        String::from_utf8_lossy(&t(tr, input.as_bytes())).into_owned()
    }

    #[test]
    fn url_decoding_keeps_what_is_not_an_escape() {
        assert_eq!(s(UrlDecode, "a%20b+c%2"), "a b c%2");
        assert_eq!(s(UrlDecode, "%zz%4"), "%zz%4");
        assert_eq!(t(UrlDecode, b"%00%ff"), [0, 0xff]);
        assert_eq!(s(UrlDecode, "%u0041"), "%u0041");
        assert_eq!(s(UrlDecodeUni, "%u0041%uff21%U0062"), "AAb");
        assert_eq!(s(UrlDecodeUni, "%u004"), "%u004");
        assert_eq!(s(UrlDecodeUni, "%u00zz1"), "%u00zz1");
        assert_eq!(t(UrlDecodeUni, b"%u2215"), [0x15]);
        assert!(matches!(
            UrlDecode.apply(b"plain"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn html_entities_as_modsecurity_decodes_them() {
        assert_eq!(
            s(
                HtmlEntityDecode,
                "&lt;script&gt;&quot;&amp;&#39;&#x41;&#X42"
            ),
            "<script>\"&'AB"
        );
        assert_eq!(t(HtmlEntityDecode, b"&nbsp;"), [0xa0]);
        assert_eq!(
            s(HtmlEntityDecode, "&apos;&copy;&#;&#x;&"),
            "&apos;&copy;&#;&#x;&"
        );
        assert_eq!(t(HtmlEntityDecode, b"&#256;&#65"), [0, b'A']);
        assert_eq!(s(HtmlEntityDecode, "&LT;"), "<");
    }

    #[test]
    fn js_and_escape_sequences() {
        assert_eq!(
            s(JsDecode, r"\x41\u0042\uff43\101\n\q\"),
            "ABc".to_owned() + "A\nq\\"
        );
        assert_eq!(t(JsDecode, br"\777"), [0o77, b'7']);
        assert_eq!(t(JsDecode, br"\377"), [0xff]);
        assert_eq!(s(EscapeSeqDecode, r"\x41\q\101"), r"A\qA");
    }

    #[test]
    fn css_escapes() {
        assert_eq!(s(CssDecode, r"\41 b\000041\62 c\\"), "AbAbc\\");
        assert_eq!(s(CssDecode, r"\62c"), ",", "c is a hex digit too");
        assert_eq!(s(CssDecode, "a\\\nb\\"), "ab");
        assert_eq!(s(CssDecode, r"\ff41"), "a");
        assert_eq!(s(CssDecode, r"j\61vascript"), "javascript");
    }

    #[test]
    fn command_lines() {
        assert_eq!(
            s(CmdLine, r#"C:\Windows ;  /S "P"^ing (X)"#),
            "c:windows/s ping(x)"
        );
        assert_eq!(s(CmdLine, "a,b;c\td"), "a b c d");
    }

    #[test]
    fn whitespace_and_nulls() {
        assert_eq!(t(CompressWhitespace, b"a \t\n\xa0b  "), b"a b ");
        assert_eq!(t(RemoveWhitespace, b" a\xa0b\tc "), b"abc");
        assert_eq!(t(RemoveNulls, b"a\0b"), b"ab");
        assert_eq!(t(ReplaceNulls, b"a\0b"), b"a b");
        assert_eq!(t(Trim, b" \t a b \n"), b"a b");
        assert_eq!(t(TrimLeft, b"  a "), b"a ");
        assert_eq!(t(TrimRight, b"  a "), b"  a");
    }

    #[test]
    fn comments() {
        assert_eq!(s(ReplaceComments, "SELECT/**/1/*x*/2/*open"), "SELECT 1 2 ");
        assert_eq!(s(RemoveComments, "a/*x*/b<!--c-->d--e"), "abd");
        assert_eq!(s(RemoveComments, "a#b"), "a");
        assert_eq!(s(RemoveCommentsChar, "a/*b*/c--d#e<!--f-->"), "abcdef");
    }

    #[test]
    fn paths() {
        let cases = [
            ("/a/b/../c", "/a/c"),
            ("/a/./b//c/", "/a/b/c/"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("a/../../b", "../b"),
            ("../../etc/passwd", "../../etc/passwd"),
            ("./a", "a"),
            ("/a/b/..", "/a"),
            // ModSecurity drops the root slash here (no trailing slash in the input).
            ("/a/..", ""),
            ("/", "/"),
            ("a//", "a/"),
            ("/.", ""),
        ];
        for (input, expected) in cases {
            assert_eq!(s(NormalizePath, input), expected, "{input}");
        }
        assert_eq!(s(NormalizePathWin, r"C:\a\..\b\.\c"), "C:/b/c");
        assert_eq!(
            s(NormalizePathWin, r"..\..\windows\win.ini"),
            "../../windows/win.ini"
        );
    }

    #[test]
    fn codecs() {
        assert_eq!(s(Base64Decode, "SGVsbG8="), "Hello");
        assert_eq!(s(Base64Decode, "SGVs.bG8"), "Hel");
        assert_eq!(s(Base64DecodeExt, "SGV.sbG8"), "Hello");
        assert_eq!(s(Base64Encode, "Hello"), "SGVsbG8=");
        assert_eq!(s(Base64Encode, "Hell"), "SGVsbA==");
        assert_eq!(s(HexEncode, "A\n"), "410a");
        assert_eq!(s(HexDecode, "414a7"), "AJ");
        assert_eq!(s(SqlHexDecode, "0x414243 and 0x4"), "ABC and 0x4");
        assert_eq!(s(UrlEncode, "a b/*"), "a+b%2f*");
        assert_eq!(s(Length, "héllo"), "6");
        assert_eq!(
            t(HexEncode, &t(Sha1, b"abc")),
            b"a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            t(HexEncode, &t(Md5, b"abc")),
            b"900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn utf8_becomes_percent_u() {
        assert_eq!(s(Utf8ToUnicode, "aé€"), "a%u00e9%u20ac");
        assert_eq!(s(Utf8ToUnicode, "😀"), "%u1f600");
        assert_eq!(t(Utf8ToUnicode, b"\xc3"), b"\xc3");
        assert_eq!(
            t(Utf8ToUnicode, b"\xc0\xaf"),
            b"\xc0\xaf",
            "overlong stays raw"
        );
        let chained = super::apply_all(&[Utf8ToUnicode, UrlDecodeUni], "ｓｅｌｅｃｔ".as_bytes());
        assert_eq!(chained.as_ref(), b"select");
    }

    #[test]
    fn case_and_parity() {
        assert_eq!(s(Lowercase, "AbC"), "abc");
        assert_eq!(s(Uppercase, "AbC"), "ABC");
        assert!(matches!(
            Lowercase.apply(b"abc"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(t(ParityZero7bit, b"\xc1"), b"A");
        assert_eq!(t(ParityEven7bit, b"A"), b"A");
        assert_eq!(t(ParityEven7bit, b"C"), [b'C' | 0x80]);
        assert_eq!(t(ParityEven7bit, b"a"), [b'a' | 0x80]);
        assert_eq!(t(ParityOdd7bit, b"A"), [b'A' | 0x80]);
    }

    #[test]
    fn names() {
        assert_eq!(
            Transformation::from_name("normalisePathWin"),
            Some(NormalizePathWin)
        );
        assert_eq!(
            Transformation::from_name("URLDECODEUNI"),
            Some(UrlDecodeUni)
        );
        assert_eq!(Transformation::from_name("none"), None);
        for name in crate::syntax::names::TRANSFORMATIONS {
            assert!(
                *name == "none" || Transformation::from_name(name).is_some(),
                "{name}"
            );
        }
    }
}
