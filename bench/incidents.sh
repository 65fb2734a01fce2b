#!/usr/bin/env bash
# Incident response: alert ingestion through the API and the alert monitor's server time,
# with a Python sqlite3 baseline in the same run (see bench/alerts.py for what is measured).
#
#   bench/incidents.sh [COUNT]   (default 1000000; needs: cargo build --release -p qalxan)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-1000000}
work=${BENCH_DIR:-/tmp/qalxan-bench-incidents}
target=${CARGO_TARGET_DIR:-$root/target}
qalxan=${QALXAN:-$target/release/qalxan}
[ -x "$qalxan" ] || { echo "build first: cargo build --release -p qalxan"; exit 2; }
rm -rf "$work"; mkdir -p "$work"
python3 "$root/bench/alerts.py" "$qalxan" "$work" "$count"
echo "database: $(du -sh "$work/data" | cut -f1)"
