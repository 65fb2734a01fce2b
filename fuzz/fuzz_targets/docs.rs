//! The document sandbox end to end: analysis and disarm of any bytes. The first byte picks a
//! magic prefix so the fuzzer reaches each format's parser without having to find it.
#![no_main]

use libfuzzer_sys::fuzz_target;

const PREFIXES: &[&[u8]] = &[
    b"",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"PK\x03\x04",
    b"{\\rtf1",
    b"%PDF-1.7\n",
    b"<?xml version=\"1.0\"?>",
    b"ID;PWXL;N;E\r\n",
    b"L\x00\x00\x00\x01\x14\x02\x00\x00\x00\x00\x00\xc0\x00\x00\x00\x00\x00\x00F",
    b"<html><script>",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let mut input = PREFIXES[pick as usize % PREFIXES.len()].to_vec();
    input.extend_from_slice(rest);
    let mut options = qalxan_docs::Options::default();
    options.limits.max_decoded = 1 << 20;
    options.limits.max_total = 4 << 20;
    let report = qalxan_docs::analyze(&input, "fuzz.doc", &options);
    assert!(report.score <= 100);
    let _ = qalxan_docs::disarm::disarm(&input, &options);
});
