//! `qalxan gateway`: the filtering reverse proxy in front of an institution's web services.
//!
//! Every request passes through phases, as in Pingora: read the head and (up to the inspection
//! limit) the body; evaluate the WAF plan; block (403 with a reference id the CERT can find)
//! or forward to the upstream, streaming the rest of the body and the response; log; report
//! blocks to the Qalxan server as events. Reporting never slows the data path: events go
//! through a bounded queue to a background task that posts them in batches, and are dropped
//! (and counted) if the server cannot keep up.
//!
//! Sites are chosen by Host and path prefix; each has a pool of upstream servers, its own WAF
//! mode and rules. A reload (SIGHUP, `qalxan gateway reload`) builds a whole new site set and
//! swaps it in only if everything compiled, so requests in flight finish on the set they
//! started with and a broken rule file leaves the running rules in place.

mod admin;
pub mod config;
mod guard;
mod logs;
mod pace;
mod pool;
mod proxy;
pub mod proxy_protocol;
mod sites;
mod tls;
mod upstream;

pub use config::ConfigError;
pub use guard::{BanPolicy, Limits};
pub use qalxan_client::{EventSink, ServerLink};

use qalxan_waf::{Plan, SyntaxError};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// What the WAF does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WafMode {
    /// No inspection.
    Off,
    /// Inspect and log; never block.
    Detect,
    /// Inspect and block.
    Block,
}

impl std::str::FromStr for WafMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "off" => Ok(WafMode::Off),
            "detect" => Ok(WafMode::Detect),
            "block" => Ok(WafMode::Block),
            other => Err(format!(
                "unknown WAF mode '{other}' (expected off, detect or block)"
            )),
        }
    }
}

/// Where Debian's modsecurity-crs package puts the Core Rule Set.
pub const DEBIAN_CRS_RULES: &str = "/usr/share/modsecurity-crs/rules";
pub const DEBIAN_CRS_SETUP: &str = "/etc/modsecurity/crs/crs-setup.conf";

/// Records of the WAF's persistent collections kept at most (IP, GLOBAL...: one per client
/// key a rule set opens and changes); past it, expired ones are swept and new ones not kept.
pub const MAX_COLLECTION_RECORDS: usize = 200_000;

/// How a pool picks the server for the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Balance {
    RoundRobin,
    /// The server with the fewest requests in flight.
    LeastConn,
}

/// An active health check: `GET path` on every server each `interval`; `fall` failures in a
/// row take a server out, `rise` passes bring it back. 2xx and 3xx answers pass.
#[derive(Debug, Clone)]
pub struct HealthCheck {
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
}

/// A site's upstream servers.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// Base URLs (`http://host:port` or `https://...`), without a path.
    pub servers: Vec<hyper::Uri>,
    pub balance: Balance,
    /// Further servers tried when one cannot be reached (idempotent requests only).
    pub retries: u32,
    /// Failed requests within `fail_timeout` that take a server out for `fail_timeout`.
    pub max_fails: u32,
    pub fail_timeout: Duration,
    pub health_check: Option<HealthCheck>,
    /// A PEM file of further authorities trusted for https upstreams.
    pub ca: Option<PathBuf>,
    /// Speak HTTP/2 to the servers (h2c by prior knowledge on http://, ALPN h2 on https://),
    /// many requests multiplexed on few connections; upgrades (WebSocket) need HTTP/1.1.
    pub http2: bool,
}

impl PoolConfig {
    /// One server, with the defaults of the configuration file.
    pub fn single(server: hyper::Uri) -> PoolConfig {
        PoolConfig {
            servers: vec![server],
            balance: Balance::RoundRobin,
            retries: 1,
            max_fails: 3,
            fail_timeout: Duration::from_secs(10),
            health_check: None,
            ca: None,
            http2: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct CertificateFiles {
    /// PEM: the certificate, then its chain.
    pub cert: PathBuf,
    /// PEM: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// One protected web service: the requests for its hosts under its path prefix.
#[derive(Debug, Clone)]
pub struct Site {
    pub name: String,
    /// Lower-case host names, `*.` wildcards allowed; empty: any host.
    pub hosts: Vec<String>,
    pub path_prefix: String,
    pub upstream: PoolConfig,
    pub waf: WafMode,
    /// A rule file, or `None` for Debian's CRS with its crs-setup.conf.
    pub rules: Option<PathBuf>,
    /// CRS paranoia level, 1 to 4.
    pub paranoia: u8,
    /// The institution its events are counted for (else the server link's).
    pub institution: Option<i64>,
    /// Served on TLS listeners to clients asking for one of `hosts`.
    pub certificate: Option<CertificateFiles>,
    /// Requests per second and burst per client address on this site, on top of the global
    /// limits (a login page may allow far fewer than the static files beside it).
    pub rate: Option<(f64, f64)>,
    /// Bytes of request body this site accepts, instead of the global bound.
    pub max_body: Option<u64>,
}

impl Site {
    /// A site for every host, forwarding to `upstream`, blocking with Debian's CRS at PL1.
    pub fn new(name: &str, upstream: hyper::Uri) -> Site {
        Site {
            name: name.to_owned(),
            hosts: Vec::new(),
            path_prefix: "/".to_owned(),
            upstream: PoolConfig::single(upstream),
            waf: WafMode::Block,
            rules: None,
            paranoia: 1,
            institution: None,
            certificate: None,
            rate: None,
            max_body: None,
        }
    }
}

/// Bounds on a request's size (nginx's large_client_header_buffers and client_max_body_size):
/// past them the answer is 414, 431 or 413 and nothing goes upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLimits {
    /// Bytes of the request target (path and query).
    pub max_uri: usize,
    pub max_header_count: usize,
    /// Bytes of header names and values together.
    pub max_header_bytes: usize,
    /// Bytes of body, for every site that sets none of its own; `None`: no limit.
    pub max_body: Option<u64>,
    /// Bytes per second a request body must keep up once its `body_timeout` allowance is
    /// spent (each such amount received buys a second more); 0: the whole body must come
    /// within `body_timeout`.
    pub min_body_rate: u64,
}

impl Default for RequestLimits {
    fn default() -> RequestLimits {
        RequestLimits {
            max_uri: 8192,
            max_header_count: 100,
            max_header_bytes: 32_768,
            max_body: None,
            min_body_rate: 500,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub address: SocketAddr,
    pub tls: bool,
    /// Connections start with a PROXY protocol header (v1 or v2) from a trusted load balancer,
    /// naming the client.
    pub proxy_protocol: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listeners: Vec<Listener>,
    pub sites: Vec<Site>,
    /// Bytes of a request body the WAF inspects; the rest streams through uninspected.
    pub inspect_limit: usize,
    /// Where blocks are reported, if anywhere.
    pub server: Option<ServerLink>,
    /// JSON lines of every request.
    pub access_log: Option<PathBuf>,
    /// ModSecurity-style JSON audit records of requests that matched rules.
    pub audit_log: Option<PathBuf>,
    /// Rate, connection and ban limits per client address.
    pub limits: Limits,
    /// Bounds on each request's size.
    pub request_limits: RequestLimits,
    /// The admin API's address (health, metrics, bans, sites, reload).
    pub admin: Option<SocketAddr>,
    /// Bearer token for the admin listener; without one it answers loopback clients only.
    pub admin_token: Option<String>,
    /// Time a client has to send a request's headers (against slowloris).
    pub header_timeout: Duration,
    /// A request body's starting allowance, and the longest it may go silent (against slow
    /// POSTs; see `RequestLimits::min_body_rate`).
    pub body_timeout: Duration,
    /// How often to pull the blocklist from the server (with `server` set); `None`: never.
    pub lists_every: Option<Duration>,
    /// Proxies and load balancers whose X-Forwarded-For is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Threads serving connections, each with its own event loop and upstream connections
    /// (nginx's `worker_processes`); fixed at start.
    pub workers: usize,
}

/// One worker per core the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Config {
    /// One plain-HTTP listener in front of `sites`, with the configuration file's defaults.
    pub fn new(listen: SocketAddr, sites: Vec<Site>) -> Config {
        Config {
            listeners: vec![Listener {
                address: listen,
                tls: false,
                proxy_protocol: false,
            }],
            sites,
            inspect_limit: 131_072,
            server: None,
            access_log: None,
            audit_log: None,
            limits: Limits::default(),
            request_limits: RequestLimits::default(),
            admin: None,
            admin_token: None,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            lists_every: None,
            trusted_proxies: Vec::new(),
            workers: default_workers(),
        }
    }

    /// Reads a configuration file (see [`config`] for its keys).
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        config::load(path)
    }

    /// What a reload cannot change, described for the warning when it differs.
    fn fixed_parts(&self) -> String {
        format!(
            "listeners {:?}, workers {}, admin {:?}, server {:?}, lists every {:?}, logs {:?} {:?}",
            self.listeners,
            self.workers,
            self.admin,
            self.server.as_ref().map(|s| (&s.url, s.institution_id)),
            self.lists_every,
            self.access_log,
            self.audit_log
        )
    }
}

/// Parses an upstream base URL: http or https, a host, no path.
pub fn upstream_uri(text: &str) -> Result<hyper::Uri, GatewayError> {
    let bad = || GatewayError::Upstream(text.to_owned());
    let uri: hyper::Uri = text.parse().map_err(|_| bad())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    let path_ok = uri.path_and_query().is_none_or(|p| p.as_str() == "/");
    if !scheme_ok || uri.authority().is_none() || !path_ok {
        return Err(bad());
    }
    hyper::Uri::builder()
        .scheme(uri.scheme_str().unwrap_or("http"))
        .authority(uri.authority().map(|a| a.as_str()).unwrap_or_default())
        .path_and_query("/")
        .build()
        .map_err(|_| bad())
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the rules do not load:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<SyntaxError>),
    #[error("the upstream '{0}' must be an http:// or https:// URL with a host and no path")]
    Upstream(String),
    #[error("{path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Tls { path: PathBuf, message: String },
    #[error("TLS: {0}")]
    TlsSetup(String),
    #[error("listening on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("there is no configuration file to reload (the gateway was started with flags)")]
    NothingToReload,
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
}

/// Loads and compiles the WAF rules for `mode` at `paranoia`: the given rule file, or Debian's CRS.
pub fn load_plan(rules: Option<&Path>, mode: WafMode, paranoia: u8) -> Result<Plan, GatewayError> {
    let engine = match mode {
        WafMode::Block => "On",
        WafMode::Detect => "DetectionOnly",
        WafMode::Off => "Off",
    };
    let before = format!("SecRuleEngine {engine}\nSecRequestBodyAccess On\n");
    let paranoia = paranoia.clamp(1, 4);
    let level = format!(
        "SecAction \"id:900000,phase:1,nolog,pass,t:none,setvar:tx.paranoia_level={paranoia}\"\n"
    );
    match rules {
        None => qalxan_waf::regression::load_crs(
            &before,
            Path::new(DEBIAN_CRS_SETUP),
            &level,
            Path::new(DEBIAN_CRS_RULES),
        )
        .map_err(GatewayError::Rules),
        Some(file) => {
            let limits = qalxan_waf::LoadLimits::default();
            let name = file.with_file_name("qalxan-gateway-settings.conf");
            let mut set = qalxan_waf::load_str(&(before + &level), &name, &limits)
                .map_err(|e| GatewayError::Rules(e.errors))?;
            let rules =
                qalxan_waf::load(file, &limits).map_err(|e| GatewayError::Rules(e.errors))?;
            set.directives.extend(rules.directives);
            set.files.extend(rules.files);
            Plan::compile(&set).map_err(GatewayError::Rules)
        }
    }
}

/// A gateway with its listeners bound and rules compiled, ready to serve.
pub struct Gateway {
    state: Arc<proxy::State>,
    listeners: Vec<(tokio::net::TcpListener, Listener)>,
    admin: Option<tokio::net::TcpListener>,
}

impl Gateway {
    /// Compiles the rules, opens certificates and logs, and binds the listeners. `source` is
    /// the file a reload reads again.
    pub async fn start(config: Config, source: Option<PathBuf>) -> Result<Gateway, GatewayError> {
        let build = config.clone();
        let routes = tokio::task::spawn_blocking(move || sites::Routes::build(build, None))
            .await
            .map_err(|e| GatewayError::Io(std::io::Error::other(e)))??;
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let bound = tokio::net::TcpListener::bind(l.address)
                .await
                .map_err(|source| GatewayError::Listen {
                    address: l.address,
                    source,
                })?;
            listeners.push((bound, l.clone()));
        }
        let admin = match config.admin {
            Some(address) => Some(
                tokio::net::TcpListener::bind(address)
                    .await
                    .map_err(|source| GatewayError::Listen { address, source })?,
            ),
            None => None,
        };
        let access = logs::JsonLines::open(config.access_log.as_deref())?;
        let audit = logs::JsonLines::open(config.audit_log.as_deref())?;
        let events = config.server.clone().map(EventSink::start);
        let lists = match (&config.server, config.lists_every) {
            (Some(link), Some(every)) => Some(qalxan_client::ListFeed::start(link.clone(), every)),
            _ => None,
        };
        routes.activate();
        let current = Arc::new(sites::Current::new(routes));
        let tls = if listeners.iter().any(|(_, l)| l.tls) {
            Some(tls::acceptor(current.clone())?)
        } else {
            None
        };
        let state = Arc::new(proxy::State {
            routes: current,
            tls,
            events,
            lists,
            access,
            audit,
            guard: guard::Guard::new(config.limits),
            collections: qalxan_waf::Collections::new(MAX_COLLECTION_RECORDS),
            counters: admin::Counters::default(),
            spread: Arc::new(proxy::Spread::new(config.workers)),
            admin_token: config.admin_token.clone(),
            source,
            reloading: tokio::sync::Mutex::new(()),
        });
        Ok(Gateway {
            state,
            listeners,
            admin,
        })
    }

    /// The bound listeners: address and whether it speaks TLS.
    pub fn addresses(&self) -> Vec<(SocketAddr, bool)> {
        self.listeners
            .iter()
            .filter_map(|(l, kind)| Some((l.local_addr().ok()?, kind.tls)))
            .collect()
    }

    pub fn admin_address(&self) -> Option<SocketAddr> {
        self.admin.as_ref().and_then(|a| a.local_addr().ok())
    }

    /// A handle that reloads this gateway (on SIGHUP, from the admin API).
    pub fn reloader(&self) -> Reloader {
        Reloader {
            state: self.state.clone(),
        }
    }

    /// Serves until `shutdown` completes, then lets requests in flight finish (up to 30 s).
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), GatewayError> {
        let state = self.state;
        if let Some(admin_listener) = self.admin {
            tokio::spawn(admin::serve(admin_listener, state.clone()));
        }
        let sweeper = Arc::downgrade(&state);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(state) = sweeper.upgrade() else {
                    return;
                };
                let now = std::time::Instant::now();
                state.guard.sweep(now, Duration::from_secs(600));
                for site in &state.routes.load().sites {
                    if let Some(limiter) = &site.limiter {
                        limiter.sweep(now, Duration::from_secs(600));
                    }
                }
            }
        });
        proxy::serve(self.listeners, state, shutdown).await
    }
}

/// Reloads a running gateway: reads its configuration file again, compiles the rules, and
/// swaps the new sites in only when all of it succeeded.
#[derive(Clone)]
pub struct Reloader {
    state: Arc<proxy::State>,
}

impl Reloader {
    pub async fn reload(&self) -> Result<String, GatewayError> {
        let source = self
            .state
            .source
            .clone()
            .ok_or(GatewayError::NothingToReload)?;
        let mut config = tokio::task::spawn_blocking(move || config::load(&source))
            .await
            .map_err(|e| GatewayError::Io(std::io::Error::other(e)))??;
        if config.server.is_none() {
            // A link the host process gave (`qalxan serve`'s own) is in no file; the server
            // link cannot change on reload anyway.
            let running = &self.state.routes.load().config;
            config.server.clone_from(&running.server);
            config.lists_every = running.lists_every;
        }
        self.apply(config).await
    }

    /// Replaces the sites, rules, certificates and limits with `config`'s. Listeners, the
    /// admin listener, the server link and the log files stay as they were started.
    pub async fn apply(&self, config: Config) -> Result<String, GatewayError> {
        let _one_at_a_time = self.state.reloading.lock().await;
        let state = self.state.clone();
        let started = std::time::Instant::now();
        let routes = tokio::task::spawn_blocking(move || {
            let previous = state.routes.load();
            sites::Routes::build(config, Some(&previous))
        })
        .await
        .map_err(|e| GatewayError::Io(std::io::Error::other(e)))??;
        let old = self.state.routes.load();
        if old.config.fixed_parts() != routes.config.fixed_parts() {
            tracing::warn!("listeners, the admin address, the server link and log files change only on restart");
        }
        if routes.certificates.is_empty() && self.state.tls.is_some() {
            return Err(GatewayError::TlsSetup(
                "the TLS listeners would have no certificate".into(),
            ));
        }
        let summary = format!(
            "reloaded: {} sites, {} rules compiled in {:.1} s",
            routes.sites.len(),
            routes.rule_count,
            started.elapsed().as_secs_f64()
        );
        routes.activate();
        self.state.guard.set_limits(routes.config.limits);
        self.state.routes.store(routes);
        tracing::info!("{summary}");
        Ok(summary)
    }
}
