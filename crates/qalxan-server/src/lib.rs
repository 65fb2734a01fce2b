//! Qalxan's HTTP server: the JSON API under `/api/v1`, the dashboard pages, authentication,
//! health probes and Prometheus metrics, over a [`qalxan_store::Store`].
//!
//! Handlers stay thin: they check who is asking ([`auth::Principal`]), turn the request into
//! typed values, call the store, and render JSON ([`api`]) or HTML ([`pages`]). The server holds
//! no state of its own beyond metrics, so any number of instances can run on one PostgreSQL.

pub mod api;
pub mod auth;
mod chart;
pub mod config;
pub mod error;
pub mod feeds;
mod live;
pub mod mail;
mod metrics;
pub mod notify;
mod pages;
pub mod taxii;

pub use config::{Config, LogFormat};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use ipnet::IpNet;
use qalxan_core::{now_millis, parse_ip_range, Role};
use qalxan_store::{Actor, NewUser, Store, StoreError};
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tower_http::set_header::SetResponseHeaderLayer;

/// Everything a request handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: Config,
    metrics: metrics::Metrics,
    trusted_proxies: Vec<IpNet>,
    scanner: qalxan_scan::Scanner,
    /// Wakes the notification task when an incident was opened or changed.
    incidents_changed: tokio::sync::Notify,
    /// Live alert views: their wake-up, stop signal and bound.
    live: live::Live,
    /// What each configured feed's last pull did.
    feeds: std::sync::Mutex<Vec<feeds::FeedStatus>>,
    /// The TrueType fonts PDF reports embed (regular, bold), when configured and readable.
    report_fonts: Option<(Vec<u8>, Vec<u8>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("trusted_proxies: '{0}' is not an IP address or CIDR range")]
    TrustedProxy(String),
    #[error("scan_databases: {0}")]
    Signatures(#[from] qalxan_scan::LoadError),
}

impl AppState {
    pub fn new(store: Store, config: Config) -> Result<AppState, SetupError> {
        let trusted_proxies = config
            .trusted_proxies
            .iter()
            .map(|p| parse_ip_range(p).ok_or_else(|| SetupError::TrustedProxy(p.clone())))
            .collect::<Result<_, _>>()?;
        let db = qalxan_scan::Database::load(&config.scan_database_paths(), Default::default())?;
        let scanner = qalxan_scan::Scanner::new(Arc::new(db), Default::default());
        let report_fonts = config.load_report_fonts();
        let feed_statuses = config
            .intel_feeds
            .iter()
            .map(|f| feeds::FeedStatus {
                name: f.name.clone(),
                url: f.url.clone(),
                every_minutes: f.every_minutes,
                ..Default::default()
            })
            .collect();
        Ok(AppState {
            inner: Arc::new(Inner {
                store,
                config,
                metrics: metrics::Metrics::new(),
                trusted_proxies,
                scanner,
                incidents_changed: tokio::sync::Notify::new(),
                live: live::Live::new(),
                feeds: std::sync::Mutex::new(feed_statuses),
                report_fonts,
            }),
        })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn scanner(&self) -> &qalxan_scan::Scanner {
        &self.inner.scanner
    }

    /// Wakes the notification task (new incidents are announced at once, not at its next
    /// round).
    pub(crate) fn incidents_changed(&self) -> &tokio::sync::Notify {
        &self.inner.incidents_changed
    }

    pub(crate) fn live(&self) -> &live::Live {
        &self.inner.live
    }

    /// Wakes the live alert views: alerts were raised or changed on this server.
    pub(crate) fn alerts_changed(&self) {
        self.inner.live.alerts_changed();
    }

    /// The fonts PDF reports are drawn in.
    pub fn report_fonts(&self) -> Option<qalxan_incident::pdf::Fonts<'_>> {
        self.inner
            .report_fonts
            .as_ref()
            .map(|(regular, bold)| qalxan_incident::pdf::Fonts { regular, bold })
    }

    /// The configured feeds and their last pulls.
    pub fn feed_statuses(&self) -> Vec<feeds::FeedStatus> {
        self.inner
            .feeds
            .lock()
            .map(|f| f.clone())
            .unwrap_or_default()
    }

    pub(crate) fn record_feed(
        &self,
        feed: &feeds::Feed,
        started: i64,
        result: &Result<feeds::PullSummary, feeds::FeedError>,
    ) {
        let Ok(mut all) = self.inner.feeds.lock() else {
            return;
        };
        if let Some(s) = all.iter_mut().find(|s| s.name == feed.name) {
            s.pulls += 1;
            s.last_attempt = Some(qalxan_core::Timestamp(started));
            match result {
                Ok(summary) => {
                    s.last_success = Some(qalxan_core::Timestamp(started));
                    s.last_error = None;
                    s.last = Some(summary.clone());
                }
                Err(e) => s.last_error = Some(e.to_string()),
            }
        }
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }

    fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.inner
            .trusted_proxies
            .iter()
            .any(|net| net.contains(&ip))
    }

    fn session_cookie_name(&self) -> &'static str {
        if self.config().secure_cookies() {
            auth::SECURE_SESSION_COOKIE
        } else {
            auth::SESSION_COOKIE
        }
    }
}

/// The whole application: API, pages, probes and metrics.
pub fn router(state: AppState) -> Router {
    let security_headers = [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
             frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
    ];
    let mut app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics::scrape))
        .nest("/api/v1", api::router(state.config()))
        .merge(taxii::router(state.config()))
        .merge(pages::router(state.config()))
        .layer(DefaultBodyLimit::max(state.config().max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ));
    for (name, value) in security_headers {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            name,
            HeaderValue::from_static(value),
        ));
    }
    if state.config().secure_cookies() {
        app = app.layer(SetResponseHeaderLayer::if_not_present(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        ));
    }
    app.with_state(state)
}

/// Serves until `shutdown` completes, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let maintenance = tokio::spawn(maintain(state.store().clone()));
    let notifications = tokio::spawn(notify::run(state.clone()));
    let feeds = tokio::spawn(feeds::run(state.clone()));
    let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // Live views are endless responses: they end first, or graceful shutdown would wait on
    // them forever.
    let shutdown = async move {
        shutdown.await;
        state.live().stop();
    };
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    maintenance.abort();
    notifications.abort();
    feeds.abort();
    result
}

/// Removes expired sessions and old login attempts once an hour.
async fn maintain(store: Store) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = now_millis();
        match store.prune(now, now - 30 * 24 * 3_600_000).await {
            Ok(n) if n > 0 => {
                tracing::info!(removed = n, "pruned expired sessions and login attempts")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "pruning failed"),
        }
    }
}

/// On a store without accounts, creates `admin` with a random password and returns that
/// password (for the caller to show once); otherwise does nothing.
pub async fn bootstrap_admin(store: &Store) -> Result<Option<String>, StoreError> {
    if store.count_users().await? > 0 {
        return Ok(None);
    }
    let password = auth::generate_password_for("admin");
    let password_hash =
        auth::hash_password(&password).map_err(|e| StoreError::Conflict(e.detail))?;
    let created = store
        .create_user(
            &Actor::system(),
            NewUser {
                username: "admin".to_owned(),
                display_name: "Administrator".to_owned(),
                email: String::new(),
                role: Role::Admin,
                institution_id: None,
                password_hash,
            },
        )
        .await;
    match created {
        Ok(_) => Ok(Some(password)),
        // Another instance on the same database created it first.
        Err(StoreError::Conflict(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.store().ping().await {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            error::ApiError::unavailable("the database does not answer").into_response()
        }
    }
}
