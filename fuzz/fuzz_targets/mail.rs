//! E-mail analysis on arbitrary bytes: never a panic, and what it reports stays within its
//! limits.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = qalxan_mail::Limits {
        max_bytes: 1 << 20,
        max_parts: 50,
        max_depth: 3,
        max_links: 20,
        max_observables: 60,
    };
    if let Ok(a) = qalxan_mail::analyse(data, &limits) {
        let links = a
            .found
            .iter()
            .filter(|f| f.observable.kind == qalxan_intel::Kind::Url)
            .count();
        assert!(links <= limits.max_links);
        assert!(a.found.len() <= limits.max_observables);
    }
});
