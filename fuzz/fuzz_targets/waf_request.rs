//! Any bytes as an HTTP request through CRS (Debian's, at paranoia level 4, as its tests run
//! it; a few rules of each kind when it is not installed): evaluation never panics, and the
//! prefilter that skips rules lacking their literals changes no outcome.
//!
//! The input: a first line `METHOD TARGET`, header lines `Name: value` up to an empty line,
//! then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qalxan_waf::{Plan, Request, Transaction};
use std::path::Path;
use std::sync::OnceLock;

const FALLBACK: &str = r#"
SecRuleEngine On
SecRequestBodyAccess On
SecRule REQUEST_HEADERS:Content-Type "@rx ^application/json" "id:1,phase:1,pass,nolog,ctl:requestBodyProcessor=JSON"
SecRule ARGS|ARGS_NAMES|REQUEST_COOKIES "@rx (?i)union\s+select|<script" "id:2,phase:2,deny,t:urlDecodeUni,t:htmlEntityDecode,t:lowercase"
SecRule ARGS "@pm cat passwd etc" "id:3,phase:2,pass,multiMatch,t:none,t:removeWhitespace,setvar:tx.score=+1"
SecRule REQUEST_URI "@validateByteRange 32-126" "id:4,phase:1,pass,t:urlDecode"
SecRule ARGS "@rx on[a-z]+=" "id:5,phase:2,pass,chain"
SecRule MATCHED_VAR "@rx ." "setvar:tx.score=+5"
"#;

fn plans() -> &'static (Plan, Plan) {
    static PLANS: OnceLock<(Plan, Plan)> = OnceLock::new();
    PLANS.get_or_init(|| {
        let load = || {
            qalxan_waf::regression::load_crs_for_tests(
                Path::new("/etc/modsecurity/crs/crs-setup.conf"),
                Path::new("/usr/share/modsecurity-crs/rules"),
            )
            .or_else(|_| {
                let set = qalxan_waf::load_str(FALLBACK, Path::new("fuzz.conf"), &Default::default())
                    .expect("the fallback rules load");
                Plan::compile(&set)
            })
            .expect("the rules compile")
        };
        (load(), load().without_shortcuts())
    })
}

fn request(data: &[u8]) -> Request {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let first = lines.next().unwrap_or_default();
    let (method, target) = first.split_once(' ').unwrap_or(("GET", first));
    Request {
        method: method.as_bytes().to_vec(),
        uri: target.as_bytes().to_vec(),
        protocol: b"HTTP/1.1".to_vec(),
        headers: lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_owned(), v.trim().as_bytes().to_vec()))
            .collect(),
        body: body.as_bytes().to_vec(),
        remote_addr: "198.51.100.7".into(),
        remote_port: 40000,
        server_addr: "192.0.2.1".into(),
        server_port: 80,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > 16 << 10 {
        return;
    }
    let r = request(data);
    let (filtered, full) = plans();
    let outcome = |plan: &Plan| {
        let mut tx = Transaction::evaluate_request(plan, &r);
        tx.finish();
        let ids: Vec<(u64, String)> = tx.matches.iter().map(|m| (m.id, m.data.clone())).collect();
        (ids, tx.anomaly_score(), tx.interruption.as_ref().map(|i| i.status))
    };
    assert_eq!(outcome(filtered), outcome(full), "the prefilter changed the outcome");
});
