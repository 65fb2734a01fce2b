//! Any text as each kind of signature database: a load error names a line inside the input,
//! and whatever loads can scan.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

const KINDS: &[&str] = &["f.hdb", "f.hsb", "f.mdb", "f.ndb", "f.ldb", "f.fp", "f.sfp", "f.ign2"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let name = KINDS[pick as usize % KINDS.len()];
    let text = String::from_utf8_lossy(rest);
    let mut b = qalxan_scan::Builder::new(Default::default());
    match b.add_str(name, &text) {
        Err(e) => assert!(e.line >= 1 && e.line <= text.lines().count(), "{e}"),
        Ok(()) => {
            let scanner = qalxan_scan::Scanner::new(Arc::new(b.finish()), Default::default());
            let _ = scanner.scan_bytes(rest);
        }
    }
});
