//! Times loading signature databases, phase by phase: `load_time DB...`.
//! bench/scan.sh measures the whole start-up; this says where it goes.

use qalxan_scan::{Builder, LoadOptions};
use std::time::Instant;

fn main() {
    let paths: Vec<std::path::PathBuf> = std::env::args().skip(1).map(Into::into).collect();
    if paths.is_empty() {
        eprintln!("usage: load_time DB...");
        std::process::exit(2);
    }
    let started = Instant::now();
    let mut b = Builder::new(LoadOptions::default());
    for p in &paths {
        if let Err(e) = b.add_path(p) {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
    let read = started.elapsed();
    let db = b.finish();
    let all = started.elapsed();
    println!(
        "read and parsed {:.0} ms, sealed {:.0} ms, total {:.0} ms: {} hash signatures",
        read.as_secs_f64() * 1e3,
        (all - read).as_secs_f64() * 1e3,
        all.as_secs_f64() * 1e3,
        db.report().hash_signatures
    );
}
