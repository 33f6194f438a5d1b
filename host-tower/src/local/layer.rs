//! The local service's `Layer`.

use super::{LocalHttpWasm, LocalPlugin};
use crate::{DefaultFailureResponse, FailureResponse};
use tower_layer::Layer;

/// Wraps services with an http-wasm guest, for one thread (see
/// [`LocalHttpWasm`]).
///
/// Holds only configuration: the [`LocalPlugin`] and the
/// [`FailureResponse`] policy.
#[derive(Clone, Debug)]
pub struct LocalHttpWasmLayer<F = DefaultFailureResponse> {
    plugin: LocalPlugin,
    on_failure: F,
}

impl LocalHttpWasmLayer {
    /// A layer running `plugin`, answering guest failures with
    /// [`DefaultFailureResponse`].
    pub fn new(plugin: LocalPlugin) -> Self {
        LocalHttpWasmLayer { plugin, on_failure: DefaultFailureResponse }
    }
}

impl<F> LocalHttpWasmLayer<F> {
    /// Replaces the failure policy.
    pub fn failure_response<G: FailureResponse>(self, on_failure: G) -> LocalHttpWasmLayer<G> {
        LocalHttpWasmLayer { plugin: self.plugin, on_failure }
    }
}

impl<S, F: Clone> Layer<S> for LocalHttpWasmLayer<F> {
    type Service = LocalHttpWasm<S, F>;

    fn layer(&self, inner: S) -> Self::Service {
        LocalHttpWasm::with_failure_response(inner, self.plugin.clone(), self.on_failure.clone())
    }
}
