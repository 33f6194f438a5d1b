//! Isolation and failure policies, and the counters that show them.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_http_wasm::{FailurePolicy, HttpWasmLayer, Isolation, Plugin};

/// Counts requests in a global and answers the count (1 to 9) in `x-count`.
fn counter() -> Vec<u8> {
    module(&format!(
        r#"(global $n (mut i32) (i32.const 0))
  (data (i32.const 0) "x-count")
  (func (export "handle_request") (result i64)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store8 (i32.const 16) (i32.add (i32.const 48) (global.get $n)))
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 1))
    (i64.const 0))
  {NOOP_RESPONSE}"#
    ))
}

async fn counts(plugin: &Plugin, n: usize) -> String {
    let mut seen = String::new();
    for _ in 0..n {
        seen.push_str(send(plugin, get("/")).await.header("x-count"));
    }
    seen
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn each_isolation_policy_shows_in_a_guest_global(engine) {
        let plugin = |isolation| builder(engine).pool_size(1).isolation(isolation).build(counter()).unwrap();
        assert_eq!(counts(&plugin(Isolation::Reuse), 6).await, "123456", "reuse");
        assert_eq!(counts(&plugin(Isolation::PerRequest), 6).await, "111111", "per request");
        let recycled = plugin(Isolation::RecycleAfter(3));
        assert_eq!(counts(&recycled, 7).await, "1231231", "recycle after 3");
        let m = recycled.metrics();
        assert_eq!((m.instances_started, m.instances), (3, 1), "{m:?}");
        let err = builder(engine).isolation(Isolation::RecycleAfter(0)).build(counter()).unwrap_err();
        assert!(err.is_config(), "{err}");
    }
}

/// Answers in `x-out` what earlier requests left in the instance's memory:
/// `d` where its data segment's byte was rewritten, `g` where memory grew,
/// `l` where a page low in memory was written, `h` where one past the first
/// MiB was (wasmtime's pooled slots reset pages below that in place and
/// give the rest back to the kernel); `-` for nothing. Then leaves all four
/// behind.
fn scribbler() -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 2000) "a")
  (func $seen (param $n i32) (param $mark i32) (result i32)
    (i32.store8 (i32.add (i32.const 3000) (local.get $n)) (local.get $mark))
    (i32.add (local.get $n) (i32.const 1)))
  (func (export "handle_request") (result i64) (local $n i32)
    (if (i32.ne (i32.load8_u (i32.const 2000)) (i32.const 97))
      (then (local.set $n (call $seen (local.get $n) (i32.const 100)))))
    (if (i32.ne (memory.size) (i32.const 40))
      (then (local.set $n (call $seen (local.get $n) (i32.const 103)))))
    (if (i32.ne (i32.load8_u (i32.const 70000)) (i32.const 0))
      (then (local.set $n (call $seen (local.get $n) (i32.const 108)))))
    (if (i32.ne (i32.load8_u (i32.const 2000000)) (i32.const 0))
      (then (local.set $n (call $seen (local.get $n) (i32.const 104)))))
    (if (i32.eqz (local.get $n)) (then (local.set $n (call $seen (i32.const 0) (i32.const 45)))))
    (call $out (i32.const 3000) (local.get $n))
    (i32.store8 (i32.const 2000) (i32.const 98))
    (i32.store8 (i32.const 70000) (i32.const 1))
    (i32.store8 (i32.const 2000000) (i32.const 1))
    (drop (memory.grow (i32.const 1)))
    (i64.const 0))
  {NOOP_RESPONSE}"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_fresh_instance_starts_from_the_modules_memory_image(engine) {
        // On wasmtime, per-request and recycled instances take slots of the
        // pooling allocator that earlier instances dirtied and grew.
        let wasm = scribbler();
        let seen = async |isolation| {
            let plugin = builder(engine).pool_size(1).isolation(isolation).build(&wasm).unwrap();
            let mut seen = Vec::new();
            for _ in 0..4 {
                seen.push(send(&plugin, get("/")).await.header("x-out").to_owned());
            }
            seen
        };
        assert_eq!(seen(Isolation::Reuse).await, ["-", "dglh", "dglh", "dglh"], "reuse keeps what a guest left");
        assert_eq!(seen(Isolation::PerRequest).await, ["-", "-", "-", "-"], "per request");
        assert_eq!(seen(Isolation::RecycleAfter(2)).await, ["-", "dglh", "-", "dglh"], "recycle after 2");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_trap_discards_the_instance_whatever_the_policy(engine) {
        // Traps on the second request an instance serves.
        let wasm = module(&format!(
            r#"(global $n (mut i32) (i32.const 0))
  (func (export "handle_request") (result i64)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (i32.eq (global.get $n) (i32.const 2)) (then unreachable))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        for isolation in [Isolation::Reuse, Isolation::RecycleAfter(10)] {
            let plugin = builder(engine).pool_size(1).isolation(isolation).build(&wasm).unwrap();
            let mut got = Vec::new();
            for _ in 0..4 {
                got.push(send(&plugin, get("/")).await.status);
            }
            // A fresh instance after the trap: its count starts again.
            assert_eq!(got, [200, 500, 200, 500], "{isolation:?}");
            let m = plugin.metrics();
            assert_eq!(
                (m.requests, m.request_failures, m.instances_started, m.instances),
                (4, 2, 2, 0),
                "{isolation:?} {m:?}"
            );
        }
    }
}

/// Rewrites the URI and a request header, reads up to 1 KiB of the request
/// body, then traps when the request has `x-trap`; in `handle_response`
/// sets `x-added`, reads the response body and traps with `x-trap-late`.
/// `features` are enabled at start.
fn rewriter_then_trap(features: u32) -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 0) "x-trap")
  (data (i32.const 8) "x-trap-late")
  (data (i32.const 32) "/changed")
  (data (i32.const 48) "x-added")
  (global $late (mut i32) (i32.const 0))
  (func (export "_start") (drop (call $enable_features (i32.const {features}))))
  (func (export "handle_request") (result i64)
    (call $set_uri (i32.const 32) (i32.const 8))
    (call $set_header_value (i32.const 0) (i32.const 48) (i32.const 7) (i32.const 48) (i32.const 7))
    (drop (call $read_body (i32.const 0) (i32.const 4096) (i32.const 1024)))
    (if (i64.ne (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 2048) (i32.const 100)) (i64.const 0))
      (then unreachable))
    (global.set $late (i64.ne (call $get_header_values (i32.const 0) (i32.const 8) (i32.const 11) (i32.const 2048) (i32.const 100)) (i64.const 0)))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (call $set_header_value (i32.const 1) (i32.const 48) (i32.const 7) (i32.const 48) (i32.const 7))
    (drop (call $read_body (i32.const 1) (i32.const 8192) (i32.const 1024)))
    (if (global.get $late) (then unreachable)))"#
    ))
}

fn trap_request(header: &str, body: &'static [u8]) -> http::Request<Full<Bytes>> {
    http::Request::post("/original")
        .header(header, "1")
        .header("content-length", body.len())
        .body(Full::new(Bytes::from_static(body)))
        .unwrap()
}

const BODY: &[u8] = &[b'b'; 3000];

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn fail_open_hands_on_the_request_as_the_client_sent_it(engine) {
        // buffer_request|buffer_response: what the guest read is kept.
        let plugin = builder(engine).failure_policy(FailurePolicy::Open).build(rewriter_then_trap(3)).unwrap();
        let got = send(&plugin, trap_request("x-trap", BODY)).await;
        assert_eq!(got.status, 200, "{got:?}");
        assert_eq!(got.header("x-echo-uri"), "/original", "the guest's URI is undone");
        assert!(got.headers.get("x-echo-h-x-added").is_none(), "the guest's header is undone");
        assert_eq!(&got.body[..], BODY, "the whole body, the part the guest read included");
        assert_eq!(got.header("x-echo-cl"), "3000");

        // A trap in handle_response: the next handler's response as it came.
        let got = send(&plugin, trap_request("x-trap-late", BODY)).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-echo-uri"), "/changed", "the request went through the guest");
        assert!(got.headers.get("x-added").is_none(), "the guest's response header is undone");
        assert_eq!(&got.body[..], BODY, "the whole response body");

        let m = plugin.metrics();
        assert_eq!(
            (m.requests, m.failed_open, m.request_failures, m.response_failures, m.next_calls),
            (2, 2, 1, 1, 1),
            "{m:?}"
        );
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn fail_open_stays_closed_when_the_guest_consumed_the_body(engine) {
        // No buffer_request: the 1 KiB the guest read is gone.
        let plugin = builder(engine).failure_policy(FailurePolicy::Open).build(rewriter_then_trap(0)).unwrap();
        let got = send(&plugin, trap_request("x-trap", BODY)).await;
        assert_eq!(got.status, 500);
        assert!(got.headers.get("x-echo-uri").is_none());
        // Without a body, nothing was consumed: open.
        let got = send(&plugin, trap_request("x-trap", b"")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-echo-uri"), "/original");
        let m = plugin.metrics();
        assert_eq!((m.request_failures, m.failed_open), (2, 1), "{m:?}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn fail_closed_is_the_default(engine) {
        let plugin = load(engine, &rewriter_then_trap(3));
        assert_eq!(plugin.failure_policy(), FailurePolicy::Closed);
        for header in ["x-trap", "x-trap-late"] {
            assert_eq!(send(&plugin, trap_request(header, BODY)).await.status, 500, "{header}");
        }
        assert_eq!(plugin.metrics().failed_open, 0);
    }
}

/// An inner service that holds requests to `/held` until the gate opens.
fn gated(
    gate: Arc<tokio::sync::Semaphore>,
) -> impl tower::Service<
    http::Request<tower_http_wasm::RequestBody>,
    Response = http::Response<Full<Bytes>>,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone {
    tower::service_fn(move |req: http::Request<tower_http_wasm::RequestBody>| {
        let gate = gate.clone();
        async move {
            if req.uri() == "/held" {
                let _permit = gate.acquire().await.unwrap();
            }
            echo(req).await
        }
    })
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn pool_timeouts_are_counted_and_never_fail_open(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-guest")
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 7))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        for policy in [FailurePolicy::Closed, FailurePolicy::Open] {
            let plugin = builder(engine)
                .pool_size(1)
                .pool_wait(Duration::from_millis(50))
                .failure_policy(policy)
                .build(&wasm)
                .unwrap();
            let gate = Arc::new(tokio::sync::Semaphore::new(0));
            let svc =
                tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service(gated(gate.clone()));
            let held = tokio::spawn(svc.clone().oneshot(get("/held")));
            while plugin.metrics().next_calls == 0 {
                tokio::task::yield_now().await;
            }
            let gate2 = gate.clone();
            let second = tokio::spawn(async move {
                let r = svc.oneshot(get("/second")).await.unwrap();
                gate2.add_permits(2);
                r
            });
            let second = second.await.unwrap();
            let first = held.await.unwrap().unwrap();
            assert_eq!(first.status(), 200, "{policy:?}");
            // A busy pool is never the guest's failure: 503 whatever the policy.
            assert_eq!(second.status(), 503, "{policy:?}");
            assert_eq!(second.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
            let m = plugin.metrics();
            assert_eq!((m.pool_waits, m.pool_timeouts), (1, 1), "{policy:?} {m:?}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deadline_hits_and_short_circuits_are_counted(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-loop")
  (func (export "handle_request") (result i64)
    (if (i64.ne (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 2048) (i32.const 100)) (i64.const 0))
      (then (loop $l (br $l))))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).deadline(Duration::from_millis(50)).build(&wasm).unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 200);
        let req = http::Request::get("/").header("x-loop", "1").body(Full::<Bytes>::default()).unwrap();
        assert_eq!(send(&plugin, req).await.status, 500);
        let m = plugin.metrics();
        assert_eq!(
            (m.requests, m.short_circuits, m.next_calls, m.deadline_hits, m.request_failures),
            (2, 1, 0, 1, 1),
            "{m:?}"
        );
        let names: Vec<&str> = m.iter().map(|(name, ..)| name).collect();
        assert!(names.contains(&"deadline_hits") && names.contains(&"instances"), "{names:?}");
    }
}

/// A `metrics` recorder that keeps the last value of each series.
#[derive(Default)]
struct Recorded(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, f64>>>);

struct Series(String, std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, f64>>>);

impl metrics::CounterFn for Series {
    fn increment(&self, value: u64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value as f64;
    }
    fn absolute(&self, value: u64) {
        self.1.lock().unwrap().insert(self.0.clone(), value as f64);
    }
}

impl metrics::GaugeFn for Series {
    fn increment(&self, value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() += value;
    }
    fn decrement(&self, value: f64) {
        *self.1.lock().unwrap().entry(self.0.clone()).or_default() -= value;
    }
    fn set(&self, value: f64) {
        self.1.lock().unwrap().insert(self.0.clone(), value);
    }
}

impl Recorded {
    fn series(&self, key: &metrics::Key) -> Arc<Series> {
        let labels: Vec<String> = key.labels().map(|l| format!("{}={}", l.key(), l.value())).collect();
        Arc::new(Series(format!("{}{{{}}}", key.name(), labels.join(",")), self.0.clone()))
    }
}

impl metrics::Recorder for Recorded {
    fn describe_counter(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_gauge(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn describe_histogram(&self, _: metrics::KeyName, _: Option<metrics::Unit>, _: metrics::SharedString) {}
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        metrics::Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn counters_reach_the_metrics_facade(engine) {
        let plugin = builder(engine).name("counted").pool_size(1).build(counter()).unwrap();
        counts(&plugin, 3).await;
        let recorder = Recorded::default();
        metrics::with_local_recorder(&recorder, || plugin.record_metrics());
        let seen = recorder.0.lock().unwrap().clone();
        assert_eq!(seen.get("http_wasm_requests_total{filter=counted}"), Some(&3.0), "{seen:?}");
        assert_eq!(seen.get("http_wasm_short_circuits_total{filter=counted}"), Some(&3.0), "{seen:?}");
        assert_eq!(seen.get("http_wasm_instances{filter=counted}"), Some(&1.0), "{seen:?}");
        assert_eq!(seen.len(), plugin.metrics().iter().count(), "every figure");
    }
}
