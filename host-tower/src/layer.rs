//! The tower `Layer`.

use crate::{DefaultFailureResponse, FailureResponse, HttpWasm, Plugin};
use tower_layer::Layer;

/// Wraps services with an http-wasm guest.
///
/// Holds only configuration: the [`Plugin`] (shared, cheap to clone) and
/// the [`FailureResponse`] policy.
///
/// ```no_run
/// use tower_http_wasm::{HttpWasmLayer, Plugin};
/// # fn demo(wasm: Vec<u8>) -> Result<(), tower_http_wasm::Error> {
/// let plugin = Plugin::builder().config(r#"{"header":"x-api-key"}"#).build(&wasm)?;
/// let app: axum::Router = axum::Router::new()
///     .route("/", axum::routing::get(|| async { "hello" }))
///     .layer(HttpWasmLayer::new(plugin));
/// # let _ = app; Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HttpWasmLayer<F = DefaultFailureResponse> {
    plugin: Plugin,
    on_failure: F,
}

impl HttpWasmLayer {
    /// A layer running `plugin`, answering guest failures with
    /// [`DefaultFailureResponse`].
    pub fn new(plugin: Plugin) -> Self {
        HttpWasmLayer { plugin, on_failure: DefaultFailureResponse }
    }
}

impl<F> HttpWasmLayer<F> {
    /// Replaces the failure policy.
    pub fn failure_response<G: FailureResponse>(self, on_failure: G) -> HttpWasmLayer<G> {
        HttpWasmLayer { plugin: self.plugin, on_failure }
    }
}

impl<S, F: Clone> Layer<S> for HttpWasmLayer<F> {
    type Service = HttpWasm<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        HttpWasm::with_failure_response(inner, self.plugin.clone(), self.on_failure.clone())
    }
}
