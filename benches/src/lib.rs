//! Shared pieces of the benchmarks: guests, the native baselines, and a
//! driver that runs one request through a service.
//!
//! Every wasm figure is measured beside a native tower middleware doing the
//! same work, in the same run (`cargo bench -p http-wasm-benches`).

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service, ServiceExt};

/// A no-op guest: answers without next (`next == 0`) or calls next.
pub fn noop_guest(next: bool) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (memory (export "memory") 1)
  (func (export "handle_request") (result i64) (i64.const {}))
  (func (export "handle_response") (param i32 i32)))"#,
        next as i32
    ))
    .expect("valid WAT")
}

/// The inner service: an empty 200.
pub async fn empty_ok<B>(_req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::default()))
}

/// The native baseline of "a middleware that calls next": a tower layer
/// that passes the request through, as a guest returning next does.
#[derive(Clone, Copy, Debug, Default)]
pub struct PassThroughLayer;

impl<S> Layer<S> for PassThroughLayer {
    type Service = PassThrough<S>;
    fn layer(&self, inner: S) -> PassThrough<S> {
        PassThrough(inner)
    }
}

/// See [`PassThroughLayer`].
#[derive(Clone, Debug)]
pub struct PassThrough<S>(S);

impl<S, R> Service<R> for PassThrough<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }
    fn call(&mut self, req: R) -> S::Future {
        self.0.call(req)
    }
}

/// The native baseline of "a middleware that answers without next".
#[derive(Clone, Copy, Debug, Default)]
pub struct Answer;

impl<B> Service<Request<B>> for Answer {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
    fn call(&mut self, _: Request<B>) -> Self::Future {
        Box::pin(async { Ok(Response::new(Full::default())) })
    }
}

/// The inner service of the filter benchmarks: answers 200 with the request
/// body (empty for a GET), as an echo upstream would.
pub async fn echo<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let body = req.into_body().collect().await.expect("request body").to_bytes();
    Ok(Response::new(Full::new(body)))
}

/// Sends one GET through `svc` and drains the response body.
pub fn one_request<S, B>(rt: &tokio::runtime::Runtime, svc: &S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    send(rt, svc, Request::get("/").body(Full::default()).expect("request"));
}

/// Sends `req` through `svc` and drains the response body; returns the
/// status (for the benchmarks' own sanity checks).
pub fn send<S, B>(rt: &tokio::runtime::Runtime, svc: &S, req: Request<Full<Bytes>>) -> http::StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    rt.block_on(send_async(svc.clone(), req))
}

/// [`send`] inside a runtime.
pub async fn send_async<S, B>(svc: S, req: Request<Full<Bytes>>) -> http::StatusCode
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let res = svc.oneshot(req).await.expect("ok");
    let status = res.status();
    res.into_body().collect().await.expect("body");
    status
}

/// The native baseline of one host-function pattern: a tower middleware
/// that does `work` on the request (converting the body as the host does),
/// then calls next.
#[derive(Clone, Debug)]
pub struct Native<S> {
    inner: S,
    work: fn(&mut Request<tower_http_wasm::RequestBody>),
}

impl<S> Native<S> {
    /// Wraps `inner`.
    pub fn new(inner: S, work: fn(&mut Request<tower_http_wasm::RequestBody>)) -> Self {
        Native { inner, work }
    }
}

impl<S, B> Service<Request<B>> for Native<S>
where
    S: Service<Request<tower_http_wasm::RequestBody>> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_http_wasm::BoxError>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = self.inner.clone();
        let work = self.work;
        Box::pin(async move {
            // Collect the body as a buffering host does, then hand it on.
            let (parts, body) = req.into_parts();
            let bytes = body.collect().await.map(|c| c.to_bytes()).unwrap_or_default();
            let mut req = Request::from_parts(parts, tower_http_wasm::RequestBody::from(bytes));
            (work)(&mut req);
            inner.call(req).await
        })
    }
}
