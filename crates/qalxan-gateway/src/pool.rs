//! Upstream pools: which server of a site gets the next request (round-robin or least
//! connections), which servers are out (passively after failed requests, actively after failed
//! health checks), and a pick that never leaves a site without a server to try: when every
//! server is out, they are all tried again rather than failing every request.

use crate::proxy::PrefixedBody;
use crate::upstream::{BoxError, Connections, UpstreamBody};
use crate::{Balance, PoolConfig};
use hyper::http::uri::{Authority, Scheme};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// One upstream server and what is known of its health.
pub(crate) struct Server {
    pub scheme: Scheme,
    pub authority: Authority,
    /// Requests being answered now (least-conn counts these).
    in_flight: AtomicU32,
    /// Cleared by failed health checks, set again by passing ones.
    healthy: AtomicBool,
    checks_passed: AtomicU32,
    checks_failed: AtomicU32,
    passive: Mutex<Passive>,
    pub requests: AtomicU64,
    pub failures: AtomicU64,
}

#[derive(Default)]
struct Passive {
    fails: u32,
    first_fail: Option<Instant>,
    ejected_until: Option<Instant>,
}

impl Server {
    fn new(scheme: Scheme, authority: Authority) -> Server {
        Server {
            scheme,
            authority,
            in_flight: AtomicU32::new(0),
            healthy: AtomicBool::new(true),
            checks_passed: AtomicU32::new(0),
            checks_failed: AtomicU32::new(0),
            passive: Mutex::new(Passive::default()),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn ejected(&self, now: Instant) -> bool {
        let p = self.passive.lock().unwrap_or_else(|p| p.into_inner());
        p.ejected_until.is_some_and(|t| t > now)
    }

    fn available(&self, now: Instant) -> bool {
        self.healthy() && !self.ejected(now)
    }

    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// Counts a request as in flight on its server until dropped (when the response body ends).
pub(crate) struct InFlight(Arc<Server>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct Pool {
    pub servers: Vec<Arc<Server>>,
    balance: Balance,
    cursor: AtomicUsize,
    pub retries: u32,
    max_fails: u32,
    fail_timeout: Duration,
    /// Each worker's connections to the servers, on its own event loop.
    connections: Connections,
}

impl Pool {
    /// A pool for `config`; servers also in `previous` keep their health and counters, so a
    /// reload does not send requests back to a server known to be down.
    pub fn new(config: &PoolConfig, connections: Connections, previous: &[Arc<Server>]) -> Pool {
        let servers = config
            .servers
            .iter()
            .filter_map(|uri| {
                let scheme = uri.scheme()?.clone();
                let authority = uri.authority()?.clone();
                let kept = previous
                    .iter()
                    .find(|s| s.scheme == scheme && s.authority == authority);
                Some(match kept {
                    Some(s) => s.clone(),
                    None => Arc::new(Server::new(scheme, authority)),
                })
            })
            .collect();
        Pool {
            servers,
            balance: config.balance,
            cursor: AtomicUsize::new(0),
            retries: config.retries,
            max_fails: config.max_fails,
            fail_timeout: config.fail_timeout,
            connections,
        }
    }

    /// Sends `request` (its target in origin form) to server `i`.
    pub async fn send(
        &self,
        i: usize,
        request: hyper::Request<PrefixedBody>,
    ) -> Result<hyper::Response<UpstreamBody>, BoxError> {
        let server = self.servers.get(i).ok_or("no such server in the pool")?;
        self.connections.send(i, server, request).await
    }

    /// The server for the next attempt, skipping those already `tried`.
    pub fn pick(&self, tried: &[usize], now: Instant) -> Option<(usize, InFlight)> {
        let n = self.servers.len();
        if tried.len() >= n {
            return None;
        }
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let order = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i));
        let live = order.clone().filter(|&i| self.servers[i].available(now));
        let chosen = self.choose(live).or_else(|| self.choose(order))?;
        let server = self.servers[chosen].clone();
        server.in_flight.fetch_add(1, Ordering::Relaxed);
        server.requests.fetch_add(1, Ordering::Relaxed);
        Some((chosen, InFlight(server)))
    }

    /// Round-robin takes the first in rotation; least-conn the fewest in flight, ties going to
    /// the first in rotation so equal servers still share the load.
    fn choose(&self, mut candidates: impl Iterator<Item = usize>) -> Option<usize> {
        match self.balance {
            Balance::RoundRobin => candidates.next(),
            Balance::LeastConn => candidates.min_by_key(|&i| self.servers[i].in_flight()),
        }
    }

    /// A request to server `i` failed (no connection, no answer): enough of them within
    /// `fail_timeout` take it out for `fail_timeout`, as nginx's max_fails does.
    pub fn failed(&self, i: usize, now: Instant) {
        let Some(server) = self.servers.get(i) else {
            return;
        };
        server.failures.fetch_add(1, Ordering::Relaxed);
        let mut p = server.passive.lock().unwrap_or_else(|p| p.into_inner());
        if p.first_fail
            .is_none_or(|t| now.duration_since(t) > self.fail_timeout)
        {
            p.fails = 0;
            p.first_fail = Some(now);
        }
        p.fails += 1;
        if self.max_fails > 0 && p.fails >= self.max_fails {
            p.ejected_until = Some(now + self.fail_timeout);
            p.fails = 0;
            p.first_fail = None;
            tracing::warn!(server = %server.url(), seconds = self.fail_timeout.as_secs_f64(), "upstream taken out after failed requests");
        }
    }

    pub fn succeeded(&self, i: usize) {
        if let Some(server) = self.servers.get(i) {
            let mut p = server.passive.lock().unwrap_or_else(|p| p.into_inner());
            p.fails = 0;
            p.first_fail = None;
        }
    }
}

/// Checks every server of `pool` each interval until the pool is dropped (replaced by a reload).
pub(crate) fn spawn_health_checks(pool: &Arc<Pool>, check: crate::HealthCheck) {
    let weak: Weak<Pool> = Arc::downgrade(pool);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(check.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else { return };
            let mut probes = tokio::task::JoinSet::new();
            for i in 0..pool.servers.len() {
                // Held for one probe at most (its timeout): a reload then drops the pool.
                let pool = pool.clone();
                let check = check.clone();
                probes.spawn(async move {
                    let ok = probe(&pool, i, &check).await;
                    record(&pool.servers[i], ok, &check);
                });
            }
            drop(pool);
            while probes.join_next().await.is_some() {}
        }
    });
}

async fn probe(pool: &Pool, i: usize, check: &crate::HealthCheck) -> bool {
    let Ok(uri) = hyper::Uri::try_from(check.path.as_str()) else {
        return false;
    };
    let mut request = hyper::Request::new(PrefixedBody::empty());
    *request.uri_mut() = uri;
    request.headers_mut().insert(
        hyper::header::USER_AGENT,
        hyper::header::HeaderValue::from_static("qalxan-gateway health check"),
    );
    match tokio::time::timeout(check.timeout, pool.send(i, request)).await {
        Ok(Ok(response)) => {
            let status = response.status();
            status.is_success() || status.is_redirection()
        }
        _ => false,
    }
}

fn record(server: &Server, ok: bool, check: &crate::HealthCheck) {
    if ok {
        server.checks_failed.store(0, Ordering::Relaxed);
        let passed = server.checks_passed.fetch_add(1, Ordering::Relaxed) + 1;
        if !server.healthy() && passed >= check.rise {
            server.healthy.store(true, Ordering::Relaxed);
            tracing::info!(server = %server.url(), "upstream passes its health checks again");
        }
    } else {
        server.checks_passed.store(0, Ordering::Relaxed);
        let failed = server.checks_failed.fetch_add(1, Ordering::Relaxed) + 1;
        if server.healthy() && failed >= check.fall {
            server.healthy.store(false, Ordering::Relaxed);
            tracing::warn!(server = %server.url(), "upstream fails its health checks: taken out");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance, n: u16) -> Pool {
        let config = PoolConfig {
            servers: (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 9000 + i).parse().unwrap())
                .collect(),
            balance,
            retries: 1,
            max_fails: 2,
            fail_timeout: Duration::from_secs(10),
            health_check: None,
            ca: None,
            http2: false,
        };
        Pool::new(
            &config,
            Connections::new(None, false, 1, config.servers.len()).unwrap(),
            &[],
        )
    }

    #[tokio::test]
    async fn round_robin_takes_turns_and_skips_servers_that_are_out() {
        let p = pool(Balance::RoundRobin, 3);
        let now = Instant::now();
        let picks: Vec<usize> = (0..6).map(|_| p.pick(&[], now).unwrap().0).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
        p.failed(1, now);
        assert!(!p.servers[1].ejected(now), "one failure is not enough");
        p.failed(1, now);
        assert!(p.servers[1].ejected(now));
        let picks: Vec<usize> = (0..4).map(|_| p.pick(&[], now).unwrap().0).collect();
        assert!(!picks.contains(&1), "{picks:?}");
        let later = now + Duration::from_secs(11);
        assert!(!p.servers[1].ejected(later), "back after fail_timeout");
        assert_eq!(p.pick(&[0, 2], now).unwrap().0, 1, "all out: still tried");
        assert!(p.pick(&[0, 1, 2], now).is_none());
    }

    #[tokio::test]
    async fn least_conn_prefers_the_idle_server() {
        let p = pool(Balance::LeastConn, 2);
        let now = Instant::now();
        let (first, held) = p.pick(&[], now).unwrap();
        for _ in 0..4 {
            assert_ne!(p.pick(&[], now).unwrap().0, first);
        }
        drop(held);
        assert_eq!(p.servers[first].in_flight(), 0);
    }

    #[tokio::test]
    async fn health_checks_need_fall_failures_and_rise_passes() {
        let p = pool(Balance::RoundRobin, 1);
        let check = crate::HealthCheck {
            path: "/".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
        };
        let s = &p.servers[0];
        record(s, false, &check);
        assert!(s.healthy());
        record(s, false, &check);
        assert!(!s.healthy());
        record(s, true, &check);
        assert!(!s.healthy());
        record(s, true, &check);
        assert!(s.healthy());
    }
}
