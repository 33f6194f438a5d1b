//! `http-wasm serve`: a reverse proxy running a pipeline of filters.

pub mod dapr;
pub mod pipeline;
pub mod proxy;

use bytes::Bytes;
use http::Request;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use pipeline::Pipeline;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
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

/// Serves `pipeline` on `listener` until `shutdown` completes, then lets
/// open connections finish (at most 10 s).
pub async fn serve(listener: TcpListener, pipeline: Pipeline, shutdown: impl Future<Output = ()>) {
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(target: "http_wasm::serve", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let pipeline = pipeline.clone();
        let svc = hyper::service::service_fn(move |mut req: Request<hyper::body::Incoming>| {
            let pipeline = pipeline.clone();
            async move {
                req.extensions_mut().insert(SourceAddr(peer));
                proxy::strip_hop_by_hop_request(req.headers_mut());
                let started = Instant::now();
                let (method, uri) = (req.method().clone(), req.uri().clone());
                let res = pipeline.call(req).await;
                let (mut parts, body) = res.into_parts();
                proxy::strip_hop_by_hop(&mut parts.headers);
                let body = proxy::chunked_if_trailers(&mut parts.headers, body);
                let res = http::Response::from_parts(parts, body);
                tracing::info!(
                    target: "http_wasm::access",
                    %peer,
                    %method,
                    %uri,
                    status = res.status().as_u16(),
                    micros = started.elapsed().as_micros() as u64,
                    "request"
                );
                Ok::<_, Infallible>(res)
            }
        });
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "http_wasm::serve", %peer, error = %e, "connection ended");
            }
        });
    }
    tracing::info!(target: "http_wasm::serve", "shutting down: waiting for open connections");
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!(target: "http_wasm::serve", "connections still open after 10 s; closing");
    }
}

/// Binds `addr`.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, String> {
    TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))
}
