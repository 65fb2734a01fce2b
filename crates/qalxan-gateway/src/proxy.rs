//! The data path: accept, read, inspect, block or forward, stream back, log.

use crate::logs::JsonLines;
use crate::WafMode;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::uri::{Authority, PathAndQuery};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use qalxan_client::EventSink;
use qalxan_waf::{Plan, Transaction};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub(crate) struct State {
    pub plan: Option<Arc<Plan>>,
    pub mode: WafMode,
    pub inspect_limit: usize,
    pub upstream_authority: Authority,
    pub client: Client<HttpConnector, PrefixedBody>,
    pub events: Option<EventSink>,
    /// The blocklist pulled from the server: addresses, domains and URLs refused outright.
    pub lists: Option<qalxan_client::ListFeed>,
    pub access: JsonLines,
    pub audit: JsonLines,
    pub guard: crate::guard::Guard,
    pub counters: crate::admin::Counters,
    pub header_timeout: Duration,
    pub body_timeout: Duration,
}

type ResponseBody = BoxBody<Bytes, hyper::Error>;

pub(crate) fn client() -> Client<HttpConnector, PrefixedBody> {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// A request body that starts with the bytes already read for inspection and continues with
/// what is still arriving, so bodies past the inspection limit stream instead of buffering.
pub(crate) struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Option<Incoming>,
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            if !p.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(p))));
            }
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.rest.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint);
        // A fresh hint: raising the lower bound first could pass the old upper bound.
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + prefix);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + prefix);
        }
        hint
    }
}

/// Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "upgrade",
];

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::TRANSFER_ENCODING);
}

pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), crate::GatewayError> {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                // Banned addresses and those over their connection cap are dropped before any
                // byte is read.
                if !state.guard.connect(peer.ip(), Instant::now()) {
                    drop(stream);
                    continue;
                }
                let _ = stream.set_nodelay(true);
                let conn_state = state.clone();
                let service = service_fn(move |req| handle(req, conn_state.clone(), peer));
                let conn = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(state.header_timeout)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(TokioIo::new(stream), service);
                let watched = graceful.watch(conn);
                let state = state.clone();
                tokio::spawn(async move {
                    if let Err(e) = watched.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    state.guard.disconnect(peer.ip());
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s: closing them");
    }
    Ok(())
}

/// Reads up to `limit` bytes of a body (a frame may take it a little past), returning them and,
/// if the body goes on, the rest still to come.
async fn read_prefix(
    mut body: Incoming,
    limit: usize,
) -> Result<(Bytes, Option<Incoming>), hyper::Error> {
    let mut buf = BytesMut::new();
    while buf.len() < limit {
        match body.frame().await {
            None => return Ok((buf.freeze(), None)),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(e),
        }
    }
    Ok((buf.freeze(), Some(body)))
}

/// What the WAF decided about a request.
#[derive(Default)]
struct Verdict {
    block: Option<(u16, u64)>,
    rules: Vec<u64>,
    reference: String,
    anomaly_score: i64,
    audit: Option<Value>,
}

fn inspect(
    state: &State,
    plan: &Plan,
    parts: &hyper::http::request::Parts,
    body: &[u8],
    peer: SocketAddr,
) -> Verdict {
    let target = if parts.uri.scheme().is_some() {
        parts.uri.to_string()
    } else {
        parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned())
    };
    let request = qalxan_waf::Request {
        method: parts.method.as_str().as_bytes().to_vec(),
        uri: target.into_bytes(),
        protocol: format!("{:?}", parts.version).into_bytes(),
        headers: parts
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
            .collect(),
        body: body.to_vec(),
        remote_addr: peer.ip().to_string(),
        remote_port: peer.port(),
        server_addr: String::new(),
        server_port: 0,
    };
    let mut tx = Transaction::evaluate_request(plan, &request);
    tx.finish();
    let reference = tx.unique_id();
    let block = tx.interruption.as_ref().map(|i| (i.status, i.rule_id));
    let status = block.map_or(200, |b| b.0);
    let audit = (state.audit.enabled() && !tx.matches.is_empty()).then(|| {
        qalxan_waf::audit::record(
            &tx,
            &request,
            status,
            &reference,
            &unix_seconds().to_string(),
        )
    });
    Verdict {
        block,
        rules: tx.matches.iter().map(|m| m.id).collect(),
        reference,
        anomaly_score: tx.anomaly_score(),
        audit,
    }
}

/// Seconds since 1970 with milliseconds, as log shippers read timestamps.
fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

fn full(body: impl Into<Bytes>) -> ResponseBody {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

/// The page a blocked client sees: the reference id lets the CERT find the request.
fn block_page(status: u16, reference: &str, wants_json: bool) -> Response<ResponseBody> {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
    let (content_type, body) = if wants_json {
        (
            "application/json",
            json!({"error": "request blocked", "status": status.as_u16(), "reference": reference})
                .to_string(),
        )
    } else {
        (
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Request blocked</title></head>\
                 <body><h1>Request blocked</h1><p>This request was stopped by the security gateway.</p>\
                 <p>If you think this is a mistake, tell the site's administrators this reference: \
                 <code>{reference}</code></p></body></html>\n"
            ),
        )
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(reference) {
        headers.insert("x-qalxan-reference", v);
    }
    response
}

fn error_page(status: StatusCode, message: &str) -> Response<ResponseBody> {
    let mut response = Response::new(full(format!("{message}\n")));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Reports a ban that just started: a flood (rate) is also a DDoS event with its peak rate.
fn report_ban(state: &State, ban: crate::guard::BanStarted, reason: &str, now: Instant) {
    tracing::warn!(ip = %ban.ip, reason, peak_rps = ban.peak_rps, "address banned");
    state.counters.bans.fetch_add(1, Ordering::Relaxed);
    let Some(events) = &state.events else { return };
    let seconds = ban.until.saturating_duration_since(now).as_secs();
    let attributes = json!({
        "client_ip": ban.ip.to_string(), "reason": reason, "ban_seconds": seconds,
        "strikes": ban.strikes, "peak_rps": ban.peak_rps,
    });
    events.report("gateway.banned", "high", attributes.clone());
    if reason == "rate" {
        events.report_value("ddos.detected", "high", ban.peak_rps as i64, attributes);
    }
}

fn refusal(
    status: StatusCode,
    retry_after: Option<Duration>,
    message: &str,
) -> Response<ResponseBody> {
    let mut response = error_page(status, message);
    if let Some(wait) = retry_after {
        let secs = wait.as_secs().max(1);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: SocketAddr,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    match state.guard.request(peer.ip(), started) {
        (crate::guard::Admission::Allow, _) => {}
        (crate::guard::Admission::Limited(wait), _) => {
            state.counters.limited.fetch_add(1, Ordering::Relaxed);
            return Ok(refusal(
                StatusCode::TOO_MANY_REQUESTS,
                Some(wait),
                "too many requests; slow down",
            ));
        }
        (crate::guard::Admission::Banned(until), ban) => {
            state
                .counters
                .banned_requests
                .fetch_add(1, Ordering::Relaxed);
            if let Some(ban) = ban {
                report_ban(&state, ban, "rate", started);
            }
            let wait = until.saturating_duration_since(started);
            return Ok(refusal(
                StatusCode::FORBIDDEN,
                Some(wait),
                "this address is blocked for a while after too many requests or attacks",
            ));
        }
    }
    if let Some(hit) = blocklisted(&state, &req, peer) {
        return Ok(blocklist_block(&state, &req, peer, started, hit));
    }
    let (mut parts, body) = req.into_parts();
    let inspecting = state.mode != WafMode::Off && state.plan.is_some();
    let has_body = parts.headers.contains_key(header::CONTENT_LENGTH)
        || parts.headers.contains_key(header::TRANSFER_ENCODING);
    let (prefix, rest) = if inspecting && has_body {
        match tokio::time::timeout(state.body_timeout, read_prefix(body, state.inspect_limit)).await
        {
            Ok(Ok(read)) => read,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "reading the request body failed");
                return Ok(error_page(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                ));
            }
            Err(_) => {
                return Ok(error_page(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body came too slowly",
                ));
            }
        }
    } else {
        (Bytes::new(), Some(body))
    };
    let verdict = match &state.plan {
        Some(plan) if inspecting => {
            let inspected = &prefix[..prefix.len().min(state.inspect_limit)];
            inspect(&state, plan, &parts, inspected, peer)
        }
        _ => Verdict::default(),
    };
    if let Some(record) = verdict.audit.clone() {
        state.audit.write(record);
    }
    let method = parts.method.to_string();
    let uri = parts.uri.to_string();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();

    let response = if let Some((status, rule_id)) = verdict.block {
        state.counters.blocked.fetch_add(1, Ordering::Relaxed);
        if let Some(ban) = state.guard.blocked(peer.ip(), Instant::now()) {
            report_ban(&state, ban, "attacks", Instant::now());
        }
        if let Some(events) = &state.events {
            let shown: String = uri.chars().take(1024).collect();
            events.report(
                "waf.blocked",
                "high",
                json!({
                    "reference": verdict.reference, "rule_id": rule_id, "rules": verdict.rules,
                    "client_ip": peer.ip().to_string(), "method": method, "host": host,
                    "uri": shown, "anomaly_score": verdict.anomaly_score,
                }),
            );
        }
        let wants_json = parts
            .headers
            .get(header::ACCEPT)
            .and_then(|a| a.to_str().ok())
            .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
        block_page(status, &verdict.reference, wants_json)
    } else {
        let body = PrefixedBody {
            prefix: Some(prefix),
            rest,
        };
        let response = forward(&state, &mut parts, body, peer).await;
        let counter = if response.status() == StatusCode::BAD_GATEWAY {
            &state.counters.upstream_errors
        } else {
            &state.counters.passed
        };
        counter.fetch_add(1, Ordering::Relaxed);
        response
    };

    state.access.write(json!({
        "time": unix_seconds(),
        "client": peer.ip().to_string(),
        "method": method,
        "host": host,
        "uri": uri,
        "status": response.status().as_u16(),
        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        "waf": match (state.mode, verdict.block.is_some()) {
            (WafMode::Off, _) => "off",
            (_, true) => "blocked",
            (WafMode::Detect, _) if !verdict.rules.is_empty() => "detected",
            _ => "passed",
        },
        "reference": verdict.reference,
        "rules": verdict.rules,
        "anomaly_score": verdict.anomaly_score,
    }));
    Ok(response)
}

/// What on the blocklist a request matched: (`ip`|`domain`|`url`, the value).
fn blocklisted(
    state: &State,
    req: &Request<Incoming>,
    peer: SocketAddr,
) -> Option<(&'static str, String)> {
    let lists = state.lists.as_ref()?.current();
    if lists.is_empty() {
        return None;
    }
    if lists.contains_ip(peer.ip()) {
        return Some(("ip", peer.ip().to_string()));
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())?;
    let ob = qalxan_intel::Observable::new(
        qalxan_intel::Kind::Domain,
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        }),
    )
    .ok();
    if let Some(d) = &ob {
        if lists.contains_domain(&d.value) {
            return Some(("domain", d.value.clone()));
        }
    }
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url =
        qalxan_intel::Observable::new(qalxan_intel::Kind::Url, &format!("http://{host}{path}"))
            .ok()?;
    let hit = lists.contains_url(&url.value);
    hit.then_some(("url", url.value))
}

fn blocklist_block(
    state: &State,
    req: &Request<Incoming>,
    peer: SocketAddr,
    started: Instant,
    (what, value): (&'static str, String),
) -> Response<ResponseBody> {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let reference = format!(
        "bl-{:x}-{:x}",
        unix_seconds() as u64,
        SEQ.fetch_add(1, Ordering::Relaxed)
    );
    state.counters.blocked.fetch_add(1, Ordering::Relaxed);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let uri: String = req.uri().to_string().chars().take(1024).collect();
    if let Some(events) = &state.events {
        events.report(
            "waf.blocked",
            "high",
            json!({
                "reference": reference, "blocklist": what, "indicator": value,
                "client_ip": peer.ip().to_string(), "method": req.method().as_str(), "host": host, "uri": uri,
            }),
        );
    }
    state.access.write(json!({
        "time": unix_seconds(),
        "client": peer.ip().to_string(),
        "method": req.method().as_str(),
        "host": host,
        "uri": uri,
        "status": 403,
        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        "waf": "blocklist",
        "reference": reference,
        "indicator": value,
    }));
    let wants_json = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"));
    block_page(403, &reference, wants_json)
}

async fn forward(
    state: &State,
    parts: &mut hyper::http::request::Parts,
    body: PrefixedBody,
    peer: SocketAddr,
) -> Response<ResponseBody> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = match Uri::builder()
        .scheme("http")
        .authority(state.upstream_authority.clone())
        .path_and_query(path)
        .build()
    {
        Ok(u) => u,
        Err(_) => return error_page(StatusCode::BAD_REQUEST, "bad request target"),
    };
    let mut headers = std::mem::take(&mut parts.headers);
    strip_hop_by_hop(&mut headers);
    let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&forwarded) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    let mut upstream = Request::new(body);
    *upstream.method_mut() = parts.method.clone();
    *upstream.uri_mut() = uri;
    *upstream.headers_mut() = headers;
    match state.client.request(upstream).await {
        Ok(response) => {
            let (mut head, body) = response.into_parts();
            strip_hop_by_hop(&mut head.headers);
            Response::from_parts(head, body.boxed())
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream request failed");
            error_page(
                StatusCode::BAD_GATEWAY,
                "the upstream service did not answer",
            )
        }
    }
}
