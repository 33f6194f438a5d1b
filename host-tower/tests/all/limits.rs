//! Limits on hostile guests: CPU deadline, memory cap, pool wait.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tower::ServiceExt;
use tower_http_wasm::{Engine, HttpWasmLayer};

/// Sends `get("/")` through `wasm` and returns the status and the kind of
/// error the failure policy saw.
async fn run(engine: Engine, wasm: &[u8]) -> (u16, Option<String>) {
    let plugin = builder(engine).deadline(Duration::from_millis(100)).build(wasm).unwrap();
    let seen = Arc::new(Mutex::new(None));
    let s = seen.clone();
    let layer = HttpWasmLayer::new(plugin).failure_response(move |e: &tower_http_wasm::Error| {
        *s.lock().unwrap() = Some(if e.is_timeout() { "timeout".to_string() } else { e.to_string() });
        let mut r = http::Response::new(Bytes::from_static(b"failed"));
        *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    });
    let svc = tower::ServiceBuilder::new().layer(layer).service_fn(echo);
    let res = svc.oneshot(get("/")).await.unwrap();
    let kind = seen.lock().unwrap().clone();
    (res.status().as_u16(), kind)
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_endless_loop_in_either_phase_is_stopped_at_the_deadline(engine) {
        let in_request = module(&format!(
            r#"(func (export "handle_request") (result i64) (loop $l (br $l)) (i64.const 1)) {NOOP_RESPONSE}"#
        ));
        let in_response = module(
            r#"(func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32) (loop $l (br $l)))"#,
        );
        for (phase, wasm) in [("handle_request", in_request), ("handle_response", in_response)] {
            let (status, kind) = run(engine, &wasm).await;
            assert_eq!(status, 500, "{phase}");
            assert_eq!(kind.as_deref(), Some("timeout"), "{phase}");
        }
        // The plugin keeps serving: the looping instance was discarded.
        let ok = module(&format!(r#"(func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#));
        assert_eq!(run(engine, &ok).await.0, 200);
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn an_endless_start_is_a_load_error(engine) {
        let wasm = module(&format!(
            r#"(func (export "_start") (loop $l (br $l)))
  (func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#
        ));
        let err = builder(engine).deadline(Duration::from_millis(100)).build(&wasm).unwrap_err();
        assert!(err.is_start(), "{err}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn memory_growth_past_the_cap_fails_cleanly(engine) {
        // wasmtime traps at the failed grow; on wasmer the grow returns -1 (the
        // module's maximum was lowered to the cap) and the guest traps on it, as
        // a guest's allocator does.
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (if (i32.eq (memory.grow (i32.const 1000)) (i32.const -1)) (then unreachable))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).memory_limit(4 << 20).build(&wasm).unwrap();
        let got = send(&plugin, get("/")).await;
        assert_eq!(got.status, 500);
        assert_eq!(plugin.metrics().request_failures, 1);
        let plugin = builder(engine).memory_limit(256 << 20).build(&wasm).unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 200, "within the cap");
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn initial_memory_over_the_cap_is_a_load_error(engine) {
        // The harness module asks for 40 pages (2.5 MiB) at start.
        let wasm = module(&format!(r#"(func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#));
        let err = builder(engine).memory_limit(1 << 20).build(&wasm).unwrap_err();
        assert!(err.is_load(), "{err}");
        assert!(err.to_string().contains("over the instance's 1048576-byte cap"), "{err}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn deep_recursion_is_a_clean_500(engine) {
        let wasm = module(&format!(
            r#"(func $down (param i64) (result i64) (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
  (func (export "handle_request") (result i64) (drop (call $down (i64.const 0))) (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).pool_size(1).build(&wasm).unwrap();
        let got = send(&plugin, get("/")).await;
        assert_eq!(got.status, 500, "stack overflow");
        assert_eq!(&got.body[..], b"Internal Server Error\n", "no engine text");
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn a_module_without_memory_is_a_load_error(engine) {
        let wasm = wat::parse_str(
            r#"(module (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)))"#,
        )
        .unwrap();
        let err = builder(engine).build(&wasm).unwrap_err();
        assert!(err.is_load(), "{err}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_request_waiting_too_long_for_an_instance_gets_503(engine) {
        let wasm = module(&format!(r#"(func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#));
        let plugin = builder(engine).pool_size(1).pool_wait(Duration::from_millis(50)).build(&wasm).unwrap();
        let (hold, release) = tokio::sync::oneshot::channel::<()>();
        let release = Arc::new(Mutex::new(Some(release)));
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(
            move |req: http::Request<tower_http_wasm::RequestBody>| {
                let release = release.clone();
                async move {
                    if req.uri().path() == "/slow" {
                        let rx = release.lock().unwrap().take();
                        if let Some(rx) = rx {
                            let _ = rx.await;
                        }
                    }
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::<Bytes>::default()))
                }
            },
        );
        let slow = tokio::spawn(svc.clone().oneshot(get("/slow")));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let res = svc.clone().oneshot(get("/fast")).await.unwrap();
        assert_eq!(res.status(), 503);
        drop(hold);
        assert_eq!(slow.await.unwrap().unwrap().status(), 200);
        assert_eq!(svc.clone().oneshot(get("/fast")).await.unwrap().status(), 200);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn bodies_past_the_buffer_limit_are_clean_failures_in_both_directions(engine) {
        // With buffer_response: a response body over the limit is a clean 502
        // after handle_response saw is_error = 1 (the guest records it in a global
        // the next request reports). A guest writing past the limit fails too:
        // a 500 (its fault), never a 413 (which blames the client).
        let wasm = module(
            r#"(data (i32.const 0) "x-write")
  (data (i32.const 16) "x-was-error")
  (global $was_error (mut i32) (i32.const 0))
  (func (export "_start") (drop (call $enable_features (i32.const 2))))
  (func (export "handle_request") (result i64)
    (if (global.get $was_error)
      (then (call $set_header_value (i32.const 1) (i32.const 16) (i32.const 11) (i32.const 16) (i32.const 1))))
    (if (i64.ne (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 7) (i32.const 2048) (i32.const 100)) (i64.const 0))
      (then (call $write_body (i32.const 1) (i32.const 4096) (i32.const 5000))))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (global.set $was_error (local.get 1)))"#,
        );
        let plugin = builder(engine).pool_size(1).body_limit(4096).build(&wasm).unwrap();
        // The echo sends the request body back: 5000 bytes, over the limit.
        let got = send(&plugin, post("/", vec![b'x'; 5000])).await;
        assert_eq!((got.status, &got.body[..]), (502, &b"Bad Gateway\n"[..]));
        // Not the guest's failure: its instance serves on, and it saw is_error = 1.
        let got = send(&plugin, post("/", vec![b'x'; 4000])).await;
        assert_eq!((got.status, got.body.len()), (200, 4000));
        assert_eq!(got.header("x-was-error"), "x", "handle_response saw is_error");
        let req = http::Request::get("/").header("x-write", "1").body(Full::<Bytes>::default()).unwrap();
        let got = send(&plugin, req).await;
        assert_eq!(got.status, 500, "a guest writing past the limit");
        let m = plugin.metrics();
        assert_eq!(
            (m.response_bodies_failed, m.response_failures, m.request_failures, m.bodies_too_large),
            (1, 0, 1, 0),
            "{m:?}"
        );
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_slow_body_for_a_buffering_guest_holds_no_instance(engine) {
        // One instance; a client trickles a body to a guest that buffers
        // requests. The body is collected before an instance is taken, so
        // another request is served meanwhile without waiting for the pool.
        let wasm = module(&format!(
            r#"(func (export "_start") (drop (call $enable_features (i32.const 1))))
  (func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).pool_size(1).pool_wait(Duration::from_secs(60)).build(&wasm).unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(4);
        let slow_body = http_body_util::StreamBody::new(stream_of(rx));
        let slow = tokio::spawn({
            let plugin = plugin.clone();
            async move { send(&plugin, http::Request::post("/slow").body(slow_body).unwrap()).await }
        });
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"first ")))).await.unwrap();
        while plugin.metrics().requests == 0 {
            tokio::task::yield_now().await;
        }
        let other = tokio::time::timeout(Duration::from_secs(30), send(&plugin, get("/other"))).await;
        assert_eq!(other.expect("served while the slow body arrives").status, 200);
        tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"last")))).await.unwrap();
        drop(tx);
        let slow = slow.await.unwrap();
        assert_eq!((slow.status, &slow.body[..]), (200, &b"first last"[..]));
        assert_eq!(plugin.metrics().pool_waits, 0);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn table_growth_past_the_cap_fails_cleanly(engine) {
        // As for memory: wasmtime traps at the grow, wasmer's grow returns -1
        // and the guest traps on it.
        let wasm = module(&format!(
            r#"(table $t 1 funcref)
  (func (export "handle_request") (result i64)
    (if (i32.eq (table.grow $t (ref.null func) (i32.const 5000)) (i32.const -1)) (then unreachable))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).table_limit(1000).build(&wasm).unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 500);
        let plugin = builder(engine).table_limit(10_000).build(&wasm).unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 200, "within the cap");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn headers_a_guest_writes_past_the_size_cap_fail_cleanly(engine) {
        // Adds a 1 KiB value to a response header 64 times: 64 KiB and more.
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-big")
  (func (export "handle_request") (result i64) (local $i i32)
    (loop $l
      (call $add_header_value (i32.const 1) (i32.const 0) (i32.const 5) (i32.const 1024) (i32.const 1024))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 64))))
    (i64.const 0))
  {NOOP_RESPONSE}
  (data (i32.const 1024) "{value}")"#,
            value = "v".repeat(1024)
        ));
        let plugin = builder(engine).header_limit(16 << 10).build(&wasm).unwrap();
        let got = send(&plugin, get("/")).await;
        assert_eq!((got.status, &got.body[..]), (500, &b"Internal Server Error\n"[..]));
        let plugin = builder(engine).header_limit(128 << 10).build(&wasm).unwrap();
        let got = send(&plugin, get("/")).await;
        assert_eq!((got.status, got.headers.get_all("x-big").iter().count()), (200, 64), "within the cap");
    }
}

/// Runs `f` on its own thread and fails if it has not returned within
/// `bound`: a hang becomes a failure instead of a stuck test binary.
fn within<T: Send + 'static>(bound: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(bound).unwrap_or_else(|_| panic!("{what}: still running after {bound:?}: the host hangs"))
}

tower_http_wasm::per_engine! {
    #[test]
    fn a_guest_looping_on_host_calls_is_stopped_at_the_deadline(engine) {
        // A loop that spends nearly all its time in host calls: wasmer's
        // interrupt signal used to land inside the host-call path (in
        // `malloc`) and deadlock the instance thread, hanging the host. Each
        // start runs on a fresh instance, so each is a new chance.
        let looping = |export: &str| {
            module(&format!(
                r#"(func (export "{export}") {result} (loop $l (drop (call $log_enabled (i32.const 0))) (br $l)) {value})
  {rest}"#,
                result = if export == "_start" { "" } else { "(result i64)" },
                value = if export == "_start" { "" } else { "(i64.const 1)" },
                rest = if export == "_start" {
                    format!(r#"(func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#)
                } else {
                    NOOP_RESPONSE.to_string()
                },
            ))
        };
        let start = looping("_start");
        within(Duration::from_secs(60), "40 looping starts", move || {
            for _ in 0..40 {
                let err = builder(engine).deadline(Duration::from_millis(20)).build(&start).unwrap_err();
                assert!(err.is_start(), "{err}");
            }
        });
        let request = looping("handle_request");
        let statuses = within(Duration::from_secs(60), "40 looping requests", move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            let plugin = builder(engine).deadline(Duration::from_millis(20)).build(&request).unwrap();
            rt.block_on(async {
                let mut statuses = Vec::new();
                for _ in 0..40 {
                    statuses.push(send(&plugin, get("/")).await.status);
                }
                statuses
            })
        });
        assert!(statuses.iter().all(|s| *s == 500), "{statuses:?}");
    }
}
