//! The tolerant PDF object reader, its filters, and the writer disarm rebuilds files with.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let doc = qalxan_docs::pdf::parse(data, 10_000, 1 << 20);
    let _ = qalxan_docs::pdf::write(&doc);
});
