#!/usr/bin/env bash
# The document sandbox against oletools (olevba + mraptor) and pdfid, one run, same files.
#
#   bench/docs.sh [COPIES]     (default 20; needs a release build and pip's oletools + pdfid:
#                               pip install oletools==0.60.2 pdfid)
#
# Corpus: the 76 labelled documents of ../shared/data/docs, COPIES times. The peers get the
# files they handle, in batch calls so Python starts once per tool: olevba --json on the
# Office files (without the zips and the six encrypted with an unknown password, where a
# batch olevba stops), mraptor on the same, pdfid on the PDFs; peer time is the sum of the
# three. Qalxan analyses the same files (one `qalxan analyze --json` call, all cores, and
# again on one thread), then every file (zips opened, unknown passwords tried).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
copies=${1:-20}
work=${BENCH_DIR:-/tmp/qalxan-bench-docs}
qalxan=${QALXAN:-${CARGO_TARGET_DIR:-$root/target}/release/qalxan}
shared=$root/../shared/data/docs
[ -x "$qalxan" ] || { echo "build first: cargo build --release (or set QALXAN=path)"; exit 2; }
[ -d "$shared" ] || { echo "missing: $shared"; exit 2; }
pdfid=(python3 -m pdfid.pdfid)   # pip's pdfid installs a module, not a command
python3 -c 'import pdfid.pdfid' 2>/dev/null || { echo "missing: pdfid (pip install pdfid)"; exit 2; }
for tool in olevba mraptor /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "missing: $tool (pip install oletools==0.60.2 pdfid; apt-get install time)"; exit 2; }
done
rm -rf "$work"; mkdir -p "$work/corpus"
i=0
while read -r f; do
  for c in $(seq 1 "$copies"); do
    i=$((i + 1))
    cp "$shared/$f" "$work/corpus/$(printf '%05d' "$i")-$(basename "$f")"
  done
done < <(python3 -c "import json,sys; [print(x['file']) for x in json.load(open(sys.argv[1]))]" "$shared/labels.json")
cd "$work/corpus"
mapfile -t all < <(ls)
mapfile -t pdfs < <(ls | grep '\.pdf$')
mapfile -t office < <(ls | grep -v '\.pdf$' | grep -v -- '-encrypted\.' | grep -v '\.zip$')
bytes=$(du -cb "${all[@]}" | tail -1 | cut -f1)
mb=$(python3 -c "print(f'{$bytes/1048576:.1f}')")
peer_bytes=$(du -cb "${office[@]}" "${pdfs[@]}" | tail -1 | cut -f1)
peer_mb=$(python3 -c "print(f'{$peer_bytes/1048576:.1f}')")
echo "corpus: ${#all[@]} files, $mb MB; the peers' share: $(( ${#office[@]} + ${#pdfs[@]} )) files, $peer_mb MB (${#office[@]} Office/RTF/XML for olevba+mraptor, ${#pdfs[@]} PDF for pdfid)"

measure() {  # name, then the command; prints seconds and peak RSS
  local name=$1; shift
  # Exit codes are findings here (1: something malicious), not failures.
  /usr/bin/time -o "$work/time.txt" -f '%e %M' "$@" >/dev/null 2>&1 || true
  echo "$name $(tail -1 "$work/time.txt")"
}
results=$(
  measure qalxan "$qalxan" analyze --json "${office[@]}" "${pdfs[@]}"
  RAYON_NUM_THREADS=1 measure qalxan-1-thread "$qalxan" analyze --json "${office[@]}" "${pdfs[@]}"
  measure qalxan-every-file "$qalxan" analyze --json -p infected-test "${all[@]}"
  measure olevba olevba --json "${office[@]}"
  measure mraptor mraptor "${office[@]}"
  measure pdfid "${pdfid[@]}" "${pdfs[@]}"
)
echo "$results" | python3 -c "
import sys
files, mb = ${#office[@]} + ${#pdfs[@]}, $peer_mb
all_files, all_mb = ${#all[@]}, $mb
rows = {l.split()[0]: (float(l.split()[1]), int(l.split()[2])) for l in sys.stdin if l.strip()}
peer = rows['olevba'][0] + rows['mraptor'][0] + rows['pdfid'][0]
print(f\"{'tool':<18}{'seconds':>9}{'files/s':>10}{'MB/s':>8}{'peak RSS MB':>13}\")
for name, (s, rss) in rows.items():
    n, m = (all_files, all_mb) if name == 'qalxan-every-file' else (files, mb)
    print(f'{name:<18}{s:>9.2f}{n/max(s,1e-3):>10.0f}{m/max(s,1e-3):>8.1f}{rss/1024:>13.0f}')
print(f'{\"peers together\":<18}{peer:>9.2f}{files/peer:>10.0f}{mb/peer:>8.1f}')
print(f'qalxan vs peers: {peer/rows[\"qalxan\"][0]:.1f}x all cores, {peer/rows[\"qalxan-1-thread\"][0]:.1f}x one thread')
"
