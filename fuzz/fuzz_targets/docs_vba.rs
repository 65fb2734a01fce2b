//! MS-OVBA decompression and the `dir` stream reader.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(out) = qalxan_docs::vba::decompress(data, 1 << 20) {
        assert!(out.len() <= 1 << 20);
        let _ = qalxan_docs::vba::parse_dir(&out);
    }
    let _ = qalxan_docs::vba::parse_dir(data);
    let _ = qalxan_docs::vba::analyze_code(&String::from_utf8_lossy(data));
});
