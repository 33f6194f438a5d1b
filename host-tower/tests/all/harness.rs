//! Shared test scaffolding: WAT guests, an echo inner service, requests.

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use tower::ServiceExt;
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin, PluginBuilder, RequestBody};

/// Every host import (see [`tower_http_wasm::testing::wat_imports`]), a
/// memory, constants and assertion helpers; `body`
/// defines `handle_request` and `handle_response`.
pub fn module(body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module
{imports}  (memory (export "memory") 40)
  (func $assert (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  ;; respond with the bytes at (ptr, len) as header x-out
  (func $out (param i32 i32)
    (call $set_header_value (i32.const 1) (i32.const 900) (i32.const 5) (local.get 0) (local.get 1)))
  (data (i32.const 900) "x-out")
{body}
)"#,
        imports = tower_http_wasm::testing::wat_imports()
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{text}"))
}

/// A guest module's `handle_response` that does nothing.
pub const NOOP_RESPONSE: &str = r#"(func (export "handle_response") (param i32 i32))"#;

pub fn builder(engine: Engine) -> PluginBuilder {
    Plugin::builder().engine(engine)
}

pub fn load(engine: Engine, wasm: &[u8]) -> Plugin {
    builder(engine).build(wasm).unwrap_or_else(|e| panic!("[{engine}] load failed: {e}"))
}

/// The inner service: echoes the request back.
///
/// Status 200; headers `x-echo-method`, `x-echo-uri`, `x-echo-len` (body
/// bytes received), `x-echo-cl` (the content-length it saw, or `none`),
/// every request header as `x-echo-h-<name>`; body: the request body.
pub async fn echo(req: Request<RequestBody>) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let collected = body.collect().await.expect("request body");
    let trailers = collected.trailers().cloned();
    let bytes = collected.to_bytes();
    let mut res = Response::builder()
        .header("x-echo-method", parts.method.as_str())
        .header("x-echo-uri", parts.uri.to_string())
        .header("x-echo-len", bytes.len().to_string())
        .header(
            "x-echo-cl",
            parts.headers.get("content-length").map_or("none".to_string(), |v| v.to_str().unwrap().to_string()),
        );
    for (name, value) in parts.headers.iter() {
        res = res.header(format!("x-echo-h-{name}"), value);
    }
    if let Some(t) = trailers {
        for (name, value) in t.iter() {
            res = res.header(format!("x-echo-t-{name}"), value);
        }
    }
    Ok(res.body(Full::new(bytes)).unwrap())
}

/// What a test reads of a response.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub trailers: Option<http::HeaderMap>,
}

impl Got {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or_else(|| panic!("no header {name} in {:?}", self.headers))
    }
}

/// Sends `req` through `plugin` in front of [`echo`].
pub async fn send<B>(plugin: &Plugin, req: Request<B>) -> Got
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_http_wasm::BoxError>,
{
    let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service_fn(echo);
    let res = svc.oneshot(req).await.unwrap();
    let (parts, body) = res.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Got { status: parts.status.as_u16(), headers: parts.headers, body: collected.to_bytes(), trailers }
}

pub fn get(uri: &str) -> Request<Full<Bytes>> {
    Request::get(uri).body(Full::new(Bytes::new())).unwrap()
}

/// A POST with its `content-length`, as a client sends it.
pub fn post(uri: &str, body: impl Into<Bytes>) -> Request<Full<Bytes>> {
    let body = body.into();
    Request::post(uri).header("content-length", body.len()).body(Full::new(body)).unwrap()
}

/// A body made of the given frames, yielded one per poll.
pub struct Frames(std::collections::VecDeque<http_body::Frame<Bytes>>);

impl Frames {
    pub fn new(frames: Vec<http_body::Frame<Bytes>>) -> Frames {
        Frames(frames.into())
    }
}

impl http_body::Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        std::task::Poll::Ready(self.0.pop_front().map(Ok))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
}

/// An mpsc receiver as a stream of frames.
pub fn stream_of(
    rx: tokio::sync::mpsc::Receiver<Result<http_body::Frame<Bytes>, std::convert::Infallible>>,
) -> impl futures_core::Stream<Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>> {
    struct S(tokio::sync::mpsc::Receiver<Result<http_body::Frame<Bytes>, std::convert::Infallible>>);
    impl futures_core::Stream for S {
        type Item = Result<http_body::Frame<Bytes>, std::convert::Infallible>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }
    S(rx)
}
