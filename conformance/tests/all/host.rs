//! Serving the conformance guest with `HttpWasmLayer` in front of the
//! backend (in-process), on an ephemeral port.

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use http_wasm_conformance::{BoxError, GUEST_CONFIG, backend};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use tower::ServiceBuilder;
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin, RequestBody, SourceAddr};

/// The request body between hyper and the plugin's layer.
pub type Boxed = UnsyncBoxBody<Bytes, BodyError>;

/// The error of [`Boxed`]: a concrete type, because with
/// `UnsyncBoxBody<Bytes, Box<dyn Error + Send + Sync>>` as the request body
/// the layer's future fails the `Send` check of `tokio::spawn` with
/// "implementation of `From` is not general enough".
#[derive(Debug)]
pub struct BodyError(pub BoxError);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyError {}

/// What a test's own layer does to each request before the plugin sees it.
pub type Tamper = Arc<dyn Fn(http::Request<Boxed>) -> http::Request<Boxed> + Send + Sync>;

/// The guest module, built once per test process.
pub fn guest() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        http_wasm_guest_build::build_bytes("http-wasm-conformance-guest", http_wasm_guest_build::Target::Unknown)
            .unwrap_or_else(|e| panic!("building the conformance guest: {e}"))
    })
}

pub fn plugin(engine: Engine) -> Plugin {
    plugin_with(engine, tower_http_wasm::Features::ALL)
}

/// The guest with only `features` allowed.
pub fn plugin_with(engine: Engine, features: tower_http_wasm::Features) -> Plugin {
    Plugin::builder()
        .engine(engine)
        .features(features)
        .config(GUEST_CONFIG)
        .build(guest())
        .unwrap_or_else(|e| panic!("[{engine}] loading the conformance guest: {e}"))
}

async fn next(req: http::Request<RequestBody>) -> Result<http::Response<backend::BackendBody>, Infallible> {
    Ok(backend::respond(req).await)
}

/// Serves `plugin` in front of the backend. With `tamper`, a `map_request`
/// layer of the test's own sits between hyper and the plugin's layer.
pub async fn serve(plugin: Plugin, tamper: Option<Tamper>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let tamper = tamper.clone();
            let svc = ServiceBuilder::new()
                .map_request(move |req: http::Request<hyper::body::Incoming>| {
                    let mut req = req.map(|b| b.map_err(|e| BodyError(Box::new(e))).boxed_unsync());
                    req.extensions_mut().insert(SourceAddr(peer));
                    match &tamper {
                        Some(t) => t(req),
                        None => req,
                    }
                })
                .layer(HttpWasmLayer::new(plugin.clone()))
                .service_fn(next);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    addr
}
