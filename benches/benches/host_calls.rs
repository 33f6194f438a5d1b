//! Each host-function pattern alone, next to the same work as a native
//! tower middleware, on every engine. `cargo bench -p http-wasm-benches --bench host_calls`.

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use http_body_util::{BodyExt, Full};
use http_wasm_benches::{Native, empty_ok};
use std::hint::black_box;
use std::time::Duration;
use tower::{ServiceBuilder, ServiceExt};
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin};

/// A guest whose `handle_request` runs `body` (leaving nothing on the
/// stack) and then calls next.
fn guest(body: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (import "http_handler" "get_method" (func $get_method (param i32 i32) (result i32)))
  (import "http_handler" "get_uri" (func $get_uri (param i32 i32) (result i32)))
  (import "http_handler" "set_uri" (func $set_uri (param i32 i32)))
  (import "http_handler" "get_header_values" (func $get_header_values (param i32 i32 i32 i32 i32) (result i64)))
  (import "http_handler" "get_header_names" (func $get_header_names (param i32 i32 i32) (result i64)))
  (import "http_handler" "set_header_value" (func $set_header_value (param i32 i32 i32 i32 i32)))
  (import "http_handler" "read_body" (func $read_body (param i32 i32 i32) (result i64)))
  (import "http_handler" "enable_features" (func $enable_features (param i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 0) "x-a")
  (data (i32.const 8) "/a?b=1")
  (data (i32.const 16) "value")
  (func (export "handle_request") (result i64) {body} (i64.const 1))
  (func (export "handle_response") (param i32 i32)))"#
    ))
    .expect("valid WAT")
}

/// A request with a 4 KiB header block (64 headers) and `body`.
///
/// The headers are cloned from one template, so their bytes are shared as
/// they are when hyper parses a request (a clone is a reference count, not
/// a copy), for the native and the wasm rows alike.
fn request(body: Bytes) -> Request<Full<Bytes>> {
    static TEMPLATE: std::sync::LazyLock<http::HeaderMap> = std::sync::LazyLock::new(|| {
        let mut h = http::HeaderMap::new();
        h.insert("x-a", http::HeaderValue::from_static("abc"));
        for i in 0..64 {
            let name: http::HeaderName = format!("x-header-{i:02}").parse().expect("name");
            h.insert(name, http::HeaderValue::from_maybe_shared(Bytes::from("v".repeat(50))).expect("value"));
        }
        // Clone once so every later clone shares the bytes.
        let shared = h.clone();
        drop(h);
        shared
    });
    let mut req = Request::post("/some/path?q=1").body(Full::new(body)).expect("request");
    *req.headers_mut() = TEMPLATE.clone();
    req
}

fn run<S, B>(rt: &tokio::runtime::Runtime, svc: &S, body: &Bytes)
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let res = svc.clone().oneshot(request(body.clone())).await.expect("ok");
        res.into_body().collect().await.expect("body");
    });
}

type Work = fn(&mut Request<tower_http_wasm::RequestBody>);

fn patterns() -> Vec<(&'static str, &'static str, Work, usize)> {
    vec![
        (
            "get_method",
            "(drop (call $get_method (i32.const 1024) (i32.const 64)))",
            |r| {
                black_box(r.method().as_str());
            },
            0,
        ),
        (
            "get_uri",
            "(drop (call $get_uri (i32.const 1024) (i32.const 256)))",
            |r| {
                black_box(r.uri().path_and_query());
            },
            0,
        ),
        (
            "set_uri",
            "(call $set_uri (i32.const 8) (i32.const 6))",
            |r| {
                *r.uri_mut() = "/a?b=1".parse().expect("uri");
            },
            0,
        ),
        (
            "get_header",
            "(drop (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 1024) (i32.const 256)))",
            |r| {
                black_box(r.headers().get_all("x-a").iter().count());
            },
            0,
        ),
        (
            "set_header",
            "(call $set_header_value (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 16) (i32.const 5))",
            |r| {
                r.headers_mut().insert("x-a", http::HeaderValue::from_static("value"));
            },
            0,
        ),
        (
            "header_names_4k",
            "(drop (call $get_header_names (i32.const 0) (i32.const 1024) (i32.const 8192)))",
            |r| {
                let mut names: Vec<&str> = r.headers().keys().map(|k| k.as_str()).collect();
                names.sort_unstable();
                black_box(names);
            },
            0,
        ),
        (
            "read_body_1k",
            "(drop (call $enable_features (i32.const 1))) (drop (call $read_body (i32.const 0) (i32.const 4096) (i32.const 65536)))",
            |_| {},
            1024,
        ),
        (
            "read_body_64k",
            "(drop (call $enable_features (i32.const 1))) (drop (call $read_body (i32.const 0) (i32.const 4096) (i32.const 65536)))",
            |_| {},
            65536,
        ),
    ]
}

fn host_calls(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("host_calls");
    g.warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for (name, wat, work, body_len) in patterns() {
        let body = Bytes::from(vec![b'b'; body_len]);
        let native = ServiceBuilder::new().layer_fn(|s| Native::new(s, work)).service_fn(empty_ok);
        g.bench_function(format!("{name}/native"), |b| b.iter(|| run(&rt, black_box(&native), &body)));
        for &engine in Engine::ALL {
            let plugin = Plugin::builder().engine(engine).pool_size(1).build(guest(wat)).expect("guest loads");
            let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(empty_ok);
            g.bench_function(format!("{name}/{engine}"), |b| b.iter(|| run(&rt, black_box(&svc), &body)));
        }
    }
    g.finish();
}

criterion_group!(benches, host_calls);
criterion_main!(benches);
