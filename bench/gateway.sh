#!/usr/bin/env bash
# One run, same machine, same upstream: the throughput and latency of
#   upstream direct | nginx proxy | nginx + ModSecurity v3 + CRS 3.3.4 PL1
#   | qalxan gateway without WAF | qalxan gateway + CRS 3.3.4 PL1
# for a benign GET and an attack GET, with wrk. Installs what it needs from Debian (nginx,
# libnginx-mod-http-modsecurity, modsecurity-crs, wrk) and builds qalxan in release mode.
#   bench/gateway.sh [SECONDS]      (results as a Markdown table on stdout)
set -euo pipefail
secs=${1:-10}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
need=()
for p in nginx libnginx-mod-http-modsecurity modsecurity-crs wrk; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
(cd "$root" && cargo build --release -q -p qalxan)
qalxan="${CARGO_TARGET_DIR:-$root/target}/release/qalxan"

UP=18080 PX=18081 MS=18082 QN=18083 QW=18084
p=$(mktemp -d)
cleanup() {
  nginx -p "$p" -c "$p/nginx.conf" -s stop 2>/dev/null || true
  nginx -p "$p/up" -c "$p/up/nginx.conf" -s stop 2>/dev/null || true
  kill $(jobs -p) 2>/dev/null || true; rm -rf "$p"
}
trap cleanup EXIT
mkdir -p "$p/logs" "$p/tmp" "$p/modsec" "$p/modules" "$p/up/logs" "$p/up/tmp"
ln -s /usr/lib/nginx/modules/ngx_http_modsecurity_module.so "$p/modules/"
cat > "$p/modsec/main.conf" <<CONF
SecRuleEngine On
SecRequestBodyAccess On
SecRequestBodyLimit 13107200
SecRequestBodyNoFilesLimit 131072
SecResponseBodyAccess Off
SecAuditEngine Off
SecDebugLogLevel 0
SecArgumentSeparator &
SecCookieFormat 0
Include /etc/modsecurity/crs/crs-setup.conf
Include /usr/share/modsecurity-crs/rules/*.conf
CONF
# nginx.conf's common part: WORKERS, then the http block's servers on stdin.
nginx_conf() {
  cat <<CONF
worker_processes $1;
error_log logs/error.log warn;
pid logs/nginx.pid;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path tmp; proxy_temp_path tmp; fastcgi_temp_path tmp; uwsgi_temp_path tmp; scgi_temp_path tmp;
CONF
  cat
  echo "}"
}
{ echo "load_module modules/ngx_http_modsecurity_module.so;"; nginx_conf 2 <<CONF
  upstream app { server 127.0.0.1:$UP; keepalive 64; }
  server { listen 127.0.0.1:$PX; location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; } }
  server {
    listen 127.0.0.1:$MS;
    modsecurity on;
    modsecurity_rules_file $p/modsec/main.conf;
    location / { proxy_pass http://app; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
CONF
} > "$p/nginx.conf"
# The upstream is a process of its own, as a web service behind a proxy is: served by the
# proxy's own workers, nginx would hand each request to itself without crossing processes.
nginx_conf 1 > "$p/up/nginx.conf" <<CONF
  server { listen 127.0.0.1:$UP; location / { return 200 "hello\n"; } }
CONF
nginx -p "$p/up" -c "$p/up/nginx.conf"
nginx -p "$p" -c "$p/nginx.conf"
"$qalxan" gateway --listen 127.0.0.1:$QN --upstream http://127.0.0.1:$UP --waf off >/dev/null 2>&1 &
"$qalxan" gateway --listen 127.0.0.1:$QW --upstream http://127.0.0.1:$UP --waf block --paranoia 1 >/dev/null 2>&1 &
for port in $UP $PX $MS $QN $QW; do
  for _ in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
done

benign="/news/2026/11/budget-hearing.html?page=2&sort=date"
attack="/item.php?id=1%27%20OR%20%271%27%3D%271"
rss() { ps -o rss= -p "$1" 2>/dev/null | awk '{s+=$1} END {printf "%.0f", s/1024}'; }
pid_of() {
  case "$1" in
    $QN) pgrep -f "listen 127.0.0.1:$QN" ;;
    $QW) pgrep -f "listen 127.0.0.1:$QW" ;;
    $UP) echo "$(cat "$p/up/logs/nginx.pid"),$(pgrep -d, -P "$(cat "$p/up/logs/nginx.pid")")" ;;
    *) echo "$(cat "$p/logs/nginx.pid"),$(pgrep -d, -P "$(cat "$p/logs/nginx.pid")")" ;;
  esac
}
measure() { # name port path
  local out rps p50 p99 mem
  out=$(wrk -t2 -c50 -d"${secs}s" --latency -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64)" -H "Accept: text/html" "http://127.0.0.1:$2$3")
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  mem=$(rss "$(pid_of "$2")")
  printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$4" "$rps" "$p50" "$p99" "${non2xx:-0}" "$mem"
}
echo "| server | request | req/s | p50 | p99 | non-2xx | RSS MiB |"
echo "|---|---|---:|---:|---:|---:|---:|"
for req in benign attack; do
  path=$benign; [ $req = attack ] && path=$attack
  measure "upstream (nginx, direct)" $UP "$path" $req
  measure "nginx proxy" $PX "$path" $req
  measure "nginx + ModSecurity 3 + CRS PL1" $MS "$path" $req
  measure "qalxan gateway, WAF off" $QN "$path" $req
  measure "qalxan gateway + CRS PL1" $QW "$path" $req
done
