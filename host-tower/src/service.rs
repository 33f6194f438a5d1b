//! The tower `Service`: one guest exchange per request.

use crate::body::{BoxError, RequestBody, ResponseBody};
use crate::body_timeout::{IdleTimeout, is_timed_out};
use crate::engine::Call;
use crate::future::ResponseFuture;
use crate::host::body::PREFETCH_LIMIT;
use crate::host::exchange::{Framing, set_content_length};
use crate::host::{BodyState, Exchange, HostError, Phase};
use crate::metrics::Stage;
use crate::pool::{Lease, LeaseCall, LeaseCalled, LeaseOutcome, Loaded};
use crate::{DefaultFailureResponse, Error, FailurePolicy, FailureResponse, Plugin};
use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::BodyExt;
use http_wasm_abi::{CtxNext, Feature};
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;

/// The client's address, for `get_source_addr`.
///
/// Insert it into the request's extensions where connections are accepted
/// (a plain [`SocketAddr`] extension is read too). Without either the guest
/// reads an empty address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SourceAddr(pub SocketAddr);

/// Middleware that runs an http-wasm guest around an inner service.
///
/// See the [crate docs](crate) for the request cycle and the failure policy.
#[derive(Clone, Debug)]
pub struct HttpWasm<S, F = DefaultFailureResponse> {
    inner: S,
    plugin: Plugin,
    on_failure: F,
}

impl<S> HttpWasm<S> {
    /// Wraps `inner` with `plugin`, answering guest failures with
    /// [`DefaultFailureResponse`].
    pub fn new(inner: S, plugin: Plugin) -> Self {
        HttpWasm { inner, plugin, on_failure: DefaultFailureResponse }
    }
}

impl<S, F> HttpWasm<S, F> {
    /// Wraps `inner` with `plugin` and a failure policy.
    pub fn with_failure_response(inner: S, plugin: Plugin, on_failure: F) -> Self {
        HttpWasm { inner, plugin, on_failure }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, F, ReqBody, ResBody> Service<Request<ReqBody>> for HttpWasm<S, F>
where
    S: Service<Request<RequestBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    F: FailureResponse,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body + Send + 'static,
    ResBody::Data: Send,
    ResBody::Error: std::fmt::Display,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<ResBody, S::Error, S::Future, F>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let run = Run { plugin: self.plugin.clone(), on_failure: self.on_failure.clone() };
        run.start(self.plugin.loaded(), inner, req, |slow| -> SendBoxed<ResBody, S::Error> { Box::pin(slow.run()) })
    }
}

/// One request's run through a plugin, with the failure policy.
pub(crate) struct Run<F> {
    pub(crate) plugin: Plugin,
    pub(crate) on_failure: F,
}

/// The response future's boxed exchange, for the `Send` service.
pub(crate) type SendBoxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

/// What [`Run::start`] does not run itself: the rest of the exchange, for
/// its caller to box.
pub(crate) enum Slow<F, S, ReqBody> {
    /// All of it ([`Run::exchange`]): a body, a busy pool, fail-open.
    Exchange { run: Run<F>, loaded: Arc<Loaded>, inner: S, req: Request<ReqBody> },
    /// Past a `handle_request` that did not answer at once.
    Waiting { run: Run<F>, inner: S, waiting: LeaseCall },
}

impl<F: FailureResponse, S, ReqBody> Slow<F, S, ReqBody> {
    /// Runs the rest of the exchange.
    pub(crate) async fn run<ResBody>(self) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<RequestBody>, Response = Response<ResBody>>,
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body,
        ResBody::Error: std::fmt::Display,
    {
        match self {
            Slow::Exchange { run, loaded, inner, req } => run.exchange(loaded, inner, req).await,
            Slow::Waiting { run, inner, waiting } => {
                let called = waiting.await;
                run.after_request(inner, called, None, false).await
            }
        }
    }
}

fn box_body<B>(body: B) -> crate::host::BoxBody
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    body.map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining()))).map_err(Into::into).boxed_unsync()
}

/// Collects `body` up to `limit` bytes.
async fn collect<B>(body: B, limit: usize) -> Result<(VecDeque<Bytes>, Option<HeaderMap>), CollectError<B::Error>>
where
    B: Body,
{
    let mut body = std::pin::pin!(body);
    let mut chunks = VecDeque::new();
    let mut trailers: Option<HeaderMap> = None;
    let mut held = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(CollectError::Body)?;
        match frame.into_data() {
            Ok(mut data) => {
                held += data.remaining();
                if held > limit {
                    return Err(CollectError::TooLarge(limit));
                }
                if data.has_remaining() {
                    chunks.push_back(data.copy_to_bytes(data.remaining()));
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    trailers.get_or_insert_with(HeaderMap::new).extend(t);
                }
            }
        }
    }
    Ok((chunks, trailers))
}

enum CollectError<E> {
    Body(E),
    TooLarge(usize),
}

/// The error of a client's request body that failed while the host
/// collected it: a timeout, or anything else the client's side did.
fn client_body_error(e: BoxError) -> Error {
    let kind = if is_timed_out(&*e) { crate::error::Kind::BodyTimeout } else { crate::error::Kind::Body };
    Error::new(kind, "request body failed").with_source(e)
}

/// The request head as the client sent it, kept to skip a failed filter.
struct Original {
    method: http::Method,
    uri: http::Uri,
    version: http::Version,
    headers: HeaderMap,
    extensions: http::Extensions,
}

impl Original {
    fn of(parts: &http::request::Parts) -> Original {
        Original {
            method: parts.method.clone(),
            uri: parts.uri.clone(),
            version: parts.version,
            headers: parts.headers.clone(),
            extensions: parts.extensions.clone(),
        }
    }

    fn into_request(self, body: RequestBody) -> Request<RequestBody> {
        let mut req = Request::new(body);
        *req.method_mut() = self.method;
        *req.uri_mut() = self.uri;
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers;
        *req.extensions_mut() = self.extensions;
        req
    }
}

impl<F: FailureResponse> Run<F> {
    fn fail<B>(&self, stage: Stage, lease: Option<&mut Lease>, error: Error) -> Response<ResponseBody<B>> {
        if let Some(lease) = lease {
            lease.discard();
        }
        self.plugin.counters().failure(stage, &error);
        let response = self.on_failure.response(&error);
        let (plugin, status) = (self.plugin.name(), response.status().as_u16());
        if error.is_body() || error.is_body_timeout() {
            // The client's side: a body that broke off or stalled (often a client gone).
            tracing::info!(target: "http_wasm", plugin, error = %error, status, "request body failed");
        } else if error.is_body_too_large() || error.is_pool_timeout() || error.is_response_body() {
            tracing::warn!(target: "http_wasm", plugin, error = %error, status, "request refused");
        } else {
            tracing::error!(target: "http_wasm", plugin, error = %error, status, "guest failed");
        }
        let (parts, body) = response.into_parts();
        let mut res = Response::from_parts(parts, ResponseBody::full(body.clone(), None));
        set_content_length(res.headers_mut(), Some(body.len() as u64));
        res
    }

    /// Logs and counts a failure answered by skipping the filter.
    fn skip(&self, stage: Stage, lease: Option<&mut Lease>, error: &Error) {
        if let Some(lease) = lease {
            lease.discard();
        }
        let counters = self.plugin.counters();
        counters.failure(stage, error);
        counters.failed_open();
        tracing::warn!(target: "http_wasm", plugin = self.plugin.name(), error = %error, "guest failed; filter skipped (fail open)");
    }

    /// A failure in `handle_request`: the failure response, or with
    /// [`FailurePolicy::Open`] the client's request handed on untouched
    /// when its body can still be given whole.
    async fn request_failed<S, ResBody>(
        &self,
        mut inner: S,
        mut lease: Lease,
        mut ex: Box<Exchange>,
        original: Option<Original>,
        error: Error,
    ) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<RequestBody>, Response = Response<ResBody>>,
    {
        let Some(original) = original else {
            return Ok(self.fail(Stage::Request, Some(&mut lease), error));
        };
        // Fail open covers the guest's own failures, not the client's body.
        if error.is_body() || error.is_body_timeout() {
            return Ok(self.fail(Stage::Request, Some(&mut lease), error));
        }
        if ex.req_body.consumed {
            tracing::warn!(target: "http_wasm", plugin = self.plugin.name(), "cannot fail open: the guest consumed the request body");
            return Ok(self.fail(Stage::Request, Some(&mut lease), error));
        }
        self.skip(Stage::Request, Some(&mut lease), &error);
        drop(lease);
        ex.restore_request_body();
        let (body, framing) = ex.forward_request_body();
        let mut req = original.into_request(body);
        framing.apply(req.headers_mut());
        Ok(inner.call(req).await?.map(|b| ResponseBody::inner(b, None)))
    }

    /// One request through the guest, as its phases: receive, acquire
    /// (from `loaded`: the plugin's module, or a local replica's),
    /// request phase, forward, response phase, respond.
    pub(crate) async fn exchange<S, ReqBody, ResBody>(
        self,
        loaded: Arc<Loaded>,
        mut inner: S,
        req: Request<ReqBody>,
    ) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<RequestBody>, Response = Response<ResBody>>,
        ReqBody: Body + Send + 'static,
        ReqBody::Data: Send,
        ReqBody::Error: Into<BoxError>,
        ResBody: Body,
        ResBody::Error: std::fmt::Display,
    {
        let counters = self.plugin.counters();
        counters.request();
        let fail_open = self.plugin.failure_policy() == FailurePolicy::Open;
        let features = loaded.module_features;
        let body_limit = loaded.body_limit();
        let (parts, body) = req.into_parts();
        let body = IdleTimeout::new(body, loaded.body_timeout());

        // Receive: a module that buffers requests gets the body collected
        // before it takes an instance, so a slow client never holds one.
        let incoming = match Incoming::receive(body, features, body_limit).await {
            Ok(incoming) => incoming,
            Err(e) => return Ok(self.fail(Stage::Body, None, e)),
        };

        // What has arrived of the body, and whether more is to come.
        let req_body = match incoming.into_state().await {
            Ok(state) => state,
            Err(e) => return Ok(self.fail(Stage::Body, None, e)),
        };
        // A replica whose instances cannot wait for a body (wasmer's, bound
        // to this thread) leaves a request whose body is still arriving to
        // the plugin's own pool, whose instances can.
        let loaded = if req_body.arriving() && !loaded.may_wait_for_body() { self.plugin.loaded() } else { loaded };

        // Acquire. A busy pool is not the guest's failure: 503 whatever the policy.
        let mut lease = match Lease::acquire(loaded).await {
            Ok(lease) => lease,
            Err(e) if fail_open && !e.is_pool_timeout() => {
                self.skip(Stage::Acquire, None, &e);
                let req = Request::from_parts(parts, req_body.into_request_body());
                return Ok(inner.call(req).await?.map(|b| ResponseBody::inner(b, None)));
            }
            Err(e) => return Ok(self.fail(Stage::Acquire, None, e)),
        };

        // Request phase.
        let original = fail_open.then(|| Original::of(&parts));
        let source_addr = source_addr(&parts.extensions);
        let ex = lease.exchange(parts, Some(req_body), source_addr);
        let called = lease.call(Call::Request, ex).outcome().await;
        self.after_request(inner, called, original, fail_open).await
    }

    /// The rest of the exchange once `handle_request` ran: forward and the
    /// response phase, or the guest's own response, or the failure.
    async fn after_request<S, ResBody>(
        self,
        mut inner: S,
        called: LeaseOutcome,
        original: Option<Original>,
        fail_open: bool,
    ) -> Result<Response<ResponseBody<ResBody>>, S::Error>
    where
        S: Service<Request<RequestBody>, Response = Response<ResBody>>,
        ResBody: Body,
        ResBody::Error: std::fmt::Display,
    {
        match self.decide(called) {
            Decided::Answered(response) => Ok(response),
            Decided::Failed { run, lease, ex, error } => run.request_failed(inner, lease, ex, original, error).await,
            Decided::Forward { request, cycle } => match inner.call(request).await {
                Ok(response) => Ok(cycle.respond(response, fail_open).await),
                Err(e) => {
                    if let Some(waiting) = cycle.next_failed() {
                        waiting.await;
                    }
                    Err(e)
                }
            },
        }
    }

    /// What `handle_request` decided (`called`), as the step that follows:
    /// the response (a short circuit, or a failure no policy changes), a
    /// failure for the policy to answer, or the request to forward with
    /// what the response phase needs.
    #[inline]
    fn decide<B>(self, called: LeaseOutcome) -> Decided<F, B> {
        let (mut lease, mut ex, result) = match called {
            Ok(called) => called,
            Err(e) => return Decided::Answered(self.fail(Stage::Request, None, e)),
        };
        let ctx = match decode_ctx(result) {
            Ok(ctx) => ctx,
            Err(e) if e.is_body_too_large() => {
                return Decided::Answered(self.fail(Stage::Request, Some(&mut lease), e));
            }
            Err(error) => return Decided::Failed { run: self, lease, ex, error },
        };
        let counters = self.plugin.counters();
        if !ctx.next {
            counters.short_circuit();
            return Decided::Answered(short_circuit(lease, ex));
        }
        counters.next_call();
        let request = forward(&mut ex, &lease);
        ex.phase = Phase::Response;
        Decided::Forward { request, cycle: Forwarded { run: self, lease, ex, req_ctx: ctx.req_ctx } }
    }

    /// Starts the exchange of `req` with `loaded` (the plugin's module, or
    /// a local replica's). The common case (a request without a body, a
    /// free instance, a filter that fails closed) runs its request phase
    /// here and waits for the next handler in the response future itself,
    /// without an allocation; everything else is the [`Slow`] path, which
    /// the caller boxes with `slow` (`Send` or not, as its service is).
    pub(crate) fn start<S, ReqBody, ResBody, X, R>(
        self,
        loaded: Arc<Loaded>,
        mut inner: S,
        req: Request<ReqBody>,
        slow: impl FnOnce(Slow<F, S, ReqBody>) -> X,
    ) -> ResponseFuture<ResBody, S::Error, S::Future, F, X, R>
    where
        S: Service<Request<RequestBody>, Response = Response<ResBody>>,
        ReqBody: Body,
    {
        let fast = self.plugin.failure_policy() == FailurePolicy::Closed && req.body().is_end_stream();
        let taken = if fast { Lease::try_acquire(loaded) } else { Err(loaded) };
        let lease = match taken {
            Ok(lease) => lease,
            Err(loaded) => return ResponseFuture::boxed(slow(Slow::Exchange { run: self, loaded, inner, req })),
        };
        let counters = self.plugin.counters();
        counters.request();
        let mut lease = match lease {
            Ok(lease) => lease,
            Err(e) => return ResponseFuture::ready(self.fail(Stage::Acquire, None, e)),
        };

        // Request phase: with no body to wait for, the backend usually runs
        // it at once; else the rest of the exchange waits for it, boxed.
        let (parts, _empty) = req.into_parts();
        let source_addr = source_addr(&parts.extensions);
        let ex = lease.exchange(parts, None, source_addr);
        let called = match lease.call(Call::Request, ex) {
            LeaseCalled::Ready(called) => called,
            LeaseCalled::Waiting(waiting) => {
                return ResponseFuture::boxed(slow(Slow::Waiting { run: self, inner, waiting }));
            }
        };
        match self.decide(called) {
            Decided::Answered(response) => ResponseFuture::ready(response),
            Decided::Failed { run, mut lease, error, .. } => {
                ResponseFuture::ready(run.fail(Stage::Request, Some(&mut lease), error))
            }
            // The response future waits for the next handler.
            Decided::Forward { request, cycle } => ResponseFuture::forwarding(inner.call(request), cycle),
        }
    }

    /// A failure in `handle_response`: the failure response, or with
    /// [`FailurePolicy::Open`] the next handler's response as it came, when
    /// its body is whole.
    fn response_failed<B>(
        &self,
        mut lease: Lease,
        mut ex: Box<Exchange>,
        answered: Option<Answered>,
        passthrough: Option<B>,
        body_failed: bool,
        error: Error,
    ) -> Response<ResponseBody<B>> {
        let Some(answered) = answered else {
            return self.fail(Stage::Response, Some(&mut lease), error);
        };
        let body = match passthrough {
            Some(inner) => ResponseBody::inner(inner, None),
            None if !body_failed && !ex.resp_body.consumed => {
                ex.resp_body.written = None;
                ResponseBody::buffered(ex.resp_body.take_chunks(), answered.trailers)
            }
            _ => return self.fail(Stage::Response, Some(&mut lease), error),
        };
        self.skip(Stage::Response, Some(&mut lease), &error);
        let mut res = Response::new(body);
        *res.status_mut() = answered.status;
        *res.version_mut() = answered.version;
        *res.headers_mut() = answered.headers;
        res
    }
}

/// The request body as it arrives: collected whole for a module that
/// buffers requests, else still streaming.
enum Incoming<B> {
    Collected(VecDeque<Bytes>, Option<HeaderMap>),
    Streaming(B),
}

impl<B> Incoming<B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    /// Collects `body` when the module buffers requests (413 past `limit`).
    async fn receive(body: B, features: http_wasm_abi::Features, limit: usize) -> Result<Incoming<B>, Error> {
        if body.is_end_stream() || !features.has(Feature::BufferRequest) {
            return Ok(Incoming::Streaming(body));
        }
        match collect(body, limit).await {
            Ok((chunks, trailers)) => Ok(Incoming::Collected(chunks, trailers)),
            Err(CollectError::TooLarge(limit)) => Err(crate::engine::call_error(
                "request body",
                Some(&HostError::BodyTooLarge { limit }),
                format!("over {limit} bytes"),
            )),
            Err(CollectError::Body(e)) => Err(client_body_error(e.into())),
        }
    }

    /// The body as the guest reads it, with what has already arrived.
    async fn into_state(self) -> Result<BodyState, Error> {
        let body = match self {
            Incoming::Collected(chunks, trailers) => return Ok(BodyState::complete(chunks, trailers)),
            Incoming::Streaming(body) if body.is_end_stream() => return Ok(BodyState::default()),
            Incoming::Streaming(body) => body,
        };
        let declared = body.size_hint().exact();
        let mut state = BodyState::streaming(box_body(body), declared);
        let mut prefetched = state.prefetch(PREFETCH_LIMIT);
        if matches!(prefetched, Ok(false)) && state.held < PREFETCH_LIMIT {
            // One turn of the executor, then what has come since: hyper
            // decodes an HTTP/1 body in the task that polls this future, so
            // the end of a body already received (a terminating chunk)
            // shows only after it ran.
            tokio::task::yield_now().await;
            prefetched = state.prefetch(PREFETCH_LIMIT);
        }
        match prefetched {
            Ok(_) => Ok(state),
            Err(e) => Err(crate::engine::call_error("request body", Some(&e), String::from("failed"))),
        }
    }
}

/// What `handle_request` returned, decoded.
fn decode_ctx(result: Result<i64, Error>) -> Result<CtxNext, Error> {
    result.and_then(|raw| {
        CtxNext::decode(raw).map_err(|v| Error::new(crate::error::Kind::Guest, format!("handle_request returned {v}")))
    })
}

/// The client's address from the request's extensions.
fn source_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions.get::<SourceAddr>().map(|s| s.0).or_else(|| extensions.get::<SocketAddr>().copied())
}

/// The step after `handle_request` ([`Run::decide`]).
#[expect(clippy::large_enum_variant, reason = "moved once, from `decide` to its caller")]
enum Decided<F, B> {
    /// The response: a short circuit, or a failure no policy changes.
    Answered(Response<ResponseBody<B>>),
    /// The guest failed: the failure policy answers.
    Failed { run: Run<F>, lease: Lease, ex: Box<Exchange>, error: Error },
    /// The request for the next handler, and what the response phase needs.
    Forward { request: Request<RequestBody>, cycle: Forwarded<F> },
}

/// A request the guest passed to the next handler: what its response
/// phase needs once the next handler has answered.
pub(crate) struct Forwarded<F> {
    run: Run<F>,
    lease: Lease,
    ex: Box<Exchange>,
    req_ctx: u32,
}

impl<F: FailureResponse> Forwarded<F> {
    /// The next handler failed: the guest still gets `handle_response`
    /// (with `is_error`), and the error goes to the caller; `Some` with
    /// the call to await when it did not run at once.
    pub(crate) fn next_failed(self) -> Option<impl Future<Output = ()> + Send + 'static> {
        let Forwarded { run, lease, ex, req_ctx } = self;
        let failed = move |called: LeaseOutcome| match called {
            Ok((mut lease, ex, Ok(_))) => lease.recycle(ex),
            Ok((mut lease, _, Err(e))) => drop(run.fail::<()>(Stage::Response, Some(&mut lease), e)),
            Err(e) => drop(run.fail::<()>(Stage::Response, None, e)),
        };
        match lease.call(Call::Response { req_ctx, is_error: true }, ex) {
            LeaseCalled::Ready(called) => {
                failed(called);
                None
            }
            LeaseCalled::Waiting(waiting) => Some(async move { failed(waiting.await) }),
        }
    }

    /// Response phase and respond, for the next handler's `response`;
    /// `fail_open` keeps what it answered to skip a failed filter.
    async fn respond<B>(mut self, response: Response<B>, fail_open: bool) -> Response<ResponseBody<B>>
    where
        B: Body,
        B::Error: std::fmt::Display,
    {
        let (parts, body) = response.into_parts();
        let head = self.merge_head(parts, fail_open);
        let (passthrough, is_error) = take_response_body(&mut self.ex, body, self.lease.body_limit()).await;
        match self.settled(head, passthrough, is_error) {
            Settled::Now(response) => response,
            Settled::Waiting(later) => later.await,
        }
    }

    /// [`Forwarded::respond`] without waiting, for a filter that fails
    /// closed; `Err` with the rest to await when the guest buffers the
    /// response body or its `handle_response` did not run at once.
    #[expect(
        clippy::result_large_err,
        reason = "no larger than the response itself; boxed by the caller only when it waits"
    )]
    pub(crate) fn respond_now<B>(self, response: Response<B>) -> Result<Response<ResponseBody<B>>, Later<B, F>>
    where
        B: Body,
        B::Error: std::fmt::Display,
    {
        if self.ex.has(Feature::BufferResponse) {
            return Err(Later::Buffer(self, response));
        }
        // What `respond` does for a body that passes through, its steps
        // inline: the guest's trailers stay where they are (they follow the
        // next handler's as the body passes), and nothing is kept to fail open.
        let Forwarded { run, lease, mut ex, req_ctx } = self;
        let (parts, body) = response.into_parts();
        merge_head(&mut ex, parts);
        let passthrough = pass_response_body(&mut ex, body);
        match lease.call(Call::Response { req_ctx, is_error: false }, ex) {
            LeaseCalled::Ready(called) => Ok(run.responded(called, None, passthrough, None)),
            LeaseCalled::Waiting(waiting) => Err(Later::Waiting { run, waiting, passthrough }),
        }
    }

    /// Merges the next handler's head into the exchange (spec §2.1).
    fn merge_head(&mut self, parts: http::response::Parts, fail_open: bool) -> MergedHead {
        let answered = fail_open.then(|| Answered {
            status: parts.status,
            version: parts.version,
            headers: parts.headers.clone(),
            trailers: None,
        });
        merge_head(&mut self.ex, parts);
        MergedHead { answered, guest_trailers: self.ex.resp_body.trailers.take() }
    }

    /// `handle_response` once the next handler's body is settled (passed
    /// through, buffered, or failed with `is_error`), then the response.
    fn settled<B: Body>(
        self,
        head: MergedHead,
        passthrough: Option<B>,
        is_error: Option<String>,
    ) -> Settled<impl Future<Output = Response<ResponseBody<B>>>, B> {
        let Forwarded { run, lease, mut ex, req_ctx } = self;
        let answered = head.answered.map(|a| Answered { trailers: ex.resp_body.trailers.clone(), ..a });
        // Trailers the guest set before next go after the next handler's.
        if let Some(t) = head.guest_trailers {
            let mine = ex.resp_body.trailers.get_or_insert_with(HeaderMap::new);
            for (k, v) in t.iter() {
                mine.append(k.clone(), v.clone());
            }
        }
        let call = Call::Response { req_ctx, is_error: is_error.is_some() };
        match lease.call(call, ex) {
            LeaseCalled::Ready(called) => Settled::Now(run.responded(called, answered, passthrough, is_error)),
            LeaseCalled::Waiting(waiting) => {
                Settled::Waiting(async move { run.responded(waiting.await, answered, passthrough, is_error) })
            }
        }
    }
}

impl<F: FailureResponse> Run<F> {
    /// The response once `handle_response` ran (`called`), from the next
    /// handler's body (`passthrough`, or what the exchange buffered) or,
    /// when the guest failed, as the failure policy says.
    fn responded<B: Body>(
        &self,
        called: LeaseOutcome,
        answered: Option<Answered>,
        passthrough: Option<B>,
        is_error: Option<String>,
    ) -> Response<ResponseBody<B>> {
        let (lease, ex, result) = match called {
            Ok(called) => called,
            Err(e) => return self.fail(Stage::Response, None, e),
        };
        if let Err(e) = result {
            return self.response_failed(lease, ex, answered, passthrough, is_error.is_some(), e);
        }
        if let Some(why) = is_error {
            return self.fail(Stage::Response, None, Error::new(crate::error::Kind::ResponseBody, why));
        }
        finish(lease, ex, passthrough)
    }
}

/// The response phase's answer: at once when `handle_response` ran inline.
#[expect(clippy::large_enum_variant, reason = "the response at once is the common case: not boxed")]
enum Settled<L, B> {
    Now(Response<ResponseBody<B>>),
    Waiting(L),
}

/// The rest of a response phase that waits, for the response future to
/// box ([`Forwarded::respond_now`]).
pub(crate) enum Later<B, F> {
    /// The guest buffers the response: all of the response phase.
    Buffer(Forwarded<F>, Response<B>),
    /// `handle_response` did not answer at once.
    Waiting { run: Run<F>, waiting: LeaseCall, passthrough: Option<B> },
}

impl<B, F: FailureResponse> Later<B, F>
where
    B: Body,
    B::Error: std::fmt::Display,
{
    /// Runs the rest of the response phase.
    pub(crate) async fn run(self) -> Response<ResponseBody<B>> {
        match self {
            Later::Buffer(cycle, response) => cycle.respond(response, false).await,
            Later::Waiting { run, waiting, passthrough } => run.responded(waiting.await, None, passthrough, None),
        }
    }
}

/// The request for the next handler; the exchange keeps what the guest may
/// still read of it in `handle_response` (URI and headers move otherwise).
#[inline]
fn forward(ex: &mut Exchange, lease: &Lease) -> Request<RequestBody> {
    let (body, framing) = ex.forward_request();
    let mut fwd = Request::new(body);
    *fwd.method_mut() = ex.request.method.clone();
    *fwd.uri_mut() = if lease.reads_uri() { ex.request.uri.clone() } else { std::mem::take(&mut ex.request.uri) };
    *fwd.version_mut() = ex.request.version;
    *fwd.headers_mut() =
        if lease.reads_headers() { ex.request.headers.clone() } else { std::mem::take(&mut ex.request.headers) };
    *fwd.extensions_mut() = std::mem::take(&mut ex.request.extensions);
    framing.apply(fwd.headers_mut());
    fwd
}

/// What the response phase keeps from the next handler's head.
struct MergedHead {
    /// What the next handler answered, to skip a failed filter (fail-open only).
    answered: Option<Answered>,
    /// Trailers the guest set before calling next.
    guest_trailers: Option<HeaderMap>,
}

/// The next handler's response head, kept to skip a failed filter.
struct Answered {
    status: StatusCode,
    version: http::Version,
    headers: HeaderMap,
    trailers: Option<HeaderMap>,
}

/// Merges the next handler's status and headers with what the guest wrote
/// before next (spec §2.1): the guest's status stands unless it is 200
/// and the next handler's is not; the next handler's headers are added.
fn merge_head(ex: &mut Exchange, parts: http::response::Parts) {
    if !(ex.status_set && parts.status == StatusCode::OK) {
        ex.status = parts.status;
    }
    if ex.resp_headers.is_empty() {
        ex.resp_headers = parts.headers;
        return;
    }
    let mut last = None;
    for (name, value) in parts.headers {
        if let Some(n) = name {
            last = Some(n);
        }
        if let Some(n) = &last {
            ex.resp_headers.append(n.clone(), value);
        }
    }
}

/// The next handler's response body: buffered for a guest that reads it
/// (with why it failed, if it did), else passed through unless the guest
/// wrote a body and the next handler's is empty.
async fn take_response_body<B>(ex: &mut Exchange, body: B, limit: usize) -> (Option<B>, Option<String>)
where
    B: Body,
    B::Error: std::fmt::Display,
{
    if ex.has(Feature::BufferResponse) {
        let failed = match collect(body, limit).await {
            Ok((chunks, trailers)) => {
                let written = if chunks.is_empty() { ex.resp_body.written.take() } else { None };
                ex.resp_body = BodyState::complete(chunks, trailers);
                ex.resp_body.written = written;
                None
            }
            Err(CollectError::Body(e)) => Some(format!("the next handler's response body failed: {e}")),
            Err(CollectError::TooLarge(limit)) => {
                Some(format!("the next handler's response body is over the {limit}-byte buffer limit"))
            }
        };
        return (None, failed);
    }
    (pass_response_body(ex, body), None)
}

/// The next handler's response body for a guest that does not buffer it:
/// passed through, unless the guest wrote a body and this one is empty.
fn pass_response_body<B: Body>(ex: &mut Exchange, body: B) -> Option<B> {
    if body.is_end_stream() && ex.resp_body.written.is_some() {
        // The guest's body stands when the next handler wrote none.
        return None;
    }
    ex.resp_body.written = None;
    Some(body)
}

/// A response that carries no body (RFC 9110 §6.4.1): to HEAD, or with
/// status 1xx, 204 or 304. A body the guest wrote for it is dropped and the
/// headers' framing left as they are (a HEAD response's `content-length`
/// describes the body a GET would get).
fn bodiless(ex: &Exchange) -> bool {
    ex.request.method == http::Method::HEAD
        || ex.status.is_informational()
        || ex.status == StatusCode::NO_CONTENT
        || ex.status == StatusCode::NOT_MODIFIED
}

/// The response of a guest that did not call next; the exchange's box
/// goes back with the lease.
fn short_circuit<B>(mut lease: Lease, mut ex: Box<Exchange>) -> Response<ResponseBody<B>> {
    let written = ex.resp_body.take_written().filter(|_| !bodiless(&ex));
    let trailers = ex.resp_body.trailers.take();
    let has_trailers = trailers.is_some();
    let mut res = Response::new(match written.clone() {
        Some(w) => ResponseBody::full(w, trailers),
        None => ResponseBody::buffered(VecDeque::new(), trailers),
    });
    *res.status_mut() = ex.status;
    *res.headers_mut() = std::mem::take(&mut ex.resp_headers);
    let framing = match written {
        Some(w) => Framing::of(w.len() as u64, has_trailers),
        None if has_trailers => Framing::Unknown,
        None if ex.resp_framing_written => Framing::Length(0),
        None => Framing::Keep,
    };
    frame_response(&ex, framing, res.headers_mut());
    lease.recycle(ex);
    res
}

/// Applies `framing` to a response's headers. A response that carries no
/// body keeps the `content-length` it has when it may describe another
/// representation (HEAD, 304) and loses it when it may not (1xx, 204); none
/// has `transfer-encoding` once the guest wrote framing headers.
fn frame_response(ex: &Exchange, framing: Framing, headers: &mut HeaderMap) {
    if bodiless(ex) && ex.resp_framing_written {
        headers.remove(http::header::TRANSFER_ENCODING);
        if ex.status.is_informational() || ex.status == StatusCode::NO_CONTENT {
            headers.remove(http::header::CONTENT_LENGTH);
        }
        return;
    }
    framing.apply(headers);
}

/// The response after `handle_response`; the exchange's box goes back
/// with the lease.
fn finish<B: Body>(mut lease: Lease, mut ex: Box<Exchange>, passthrough: Option<B>) -> Response<ResponseBody<B>> {
    let trailers = ex.resp_body.trailers.take();
    let has_trailers = trailers.is_some();
    let written = ex.resp_body.take_written().filter(|_| !bodiless(&ex));
    let framing = match (&passthrough, &written) {
        (None, Some(w)) => Framing::of(w.len() as u64, has_trailers),
        _ if has_trailers => Framing::Unknown,
        _ => Framing::Keep,
    };
    // The body built where the response holds it (a body is large to move).
    let mut res = Response::new(match (passthrough, written) {
        (Some(inner), _) => ResponseBody::inner(inner, trailers),
        (None, Some(w)) => ResponseBody::full(w, trailers),
        (None, None) => ResponseBody::buffered(ex.resp_body.take_chunks(), trailers),
    });
    // Framing headers the guest wrote give way to the body's own length.
    let framing = match framing {
        Framing::Keep if ex.resp_framing_written => Framing::of_hint(res.body().size_hint()),
        framing => framing,
    };
    *res.status_mut() = ex.status;
    *res.headers_mut() = std::mem::take(&mut ex.resp_headers);
    frame_response(&ex, framing, res.headers_mut());
    lease.recycle(ex);
    res
}
