//! The innermost service: the upstream over HTTP, or the built-in echo
//! backend, and the hop-by-hop header rules of a proxy.
//!
//! Errors: an upstream that cannot be reached, refuses, resets or answers
//! something that is not HTTP gives a [`ProxyError`] (502); one that sends
//! no response head within the timeout gives 504; a request whose own body
//! failed on the way (the client vanished mid-body) gives 400, one whose
//! body sent nothing for the body timeout 408, and the upstream is not
//! blamed. Once the response head
//! has been passed on, a failure of its body can only end the client's
//! message early (HTTP/1.1: the connection closes; HTTP/2: the stream is
//! reset), as any proxy must.

use super::body_timeout::{IdleTimeout, is_timed_out};
use super::metrics::{GATEWAY, UpstreamError};
use super::tls::{self, Alpn, Connector};
use super::upstream_h2::SharedHttp2;
use super::{BodyError, OutBody};
use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

/// Headers that concern one connection only (RFC 9110 §7.6.1), besides
/// those the `connection` header names.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade"];

/// Removes the hop-by-hop headers, and those named by `connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    debug_assert!(!headers.contains_key(TRANSFER_ENCODING) && !headers.contains_key(UPGRADE));
}

/// Strips a client's request of hop-by-hop headers before the filters see
/// it, keeping `te: trailers` (the only `te` a proxy may pass on).
pub fn strip_hop_by_hop_request(headers: &mut HeaderMap) {
    let trailers = wants_trailers(headers);
    strip_hop_by_hop(headers);
    if trailers {
        headers.insert(TE, HeaderValue::from_static("trailers"));
    }
}

/// True when the client asked for trailers (`te: trailers`).
pub fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers")))
}

/// A body whose length is hidden, so that HTTP/1.1 sends it chunked.
struct Unsized<B>(B);

impl<B: Body + Unpin> Body for Unsized<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<B::Data>, B::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }
}

/// A message that declares trailers (`trailer`) must go chunked over
/// HTTP/1.1, whatever length its body knows: drops `content-length` and
/// hides the body's length. Other messages are left alone.
pub fn chunked_if_trailers(
    headers: &mut HeaderMap,
    body: UnsyncBoxBody<Bytes, BodyError>,
) -> UnsyncBoxBody<Bytes, BodyError> {
    if headers.contains_key(http::header::TRAILER) {
        headers.remove(http::header::CONTENT_LENGTH);
        Unsized(body).boxed_unsync()
    } else {
        body
    }
}

/// Where requests go after the last filter.
#[derive(Clone, Debug)]
pub enum Next {
    /// An upstream server: `scheme://authority` and a pooled client.
    Upstream(Box<Upstream>),
    /// The conformance suite's echo backend, in-process.
    Echo,
}

/// The default of [`Upstream::timeout`]: 60 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The default of [`Upstream::new`]'s `max_idle`: 32.
pub const DEFAULT_MAX_IDLE: usize = 32;

/// An upstream HTTP server.
#[derive(Clone, Debug)]
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    timeout: Duration,
    rewrite_host: bool,
    transport: Transport,
}

/// How requests reach the upstream: connections to its address alone,
/// whatever `host` the requests name.
#[derive(Clone, Debug)]
enum Transport {
    /// HTTP/1.1: a pool keyed by the upstream's authority (every request's
    /// URI names it; `host` travels as a header), keeping at most
    /// `max_idle` idle connections (over TLS: ALPN `http/1.1`).
    Http1(Box<Client<Connector, Outgoing>>),
    /// HTTP/2: one connection that every request shares, whatever its
    /// `:authority` (over TLS: ALPN `h2`, which the upstream must select).
    Http2(Arc<SharedHttp2>),
    /// `https` without `--upstream-http2`: ALPN offers `h2` and
    /// `http/1.1`; HTTP/2 as `Http2` when the upstream selects it, else
    /// HTTP/1.1 as `Http1`.
    Negotiated { http1: Box<Client<Connector, Outgoing>>, http2: Arc<SharedHttp2> },
}

impl Transport {
    /// Whether the next request goes over HTTP/2 (may dial, see
    /// [`SharedHttp2::speaks_http2`]).
    async fn http2(&self) -> Result<bool, BoxError> {
        match self {
            Transport::Http1(_) => Ok(false),
            Transport::Http2(_) => Ok(true),
            Transport::Negotiated { http2, .. } => http2.speaks_http2().await,
        }
    }
}

/// How the request body of an exchange ended, when it failed.
const BODY_OK: u8 = 0;
const BODY_FAILED: u8 = 1;
const BODY_TIMED_OUT: u8 = 2;

/// A request body on its way to the upstream, noting whether it failed
/// (the client vanished mid-body, or stopped sending it): then a failed
/// exchange is the request's fault, not the upstream's.
pub struct Outgoing {
    body: OutBody,
    failed: Arc<AtomicU8>,
}

impl Body for Outgoing {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, BodyError>>> {
        let frame = std::task::ready!(std::pin::Pin::new(&mut self.body).poll_frame(cx));
        if let Some(Err(e)) = &frame {
            let how = if is_timed_out(e) { BODY_TIMED_OUT } else { BODY_FAILED };
            self.failed.store(how, Ordering::Relaxed);
        }
        std::task::Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

impl Upstream {
    /// `url` must be `http://host:port` or `https://host:port` (a path is
    /// ignored). With `http2` the client speaks HTTP/2 over one shared
    /// connection (plain: prior knowledge; TLS: the upstream must select
    /// `h2` by ALPN); over HTTP/1.1 at most `max_idle` idle connections are
    /// kept (see [`DEFAULT_MAX_IDLE`]). Over TLS without `http2`, ALPN
    /// offers both and the upstream chooses. Either way connections go to
    /// the upstream's address, whatever `host` a request names; over TLS
    /// the upstream's host is the name checked and sent as SNI, and its
    /// certificate is checked against `ca`'s certificates (PEM), or the
    /// system's roots without `ca`. Defaults: `host` passed as received, a
    /// [`DEFAULT_TIMEOUT`] for the response head.
    pub fn new(url: &str, http2: bool, max_idle: usize, ca: Option<&Path>) -> Result<Upstream, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--upstream {url:?}: {e}"))?;
        let scheme = match uri.scheme_str() {
            Some("http") => Scheme::HTTP,
            Some("https") => Scheme::HTTPS,
            _ => return Err(format!("--upstream {url:?}: expected http://host:port or https://host:port")),
        };
        let authority = uri.authority().ok_or_else(|| format!("--upstream {url:?}: no host"))?.clone();
        let base = Uri::builder()
            .scheme(scheme.clone())
            .authority(authority.clone())
            .path_and_query("/")
            .build()
            .map_err(|e| format!("--upstream {url:?}: {e}"))?;
        let mut http = HttpConnector::new();
        // Small writes (headers, chunks) go out at once, not after a delayed ACK.
        http.set_nodelay(true);
        let roots = match (scheme == Scheme::HTTPS, ca) {
            (true, ca) => Some(Arc::new(tls::upstream_roots(ca)?)),
            (false, None) => None,
            (false, Some(_)) => return Err(format!("--upstream-ca is for an https:// upstream, not {url:?}")),
        };
        let pool = |alpn| {
            let client = Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .pool_max_idle_per_host(max_idle)
                .build(tls::connector(http.clone(), roots.clone(), alpn));
            Box::new(client)
        };
        let transport = if http2 {
            let connector = tls::connector(http.clone(), roots.clone(), Alpn::Http2);
            Transport::Http2(Arc::new(SharedHttp2::new(connector, base, Alpn::Http2)))
        } else if scheme == Scheme::HTTPS {
            let connector = tls::connector(http.clone(), roots.clone(), Alpn::Both);
            let http2 = Arc::new(SharedHttp2::new(connector, base, Alpn::Both));
            Transport::Negotiated { http1: pool(Alpn::Http1), http2 }
        } else {
            Transport::Http1(pool(Alpn::Http1))
        };
        Ok(Upstream { scheme, authority, timeout: DEFAULT_TIMEOUT, rewrite_host: false, transport })
    }

    /// How long the upstream may take to answer, from the start of the
    /// request (connecting included) to its response head: then 504.
    /// Default [`DEFAULT_TIMEOUT`]. The response body streams without a
    /// limit.
    pub fn timeout(mut self, timeout: Duration) -> Upstream {
        self.timeout = timeout;
        self
    }

    /// Sends the upstream's own authority as `host` instead of the client's
    /// (or the filters') value. Default: off.
    pub fn rewrite_host(mut self, rewrite: bool) -> Upstream {
        self.rewrite_host = rewrite;
        self
    }

    /// This upstream for another worker (see [`workers`](super::workers)):
    /// its own HTTP/1.1 pool (whose idle bound it was built with), and
    /// `first`'s HTTP/2 connection, so that every request over HTTP/2
    /// still shares one connection whichever worker sends it (that
    /// connection's task runs on the worker that dialled it).
    pub fn sharing_http2_with(mut self, first: &Upstream) -> Upstream {
        let (Transport::Http2(theirs) | Transport::Negotiated { http2: theirs, .. }) = &first.transport else {
            return self;
        };
        if let Transport::Http2(mine) | Transport::Negotiated { http2: mine, .. } = &mut self.transport {
            *mine = theirs.clone();
        }
        self
    }

    /// The upstream's `http://authority` (or `https://`).
    pub fn url(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Sends one request; strips hop-by-hop headers from the response.
    async fn forward(&self, mut parts: http::request::Parts, body: OutBody) -> Result<Response<OutBody>, ProxyError> {
        // Over TLS the protocol may only be known once connected: that
        // counts within the timeout.
        let deadline = tokio::time::Instant::now() + self.timeout;
        let http2 = match tokio::time::timeout_at(deadline, self.transport.http2()).await {
            Ok(Ok(http2)) => http2,
            Ok(Err(e)) => {
                GATEWAY.upstream_failed(UpstreamError::of(&*e));
                return Err(ProxyError::bad_gateway(self, detail(&*e)));
            }
            Err(_) => return Err(self.timed_out()),
        };
        let host = if self.rewrite_host {
            HeaderValue::from_str(self.authority.as_str()).ok()
        } else {
            parts.headers.get(HOST).cloned()
        };
        // HTTP/1.1 sends `host` as a header, and the URI names the
        // upstream (the pool's key); HTTP/2 sends `host` as `:authority`
        // (and must not send a `host` that differs), on the one shared
        // connection to the upstream.
        let authority = match (&host, http2) {
            (Some(host), true) => Authority::try_from(host.as_bytes())
                .map_err(|_| ProxyError::bad_gateway(self, format!("host {host:?} is not an authority for HTTP/2")))?,
            _ => self.authority.clone(),
        };
        if http2 {
            parts.headers.remove(HOST);
        } else if let Some(host) = host {
            parts.headers.insert(HOST, host);
        }
        let pq = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        parts.uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(pq)
            .build()
            .map_err(|e| ProxyError::bad_gateway(self, format!("cannot build the upstream URI: {e}")))?;
        // The client-side HTTP version does not carry over.
        parts.version = http::Version::HTTP_11;
        let body = chunked_if_trailers(&mut parts.headers, body);
        // hyper's HTTP/1.1 client sends no body at all for a GET, HEAD or
        // CONNECT whose length it does not know, unless told to chunk it.
        if !http2
            && !body.is_end_stream()
            && body.size_hint().exact().is_none()
            && !parts.headers.contains_key(http::header::CONTENT_LENGTH)
        {
            parts.headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        }
        let failed = Arc::new(AtomicU8::new(BODY_OK));
        let body = Outgoing { body, failed: failed.clone() };
        let req = Request::from_parts(parts, body);
        let sent = async {
            match (&self.transport, http2) {
                (Transport::Http1(client), _) | (Transport::Negotiated { http1: client, .. }, false) => {
                    client.request(req).await.map_err(|e| Box::new(e) as BoxError)
                }
                (Transport::Http2(shared), _) | (Transport::Negotiated { http2: shared, .. }, true) => {
                    shared.request(req).await
                }
            }
        };
        match tokio::time::timeout_at(deadline, sent).await {
            Ok(Ok(res)) => {
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, body.map_err(|e| BodyError(Box::new(e))).boxed_unsync()))
            }
            Ok(Err(e)) => {
                let cause = match failed.load(Ordering::Relaxed) {
                    BODY_TIMED_OUT => Cause::BodyTimeout,
                    BODY_FAILED => Cause::RequestBody,
                    _ => Cause::Upstream,
                };
                if cause == Cause::Upstream {
                    GATEWAY.upstream_failed(UpstreamError::of(&*e));
                }
                Err(ProxyError { upstream: self.url(), cause, detail: detail(&*e) })
            }
            Err(_) => Err(self.timed_out()),
        }
    }

    /// No response head within the timeout (counted as an upstream error).
    fn timed_out(&self) -> ProxyError {
        GATEWAY.upstream_failed(UpstreamError::Timeout);
        ProxyError {
            upstream: self.url(),
            cause: Cause::Timeout,
            detail: format!("no response head within {}", humantime(self.timeout)),
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// `e` and its sources, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut detail = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        src = s.source();
    }
    detail
}

/// `e`'s [`chain`], after a hint when TLS failed (an untrusted certificate).
fn detail(e: &(dyn std::error::Error + 'static)) -> String {
    match tls::hint(e) {
        Some(hint) => format!("{hint}: {}", chain(e)),
        None => chain(e),
    }
}

/// `1.5s`, `200ms`.
fn humantime(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

/// Why there is no upstream response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cause {
    /// Unreachable, refused, reset, not HTTP: 502.
    Upstream,
    /// No response head in time: 504.
    Timeout,
    /// The request body failed on its way (the client vanished or broke
    /// off mid-body): 400, and nobody is likely to read it.
    RequestBody,
    /// The client sent no request body data for the body timeout: 408.
    BodyTimeout,
}

/// The upstream gave no response: the gateway answers 502, 504 when it
/// timed out, 400 when the request's own body failed on the way, 408 when
/// the client stopped sending it. The detail is for the log, never for
/// the client.
#[derive(Debug)]
pub struct ProxyError {
    upstream: String,
    cause: Cause,
    detail: String,
}

impl ProxyError {
    fn bad_gateway(upstream: &Upstream, detail: String) -> ProxyError {
        ProxyError { upstream: upstream.url(), cause: Cause::Upstream, detail }
    }

    /// 504 when the upstream timed out, 400 when the request body failed,
    /// 408 when it stopped, else 502.
    pub fn status(&self) -> StatusCode {
        match self.cause {
            Cause::Upstream => StatusCode::BAD_GATEWAY,
            Cause::Timeout => StatusCode::GATEWAY_TIMEOUT,
            Cause::RequestBody => StatusCode::BAD_REQUEST,
            Cause::BodyTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }

    /// True when the client's side failed (its body), not the upstream.
    pub fn is_client_side(&self) -> bool {
        matches!(self.cause, Cause::RequestBody | Cause::BodyTimeout)
    }

    /// What the client gets: the status and its reason phrase, nothing more.
    pub fn response(&self) -> Response<OutBody> {
        super::plain(self.status())
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.upstream, self.detail)
    }
}

impl std::error::Error for ProxyError {}

impl Next {
    /// Forwards `req`: strips hop-by-hop headers both ways, keeps `host` as
    /// it stands (or its HTTP/2 authority) unless the upstream rewrites it,
    /// and fails with a [`ProxyError`] when the upstream gives no response.
    /// A request body that sends nothing for `body_timeout` fails the
    /// exchange (408).
    pub async fn call<B>(&self, req: Request<B>, body_timeout: Duration) -> Result<Response<OutBody>, ProxyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (mut parts, body) = req.into_parts();
        strip_hop_by_hop_request(&mut parts.headers);
        if !parts.headers.contains_key(HOST)
            && let Some(authority) = parts.uri.authority()
            && let Ok(host) = HeaderValue::from_str(authority.as_str())
        {
            parts.headers.insert(HOST, host);
        }
        let body = body.map_err(|e| BodyError(e.into())).boxed_unsync();
        let body = IdleTimeout::new(body, body_timeout).boxed_unsync();
        match self {
            Next::Echo => {
                let res = http_wasm_conformance::backend::respond(Request::from_parts(parts, body)).await;
                Ok(res.map(|b| b.map_err(BodyError).boxed_unsync()))
            }
            Next::Upstream(upstream) => upstream.forward(parts, body).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_hop_by_hop_and_named_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("connection", "keep-alive, x-private"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "close"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("x-private", "1"),
            ("x-kept", "2"),
            ("content-type", "text/plain"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        assert!(wants_trailers(&h));
        strip_hop_by_hop(&mut h);
        let left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(left, ["x-kept", "content-type"]);
    }
}
