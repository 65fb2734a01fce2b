//! How fast the dashboard's overview stays as the event log grows.
//!
//! Loads events through the real write path (`insert_events`, batches of 1,000, rollups in the
//! same transaction), then times `overview()` for each period, for all institutions and for one,
//! against the baseline a store without rollups would run: aggregating the raw events.
//!
//!     cargo bench -p qalxan-store --bench overview
//!
//! Environment: `QALXAN_BENCH_EVENTS` (default 10,000,000), `QALXAN_BENCH_DB` (a SQLite file to
//! keep and reuse between runs; default a temporary one) or `QALXAN_BENCH_DATABASE_URL`
//! (PostgreSQL).

#![allow(clippy::unwrap_used)] // A benchmark that cannot set up should stop loudly.

use qalxan_core::{
    now_millis, EventKind, InstitutionFields, InstitutionId, Period, Severity, HOUR_MS,
};
use qalxan_store::{Actor, NewEvent, Store};
use std::time::{Duration, Instant};

const BATCH: usize = 1000;
const INSTITUTIONS: i64 = 50;
const SPAN_MS: i64 = 183 * 24 * HOUR_MS;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// A cheap deterministic generator, so runs are comparable.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        // `cargo test --benches` and test listers: nothing to list or run here.
        return;
    }
    let wanted = env_number("QALXAN_BENCH_EVENTS", 10_000_000);
    let _tmp;
    let store = if let Ok(url) = std::env::var("QALXAN_BENCH_DATABASE_URL") {
        Store::open(&url).await.unwrap()
    } else if let Ok(path) = std::env::var("QALXAN_BENCH_DB") {
        Store::open_sqlite(std::path::Path::new(&path))
            .await
            .unwrap()
    } else {
        _tmp = tempfile::tempdir().unwrap();
        Store::open_sqlite(&_tmp.path().join("bench.db"))
            .await
            .unwrap()
    };
    println!("backend: {:?}", store.backend());

    let mut institutions: Vec<InstitutionId> = store
        .list_institutions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect();
    while (institutions.len() as i64) < INSTITUTIONS {
        let fields = InstitutionFields {
            name: format!("Institution {}", institutions.len() + 1),
            ..Default::default()
        };
        institutions.push(
            store
                .create_institution(&Actor::system(), fields)
                .await
                .unwrap()
                .id,
        );
    }

    let now = now_millis();
    let have = store.count_events().await.unwrap() as u64;
    if have < wanted {
        let to_load = wanted - have;
        println!("loading {to_load} events in batches of {BATCH}...");
        let mut rng = Lcg(have + 1);
        let started = Instant::now();
        let mut loaded = 0u64;
        let mut batch = Vec::with_capacity(BATCH);
        while loaded < to_load {
            batch.clear();
            for _ in 0..BATCH.min((to_load - loaded) as usize) {
                let r = rng.next();
                // Most events are recent: the age is the smaller of two uniform draws.
                let age = (r % SPAN_MS as u64).min(rng.next() % SPAN_MS as u64) as i64;
                let kind = EventKind::ALL[(rng.next() % EventKind::ALL.len() as u64) as usize];
                let inst = rng.next() % (INSTITUTIONS as u64 + 5);
                batch.push(NewEvent {
                    occurred_at: now - age,
                    kind,
                    source: "token:bench".to_owned(),
                    institution_id: institutions.get(inst as usize).copied(),
                    severity: Severity::Medium,
                    count: 1 + (r % 5) as i64,
                    value: (kind == EventKind::DdosDetected).then_some((r % 100_000) as i64),
                    attributes: serde_json::json!({"bench": true}),
                });
            }
            store.insert_events(&batch).await.unwrap();
            loaded += batch.len() as u64;
            if loaded % 1_000_000 == 0 {
                let rate = loaded as f64 / started.elapsed().as_secs_f64();
                println!("  {loaded} events, {rate:.0} events/s");
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "ingest: {to_load} events in {secs:.1} s = {:.0} events/s (batches of {BATCH}, rollups included)",
            to_load as f64 / secs
        );
    } else {
        println!("reusing the {have} events already stored");
    }

    let one = Some(institutions[0]);
    println!();
    println!(
        "| period | scope | overview (rollups) median ms | raw events scan median ms | speed-up |"
    );
    println!("|---|---|---:|---:|---:|");
    for period in Period::ALL {
        let (start, _) = period.window(now);
        for (scope_name, scope) in [("all institutions", None), ("one institution", one)] {
            let mut fast = Vec::new();
            for _ in 0..21 {
                let t = Instant::now();
                let o = store
                    .overview(start, period.bin_ms(), period.bins(), scope)
                    .await
                    .unwrap();
                fast.push(t.elapsed());
                std::hint::black_box(o);
            }
            let mut slow = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                let o = store
                    .overview_from_events(start, period.bin_ms(), period.bins(), scope)
                    .await
                    .unwrap();
                slow.push(t.elapsed());
                std::hint::black_box(o);
            }
            let (fast, slow) = (median(fast), median(slow));
            println!(
                "| {} | {scope_name} | {} | {} | {:.0}x |",
                period.label(),
                ms(fast),
                ms(slow),
                slow.as_secs_f64() / fast.as_secs_f64()
            );
        }
    }
}
