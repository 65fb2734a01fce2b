#!/usr/bin/env bash
# Instructions per transaction, counted by callgrind, for libmodsecurity 3 and Qalxan's WAF on
# the same CRS, configuration and requests as bench/waf-peer.sh. Wall-clock times on a shared
# machine move by tens of percent from run to run; these counts move by well under one.
# Needs valgrind, Debian's libmodsecurity-dev and modsecurity-crs.
#   bench/waf-instructions.sh [ROUNDS]     (default 20 rounds of each mix; ~5 minutes)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-20}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -O2 -o "$out/modsec-peer" "$here/modsec-peer.c" -lmodsecurity
(cd "$here/.." && cargo build -q --release -p qalxan-waf --example crs_instructions)
qalxan="${CARGO_TARGET_DIR:-$here/../target}/release/examples/crs_instructions"
count() { # PROGRAM ARGS... -> instructions inside measured_loop
  valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*measured_loop*' "$@" 2>&1 \
    | sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
}
printf '| workload | libmodsecurity instructions/transaction | Qalxan instructions/transaction | ratio |\n|---|---:|---:|---:|\n'
for pl in 1 4; do
  cat > "$out/pl$pl.conf" <<CONF
SecRuleEngine On
SecRequestBodyAccess On
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:900100,phase:1,nolog,pass,setvar:tx.paranoia_level=$pl,setvar:tx.executing_paranoia_level=$pl"
Include /usr/share/modsecurity-crs/rules/*.conf
CONF
  for mix in get benign attack; do
    n=1; [ "$mix" = get ] || n=4
    peer=$(count "$out/modsec-peer" "$out/pl$pl.conf" peer "$mix" "$rounds")
    ours=$(count "$qalxan" "$pl" "$mix" "$rounds")
    per_peer=$((peer / rounds / n)); per_ours=$((ours / rounds / n))
    ratio=$(awk -v a="$per_peer" -v b="$per_ours" 'BEGIN { printf "%.1f", a / b }')
    printf '| PL%s, %s | %s | %s | %s× |\n' "$pl" "$mix" "$per_peer" "$per_ours" "$ratio"
  done
done
