//! Start-up: compile, check and start a first instance
//! (`Plugin::builder().engine(e).build(wasm)`), cold, on every engine.
//! `cargo bench -p http-wasm-benches --bench startup`.
//!
//! Two guests: a tiny WAT no-op (about 100 bytes) and a 100 KB-class Rust
//! guest built with our SDK, the `router` example for `wasm32-wasip1`
//! (serde_json for its config, the standard library's WASI support; about
//! 85 KB with the `guest` profile; its size is printed at the start). The
//! native rows build the same middleware natively (for the router: parsing
//! the same config with the same code), so they show what a native stack
//! pays at start-up: next to nothing.
//!
//! The Go host takes 1.1 ms for a tiny WAT guest and 114 ms for a 100 KB
//! TinyGo guest, with no compiled-module cache (facts §5).

use bytes::Bytes;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime};
use http_body_util::Full;
use http_wasm_benches::{PassThroughLayer, empty_ok, noop_guest};
use http_wasm_example_router::Routes;
use http_wasm_guest_build::Target;
use std::hint::black_box;
use std::time::{Duration, Instant};
use tower::ServiceBuilder;
use tower_http_wasm::{Engine, Plugin, PluginBuilder};

const ROUTER_CONFIG: &str =
    r#"{"routes":[{"prefix":"/api","to":"/v1","header":"api"},{"prefix":"/public","header":"public"}]}"#;

/// Runs `build` `iters` times; the time spent in it. What it returns (a
/// plugin and, on wasmer, its instance thread) is dropped outside the timing.
fn timed_builds<T>(iters: u64, build: impl Fn() -> T) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        let built = build();
        total += start.elapsed();
        drop(built);
    }
    total
}

/// Every build compiles (cold), then every build loads from the cache (cached).
fn cold(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, builder: impl Fn(Engine) -> PluginBuilder, wasm: &[u8]) {
    for &engine in Engine::ALL {
        g.bench_function(format!("{name}/{engine}/cold"), |b| {
            b.iter_custom(|iters| timed_builds(iters, || builder(engine).build(black_box(wasm)).expect("guest loads")))
        });
    }
    // From the compiled-module cache: a directory filled by one build, then
    // every build loads the compiled module back (facts §5: 0.07 ms on
    // wasmtime, 0.37 ms on wasmer for a 100 KB module, against 59 / 48 ms
    // to compile it).
    for &engine in Engine::ALL {
        let dir = std::env::temp_dir().join(format!("http-wasm-bench-cache-{}-{name}-{engine}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        builder(engine).cache_dir(&dir).build(wasm).expect("guest loads");
        g.bench_function(format!("{name}/{engine}/cached"), |b| {
            b.iter_custom(|iters| {
                timed_builds(iters, || builder(engine).cache_dir(&dir).build(black_box(wasm)).expect("guest loads"))
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn startup(c: &mut Criterion) {
    let mut g = c.benchmark_group("startup");
    g.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));

    let tiny = noop_guest(true);
    g.bench_function("tiny/native", |b| {
        b.iter(|| ServiceBuilder::new().layer(PassThroughLayer).service_fn(empty_ok::<Full<Bytes>>))
    });
    cold(&mut g, "tiny", |engine| Plugin::builder().engine(engine), &tiny);

    let router = http_wasm_guest_build::build_bytes("http-wasm-example-router", Target::Wasip1).expect("guest builds");
    eprintln!("startup: the router guest for wasm32-wasip1 is {} bytes", router.len());
    g.bench_function("router_wasip1/native", |b| {
        b.iter(|| Routes::parse(&http_wasm_sdk::Config::from_bytes(black_box(ROUTER_CONFIG))).expect("valid config"))
    });
    cold(&mut g, "router_wasip1", |engine| Plugin::builder().engine(engine).config(ROUTER_CONFIG), &router);

    g.finish();
}

criterion_group!(benches, startup);
criterion_main!(benches);
