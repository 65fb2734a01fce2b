//! Any bytes as a file to scan: type detection and every container parser behind it must
//! return (within the limits), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

fn scanner() -> &'static qalxan_scan::Scanner {
    static S: OnceLock<qalxan_scan::Scanner> = OnceLock::new();
    S.get_or_init(|| {
        let options = qalxan_scan::ScanOptions {
            limits: qalxan_scan::Limits {
                max_file_size: 4 << 20,
                max_scan_size: 16 << 20,
                max_time: Duration::from_secs(5),
                ..Default::default()
            },
            all_match: true,
            ..Default::default()
        };
        qalxan_scan::Scanner::new(Arc::new(qalxan_scan::Database::builtin()), options)
    })
}

fuzz_target!(|data: &[u8]| {
    let o = scanner().scan_bytes(data);
    assert!(o.scanned_bytes <= (16 << 20) + data.len() as u64 + (4 << 20));
});
