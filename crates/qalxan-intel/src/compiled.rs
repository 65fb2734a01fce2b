//! The lists the defences match against: built from the blocking indicators, looked up on
//! every request and every file.
//!
//! Exact values (addresses, hashes, domains, URLs, e-mail addresses...) share one
//! open-addressing table of 128-bit keys ([`KeySet`]); CIDR ranges are merged into sorted
//! disjoint intervals and found by binary search, O(log n). [`Lists::matches_each`] looks up
//! many values at once, overlapping their cache misses.
//! The text form ([`Lists::to_text`]) is what the server sends to gateways and scanners: one
//! `kind value` per line, easy to diff, cache and check by hand.

use crate::observable::{Kind, Observable};
use ipnet::IpNet;
use siphasher::sip128::{Hasher128, SipHasher13};
use std::hash::Hasher;
use std::net::IpAddr;

#[derive(Debug, Default, Clone)]
pub struct Lists {
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
/// Keys: the 128-bit SipHash-1-3 of the value's kind and bytes (a digest's raw bytes, an
/// address's octets, other values' text) under a key drawn when the lists are built, so an
/// outsider cannot aim a collision at a listed value. A false match needs two 128-bit keys to
/// agree: it does not happen.
#[derive(Debug, Clone)]
struct KeySet {
    slots: Vec<u128>,
    /// The SipHash key.
    secret: (u64, u64),
}

impl Default for KeySet {
    fn default() -> KeySet {
        KeySet {
            slots: Vec::new(),
            secret: (rand::random(), rand::random()),
        }
    }
}

/// The keys of one lookup: a domain and its parents fit without allocating.
type Keys = smallvec::SmallVec<[u128; 8]>;

/// An empty slot; a key that happens to be 0 is stored as 1.
const EMPTY: u128 = 0;

/// The key's home slot in a table of `len` slots (a power of two): keys are uniform already
/// (keyed SipHash), so their top bits.
fn slot_of(key: u128, len: usize) -> usize {
    (key >> 64) as usize & (len - 1)
}

impl KeySet {
    fn build(mut keys: Vec<u128>, secret: (u64, u64)) -> KeySet {
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return KeySet {
                slots: Vec::new(),
                secret,
            };
        }
        let len = (keys.len() * 2).next_power_of_two();
        let mut slots = vec![EMPTY; len];
        for key in keys {
            let mut i = slot_of(key, len);
            while slots[i] != EMPTY {
                i = (i + 1) & (len - 1);
            }
            slots[i] = key;
        }
        KeySet { slots, secret }
    }

    fn contains(&self, key: u128) -> bool {
        if self.slots.is_empty() {
            return false;
        }
        let len = self.slots.len();
        let mut i = slot_of(key, len);
        loop {
            match self.slots[i] {
                k if k == key => return true,
                EMPTY => return false,
                _ => i = (i + 1) & (len - 1),
            }
        }
    }

    /// Loads the first slot of each key without looking at it, so that the cache misses of
    /// many keys are in flight together; the probes that follow find their lines in cache.
    fn touch(&self, keys: &[u128]) {
        if self.slots.is_empty() || keys.len() < 2 {
            return;
        }
        let len = self.slots.len();
        let mut folded = 0u128;
        for &key in keys {
            folded ^= self.slots[slot_of(key, len)];
        }
        std::hint::black_box(folded);
    }

    /// Whether any of `keys` is held, after [`KeySet::touch`].
    fn any_loaded(&self, keys: &[u128]) -> bool {
        keys.iter().any(|&k| self.contains(k))
    }

    /// Whether any of `keys` is held: all their slots are loaded before the first is examined.
    fn any(&self, keys: &[u128]) -> bool {
        self.touch(keys);
        self.any_loaded(keys)
    }

    fn key(&self, kind: Kind, bytes: &[u8]) -> u128 {
        let mut h = SipHasher13::new_with_keys(self.secret.0, self.secret.1);
        h.write_u8(kind as u8);
        h.write(bytes);
        nonzero(h.finish128().as_u128())
    }

    fn addr_key(&self, ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(a) => self.key(Kind::Ipv4, &a.octets()),
            IpAddr::V6(a) => self.key(Kind::Ipv6, &a.octets()),
        }
    }

    fn text_key(&self, kind: Kind, value: &str) -> u128 {
        self.key(kind, value.as_bytes())
    }

    /// The key of a value held as itself: digests by their bytes (None when not hex of their
    /// length), other values by their text. Addresses and ranges are parsed by the callers.
    fn value_key(&self, kind: Kind, value: &str) -> Option<u128> {
        use qalxan_core::hex::decode;
        match kind {
            Kind::Md5 => decode::<16>(value).map(|h| self.key(kind, &h)),
            Kind::Sha1 => decode::<20>(value).map(|h| self.key(kind, &h)),
            Kind::Sha256 => decode::<32>(value).map(|h| self.key(kind, &h)),
            _ => Some(self.text_key(kind, value)),
        }
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

/// An IPv4-mapped IPv6 address is its IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
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
        l.exact = KeySet::build(keys, l.exact.secret);
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
            Kind::Ipv4 | Kind::Ipv6 => {
                if let Ok(ip) = v.parse::<IpAddr>() {
                    keys.push(self.exact.addr_key(canonical(ip)));
                }
            }
            Kind::Cidr => match v.parse::<IpNet>() {
                Ok(IpNet::V4(n)) => r4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                Ok(IpNet::V6(n)) => r6.push((u128::from(n.network()), u128::from(n.broadcast()))),
                Err(_) => {}
            },
            k => {
                let Some(key) = self.exact.value_key(k, v) else {
                    return;
                };
                keys.push(key);
                match k {
                    Kind::Md5 => self.hash_kinds.0 = true,
                    Kind::Sha1 => self.hash_kinds.1 = true,
                    Kind::Sha256 => self.hash_kinds.2 = true,
                    _ => {}
                }
            }
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
        let ip = canonical(ip);
        self.in_ranges(ip)
            || (!self.exact.slots.is_empty() && self.exact.contains(self.exact.addr_key(ip)))
    }

    fn in_ranges(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => in_ranges(&self.v4_ranges, u32::from(a)),
            IpAddr::V6(a) => in_ranges(&self.v6_ranges, u128::from(a)),
        }
    }

    /// The domain or one of its parents is listed (`a.evil.example` is blocked by `evil.example`).
    pub fn contains_domain(&self, domain: &str) -> bool {
        let mut keys = Keys::new();
        self.push_domain_keys(domain, &mut keys);
        self.exact.any(&keys)
    }

    /// A normalised URL is listed, or its host is.
    pub fn contains_url(&self, url: &str) -> bool {
        let mut keys = Keys::new();
        self.push_url_keys(url, &mut keys);
        self.exact.any(&keys)
    }

    /// The keys a domain is blocked under: its own and each parent's (not the top level's).
    fn push_domain_keys(&self, domain: &str, keys: &mut impl Extend<u128>) {
        let mut rest = domain.trim_end_matches('.');
        loop {
            keys.extend([self.exact.text_key(Kind::Domain, rest)]);
            match rest.split_once('.') {
                Some((_, parent)) if parent.contains('.') => rest = parent,
                _ => return,
            }
        }
    }

    fn push_url_keys(&self, url: &str, keys: &mut impl Extend<u128>) {
        keys.extend([self.exact.text_key(Kind::Url, url)]);
        // A normalised URL is `scheme://[user@]host[:port]/...`: the host is sliced out rather
        // than parsed again.
        let Some((_, rest)) = url.split_once("://") else {
            return;
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.rsplit_once(':') {
            Some((h, port)) if !h.ends_with(']') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        self.push_domain_keys(host, keys);
    }

    /// Pushes the keys an observable is blocked under in the exact table; returns whether it
    /// is blocked by what is not in the table (address ranges) already.
    fn push_keys(&self, o: &Observable, keys: &mut impl Extend<u128>) -> bool {
        let v = o.value.as_str();
        match o.kind {
            Kind::Ipv4 | Kind::Ipv6 => {
                let Ok(ip) = v.parse::<IpAddr>() else {
                    return false;
                };
                let ip = canonical(ip);
                if self.in_ranges(ip) {
                    return true;
                }
                keys.extend([self.exact.addr_key(ip)]);
            }
            // A range is blocked when both its ends are.
            Kind::Cidr => {
                return v.parse::<IpNet>().is_ok_and(|n| {
                    self.contains_ip(n.network()) && self.contains_ip(n.broadcast())
                })
            }
            Kind::Domain => self.push_domain_keys(v, keys),
            Kind::Url => self.push_url_keys(v, keys),
            Kind::Email => {
                keys.extend([self.exact.text_key(Kind::Email, v)]);
                if let Some((_, domain)) = v.rsplit_once('@') {
                    self.push_domain_keys(domain, keys);
                }
            }
            k => keys.extend(self.exact.value_key(k, v)),
        }
        false
    }

    /// Which digests the lists hold any of (MD5, SHA-1, SHA-256): a scanner computes only
    /// those.
    pub fn hash_kinds(&self) -> (bool, bool, bool) {
        self.hash_kinds
    }

    pub fn contains_md5(&self, digest: &[u8; 16]) -> bool {
        !self.exact.slots.is_empty() && self.exact.contains(self.exact.key(Kind::Md5, digest))
    }

    pub fn contains_sha1(&self, digest: &[u8; 20]) -> bool {
        !self.exact.slots.is_empty() && self.exact.contains(self.exact.key(Kind::Sha1, digest))
    }

    pub fn contains_sha256(&self, digest: &[u8; 32]) -> bool {
        !self.exact.slots.is_empty() && self.exact.contains(self.exact.key(Kind::Sha256, digest))
    }

    pub fn contains_hash(&self, kind: Kind, hex: &str) -> bool {
        matches!(kind, Kind::Md5 | Kind::Sha1 | Kind::Sha256)
            && self
                .exact
                .value_key(kind, hex)
                .is_some_and(|k| self.exact.contains(k))
    }

    /// Whether a normalised observable is blocked by the lists.
    pub fn matches(&self, o: &Observable) -> bool {
        let mut keys = Keys::new();
        self.push_keys(o, &mut keys) || self.exact.any(&keys)
    }

    /// Whether each of `items` is blocked: [`Lists::matches`] for many values, faster on large
    /// lists. A lone lookup waits for its slot's cache miss: its probe loop branches on what
    /// it loads, so the processor cannot start the next lookup's miss before this one's
    /// arrives. Here the values go in chunks, and the slots of one chunk are loaded while the
    /// next chunk's keys are computed, so the misses overlap each other and the hashing.
    pub fn matches_each(&self, items: &[Observable]) -> Vec<bool> {
        /// A chunk's keys and, per value, the end of its keys and whether it matched without
        /// them (an address range).
        #[derive(Default)]
        struct Chunk {
            keys: Vec<u128>,
            ends: Vec<(usize, bool)>,
        }
        const CHUNK: usize = 32;
        let prepare = |chunk: &[Observable], c: &mut Chunk| {
            c.keys.clear();
            c.ends.clear();
            for o in chunk {
                let matched = self.push_keys(o, &mut c.keys);
                c.ends.push((c.keys.len(), matched));
            }
            self.exact.touch(&c.keys);
        };
        let mut out = Vec::with_capacity(items.len());
        let mut chunks = items.chunks(CHUNK);
        let (mut ready, mut next) = (Chunk::default(), Chunk::default());
        let Some(first) = chunks.next() else {
            return out;
        };
        prepare(first, &mut ready);
        loop {
            let more = chunks.next();
            if let Some(chunk) = more {
                prepare(chunk, &mut next);
            }
            let mut start = 0;
            for &(end, matched) in &ready.ends {
                out.push(matched || self.exact.any_loaded(&ready.keys[start..end]));
                start = end;
            }
            if more.is_none() {
                return out;
            }
            std::mem::swap(&mut ready, &mut next);
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

    #[test]
    fn batch_lookups_answer_as_single_ones() {
        let listed: Vec<Observable> = [
            (Kind::Ipv4, "203.0.113.7"),
            (Kind::Ipv6, "2001:db8::7"),
            (Kind::Cidr, "198.51.100.0/24"),
            (Kind::Domain, "evil.example"),
            (Kind::Url, "http://bad.example/x"),
            (Kind::Email, "boss@fraud.example"),
            (Kind::Md5, "d41d8cd98f00b204e9800998ecf8427e"),
            (Kind::Phone, "+994125551234"),
        ]
        .iter()
        .map(|(k, v)| Observable::new(*k, v).unwrap())
        .collect();
        let l = Lists::build(&listed);
        let probes: Vec<Observable> = [
            (Kind::Ipv4, "203.0.113.7"),
            (Kind::Ipv4, "203.0.113.8"),
            (Kind::Ipv6, "::ffff:203.0.113.7"),
            (Kind::Ipv6, "2001:db8::7"),
            (Kind::Ipv4, "198.51.100.99"),
            (Kind::Cidr, "198.51.100.128/25"),
            (Kind::Cidr, "198.51.0.0/16"),
            (Kind::Domain, "a.b.evil.example"),
            (Kind::Domain, "notevil.example"),
            (Kind::Url, "https://cdn.evil.example/y"),
            (Kind::Url, "http://bad.example/y"),
            (Kind::Email, "clerk@x.evil.example"),
            (Kind::Email, "boss@fraud.example"),
            (Kind::Email, "clerk@fraud.example"),
            (Kind::Md5, "D41D8CD98F00B204E9800998ECF8427E"),
            (Kind::Md5, "d41d8cd98f00b204e9800998ecf8427f"),
            (Kind::Phone, "+994 12 555 12 34"),
        ]
        .iter()
        .map(|(k, v)| Observable::new(*k, v).unwrap())
        .collect();
        let single: Vec<bool> = probes.iter().map(|o| l.matches(o)).collect();
        assert_eq!(
            single,
            [
                true, false, true, true, true, true, false, true, false, true, false, true, true,
                false, true, false, true
            ]
        );
        // Across chunk boundaries and in every position of a chunk.
        let many: Vec<Observable> = probes
            .iter()
            .cycle()
            .take(probes.len() * 9)
            .cloned()
            .collect();
        let expected: Vec<bool> = single.iter().cycle().take(many.len()).copied().collect();
        assert_eq!(l.matches_each(&many), expected);
        assert!(l.matches_each(&[]).is_empty());
        assert_eq!(
            Lists::default().matches_each(&many),
            vec![false; many.len()]
        );
    }
}
