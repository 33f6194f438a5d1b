//! An axum app wrapped with an http-wasm guest.
//!
//! ```text
//! cargo run -p http-wasm-example-axum-app -- FILTER.wasm [CONFIG] [ADDR]
//! ```
//!
//! Loads `FILTER.wasm` with the guest config `CONFIG` (default empty) and
//! serves two routes on `ADDR` (default `127.0.0.1:3000`) behind it. Guest
//! logs go to stderr (`RUST_LOG=http_wasm=debug` for more).

use axum::Router;
use axum::routing::{get, post};
use std::net::SocketAddr;
use tower_http_wasm::{HttpWasmLayer, Plugin, SourceAddr};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: http-wasm-example-axum-app FILTER.wasm [CONFIG] [ADDR]");
        std::process::exit(2);
    };
    let config = args.next().unwrap_or_default();
    let addr: SocketAddr = args.next().as_deref().unwrap_or("127.0.0.1:3000").parse()?;

    let wasm = std::fs::read(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let plugin = Plugin::builder().name(path.clone()).config(config).build(&wasm)?;
    eprintln!("loaded {path}: features at start {}", plugin.module_features());

    let app = Router::new()
        .route("/", get(|| async { "hello from axum\n" }))
        .route("/echo", post(|body: String| async move { body }))
        .layer(HttpWasmLayer::new(plugin))
        // The client address for get_source_addr.
        .layer(axum::middleware::from_fn(
            |axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<SocketAddr>,
             mut req: axum::extract::Request,
             next: axum::middleware::Next| async move {
                req.extensions_mut().insert(SourceAddr(peer));
                next.run(req).await
            },
        ));

    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
