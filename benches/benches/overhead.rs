//! Per-request overhead of a guest, next to the same work as native tower
//! middleware, on every engine, through the `Send` service and the local
//! one (`next/local-<engine>`). `cargo bench -p http-wasm-benches`.
//!
//! The `isolation` group prices a fresh instance per request
//! ([`Isolation::PerRequest`]) against reusing one ([`Isolation::Reuse`]):
//! the no-op guest, and the router example filter built with the SDK for
//! `wasm32-wasip1` (its start runs the SDK's initialisation and parses its
//! configuration), each row beside the native pass-through.

use criterion::{Criterion, criterion_group, criterion_main};
use http_wasm_benches::{Answer, PassThroughLayer, empty_ok, noop_guest, one_request};
use http_wasm_guest_build::Target;
use std::hint::black_box;
use tower::ServiceBuilder;
use tower_http_wasm::{Engine, HttpWasmLayer, Isolation, LocalHttpWasmLayer, Plugin};

const ROUTER_CONFIG: &str = r#"{"routes":[{"prefix":"/api","to":"/v1","header":"api"}]}"#;

fn noop(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("noop");

    let native_next = ServiceBuilder::new().layer(PassThroughLayer).service_fn(empty_ok);
    g.bench_function("next/native", |b| b.iter(|| one_request(&rt, black_box(&native_next))));
    g.bench_function("no_next/native", |b| b.iter(|| one_request(&rt, black_box(&Answer))));

    for &engine in Engine::ALL {
        for next in [true, false] {
            let plugin = Plugin::builder().engine(engine).pool_size(1).build(noop_guest(next)).expect("guest loads");
            let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(empty_ok);
            let name = format!("{}/{engine}", if next { "next" } else { "no_next" });
            g.bench_function(name, |b| b.iter(|| one_request(&rt, black_box(&svc))));
        }
        // The local service: the replica's instances run on this thread.
        let plugin = Plugin::builder().engine(engine).pool_size(1).build(noop_guest(true)).expect("guest loads");
        let svc = ServiceBuilder::new().layer(LocalHttpWasmLayer::new(plugin.local())).service_fn(empty_ok);
        g.bench_function(format!("next/local-{engine}"), |b| b.iter(|| one_request(&rt, black_box(&svc))));
    }
    g.finish();
}

fn isolation(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("isolation");

    let native = ServiceBuilder::new().layer(PassThroughLayer).service_fn(empty_ok);
    g.bench_function("native", |b| b.iter(|| one_request(&rt, black_box(&native))));

    let router = http_wasm_guest_build::build_bytes("http-wasm-example-router", Target::Wasip1).expect("guest builds");
    let guests: [(&str, Vec<u8>, &str); 2] = [("noop", noop_guest(true), ""), ("router", router, ROUTER_CONFIG)];
    for (guest, wasm, config) in &guests {
        for &engine in Engine::ALL {
            for isolation in [Isolation::Reuse, Isolation::PerRequest] {
                let plugin = Plugin::builder()
                    .engine(engine)
                    .pool_size(1)
                    .isolation(isolation)
                    .config(*config)
                    .build(wasm)
                    .expect("guest loads");
                let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(empty_ok);
                g.bench_function(format!("{guest}/{engine}/{isolation}"), |b| {
                    b.iter(|| one_request(&rt, black_box(&svc)))
                });
            }
        }
    }
    g.finish();
}

criterion_group!(benches, noop, isolation);
criterion_main!(benches);
