//! The threat-intel engine's speed and memory: bench/intel.sh runs it on a generated feed.
//!
//!     intel FEED_FILE
//!
//! FEED_FILE is a plain list (one value per line). Prints, as `name value` lines: the parse
//! rate (values normalised, warninglisted and turned into indicators per second), exact-match
//! lookups per second on one core, CIDR lookups per second against one million ranges, and the
//! compiled list's memory per SHA-256 indicator.

use qalxan_intel::compiled::Lists;
use qalxan_intel::{Kind, Observable};
use std::hint::black_box;
use std::time::Instant;

fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A small deterministic generator (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: intel FEED_FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(2)
    });

    let t = Instant::now();
    let imp =
        qalxan_intel::import_any(&data, "bench", qalxan_core::Tlp::Amber).unwrap_or_else(|e| {
            eprintln!("{path}: {e}");
            std::process::exit(2)
        });
    let parse_s = t.elapsed().as_secs_f64();
    let n = imp.indicators.len();
    println!("indicators {n}");
    println!("parse_per_s {:.0}", n as f64 / parse_s);
    drop(data);

    let observables: Vec<Observable> = imp.indicators.into_iter().map(|i| i.observable()).collect();
    let t = Instant::now();
    let lists = Lists::build(&observables);
    println!("build_s {:.2}", t.elapsed().as_secs_f64());

    // The lookups run on a thread of their own, so the probes are allocated in a fresh heap
    // arena, side by side as values read from a log are, not in the holes the parse left in
    // the main thread's heap (that had scattered them over a gigabyte and halved the batched
    // rate, depending only on where the parse ran).
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                // Exact lookups on one core: half present, half absent, in a shuffled order.
                let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
                let mut probes: Vec<Observable> = (0..1_000_000)
                    .map(|_| observables[(rng.next() % observables.len() as u64) as usize].clone())
                    .collect();
                for p in probes.iter_mut().step_by(2) {
                    // Flip the last character: same kind and shape, almost surely absent.
                    let last = p.value.pop().unwrap_or('0');
                    p.value.push(if last == '0' { '1' } else { '0' });
                }
                let t = Instant::now();
                let mut hits = 0u64;
                let rounds = 5;
                for _ in 0..rounds {
                    for p in &probes {
                        hits += u64::from(black_box(lists.matches(black_box(p))));
                    }
                }
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "exact_lookups_per_s {:.0}",
                    (probes.len() * rounds) as f64 / secs
                );
                println!(
                    "exact_hit_ratio {:.2}",
                    hits as f64 / (probes.len() * rounds) as f64
                );
                // The same probes through the batch lookup (what a scan of many files or a log check does).
                let t = Instant::now();
                let mut batch_hits = 0u64;
                for _ in 0..rounds {
                    let answers = lists.matches_each(black_box(&probes));
                    batch_hits += answers.iter().filter(|&&b| b).count() as u64;
                }
                let secs = t.elapsed().as_secs_f64();
                println!(
                    "exact_lookups_batched_per_s {:.0}",
                    (probes.len() * rounds) as f64 / secs
                );
                assert_eq!(
                    batch_hits, hits,
                    "the batch gives the single lookups' answers"
                );
            })
            .join()
            .unwrap_or_else(|_| std::process::exit(1));
    });
    drop(lists);

    // Hash lookups alone (what the scanners do per file).
    let hashes: Vec<&Observable> = observables
        .iter()
        .filter(|o| o.kind == Kind::Sha256)
        .collect();
    if !hashes.is_empty() {
        let before = rss_bytes();
        let sha_lists = Lists::build(hashes.iter().copied());
        let after = rss_bytes();
        println!("sha256_indicators {}", hashes.len());
        println!(
            "bytes_per_sha256 {:.1}",
            (after.saturating_sub(before)) as f64 / hashes.len() as f64
        );
        let probe: Vec<String> = (0..1_000_000)
            .map(|i| hashes[i % hashes.len()].value.clone())
            .collect();
        let t = Instant::now();
        let mut h = 0u64;
        for p in &probe {
            h += u64::from(sha_lists.contains_hash(Kind::Sha256, black_box(p)));
        }
        println!(
            "sha256_lookups_per_s {:.0}",
            probe.len() as f64 / t.elapsed().as_secs_f64()
        );
        black_box(h);
    }

    // One million CIDR ranges, then random addresses.
    let mut rng = Rng(42);
    let ranges: Vec<Observable> = (0..1_000_000)
        .map(|_| {
            let a = (rng.next() as u32) & 0xffff_ff00;
            let len = 20 + (rng.next() % 9) as u8;
            Observable {
                kind: Kind::Cidr,
                value: format!("{}/{}", std::net::Ipv4Addr::from(a), len),
            }
        })
        .collect();
    let cidr = Lists::build(&ranges);
    let addrs: Vec<std::net::IpAddr> = (0..2_000_000)
        .map(|_| std::net::IpAddr::from((rng.next() as u32).to_be_bytes()))
        .collect();
    let t = Instant::now();
    let mut inside = 0u64;
    for a in &addrs {
        inside += u64::from(cidr.contains_ip(black_box(*a)));
    }
    println!("cidr_ranges {}", ranges.len());
    println!(
        "cidr_lookups_per_s {:.0}",
        addrs.len() as f64 / t.elapsed().as_secs_f64()
    );
    println!("cidr_hit_ratio {:.3}", inside as f64 / addrs.len() as f64);
}
