//! `qalxan gateway`: the filtering reverse proxy in front of an institution's web services.
//!
//! Every request passes through phases, as in Pingora: read the head and (up to the inspection
//! limit) the body; evaluate the WAF plan; block (403 with a reference id the CERT can find)
//! or forward to the upstream, streaming the rest of the body and the response; log; report
//! blocks to the Qalxan server as events. Reporting never slows the data path: events go
//! through a bounded queue to a background task that posts them in batches, and are dropped
//! (and counted) if the server cannot keep up.
//!
//! This is the first slice of the gateway issue: one site, one upstream, HTTP/1.1.

mod admin;
mod guard;
mod logs;
mod proxy;

pub use guard::{BanPolicy, Limits};
pub use qalxan_client::{EventSink, ServerLink};

/// The URI type the configuration uses, re-exported so callers need not depend on hyper.
pub mod hyper_uri {
    pub use hyper::Uri;
}

use qalxan_waf::{Plan, SyntaxError};
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

#[derive(Debug, Clone)]
pub struct Config {
    /// The upstream's base URL, e.g. `http://127.0.0.1:9000`.
    pub upstream: hyper::Uri,
    pub waf: WafMode,
    /// A rule file, or `None` for Debian's CRS with its crs-setup.conf.
    pub rules: Option<PathBuf>,
    /// CRS paranoia level, 1 to 4.
    pub paranoia: u8,
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
    /// Bearer token for the admin listener; without one it answers loopback clients only.
    pub admin_token: Option<String>,
    /// Time a client has to send a request's headers (against slowloris).
    pub header_timeout: std::time::Duration,
    /// Time a client has to send the part of the body the WAF inspects (against slow POSTs).
    pub body_timeout: std::time::Duration,
    /// How often to pull the blocklist from the server (with `server` set); `None`: never.
    pub lists_every: Option<std::time::Duration>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the rules do not load:\n{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<SyntaxError>),
    #[error("the upstream '{0}' must be an http:// URL with a host")]
    Upstream(String),
    #[error("{path}: {source}")]
    Log {
        path: PathBuf,
        source: std::io::Error,
    },
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

/// Serves `listener` until `shutdown` completes, then lets requests in flight finish.
pub async fn run(
    config: Config,
    plan: Option<Plan>,
    listener: tokio::net::TcpListener,
    admin: Option<tokio::net::TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), GatewayError> {
    let authority = config
        .upstream
        .authority()
        .cloned()
        .filter(|_| config.upstream.scheme_str() == Some("http"))
        .ok_or_else(|| GatewayError::Upstream(config.upstream.to_string()))?;
    let access = logs::JsonLines::open(config.access_log.as_deref())?;
    let audit = logs::JsonLines::open(config.audit_log.as_deref())?;
    let events = config.server.clone().map(EventSink::start);
    let lists = match (&config.server, config.lists_every) {
        (Some(link), Some(every)) => Some(qalxan_client::ListFeed::start(link.clone(), every)),
        _ => None,
    };
    let state = Arc::new(proxy::State {
        plan: plan.map(Arc::new),
        mode: config.waf,
        inspect_limit: config.inspect_limit,
        upstream_authority: authority,
        client: proxy::client(),
        events,
        lists,
        access,
        audit,
        guard: guard::Guard::new(config.limits.clone()),
        header_timeout: config.header_timeout,
        body_timeout: config.body_timeout,
        counters: admin::Counters::default(),
    });
    if let Some(admin_listener) = admin {
        tokio::spawn(admin::serve(
            admin_listener,
            state.clone(),
            config.admin_token.clone(),
        ));
    }
    let sweeper = state.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
        loop {
            tick.tick().await;
            sweeper.guard.sweep(
                std::time::Instant::now(),
                std::time::Duration::from_secs(600),
            );
        }
    });
    proxy::serve(listener, state, shutdown).await
}

/// The address a listener is bound to, for logs.
pub fn describe(addr: SocketAddr, upstream: &hyper::Uri) -> String {
    format!("http://{addr}/ -> {upstream}")
}
