//! STIX 2.1 patterns: parse, reduce to observables, and evaluate against a small observation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qalxan_intel::pattern::{Observation, Pattern};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(p) = Pattern::parse(text) {
        let _ = p.observables();
        let obs = Observation::new(
            1000,
            vec![
                serde_json::json!({"type": "file", "id": "file--1", "name": "a.exe", "size": 10, "hashes": {"MD5": "d41d8cd98f00b204e9800998ecf8427e"}}),
                serde_json::json!({"type": "ipv4-addr", "id": "ipv4-addr--1", "value": "10.0.0.1"}),
                serde_json::json!({"type": "network-traffic", "dst_ref": "ipv4-addr--1", "dst_port": 443}),
            ],
        );
        let _ = p.matches(&[obs.clone(), obs]);
    }
});
