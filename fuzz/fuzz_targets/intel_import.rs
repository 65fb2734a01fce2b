//! Imports of untrusted feeds: STIX bundles, MISP events, CSV and plain lists (by content),
//! and the blocklist's text form.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(imp) = qalxan_intel::import_any(data, "fuzz", qalxan_core::Tlp::Amber) {
        let observables: Vec<_> = imp.indicators.iter().map(|i| i.observable()).collect();
        let lists = qalxan_intel::compiled::Lists::build(&observables);
        let batch = lists.matches_each(&observables);
        for (o, hit) in observables.iter().zip(batch) {
            assert_eq!(hit, lists.matches(o), "batch and single lookups agree");
            assert!(hit || !o.kind.is_blockable() || o.kind == qalxan_intel::Kind::Cidr);
        }
        let _ = qalxan_intel::stix::bundle(imp.objects);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = qalxan_intel::compiled::Lists::from_text(text);
    }
});
