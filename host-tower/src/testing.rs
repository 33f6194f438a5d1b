//! Test a filter with plain `cargo test`: real host, real engine, no server.
//!
//! ```no_run
//! use tower_http_wasm::testing::TestHost;
//!
//! let wasm = std::fs::read("target/guests/wasm32-unknown-unknown/guest/my_filter.wasm").unwrap();
//! let host = TestHost::builder().config(r#"{"header":"x-api-key"}"#).build(&wasm).unwrap();
//!
//! host.get("/").send().assert_status(401).assert_next_not_called();
//! host.get("/").header("x-api-key", "0123456789abcdef").send().assert_status(200).assert_next_called();
//! ```
//!
//! Each request goes through the [`HttpWasmLayer`] in
//! front of a recording next handler, which answers `200` with an empty
//! body unless [`TestHost::respond_with`] says otherwise. Requests run on a
//! private single-threaded tokio runtime, so tests need no async setup.

use crate::{HttpWasmLayer, Plugin, PluginBuilder, RequestBody};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex};
use tower_service::Service;

/// What the next handler received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The method.
    pub method: Method,
    /// The request-target (path and query).
    pub uri: String,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The trailers, if any.
    pub trailers: Option<HeaderMap>,
}

type Responder = Arc<dyn Fn(&Received) -> Response<Bytes> + Send + Sync>;

/// Options of a [`TestHost`]: the [`PluginBuilder`] knobs that tests need.
#[derive(Clone, Debug, Default)]
pub struct TestHostBuilder {
    plugin: PluginBuilder,
}

impl TestHostBuilder {
    /// The guest's config bytes. Default: empty.
    pub fn config(mut self, config: impl Into<Bytes>) -> Self {
        self.plugin = self.plugin.config(config);
        self
    }

    /// The engine. Default: [`Engine::default`](crate::Engine::default).
    pub fn engine(mut self, engine: crate::Engine) -> Self {
        self.plugin = self.plugin.engine(engine);
        self
    }

    /// Any other plugin option.
    pub fn plugin(mut self, f: impl FnOnce(PluginBuilder) -> PluginBuilder) -> Self {
        self.plugin = f(self.plugin);
        self
    }

    /// Loads the guest.
    pub fn build(self, wasm: impl AsRef<[u8]>) -> Result<TestHost, crate::Error> {
        let plugin = self.plugin.build(wasm)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| crate::Error::new(crate::error::Kind::Config, "test runtime").with_source(e))?;
        Ok(TestHost { plugin, runtime: Arc::new(runtime), responder: Arc::new(|_| Response::new(Bytes::new())) })
    }
}

/// A guest loaded in the real host, with a recording next handler.
#[derive(Clone)]
pub struct TestHost {
    plugin: Plugin,
    runtime: Arc<tokio::runtime::Runtime>,
    responder: Responder,
}

impl fmt::Debug for TestHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestHost").field("plugin", &self.plugin).finish_non_exhaustive()
    }
}

impl TestHost {
    /// Options with their defaults.
    pub fn builder() -> TestHostBuilder {
        TestHostBuilder::default()
    }

    /// Loads `wasm` with default options.
    pub fn new(wasm: impl AsRef<[u8]>) -> Result<TestHost, crate::Error> {
        TestHost::builder().build(wasm)
    }

    /// Makes the next handler answer with `f(received request)`.
    pub fn respond_with(mut self, f: impl Fn(&Received) -> Response<Bytes> + Send + Sync + 'static) -> Self {
        self.responder = Arc::new(f);
        self
    }

    /// The engine running the guest.
    pub fn engine(&self) -> crate::Engine {
        self.plugin.engine()
    }

    /// The loaded plugin.
    pub fn plugin(&self) -> &Plugin {
        &self.plugin
    }

    /// A request with `method` and `uri`.
    pub fn request(&self, method: Method, uri: &str) -> TestRequest<'_> {
        TestRequest { host: self, builder: Request::builder().method(method).uri(uri), body: Bytes::new() }
    }

    /// A GET request.
    pub fn get(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::GET, uri)
    }

    /// A POST request.
    pub fn post(&self, uri: &str) -> TestRequest<'_> {
        self.request(Method::POST, uri)
    }
}

/// A request being built; [`TestRequest::send`] runs it.
#[derive(Debug)]
pub struct TestRequest<'a> {
    host: &'a TestHost,
    builder: http::request::Builder,
    body: Bytes,
}

impl TestRequest<'_> {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.builder = self.builder.header(name, value.as_ref());
        self
    }

    /// Sets the body (and its `content-length`).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.builder = self.builder.header(http::header::CONTENT_LENGTH, self.body.len());
        self
    }

    /// Runs the request through the guest and the next handler.
    ///
    /// # Panics
    ///
    /// When the request cannot be built (an invalid header, say): this is a
    /// test helper, and a panic is the clearest test failure.
    pub fn send(self) -> TestResponse {
        let req = self.builder.body(Full::new(self.body)).expect("valid test request");
        let received: Arc<Mutex<Option<Received>>> = Arc::default();
        let slot = received.clone();
        let responder = self.host.responder.clone();
        let next = tower_service_fn(move |req: Request<RequestBody>| {
            let slot = slot.clone();
            let responder = responder.clone();
            async move {
                let (parts, body) = req.into_parts();
                let collected = body.collect().await.map_err(|e| e.to_string());
                let (body, trailers) = match collected {
                    Ok(c) => {
                        let t = c.trailers().cloned();
                        (c.to_bytes(), t)
                    }
                    Err(_) => (Bytes::new(), None),
                };
                let r = Received {
                    method: parts.method,
                    uri: parts.uri.path_and_query().map_or("/".into(), |p| p.to_string()),
                    headers: parts.headers,
                    body,
                    trailers,
                };
                let res = responder(&r).map(Full::new);
                *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                Ok::<_, Infallible>(res)
            }
        });
        let mut svc = tower_layer::Layer::layer(&HttpWasmLayer::new(self.host.plugin.clone()), next);
        let (status, headers, body, trailers) = self.host.runtime.block_on(async move {
            std::future::poll_fn(|cx| Service::<Request<Full<Bytes>>>::poll_ready(&mut svc, cx))
                .await
                .expect("infallible");
            let res = svc.call(req).await.expect("infallible");
            let (parts, body) = res.into_parts();
            let c = body.collect().await.expect("infallible");
            let t = c.trailers().cloned();
            (parts.status, parts.headers, c.to_bytes(), t)
        });
        let next = received.lock().unwrap_or_else(|e| e.into_inner()).take();
        TestResponse { status, headers, body, trailers, next }
    }
}

/// A `tower::service_fn` without depending on `tower`.
fn tower_service_fn<F>(f: F) -> ServiceFn<F> {
    ServiceFn(f)
}

#[derive(Clone)]
struct ServiceFn<F>(F);

impl<F, Fut, Req, R, E> Service<Req> for ServiceFn<F>
where
    F: FnMut(Req) -> Fut,
    Fut: std::future::Future<Output = Result<R, E>>,
{
    type Response = R;
    type Error = E;
    type Future = Fut;

    fn poll_ready(&mut self, _: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), E>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Fut {
        (self.0)(req)
    }
}

/// What the client received, and what the next handler saw.
#[derive(Debug)]
pub struct TestResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
    /// The trailers, if any.
    pub trailers: Option<HeaderMap>,
    /// The request the next handler received, if the guest called next.
    pub next: Option<Received>,
}

impl TestResponse {
    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the status.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "status; body: {:?}", self.text());
        self
    }

    /// Asserts a response header's value.
    #[track_caller]
    pub fn assert_header(&self, name: &str, value: &str) -> &Self {
        assert_eq!(self.header(name), Some(value), "response header {name}");
        self
    }

    /// Asserts the body.
    #[track_caller]
    pub fn assert_body(&self, body: impl AsRef<[u8]>) -> &Self {
        assert_eq!(self.body.as_ref(), body.as_ref(), "body {:?}", self.text());
        self
    }

    /// Asserts the guest called next.
    #[track_caller]
    pub fn assert_next_called(&self) -> &Self {
        assert!(self.next.is_some(), "the guest did not call next (status {})", self.status);
        self
    }

    /// Asserts the guest answered without next.
    #[track_caller]
    pub fn assert_next_not_called(&self) -> &Self {
        assert!(self.next.is_none(), "the guest called next");
        self
    }

    /// The request the next handler received.
    ///
    /// # Panics
    ///
    /// When the guest did not call next.
    #[track_caller]
    pub fn received(&self) -> &Received {
        self.next.as_ref().expect("the guest did not call next")
    }
}

/// The imports of all 19 host functions as WAT, one line each, every
/// function named `$<its name>` (`$get_header_values`...): the head of a
/// hand-written test guest.
///
/// ```
/// let wat = format!(
///     r#"(module {}
///   (memory (export "memory") 1)
///   (func (export "handle_request") (result i64) (i64.const 1))
///   (func (export "handle_response") (param i32 i32)))"#,
///     tower_http_wasm::testing::wat_imports()
/// );
/// assert!(wat.contains(r#"(import "http_handler" "get_uri" (func $get_uri (param i32 i32) (result i32)))"#));
/// ```
pub fn wat_imports() -> String {
    use http_wasm_abi::{HostFunction, MODULE, ValType};
    let types =
        |ts: &[ValType]| ts.iter().map(|t| if *t == ValType::I32 { " i32" } else { " i64" }).collect::<String>();
    HostFunction::ALL
        .iter()
        .map(|f| {
            let sig = f.signature();
            let params = if sig.params.is_empty() { String::new() } else { format!(" (param{})", types(sig.params)) };
            let results =
                if sig.results.is_empty() { String::new() } else { format!(" (result{})", types(sig.results)) };
            format!("  (import \"{MODULE}\" \"{name}\" (func ${name}{params}{results}))\n", name = f.name())
        })
        .collect()
}

/// Stamps out one test per engine of this build, each with the engine in
/// its name, so one engine's failure never hides the other's and `cargo test
/// wasmer` runs the wasmer half.
///
/// `per_engine! { #[test] fn name(engine) { ... } }` becomes a module
/// `name` with the tests `name::wasmtime` and `name::wasmer`, each running
/// the body with `engine` bound to that [`Engine`](crate::Engine). Any
/// attributes are kept (`#[tokio::test]` with `async fn`, `#[ignore]`...),
/// and so is a return type. The body sees the enclosing module's items
/// (`use super::*`). An engine missing from this build gets no test.
///
/// ```
/// tower_http_wasm::per_engine! {
///     #[test]
///     fn loads_a_noop_guest(engine) {
///         let wasm = wat::parse_str(r#"(module (memory (export "memory") 1)
///             (func (export "handle_request") (result i64) (i64.const 1))
///             (func (export "handle_response") (param i32 i32)))"#).unwrap();
///         tower_http_wasm::Plugin::builder().engine(engine).build(&wasm).unwrap();
///     }
/// }
/// ```
#[allow(clippy::test_attr_in_doctest)]
#[macro_export]
macro_rules! per_engine {
    () => {};
    // One test, `$($kw)*` being `async` or nothing.
    (@stamp [$(#[$attr:meta])*] [$($kw:tt)*] $name:ident $engine:ident [$($ret:tt)*] $body:block) => {
        #[allow(non_snake_case)]
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $crate::__per_engine_wasmtime! {
                $(#[$attr])*
                $($kw)* fn wasmtime() $($ret)* {
                    #[allow(unused_variables)]
                    let $engine = $crate::testing::__engine("wasmtime");
                    $body
                }
            }
            $crate::__per_engine_wasmer! {
                $(#[$attr])*
                $($kw)* fn wasmer() $($ret)* {
                    #[allow(unused_variables)]
                    let $engine = $crate::testing::__engine("wasmer");
                    $body
                }
            }
        }
    };
    (
        $(#[$attr:meta])*
        async fn $name:ident($engine:ident) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $crate::per_engine! { @stamp [$(#[$attr])*] [async] $name $engine [$(-> $ret)?] $body }
        $crate::per_engine! { $($rest)* }
    };
    (
        $(#[$attr:meta])*
        fn $name:ident($engine:ident) $(-> $ret:ty)? $body:block
        $($rest:tt)*
    ) => {
        $crate::per_engine! { @stamp [$(#[$attr])*] [] $name $engine [$(-> $ret)?] $body }
        $crate::per_engine! { $($rest)* }
    };
}

/// The engine named so, for [`per_engine!`]; not part of the API.
#[doc(hidden)]
pub fn __engine(name: &str) -> crate::Engine {
    crate::Engine::from_name(name).expect("per_engine! stamps out only engines of this build")
}

#[cfg(feature = "wasmtime")]
#[doc(hidden)]
#[macro_export]
macro_rules! __per_engine_wasmtime {
    ($($item:tt)*) => { $($item)* };
}

#[cfg(not(feature = "wasmtime"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __per_engine_wasmtime {
    ($($item:tt)*) => {};
}

#[cfg(feature = "wasmer")]
#[doc(hidden)]
#[macro_export]
macro_rules! __per_engine_wasmer {
    ($($item:tt)*) => { $($item)* };
}

#[cfg(not(feature = "wasmer"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __per_engine_wasmer {
    ($($item:tt)*) => {};
}
