#!/usr/bin/env bash
# The threat-intel engine and store on a generated feed, with a Python baseline in the same run.
#
#   bench/intel.sh [COUNT [STORE_COUNT]]   (defaults 10000000 and 1000000; needs release builds:
#                               cargo build --release -p qalxan && cargo bench -p qalxan-intel --no-run)
#
# Feed: COUNT generated values, one per line (40 % SHA-256, 10 % MD5, 10 % SHA-1, 20 % domains,
# 10 % IPv4, 10 % URLs). Measured:
# - engine: values parsed, normalised, warninglisted per second; exact-match lookups per second
#   on one core (half hits); CIDR lookups per second against 1 M ranges; bytes per SHA-256 in
#   the compiled list (the bench binary `intel` of crates/qalxan-intel);
# - store: `qalxan intel import` of the feed's first STORE_COUNT values into a fresh SQLite data
#   folder (indicators, their sources, one STIX object each, one audit row), indicators per
#   second, and the database's size; then the same file again (every value already known);
# - baseline: what a CERT's glue scripts do with the same feed in Python: a set of the values
#   (lookups per second), bisect over sorted integer ranges (CIDR lookups per second), and
#   sqlite3.executemany of the values (imports per second). MISP and OpenCTI themselves need
#   their full stacks (PHP/MySQL/Redis, Java/Elasticsearch/RabbitMQ) and do not run here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
count=${1:-10000000}
store_count=${2:-1000000}
work=${BENCH_DIR:-/tmp/qalxan-bench-intel}
target=${CARGO_TARGET_DIR:-$root/target}
qalxan=${QALXAN:-$target/release/qalxan}
bench=$(ls -t "$target"/release/deps/intel-* 2>/dev/null | grep -v '\.d$' | head -1 || true)
[ -x "$qalxan" ] || { echo "build first: cargo build --release -p qalxan"; exit 2; }
[ -n "$bench" ] && [ -x "$bench" ] || { echo "build first: cargo bench -p qalxan-intel --no-run"; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "missing: /usr/bin/time (apt-get install time)"; exit 2; }
rm -rf "$work"; mkdir -p "$work"
feed=$work/feed.txt
python3 - "$count" "$feed" <<'PY'
import hashlib, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        h = hashlib.sha256(i.to_bytes(8, "little")).hexdigest()
        r = i % 10
        if r < 4: f.write(h + "\n")
        elif r == 4: f.write(h[:32] + "\n")
        elif r == 5: f.write(h[:40] + "\n")
        elif r < 8: f.write(f"{h[:12]}.bad{h[12:14]}.example\n")
        elif r == 8: f.write(f"{(i*7919) % 223 + 1}.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}\n")
        else: f.write(f"http://{h[:10]}.phish.example/login/{h[10:20]}\n")
PY
echo "feed: $count values, $(du -h "$feed" | cut -f1)"

echo "== engine (one core)"
/usr/bin/time -o "$work/engine.time" -f '%e %M' "$bench" "$feed" | tee "$work/engine.txt"
echo "engine peak RSS: $(cut -d' ' -f2 "$work/engine.time") KB"

echo "== store: qalxan intel import of $store_count values into SQLite"
head -n "$store_count" "$feed" > "$work/store-feed.txt"
for round in new known; do
  /usr/bin/time -o "$work/import.time" -f '%e %M' "$qalxan" --data "$work/data" intel import --source bench "$work/store-feed.txt" | tail -1
  secs=$(cut -d' ' -f1 "$work/import.time")
  echo "import ($round values): ${secs} s, $(python3 -c "print(f'{$store_count/$secs:,.0f}')") indicators/s, peak RSS $(cut -d' ' -f2 "$work/import.time") KB, database $(du -sh "$work/data" | cut -f1)"
done

echo "== baseline: Python"
python3 - "$feed" "$work/py.db" "$store_count" <<'PY'
import bisect, ipaddress, random, sqlite3, sys, time
values = open(sys.argv[1]).read().split()
store_count = int(sys.argv[3])
t = time.perf_counter(); s = set(values); build = time.perf_counter() - t
rng = random.Random(1)
probes = [rng.choice(values) for _ in range(1_000_000)]
probes = [p if i % 2 else p[:-1] + ("1" if p[-1] == "0" else "0") for i, p in enumerate(probes)]
t = time.perf_counter(); hits = sum(1 for p in probes if p in s); dt = time.perf_counter() - t
print(f"python_set_lookups_per_s {len(probes)/dt:.0f}")
rng = random.Random(42)
ranges = []
for _ in range(1_000_000):
    a = rng.getrandbits(32) & 0xFFFFFF00; l = 20 + rng.randrange(9)
    net = ipaddress.ip_network(f"{ipaddress.IPv4Address(a)}/{l}", strict=False)
    ranges.append((int(net.network_address), int(net.broadcast_address)))
ranges.sort(); merged = []
for s0, e0 in ranges:
    if merged and s0 <= merged[-1][1] + 1: merged[-1][1] = max(merged[-1][1], e0)
    else: merged.append([s0, e0])
starts = [r[0] for r in merged]
addrs = [rng.getrandbits(32) for _ in range(1_000_000)]
t = time.perf_counter()
inside = 0
for a in addrs:
    i = bisect.bisect_right(starts, a)
    if i and merged[i-1][1] >= a: inside += 1
dt = time.perf_counter() - t
print(f"python_cidr_lookups_per_s {len(addrs)/dt:.0f}")
db = sqlite3.connect(sys.argv[2])
db.execute("CREATE TABLE ioc (value TEXT PRIMARY KEY, source TEXT)")
t = time.perf_counter()
db.executemany("INSERT OR IGNORE INTO ioc VALUES (?, 'bench')", ((v,) for v in values[:store_count]))
db.commit(); dt = time.perf_counter() - t
print(f"python_sqlite_import_per_s {store_count/dt:.0f}")
PY
