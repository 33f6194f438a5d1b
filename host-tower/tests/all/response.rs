//! The response side: short-circuit, merge rules, buffer_response, is_error.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::ServiceExt;
use tower_http_wasm::HttpWasmLayer;

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn short_circuit_sends_the_guests_response(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-guest")
  (data (i32.const 16) "hello")
  (func (export "handle_request") (result i64)
    (call $set_status_code (i32.const 418))
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 5))
    (call $write_body (i32.const 1) (i32.const 16) (i32.const 5))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), get("/")).await;
        assert_eq!(got.status, 418);
        assert_eq!(got.header("x-guest"), "hello");
        assert_eq!(&got.body[..], b"hello");
        assert!(got.headers.get("x-echo-uri").is_none(), "next must not run");
        assert!(got.headers.get("content-type").is_none(), "nothing invented");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn guest_status_and_body_before_next_survive_an_empty_200(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 16) "from guest")
  (func (export "handle_request") (result i64)
    (call $set_status_code (i32.const 201))
    (call $write_body (i32.const 1) (i32.const 16) (i32.const 10))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), get("/")).await;
        assert_eq!(got.status, 201);
        assert_eq!(&got.body[..], b"from guest");
        assert_eq!(got.header("x-echo-uri"), "/", "next ran");
    }
}

fn rewriter() -> Vec<u8> {
    module(
        r#"(data (i32.const 0) "[]")
  (data (i32.const 8) "x-ctx")
  (data (i32.const 16) "seven")
  (func (export "handle_request") (result i64)
    (drop (call $enable_features (i32.const 2)))
    (i64.const 0x700000001))
  (func (export "handle_response") (param $ctx i32) (param $err i32) (local $r i64)
    (call $assert (i32.eq (local.get $ctx) (i32.const 7)))
    (call $assert (i32.eqz (local.get $err)))
    (call $assert (i32.eq (call $get_status_code) (i32.const 200)))
    (call $set_status_code (i32.const 202))
    (local.set $r (call $read_body (i32.const 1) (i32.const 4096) (i32.const 60000)))
    (call $assert (i64.ne (i64.shr_u (local.get $r) (i64.const 32)) (i64.const 0)))
    (call $write_body (i32.const 1) (i32.const 0) (i32.const 1))
    (call $write_body (i32.const 1) (i32.const 4096) (i32.wrap_i64 (local.get $r)))
    (call $write_body (i32.const 1) (i32.const 1) (i32.const 1))
    (call $set_header_value (i32.const 1) (i32.const 8) (i32.const 5) (i32.const 16) (i32.const 5)))"#,
    )
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn buffer_response_reads_and_rewrites_status_headers_body(engine) {
        let got = send(&load(engine, &rewriter()), post("/", "hello")).await;
        assert_eq!(got.status, 202);
        assert_eq!(&got.body[..], b"[hello]");
        assert_eq!(got.header("content-length"), "7");
        assert_eq!(got.header("x-ctx"), "seven");
        assert_eq!(got.header("x-echo-len"), "5", "inner headers kept");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn buffer_response_read_only_keeps_the_original_bytes(engine) {
        let wasm = module(
            r#"(func (export "handle_request") (result i64)
    (drop (call $enable_features (i32.const 2)))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32) (local $r i64)
    (loop $more
      (local.set $r (call $read_body (i32.const 1) (i32.const 4096) (i32.const 1000)))
      (br_if $more (i64.eqz (i64.shr_u (local.get $r) (i64.const 32))))))"#,
        );
        let body: Bytes = vec![7u8; 50_000].into();
        let got = send(&load(engine, &wasm), post("/", body.clone())).await;
        assert_eq!(got.body, body);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn response_changes_after_next_need_buffer_response(engine) {
        for call in [
            "(call $set_status_code (i32.const 500))",
            "(call $set_header_value (i32.const 1) (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 3))",
            "(call $write_body (i32.const 1) (i32.const 0) (i32.const 3))",
            "(drop (call $read_body (i32.const 1) (i32.const 0) (i32.const 3)))",
            "(call $set_header_value (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 3))",
        ] {
            let wasm = module(&format!(
                r#"(data (i32.const 0) "x-a")
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32) {call})"#
            ));
            let got = send(&load(engine, &wasm), get("/")).await;
            assert_eq!(got.status, 500, "{call}");
            assert_eq!(&got.body[..], b"Internal Server Error\n", "{call}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn is_error_reaches_handle_response_when_next_fails(engine) {
        // handle_response records is_error; the next request reports it.
        let wasm = module(
            r#"(global $last (mut i32) (i32.const 9))
  (data (i32.const 0) "019")
  (func (export "handle_request") (result i64)
    (call $out (i32.add (i32.const 0) (select (i32.const 2) (global.get $last) (i32.eq (global.get $last) (i32.const 9)))) (i32.const 1))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32) (global.set $last (local.get 1)))"#,
        );
        let plugin = builder(engine).pool_size(1).build(&wasm).unwrap();
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(
            |req: http::Request<tower_http_wasm::RequestBody>| async move {
                if req.uri().path() == "/fail" {
                    Err::<http::Response<Full<Bytes>>, &str>("inner failed")
                } else {
                    Ok(http::Response::new(Full::default()))
                }
            },
        );
        let res = svc.clone().oneshot(get("/ok")).await.unwrap();
        assert_eq!(res.headers()["x-out"], "9", "nothing recorded yet");
        assert_eq!(svc.clone().oneshot(get("/fail")).await.unwrap_err(), "inner failed");
        let res = svc.clone().oneshot(get("/ok")).await.unwrap();
        assert_eq!(res.headers()["x-out"], "1", "is_error was 1");
        let res = svc.clone().oneshot(get("/ok")).await.unwrap();
        assert_eq!(res.headers()["x-out"], "0", "is_error was 0");
        let _ = res.into_body().collect().await;
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn head_204_and_304_responses_carry_no_guest_body(engine) {
        for (method, status) in [("HEAD", 200), ("GET", 204), ("GET", 304)] {
            let wasm = module(&format!(
                r#"(data (i32.const 16) "a body that must not be sent")
  (func (export "handle_request") (result i64)
    (call $set_status_code (i32.const {status}))
    (call $write_body (i32.const 1) (i32.const 16) (i32.const 28))
    (i64.const 0))
  {NOOP_RESPONSE}"#
            ));
            let req = http::Request::builder().method(method).uri("/").body(Full::<Bytes>::default()).unwrap();
            let got = send(&load(engine, &wasm), req).await;
            assert_eq!(got.status, status, "{method} {status}");
            assert!(got.body.is_empty(), "{method} {status}");
            assert!(got.headers.get("content-length").is_none(), "{method} {status}");
        }
    }
}
