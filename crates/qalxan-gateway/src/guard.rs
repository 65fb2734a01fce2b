//! Abuse and flood protection per client address: a token bucket for the request rate, a cap on
//! concurrent connections, and fail2ban-like temporary bans for addresses that keep hitting the
//! limits or the WAF. All of it is a cheap check before any rule runs, so a flood costs the
//! gateway little while other clients keep being served.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits per client address; `None` switches one off.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Sustained requests per second, and the burst allowed above it.
    pub rate: Option<(f64, f64)>,
    /// Connections open at once.
    pub max_connections: Option<u32>,
    /// Strikes (requests over the rate, WAF blocks) within `window` that earn a ban.
    pub ban: Option<BanPolicy>,
    /// Requests in flight at once, over all clients, before the heaviest clients are shed.
    pub max_in_flight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BanPolicy {
    pub strikes: u32,
    pub window: Duration,
    pub duration: Duration,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    Allow,
    /// Over the rate: answer 429, retry after this long.
    Limited(Duration),
    /// Banned until then.
    Banned(Instant),
}

/// A ban that just started, for reporting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BanStarted {
    pub ip: IpAddr,
    pub until: Instant,
    /// Highest requests per second seen from the address in the last seconds.
    pub peak_rps: u64,
    pub strikes: u32,
}

#[derive(Debug)]
struct Client {
    tokens: f64,
    refilled: Instant,
    connections: u32,
    strikes: u32,
    strikes_since: Instant,
    banned_until: Option<Instant>,
    second: Instant,
    this_second: u64,
    peak_rps: u64,
    seen: Instant,
    /// Requests of this client being answered now.
    in_flight: u32,
}

/// Per-address state, shared by every connection.
pub struct Guard {
    /// Replaced by a reload; read (copied) once per check.
    limits: std::sync::RwLock<Limits>,
    clients: Mutex<HashMap<IpAddr, Client>>,
    /// Requests in flight and clients with any, changed only under `clients`' lock.
    in_flight: AtomicU32,
    busy_clients: AtomicU32,
}

impl Guard {
    pub fn new(limits: Limits) -> Guard {
        Guard {
            limits: std::sync::RwLock::new(limits),
            clients: Mutex::new(HashMap::new()),
            in_flight: AtomicU32::new(0),
            busy_clients: AtomicU32::new(0),
        }
    }

    fn limits(&self) -> Limits {
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    /// New limits (a reload); addresses keep their state (bans, strikes, connections).
    pub fn set_limits(&self, limits: Limits) {
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
    }

    pub fn enabled(&self) -> bool {
        let l = self.limits();
        l.rate.is_some()
            || l.max_connections.is_some()
            || l.ban.is_some()
            || l.max_in_flight.is_some()
    }

    fn with<T>(&self, ip: IpAddr, now: Instant, f: impl FnOnce(&mut Client) -> T) -> T {
        let burst = self.limits().rate.map_or(0.0, |r| r.1);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let c = clients.entry(ip).or_insert_with(|| Client {
            tokens: burst,
            refilled: now,
            connections: 0,
            strikes: 0,
            strikes_since: now,
            banned_until: None,
            second: now,
            this_second: 0,
            peak_rps: 0,
            seen: now,
            in_flight: 0,
        });
        c.seen = now;
        f(c)
    }

    /// A new connection from `ip`; `false` when it must be closed at once.
    pub fn connect(&self, ip: IpAddr, now: Instant) -> bool {
        if !self.enabled() {
            return true;
        }
        let cap = self.limits().max_connections;
        self.with(ip, now, |c| {
            if c.banned_until.is_some_and(|t| t > now) || cap.is_some_and(|m| c.connections >= m) {
                return false;
            }
            c.connections += 1;
            true
        })
    }

    pub fn disconnect(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get_mut(&ip) {
            c.connections = c.connections.saturating_sub(1);
        }
    }

    /// Admits a request from `ip` or not; a request over the rate counts as a strike, and the
    /// strike that reaches the policy's count starts a ban (returned once).
    pub fn request(&self, ip: IpAddr, now: Instant) -> (Admission, Option<BanStarted>) {
        if !self.enabled() {
            return (Admission::Allow, None);
        }
        let Limits {
            rate, ban: policy, ..
        } = self.limits();
        self.with(ip, now, |c| {
            if now.duration_since(c.second) >= Duration::from_secs(1) {
                c.second = now;
                c.this_second = 0;
            }
            c.this_second += 1;
            c.peak_rps = c.peak_rps.max(c.this_second);
            if let Some(until) = c.banned_until {
                if until > now {
                    return (Admission::Banned(until), None);
                }
                c.banned_until = None;
                c.strikes = 0;
            }
            let Some((per_second, burst)) = rate else {
                return (Admission::Allow, None);
            };
            let elapsed = now.duration_since(c.refilled).as_secs_f64();
            c.tokens = (c.tokens + elapsed * per_second).min(burst);
            c.refilled = now;
            if c.tokens >= 1.0 {
                c.tokens -= 1.0;
                return (Admission::Allow, None);
            }
            let wait = Duration::from_secs_f64(((1.0 - c.tokens) / per_second).max(0.001));
            let ban = policy.and_then(|p| strike(c, ip, now, p));
            match ban {
                Some(b) => (Admission::Banned(b.until), Some(b)),
                None => (Admission::Limited(wait), None),
            }
        })
    }

    /// A request from `ip` starts being answered, under overload protection: `None` when there
    /// is none (nothing to end), `Some(true)` when admitted (call [`Guard::end`] when its
    /// response is over), `Some(false)` when shed. Once `max_in_flight` requests are in
    /// flight, a client already holding its fair share of them (the maximum divided among the
    /// clients with requests in flight) is shed, so the heaviest clients go first and light
    /// ones keep being served.
    pub fn start(&self, ip: IpAddr, now: Instant) -> Option<bool> {
        let max = self.limits().max_in_flight?;
        Some(self.with(ip, now, |c| {
            let total = self.in_flight.load(Ordering::Relaxed);
            if total >= max {
                let busy = self.busy_clients.load(Ordering::Relaxed).max(1);
                let fair_share = (max / busy).max(1);
                if c.in_flight >= fair_share {
                    return false;
                }
            }
            if c.in_flight == 0 {
                self.busy_clients.fetch_add(1, Ordering::Relaxed);
            }
            c.in_flight += 1;
            self.in_flight.fetch_add(1, Ordering::Relaxed);
            true
        }))
    }

    /// The end of a request [`Guard::start`] admitted.
    pub fn end(&self, ip: IpAddr) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get_mut(&ip) {
            if c.in_flight > 0 {
                c.in_flight -= 1;
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                if c.in_flight == 0 {
                    self.busy_clients.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Requests in flight now, under overload protection.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a strike (a WAF block, a site's rate passed, a body too slow) against `ip`;
    /// may start a ban.
    pub fn strike(&self, ip: IpAddr, now: Instant) -> Option<BanStarted> {
        let policy = self.limits().ban?;
        self.with(ip, now, |c| strike(c, ip, now, policy))
    }

    /// Addresses banned now, with when their ban ends.
    pub fn bans(&self, now: Instant) -> Vec<(IpAddr, Instant)> {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<_> = clients
            .iter()
            .filter_map(|(ip, c)| c.banned_until.filter(|t| *t > now).map(|t| (*ip, t)))
            .collect();
        out.sort();
        out
    }

    /// Lifts a ban; `true` if there was one.
    pub fn lift(&self, ip: IpAddr) -> bool {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        match clients.get_mut(&ip) {
            Some(c) if c.banned_until.is_some() => {
                c.banned_until = None;
                c.strikes = 0;
                true
            }
            _ => false,
        }
    }

    /// Forgets addresses idle for `idle` that hold no connection or ban, bounding memory.
    pub fn sweep(&self, now: Instant, idle: Duration) {
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.retain(|_, c| {
            c.connections > 0
                || c.in_flight > 0
                || c.banned_until.is_some_and(|t| t > now)
                || now.duration_since(c.seen) < idle
        });
    }
}

fn strike(c: &mut Client, ip: IpAddr, now: Instant, policy: BanPolicy) -> Option<BanStarted> {
    if now.duration_since(c.strikes_since) > policy.window {
        c.strikes = 0;
        c.strikes_since = now;
    }
    c.strikes += 1;
    if c.strikes < policy.strikes || c.banned_until.is_some_and(|t| t > now) {
        return None;
    }
    let until = now + policy.duration;
    c.banned_until = Some(until);
    Some(BanStarted {
        ip,
        until,
        peak_rps: c.peak_rps,
        strikes: c.strikes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, n])
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let g = Guard::new(Limits {
            rate: Some((10.0, 5.0)),
            ..Limits::default()
        });
        let t0 = Instant::now();
        let allowed = (0..20)
            .filter(|_| g.request(ip(1), t0).0 == Admission::Allow)
            .count();
        assert_eq!(allowed, 5, "the burst");
        assert!(matches!(g.request(ip(1), t0).0, Admission::Limited(_)));
        assert_eq!(
            g.request(ip(2), t0).0,
            Admission::Allow,
            "another client is not affected"
        );
        let later = t0 + Duration::from_millis(500);
        let allowed = (0..20)
            .filter(|_| g.request(ip(1), later).0 == Admission::Allow)
            .count();
        assert_eq!(allowed, 5, "half a second at 10/s refills five");
    }

    #[test]
    fn strikes_earn_a_ban_that_ends_or_is_lifted() {
        let g = Guard::new(Limits {
            ban: Some(BanPolicy {
                strikes: 3,
                window: Duration::from_secs(60),
                duration: Duration::from_secs(600),
            }),
            ..Limits::default()
        });
        let t0 = Instant::now();
        assert!(g.strike(ip(1), t0).is_none());
        assert!(g.strike(ip(1), t0).is_none());
        let ban = g.strike(ip(1), t0).unwrap();
        assert_eq!(ban.strikes, 3);
        assert!(matches!(g.request(ip(1), t0).0, Admission::Banned(_)));
        assert!(!g.connect(ip(1), t0), "banned addresses cannot connect");
        assert_eq!(g.bans(t0), [(ip(1), t0 + Duration::from_secs(600))]);
        assert!(g.lift(ip(1)));
        assert_eq!(g.request(ip(1), t0).0, Admission::Allow);
        assert!(g.strike(ip(2), t0).is_none());
        let much_later = t0 + Duration::from_secs(3600);
        assert!(
            g.strike(ip(2), much_later).is_none(),
            "old strikes expire with the window"
        );
    }

    #[test]
    fn overload_sheds_the_heaviest_client_first() {
        let g = Guard::new(Limits {
            max_in_flight: Some(4),
            ..Limits::default()
        });
        let t0 = Instant::now();
        let heavy = (0..10).filter(|_| g.start(ip(1), t0) == Some(true)).count();
        assert_eq!(heavy, 4, "alone, a client may fill the gateway");
        assert_eq!(
            g.start(ip(2), t0),
            Some(true),
            "a light client is still served"
        );
        assert_eq!(g.start(ip(1), t0), Some(false), "the heavy one is shed");
        assert_eq!(
            g.start(ip(2), t0),
            Some(true),
            "two clients: a fair share is 2, ip 2 has 1"
        );
        assert_eq!(
            g.start(ip(2), t0),
            Some(false),
            "and no more than its share"
        );
        for _ in 0..4 {
            g.end(ip(1));
        }
        assert_eq!(g.in_flight(), 2);
        assert_eq!(
            g.start(ip(1), t0),
            Some(true),
            "below the maximum, everyone passes"
        );
        let off = Guard::new(Limits::default());
        assert_eq!(off.start(ip(1), t0), None);
    }

    #[test]
    fn connection_cap() {
        let g = Guard::new(Limits {
            max_connections: Some(2),
            ..Limits::default()
        });
        let t0 = Instant::now();
        assert!(g.connect(ip(1), t0) && g.connect(ip(1), t0));
        assert!(!g.connect(ip(1), t0));
        g.disconnect(ip(1));
        assert!(g.connect(ip(1), t0));
        g.sweep(t0 + Duration::from_secs(3600), Duration::from_secs(60));
        assert!(
            !g.connect(ip(1), t0),
            "an address with open connections is kept"
        );
    }
}
