//! The example filters (`examples/filters/`), each next to the same logic as
//! a native tower middleware, on every engine.
//! `cargo bench -p http-wasm-benches --bench filters`.
//!
//! The native rows call the very functions the guests run (the example
//! crates' `judge`, `Routes::route`, `redact`, compiled natively), on `http`
//! types, so the difference is the host: crossing into the guest, the host
//! calls, and the copies in and out of linear memory. The guests are built
//! from source for `wasm32-unknown-unknown` with the `guest` profile, as the
//! README's sizes are.
//!
//! Every request carries three ordinary headers (`host`, `user-agent`,
//! `accept`) besides the one a case needs; the inner service echoes the
//! request body and reports the URI and `x-route` it received. Before
//! measuring, each case checks that native and wasm answer the same status,
//! URI, route and body.

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, WWW_AUTHENTICATE};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use http_wasm_benches::{echo, send};
use http_wasm_example_header_validation::{self as hv, Kind, Verdict};
use http_wasm_example_redact::{self as redact, Pattern};
use http_wasm_example_router::{ROUTE_HEADER, Routes};
use http_wasm_guest_build::Target;
use std::convert::Infallible;
use std::future::Future;
use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::{Service, ServiceBuilder};
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin};

const HEADER_VALIDATION_CONFIG: &str = r#"{"header":"x-api-key","kind":"api_key","min_len":8}"#;
const ROUTER_CONFIG: &str =
    r#"{"routes":[{"prefix":"/api","to":"/v1","header":"api"},{"prefix":"/public","header":"public"}]}"#;
const REDACT_CONFIG: &str = r#"{"patterns":["card","email"]}"#;

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Infallible>> + Send>>;
type Res = Response<Full<Bytes>>;

/// `tower`'s usual way to call a clone: the ready service goes into the
/// future, its clone stays.
fn take<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

fn plain(status: StatusCode, body: &'static str) -> Res {
    let mut res = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *res.status_mut() = status;
    res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    res
}

/// `header-validation` as native middleware.
#[derive(Clone, Debug)]
struct HeaderValidation<S> {
    inner: S,
    header: HeaderName,
    kind: Kind,
}

impl<S> HeaderValidation<S> {
    fn new(inner: S, config: &str) -> Self {
        let settings = hv::parse_config(config.as_bytes()).expect("valid config");
        let header = HeaderName::from_bytes(&settings.header).expect("valid header name");
        HeaderValidation { inner, header, kind: settings.kind }
    }
}

impl<S, B> Service<Request<B>> for HeaderValidation<S>
where
    S: Service<Request<B>, Response = Res, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Res;
    type Error = Infallible;
    type Future = BoxFuture<Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let verdict = hv::judge(self.kind, req.headers().get(&self.header).map(HeaderValue::as_bytes));
        let (status, body) = match verdict {
            Verdict::Pass => return Box::pin(take(&mut self.inner).call(req)),
            Verdict::Missing => (StatusCode::UNAUTHORIZED, "missing credentials\n"),
            Verdict::Malformed => (StatusCode::BAD_REQUEST, "malformed credentials\n"),
        };
        let mut res = plain(status, body);
        if status == StatusCode::UNAUTHORIZED && self.kind == Kind::Bearer {
            res.headers_mut().insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        Box::pin(async move { Ok(res) })
    }
}

/// `router` as native middleware.
#[derive(Clone, Debug)]
struct Router<S> {
    inner: S,
    routes: Arc<Routes>,
}

impl<S> Router<S> {
    fn new(inner: S, config: &str) -> Self {
        let routes = Routes::parse(&http_wasm_sdk::Config::from_bytes(config)).expect("valid config");
        Router { inner, routes: Arc::new(routes) }
    }
}

impl<S, B> Service<Request<B>> for Router<S>
where
    S: Service<Request<B>, Response = Res, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Res;
    type Error = Infallible;
    type Future = BoxFuture<Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let target = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let Some((route, new_uri)) = self.routes.route(target) else {
            return Box::pin(async { Ok(plain(StatusCode::NOT_FOUND, "no route\n")) });
        };
        let header = route.header.as_deref().map(|h| HeaderValue::from_str(h).expect("checked at parse"));
        if let Some(uri) = new_uri {
            *req.uri_mut() = uri.parse().expect("a valid rewritten URI");
        }
        if let Some(value) = header {
            req.headers_mut().insert(ROUTE_HEADER, value);
        }
        Box::pin(take(&mut self.inner).call(req))
    }
}

/// `redact` as native middleware: buffers both bodies, masks them, and
/// replaces a body (recomputing `content-length`) only when something was
/// masked, as the guest and the host do.
#[derive(Clone, Debug)]
struct Redact<S> {
    inner: S,
    patterns: Arc<[Pattern]>,
}

impl<S, B> Service<Request<B>> for Redact<S>
where
    S: Service<Request<Full<Bytes>>, Response = Res, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    type Response = Res;
    type Error = Infallible;
    type Future = BoxFuture<Res>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mut inner = take(&mut self.inner);
        let patterns = self.patterns.clone();
        Box::pin(async move {
            let (mut parts, body) = req.into_parts();
            let body = redacted(body.collect().await.expect("request body").to_bytes(), &patterns, &mut parts.headers);
            let res = inner.call(Request::from_parts(parts, Full::new(body))).await?;
            let (mut parts, body) = res.into_parts();
            let body = redacted(body.collect().await.expect("response body").to_bytes(), &patterns, &mut parts.headers);
            Ok(Response::from_parts(parts, Full::new(body)))
        })
    }
}

fn redacted(body: Bytes, patterns: &[Pattern], headers: &mut http::HeaderMap) -> Bytes {
    let mut bytes = body.to_vec();
    if redact::redact(&mut bytes, patterns) {
        headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Bytes::from(bytes)
    } else {
        body
    }
}

/// A request with the usual few headers, plus `extra`.
fn request(method: &str, uri: &str, extra: Option<(&'static str, &'static str)>, body: &Bytes) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "bench.example")
        .header("user-agent", "http-wasm-benches/0.1")
        .header("accept", "*/*");
    if let Some((name, value)) = extra {
        builder = builder.header(name, value);
    }
    builder.body(Full::new(body.clone())).expect("request")
}

/// About 1 KiB of text with a card number and two e-mail addresses.
fn redact_body() -> Bytes {
    let mut text = String::from("order 1234: card 4111 1111 1111 1111, contact ana.b+orders@example.co.uk, ");
    while text.len() < 1000 {
        text.push_str("lorem ipsum dolor sit amet, consectetur adipiscing elit; ");
    }
    text.push_str("cc billing@example.org.");
    Bytes::from(text)
}

/// The inner service: echoes the request body, and the URI and `x-route`
/// it received as response headers, so that the native and the wasm rows
/// can be checked to do the same thing.
async fn upstream<B>(req: Request<B>) -> Result<Res, Infallible>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let uri = HeaderValue::from_str(&req.uri().to_string()).expect("a URI is a valid header value");
    let route = req.headers().get(ROUTE_HEADER).cloned();
    let mut res = echo(req).await?;
    res.headers_mut().insert("x-seen-uri", uri);
    if let Some(route) = route {
        res.headers_mut().insert(ROUTE_HEADER, route);
    }
    Ok(res)
}

/// What a case answers: status, the upstream's view of URI and route, body.
fn outcome<S, B>(rt: &tokio::runtime::Runtime, svc: &S, req: Request<Full<Bytes>>) -> (StatusCode, Vec<String>, Bytes)
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let res = tower::ServiceExt::oneshot(svc.clone(), req).await.expect("ok");
        let (parts, body) = res.into_parts();
        let seen = ["x-seen-uri", ROUTE_HEADER, "content-type"]
            .iter()
            .map(|h| parts.headers.get(*h).map_or("-", |v| v.to_str().unwrap_or("?")).to_owned())
            .collect();
        (parts.status, seen, body.collect().await.expect("body").to_bytes())
    })
}

/// One case: a name, the guest crate and its config, the native service,
/// the request and the status both must answer.
fn case<N>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    rt: &tokio::runtime::Runtime,
    (name, package, config): (&str, &str, &str),
    native: N,
    make: impl Fn() -> Request<Full<Bytes>>,
    expect: StatusCode,
) where
    N: Service<Request<Full<Bytes>>, Response = Res, Error = Infallible> + Clone,
{
    let wasm = http_wasm_guest_build::build_bytes(package, Target::Unknown).expect("guest builds");
    let reference = outcome(rt, &native, make());
    assert_eq!(reference.0, expect, "{name}/native");
    g.bench_function(format!("{name}/native"), |b| b.iter(|| send(rt, black_box(&native), make())));
    for &engine in Engine::ALL {
        let plugin = Plugin::builder().engine(engine).config(config.to_owned()).pool_size(1).build(&wasm);
        let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.expect("guest loads"))).service_fn(upstream);
        assert_eq!(outcome(rt, &svc, make()), reference, "{name}/{engine} differs from native");
        g.bench_function(format!("{name}/{engine}"), |b| b.iter(|| send(rt, black_box(&svc), make())));
    }
}

fn filters(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("filters");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    let empty = Bytes::new();

    let package = "http-wasm-example-header-validation";
    let native =
        ServiceBuilder::new().layer_fn(|s| HeaderValidation::new(s, HEADER_VALIDATION_CONFIG)).service_fn(upstream);
    let key = Some(("x-api-key", "demo12345abcdef"));
    let pass = || request("GET", "/api/users", key, &empty);
    let name = ("header_validation/pass", package, HEADER_VALIDATION_CONFIG);
    case(&mut g, &rt, name, native.clone(), pass, StatusCode::OK);
    let reject = || request("GET", "/api/users", None, &empty);
    let name = ("header_validation/reject", package, HEADER_VALIDATION_CONFIG);
    case(&mut g, &rt, name, native, reject, StatusCode::UNAUTHORIZED);

    let native = ServiceBuilder::new().layer_fn(|s| Router::new(s, ROUTER_CONFIG)).service_fn(upstream);
    let routed = || request("GET", "/api/users?id=7", None, &empty);
    case(&mut g, &rt, ("router/rewrite", "http-wasm-example-router", ROUTER_CONFIG), native, routed, StatusCode::OK);

    let settings: redact::Settings = http_wasm_sdk::Config::from_bytes(REDACT_CONFIG).json().expect("valid config");
    let patterns: Arc<[Pattern]> = Arc::from(settings.patterns);
    let native =
        ServiceBuilder::new().layer_fn(|inner| Redact { inner, patterns: patterns.clone() }).service_fn(upstream);
    let body = redact_body();
    let post = || request("POST", "/submit", Some(("content-type", "text/plain")), &body);
    case(&mut g, &rt, ("redact/1k", "http-wasm-example-redact", REDACT_CONFIG), native, post, StatusCode::OK);

    g.finish();
}

criterion_group!(benches, filters);
criterion_main!(benches);
