#!/usr/bin/env bash
# Measures libmodsecurity 3 (the engine nginx and Apache users run CRS with) on the requests and
# CRS configuration of crates/qalxan-waf/benches/crs.rs, then runs that benchmark: one run,
# both engines, same machine. Needs Debian's libmodsecurity-dev and modsecurity-crs.
#   bench/waf-peer.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -O2 -o "$out/modsec-peer" "$here/modsec-peer.c" -lmodsecurity
for pl in 1 4; do
  cat > "$out/pl$pl.conf" <<CONF
SecRuleEngine On
SecRequestBodyAccess On
Include /etc/modsecurity/crs/crs-setup.conf
SecAction "id:900100,phase:1,nolog,pass,setvar:tx.paranoia_level=$pl,setvar:tx.executing_paranoia_level=$pl"
Include /usr/share/modsecurity-crs/rules/*.conf
CONF
  "$out/modsec-peer" "$out/pl$pl.conf" "libmodsecurity $(dpkg-query -W -f='${Version}' libmodsecurity3) PL$pl"
done
cd "$here/.." && cargo bench -p qalxan-waf --bench crs 2>&1 | grep -E '^crs|time:'
