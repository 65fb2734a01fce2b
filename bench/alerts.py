#!/usr/bin/env python3
"""Alert ingestion through the API and the alert monitor's server time.

Usage: bench/alerts.py QALXAN_BINARY WORK_DIR [COUNT]   (via bench/incidents.sh)

Starts `qalxan serve` on a fresh SQLite data folder, then:
- distinct: COUNT alerts, every one a new key (COUNT rows), POSTed in batches of 1,000 by
  4 client threads (bodies encoded before the clock starts, so the client's JSON work is not
  measured);
- aggregated: COUNT alerts over 10,000 keys (the same attackers again and again), same way;
- the alert monitor page (/alerts, 200 newest, logged in) and GET /api/v1/alerts?limit=100
  over the table the two runs left, 30 requests each: median and 95th percentile;
- baseline: Python's sqlite3 doing the same ingestion in-process with no HTTP and no checks
  (executemany of an UPSERT on the key), the floor any server on SQLite pays.
"""
import http.cookiejar, json, os, re, sqlite3, statistics, subprocess, sys, threading, time
import urllib.parse, urllib.request

binary, work = sys.argv[1], sys.argv[2]
count = int(sys.argv[3]) if len(sys.argv) > 3 else 1_000_000
data = os.path.join(work, "data")
BATCH = 1000
THREADS = 4


def cli(*args):
    return subprocess.run([binary, "--data", data, *args], check=True, capture_output=True,
                          text=True).stdout


institution = re.search(r"\d+", cli("institution", "add", "Bench Ministry")).group(0)
token = cli("token", "create", "--name", "bench", "--role", "sensor").strip().splitlines()[-1].strip()
server = subprocess.Popen([binary, "serve", "--data", data, "--listen", "127.0.0.1:0"],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
password = base = None
for line in server.stdout:
    m = re.match(r"\s*password: (\S+)$", line)
    if m:
        password = m.group(1)
    m = re.search(r"serving the dashboard and API on (http://\S+?)/?$", line)
    if m:
        base = m.group(1)
        break
threading.Thread(target=lambda: [None for _ in server.stdout], daemon=True).start()


def bodies(key_of):
    out = []
    for start in range(0, count, BATCH):
        alerts = [{"rule": "waf.blocked", "severity": "high", "institution_id": int(institution),
                   "observables": [{"type": "ipv4", "value": key_of(i)}]}
                  for i in range(start, min(start + BATCH, count))]
        out.append(json.dumps({"alerts": alerts}).encode())
    return out


def ip(n):
    return f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def send(all_bodies):
    queue = list(reversed(all_bodies))
    lock = threading.Lock()
    errors = []

    def worker():
        while True:
            with lock:
                if not queue:
                    return
                body = queue.pop()
            req = urllib.request.Request(base + "/api/v1/alerts", data=body, method="POST", headers={
                "Authorization": "Bearer " + token, "Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as r:
                    r.read()
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return elapsed


try:
    for name, key_of in [("distinct", ip), ("aggregated", lambda i: ip(i % 10_000 + 2_000_000))]:
        b = bodies(key_of)
        secs = send(b)
        print(f"{name}: {count:,} alerts in {secs:.1f} s = {count / secs:,.0f} alerts/s")

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = opener.open(base + "/login").read().decode()
    csrf = re.search(r'name="csrf" value="([^"]+)"', login).group(1)
    opener.open(base + "/login", data=urllib.parse.urlencode(
        {"username": "admin", "password": password, "csrf": csrf}).encode()).read()

    def timed(fetch):
        times, server_ms = [], []
        for _ in range(30):
            t = time.perf_counter()
            text = fetch()
            times.append((time.perf_counter() - t) * 1000)
            m = re.search(r'data-server-ms="(\d+)"', text)
            if m:
                server_ms.append(int(m.group(1)))
        times.sort()
        return statistics.median(times), times[int(len(times) * 0.95) - 1], server_ms

    med, p95, listed = timed(lambda: opener.open(base + "/alerts").read().decode())
    print(f"alert monitor page (200 newest of {2 * count:,} reported): median {med:.1f} ms, "
          f"p95 {p95:.1f} ms (list query median {statistics.median(listed)} ms)")
    req = lambda: urllib.request.urlopen(urllib.request.Request(  # noqa: E731
        base + "/api/v1/alerts?limit=100", headers={"Authorization": "Bearer " + token})).read().decode()
    admin_token = cli("token", "create", "--name", "bench-admin", "--role", "admin").strip().splitlines()[-1].strip()
    req = lambda: urllib.request.urlopen(urllib.request.Request(  # noqa: E731
        base + "/api/v1/alerts?limit=100", headers={"Authorization": "Bearer " + admin_token})).read().decode()
    med, p95, _ = timed(req)
    print(f"GET /api/v1/alerts?limit=100: median {med:.1f} ms, p95 {p95:.1f} ms")
finally:
    server.terminate()
    server.wait()

# Baseline: the same two ingestions in Python's sqlite3, in-process, one UPSERT per alert.
db_path = os.path.join(work, "baseline.db")
db = sqlite3.connect(db_path)
db.execute("PRAGMA journal_mode = WAL")
db.execute("PRAGMA synchronous = FULL")
db.execute("CREATE TABLE alerts (id INTEGER PRIMARY KEY, key TEXT UNIQUE, title TEXT, count INTEGER, "
           "first_seen INTEGER, last_seen INTEGER)")
for name, key_of in [("distinct", ip), ("aggregated", lambda i: ip(i % 10_000 + 2_000_000))]:
    t = time.perf_counter()
    for start in range(0, count, BATCH):
        rows = [(f"waf.blocked|{institution}|{key_of(i)}", f"Malicious requests from {key_of(i)}", i, i)
                for i in range(start, min(start + BATCH, count))]
        with db:
            db.executemany("INSERT INTO alerts (key, title, count, first_seen, last_seen) VALUES (?, ?, 1, ?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET count = count + 1, last_seen = excluded.last_seen", rows)
    secs = time.perf_counter() - t
    print(f"baseline python sqlite3 {name}: {count / secs:,.0f} alerts/s")
