//! Connections to a pool's upstream servers, kept by each worker thread for itself.
//!
//! Written on hyper's connection API rather than hyper_util's pooled `Client`: a proxy has
//! already chosen its server when it sends, and the pooled client would look that server up
//! again in a pool every thread shares (a lock per checkout and per return) and put each
//! HTTP/1.1 connection back from a task spawned per request. Here each worker keeps its own idle
//! connections per server, and a connection goes back to them when the request that used it has
//! read its response to the end, in that request's own task. HTTP/2 servers get one multiplexed
//! connection per worker.

use crate::pool::Server;
use crate::proxy::PrefixedBody;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::http::uri::PathAndQuery;
use hyper::{header, Request, Response, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_service::Service;

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Idle connections older than this are closed rather than reused: the server may be about to
/// close them itself (nginx's `keepalive_timeout` is 75 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle HTTP/1.1 connections one worker keeps to one server.
const MAX_IDLE: usize = 256;

/// A pool's connections: how to open them, and the idle ones of each worker.
pub(crate) struct Connections {
    connector: HttpsConnector<HttpConnector>,
    http2: bool,
    /// One per worker thread and a last one for tasks of the shared runtime (health checks).
    slots: Vec<Arc<Slot>>,
}

/// One worker's idle connections, by server. Only its worker locks it (the shared one excepted),
/// so the lock is never contended.
struct Slot {
    servers: Mutex<Vec<Idle>>,
}

#[derive(Default)]
struct Idle {
    /// Most recently used last.
    http1: Vec<(http1::SendRequest<PrefixedBody>, Instant)>,
    http2: Option<http2::SendRequest<PrefixedBody>>,
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.servers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The most recently used idle connection to `server` that is still open.
    fn take(&self, server: usize) -> Option<http1::SendRequest<PrefixedBody>> {
        let mut servers = self.lock();
        let idle = &mut servers.get_mut(server)?.http1;
        while let Some((sender, since)) = idle.pop() {
            if since.elapsed() > IDLE_TIMEOUT {
                // The others went idle before this one.
                idle.clear();
                return None;
            }
            if !sender.is_closed() {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, server: usize, sender: http1::SendRequest<PrefixedBody>) {
        let now = Instant::now();
        let mut servers = self.lock();
        let Some(idle) = servers.get_mut(server).map(|s| &mut s.http1) else {
            return;
        };
        // Connections that closed or went stale while newer ones were used instead.
        if idle
            .first()
            .is_some_and(|(s, since)| s.is_closed() || now.duration_since(*since) > IDLE_TIMEOUT)
        {
            idle.retain(|(s, since)| !s.is_closed() && now.duration_since(*since) <= IDLE_TIMEOUT);
        }
        if idle.len() >= MAX_IDLE {
            idle.remove(0);
        }
        idle.push((sender, now));
    }
}

impl Connections {
    /// Connections for a pool of `servers` servers: plain HTTP, or TLS checked against the web's
    /// roots and the pool's own authorities (`ca`); HTTP/1.1, or HTTP/2 only.
    pub fn new(
        ca: Option<&std::path::Path>,
        http2: bool,
        workers: usize,
        servers: usize,
    ) -> Result<Connections, crate::GatewayError> {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(Duration::from_secs(10)));
        tcp.enforce_http(false);
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(crate::tls::client_config(ca)?)
            .https_or_http();
        let connector = if http2 {
            builder.enable_http2().wrap_connector(tcp)
        } else {
            builder.enable_http1().wrap_connector(tcp)
        };
        let slots = (0..=workers)
            .map(|_| {
                Arc::new(Slot {
                    servers: Mutex::new((0..servers).map(|_| Idle::default()).collect()),
                })
            })
            .collect();
        Ok(Connections {
            connector,
            http2,
            slots,
        })
    }

    /// The calling worker's slot (the shared one outside the workers).
    fn slot(&self) -> &Arc<Slot> {
        let shared = self.slots.len() - 1;
        let i = match crate::proxy::worker_index() {
            Some(w) if shared > 0 => w % shared,
            _ => shared,
        };
        &self.slots[i]
    }

    /// Sends `request` (its target in origin form, `/path?query`) to `server`, the pool's
    /// server number `index`: over an idle connection of this worker's when one is open, else
    /// over a new one. A request that an idle connection closed before taking is sent again
    /// over the next one.
    pub async fn send(
        &self,
        index: usize,
        server: &Server,
        mut request: Request<PrefixedBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        // Boxed, as opening connections is: a future is moved whole, whatever state it is in,
        // and every request's future would otherwise carry the room these rare ones need.
        if self.http2 {
            return Box::pin(self.send_http2(index, server, request)).await;
        }
        if !request.headers().contains_key(header::HOST) {
            if let Ok(host) = header::HeaderValue::from_str(server.authority.as_str()) {
                request.headers_mut().insert(header::HOST, host);
            }
        }
        let slot = self.slot();
        loop {
            let (mut sender, reused) = match slot.take(index) {
                Some(sender) => (sender, true),
                None => (Box::pin(self.open_http1(server)).await?, false),
            };
            // It went back when its last response was read; its connection may not have seen
            // that response's end yet.
            if reused && !sender.is_ready() && sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let back = Some(Return {
                        slot: slot.clone(),
                        server: index,
                        sender,
                    });
                    return Ok(response.map(|body| UpstreamBody {
                        inner: body,
                        ended: false,
                        back,
                    }));
                }
                Err(mut e) => match e.take_message() {
                    Some(unsent) if reused => request = unsent,
                    _ => return Err(e.into_error().into()),
                },
            }
        }
    }

    async fn send_http2(
        &self,
        index: usize,
        server: &Server,
        mut request: Request<PrefixedBody>,
    ) -> Result<Response<UpstreamBody>, BoxError> {
        // HTTP/2 names the target in pseudo-headers, taken from an absolute URI.
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        *request.uri_mut() = Uri::builder()
            .scheme(server.scheme.clone())
            .authority(server.authority.clone())
            .path_and_query(path)
            .build()?;
        let slot = self.slot();
        let open = {
            let servers = slot.lock();
            servers
                .get(index)
                .and_then(|s| s.http2.clone())
                .filter(|s| !s.is_closed())
        };
        let mut sender = match open {
            Some(sender) => sender,
            None => {
                let sender = self.open_http2(server).await?;
                if let Some(idle) = slot.lock().get_mut(index) {
                    idle.http2 = Some(sender.clone());
                }
                sender
            }
        };
        sender.ready().await?;
        let response = sender.send_request(request).await?;
        Ok(response.map(|body| UpstreamBody {
            inner: body,
            ended: false,
            back: None,
        }))
    }

    async fn connect(
        &self,
        server: &Server,
    ) -> Result<
        hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>,
        BoxError,
    > {
        let uri = Uri::builder()
            .scheme(server.scheme.clone())
            .authority(server.authority.clone())
            .path_and_query("/")
            .build()?;
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        connector.call(uri).await
    }

    async fn open_http1(
        &self,
        server: &Server,
    ) -> Result<http1::SendRequest<PrefixedBody>, BoxError> {
        let io = self.connect(server).await?;
        let (sender, connection) = http1::Builder::new().handshake(io).await?;
        // Spawned on the calling worker's event loop, where the requests using it run.
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended with an error");
            }
        });
        Ok(sender)
    }

    async fn open_http2(
        &self,
        server: &Server,
    ) -> Result<http2::SendRequest<PrefixedBody>, BoxError> {
        let io = self.connect(server).await?;
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .handshake(io)
            .await?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended with an error");
            }
        });
        Ok(sender)
    }
}

/// Where an HTTP/1.1 connection goes back when its response has been read.
struct Return {
    slot: Arc<Slot>,
    server: usize,
    sender: http1::SendRequest<PrefixedBody>,
}

/// An upstream response's body; when it has been read to the end, its connection is idle again.
/// Dropped before its end, the connection is dropped with it: the rest of that response would
/// still be on the wire.
pub(crate) struct UpstreamBody {
    inner: Incoming,
    ended: bool,
    back: Option<Return>,
}

impl UpstreamBody {
    /// The connection was taken over (a protocol upgrade): it never carries another request.
    pub fn detach(mut self) {
        self.back = None;
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(r) = self.back.take() {
            if self.ended || self.inner.is_end_stream() {
                r.slot.put(r.server, r.sender);
            }
        }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(None) = polled {
            this.ended = true;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
