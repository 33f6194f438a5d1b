//! The bounded pool under concurrent load.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;
use tower_http_wasm::HttpWasmLayer;

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sixty_four_requests_through_a_pool_of_four(engine) {
        // Each instance counts its requests in a global and reports the count.
        let wasm = module(
            r#"(global $n (mut i32) (i32.const 0))
  (func (export "handle_request") (result i64)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
        );
        let plugin = builder(engine).pool_size(4).build(&wasm).unwrap();
        let active = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, p) = (active.clone(), peak.clone());
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(
            move |_req: http::Request<tower_http_wasm::RequestBody>| {
                let (a, p) = (a.clone(), p.clone());
                async move {
                    let now = a.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    a.fetch_sub(1, Ordering::SeqCst);
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::from("ok")))
                }
            },
        );
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let svc = svc.clone();
                tokio::spawn(async move { svc.oneshot(get("/")).await.unwrap().status() })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let peak = peak.load(Ordering::SeqCst);
        assert!(peak <= 4, "{peak} requests ran at once through a pool of 4");
        assert!(peak >= 2, "the pool should allow concurrency, peak {peak}");
    }
}
