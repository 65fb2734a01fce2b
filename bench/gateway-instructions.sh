#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind, for nginx's proxy and the
# qalxan gateway (without WAF and with CRS 3.3.4 PL1), in front of the same nginx upstream, for
# the benign GET of bench/gateway.sh. Each proxy runs twice under callgrind, serving N and 3N
# requests (wrk over one connection, ended by its script at the count); the difference over 2N
# requests leaves out start-up (CRS's compilation included). The kernel's share (sockets) is not counted: it is about the same for
# both proxies (bench/gateway.sh's wall-clock runs include it).
# Needs valgrind, nginx and wrk (bench/gateway.sh installs them).
#   bench/gateway-instructions.sh [N]     (default 1000; ~3 minutes)
set -euo pipefail
n=${1:-1000}
here=$(cd "$(dirname "$0")" && pwd)
(cd "$here/.." && cargo build --release -q -p qalxan)
qalxan="${CARGO_TARGET_DIR:-$here/../target}/release/qalxan"
UP=18180 PX=18181
p=$(mktemp -d)
cleanup() {
  nginx -p "$p/up" -c "$p/up/nginx.conf" -s stop 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true; rm -rf "$p"
}
trap cleanup EXIT
mkdir -p "$p/up/logs" "$p/up/tmp" "$p/px/logs" "$p/px/tmp"
common="error_log logs/error.log warn; pid logs/nginx.pid; events { worker_connections 4096; }"
paths="access_log off; client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;"
cat > "$p/up/nginx.conf" <<CONF
worker_processes 1; $common
http { $paths server { listen 127.0.0.1:$UP; location / { return 200 "hello\n"; } } }
CONF
# One process, in the foreground: callgrind follows it.
cat > "$p/px/nginx.conf" <<CONF
worker_processes 1; daemon off; master_process off; $common
http { $paths
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$PX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$p/stop.lua" <<'LUA'
local n = 0
local limit = tonumber(os.getenv("N"))
response = function(status, headers, body)
  n = n + 1
  -- wrk.thread:stop() would still leave wrk waiting out its duration.
  if n >= limit then os.exit(0) end
end
LUA
nginx -p "$p/up" -c "$p/up/nginx.conf"
benign="/news/2026/11/budget-hearing.html?page=2&sort=date"
# Runs PROXY... under callgrind for COUNT requests; prints "requests instructions".
run() {
  local count=$1; shift
  valgrind --tool=callgrind --callgrind-out-file="$p/cg.out" "$@" >/dev/null 2>"$p/vg.log" &
  local vpid=$!
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:$PX/" && break; sleep 0.2; done
  N=$count wrk -t1 -c1 -d600s -s "$p/stop.lua" -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64)" \
    -H "Accept: text/html" "http://127.0.0.1:$PX$benign" >/dev/null
  kill -INT "$vpid" 2>/dev/null || true; wait "$vpid" || true
  echo "$count $(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$p/vg.log")"
}
per_request() {
  local r1 i1 r2 i2
  read -r r1 i1 < <(run "$n" "$@")
  read -r r2 i2 < <(run $((3 * n)) "$@")
  echo $(((i2 - i1) / (r2 - r1)))
}
printf '| proxy | instructions/request |\n|---|---:|\n'
ng=$(per_request nginx -p "$p/px" -c "$p/px/nginx.conf")
printf '| nginx proxy | %s |\n' "$ng"
off=$(per_request "$qalxan" gateway --listen "127.0.0.1:$PX" --upstream "http://127.0.0.1:$UP" --waf off)
printf '| qalxan gateway, WAF off | %s (%.2fx nginx) |\n' "$off" "$(echo "$off / $ng" | bc -l)"
crs=$(per_request "$qalxan" gateway --listen "127.0.0.1:$PX" --upstream "http://127.0.0.1:$UP" --waf block --paranoia 1)
printf '| qalxan gateway + CRS PL1 | %s |\n' "$crs"
