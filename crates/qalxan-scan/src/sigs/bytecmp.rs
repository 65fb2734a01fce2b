//! Byte-compare subsignatures of logical signatures (ClamAV 0.101+):
//! `TRIGGER(>>OFFSET#OPTIONS#COMPARISONS)`, e.g. `0(>>4#ib2#>512,<1024)`.
//!
//! A number is read at OFFSET bytes after (`>>`) or before (`<<`) the start of each match of
//! subsignature TRIGGER and compared. OPTIONS is `[h|d|a|i][l|b][e]N`: N bytes of text in
//! hex (`h`), decimal (`d`) or either (`a`, hex when it starts with `0x`), or an N-byte
//! binary integer (`i`, N in 1, 2, 4, 8); `l`/`b` the byte order (little-endian hex text is
//! read two digits at a time from the end); `e` demands all N bytes be digits, otherwise
//! the leading digits count. One or two comparisons (`<`, `>`, `=`) must all hold.
//!
//! Where the documentation is silent, ClamAV 1.4's behaviour was measured with clamscan
//! (the tests say which): hex, automatic and binary compares without a byte order load but
//! never match; automatic ones of fewer than 3 bytes never match either (room for `0x` and a
//! digit, it seems); hex text may carry a `0x` inside its N bytes; decimal is big-endian.
//!
//! Written by hand: the format is ClamAV's own and small.

/// How the bytes at the offset are read as a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hex,
    Decimal,
    Auto,
    Binary,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cmp {
    Less,
    Greater,
    Equal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ByteCompare {
    /// The subsignature whose match starts are the reference points.
    pub trigger: u32,
    /// From a match start to the first byte read; negative for `<<`.
    offset: i64,
    kind: Kind,
    /// `Some(true)` little-endian, `Some(false)` big-endian, `None` not given.
    little: Option<bool>,
    exact: bool,
    len: usize,
    comparisons: Vec<(Cmp, u64)>,
}

/// A number in a signature: decimal, or hex with `0x`.
fn number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// Whether a subsignature is written as a byte compare: `N(...#...#...)`.
pub(crate) fn is_byte_compare(s: &str) -> bool {
    let Some(open) = s.find('(') else {
        return false;
    };
    open > 0
        && s[..open].bytes().all(|b| b.is_ascii_digit())
        && s.ends_with(')')
        && s[open..].matches('#').count() == 2
}

impl ByteCompare {
    /// Parses a byte-compare subsignature of a logical signature with `subsigs` parts.
    pub fn parse(s: &str, subsigs: usize) -> Result<ByteCompare, String> {
        let open = s
            .find('(')
            .ok_or("a byte compare is TRIGGER(OFFSET#OPTIONS#COMPARISONS)")?;
        let trigger: u32 = s[..open].parse().map_err(|_| {
            format!(
                "byte compare trigger {:?} is not a subsignature",
                &s[..open]
            )
        })?;
        if trigger as usize >= subsigs {
            return Err(format!(
                "byte compare trigger {trigger} names no subsignature"
            ));
        }
        let inner = s[open + 1..]
            .strip_suffix(')')
            .ok_or("a byte compare ends with ')'")?;
        let mut parts = inner.split('#');
        let (Some(offset), Some(options), Some(comparisons), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("a byte compare is TRIGGER(OFFSET#OPTIONS#COMPARISONS)".into());
        };
        let offset = match (offset.strip_prefix(">>"), offset.strip_prefix("<<")) {
            (Some(n), _) => number(n).and_then(|n| i64::try_from(n).ok()),
            (_, Some(n)) => number(n).and_then(|n| i64::try_from(n).ok()).map(|n| -n),
            _ => None,
        }
        .ok_or_else(|| format!("byte compare offset {offset:?} is not >>N or <<N"))?;

        let bad_options = || format!("byte compare options {options:?} are not [h|d|a|i][l|b][e]N");
        let mut rest = options;
        let kind = match rest.chars().next() {
            Some('h') => Kind::Hex,
            Some('d') => Kind::Decimal,
            Some('a') => Kind::Auto,
            Some('i') => Kind::Binary,
            _ => return Err(bad_options()),
        };
        rest = &rest[1..];
        let mut little = None;
        if let Some(r) = rest.strip_prefix('l') {
            little = Some(true);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('b') {
            little = Some(false);
            rest = r;
        }
        let mut exact = kind == Kind::Binary;
        if let Some(r) = rest.strip_prefix('e') {
            exact = true;
            rest = r;
        }
        let len = number(rest)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(bad_options)?;
        if kind == Kind::Decimal && little == Some(true) {
            return Err("a decimal byte compare cannot be little-endian".into());
        }
        if kind == Kind::Binary && ![1, 2, 4, 8].contains(&len) {
            return Err(format!(
                "a binary byte compare reads 1, 2, 4 or 8 bytes, not {len}"
            ));
        }
        if len == 0 || len > 64 {
            return Err(format!("a byte compare reads 1 to 64 bytes, not {len}"));
        }

        let mut sets = Vec::new();
        for set in comparisons.split(',') {
            let cmp = match set.chars().next() {
                Some('<') => Cmp::Less,
                Some('>') => Cmp::Greater,
                Some('=') => Cmp::Equal,
                _ => {
                    return Err(format!(
                        "byte compare comparison {set:?} is not <N, >N or =N"
                    ))
                }
            };
            let value = number(&set[1..])
                .ok_or_else(|| format!("byte compare value {:?} is not a number", &set[1..]))?;
            sets.push((cmp, value));
        }
        if sets.len() > 2 {
            return Err("a byte compare has one or two comparisons".into());
        }
        Ok(ByteCompare {
            trigger,
            offset,
            kind,
            little,
            exact,
            len,
            comparisons: sets,
        })
    }

    /// Whether the number read relative to a trigger match starting at `start` passes.
    pub fn holds_at(&self, data: &[u8], start: usize) -> bool {
        let Some(from) = (start as i64)
            .checked_add(self.offset)
            .and_then(|f| usize::try_from(f).ok())
        else {
            return false;
        };
        let Some(value) = self.read(data, from) else {
            return false;
        };
        self.comparisons.iter().all(|&(cmp, n)| match cmp {
            Cmp::Less => value < n,
            Cmp::Greater => value > n,
            Cmp::Equal => value == n,
        })
    }

    fn read(&self, data: &[u8], from: usize) -> Option<u64> {
        let little = match (self.kind, self.little) {
            (Kind::Decimal, _) => false,
            (_, Some(little)) => little,
            (_, None) => return None,
        };
        if self.kind == Kind::Auto && self.len < 3 {
            return None;
        }
        let available = data.get(from..)?;
        if self.kind == Kind::Binary {
            let bytes = available.get(..self.len)?;
            let mut buf = [0u8; 8];
            return Some(if little {
                buf[..self.len].copy_from_slice(bytes);
                u64::from_le_bytes(buf)
            } else {
                buf[8 - self.len..].copy_from_slice(bytes);
                u64::from_be_bytes(buf)
            });
        }
        let text = if self.exact {
            available.get(..self.len)?
        } else {
            &available[..self.len.min(available.len())]
        };
        let hex_digits = text
            .strip_prefix(b"0x")
            .or_else(|| text.strip_prefix(b"0X"));
        let (radix, digits) = match (self.kind, hex_digits) {
            (Kind::Hex, Some(hex)) => (16, hex),
            (Kind::Hex, None) => (16, text),
            (Kind::Auto, Some(hex)) => (16, hex),
            _ => (10, text),
        };
        let valid = digits
            .iter()
            .take_while(|&&b| (b as char).is_digit(radix))
            .count();
        if valid == 0 || (self.exact && valid < digits.len()) {
            return None;
        }
        let digits = &digits[..valid];
        // Little-endian hex text: pairs of digits in reverse order (`3412` is 0x1234).
        let ordered: Vec<u8> = if little && radix == 16 {
            digits.rchunks(2).flat_map(|c| c.iter().copied()).collect()
        } else {
            digits.to_vec()
        };
        let text = std::str::from_utf8(&ordered).ok()?;
        u64::from_str_radix(text, radix).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bc(s: &str) -> ByteCompare {
        ByteCompare::parse(s, 2).unwrap()
    }

    #[test]
    fn parses_the_documented_forms() {
        let b = bc("0(>>4#ib2#>512,<1024)");
        assert_eq!((b.trigger, b.offset, b.len), (0, 4, 2));
        assert_eq!(
            (b.kind, b.little, b.exact),
            (Kind::Binary, Some(false), true)
        );
        assert_eq!(b.comparisons, vec![(Cmp::Greater, 512), (Cmp::Less, 1024)]);
        let b = bc("1(<<0x10#hle8#=0x1234)");
        assert_eq!(
            (b.trigger, b.offset, b.kind, b.little, b.exact),
            (1, -16, Kind::Hex, Some(true), true)
        );
        assert!(is_byte_compare("0(>>4#ib2#>512)"));
        assert!(!is_byte_compare("0&1/ab#c/"));
        assert!(!is_byte_compare("(aa|bb)"));
    }

    #[test]
    fn bad_forms_say_what_is_wrong() {
        for (s, why) in [
            ("2(>>4#ib2#>5)", "names no subsignature"),
            ("0(4#ib2#>5)", "not >>N or <<N"),
            ("0(>>4#ib3#>5)", "1, 2, 4 or 8"),
            ("0(>>4#dl4#>5)", "cannot be little-endian"),
            ("0(>>4#x4#>5)", "[h|d|a|i]"),
            ("0(>>4#h4#~5)", "not <N, >N or =N"),
            ("0(>>4#h4#>5,<9,=7)", "one or two"),
            ("0(>>4#h4)", "TRIGGER(OFFSET#OPTIONS#COMPARISONS)"),
        ] {
            let e = ByteCompare::parse(s, 2).unwrap_err();
            assert!(e.contains(why), "{s}: {e}");
        }
    }

    #[test]
    fn reads_numbers_as_clamav_does() {
        let data = b"HEAD\x02\x01 size=0400;len=1234x;hex=0x1f;le=3412";
        // Binary, big- and little-endian, at the trigger's start + 4.
        assert!(bc("0(>>4#ib2#=0x0201)").holds_at(data, 0));
        assert!(bc("0(>>4#il2#=0x0102)").holds_at(data, 0));
        // Decimal text; without `e` the leading digits count ("1234" of "1234x").
        let at = |needle: &[u8]| {
            data.windows(needle.len())
                .position(|w| w == needle)
                .unwrap()
        };
        assert!(bc("0(>>4#d5#=1234)").holds_at(data, at(b"len=")));
        assert!(!bc("0(>>4#de5#=1234)").holds_at(data, at(b"len=")));
        assert!(bc("0(>>5#d4#>399,<401)").holds_at(data, at(b"size=")));
        // Hex text, with or without its 0x, and automatic detection by the 0x.
        assert!(bc("0(>>4#ab4#=31)").holds_at(data, at(b"hex=")));
        assert!(bc("0(>>4#hb4#=31)").holds_at(data, at(b"hex=")));
        assert!(bc("0(>>5#hb4#=0x400)").holds_at(data, at(b"size=")));
        assert!(bc("0(>>3#hle4#=0x1234)").holds_at(data, at(b"le=")));
        assert!(bc("0(>>3#hbe4#=0x3412)").holds_at(data, at(b"le=")));
        // Measured with clamscan 1.4.3: without a byte order only decimal ever matches.
        assert!(!bc("0(>>4#a4#=31)").holds_at(data, at(b"hex=")));
        assert!(!bc("0(>>4#i2#=0x0201)").holds_at(data, 0));
        assert!(bc("0(>>5#d4#=400)").holds_at(data, at(b"size=")));
        // ... and an automatic one reads 3 bytes or more ("123" yes, "12" no).
        assert!(bc("0(>>0#ab3#=123)").holds_at(b"12345", 0));
        assert!(!bc("0(>>0#ab2#=12)").holds_at(b"12345", 0));
        // Backwards from the match, and off either end of the data.
        assert!(bc("0(<<4#d4#=400)").holds_at(data, at(b";len")));
        assert!(!bc("0(<<5#d4#=400)").holds_at(data, 2));
        assert!(!bc("0(>>1#ib8#>0)").holds_at(data, data.len() - 4));
        // No digit at all is no number.
        assert!(!bc("0(>>0#d4#>0)").holds_at(data, 0));
    }
}
