//! Throughput with 1, 2 and 8 requests in flight through one layer (one
//! plugin, one instance pool), next to a native pass-through layer, on every
//! engine. `cargo bench -p http-wasm-benches --bench concurrency`.
//!
//! A multi-thread tokio runtime with two workers (this machine's cores).
//! Each measurement keeps `n` requests in flight: `n` tasks, each sending
//! its share of the requests one after another (a closed loop, no batch
//! barrier), so the figure criterion reports is wall time per request, the
//! inverse of throughput (criterion also prints it as requests per second).
//! The guest is the no-op that calls next; the pool holds 16 instances
//! (the default) so that 8 in flight contend on the pool's lock and
//! semaphore without waiting, and `8_pool2` shows 8 in flight over 2
//! instances, where 6 wait for an instance at any time.

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use http_wasm_benches::{PassThroughLayer, empty_ok, noop_guest, send_async};
use std::time::{Duration, Instant};
use tower::{Service, ServiceBuilder};
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin};

/// Sends `total` requests through `svc`, `in_flight` at a time; the time taken.
async fn run<S, B>(svc: &S, in_flight: u64, total: u64) -> Duration
where
    S: Service<Request<Full<Bytes>>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: std::fmt::Debug,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: std::fmt::Debug,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..in_flight)
        .map(|i| {
            let svc = svc.clone();
            // Spread `total` over the tasks, the remainder to the first ones.
            let share = total / in_flight + u64::from(i < total % in_flight);
            tokio::spawn(async move {
                for _ in 0..share {
                    send_async(svc.clone(), Request::get("/").body(Full::default()).expect("request")).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("task");
    }
    start.elapsed()
}

fn concurrency(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut g = c.benchmark_group("concurrency");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .throughput(Throughput::Elements(1));

    let native = ServiceBuilder::new().layer(PassThroughLayer).service_fn(empty_ok);
    for n in [1, 2, 8] {
        g.bench_with_input(BenchmarkId::new("native", n), &n, |b, &n| {
            b.iter_custom(|iters| rt.block_on(run(&native, n, iters)))
        });
    }
    for &engine in Engine::ALL {
        let cases = [(1, 16, "1"), (2, 16, "2"), (8, 16, "8"), (8, 2, "8_pool2")];
        for (n, pool, label) in cases {
            let plugin = Plugin::builder().engine(engine).pool_size(pool).build(noop_guest(true)).expect("guest loads");
            let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(empty_ok);
            g.bench_with_input(BenchmarkId::new(engine.name(), label), &n, |b, &n| {
                b.iter_custom(|iters| rt.block_on(run(&svc, n, iters)))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, concurrency);
criterion_main!(benches);
