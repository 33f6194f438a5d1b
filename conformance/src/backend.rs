//! The echo backend: the next handler behind a host under test.

use crate::frames::{BoxError, Frames};
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::net::TcpListener;

/// The backend's response body.
pub type BackendBody = Frames;

/// Request header: the status to answer with.
pub const STATUS: &str = "x-backend-status";
/// Request header, repeatable: a response header line to add, `name: value`.
pub const HEADER: &str = "x-backend-header";
/// Request header: the body to answer with instead of the echo.
pub const BODY: &str = "x-backend-body";
/// Request header, repeatable: a response trailer, `name: value`.
pub const TRAILER: &str = "x-backend-trailer";
/// Request header: `body` makes the response body fail after 7 bytes.
pub const FAIL: &str = "x-backend-fail";

fn split_line(value: &HeaderValue) -> Option<(HeaderName, HeaderValue)> {
    let text = value.to_str().ok()?;
    let (name, value) = text.split_once(':')?;
    Some((HeaderName::from_bytes(name.trim().as_bytes()).ok()?, HeaderValue::from_str(value.trim()).ok()?))
}

fn echo_name(prefix: &str, name: &HeaderName) -> HeaderName {
    HeaderName::from_bytes(format!("{prefix}{name}").as_bytes()).expect("a valid header name stays valid")
}

/// Answers one request as the [crate docs](crate#the-backend) describe.
pub async fn respond<B>(req: Request<B>) -> Response<BackendBody>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    let (parts, body) = req.into_parts();
    let collected = match body.collect().await {
        Ok(c) => c,
        Err(e) => {
            let e: BoxError = e.into();
            tracing::warn!(target: "http_wasm::conformance::backend", error = %e, "request body failed");
            let mut res = Response::new(Frames::full("request body failed\n"));
            *res.status_mut() = StatusCode::BAD_REQUEST;
            return res;
        }
    };
    let trailers = collected.trailers().cloned();
    let received = collected.to_bytes();
    let get = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());

    let mut headers = HeaderMap::new();
    headers.insert("x-echo-method", HeaderValue::from_str(parts.method.as_str()).expect("a method is a valid value"));
    let uri = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri = if parts.uri.path_and_query().is_none() && parts.uri.authority().is_some() {
        parts.uri.authority().map_or("/", |a| a.as_str())
    } else {
        uri
    };
    headers.insert("x-echo-uri", HeaderValue::from_str(uri).unwrap_or(HeaderValue::from_static("/")));
    headers.insert("x-echo-version", HeaderValue::from_static(version_name(parts.version)));
    headers.insert("x-echo-body-length", HeaderValue::from(received.len()));
    for (name, value) in &parts.headers {
        headers.append(echo_name("x-echo-header-", name), value.clone());
    }
    if let Some(t) = &trailers {
        for (name, value) in t {
            headers.append(echo_name("x-echo-trailer-", name), value.clone());
        }
    }
    for line in parts.headers.get_all(HEADER) {
        if let Some((name, value)) = split_line(line) {
            headers.append(name, value);
        }
    }
    let status = get(STATUS).and_then(|s| s.trim().parse::<u16>().ok()).and_then(|s| StatusCode::from_u16(s).ok());
    let body_bytes = match get(BODY) {
        Some(text) => Bytes::copy_from_slice(text.as_bytes()),
        None => received,
    };
    let mut out_trailers = HeaderMap::new();
    for line in parts.headers.get_all(TRAILER) {
        if let Some((name, value)) = split_line(line) {
            headers.append(http::header::TRAILER, HeaderValue::from_str(name.as_str()).expect("a name is a value"));
            out_trailers.append(name, value);
        }
    }
    let body = if get(FAIL) == Some("body") {
        Frames::failing("partial", "the backend failed its body on purpose")
    } else if out_trailers.is_empty() {
        Frames::full(body_bytes)
    } else {
        Frames::chunked(&body_bytes, 1000, Some(out_trailers))
    };
    let mut res = Response::new(body);
    *res.status_mut() = status.unwrap_or(StatusCode::OK);
    *res.headers_mut() = headers;
    res
}

fn version_name(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Serves the backend on `listener` (HTTP/1.1 and HTTP/2 with prior
/// knowledge) until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(target: "http_wasm::conformance::backend", error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                Ok::<_, Infallible>(respond(req).await)
            });
            if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!(target: "http_wasm::conformance::backend", %peer, error = %e, "connection ended");
            }
        });
    }
}

/// Binds `addr` and serves the backend on a spawned task; returns the
/// bound address.
pub async fn spawn(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tokio::spawn(serve(listener));
    Ok(bound)
}
