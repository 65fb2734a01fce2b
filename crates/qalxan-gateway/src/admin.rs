//! The gateway's own small HTTP API, on a separate listener: health, Prometheus metrics, the
//! list of banned addresses with a way to lift a ban, the sites with their upstream servers'
//! state, and reload. Callers need the admin token when
//! one is configured; without one, only loopback clients are answered.

use crate::proxy::State;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{header, Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Counters the data path increments and `/metrics` reports.
#[derive(Default)]
pub struct Counters {
    pub requests: AtomicU64,
    pub passed: AtomicU64,
    pub blocked: AtomicU64,
    pub limited: AtomicU64,
    pub banned_requests: AtomicU64,
    pub bans: AtomicU64,
    pub upstream_errors: AtomicU64,
    /// Requests for a host and path no site serves.
    pub unrouted: AtomicU64,
    /// Connections closed on a PROXY protocol listener for a missing, malformed or untrusted
    /// header.
    pub proxy_refused: AtomicU64,
    /// Requests refused by overload protection.
    pub shed: AtomicU64,
    /// Requests refused for their size (URI, headers, body).
    pub too_large: AtomicU64,
    /// Requests whose body came more slowly than the minimum data rate.
    pub too_slow: AtomicU64,
    /// When (Unix seconds) overload was last reported as an event.
    pub overload_reported: AtomicU64,
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(answer(req, &state, peer).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    r
}

fn authorized(req: &Request<Incoming>, token: Option<&str>, peer: SocketAddr) -> bool {
    match token {
        None => peer.ip().is_loopback(),
        Some(expected) => req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .is_some_and(|sent| {
                // Constant time: compare every byte whatever the first difference.
                sent.len() == expected.len()
                    && sent
                        .bytes()
                        .zip(expected.bytes())
                        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                        == 0
            }),
    }
}

async fn answer(
    req: Request<Incoming>,
    state: &Arc<State>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    if path == "/healthz" {
        return reply(StatusCode::OK, "text/plain", "ok\n".into());
    }
    if !authorized(&req, state.admin_token.as_deref(), peer) {
        return reply(
            StatusCode::UNAUTHORIZED,
            "text/plain",
            "send the admin token as 'Authorization: Bearer ...'\n".into(),
        );
    }
    let now = Instant::now();
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") => {
            reply(StatusCode::OK, "text/plain; version=0.0.4", metrics(state))
        }
        (&Method::GET, "/bans") => {
            let bans: Vec<_> = state
                .guard
                .bans(now)
                .into_iter()
                .map(|(ip, until)| json!({"ip": ip.to_string(), "seconds_left": until.saturating_duration_since(now).as_secs()}))
                .collect();
            reply(StatusCode::OK, "application/json", json!(bans).to_string())
        }
        (&Method::GET, p) if p.starts_with("/collections/") => {
            // The WAF's persistent collections: what counting rules (initcol) hold per key.
            let name = &p["/collections/".len()..];
            let records: Vec<_> = state
                .collections
                .list(name, 1000)
                .into_iter()
                .map(|(key, vars)| {
                    let vars: serde_json::Map<String, serde_json::Value> = vars
                        .into_iter()
                        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned().into()))
                        .collect();
                    json!({"key": key, "vars": vars})
                })
                .collect();
            reply(
                StatusCode::OK,
                "application/json",
                json!(records).to_string(),
            )
        }
        (&Method::DELETE, p) if p.starts_with("/collections/") => {
            match p["/collections/".len()..].split_once('/') {
                Some((name, key)) if state.collections.remove(name, key) => {
                    tracing::info!(collection = name, key, "WAF collection record removed");
                    reply(StatusCode::NO_CONTENT, "text/plain", String::new())
                }
                _ => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "no such record (DELETE /collections/NAME/KEY)\n".into(),
                ),
            }
        }
        (&Method::DELETE, p) if p.starts_with("/bans/") => {
            match p["/bans/".len()..].parse::<IpAddr>() {
                Ok(ip) if state.guard.lift(ip) => {
                    tracing::info!(%ip, "ban lifted");
                    reply(StatusCode::NO_CONTENT, "text/plain", String::new())
                }
                Ok(_) => reply(
                    StatusCode::NOT_FOUND,
                    "text/plain",
                    "that address is not banned\n".into(),
                ),
                Err(_) => reply(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    "not an IP address\n".into(),
                ),
            }
        }
        (&Method::GET, "/sites") => {
            reply(StatusCode::OK, "application/json", sites(state).to_string())
        }
        (&Method::POST, "/reload") => {
            let reloader = crate::Reloader {
                state: state.clone(),
            };
            match reloader.reload().await {
                Ok(summary) => reply(
                    StatusCode::OK,
                    "application/json",
                    json!({"reloaded": true, "summary": summary}).to_string(),
                ),
                Err(e) => {
                    tracing::error!(error = %e, "reload refused; the running configuration stays");
                    reply(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "application/json",
                        json!({"reloaded": false, "error": e.to_string()}).to_string(),
                    )
                }
            }
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

/// Each site with its upstream servers: up (health checks), ejected (failed requests), load.
fn sites(state: &State) -> serde_json::Value {
    let routes = state.routes.load();
    let now = Instant::now();
    let sites: Vec<_> = routes
        .sites
        .iter()
        .zip(&routes.config.sites)
        .map(|(route, config)| {
            let servers: Vec<_> = route
                .pool
                .servers
                .iter()
                .map(|s| {
                    json!({
                        "url": s.url(),
                        "healthy": s.healthy(),
                        "ejected": s.ejected(now),
                        "in_flight": s.in_flight(),
                        "requests": s.requests.load(Ordering::Relaxed),
                        "failures": s.failures.load(Ordering::Relaxed),
                    })
                })
                .collect();
            json!({
                "name": route.name,
                "hosts": config.hosts,
                "path": config.path_prefix,
                "waf": format!("{:?}", route.mode).to_lowercase(),
                "paranoia": config.paranoia,
                "servers": servers,
            })
        })
        .collect();
    json!(sites)
}

fn metrics(state: &State) -> String {
    let c = &state.counters;
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let dropped = state.events.as_ref().map_or(0, |e| e.dropped());
    format!(
        "# HELP qalxan_gateway_requests_total Requests received, by outcome.\n\
         # TYPE qalxan_gateway_requests_total counter\n\
         qalxan_gateway_requests_total{{outcome=\"passed\"}} {}\n\
         qalxan_gateway_requests_total{{outcome=\"blocked\"}} {}\n\
         qalxan_gateway_requests_total{{outcome=\"rate_limited\"}} {}\n\
         qalxan_gateway_requests_total{{outcome=\"banned\"}} {}\n\
         qalxan_gateway_requests_total{{outcome=\"shed\"}} {}\n\
         qalxan_gateway_requests_total{{outcome=\"too_large\"}} {}\n\
         qalxan_gateway_requests_total{{outcome=\"too_slow\"}} {}\n\
         # HELP qalxan_gateway_in_flight Requests being answered now (counted with overload protection on).\n\
         # TYPE qalxan_gateway_in_flight gauge\n\
         qalxan_gateway_in_flight {}\n\
         # HELP qalxan_gateway_bans_total Addresses banned since start.\n\
         # TYPE qalxan_gateway_bans_total counter\n\
         qalxan_gateway_bans_total {}\n\
         # HELP qalxan_gateway_banned Addresses banned now.\n\
         # TYPE qalxan_gateway_banned gauge\n\
         qalxan_gateway_banned {}\n\
         # HELP qalxan_gateway_upstream_errors_total Requests the upstream did not answer.\n\
         # TYPE qalxan_gateway_upstream_errors_total counter\n\
         qalxan_gateway_upstream_errors_total {}\n\
         # HELP qalxan_gateway_unrouted_total Requests for a host and path no site serves.\n\
         # TYPE qalxan_gateway_unrouted_total counter\n\
         qalxan_gateway_unrouted_total {}\n\
         # HELP qalxan_gateway_proxy_protocol_refused_total Connections closed for a missing, malformed or untrusted PROXY header.\n\
         # TYPE qalxan_gateway_proxy_protocol_refused_total counter\n\
         qalxan_gateway_proxy_protocol_refused_total {}\n\
         # HELP qalxan_gateway_events_dropped_total Events not reported because the queue was full.\n\
         # TYPE qalxan_gateway_events_dropped_total counter\n\
         qalxan_gateway_events_dropped_total {}\n",
        get(&c.passed),
        get(&c.blocked),
        get(&c.limited),
        get(&c.banned_requests),
        get(&c.shed),
        get(&c.too_large),
        get(&c.too_slow),
        state.guard.in_flight(),
        get(&c.bans),
        state.guard.bans(Instant::now()).len(),
        get(&c.upstream_errors),
        get(&c.unrouted),
        get(&c.proxy_refused),
        dropped,
    ) + &worker_metrics(state)
        + &upstream_metrics(state)
}

fn worker_metrics(state: &State) -> String {
    let mut out = String::from(
        "# HELP qalxan_gateway_connections Client connections open, by worker thread.\n\
         # TYPE qalxan_gateway_connections gauge\n",
    );
    for (worker, n) in state.spread.connections().enumerate() {
        out.push_str(&format!(
            "qalxan_gateway_connections{{worker=\"{worker}\"}} {n}\n"
        ));
    }
    out
}

fn upstream_metrics(state: &State) -> String {
    let routes = state.routes.load();
    let now = Instant::now();
    let mut out = String::from(
        "# HELP qalxan_gateway_upstream_up Whether an upstream server takes requests (1) or is out (0).\n\
         # TYPE qalxan_gateway_upstream_up gauge\n",
    );
    let mut requests = String::from(
        "# HELP qalxan_gateway_upstream_requests_total Requests sent to an upstream server.\n\
         # TYPE qalxan_gateway_upstream_requests_total counter\n",
    );
    for site in &routes.sites {
        for s in &site.pool.servers {
            let labels = format!(
                "site=\"{}\",server=\"{}\"",
                escape(&site.name),
                escape(&s.url())
            );
            let up = u8::from(s.healthy() && !s.ejected(now));
            out.push_str(&format!("qalxan_gateway_upstream_up{{{labels}}} {up}\n"));
            requests.push_str(&format!(
                "qalxan_gateway_upstream_requests_total{{{labels}}} {}\n",
                s.requests.load(Ordering::Relaxed)
            ));
        }
    }
    out + &requests
}

/// Prometheus label values escape backslash, quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
