//! ClamAV's hex body-signature language (`.ndb` bodies and `.ldb` subsignatures).
//!
//! Written by hand: no crate reads this format. A pattern compiles to a list of elements; the
//! longest run of fully fixed bytes becomes its *anchor*, which the scanner finds for every
//! signature at once with Aho-Corasick. A hit is then verified outwards from the anchor
//! (backwards to the start, forwards to the end), with a step budget so that a signature full
//! of `*` cannot make one file take quadratic time.

use std::fmt;

/// Most bytes a pattern may spell out; ClamAV's own limits are of this order.
const MAX_PATTERN_ELEMS: usize = 64 * 1024;
/// Verification steps allowed per anchor hit before the hit is given up as no match.
const STEP_BUDGET: u32 = 200_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Elem {
    /// One byte: `data & mask == value`. `nocase` compares ASCII letters without case.
    Byte { value: u8, mask: u8, nocase: bool },
    /// `(aa|bbcc)`: one of several fixed strings; `!(aa|bb)`: one byte that is none of them.
    Alt { options: Vec<Vec<u8>>, negate: bool },
    /// `{n-m}`, `*` (max `None`), `??`-runs are kept as bytes with mask 0.
    Gap { min: u32, max: Option<u32> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    pub elems: Vec<Elem>,
    /// Elements `[start, start + len)` are fixed bytes: the literal the scanner looks for.
    pub anchor: Option<(usize, usize)>,
    pub nocase: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    /// Character position in the hex string.
    pub column: usize,
    pub message: String,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "column {}: {}", self.column + 1, self.message)
    }
}

/// How `::` modifiers of a logical subsignature change the pattern.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Modifiers {
    pub nocase: bool,
    pub wide: bool,
    pub ascii: bool,
    pub fullword: bool,
}

impl Modifiers {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut m = Modifiers::default();
        for c in s.chars() {
            match c {
                'i' => m.nocase = true,
                'w' => m.wide = true,
                'a' => m.ascii = true,
                'f' => m.fullword = true,
                other => return Err(format!("unknown subsignature modifier '{other}'")),
            }
        }
        Ok(m)
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn err(column: usize, message: impl Into<String>) -> PatternError {
    PatternError {
        column,
        message: message.into(),
    }
}

fn parse_hex_string(s: &[u8], base: usize) -> Result<Vec<u8>, PatternError> {
    if s.len() % 2 != 0 {
        return Err(err(base, "odd number of hex digits"));
    }
    s.chunks(2)
        .enumerate()
        .map(|(i, pair)| match (hex_val(pair[0]), hex_val(pair[1])) {
            (Some(h), Some(l)) => Ok(h << 4 | l),
            _ => Err(err(base + i * 2, "expected hex digits")),
        })
        .collect()
}

fn parse_number(s: &[u8], column: usize) -> Result<u32, PatternError> {
    std::str::from_utf8(s)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            err(
                column,
                format!("bad number {:?}", String::from_utf8_lossy(s)),
            )
        })
}

impl Pattern {
    pub fn parse(hex: &str) -> Result<Self, PatternError> {
        Self::parse_with(hex, Modifiers::default())
    }

    pub fn parse_with(hex: &str, modifiers: Modifiers) -> Result<Self, PatternError> {
        let s = hex.as_bytes();
        let mut elems: Vec<Elem> = Vec::new();
        let mut i = 0;
        while i < s.len() {
            if elems.len() > MAX_PATTERN_ELEMS {
                return Err(err(i, "pattern too long"));
            }
            match s[i] {
                b'*' => {
                    push_gap(&mut elems, 0, None);
                    i += 1;
                }
                open @ (b'{' | b'[') => {
                    let close = if open == b'{' { b'}' } else { b']' };
                    let end = s[i..]
                        .iter()
                        .position(|&c| c == close)
                        .map(|p| i + p)
                        .ok_or_else(|| err(i, format!("'{}' is not closed", open as char)))?;
                    let body = &s[i + 1..end];
                    let (min, max) = match body.iter().position(|&c| c == b'-') {
                        None => {
                            let n = parse_number(body, i + 1)?;
                            (n, Some(n))
                        }
                        Some(0) => (0, Some(parse_number(&body[1..], i + 2)?)),
                        Some(p) if p == body.len() - 1 => (parse_number(&body[..p], i + 1)?, None),
                        Some(p) => {
                            let lo = parse_number(&body[..p], i + 1)?;
                            let hi = parse_number(&body[p + 1..], i + p + 2)?;
                            if hi < lo {
                                return Err(err(i, format!("range {lo}-{hi} is backwards")));
                            }
                            (lo, Some(hi))
                        }
                    };
                    push_gap(&mut elems, min, max);
                    i = end + 1;
                }
                b'!' | b'(' => {
                    let negate = s[i] == b'!';
                    let open = if negate { i + 1 } else { i };
                    if s.get(open) != Some(&b'(') {
                        return Err(err(i, "'!' must be followed by '('"));
                    }
                    let end = s[open..]
                        .iter()
                        .position(|&c| c == b')')
                        .map(|p| open + p)
                        .ok_or_else(|| err(open, "'(' is not closed"))?;
                    let body = &s[open + 1..end];
                    if body == b"B" || body == b"L" || body == b"W" {
                        return Err(err(
                            open,
                            format!("boundary ({}) is not supported", body[0] as char),
                        ));
                    }
                    if body
                        .iter()
                        .any(|c| matches!(c, b'?' | b'*' | b'{' | b'[' | b'('))
                    {
                        return Err(err(open, "wildcards inside alternatives are not supported"));
                    }
                    let mut options = Vec::new();
                    let mut col = open + 1;
                    for part in body.split(|&c| c == b'|') {
                        if part.is_empty() {
                            return Err(err(col, "empty alternative"));
                        }
                        options.push(parse_hex_string(part, col)?);
                        col += part.len() + 1;
                    }
                    if negate && options.iter().any(|o| o.len() != 1) {
                        return Err(err(i, "negated alternatives must be single bytes"));
                    }
                    let options = if modifiers.wide {
                        options.iter().map(|o| widen(o)).collect()
                    } else {
                        options
                    };
                    elems.push(Elem::Alt { options, negate });
                    i = end + 1;
                }
                _ => {
                    let (hi, lo) = match (s.get(i), s.get(i + 1)) {
                        (Some(&h), Some(&l)) => (h, l),
                        _ => return Err(err(i, "odd number of hex digits")),
                    };
                    let (value, mask) = match (hi, lo) {
                        (b'?', b'?') => (0, 0),
                        (b'?', l) => (
                            hex_val(l).ok_or_else(|| err(i + 1, "expected hex digit"))?,
                            0x0f,
                        ),
                        (h, b'?') => (
                            hex_val(h).ok_or_else(|| err(i, "expected hex digit"))? << 4,
                            0xf0,
                        ),
                        (h, l) => match (hex_val(h), hex_val(l)) {
                            (Some(h), Some(l)) => (h << 4 | l, 0xff),
                            _ => {
                                return Err(err(
                                    i,
                                    format!(
                                        "unexpected character '{}'",
                                        String::from_utf8_lossy(&s[i..i + 2])
                                    ),
                                ))
                            }
                        },
                    };
                    let nocase = modifiers.nocase && mask == 0xff && value.is_ascii_alphabetic();
                    elems.push(Elem::Byte {
                        value,
                        mask,
                        nocase,
                    });
                    if modifiers.wide {
                        elems.push(Elem::Byte {
                            value: 0,
                            mask: 0xff,
                            nocase: false,
                        });
                    }
                    i += 2;
                }
            }
        }
        if !elems.iter().any(|e| !matches!(e, Elem::Gap { .. })) {
            return Err(err(0, "pattern has no bytes"));
        }
        if matches!(elems.first(), Some(Elem::Gap { .. }))
            || matches!(elems.last(), Some(Elem::Gap { .. }))
        {
            return Err(err(0, "pattern may not start or end with a wildcard gap"));
        }
        let anchor = find_anchor(&elems);
        Ok(Pattern {
            elems,
            anchor,
            nocase: modifiers.nocase,
        })
    }

    /// The literal bytes of the anchor (lower-cased for no-case patterns).
    pub fn anchor_bytes(&self) -> Option<Vec<u8>> {
        let (start, len) = self.anchor?;
        Some(
            self.elems[start..start + len]
                .iter()
                .map(|e| match e {
                    Elem::Byte {
                        value,
                        nocase: true,
                        ..
                    } => value.to_ascii_lowercase(),
                    Elem::Byte { value, .. } => *value,
                    _ => 0,
                })
                .collect(),
        )
    }

    /// Every start offset `s` (within `starts`) at which the pattern matches `data`, given that
    /// the anchor was found at `anchor_pos`; calls `found(start)` until it returns false.
    pub fn verify_at(
        &self,
        data: &[u8],
        anchor_pos: usize,
        starts: (u64, u64),
        memo: &mut Memo,
        found: &mut dyn FnMut(usize) -> bool,
    ) {
        let Some((a_start, a_len)) = self.anchor else {
            return;
        };
        let after = anchor_pos + a_len;
        if !match_forward(
            &self.elems[a_start + a_len..],
            data,
            after,
            &mut Walk::new(Some(memo)),
        ) {
            return;
        }
        match_backward(
            &self.elems[..a_start],
            data,
            anchor_pos,
            &mut Walk::new(None),
            &mut |start| {
                if (start as u64) < starts.0 || (start as u64) > starts.1 {
                    return true;
                }
                found(start)
            },
        );
    }

    /// Whether the pattern matches starting exactly at `pos` (for patterns with no anchor).
    pub fn matches_at(&self, data: &[u8], pos: usize) -> bool {
        match_forward(&self.elems, data, pos, &mut Walk::new(None))
    }
}

fn widen(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|&b| [b, 0]).collect()
}

fn push_gap(elems: &mut Vec<Elem>, min: u32, max: Option<u32>) {
    if let Some(Elem::Gap {
        min: pmin,
        max: pmax,
    }) = elems.last_mut()
    {
        *pmin = pmin.saturating_add(min);
        *pmax = match (*pmax, max) {
            (Some(a), Some(b)) => Some(a.saturating_add(b)),
            _ => None,
        };
        return;
    }
    elems.push(Elem::Gap { min, max });
}

fn find_anchor(elems: &[Elem]) -> Option<(usize, usize)> {
    let mut best: Option<(usize, usize)> = None;
    let mut run_start = 0;
    let mut run_len = 0;
    for (i, e) in elems.iter().enumerate() {
        if matches!(e, Elem::Byte { mask: 0xff, .. }) {
            if run_len == 0 {
                run_start = i;
            }
            run_len += 1;
            if best.is_none_or(|(_, l)| run_len > l) {
                best = Some((run_start, run_len));
            }
        } else {
            run_len = 0;
        }
    }
    best
}

fn byte_matches(elem: &Elem, b: u8) -> bool {
    match elem {
        Elem::Byte {
            value,
            mask,
            nocase,
        } => {
            if *nocase {
                b.eq_ignore_ascii_case(value)
            } else {
                b & mask == *value
            }
        }
        _ => false,
    }
}

fn alt_len_matches<'a>(
    options: &'a [Vec<u8>],
    negate: bool,
    data: &[u8],
    pos: usize,
) -> impl Iterator<Item = usize> + 'a {
    let rest = data.get(pos..).unwrap_or(&[]);
    let negated_ok = negate
        && rest
            .first()
            .is_some_and(|b| !options.iter().any(|o| o[0] == *b));
    let negated = negated_ok.then_some(1usize);
    let plain: Vec<usize> = if negate {
        Vec::new()
    } else {
        options
            .iter()
            .filter(|o| rest.starts_with(o))
            .map(|o| o.len())
            .collect()
    };
    negated.into_iter().chain(plain)
}

/// Verification state: a step budget, and the (elements left, position) states already
/// explored, so that runs of `*` cost O(elements x length) rather than exponential time.
struct Walk<'m> {
    budget: u32,
    seen: rustc_hash::FxHashSet<(usize, usize)>,
    /// Forward states after a gap known not to match; they do not depend on where the anchor
    /// was, so the caller keeps them across all hits of one pattern in one buffer.
    failed: Option<&'m mut Memo>,
}

/// Failed forward states of one pattern over one buffer (see [`Pattern::verify_at`]).
#[derive(Debug, Default)]
pub struct Memo(rustc_hash::FxHashSet<(usize, usize)>);

impl<'m> Walk<'m> {
    fn new(failed: Option<&'m mut Memo>) -> Self {
        Walk {
            budget: STEP_BUDGET,
            seen: Default::default(),
            failed,
        }
    }

    fn known_failure(&self, elems_left: usize, pos: usize) -> bool {
        self.failed
            .as_ref()
            .is_some_and(|m| m.0.contains(&(elems_left, pos)))
    }

    fn record_failure(&mut self, elems_left: usize, pos: usize) {
        if let Some(m) = self.failed.as_mut() {
            m.0.insert((elems_left, pos));
        }
    }

    /// False when out of budget or the state was explored before.
    fn enter(&mut self, elems_left: usize, pos: usize) -> bool {
        if self.budget == 0 {
            return false;
        }
        self.budget -= 1;
        self.seen.insert((elems_left, pos))
    }
}

fn match_forward(elems: &[Elem], data: &[u8], pos: usize, walk: &mut Walk<'_>) -> bool {
    let Some(first) = elems.first() else {
        return true;
    };
    if !walk.enter(elems.len(), pos) {
        return false;
    }
    match first {
        Elem::Byte { .. } => {
            data.get(pos).is_some_and(|&b| byte_matches(first, b))
                && match_forward(&elems[1..], data, pos + 1, walk)
        }
        Elem::Alt { options, negate } => {
            for len in alt_len_matches(options, *negate, data, pos) {
                if match_forward(&elems[1..], data, pos + len, walk) {
                    return true;
                }
            }
            false
        }
        Elem::Gap { min, max } => {
            let lo = pos + *min as usize;
            let hi = match max {
                Some(m) => (pos + *m as usize).min(data.len()),
                None => data.len(),
            };
            let rest = &elems[1..];
            let mut p = lo;
            while p <= hi {
                if walk.budget == 0 {
                    return false;
                }
                // Jump straight to the next place the following fixed byte occurs.
                if let Some(Elem::Byte {
                    value,
                    mask: 0xff,
                    nocase: false,
                }) = rest.first()
                {
                    match memchr::memchr(
                        *value,
                        data.get(p..(hi + 1).min(data.len())).unwrap_or(&[]),
                    ) {
                        Some(off) => p += off,
                        None => return false,
                    }
                }
                if !walk.known_failure(rest.len(), p) {
                    if match_forward(rest, data, p, walk) {
                        return true;
                    }
                    if walk.budget > 0 {
                        walk.record_failure(rest.len(), p);
                    }
                }
                p += 1;
            }
            false
        }
    }
}

/// Matches `elems` so that they end just before `end`; reports each possible start.
/// Returns false once `found` asked to stop.
fn match_backward(
    elems: &[Elem],
    data: &[u8],
    end: usize,
    walk: &mut Walk<'_>,
    found: &mut dyn FnMut(usize) -> bool,
) -> bool {
    let Some(last) = elems.last() else {
        return found(end);
    };
    if !walk.enter(elems.len(), end) {
        // Explored before (its starts were reported then) or out of budget.
        return walk.budget > 0;
    }
    let rest = &elems[..elems.len() - 1];
    match last {
        Elem::Byte { .. } => {
            if end == 0 || !byte_matches(last, data[end - 1]) {
                return true;
            }
            match_backward(rest, data, end - 1, walk, found)
        }
        Elem::Alt { options, negate } => {
            if *negate {
                if end > 0 && !options.iter().any(|o| o[0] == data[end - 1]) {
                    return match_backward(rest, data, end - 1, walk, found);
                }
                return true;
            }
            for o in options {
                if end >= o.len()
                    && data[end - o.len()..end] == o[..]
                    && !match_backward(rest, data, end - o.len(), walk, found)
                {
                    return false;
                }
            }
            true
        }
        Elem::Gap { min, max } => {
            let Some(hi) = end.checked_sub(*min as usize) else {
                return true;
            };
            let lo = match max {
                Some(m) => end.saturating_sub(*m as usize),
                None => 0,
            };
            let mut p = hi;
            loop {
                if walk.budget == 0 {
                    return false;
                }
                if !match_backward(rest, data, p, walk, found) {
                    return false;
                }
                if p == lo {
                    return true;
                }
                p -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(hex: &str, data: &[u8]) -> Vec<usize> {
        let p = Pattern::parse(hex).expect("pattern parses");
        let anchor = p.anchor_bytes().expect("anchor");
        let mut out = Vec::new();
        let mut memo = Memo::default();
        for (i, w) in data.windows(anchor.len()).enumerate() {
            if w == &anchor[..] {
                p.verify_at(data, i, (0, u64::MAX), &mut memo, &mut |s| {
                    out.push(s);
                    true
                });
            }
        }
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn fixed_wildcards_and_nibbles() {
        assert_eq!(find("414243", b"xxABCxABC"), vec![2, 6]);
        assert_eq!(find("41??43", b"AxC AC A-C"), vec![0, 7]);
        assert_eq!(find("4?4243", b"ABC OBC QBC"), vec![0, 4]);
        assert_eq!(find("?14243", b"ABC QBC"), vec![0, 4]);
        assert_eq!(find("4142?3", b"ABC ABS"), vec![0, 4]);
    }

    #[test]
    fn gaps_and_ranges() {
        assert_eq!(find("4142{2}4344", b"ABxxCD ABxCD"), vec![0]);
        assert_eq!(find("4142{-2}4344", b"ABCD ABxCD ABxxxCD"), vec![0, 5]);
        assert_eq!(find("4142{2-}4344", b"ABxCD ABxxxxxCD"), vec![0, 6]);
        assert_eq!(find("4142{2-}4344", b"ABxCD"), Vec::<usize>::new());
        assert_eq!(
            find("4142{1-2}4344", b"ABCD ABxCD ABxxCD ABxxxCD"),
            vec![5, 11]
        );
        assert_eq!(find("4142*4344", b"AB......CD"), vec![0]);
        assert_eq!(find("4142*4344", b"CD AB"), Vec::<usize>::new());
        assert_eq!(find("4142[1-2]4344", b"ABxCD"), vec![0]);
    }

    #[test]
    fn alternatives() {
        assert_eq!(find("4142(43|4445)46", b"ABCF ABDEF ABDF"), vec![0, 5]);
        assert_eq!(find("(41|42)434445", b"ACDE BCDE CCDE"), vec![0, 5]);
        assert_eq!(find("4142!(43|44)4546", b"ABCEF ABXEF"), vec![6]);
    }

    #[test]
    fn modifiers() {
        let m = Modifiers::parse("i").expect("modifiers");
        let p = Pattern::parse_with("616263", m).expect("parses");
        assert!(p.matches_at(b"xAbC", 1));
        let w = Modifiers::parse("w").expect("modifiers");
        let p = Pattern::parse_with("616263", w).expect("parses");
        assert!(p.matches_at(b"a\0b\0c\0", 0));
        assert!(Modifiers::parse("q").is_err());
    }

    #[test]
    fn errors_name_the_column() {
        let e = Pattern::parse("4142zz").expect_err("bad hex");
        assert_eq!(e.column, 4);
        assert!(Pattern::parse("414").is_err());
        assert!(Pattern::parse("41{3").is_err());
        assert!(Pattern::parse("*4142").is_err());
        assert!(Pattern::parse("41{5-2}42").is_err());
        assert!(Pattern::parse("41(42|)43").is_err());
        assert!(Pattern::parse("").is_err());
    }

    #[test]
    fn backtracking_is_bounded() {
        let data = vec![b'A'; 2000];
        assert!(find("41*41*41*41*42", &data).is_empty());
    }
}
