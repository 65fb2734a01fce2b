//! Warninglists: well-known benign values that must not become blocking indicators.
//!
//! Feeds regularly carry `8.8.8.8`, `google.com` or the hash of the empty file; blocking them
//! would break the institutions' networks. A value found here is kept (it is still intelligence)
//! but does not block unless an analyst forces it. The lists follow MISP's warninglists of the
//! same names, kept small and built in so the check needs no download.

use crate::observable::{Kind, Observable};
use ipnet::IpNet;
use std::net::IpAddr;
use std::sync::OnceLock;

/// Public DNS resolvers.
const PUBLIC_DNS: &[&str] = &[
    "8.8.8.8",
    "8.8.4.4",
    "1.1.1.1",
    "1.0.0.1",
    "9.9.9.9",
    "149.112.112.112",
    "208.67.222.222",
    "208.67.220.220",
    "64.6.64.6",
    "64.6.65.6",
    "77.88.8.8",
    "77.88.8.1",
    "94.140.14.14",
    "94.140.15.15",
    "185.228.168.9",
    "76.76.2.0",
    "2001:4860:4860::8888",
    "2001:4860:4860::8844",
    "2606:4700:4700::1111",
    "2606:4700:4700::1001",
    "2620:fe::fe",
    "2620:fe::9",
];

/// Private, loopback, link-local, documentation and other special-purpose ranges (RFC 1918,
/// 5735, 6598, 6890, 4193, 3849).
const SPECIAL_RANGES: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "2001:db8::/32",
    "ff00::/8",
];

/// Domains whose blocking would cut institutions off from services everyone uses. A subdomain
/// of these is warned about too (phishing pages live on lookalikes, not on these).
const POPULAR_DOMAINS: &[&str] = &[
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "youtube.com",
    "gmail.com",
    "microsoft.com",
    "microsoftonline.com",
    "office.com",
    "office365.com",
    "outlook.com",
    "live.com",
    "windows.com",
    "windowsupdate.com",
    "azure.com",
    "bing.com",
    "apple.com",
    "icloud.com",
    "amazon.com",
    "amazonaws.com",
    "cloudflare.com",
    "facebook.com",
    "instagram.com",
    "whatsapp.com",
    "twitter.com",
    "x.com",
    "linkedin.com",
    "wikipedia.org",
    "github.com",
    "yahoo.com",
    "yandex.ru",
    "mozilla.org",
    "akamai.net",
    "akamaihd.net",
    "cloudfront.net",
    "digicert.com",
    "letsencrypt.org",
    "telegram.org",
    "t.me",
    "zoom.us",
    "dropbox.com",
    "example.com",
    "example.org",
    "example.net",
    "gov.az",
    "localhost.localdomain",
];

/// Hashes of empty input: every empty file has them.
const EMPTY_HASHES: &[&str] = &[
    "d41d8cd98f00b204e9800998ecf8427e",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
];

fn special_ranges() -> &'static [IpNet] {
    static NETS: OnceLock<Vec<IpNet>> = OnceLock::new();
    NETS.get_or_init(|| {
        SPECIAL_RANGES
            .iter()
            .filter_map(|r| r.parse().ok())
            .collect()
    })
}

/// The name of the warninglist `o` is on, if any.
pub fn check(o: &Observable) -> Option<&'static str> {
    match o.kind {
        Kind::Ipv4 | Kind::Ipv6 => {
            if PUBLIC_DNS.contains(&o.value.as_str()) {
                return Some("public-dns-resolvers");
            }
            let ip: IpAddr = o.value.parse().ok()?;
            special_ranges()
                .iter()
                .any(|n| n.contains(&ip))
                .then_some("special-use-ip-ranges")
        }
        Kind::Cidr => {
            let net: IpNet = o.value.parse().ok()?;
            if net.prefix_len() < 8 {
                return Some("overly-broad-ranges");
            }
            special_ranges()
                .iter()
                .any(|n| n.contains(&net) || net.contains(n))
                .then_some("special-use-ip-ranges")
        }
        Kind::Domain => popular_domain(&o.value),
        Kind::Url => {
            // Only a bare popular site is benign; a path on it may be a real payload.
            let u = url::Url::parse(&o.value).ok()?;
            (u.path() == "/" && u.query().is_none())
                .then(|| popular_domain(u.host_str()?))
                .flatten()
        }
        Kind::Email => popular_domain(o.value.rsplit('@').next()?)
            .filter(|_| o.value.starts_with("postmaster@") || o.value.starts_with("abuse@")),
        Kind::Md5 | Kind::Sha1 | Kind::Sha256 => EMPTY_HASHES
            .contains(&o.value.as_str())
            .then_some("empty-file-hashes"),
        _ => None,
    }
}

fn popular_domain(d: &str) -> Option<&'static str> {
    let mut rest = d;
    loop {
        if POPULAR_DOMAINS.contains(&rest) {
            return Some("popular-domains");
        }
        rest = rest.split_once('.')?.1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(kind: Kind, v: &str) -> Option<&'static str> {
        check(&Observable::new(kind, v).unwrap())
    }

    #[test]
    fn benign_values_are_recognised() {
        assert_eq!(on(Kind::Ipv4, "8.8.8.8"), Some("public-dns-resolvers"));
        assert_eq!(
            on(Kind::Ipv4, "192.168.1.10"),
            Some("special-use-ip-ranges")
        );
        assert_eq!(on(Kind::Cidr, "10.1.0.0/16"), Some("special-use-ip-ranges"));
        assert_eq!(on(Kind::Cidr, "0.0.0.0/1"), Some("overly-broad-ranges"));
        assert_eq!(on(Kind::Domain, "mail.google.com"), Some("popular-domains"));
        assert_eq!(
            on(Kind::Url, "https://www.microsoft.com/"),
            Some("popular-domains")
        );
        assert_eq!(
            on(
                Kind::Sha256,
                "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
            ),
            Some("empty-file-hashes")
        );
        assert_eq!(on(Kind::Ipv4, "45.9.148.3"), None);
        assert_eq!(on(Kind::Domain, "google.com.evil.example"), None);
        assert_eq!(on(Kind::Url, "https://docs.google.com/payload.exe"), None);
    }
}
