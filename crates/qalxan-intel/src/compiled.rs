//! The lists the defences match against: built from the blocking indicators, looked up on
//! every request and every file.
//!
//! Exact values other than addresses (hashes, domains, URLs, e-mail addresses...) share one
//! open-addressing table of 128-bit keys ([`KeySet`]); addresses are in hash sets of integers;
//! CIDR ranges are merged into sorted disjoint intervals and found by binary search, O(log n).
//! The text form ([`Lists::to_text`]) is what the server sends to gateways and scanners: one
//! `kind value` per line, easy to diff, cache and check by hand.

use crate::observable::{Kind, Observable};
use ipnet::IpNet;
use rustc_hash::FxHashSet;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;

#[derive(Debug, Default, Clone)]
pub struct Lists {
    v4: FxHashSet<u32>,
    v6: FxHashSet<u128>,
    v4_ranges: Vec<(u32, u32)>,
    v6_ranges: Vec<(u128, u128)>,
    exact: KeySet,
    /// Which digests are listed: (MD5, SHA-1, SHA-256).
    hash_kinds: (bool, bool, bool),
    len: usize,
}

/// Every exact value as a 128-bit key in one open-addressing table with linear probing, at
/// most half full. Why not a hash set of the values: at ten million entries a lookup is bound
/// by memory latency, and a set of boxed strings touches three cache lines (control bytes,
/// slot, string) where this touches one, in a quarter of the memory for hashes.
///
/// Keys: for text values a 128-bit SipHash under keys drawn when the lists are built (an
/// outsider cannot aim a collision at a listed value), for digests their first 64 bits beside
/// a 64-bit keyed SipHash of the whole digest; each with its kind hashed in. A false match
/// needs two 128-bit keys to agree: it does not happen.
#[derive(Debug, Clone, Default)]
struct KeySet {
    slots: Vec<u128>,
    /// Keys of the two SipHash halves for text values.
    text: (RandomState, RandomState),
}

/// An empty slot; a key that happens to be 0 is stored as 1.
const EMPTY: u128 = 0;

fn slot_of(key: u128, mask: usize) -> usize {
    let folded = (key as u64) ^ ((key >> 64) as u64);
    (folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize & mask
}

impl KeySet {
    fn build(mut keys: Vec<u128>, text: (RandomState, RandomState)) -> KeySet {
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return KeySet {
                slots: Vec::new(),
                text,
            };
        }
        let capacity = (keys.len() * 2).next_power_of_two();
        let mask = capacity - 1;
        let mut slots = vec![EMPTY; capacity];
        for key in keys {
            let mut i = slot_of(key, mask);
            while slots[i] != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = key;
        }
        KeySet { slots, text }
    }

    fn contains(&self, key: u128) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let mask = self.slots.len() - 1;
        let mut i = slot_of(key, mask);
        loop {
            match self.slots[i] {
                k if k == key => return true,
                EMPTY => return false,
                _ => i = (i + 1) & mask,
            }
        }
    }

    fn text_key(&self, kind: Kind, value: &str) -> u128 {
        let hi = self.text.0.hash_one((kind as u8, value));
        let lo = self.text.1.hash_one((kind as u8, value));
        nonzero((u128::from(hi) << 64) | u128::from(lo))
    }

    /// A digest's key: its first 64 bits beside a keyed SipHash of all of it, so digests
    /// that share a prefix (real files do not, made-up hex strings may) stay apart, for the
    /// price of one hash rather than two.
    fn digest_key(&self, kind: Kind, digest: &[u8]) -> u128 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        let lo = self.text.1.hash_one((kind as u8, digest));
        nonzero((u128::from(u64::from_be_bytes(first)) << 64) | u128::from(lo))
    }

    fn bytes(&self) -> usize {
        self.slots.len() * std::mem::size_of::<u128>()
    }
}

fn nonzero(key: u128) -> u128 {
    if key == EMPTY {
        1
    } else {
        key
    }
}

/// Hex (either case) to bytes, without allocating: this runs on every lookup.
fn hex_bytes<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = (nibble(s[i * 2])? << 4) | nibble(s[i * 2 + 1])?;
    }
    Some(out)
}

fn merge<T: Copy + Ord + num_like::Succ>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1.succ() => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

mod num_like {
    pub trait Succ {
        fn succ(self) -> Self;
    }
    impl Succ for u32 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl Succ for u128 {
        fn succ(self) -> Self {
            self.saturating_add(1)
        }
    }
}

fn in_ranges<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

impl Lists {
    /// Builds the lists from normalised observables (as the store holds them).
    pub fn build<'a>(items: impl IntoIterator<Item = &'a Observable>) -> Lists {
        let mut l = Lists::default();
        let mut r4 = Vec::new();
        let mut r6 = Vec::new();
        let mut keys = Vec::new();
        for o in items {
            l.len += 1;
            l.insert(o, &mut r4, &mut r6, &mut keys);
        }
        l.v4_ranges = merge(r4);
        l.v6_ranges = merge(r6);
        let text = std::mem::take(&mut l.exact.text);
        l.exact = KeySet::build(keys, text);
        l
    }

    fn insert(
        &mut self,
        o: &Observable,
        r4: &mut Vec<(u32, u32)>,
        r6: &mut Vec<(u128, u128)>,
        keys: &mut Vec<u128>,
    ) {
        let v = o.value.as_str();
        match o.kind {
            Kind::Ipv4 | Kind::Ipv6 => match v.parse::<IpAddr>() {
                Ok(IpAddr::V4(a)) => {
                    self.v4.insert(u32::from(a));
                }
                Ok(IpAddr::V6(a)) => {
                    self.v6.insert(u128::from(a));
                }
                Err(_) => {}
            },
            Kind::Cidr => match v.parse::<IpNet>() {
                Ok(IpNet::V4(n)) => r4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                Ok(IpNet::V6(n)) => r6.push((u128::from(n.network()), u128::from(n.broadcast()))),
                Err(_) => {}
            },
            Kind::Md5 => {
                if let Some(h) = hex_bytes::<16>(v) {
                    keys.push(self.exact.digest_key(Kind::Md5, &h));
                    self.hash_kinds.0 = true;
                }
            }
            Kind::Sha1 => {
                if let Some(h) = hex_bytes::<20>(v) {
                    keys.push(self.exact.digest_key(Kind::Sha1, &h));
                    self.hash_kinds.1 = true;
                }
            }
            Kind::Sha256 => {
                if let Some(h) = hex_bytes::<32>(v) {
                    keys.push(self.exact.digest_key(Kind::Sha256, &h));
                    self.hash_kinds.2 = true;
                }
            }
            k => keys.push(self.exact.text_key(k, v)),
        }
    }

    /// Bytes the exact-value table takes (the addresses' sets and ranges aside).
    pub fn exact_bytes(&self) -> usize {
        self.exact.bytes()
    }

    /// How many entries the lists were built from.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn contains_ip(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let x = u32::from(a);
                self.v4.contains(&x) || in_ranges(&self.v4_ranges, x)
            }
            IpAddr::V6(a) => {
                if let Some(v4) = a.to_ipv4_mapped() {
                    return self.contains_ip(IpAddr::V4(v4));
                }
                let x = u128::from(a);
                self.v6.contains(&x) || in_ranges(&self.v6_ranges, x)
            }
        }
    }

    /// The domain or one of its parents is listed (`a.evil.example` is blocked by `evil.example`).
    pub fn contains_domain(&self, domain: &str) -> bool {
        let d = domain.trim_end_matches('.');
        let mut rest = d;
        loop {
            if self.contains_text(Kind::Domain, rest) {
                return true;
            }
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return false,
            }
        }
    }

    /// A normalised URL is listed, or its host is.
    pub fn contains_url(&self, url: &str) -> bool {
        if self.contains_text(Kind::Url, url) {
            return true;
        }
        // A normalised URL is `scheme://[user@]host[:port]/...`: the host is sliced out rather
        // than parsed again.
        let Some((_, rest)) = url.split_once("://") else {
            return false;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.rsplit_once(':') {
            Some((h, port)) if !h.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        self.contains_domain(host)
    }

    fn contains_text(&self, kind: Kind, value: &str) -> bool {
        !self.exact.slots.is_empty() && self.exact.contains(self.exact.text_key(kind, value))
    }

    /// Which digests the lists hold any of (MD5, SHA-1, SHA-256): a scanner computes only
    /// those.
    pub fn hash_kinds(&self) -> (bool, bool, bool) {
        self.hash_kinds
    }

    pub fn contains_md5(&self, digest: &[u8; 16]) -> bool {
        !self.exact.slots.is_empty()
            && self
                .exact
                .contains(self.exact.digest_key(Kind::Md5, digest))
    }

    pub fn contains_sha1(&self, digest: &[u8; 20]) -> bool {
        !self.exact.slots.is_empty()
            && self
                .exact
                .contains(self.exact.digest_key(Kind::Sha1, digest))
    }

    pub fn contains_sha256(&self, digest: &[u8; 32]) -> bool {
        !self.exact.slots.is_empty()
            && self
                .exact
                .contains(self.exact.digest_key(Kind::Sha256, digest))
    }

    pub fn contains_hash(&self, kind: Kind, hex: &str) -> bool {
        match kind {
            Kind::Md5 => hex_bytes::<16>(hex).is_some_and(|h| self.contains_md5(&h)),
            Kind::Sha1 => hex_bytes::<20>(hex).is_some_and(|h| self.contains_sha1(&h)),
            Kind::Sha256 => hex_bytes::<32>(hex).is_some_and(|h| self.contains_sha256(&h)),
            _ => false,
        }
    }

    /// Whether a normalised observable is blocked by the lists.
    pub fn matches(&self, o: &Observable) -> bool {
        match o.kind {
            Kind::Ipv4 | Kind::Ipv6 => o.value.parse().is_ok_and(|ip| self.contains_ip(ip)),
            Kind::Cidr => o
                .value
                .parse::<IpNet>()
                .is_ok_and(|n| self.contains_ip(n.network()) && self.contains_ip(n.broadcast())),
            Kind::Domain => self.contains_domain(&o.value),
            Kind::Url => self.contains_url(&o.value),
            Kind::Md5 | Kind::Sha1 | Kind::Sha256 => self.contains_hash(o.kind, &o.value),
            Kind::Email => {
                self.contains_text(Kind::Email, &o.value)
                    || o.value
                        .rsplit_once('@')
                        .is_some_and(|(_, d)| self.contains_domain(d))
            }
            k => self.contains_text(k, &o.value),
        }
    }

    /// The text form: a header line, then `kind value` per line, sorted.
    pub fn to_text(items: &[Observable], version: &str) -> String {
        let mut lines: Vec<String> = items
            .iter()
            .filter(|o| !matches!(o.kind, Kind::Yara | Kind::StixPattern))
            .map(|o| format!("{} {}", o.kind, o.value))
            .collect();
        lines.sort_unstable();
        lines.dedup();
        let mut out = format!(
            "# qalxan-lists 1 version={version} entries={}\n",
            lines.len()
        );
        for l in lines {
            out.push_str(&l);
            out.push('\n');
        }
        out
    }

    /// Parses the text form; a bad line is an error naming it.
    pub fn from_text(text: &str) -> Result<Lists, crate::FormatError> {
        let mut items = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (kind, value) = line.split_once(' ').ok_or_else(|| {
                crate::FormatError::new(format!("line {}", n + 1), "expected `kind value`")
            })?;
            let kind: Kind = kind.parse().map_err(|e: crate::ObservableError| {
                crate::FormatError::new(format!("line {}", n + 1), e.reason)
            })?;
            items.push(Observable {
                kind,
                value: value.to_owned(),
            });
        }
        Ok(Lists::build(&items))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_table_finds_exactly_what_it_holds() {
        let mut items = Vec::new();
        for i in 0..20_000u32 {
            let d: String = (0..32)
                .map(|j| {
                    format!(
                        "{:02x}",
                        (i.wrapping_mul(2654435761) >> (j % 4 * 8)) as u8 ^ j as u8
                    )
                })
                .collect();
            items.push(Observable::new(Kind::Sha256, &d).unwrap());
            items.push(Observable::new(Kind::Domain, &format!("host{i}.bad.example")).unwrap());
        }
        let l = Lists::build(&items);
        let held: std::collections::HashSet<&str> =
            items.iter().map(|o| o.value.as_str()).collect();
        assert_eq!(l.hash_kinds(), (false, false, true));
        assert!(items.iter().all(|o| l.matches(o)));
        let absent = items
            .iter()
            .map(|o| {
                let mut v = o.value.clone();
                let last = v.pop().unwrap();
                v.push(if last == '0' { '1' } else { '0' });
                Observable {
                    kind: o.kind,
                    value: v,
                }
            })
            .filter(|o| !held.contains(o.value.as_str()))
            .filter(|o| l.matches(o))
            .count();
        assert_eq!(absent, 0);
        // A digest is its kind's: the same bytes as another kind do not match.
        let md5 = &items[0].value[..32];
        assert!(!l.contains_hash(Kind::Md5, md5));
        assert!(
            l.exact_bytes() <= 4 * 40_000 * 16,
            "at most half full, rounded to a power of two"
        );
        assert!(!Lists::default().contains_domain("x.example"));
    }

    #[test]
    fn lookups() {
        let items: Vec<Observable> = [
            (Kind::Ipv4, "203.0.113.7"),
            (Kind::Cidr, "198.51.100.0/24"),
            (Kind::Cidr, "198.51.101.0/24"),
            (Kind::Cidr, "2001:db8:1::/48"),
            (Kind::Domain, "evil.example"),
            (Kind::Url, "http://bad.example/x"),
            (
                Kind::Sha256,
                "aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f",
            ),
            (Kind::Phone, "+994125551234"),
        ]
        .iter()
        .map(|(k, v)| Observable::new(*k, v).unwrap())
        .collect();
        let l = Lists::build(&items);
        assert_eq!(l.v4_ranges.len(), 1, "adjacent ranges merge");
        let ip = |s: &str| l.contains_ip(s.parse().unwrap());
        assert!(
            ip("203.0.113.7")
                && ip("198.51.101.255")
                && ip("2001:db8:1::9")
                && ip("::ffff:203.0.113.7")
        );
        assert!(!ip("203.0.113.8") && !ip("198.51.102.0") && !ip("2001:db8:2::1"));
        assert!(l.contains_domain("evil.example") && l.contains_domain("a.b.evil.example"));
        assert!(!l.contains_domain("notevil.example") && !l.contains_domain("example"));
        assert!(
            l.contains_url("http://bad.example/x") && l.contains_url("https://cdn.evil.example/y")
        );
        assert!(!l.contains_url("http://bad.example/y"));
        assert!(l.contains_hash(
            Kind::Sha256,
            "AEC070645FE53EE3B3763059376134F058CC337247C978ADD178B6CCDFB0019F"
        ));
        assert!(l.matches(&Observable::new(Kind::Phone, "+994 12 555 12 34").unwrap()));
        let text = Lists::to_text(&items, "7");
        let back = Lists::from_text(&text).unwrap();
        assert!(back.contains_domain("x.evil.example") && back.len() == items.len());
        assert!(Lists::from_text("bogus line").is_err());
    }
}
