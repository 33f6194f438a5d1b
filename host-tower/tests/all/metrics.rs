//! The histograms of guest time per phase and the instances-in-use gauge:
//! [`DurationHistogram`] itself, and what requests through real guests
//! record in [`Plugin::metrics`](tower_http_wasm::Plugin::metrics).

use crate::harness::*;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;
use tower_http_wasm::{DURATION_BUCKETS, DurationHistogram, HttpWasmLayer};

/// The bucket `d` was counted in, recorded alone in a new histogram.
fn bucket_of(d: Duration) -> usize {
    let h = DurationHistogram::new();
    h.record(d);
    let counts = h.snapshot().counts;
    assert_eq!(counts.iter().sum::<u64>(), 1, "{d:?}: {counts:?}");
    counts.iter().position(|&n| n == 1).unwrap()
}

#[test]
fn a_duration_lands_in_the_first_bucket_whose_bound_it_does_not_exceed() {
    assert_eq!(bucket_of(Duration::ZERO), 0);
    for (i, &bound) in DURATION_BUCKETS.iter().enumerate() {
        assert_eq!(bucket_of(bound), i, "at {bound:?}");
        assert_eq!(bucket_of(bound + Duration::from_nanos(1)), i + 1, "just over {bound:?}");
    }
    let last = DURATION_BUCKETS.len();
    assert_eq!(bucket_of(Duration::from_secs(3600)), last);
    assert_eq!(bucket_of(Duration::MAX), last, "a duration past u64 nanoseconds");
    assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]), "bounds ascend");
}

#[test]
fn a_snapshot_gives_the_sum_and_cumulative_counts_ending_at_inf() {
    let h = DurationHistogram::new();
    assert_eq!(h.snapshot().count(), 0);
    let recorded = [3, 3, 40, 900, 7_000, 20_000_000].map(Duration::from_micros);
    for d in recorded {
        h.record(d);
    }
    let seen = h.snapshot();
    assert_eq!(seen.count(), 6);
    assert_eq!(seen.sum, recorded.iter().sum::<Duration>());
    let cumulative: Vec<_> = seen.cumulative().collect();
    assert_eq!(cumulative.len(), DURATION_BUCKETS.len() + 1);
    for (i, &(bound, n)) in cumulative.iter().enumerate() {
        let Some(bound) = bound else {
            assert_eq!((i, n), (DURATION_BUCKETS.len(), 6), "+Inf is last and counts all");
            continue;
        };
        assert_eq!(bound, DURATION_BUCKETS[i]);
        assert_eq!(n, recorded.iter().filter(|&&d| d <= bound).count() as u64, "le {bound:?}");
    }
}

#[test]
fn threads_recording_at_once_lose_nothing() {
    let h = Arc::new(DurationHistogram::new());
    let threads: Vec<_> = (1..=4u64)
        .map(|t| {
            let h = h.clone();
            std::thread::spawn(move || {
                for i in 0..10_000u64 {
                    h.record(Duration::from_nanos(t * 1_000 + i));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let seen = h.snapshot();
    assert_eq!(seen.count(), 40_000);
    let expected: u64 = (1..=4u64).map(|t| (0..10_000u64).map(|i| t * 1_000 + i).sum::<u64>()).sum();
    assert_eq!(seen.sum, Duration::from_nanos(expected));
}

/// Calls next, unless the request has `x-deny` (403 by itself) or
/// `x-trap` (traps); `handle_response` does nothing.
fn gate() -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 0) "x-deny")
  (data (i32.const 8) "x-trap")
  (func (export "handle_request") (result i64)
    (if (i64.ne (call $get_header_values (i32.const 0) (i32.const 8) (i32.const 6) (i32.const 2048) (i32.const 100)) (i64.const 0))
      (then unreachable))
    (if (i64.ne (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 2048) (i32.const 100)) (i64.const 0))
      (then (call $set_status_code (i32.const 403)) (return (i64.const 0))))
    (i64.const 1))
  {NOOP_RESPONSE}"#
    ))
}

fn with(header: &str) -> http::Request<http_body_util::Full<bytes::Bytes>> {
    let mut req = get("/");
    req.headers_mut().insert(http::HeaderName::from_bytes(header.as_bytes()).unwrap(), "1".parse().unwrap());
    req
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn each_guest_call_is_timed_in_its_phase(engine) {
        let plugin = builder(engine).guest_time_sampling(1).build(gate()).unwrap();
        let m = plugin.metrics();
        assert_eq!((m.handle_request_time.count(), m.handle_response_time.count()), (0, 0), "{m:?}");
        for _ in 0..5 {
            assert_eq!(send(&plugin, get("/")).await.status, 200);
        }
        let m = plugin.metrics();
        assert_eq!((m.handle_request_time.count(), m.handle_response_time.count()), (5, 5), "{m:?}");
        assert!(m.handle_request_time.sum > Duration::ZERO && m.handle_response_time.sum > Duration::ZERO);
        // Answered by the guest: handle_request only. A trap is timed too.
        assert_eq!(send(&plugin, with("x-deny")).await.status, 403);
        assert_eq!(send(&plugin, with("x-trap")).await.status, 500);
        let m = plugin.metrics();
        assert_eq!((m.handle_request_time.count(), m.handle_response_time.count()), (7, 5), "{m:?}");
        assert_eq!(m.requests, 7);
        let names: Vec<_> = m.guest_time().iter().map(|&(phase, _, h)| (phase, h.count())).collect();
        assert_eq!(names, [("handle_request", 7), ("handle_response", 5)]);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn by_default_about_one_guest_call_in_16_is_timed(engine) {
        let plugin = load(engine, &gate());
        for _ in 0..640 {
            assert_eq!(send(&plugin, get("/")).await.status, 200);
        }
        let m = plugin.metrics();
        assert_eq!(m.requests, 640);
        // 40 of each expected (binomial, deviation 6): a sampler that picks
        // every call, or none, fails.
        let (request, response) = (m.handle_request_time.count(), m.handle_response_time.count());
        assert!((10..=90).contains(&request) && (10..=90).contains(&response), "{m:?}");
        assert!(m.handle_request_time.sum > Duration::ZERO, "{m:?}");
        let err = builder(engine).guest_time_sampling(0).build(gate()).unwrap_err();
        assert!(err.is_config(), "{err}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instances_in_use_counts_requests_holding_one(engine) {
        let plugin = builder(engine).pool_size(4).build(gate()).unwrap();
        let in_use = || plugin.metrics().instances_in_use;
        assert_eq!(in_use(), 0);
        // The next handler holds each request until the gate opens.
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let held = gate.clone();
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service(tower::service_fn(
            move |req| {
                let held = held.clone();
                async move {
                    let _permit = held.acquire().await.unwrap();
                    echo(req).await
                }
            },
        ));
        let requests: Vec<_> = (0..3).map(|_| tokio::spawn(svc.clone().oneshot(get("/")))).collect();
        while plugin.metrics().next_calls < 3 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(in_use(), 3, "{:?}", plugin.metrics());
        assert_eq!(plugin.metrics().instances, 3);
        gate.add_permits(3);
        for r in requests {
            assert_eq!(r.await.unwrap().unwrap().status(), 200);
        }
        assert_eq!(in_use(), 0, "{:?}", plugin.metrics());
        // A trap discards its instance: no longer in use either.
        assert_eq!(send(&plugin, with("x-trap")).await.status, 500);
        assert_eq!(in_use(), 0, "{:?}", plugin.metrics());
        assert_eq!(plugin.metrics().instances, 2);
    }
}
