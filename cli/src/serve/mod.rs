//! `http-wasm serve`: a reverse proxy running a pipeline of filters.

pub mod admin;
pub mod body_timeout;
pub mod connection;
pub mod dapr;
pub mod forwarded;
pub mod metrics;
pub mod pipeline;
pub mod proxy;
pub mod reload;
pub mod settings;
pub mod tls;
pub mod upstream_h2;
pub mod workers;

use bytes::{Buf, Bytes};
use forwarded::Forwarded;
use http::header::{CONTENT_TYPE, COOKIE, HOST, HeaderValue};
use http::uri::Authority;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use pipeline::Pipeline;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tower_http_wasm::SourceAddr;

/// The one error type of the proxy's boxed bodies: whatever failed, boxed.
#[derive(Debug)]
pub struct BodyError(pub Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Every response body the proxy sends.
pub type OutBody = UnsyncBoxBody<Bytes, BodyError>;

/// A body of `status`'s reason phrase, `text/plain`: every response the
/// gateway makes up itself (400, 502, 504).
pub fn plain(status: StatusCode) -> Response<OutBody> {
    let reason = status.canonical_reason().unwrap_or("Error");
    let mut res = Response::new(Full::new(Bytes::from(format!("{reason}\n"))).map_err(|e| match e {}).boxed_unsync());
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// What a worker runs: its pipeline and the policies applied where
/// requests arrive. Built on the worker's thread (its filters are that
/// thread's replicas), and stays there.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// The filters and the upstream.
    pub pipeline: Pipeline,
    /// `x-forwarded-for` and `forwarded`.
    pub forwarded: Forwarded,
}

/// True when `req` has one `host` and it is a valid authority (RFC 9112
/// §3.2 asks for 400 otherwise), or none (HTTP/2 and HTTP/1.0 may omit
/// it); over HTTP/2 a `host` must name the same authority as
/// `:authority` (RFC 9113 §8.3.1), or filters and upstream could each act
/// on another one.
fn valid_host<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => true,
        (Some(h), None) => match Authority::try_from(h.as_bytes()) {
            Err(_) => false,
            Ok(host) => req.version() != http::Version::HTTP_2 || req.uri().authority().is_none_or(|a| *a == host),
        },
        (Some(_), Some(_)) => false,
    }
}

/// Joins the `cookie` fields of an HTTP/2 request into one, separated by
/// `; ` (RFC 9113 §8.2.3), as the filters and an HTTP/1.1 upstream expect.
fn join_cookies(headers: &mut http::HeaderMap) {
    let mut fields = headers.get_all(COOKIE).iter();
    let Some(first) = fields.next() else { return };
    let mut joined = first.as_bytes().to_vec();
    let mut more = false;
    for field in fields {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(field.as_bytes());
        more = true;
    }
    if more && let Ok(joined) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, joined);
    }
}

impl Gateway {
    /// Handles one request from `peer`: the edge policies, the pipeline,
    /// the access log.
    async fn handle(self, mut req: Request<hyper::body::Incoming>, peer: SocketAddr) -> Response<OutBody> {
        let started = Instant::now();
        let version = req.version();
        // What the access log needs, kept only when it logs.
        let access = tracing::enabled!(target: "http_wasm::access", tracing::Level::INFO)
            .then(|| (req.method().clone(), req.uri().clone()));
        let res = if valid_host(&req) {
            req.extensions_mut().insert(SourceAddr(peer));
            proxy::strip_hop_by_hop_request(req.headers_mut());
            if req.version() == http::Version::HTTP_2 {
                join_cookies(req.headers_mut());
            }
            let host = req
                .headers()
                .get(HOST)
                .cloned()
                .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
            self.forwarded.apply(req.headers_mut(), peer.ip(), host.as_ref());
            let req = req.map(Drain::new);
            let res = self.pipeline.call(req).await;
            let (mut parts, body) = res.into_parts();
            proxy::strip_hop_by_hop(&mut parts.headers);
            // A 408 leaves the rest of the request body unread: HTTP/1.1
            // cannot go on with the connection (HTTP/2 resets the stream).
            if parts.status == StatusCode::REQUEST_TIMEOUT && version < http::Version::HTTP_2 {
                parts.headers.insert(http::header::CONNECTION, HeaderValue::from_static("close"));
            }
            let body = proxy::chunked_if_trailers(&mut parts.headers, body);
            Response::from_parts(parts, body)
        } else {
            tracing::info!(target: "http_wasm::serve", "refused: repeated or invalid host, or host and :authority differ");
            plain(StatusCode::BAD_REQUEST)
        };
        let took = started.elapsed();
        metrics::GATEWAY.request_done(took);
        if let Some((method, uri)) = access {
            tracing::info!(
                target: "http_wasm::access",
                %peer,
                %method,
                %uri,
                status = res.status().as_u16(),
                micros = took.as_micros() as u64,
                "request"
            );
        }
        res
    }
}

/// The most of a request body nobody read that the gateway still reads
/// and drops, so that the client gets its response rather than a reset
/// connection (a filter that answered without next, or replaced the body).
const DRAIN_LIMIT: usize = 1 << 20;

/// How long the background drain waits for each frame: a client still
/// sending sends; one that paused (a body that timed out) is not waited
/// for, and its connection is let go.
const DRAIN_IDLE: Duration = Duration::from_secs(1);

/// The client's request body; dropped before its end (a filter did not
/// need it), the rest is read and discarded in the background, up to
/// [`DRAIN_LIMIT`] bytes, for at most 10 s, and while frames come at
/// least every [`DRAIN_IDLE`]. Without this, hyper closes
/// an HTTP/1.1 connection with unread bytes, and the kernel's reset can
/// destroy the response on its way.
struct Drain<B: Body + Unpin + Send + 'static> {
    body: Option<B>,
    ended: bool,
}

impl<B: Body + Unpin + Send + 'static> Drain<B> {
    fn new(body: B) -> Drain<B> {
        let ended = body.is_end_stream();
        Drain { body: Some(body), ended }
    }
}

impl<B: Body + Unpin + Send + 'static> Body for Drain<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        let Some(body) = self.body.as_mut() else { return Poll::Ready(None) };
        let frame = std::task::ready!(Pin::new(body).poll_frame(cx));
        if !matches!(frame, Some(Ok(_))) {
            self.ended = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.as_ref().map(|b| b.size_hint()).unwrap_or_default()
    }
}

impl<B: Body + Unpin + Send + 'static> Drop for Drain<B> {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else { return };
        if self.ended || body.is_end_stream() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            let drain = async {
                let mut read = 0usize;
                while let Ok(Some(Ok(frame))) = tokio::time::timeout(DRAIN_IDLE, body.frame()).await {
                    if let Some(data) = frame.data_ref() {
                        read += data.remaining();
                        if read > DRAIN_LIMIT {
                            break;
                        }
                    }
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
        });
    }
}

/// What the server allows each client connection.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a request head may take to arrive (HTTP/1.1).
    pub header_timeout: Duration,
    /// How long a connection may stay open without a request in progress
    /// (HTTP/1.1 between keep-alive requests, HTTP/2 without a stream).
    pub idle_timeout: Duration,
    /// The most connections open at once.
    pub max_connections: usize,
    /// How long requests in flight may take to finish once the gateway
    /// stops (`--drain-timeout`).
    pub drain_timeout: Duration,
}

/// Resolves on the first SIGTERM or Ctrl-C (SIGINT). The handlers are
/// installed before this returns, so a signal that arrives before the
/// future is polled is not lost.
pub fn stop_signal() -> Result<impl Future<Output = ()> + Send + 'static, String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(|e| format!("cannot handle SIGTERM: {e}"))?;
        let mut int = signal(SignalKind::interrupt()).map_err(|e| format!("cannot handle SIGINT: {e}"))?;
        Ok(async move {
            let which = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            tracing::info!(target: "http_wasm::serve", signal = which, "stopping: no new connections, draining");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
