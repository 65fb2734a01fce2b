#!/usr/bin/env bash
# The scan engine against ClamAV, measured in one run on the same corpus and signatures:
#   clamscan, clamd via clamdscan --multiscan, qalxan scan, qalxan clamd via clamdscan --multiscan.
# Signatures: 1,000,000 SHA-256 hashes, the project's test .ndb/.ldb and its YARA rule.
# For each: wall time, MB/s, peak RSS; and the start-up time (loading 1,000,000 hash signatures).
#
#   bench/scan.sh [CORPUS_MB]      (default 500; needs clamav, clamav-daemon, clamdscan,
#                                   clamav-testfiles and a release build: cargo build --release)
#
# The corpus is deterministic for a given machine: system files taken in sorted order, random
# data from AES-CTR over zeros with a fixed key, and ClamAV's test files plus EICAR planted.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mb=${1:-500}
work=${BENCH_DIR:-/tmp/qalxan-bench-scan}
qalxan=${QALXAN:-${CARGO_TARGET_DIR:-$root/target}/release/qalxan}
[ -x "$qalxan" ] || { echo "build first: cargo build --release (or set QALXAN=path)"; exit 2; }
for tool in clamscan clamd clamdscan /usr/bin/time openssl python3; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (apt-get install clamav clamav-daemon clamdscan time)"; exit 2; }
done
mkdir -p "$work"
corpus=$work/corpus
sigs=$work/sigs

if [ ! -f "$corpus/.done-$mb" ]; then
  echo "building a ${mb} MB corpus in $corpus"
  rm -rf "$corpus"; mkdir -p "$corpus/system" "$corpus/random" "$corpus/planted"
  system_mb=$(( mb * 4 / 5 ))
  python3 - "$corpus/system" "$system_mb" <<'EOF'
import os, shutil, sys
dest, budget = sys.argv[1], int(sys.argv[2]) << 20
roots = ["/usr/lib/x86_64-linux-gnu", "/usr/share/doc", "/usr/bin", "/usr/share/locale", "/usr/lib/python3"]
used = 0
for root in roots:
    for dirpath, dirs, files in os.walk(root):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            size = os.path.getsize(p)
            if size == 0 or size > 64 << 20 or used + size > budget:
                continue
            target = os.path.join(dest, p.lstrip("/").replace("/", "_"))
            shutil.copyfile(p, target)
            used += size
print(f"system files: {used >> 20} MB")
EOF
  random_mb=$(( mb - $(du -sm "$corpus/system" | cut -f1) ))
  for i in $(seq 1 $(( random_mb / 8 ))); do
    openssl enc -aes-128-ctr -K 000102030405060708090a0b0c0d0e0f -iv "$(printf '%032x' "$i")" -nosalt </dev/zero 2>/dev/null \
      | head -c $(( 8 << 20 )) > "$corpus/random/random-$i.bin" || true  # openssl ends on SIGPIPE
  done
  cp /usr/share/clamav-testfiles/* "$corpus/planted/"
  printf '%s' 'X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*' > "$corpus/planted/eicar.com"
  touch "$corpus/.done-$mb"
fi
files=$(find "$corpus" -type f ! -name '.done-*' | wc -l)
bytes=$(find "$corpus" -type f ! -name '.done-*' -printf '%s\n' | awk '{s+=$1} END {print s}')
corpus_mb=$(( bytes >> 20 ))
echo "corpus: $files files, $corpus_mb MB"

if [ ! -f "$sigs/bench.hsb" ]; then
  mkdir -p "$sigs"
  python3 - "$sigs/bench.hsb" <<'EOF'
import hashlib, random, sys
rng = random.Random(20261125)
with open(sys.argv[1], "w") as f:
    # ClamAV's own test file, so that the planted copies are found by hash.
    f.write("71e7b604d18aefd839e51a39c88df8383bb4c071dc31f87f00a2b5df580d4495:544:Bench.ClamAV-Test-File\n")
    for i in range(999_999):
        digest = hashlib.sha256(rng.getrandbits(128).to_bytes(16, "little")).hexdigest()
        f.write(f"{digest}:{rng.randint(100, 10_000_000)}:Bench.Hash.{i}\n")
EOF
  extra="$root/../shared/data/clamav-test-sigs/extra"
  cp "$extra/qalxan-test.ndb" "$extra/qalxan-test.ldb" "$extra/qalxan-test.yar" "$sigs/" 2>/dev/null || true
fi
[ -f "$sigs/qalxan-test.yar" ] || cp "$root/../shared/data/clamav-test-sigs/extra/qalxan-test.yar" "$sigs/" 2>/dev/null || true
echo "signatures: $(cat "$sigs"/*.hsb "$sigs"/*.ndb "$sigs"/*.ldb 2>/dev/null | wc -l) lines and $(ls "$sigs"/*.yar 2>/dev/null | wc -l) YARA file(s) in $sigs"

rss_of() { awk '/Maximum resident set size/ {print int($6/1024)}' "$1"; }
wall_of() { awk -F': ' '/Elapsed \(wall clock\)/ {split($2, t, ":"); if (length(t) == 3) print t[1]*3600 + t[2]*60 + t[3]; else print t[1]*60 + t[2]}' "$1"; }
report() { # name wall rss
  awk -v n="$1" -v w="$2" -v r="$3" -v mb="$corpus_mb" 'BEGIN { printf "%-34s %8.2f s  %7.1f MB/s  %6d MB peak RSS\n", n, w, mb / w, r }'
}
empty=$work/empty.txt; echo hello > "$empty"

echo; echo "== start-up: load the signatures, scan one small file"
/usr/bin/time -v clamscan --no-summary -d "$sigs" "$empty" >/dev/null 2>"$work/t-clam-load"
/usr/bin/time -v "$qalxan" scan --no-summary -d "$sigs" "$empty" >/dev/null 2>"$work/t-qx-load"
printf '%-34s %8.2f s  %6d MB peak RSS\n' "clamscan" "$(wall_of "$work/t-clam-load")" "$(rss_of "$work/t-clam-load")"
printf '%-34s %8.2f s  %6d MB peak RSS\n' "qalxan scan" "$(wall_of "$work/t-qx-load")" "$(rss_of "$work/t-qx-load")"

echo; echo "== one process per scan, whole corpus (cache warmed first)"
cat "$corpus"/*/* >/dev/null
/usr/bin/time -v clamscan -r -i --no-summary -d "$sigs" "$corpus" >"$work/clamscan.out" 2>"$work/t-clamscan" || true
/usr/bin/time -v "$qalxan" scan -r -i --no-summary -d "$sigs" "$corpus" >"$work/qalxan.out" 2>"$work/t-qalxan" || true
report "clamscan (1 thread)" "$(wall_of "$work/t-clamscan")" "$(rss_of "$work/t-clamscan")"
report "qalxan scan ($(nproc) threads)" "$(wall_of "$work/t-qalxan")" "$(rss_of "$work/t-qalxan")"
echo "detections: clamscan $(grep -c FOUND "$work/clamscan.out" || true), qalxan $(grep -c FOUND "$work/qalxan.out" || true)"

echo; echo "== daemons, clamdscan --multiscan as the client"
port=$(( 43000 + RANDOM % 1000 ))
cat > "$work/clamd.conf" <<EOF
DatabaseDirectory $sigs
TCPSocket $port
TCPAddr 127.0.0.1
Foreground yes
LogFile $work/clamd.log
MaxThreads $(nproc)
EOF
printf 'TCPSocket %s\nTCPAddr 127.0.0.1\n' "$port" > "$work/client.conf"
# clamdscan --version falls back to its own version when no daemon answers: ask PING instead.
ping_daemon() {
  python3 -c "import socket,sys; s=socket.create_connection(('127.0.0.1',$port),timeout=1); s.sendall(b'zPING\0'); sys.exit(0 if s.recv(16)==b'PONG\0' else 1)" 2>/dev/null
}
wait_ping() { for _ in $(seq 1 1200); do ping_daemon && return 0; sleep 0.05; done; echo "no daemon on $port"; return 1; }
measure_daemon() { # name pid
  local start end
  start=$(date +%s.%N)
  clamdscan --config-file="$work/client.conf" --multiscan -i --no-summary "$corpus" >"$work/$1.out" 2>&1 || true
  end=$(date +%s.%N)
  local rss; rss=$(awk '/VmHWM/ {print int($2/1024)}' "/proc/$2/status")
  report "$1 via clamdscan --multiscan" "$(echo "$end - $start" | bc)" "$rss"
  echo "   detections: $(grep -c FOUND "$work/$1.out" || true)"
}
t0=$(date +%s.%N)
clamd -c "$work/clamd.conf" >"$work/clamd.stdout" 2>&1 & clamd_pid=$!
wait_ping; t1=$(date +%s.%N)
echo "clamd ready in $(echo "$t1 - $t0" | bc) s"
measure_daemon clamd "$clamd_pid"
kill "$clamd_pid"; wait "$clamd_pid" 2>/dev/null || true

t0=$(date +%s.%N)
"$qalxan" clamd --listen "127.0.0.1:$port" -d "$sigs" >"$work/qalxan-clamd.stdout" 2>&1 & qx_pid=$!
wait_ping; t1=$(date +%s.%N)
echo "qalxan clamd ready in $(echo "$t1 - $t0" | bc) s"
measure_daemon "qalxan-clamd" "$qx_pid"
kill "$qx_pid"; wait "$qx_pid" 2>/dev/null || true
