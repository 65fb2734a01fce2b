//! Any bytes as a SecLang rule file: the parser must return directives or errors, never panic,
//! and report every error at a line and column inside the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (_, errors) = qalxan_waf::syntax::parse_str(&text, Path::new("fuzz.conf"));
    let lines = text.split('\n').count() as u32;
    for e in errors {
        assert!(e.location.line >= 1 && e.location.line <= lines, "{e}");
    }
});
