//! Run [http-wasm](https://http-wasm.io) guests as tower middleware.
//!
//! An http-wasm guest is HTTP middleware compiled to WebAssembly: it sees
//! each request in `handle_request`, decides whether the next handler runs,
//! and sees the response in `handle_response`. This crate hosts such guests
//! in-process around any tower service (hyper, axum, tonic...), with the ABI
//! of the [`http_wasm_abi`] crate.
//!
//! ```no_run
//! use tower::ServiceBuilder;
//! use tower_http_wasm::{HttpWasmLayer, Plugin};
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let wasm = std::fs::read("filter.wasm")?;
//! let plugin = Plugin::builder().config("environment=production").pool_size(8).build(&wasm)?;
//! let svc = ServiceBuilder::new()
//!     .layer(HttpWasmLayer::new(plugin))
//!     .service_fn(|_req: http::Request<tower_http_wasm::RequestBody>| async {
//!         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
//!     });
//! # let _ = svc; Ok(()) }
//! ```
//!
//! # The request cycle
//!
//! 1. An instance is taken from the plugin's bounded pool (waiting while
//!    all are busy; the pool never grows past
//!    [`PluginBuilder::pool_size`]).
//! 2. `handle_request` runs. A module that enabled `buffer_request` while
//!    starting has its request body collected first (up to
//!    [`PluginBuilder::body_limit`], else 413).
//! 3. If the guest asks for next, the request (with any changes) goes to the
//!    inner service; its response is merged with what the guest wrote
//!    before (see [`http_wasm_abi::spec`] §2.1), collected when
//!    `buffer_response` is on, and `handle_response` runs on the **same
//!    instance**, with `is_error` set when the inner service or its body
//!    failed. An error of the inner service is returned as the service's
//!    error after `handle_response` ran.
//! 4. The instance goes back to the pool, unless the guest failed: then it
//!    is discarded.
//!
//! Bodies the guest neither read nor wrote are streamed through untouched.
//! Whenever the guest changed a body, `content-length` is recomputed (or
//! removed when the length is not known, so the message goes chunked).
//! How reading a body that is still arriving waits is described in the
//! `host::body` module: in short, never by blocking the runtime.
//!
//! # Failures
//!
//! A trap, an invalid host call (bad kind, out-of-bounds pointer, empty
//! header name, zero read limit, a write the phase forbids...), a new
//! instance that fails to start or a buffered body over the limit never
//! reach the client as text: they are logged at `error` level with their
//! detail, and the client gets the response of the [`FailureResponse`]
//! policy ([`DefaultFailureResponse`]: a short plain-text 500, 413, 503,
//! 400, or 502 when the next handler's response body failed while buffered). The service's error type is the inner service's, so the layer fits
//! `axum::Router::layer` without `HandleErrorLayer`.
//!
//! # Guest logs
//!
//! `log` and `log_enabled` go to `tracing`, target `http_wasm::guest`, with
//! a `plugin` field, gated by [`PluginBuilder::log_level`]. WASI stdout and
//! stderr go to `http_wasm::guest::stdout` (info) and
//! `http_wasm::guest::stderr` (warn).
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod body;
mod body_timeout;
mod engine;
mod error;
mod failure;
mod future;
mod host;
mod inspect;
mod layer;
mod local;
mod metrics;
mod module;
mod plugin;
mod pool;
mod service;
pub mod testing;
pub mod units;

pub use body::{BoxError, RequestBody, ResponseBody};
pub use body_timeout::BodyTimedOut;
pub use error::Error;
pub use failure::{DefaultFailureResponse, FailureResponse};
pub use future::ResponseFuture;
pub use http_wasm_abi as abi;
pub use http_wasm_abi::{Features, LogLevel};
pub use inspect::{Inspection, inspect};
pub use layer::HttpWasmLayer;
pub use local::{LocalHttpWasm, LocalHttpWasmLayer, LocalPlugin, LocalResponseFuture};
pub use metrics::{DURATION_BUCKETS, DurationHistogram, HistogramSnapshot, MetricKind, Metrics};
pub use plugin::{Engine, FailurePolicy, Isolation, Plugin, PluginBuilder};
pub use service::{HttpWasm, SourceAddr};
