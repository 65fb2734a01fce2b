//! Hex digests to bytes: hash signatures and hash indicators are written in hex, and both the
//! scan engine's loader (a million lines) and the blocklist's lookups (every file, every
//! request) decode them, so without allocating and without a branch per digit.

/// Each byte's value as a hex digit; 0xff marks a byte that is not one.
const DIGIT: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Exactly `2 * N` hex digits (either case) as `N` bytes; `None` for any other length or a
/// character that is not a hex digit.
#[inline]
pub fn decode<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    for (b, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (DIGIT[usize::from(pair[0])], DIGIT[usize::from(pair[1])]);
        bad |= hi | lo;
        *b = (hi << 4) | (lo & 0x0f);
    }
    // Any character that is not a digit set the high bits of `bad`.
    (bad & 0xf0 == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn digits_of_either_case_and_nothing_else() {
        assert_eq!(decode::<2>("0aF9"), Some([0x0a, 0xf9]));
        assert_eq!(decode::<2>("0aF"), None);
        assert_eq!(decode::<2>("0aF9a"), None);
        assert_eq!(decode::<2>("0g00"), None);
        assert_eq!(decode::<2>("00 0"), None);
        assert_eq!(decode::<1>("é"), None, "two bytes that are not digits");
        assert_eq!(decode::<0>(""), Some([]));
    }
}
