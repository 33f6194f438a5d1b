//! The innermost service: the upstream over HTTP, or the built-in echo
//! backend, and the hop-by-hop header rules of a proxy.

use super::{BodyError, OutBody};
use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::convert::Infallible;

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

/// An upstream HTTP server.
#[derive(Clone, Debug)]
pub struct Upstream {
    base: Uri,
    client: Client<HttpConnector, UnsyncBoxBody<Bytes, BodyError>>,
}

impl Upstream {
    /// `url` must be `http://host:port` (a path is ignored). With `http2`
    /// the client speaks HTTP/2 with prior knowledge.
    pub fn new(url: &str, http2: bool) -> Result<Upstream, String> {
        let uri: Uri = url.parse().map_err(|e| format!("--upstream {url:?}: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => return Err(format!("--upstream {url:?}: https is not supported here, use http")),
            _ => return Err(format!("--upstream {url:?}: expected http://host:port")),
        }
        let authority = uri.authority().ok_or_else(|| format!("--upstream {url:?}: no host"))?.clone();
        let base = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|e| e.to_string())?;
        let client = Client::builder(TokioExecutor::new()).http2_only(http2).build_http();
        Ok(Upstream { base, client })
    }

    /// The upstream's `http://authority`.
    pub fn url(&self) -> String {
        format!("http://{}", self.base.authority().map_or("", |a| a.as_str()))
    }
}

fn bad_gateway() -> Response<OutBody> {
    let mut res = Response::new(Full::new(Bytes::from_static(b"Bad Gateway\n")).map_err(|e| match e {}).boxed_unsync());
    *res.status_mut() = StatusCode::BAD_GATEWAY;
    res.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

impl Next {
    /// Forwards `req`: strips hop-by-hop headers both ways, keeps `host` as
    /// the client sent it (or its HTTP/2 authority), and answers 502 when
    /// the upstream fails (the detail goes to the log).
    pub async fn call<B>(self, req: Request<B>) -> Result<Response<OutBody>, Infallible>
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
        let upstream = match self {
            Next::Echo => {
                let res = http_wasm_conformance::backend::respond(Request::from_parts(parts, body)).await;
                return Ok(res.map(|b| b.map_err(BodyError).boxed_unsync()));
            }
            Next::Upstream(u) => u,
        };
        let pq = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let target = format!("{}{}", upstream.url(), pq);
        parts.uri = match target.parse() {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(target: "http_wasm::proxy", uri = %target, error = %e, "cannot build the upstream URI");
                return Ok(bad_gateway());
            }
        };
        // The client-side HTTP version does not carry over.
        parts.version = http::Version::HTTP_11;
        let body = chunked_if_trailers(&mut parts.headers, body);
        let method = parts.method.clone();
        match upstream.client.request(Request::from_parts(parts, body)).await {
            Ok(res) => {
                let (mut parts, body) = res.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Ok(Response::from_parts(parts, body.map_err(|e| BodyError(Box::new(e))).boxed_unsync()))
            }
            Err(e) => {
                let mut detail = e.to_string();
                let mut src = std::error::Error::source(&e);
                while let Some(s) = src {
                    detail.push_str(": ");
                    detail.push_str(&s.to_string());
                    src = s.source();
                }
                tracing::warn!(target: "http_wasm::proxy", upstream = %upstream.url(), %method, error = %detail, "upstream request failed");
                Ok(bad_gateway())
            }
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
