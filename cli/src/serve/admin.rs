//! The admin listener (`serve --admin ADDR`): `GET /metrics` in the
//! Prometheus text exposition format (version 0.0.4), one series per
//! filter of every figure of [`Plugin::metrics`](tower_http_wasm::Plugin::metrics).
//!
//! ```text
//! # HELP http_wasm_requests_total Requests that reached the filter.
//! # TYPE http_wasm_requests_total counter
//! http_wasm_requests_total{filter="router"} 3
//! ```
//!
//! Names are `http_wasm_` and the figure's name, counters with `_total`;
//! the label `filter` is the filter's name in the pipeline.
//!
//! For orchestrators (Kubernetes probes): `GET /healthz` is 200 while the
//! process runs; `GET /readyz` is 200 once every filter is loaded and the
//! listener accepts, and 503 before that and while draining after SIGTERM.
//!
//! Any other path is 404, any other method than `GET` and `HEAD` 405.

use super::pipeline::Loaded;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http_wasm::MetricKind;

/// The content type of the text exposition format.
const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A label value with `\`, `"` and newlines escaped.
fn label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// Every filter's figures, grouped by metric, in the text format.
pub fn render(filters: &[Loaded]) -> String {
    let snapshots: Vec<(String, Vec<_>)> =
        filters.iter().map(|f| (label(&f.name), f.plugin.metrics().iter().collect())).collect();
    let mut out = String::new();
    let Some((_, first)) = snapshots.first() else { return out };
    for (i, &(name, help, kind, _)) in first.iter().enumerate() {
        let (suffix, kind) = match kind {
            MetricKind::Counter => ("_total", "counter"),
            MetricKind::Gauge => ("", "gauge"),
            _ => ("", "untyped"),
        };
        let metric = format!("http_wasm_{name}{suffix}");
        let _ = writeln!(out, "# HELP {metric} {help}");
        let _ = writeln!(out, "# TYPE {metric} {kind}");
        for (filter, figures) in &snapshots {
            if let Some(&(_, _, _, value)) = figures.get(i) {
                let _ = writeln!(out, "{metric}{{filter=\"{filter}\"}} {value}");
            }
        }
    }
    out
}

/// Whether the gateway takes traffic, for `/readyz`; clones share it.
#[derive(Clone, Debug, Default)]
pub struct Health {
    ready: Arc<AtomicBool>,
}

impl Health {
    /// Marks the gateway ready (filters loaded, listener accepting) or not
    /// (starting, draining).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::SeqCst);
    }

    /// Whether it is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

fn respond(req: &Request<hyper::body::Incoming>, filters: &[Loaded], health: &Health) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        let mut res = Response::new(Full::new(Bytes::from(body)));
        *res.status_mut() = status;
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        res
    };
    let path = req.uri().path();
    if !["/metrics", "/healthz", "/readyz"].contains(&path) {
        return text(StatusCode::NOT_FOUND, "not found: try /metrics, /healthz or /readyz\n".into());
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut res = text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
        res.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return res;
    }
    match path {
        "/healthz" => return text(StatusCode::OK, "ok\n".into()),
        "/readyz" if health.is_ready() => return text(StatusCode::OK, "ready\n".into()),
        "/readyz" => return text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into()),
        _ => {}
    }
    let mut res = text(StatusCode::OK, render(filters));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    res
}

/// Serves the admin endpoints on `listener` until the runtime stops.
pub fn spawn(listener: TcpListener, filters: Vec<Loaded>, health: Health) {
    let filters: Arc<[Loaded]> = filters.into();
    tokio::spawn(async move {
        loop {
            let (stream, _) = match listener.accept().await {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(target: "http_wasm::serve", error = %e, "admin: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let filters = filters.clone();
            let health = health.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let res = respond(&req, &filters, &health);
                async move { Ok::<_, Infallible>(res) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped() {
        assert_eq!(label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(label("x\ny"), "x\\ny");
    }

    #[test]
    fn no_filter_no_series() {
        assert_eq!(render(&[]), "");
    }
}
