//! Per-request overhead of a guest, next to the same work as native tower
//! middleware, on every engine. `cargo bench -p http-wasm-benches`.

use criterion::{Criterion, criterion_group, criterion_main};
use http_wasm_benches::{Answer, PassThroughLayer, empty_ok, noop_guest, one_request};
use std::hint::black_box;
use tower::ServiceBuilder;
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin};

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
    }
    g.finish();
}

criterion_group!(benches, noop);
criterion_main!(benches);
