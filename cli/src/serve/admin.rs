//! The admin listener (`serve --admin ADDR`): `GET /metrics` in the
//! OpenMetrics text format (which Prometheus scrapes), encoded by
//! `prometheus-client` at scrape time from snapshots: every figure of each
//! filter's [`Plugin::metrics`](tower_http_wasm::Plugin::metrics) and the
//! gateway's own (see [`metrics`](super::metrics)).
//!
//! ```text
//! # HELP http_wasm_requests Requests that reached the filter.
//! # TYPE http_wasm_requests counter
//! http_wasm_requests_total{filter="router"} 3
//! ```
//!
//! Names are `http_wasm_` and the figure's name, counters with `_total` on
//! their series; the label `filter` is the filter's name in the pipeline.
//! Besides the plugin's counters and gauges:
//!
//! - `http_wasm_guest_duration_seconds{filter, phase}`: a histogram of the
//!   time in the guest's `handle_request` and `handle_response`, of one
//!   call in `--guest-time-sampling` (16 by default), picked at random;
//! - `http_wasm_instances_in_use{filter}`: instances serving a request;
//! - `http_wasm_request_duration_seconds`: a histogram of the time from a
//!   request's arrival to its response head, through the whole pipeline;
//! - `http_wasm_upstream_errors_total{kind}`: failed exchanges with the
//!   upstream, `kind` one of `refused`, `reset`, `timeout`, `other`;
//! - `http_wasm_connections_open`: client connections open.
//!
//! Histogram buckets are [`DURATION_BUCKETS`]
//! (1 µs to 10 s). Requests record into atomics only; nothing here runs
//! until a scrape.
//!
//! For orchestrators (Kubernetes probes): `GET /healthz` is 200 while the
//! process runs; `GET /readyz` is 200 once every filter is loaded and the
//! listener accepts, and 503 before that and while draining after SIGTERM.
//!
//! Any other path is 404, any other method than `GET` and `HEAD` 405.

use super::metrics::GATEWAY;
use super::pipeline::Loaded;
use bytes::Bytes;
use http::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::net::TcpListener;
use tower_http_wasm::{DURATION_BUCKETS, HistogramSnapshot, MetricKind, Metrics};

/// The content type of the OpenMetrics text format.
const CONTENT_TYPE_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Encodes `histogram`'s sum (seconds), count and buckets.
fn encode_histogram(mut encoder: MetricEncoder<'_>, histogram: &HistogramSnapshot) -> std::fmt::Result {
    let mut buckets = [(f64::INFINITY, 0); DURATION_BUCKETS.len() + 1];
    for (i, bucket) in buckets.iter_mut().enumerate() {
        let bound = DURATION_BUCKETS.get(i).map_or(f64::INFINITY, Duration::as_secs_f64);
        *bucket = (bound, histogram.counts[i]);
    }
    encoder.encode_histogram::<NoLabelSet>(histogram.sum.as_secs_f64(), histogram.count(), &buckets, None)
}

/// What `/metrics` shows, read at each scrape: the filters' figures, then
/// the gateway's.
#[derive(Debug)]
struct Figures {
    filters: Arc<[Loaded]>,
}

impl Figures {
    fn encode_filters(&self, encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let snapshots: Vec<(&str, Metrics)> =
            self.filters.iter().map(|f| (f.name.as_str(), f.plugin.metrics())).collect();
        let Some((_, first)) = snapshots.first() else { return Ok(()) };
        for (i, (name, help, kind, _)) in first.iter().enumerate() {
            let metric_type = match kind {
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Gauge => MetricType::Gauge,
                _ => MetricType::Unknown,
            };
            let metric = format!("http_wasm_{name}");
            let mut family = encoder.encode_descriptor(&metric, help, None, metric_type)?;
            for (filter, figures) in &snapshots {
                let Some((_, _, _, value)) = figures.iter().nth(i) else { continue };
                let labels = [("filter", *filter)];
                let mut series = family.encode_family(&labels)?;
                match kind {
                    MetricKind::Counter => series.encode_counter::<NoLabelSet, _, u64>(&value, None)?,
                    _ => series.encode_gauge(&value)?,
                }
            }
        }
        let mut family = encoder.encode_descriptor(
            "http_wasm_guest_duration",
            "Time in the guest's calls, per phase (one call in --guest-time-sampling timed).",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        for (filter, figures) in &snapshots {
            for (phase, _, histogram) in figures.guest_time() {
                let labels = [("filter", *filter), ("phase", phase)];
                encode_histogram(family.encode_family(&labels)?, histogram)?;
            }
        }
        Ok(())
    }

    fn encode_gateway(encoder: &mut DescriptorEncoder<'_>) -> std::fmt::Result {
        let latency = encoder.encode_descriptor(
            "http_wasm_request_duration",
            "Time from a request's arrival to its response head, through every filter and the upstream.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?;
        encode_histogram(latency, &GATEWAY.latency())?;
        let mut errors = encoder.encode_descriptor(
            "http_wasm_upstream_errors",
            "Failed exchanges with the upstream, by kind.",
            None,
            MetricType::Counter,
        )?;
        for (kind, n) in GATEWAY.upstream_errors() {
            let labels = [("kind", kind.name())];
            errors.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        encoder
            .encode_descriptor("http_wasm_connections_open", "Client connections open.", None, MetricType::Gauge)?
            .encode_gauge(&GATEWAY.connections_open())
    }
}

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
        self.encode_filters(&mut encoder)?;
        Figures::encode_gateway(&mut encoder)
    }
}

/// The registry `/metrics` encodes: one collector of every figure.
pub fn registry(filters: Arc<[Loaded]>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures { filters }));
    registry
}

/// Every figure in the OpenMetrics text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
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

fn respond(req: &Request<hyper::body::Incoming>, registry: &Registry, health: &Health) -> Response<Full<Bytes>> {
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
    let mut res = text(StatusCode::OK, render(registry));
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE_TEXT));
    res
}

/// Serves the admin endpoints on `listener` until the runtime stops.
pub fn spawn(listener: TcpListener, filters: Vec<Loaded>, health: Health) {
    let registry = Arc::new(registry(filters.into()));
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
            let registry = registry.clone();
            let health = health.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let res = respond(&req, &registry, &health);
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
    fn no_filter_only_the_gateway() {
        let text = render(&registry(Arc::from(Vec::new())));
        assert!(!text.contains("filter="), "{text}");
        assert!(text.contains("# TYPE http_wasm_connections_open gauge\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
