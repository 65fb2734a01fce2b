//! One request mix through CRS, for counting instructions under callgrind: machine noise
//! moves wall-clock times by tens of percent on shared machines, instruction counts do not.
//! bench/waf-instructions.sh runs it beside libmodsecurity (bench/modsec-peer.c) the same way.
//!
//!     valgrind --tool=callgrind --toggle-collect='*measured_loop*' \
//!         target/release/examples/crs_instructions PARANOIA get|benign|attack|gateway ROUNDS
//!
//! `gateway` is what bench/gateway.sh sends the gateway, evaluated as the gateway does (with
//! persistent collections for CRS's `initcol`).

#[path = "../benches/workload.rs"]
mod workload;

use qalxan_waf::persist::Collections;
use qalxan_waf::{Plan, Request, Transaction};

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: crs_instructions PARANOIA get|benign|attack|gateway ROUNDS";
    let (Some(paranoia), Some(mix), Some(rounds)) = (args.next(), args.next(), args.next()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (Ok(paranoia), Ok(rounds)) = (paranoia.parse(), rounds.parse()) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let requests = match mix.as_str() {
        "get" => vec![workload::benign_get()],
        "benign" => workload::benign(),
        "attack" => workload::attacks(),
        "gateway" => vec![workload::gateway_get()],
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    let plan = workload::plan(paranoia);
    let collections = (mix == "gateway").then(|| Collections::new(100_000));
    // Once outside the count: the regex engines build their caches on first use.
    measured(&plan, collections.as_ref(), &requests, 1);
    measured_loop(&plan, collections.as_ref(), &requests, rounds);
}

fn measured(plan: &Plan, collections: Option<&Collections>, requests: &[Request], rounds: usize) {
    for _ in 0..rounds {
        for r in requests {
            let tx = Transaction::new(plan);
            let tx = match collections {
                Some(c) => tx.with_collections(c),
                None => tx,
            };
            let mut tx = tx.request(r);
            tx.finish();
            std::hint::black_box(tx.interruption.is_some());
        }
    }
}

#[inline(never)]
fn measured_loop(
    plan: &Plan,
    collections: Option<&Collections>,
    requests: &[Request],
    rounds: usize,
) {
    measured(plan, collections, requests, rounds);
}
