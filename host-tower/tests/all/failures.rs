//! Traps and invalid guest results become clean responses; the host keeps serving.

use crate::harness::*;
use bytes::Bytes;
use tower::ServiceExt;
use tower_http_wasm::HttpWasmLayer;

/// Traps in `handle_request` when the request has header `x-trap`, in
/// `handle_response` when it has `x-trap-late`.
fn trapper() -> Vec<u8> {
    module(
        r#"(data (i32.const 0) "x-trap")
  (data (i32.const 8) "x-trap-late")
  (global $late (mut i32) (i32.const 0))
  (func (export "handle_request") (result i64)
    (if (i64.ne (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 2048) (i32.const 100)) (i64.const 0))
      (then unreachable))
    (global.set $late (i64.ne (call $get_header_values (i32.const 0) (i32.const 8) (i32.const 11) (i32.const 2048) (i32.const 100)) (i64.const 0)))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (if (global.get $late) (then unreachable)))"#,
    )
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_trap_in_each_phase_is_a_clean_500_and_serving_goes_on(engine) {
        let plugin = builder(engine).pool_size(1).build(trapper()).unwrap();
        for header in ["x-trap", "x-trap-late"] {
            let req =
                http::Request::get("/").header(header, "1").body(http_body_util::Full::<Bytes>::default()).unwrap();
            let got = send(&plugin, req).await;
            assert_eq!(got.status, 500, "{header}");
            assert_eq!(&got.body[..], b"Internal Server Error\n", "{header}: no engine text");
            assert_eq!(got.header("content-length"), "22", "{header}");
            // The trapped instance was discarded; a fresh one serves the next request.
            let got = send(&plugin, get("/after")).await;
            assert_eq!(got.status, 200, "after {header}");
            assert_eq!(got.header("x-echo-uri"), "/after", "after {header}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn next_flag_other_than_zero_or_one_is_a_guest_error(engine) {
        let wasm = module(&format!(r#"(func (export "handle_request") (result i64) (i64.const 2)) {NOOP_RESPONSE}"#));
        let got = send(&load(engine, &wasm), get("/")).await;
        assert_eq!(got.status, 500);
        assert!(got.headers.get("x-echo-uri").is_none());
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn failure_response_is_configurable(engine) {
        let plugin = load(engine, &trapper());
        let layer = HttpWasmLayer::new(plugin).failure_response(|e: &tower_http_wasm::Error| {
            assert!(e.is_guest());
            let mut res = http::Response::new(Bytes::from_static(b"custom"));
            *res.status_mut() = http::StatusCode::BAD_GATEWAY;
            res
        });
        let svc = tower::ServiceBuilder::new().layer(layer).service_fn(echo);
        let req = http::Request::get("/").header("x-trap", "1").body(http_body_util::Full::<Bytes>::default()).unwrap();
        let res = svc.oneshot(req).await.unwrap();
        assert_eq!(res.status(), 502);
        use http_body_util::BodyExt;
        assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"custom");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn host_calls_outside_a_request_are_start_errors(engine) {
        let wasm = module(&format!(
            r#"(func $init (drop (call $get_method (i32.const 0) (i32.const 10))))
  (start $init)
  (func (export "handle_request") (result i64) (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let err = builder(engine).build(&wasm).unwrap_err();
        assert!(err.is_start(), "{err}");
        assert!(err.is_load());
    }
}
