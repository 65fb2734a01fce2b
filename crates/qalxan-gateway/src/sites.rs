//! The part of the gateway a reload replaces: sites with their compiled rules, upstream pools
//! and certificates, and the per-request settings. A request takes the current set once, at
//! its start, and keeps it to the end, so a reload never changes the rules or the upstream
//! under a request in flight, and a set that fails to build never replaces the running one.

use crate::guard::{Guard, Limits};
use crate::pool::{Pool, Server};
use crate::tls::Certificates;
use crate::{load_plan, Config, GatewayError, WafMode};
use ipnet::IpNet;
use qalxan_waf::Plan;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

pub(crate) struct SiteRoute {
    pub name: String,
    hosts: Vec<String>,
    prefix: String,
    pub pool: Arc<Pool>,
    pub plan: Option<Arc<Plan>>,
    pub mode: WafMode,
    pub institution: Option<i64>,
    /// The site's own request rate per client address, if it has one.
    pub limiter: Option<Arc<Guard>>,
    /// Bytes of request body accepted.
    pub max_body: Option<u64>,
}

pub(crate) struct Routes {
    pub sites: Vec<SiteRoute>,
    pub certificates: Certificates,
    pub trusted_proxies: Vec<IpNet>,
    pub inspect_limit: usize,
    pub request_limits: crate::RequestLimits,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    /// The configuration this set was built from (a reload compares its fixed parts).
    pub config: Config,
    /// Rules compiled, for the reload's summary.
    pub rule_count: usize,
}

impl Routes {
    /// Compiles rules and opens certificates: slow and blocking, so reloads run it off the
    /// request threads. Servers kept from `previous` keep their health.
    pub fn build(config: Config, previous: Option<&Routes>) -> Result<Routes, GatewayError> {
        let mut plans: HashMap<(Option<PathBuf>, u8, bool), Arc<Plan>> = HashMap::new();
        let mut sites = Vec::new();
        let mut rule_count = 0;
        for site in &config.sites {
            let plan = match site.waf {
                WafMode::Off => None,
                mode => {
                    let key = (site.rules.clone(), site.paranoia, mode == WafMode::Block);
                    match plans.get(&key) {
                        Some(p) => Some(p.clone()),
                        None => {
                            let plan =
                                Arc::new(load_plan(site.rules.as_deref(), mode, site.paranoia)?);
                            rule_count += plan.stats.rules;
                            plans.insert(key, plan.clone());
                            Some(plan)
                        }
                    }
                }
            };
            let old = previous.and_then(|p| p.sites.iter().find(|s| s.name == site.name));
            let old_servers: Vec<Arc<Server>> =
                old.map(|s| s.pool.servers.clone()).unwrap_or_default();
            // Clients keep their buckets across a reload, as they keep them globally.
            let limiter = site.rate.map(|rate| {
                let limits = Limits {
                    rate: Some(rate),
                    ..Limits::default()
                };
                match old.and_then(|s| s.limiter.clone()) {
                    Some(kept) => {
                        kept.set_limits(limits);
                        kept
                    }
                    None => Arc::new(Guard::new(limits)),
                }
            });
            let connections = crate::upstream::Connections::new(
                site.upstream.ca.as_deref(),
                site.upstream.http2,
                config.workers,
                site.upstream.servers.len(),
            )?;
            sites.push(SiteRoute {
                name: site.name.clone(),
                hosts: site.hosts.clone(),
                prefix: site.path_prefix.clone(),
                pool: Arc::new(Pool::new(&site.upstream, connections, &old_servers)),
                plan,
                mode: site.waf,
                institution: site.institution,
                limiter,
                max_body: site.max_body.or(config.request_limits.max_body),
            });
        }
        Ok(Routes {
            sites,
            certificates: Certificates::load(&config.sites)?,
            trusted_proxies: config.trusted_proxies.clone(),
            inspect_limit: config.inspect_limit,
            request_limits: config.request_limits,
            header_timeout: config.header_timeout,
            body_timeout: config.body_timeout,
            config,
            rule_count,
        })
    }

    /// Starts the health checks of this set's pools; they end when the set is dropped.
    pub fn activate(&self) {
        for (site, config) in self.sites.iter().zip(&self.config.sites) {
            if let Some(check) = &config.upstream.health_check {
                crate::pool::spawn_health_checks(&site.pool, check.clone());
            }
        }
    }

    /// The site for a request: the most specific host match (exact name, then the longest
    /// wildcard, then sites without hosts), then the longest path prefix.
    pub fn route(&self, host: &str, path: &str) -> Option<&SiteRoute> {
        let host = normalise_host(host);
        self.sites
            .iter()
            .filter_map(|s| {
                let host_rank = host_rank(&s.hosts, &host)?;
                prefix_matches(&s.prefix, path).then_some(((host_rank, s.prefix.len()), s))
            })
            .max_by_key(|(rank, _)| *rank)
            .map(|(_, s)| s)
    }
}

/// Lower-case, without the port and a trailing dot.
pub(crate) fn normalise_host(host: &str) -> std::borrow::Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        host.split_once(']').map_or(host, |(h, _)| &h[1..])
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let name = without_port.trim_end_matches('.');
    // Routed per request: most hosts come in lower case already.
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        name.to_ascii_lowercase().into()
    } else {
        name.into()
    }
}

fn host_rank(patterns: &[String], host: &str) -> Option<usize> {
    if patterns.is_empty() {
        return Some(1);
    }
    patterns
        .iter()
        .filter_map(|p| match p.strip_prefix("*.") {
            Some(parent) => (host.len() > parent.len() + 1
                && host.ends_with(parent)
                && host.as_bytes()[host.len() - parent.len() - 1] == b'.')
                .then_some(2 + parent.len()),
            None => (p == host).then_some(usize::MAX),
        })
        .max()
}

/// `/api` covers `/api` and `/api/...` but not `/apix`; a prefix ending in `/` covers all below.
fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix.ends_with('/') {
        return path.starts_with(prefix);
    }
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/') || rest.starts_with('?'))
}

/// The current set, swapped whole by a reload.
pub(crate) struct Current(RwLock<Arc<Routes>>);

impl std::fmt::Debug for Current {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Current")
    }
}

impl Current {
    pub fn new(routes: Routes) -> Current {
        Current(RwLock::new(Arc::new(routes)))
    }

    pub fn load(&self) -> Arc<Routes> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn store(&self, routes: Routes) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(routes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_rank_exact_over_wildcard_over_any() {
        let exact = vec!["www.gov.az".to_owned()];
        let wild = vec!["*.gov.az".to_owned()];
        assert_eq!(host_rank(&exact, "www.gov.az"), Some(usize::MAX));
        assert!(host_rank(&wild, "www.gov.az").unwrap() > host_rank(&[], "www.gov.az").unwrap());
        assert_eq!(host_rank(&wild, "gov.az"), None);
        assert_eq!(host_rank(&wild, "evilgov.az"), None);
        assert!(host_rank(&wild, "a.b.gov.az").is_some());
        assert_eq!(normalise_host("WWW.Gov.AZ.:8443"), "www.gov.az");
        assert_eq!(normalise_host("[::1]:8080"), "::1");
    }

    #[test]
    fn prefixes_stop_at_segment_boundaries() {
        assert!(prefix_matches("/", "/anything"));
        assert!(prefix_matches("/api", "/api"));
        assert!(prefix_matches("/api", "/api/v1"));
        assert!(!prefix_matches("/api", "/apix"));
        assert!(prefix_matches("/api/", "/api/v1"));
        assert!(!prefix_matches("/api/", "/api"));
    }
}
