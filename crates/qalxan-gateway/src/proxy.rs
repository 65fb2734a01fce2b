//! The data path: accept, read, inspect, block or forward, stream back, log.

use crate::logs::JsonLines;
use crate::pace::{BodyTooSlow, Pace, Paced};
use crate::sites::{Current, Routes, SiteRoute};
use crate::WafMode;
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::http::uri::PathAndQuery;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use qalxan_client::EventSink;
use qalxan_waf::{Plan, Transaction};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

pub(crate) struct State {
    /// Sites, rules, pools and certificates: replaced whole by a reload.
    pub routes: Arc<Current>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub events: Option<EventSink>,
    /// The blocklist pulled from the server: addresses, domains and URLs refused outright.
    pub lists: Option<qalxan_client::ListFeed>,
    pub access: JsonLines,
    pub audit: JsonLines,
    pub guard: crate::guard::Guard,
    /// The WAF's persistent collections (`initcol:ip=...`): shared by every site and kept
    /// across reloads, so rules that count per client keep counting.
    pub collections: qalxan_waf::Collections,
    pub counters: crate::admin::Counters,
    /// Connections open on each worker thread.
    pub spread: Arc<Spread>,
    pub admin_token: Option<String>,
    /// The configuration file a reload reads again.
    pub source: Option<std::path::PathBuf>,
    pub reloading: tokio::sync::Mutex<()>,
}

type ResponseBody = BoxBody<Bytes, hyper::Error>;

/// A request body that starts with the bytes already read for inspection and continues with
/// what is still arriving, so bodies past the inspection limit stream instead of buffering.
pub(crate) struct PrefixedBody {
    prefix: Option<Bytes>,
    rest: Option<Paced<Incoming>>,
    /// Bytes of `rest` still allowed (the site's body limit less the prefix); past it the body
    /// ends in [`BodyTooLarge`].
    budget: Option<u64>,
}

/// A request body grew past its site's limit while streaming (it declared no length).
#[derive(Debug, thiserror::Error)]
#[error("the request body is larger than the site allows")]
pub(crate) struct BodyTooLarge;

type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl PrefixedBody {
    pub fn empty() -> PrefixedBody {
        PrefixedBody {
            prefix: None,
            rest: None,
            budget: None,
        }
    }

    /// The whole body, when it is all in memory and can be sent again to another server.
    fn replayable(&self) -> Option<Bytes> {
        match &self.rest {
            None => Some(self.prefix.clone().unwrap_or_default()),
            Some(_) => None,
        }
    }
}

impl Body for PrefixedBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        if let Some(p) = this.prefix.take() {
            if !p.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(p))));
            }
        }
        let Some(rest) = &mut this.rest else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(rest).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => frame,
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => return Poll::Pending,
        };
        if let (Some(budget), Some(data)) = (&mut this.budget, frame.data_ref()) {
            match budget.checked_sub(data.len() as u64) {
                Some(left) => *budget = left,
                None => return Poll::Ready(Some(Err(BodyTooLarge.into()))),
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.prefix.as_ref().is_none_or(Bytes::is_empty)
            && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let prefix = self.prefix.as_ref().map_or(0, |p| p.len() as u64);
        let rest = self
            .rest
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint);
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
/// Parsed once: removing by name string would parse each name again per request.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::TRANSFER_ENCODING,
];
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

fn strip_hop_by_hop(headers: &mut hyper::HeaderMap) {
    // One pass over the few names a message has, rather than a hashed lookup for each name
    // that could be there: most messages have none of them.
    let listed: smallvec::SmallVec<[&str; 4]> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    // Names the Connection header lists are hop-by-hop too.
    let doomed: smallvec::SmallVec<[HeaderName; 2]> = headers
        .keys()
        .filter(|name| {
            HOP_BY_HOP.contains(name)
                || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_str()))
        })
        .cloned()
        .collect();
    drop(listed);
    for name in doomed {
        headers.remove(name);
    }
}

thread_local! {
    /// Which worker thread this is (`None` outside the workers).
    static WORKER: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

pub(crate) fn worker_index() -> Option<usize> {
    WORKER.with(std::cell::Cell::get)
}

/// Serves the listeners on the configured number of worker threads until `shutdown` completes, then lets requests in
/// flight finish (up to 30 s).
///
/// Each worker runs its own single-threaded event loop, as nginx's worker processes do: every
/// worker accepts from the same listening sockets, and a connection, its requests and the
/// upstream connections they use stay on the worker that accepted it. On the work-stealing
/// runtime a request's client side, its upstream connection's task and the response woke one
/// another across threads; that cost more CPU per proxied request than the HTTP work itself.
pub(crate) async fn serve(
    listeners: Vec<(tokio::net::TcpListener, crate::Listener)>,
    state: Arc<State>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), crate::GatewayError> {
    let mut shared = Vec::new();
    for (listener, kind) in listeners {
        shared.push((listener.into_std().map_err(crate::GatewayError::Io)?, kind));
    }
    // `true` asks the workers to stop accepting and finish; a dropped sender does too.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut finished = Vec::new();
    for index in 0..state.spread.workers() {
        let mut own = Vec::new();
        for (listener, kind) in &shared {
            own.push((
                listener.try_clone().map_err(crate::GatewayError::Io)?,
                kind.clone(),
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(crate::GatewayError::Io)?;
        let (done, finished_rx) = tokio::sync::oneshot::channel::<()>();
        let state = state.clone();
        let stopping = stopping.clone();
        std::thread::Builder::new()
            .name(format!("qalxan-gw-{index}"))
            .spawn(move || {
                WORKER.with(|w| w.set(Some(index)));
                runtime.block_on(worker(own, state, stopping, index));
                drop(done);
            })
            .map_err(crate::GatewayError::Io)?;
        finished.push(finished_rx);
    }
    drop(stopping);
    shutdown.await;
    let _ = stop.send(true);
    for f in finished {
        let _ = f.await;
    }
    Ok(())
}

/// Connections open on each worker. Every worker is woken by each new connection and the
/// first to call accept gets it, so a burst of connections can land on one worker while the
/// other cores idle; a worker ahead of another lets it accept first.
pub(crate) struct Spread {
    live: Vec<AtomicUsize>,
}

impl Spread {
    pub fn new(workers: usize) -> Spread {
        Spread {
            live: (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    pub fn workers(&self) -> usize {
        self.live.len()
    }

    /// Connections open on each worker now.
    pub fn connections(&self) -> impl Iterator<Item = usize> + '_ {
        self.live.iter().map(|n| n.load(Ordering::Relaxed))
    }

    /// Whether worker `me` holds more than one connection more than some other worker.
    fn ahead(&self, me: usize) -> bool {
        let mine = self.live[me].load(Ordering::Relaxed);
        self.live
            .iter()
            .enumerate()
            .any(|(i, n)| i != me && n.load(Ordering::Relaxed) + 1 < mine)
    }
}

/// Counts a connection on its worker until dropped.
struct Live {
    spread: Arc<Spread>,
    worker: usize,
}

impl Live {
    fn new(spread: &Arc<Spread>, worker: usize) -> Live {
        spread.live[worker].fetch_add(1, Ordering::Relaxed);
        Live {
            spread: spread.clone(),
            worker,
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.spread.live[self.worker].fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker's event loop: accepts until told to stop, then waits (up to 30 s) for its
/// connections to finish their requests.
async fn worker(
    listeners: Vec<(std::net::TcpListener, crate::Listener)>,
    state: Arc<State>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    me: usize,
) {
    // Every connection holds a receiver: `true` asks it to finish, and the sender's `closed()`
    // is every connection gone.
    let (stop, connections) = tokio::sync::watch::channel(false);
    let mut accepting = Vec::new();
    for (listener, kind) in listeners {
        match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => accepting.push(tokio::spawn(accept_loop(
                listener,
                kind,
                state.clone(),
                connections.clone(),
                me,
            ))),
            Err(e) => tracing::error!(error = %e, "a worker cannot watch a listener"),
        }
    }
    drop(connections);
    // Stop when asked, or when the gateway that started the workers is gone.
    let _ = stopping.wait_for(|stop| *stop).await;
    for a in &accepting {
        a.abort();
    }
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(30), stop.closed())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 30 s: closing them");
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    kind: crate::Listener,
    state: Arc<State>,
    stopping: tokio::sync::watch::Receiver<bool>,
    me: usize,
) {
    loop {
        // A worker ahead of another lets it accept first, but not for long: a worker busy
        // with a slow request must not hold up accepts.
        for _ in 0..5 {
            if !state.spread.ahead(me) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let (stream, peer) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = state.clone();
        let stopping = stopping.clone();
        let live = Live::new(&state.spread, me);
        let kind = kind.clone();
        tokio::spawn(async move {
            accepted(stream, peer, kind, state, stopping).await;
            drop(live);
        });
    }
}

/// A new connection: its client named (by the PROXY header where the listener expects one),
/// checked against bans and connection caps, then served.
async fn accepted(
    mut stream: tokio::net::TcpStream,
    peer: SocketAddr,
    kind: crate::Listener,
    state: Arc<State>,
    stopping: tokio::sync::watch::Receiver<bool>,
) {
    let (trusted, header_timeout) = {
        let routes = state.routes.load();
        (
            is_trusted(&routes.trusted_proxies, peer.ip()),
            routes.header_timeout,
        )
    };
    let client = if kind.proxy_protocol {
        let named = if trusted {
            tokio::time::timeout(
                header_timeout,
                crate::proxy_protocol::read_header(&mut stream),
            )
            .await
            .unwrap_or_else(|_| {
                Err(crate::proxy_protocol::ProxyHeaderError::Io(
                    "timed out".into(),
                ))
            })
        } else {
            Err(crate::proxy_protocol::ProxyHeaderError::Io(
                "the peer is not a trusted proxy".into(),
            ))
        };
        match named {
            Ok(client) => client.unwrap_or(peer),
            Err(e) => {
                tracing::debug!(error = %e, %peer, "PROXY protocol connection refused");
                state.counters.proxy_refused.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    } else {
        peer
    };
    // A trusted proxy carries many clients: their limits apply per request instead.
    let counted = !is_trusted(&state.routes.load().trusted_proxies, client.ip());
    // Banned addresses and those over their connection cap are dropped before any byte of
    // HTTP is read.
    if counted && !state.guard.connect(client.ip(), Instant::now()) {
        return;
    }
    if kind.tls {
        if let Some(acceptor) = state.tls.clone() {
            match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => {
                    // ALPN said which protocol, so nothing is read to guess it.
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
                    let protocol = if h2 { Protocol::Http2 } else { Protocol::Http1 };
                    connection(stream, client, protocol, &state, header_timeout, stopping).await
                }
                Ok(Err(e)) => tracing::debug!(error = %e, %client, "TLS handshake failed"),
                Err(_) => tracing::debug!(%client, "TLS handshake timed out"),
            }
        }
    } else {
        // A client that connects and sends nothing would wait in the protocol guess, before
        // any HTTP timeout applies.
        let mut first = [0u8; 1];
        if let Ok(Ok(1..)) = tokio::time::timeout(header_timeout, stream.peek(&mut first)).await {
            connection(
                stream,
                client,
                Protocol::Guess,
                &state,
                header_timeout,
                stopping,
            )
            .await
        }
    }
    if counted {
        state.guard.disconnect(client.ip());
    }
}

/// Serves one connection (HTTP/1.1, HTTP/2 by prior knowledge or ALPN), upgrades included,
/// until it closes or the gateway stops (then gracefully: requests in flight finish).
#[derive(Clone, Copy, PartialEq)]
enum Protocol {
    Http1,
    Http2,
    /// Plain connections: HTTP/2 with prior knowledge is told by its preface.
    Guess,
}

async fn connection<IO>(
    io: IO,
    peer: SocketAddr,
    protocol: Protocol,
    state: &Arc<State>,
    header_timeout: Duration,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let conn_state = state.clone();
    let peer = Peer {
        addr: peer,
        tls: protocol != Protocol::Guess,
        hop: HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    };
    let service = service_fn(move |req| handle(req, conn_state.clone(), peer.clone()));
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
        Protocol::Guess => builder,
    };
    let limits = state.routes.load().request_limits;
    builder
        .http1()
        .header_read_timeout(header_timeout)
        .timer(TokioTimer::new());
    if limits.max_header_count != 100 {
        // hyper's own default; another count moves its header array to the heap.
        builder.http1().max_headers(limits.max_header_count);
    }
    builder
        .http2()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(250)
        .keep_alive_interval(Some(Duration::from_secs(60)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = async { drop(stopping.wait_for(|stop| *stop).await) } => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

fn is_trusted(trusted: &[ipnet::IpNet], ip: IpAddr) -> bool {
    trusted.iter().any(|n| n.contains(&ip))
}

/// The client's address: the connection's peer, or, when the peer is a trusted proxy, the
/// last address in X-Forwarded-For that is not itself a trusted proxy.
fn client_ip(trusted: &[ipnet::IpNet], peer: IpAddr, headers: &hyper::HeaderMap) -> IpAddr {
    if !is_trusted(trusted, peer) {
        return peer;
    }
    let mut client = peer;
    let hops = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) => {
                client = ip;
                if !is_trusted(trusted, ip) {
                    break;
                }
            }
            // Garbage from the client's side of the chain: stop at the last good hop.
            Err(_) => break,
        }
    }
    client
}

/// Reads up to `limit` bytes of a body (a frame may take it a little past), returning them and,
/// if the body goes on, the rest still to come.
async fn read_prefix(
    mut body: Paced<Incoming>,
    limit: usize,
) -> Result<(Bytes, Option<Paced<Incoming>>), BodyError> {
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
    /// The rule said `drop`: the connection closes after the block page.
    drop: bool,
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
    client: IpAddr,
    peer: SocketAddr,
) -> Verdict {
    // An absolute-form HTTP/1.1 target is kept as sent; HTTP/2's :scheme and :authority are
    // not part of a request line, so the WAF sees only :path there.
    let target = if parts.uri.scheme().is_some() && parts.version != hyper::Version::HTTP_2 {
        parts.uri.to_string()
    } else {
        parts
            .uri
            .path_and_query()
            .map_or("/".to_owned(), |p| p.as_str().to_owned())
    };
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    if !parts.headers.contains_key(header::HOST) {
        if let Some(authority) = parts.uri.authority() {
            headers.push(("host".to_owned(), authority.as_str().as_bytes().to_vec()));
        }
    }
    let request = qalxan_waf::Request {
        method: parts.method.as_str().as_bytes().to_vec(),
        uri: target.into_bytes(),
        protocol: format!("{:?}", parts.version).into_bytes(),
        headers,
        body: body.to_vec(),
        remote_addr: client.to_string(),
        remote_port: if client == peer.ip() { peer.port() } else { 0 },
        server_addr: String::new(),
        server_port: 0,
    };
    let mut tx = Transaction::new(plan)
        .with_collections(&state.collections)
        .request(&request);
    tx.finish();
    let reference = tx.unique_id();
    let block = tx.interruption.as_ref().map(|i| (i.status, i.rule_id));
    let drop = tx.interruption.as_ref().is_some_and(|i| i.action == "drop");
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
        drop,
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
fn report_ban(
    state: &State,
    ban: crate::guard::BanStarted,
    reason: &str,
    now: Instant,
    site: Option<&SiteRoute>,
) {
    tracing::warn!(ip = %ban.ip, reason, peak_rps = ban.peak_rps, "address banned");
    state.counters.bans.fetch_add(1, Ordering::Relaxed);
    let Some(events) = &state.events else { return };
    let seconds = ban.until.saturating_duration_since(now).as_secs();
    let attributes = json!({
        "client_ip": ban.ip.to_string(), "reason": reason, "ban_seconds": seconds,
        "strikes": ban.strikes, "peak_rps": ban.peak_rps, "site": site.map(|s| &s.name),
    });
    let institution = site.and_then(|s| s.institution);
    events.report_for(
        institution,
        "gateway.banned",
        "high",
        None,
        attributes.clone(),
    );
    if reason == "rate" {
        events.report_for(
            institution,
            "ddos.detected",
            "high",
            Some(ban.peak_rps as i64),
            attributes,
        );
    }
}

/// A slow POST: counted, and a strike against the client, so one that keeps trying is banned.
fn slow_body(state: &State, client: IpAddr, site: &SiteRoute) {
    state.counters.too_slow.fetch_add(1, Ordering::Relaxed);
    tracing::info!(client = %client, site = %site.name, "request body came too slowly");
    if let Some(ban) = state.guard.strike(client, Instant::now()) {
        report_ban(state, ban, "slow requests", Instant::now(), Some(site));
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

/// The Host a request is for: the Host header, else (HTTP/2) the :authority.
fn request_host(parts_headers: &hyper::HeaderMap, uri: &Uri) -> String {
    parts_headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| uri.authority().map(|a| a.as_str().to_owned()))
        .unwrap_or_default()
}

fn wants_json(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// A WebSocket (or other) upgrade the client asks for: HTTP/1.1 `Connection: upgrade`.
fn asks_upgrade(req: &Request<Incoming>) -> bool {
    req.version() == hyper::Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

/// A request over the size bounds: its status and why. Checked before anything reads it
/// further; HTTP/1's parser already refuses more headers than the count allows.
fn oversized(
    req: &Request<Incoming>,
    limits: &crate::RequestLimits,
) -> Option<(StatusCode, &'static str)> {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri > limits.max_uri {
        return Some((StatusCode::URI_TOO_LONG, "the request target is too long"));
    }
    let headers = req.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > limits.max_header_count || bytes > limits.max_header_bytes {
        return Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "the request headers are too many or too large",
        ));
    }
    None
}

async fn handle(
    req: Request<Incoming>,
    state: Arc<State>,
    peer: Peer,
) -> Result<Response<ResponseBody>, Infallible> {
    let started = Instant::now();
    let routes = state.routes.load();
    state.counters.requests.fetch_add(1, Ordering::Relaxed);
    if let Some((status, why)) = oversized(&req, &routes.request_limits) {
        state.counters.too_large.fetch_add(1, Ordering::Relaxed);
        return Ok(error_page(status, why));
    }
    let client = client_ip(&routes.trusted_proxies, peer.addr.ip(), req.headers());
    let host = request_host(req.headers(), req.uri());
    let Some(site) = routes.route(&host, req.uri().path()) else {
        state.counters.unrouted.fetch_add(1, Ordering::Relaxed);
        return Ok(error_page(
            StatusCode::MISDIRECTED_REQUEST,
            "this gateway serves no site for that host",
        ));
    };
    match state.guard.request(client, started) {
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
                report_ban(&state, ban, "rate", started, Some(site));
            }
            let wait = until.saturating_duration_since(started);
            return Ok(refusal(
                StatusCode::FORBIDDEN,
                Some(wait),
                "this address is blocked for a while after too many requests or attacks",
            ));
        }
    }
    // Overload protection: admitted requests hold their place until the response ends.
    let load = match state.guard.start(client, started) {
        None => None,
        Some(true) => Some(Load {
            state: state.clone(),
            client,
        }),
        Some(false) => {
            state.counters.shed.fetch_add(1, Ordering::Relaxed);
            report_overload(&state, client, site);
            return Ok(refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                Some(Duration::from_secs(1)),
                "the service is overloaded; try again shortly",
            ));
        }
    };
    let response = serve_admitted(req, &state, &routes, site, client, &host, &peer, started).await;
    Ok(match load {
        Some(load) => response.map(|body| {
            Holding {
                inner: body,
                _held: load,
            }
            .boxed()
        }),
        None => response,
    })
}

/// Holds a request's place under overload protection until dropped.
struct Load {
    state: Arc<State>,
    client: IpAddr,
}

impl Drop for Load {
    fn drop(&mut self) {
        self.state.guard.end(self.client);
    }
}

/// An event when the gateway starts shedding, then at most once a minute while it goes on.
fn report_overload(state: &State, client: IpAddr, site: &SiteRoute) {
    let now = unix_seconds() as u64;
    let last = state.counters.overload_reported.load(Ordering::Relaxed);
    if now < last + 60
        || state
            .counters
            .overload_reported
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    tracing::warn!(in_flight = state.guard.in_flight(), %client, "overloaded: shedding the heaviest clients");
    if let Some(events) = &state.events {
        events.report_for(
            site.institution,
            "ddos.overload",
            "high",
            None,
            json!({
                "client_ip": client.to_string(), "site": site.name,
                "in_flight": state.guard.in_flight(),
                "shed_total": state.counters.shed.load(Ordering::Relaxed),
            }),
        );
    }
}

/// A request past the admission checks: site rate, blocklists, WAF, upstream, logs.
#[allow(clippy::too_many_arguments)]
async fn serve_admitted(
    mut req: Request<Incoming>,
    state: &Arc<State>,
    routes: &Routes,
    site: &SiteRoute,
    client: IpAddr,
    host: &str,
    peer: &Peer,
    started: Instant,
) -> Response<ResponseBody> {
    if let (Some(max), Some(declared)) = (site.max_body, req.body().size_hint().exact()) {
        if declared > max {
            state.counters.too_large.fetch_add(1, Ordering::Relaxed);
            return error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this site accepts",
            );
        }
    }
    if let Some(limiter) = &site.limiter {
        if let (crate::guard::Admission::Limited(wait), _) = limiter.request(client, started) {
            state.counters.limited.fetch_add(1, Ordering::Relaxed);
            // Over a site's rate is a strike towards a ban like going over the global one.
            if let Some(ban) = state.guard.strike(client, started) {
                report_ban(state, ban, "rate", started, Some(site));
            }
            return refusal(
                StatusCode::TOO_MANY_REQUESTS,
                Some(wait),
                "too many requests to this site; slow down",
            );
        }
    }
    if let Some(hit) = blocklisted(state, &req, host, client) {
        return blocklist_block(state, &req, host, client, site, started, hit);
    }
    let upgrade = asks_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    let inspecting = site.mode != WafMode::Off && site.plan.is_some();
    let pace = Pace {
        timeout: routes.body_timeout,
        min_rate: routes.request_limits.min_body_rate,
    };
    let (prefix, rest) = if body.is_end_stream() {
        (Bytes::new(), None)
    } else if inspecting {
        match read_prefix(Paced::new(body, pace), routes.inspect_limit).await {
            Ok(read) => read,
            Err(e) if client_fault(&*e) == Some(ClientFault::TooSlow) => {
                slow_body(state, client, site);
                return ClientFault::TooSlow.page();
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading the request body failed");
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                );
            }
        }
    } else {
        (Bytes::new(), Some(Paced::new(body, pace)))
    };
    if site.max_body.is_some_and(|max| prefix.len() as u64 > max) {
        state.counters.too_large.fetch_add(1, Ordering::Relaxed);
        return error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is larger than this site accepts",
        );
    }
    let verdict = match &site.plan {
        Some(plan) if inspecting => {
            let inspected = &prefix[..prefix.len().min(routes.inspect_limit)];
            inspect(state, plan, &parts, inspected, client, peer.addr)
        }
        _ => Verdict::default(),
    };
    if let Some(record) = verdict.audit.clone() {
        state.audit.write(record);
    }
    let response = if let Some((status, rule_id)) = verdict.block {
        state.counters.blocked.fetch_add(1, Ordering::Relaxed);
        if let Some(ban) = state.guard.strike(client, Instant::now()) {
            report_ban(state, ban, "attacks", Instant::now(), Some(site));
        }
        if let Some(events) = &state.events {
            let uri = parts.uri.to_string();
            let shown: String = uri.chars().take(1024).collect();
            events.report_for(
                site.institution,
                "waf.blocked",
                "high",
                None,
                json!({
                    "reference": verdict.reference, "rule_id": rule_id, "rules": verdict.rules,
                    "client_ip": client.to_string(), "method": parts.method.as_str(), "host": host,
                    "uri": shown, "anomaly_score": verdict.anomaly_score, "site": site.name,
                }),
            );
        }
        let mut page = block_page(status, &verdict.reference, wants_json(&parts.headers));
        if verdict.drop {
            page.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        page
    } else {
        let budget = site
            .max_body
            .map(|max| max.saturating_sub(prefix.len() as u64));
        let body = PrefixedBody {
            prefix: Some(prefix),
            rest,
            budget,
        };
        let forwarded = Forwarded { peer, host };
        let response = forward(site, &mut parts, body, forwarded, upgrade).await;
        match response.extensions().get::<ClientFault>() {
            Some(ClientFault::TooLarge) => {
                state.counters.too_large.fetch_add(1, Ordering::Relaxed);
            }
            Some(ClientFault::TooSlow) => slow_body(state, client, site),
            None if response.status() == StatusCode::BAD_GATEWAY => {
                state
                    .counters
                    .upstream_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            None => {
                state.counters.passed.fetch_add(1, Ordering::Relaxed);
            }
        }
        response
    };

    if !state.access.enabled() {
        return response;
    }
    state.access.write(json!({
        "time": unix_seconds(),
        "client": client.to_string(),
        "method": parts.method.as_str(),
        "host": host,
        "uri": parts.uri.to_string(),
        "site": site.name,
        "status": response.status().as_u16(),
        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        "waf": match (site.mode, verdict.block.is_some()) {
            (WafMode::Off, _) => "off",
            (_, true) => "blocked",
            (WafMode::Detect, _) if !verdict.rules.is_empty() => "detected",
            _ => "passed",
        },
        "reference": verdict.reference,
        "rules": verdict.rules,
        "anomaly_score": verdict.anomaly_score,
    }));
    response
}

/// What on the blocklist a request matched: (`ip`|`domain`|`url`, the value).
fn blocklisted(
    state: &State,
    req: &Request<Incoming>,
    host: &str,
    client: IpAddr,
) -> Option<(&'static str, String)> {
    let lists = state.lists.as_ref()?.current();
    if lists.is_empty() {
        return None;
    }
    if lists.contains_ip(client) {
        return Some(("ip", client.to_string()));
    }
    if host.is_empty() {
        return None;
    }
    let ob = qalxan_intel::Observable::new(
        qalxan_intel::Kind::Domain,
        &crate::sites::normalise_host(host),
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
    host: &str,
    client: IpAddr,
    site: &SiteRoute,
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
    let uri: String = req.uri().to_string().chars().take(1024).collect();
    if let Some(events) = &state.events {
        events.report_for(
            site.institution,
            "waf.blocked",
            "high",
            None,
            json!({
                "reference": reference, "blocklist": what, "indicator": value,
                "client_ip": client.to_string(), "method": req.method().as_str(), "host": host,
                "uri": uri, "site": site.name,
            }),
        );
    }
    state.access.write(json!({
        "time": unix_seconds(),
        "client": client.to_string(),
        "method": req.method().as_str(),
        "host": host,
        "uri": uri,
        "site": site.name,
        "status": 403,
        "duration_ms": started.elapsed().as_secs_f64() * 1000.0,
        "waf": "blocklist",
        "reference": reference,
        "indicator": value,
    }));
    block_page(403, &reference, wants_json(req.headers()))
}

/// Who the request came from, for the headers the upstream gets.
struct Forwarded<'a> {
    /// The connection's peer: the hop this gateway adds to X-Forwarded-For.
    peer: &'a Peer,
    host: &'a str,
}

/// The other end of a connection, as each of its requests needs it.
#[derive(Clone)]
struct Peer {
    addr: SocketAddr,
    tls: bool,
    /// The address as written in X-Forwarded-For: once per connection, not per request.
    hop: HeaderValue,
}

fn idempotent(method: &hyper::Method) -> bool {
    use hyper::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::TRACE,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
}

/// Sends the request to the site's pool: a server that cannot be reached is counted against
/// and, for an idempotent request whose body is in memory, the next server is tried.
async fn forward(
    site: &SiteRoute,
    parts: &mut hyper::http::request::Parts,
    body: PrefixedBody,
    from: Forwarded<'_>,
    upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Response<ResponseBody> {
    let path = parts
        .uri
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"));
    let mut headers = std::mem::take(&mut parts.headers);
    let upgrade_to = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    if let (Some(_), Some(protocol)) = (&upgrade, upgrade_to) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, protocol);
    }
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(from.host) {
            headers.insert(header::HOST, v);
        }
    }
    // The proxy's own hop goes last, after whatever trusted proxies already wrote.
    match headers.entry(X_FORWARDED_FOR) {
        header::Entry::Occupied(mut prior) => {
            let hops = format!(
                "{}, {}",
                String::from_utf8_lossy(prior.get().as_bytes()),
                String::from_utf8_lossy(from.peer.hop.as_bytes())
            );
            if let Ok(v) = HeaderValue::try_from(hops) {
                prior.insert(v);
            }
        }
        header::Entry::Vacant(none) => {
            none.insert(from.peer.hop.clone());
        }
    }
    headers.insert(
        X_FORWARDED_PROTO,
        HeaderValue::from_static(if from.peer.tls { "https" } else { "http" }),
    );
    // Another attempt needs another server to go to.
    let retry = idempotent(&parts.method) && upgrade.is_none() && site.pool.servers.len() > 1;
    let replay = if retry { body.replayable() } else { None };
    let mut body = Some(body);
    let mut tried = smallvec::SmallVec::<[usize; 4]>::new();
    loop {
        let now = Instant::now();
        let Some((index, in_flight)) = site.pool.pick(&tried, now) else {
            return error_page(
                StatusCode::BAD_GATEWAY,
                "the upstream service did not answer",
            );
        };
        tried.push(index);
        let this_body = match (body.take(), &replay) {
            (Some(b), _) => b,
            (None, Some(bytes)) => PrefixedBody {
                prefix: Some(bytes.clone()),
                rest: None,
                budget: None,
            },
            (None, None) => break,
        };
        let mut upstream = Request::new(this_body);
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = Uri::from(path.clone());
        // Copied only while another attempt may need them.
        *upstream.headers_mut() = if replay.is_some() {
            headers.clone()
        } else {
            std::mem::take(&mut headers)
        };
        match site.pool.send(index, upstream).await {
            Ok(mut response) => {
                site.pool.succeeded(index);
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    if let Some(client_side) = upgrade {
                        let upstream_side = hyper::upgrade::on(&mut response);
                        tokio::spawn(tunnel(client_side, upstream_side, in_flight));
                        let (head, body) = response.into_parts();
                        body.detach();
                        return Response::from_parts(head, full(Bytes::new()));
                    }
                }
                let (mut head, body) = response.into_parts();
                strip_hop_by_hop(&mut head.headers);
                let counted = Holding {
                    inner: body,
                    _held: in_flight,
                };
                return Response::from_parts(head, counted.boxed());
            }
            Err(e) => {
                if let Some(fault) = client_fault(&*e) {
                    // The client's fault, not the server's: no failure counted, no retry.
                    return fault.page();
                }
                site.pool.failed(index, Instant::now());
                let server = &site.pool.servers[index];
                tracing::warn!(error = %e, server = %server.url(), site = %site.name, "upstream request failed");
                let more = (tried.len() as u32) <= site.pool.retries && replay.is_some();
                if !more {
                    break;
                }
            }
        }
    }
    error_page(
        StatusCode::BAD_GATEWAY,
        "the upstream service did not answer",
    )
}

/// A request body that ended in the client's fault rather than the upstream's; marks the
/// answer so the request is counted as what it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientFault {
    TooLarge,
    TooSlow,
}

impl ClientFault {
    fn page(self) -> Response<ResponseBody> {
        let mut page = match self {
            ClientFault::TooLarge => error_page(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is larger than this site accepts",
            ),
            ClientFault::TooSlow => {
                let mut page = error_page(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body came too slowly",
                );
                // The rest of the body is never read: the connection cannot carry another
                // request, and a slow client must not keep it.
                page.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                page
            }
        };
        page.extensions_mut().insert(self);
        page
    }
}

/// Whether a body error (or the upstream request it failed) was the client's fault.
fn client_fault(e: &(dyn std::error::Error + 'static)) -> Option<ClientFault> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.is::<BodyTooLarge>() {
            return Some(ClientFault::TooLarge);
        }
        if c.is::<BodyTooSlow>() {
            return Some(ClientFault::TooSlow);
        }
        cause = c.source();
    }
    None
}

/// Copies bytes both ways between an upgraded client connection and the upstream's.
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    _in_flight: crate::pool::InFlight,
) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(pair) => pair,
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            return;
        }
    };
    let mut client = TokioIo::new(client);
    let mut upstream = TokioIo::new(upstream);
    if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        tracing::debug!(error = %e, "upgraded connection ended with an error");
    }
}

/// A response body that holds something until the body ends: its server's in-flight count
/// (least-conn), its request's place under overload protection.
struct Holding<B, H> {
    inner: B,
    _held: H,
}

impl<B: Body + Unpin, H: Unpin> Body for Holding<B, H> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_not_forwarded() {
        let mut headers = hyper::HeaderMap::new();
        for (name, value) in [
            ("host", "example.test"),
            ("connection", "keep-alive, X-Trace"),
            ("connection", "Upgrade"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("x-trace", "1"),
            ("x-trace", "2"),
            ("upgrade", "websocket"),
            ("x-kept", "yes"),
        ] {
            headers.append(
                HeaderName::from_static(name),
                HeaderValue::from_static(value),
            );
        }
        strip_hop_by_hop(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["host", "x-kept"]);
        let mut plain = hyper::HeaderMap::new();
        plain.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        strip_hop_by_hop(&mut plain);
        assert_eq!(plain.len(), 1);
    }

    #[test]
    fn a_worker_ahead_of_another_by_more_than_one_connection_waits() {
        let spread = Arc::new(Spread::new(3));
        let mut held = vec![Live::new(&spread, 0)];
        assert!(!spread.ahead(0), "one connection more is even enough");
        held.push(Live::new(&spread, 0));
        assert!(spread.ahead(0));
        assert!(!spread.ahead(1), "a worker behind never waits");
        held.push(Live::new(&spread, 1));
        held.push(Live::new(&spread, 2));
        assert!(!spread.ahead(0));
        held.truncate(2);
        assert!(spread.ahead(0), "closed connections count no more");
        drop(held);
        assert!(spread.live.iter().all(|n| n.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("198.51.100.1, 203.0.113.9, 10.1.1.1"),
        );
        let proxy: IpAddr = "10.0.0.2".parse().unwrap();
        let outsider: IpAddr = "192.0.2.5".parse().unwrap();
        assert_eq!(
            client_ip(&trusted, proxy, &headers),
            "203.0.113.9".parse::<IpAddr>().unwrap(),
            "the last hop not of our own proxies"
        );
        assert_eq!(client_ip(&trusted, outsider, &headers), outsider);
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("junk, 10.1.1.1"),
        );
        assert_eq!(
            client_ip(&trusted, proxy, &headers),
            "10.1.1.1".parse::<IpAddr>().unwrap()
        );
    }
}
