//! Replacing a plugin's module at run time.

use crate::harness::*;
use std::sync::Arc;
use tower::ServiceExt;
use tower_http_wasm::HttpWasmLayer;

/// Sets `x-version: <version>` on the response in `handle_response` (with
/// `buffer_response`, which makes response headers writable there), so the
/// header shows which module finished the request.
pub fn versioned(version: char) -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 0) "x-version")
  (data (i32.const 16) "{version}")
  (func (export "_start") (drop (call $enable_features (i32.const 2))))
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 9) (i32.const 16) (i32.const 1)))"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reload_under_traffic_fails_no_request(engine) {
        let plugin = builder(engine).pool_size(4).build(versioned('a')).unwrap();
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service_fn(echo);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (svc, stop) = (svc.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let res = svc.clone().oneshot(get("/")).await.unwrap();
                    seen.push((res.status().as_u16(), res.headers()["x-version"].to_str().unwrap().to_string()));
                }
                seen
            }));
        }
        let reloader = plugin.clone();
        tokio::task::spawn_blocking(move || {
            for round in 0..6 {
                let version = if round % 2 == 0 { 'b' } else { 'a' };
                reloader.reload(versioned(version)).unwrap();
                // A module that fails to load is rejected; the current one keeps serving.
                assert!(reloader.reload(b"not wasm").unwrap_err().is_compile());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for client in clients {
            for (status, version) in client.await.unwrap() {
                total += 1;
                assert_eq!(status, 200);
                assert!(version == "a" || version == "b", "{version}");
            }
        }
        assert!(total > 0);
        // The last reload loaded 'a': every new request sees it.
        let got = send(&plugin, get("/")).await;
        assert_eq!(got.header("x-version"), "a");
        let m = plugin.metrics();
        assert_eq!((m.reloads, m.reload_failures), (6, 6), "{m:?}");
        assert_eq!(m.request_failures + m.response_failures, 0, "{m:?}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_request_in_flight_finishes_on_the_old_module(engine) {
        let plugin = builder(engine).build(versioned('a')).unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let g = gate.clone();
        let inner = tower::service_fn(move |req| {
            let g = g.clone();
            async move {
                let _p = g.acquire().await.unwrap();
                echo(req).await
            }
        });
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service(inner);
        let held = tokio::spawn(svc.clone().oneshot(get("/held")));
        while plugin.metrics().next_calls == 0 {
            tokio::task::yield_now().await;
        }
        plugin.reload(versioned('b')).unwrap();
        gate.add_permits(10);
        let fresh = svc.oneshot(get("/fresh")).await.unwrap();
        assert_eq!(fresh.headers()["x-version"], "b");
        let held = held.await.unwrap().unwrap();
        assert_eq!(held.headers()["x-version"], "a", "the old module finished the request it began");
        // The old module's instances are gone once its last request ended.
        assert_eq!(plugin.metrics().instances, 1, "{:?}", plugin.metrics());
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_reload_whose_start_fails_keeps_the_old_module(engine) {
        let plugin = load(engine, &versioned('a'));
        let trapping_start = module(&format!(
            r#"(func (export "_start") unreachable)
  (func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#
        ));
        assert!(plugin.reload(&trapping_start).unwrap_err().is_start());
        let wrong_abi = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(plugin.reload(&wrong_abi).unwrap_err().is_abi());
        let got = send(&plugin, get("/")).await;
        assert_eq!((got.status, got.header("x-version")), (200, "a"));
        assert_eq!(plugin.metrics().reload_failures, 2);
    }
}
