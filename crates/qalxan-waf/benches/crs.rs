//! Transactions per second through the full OWASP CRS (Debian's 3.3.4) at paranoia levels 1
//! and 4, for a benign and an attack request mix, in blocking mode.
//!
//!     cargo bench -p qalxan-waf --bench crs
//!
//! bench/waf-peer.sh measures libmodsecurity 3 on the same rules and requests.

#![allow(clippy::unwrap_used)] // A benchmark that cannot set up should stop loudly.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use qalxan_waf::Transaction;
use std::path::Path;

#[path = "workload.rs"]
mod workload;
use workload::{attacks, benign, benign_get, plan, RULES};

fn bench(c: &mut Criterion) {
    if !Path::new(RULES).is_dir() {
        eprintln!("SKIPPED: Debian's modsecurity-crs is not installed");
        return;
    }
    for paranoia in [1, 4] {
        let plan = plan(paranoia);
        for (name, mix) in [("benign", benign()), ("attack", attacks())] {
            let mut group = c.benchmark_group(format!("crs_pl{paranoia}_{name}"));
            group.throughput(Throughput::Elements(mix.len() as u64));
            group.bench_function("transactions", |b| {
                b.iter(|| {
                    for r in &mix {
                        let mut tx = Transaction::evaluate_request(&plan, r);
                        tx.finish();
                        std::hint::black_box(tx.interruption.is_some());
                    }
                })
            });
            group.finish();
        }
        // A benign GET alone: the figure the issue sets a bound on.
        c.bench_function(&format!("crs_pl{paranoia}_benign_get"), |b| {
            let r = benign_get();
            b.iter(|| {
                let mut tx = Transaction::evaluate_request(&plan, &r);
                tx.finish();
                std::hint::black_box(tx.interruption.is_some());
            })
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(std::time::Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
