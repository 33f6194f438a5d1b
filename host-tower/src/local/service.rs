//! The local service: one guest exchange per request, on this thread.

use super::LocalPlugin;
use crate::body::{BoxError, RequestBody, ResponseBody};
use crate::future::{LocalBoxed, LocalResponding};
use crate::service::Run;
use crate::{DefaultFailureResponse, FailureResponse, ResponseFuture};
use http::{Request, Response};
use http_body::Body;
use std::task::{Context, Poll};
use tower_service::Service;

/// Middleware that runs an http-wasm guest around an inner service, on
/// the current thread.
///
/// The request cycle and the failure policy are the
/// [`HttpWasm`](crate::HttpWasm)'s; the inner service, its future and its
/// response body need not be `Send`, and neither is this service.
///
/// [`HttpWasm`](crate::HttpWasm) is `Send`: its requests may move between
/// a multi-threaded runtime's threads, and so may the instances they hold.
/// A wasmer store may not, so on wasmer each of its instances lives on a
/// thread of its own and each guest call is handed to that thread and
/// back. A thread-per-core server (a tokio current-thread runtime per
/// core, a `LocalSet`, hyper serving `!Send` services) never moves a
/// request; [`LocalHttpWasm`] is the service for it. It runs a
/// [`LocalPlugin`], the current thread's replica of a [`Plugin`](crate::Plugin): the
/// same module, options and counters, its own pool of instances made on
/// this thread, which run every call inline on both engines.
///
/// ```no_run
/// use tower::ServiceBuilder;
/// use tower_http_wasm::{LocalHttpWasmLayer, Plugin};
/// # fn demo(plugin: Plugin) {
/// // On each worker thread, from the one plugin built at start:
/// let svc = ServiceBuilder::new()
///     .layer(LocalHttpWasmLayer::new(plugin.local()))
///     .service_fn(|_req: http::Request<tower_http_wasm::RequestBody>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
///     });
/// # let _ = svc; }
/// ```
///
/// What differs from the `Send` service:
/// * [`PluginBuilder::pool_size`](crate::PluginBuilder::pool_size) bounds
///   each replica: a process with N threads may run N times as many
///   instances. The plugin's own pool keeps its first instance.
/// * On wasmer, a request whose body is still arriving when its request
///   phase starts (it did not come whole with the head, and the module does
///   not buffer requests) is served by the plugin's own pool, whose
///   instances may wait for the body on their own threads: the hand-off of
///   the `Send` service, for those requests only.
#[derive(Clone, Debug)]
pub struct LocalHttpWasm<S, F = DefaultFailureResponse> {
    inner: S,
    plugin: LocalPlugin,
    on_failure: F,
}

impl<S> LocalHttpWasm<S> {
    /// Wraps `inner` with `plugin`, answering guest failures with
    /// [`DefaultFailureResponse`].
    pub fn new(inner: S, plugin: LocalPlugin) -> Self {
        LocalHttpWasm { inner, plugin, on_failure: DefaultFailureResponse }
    }
}

impl<S, F> LocalHttpWasm<S, F> {
    /// Wraps `inner` with `plugin` and a failure policy.
    pub fn with_failure_response(inner: S, plugin: LocalPlugin, on_failure: F) -> Self {
        LocalHttpWasm { inner, plugin, on_failure }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

/// Response future of [`LocalHttpWasm`]: the [`ResponseFuture`] whose
/// boxes are not `Send`.
pub type LocalResponseFuture<B, E, Fut, F> = ResponseFuture<B, E, Fut, F, LocalBoxed<B, E>, LocalResponding<B>>;

impl<S, F, ReqBody, ResBody> Service<Request<ReqBody>> for LocalHttpWasm<S, F>
where
    S: Service<Request<RequestBody>, Response = Response<ResBody>> + Clone + 'static,
    F: FailureResponse,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + 'static,
    ResBody::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = LocalResponseFuture<ResBody, S::Error, S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let run = Run { plugin: self.plugin.plugin().clone(), on_failure: self.on_failure.clone() };
        run.start(self.plugin.loaded(), inner, req, |slow| -> LocalBoxed<ResBody, S::Error> { Box::pin(slow.run()) })
    }
}
