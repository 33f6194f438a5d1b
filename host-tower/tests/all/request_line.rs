//! Method, URI, protocol, config, features, logging, and the buffer-limit protocol.

use crate::harness::*;
use http_body_util::Full;

/// A guest that copies `getter`'s value to the response header `x-out` and
/// answers without next.
fn copy_to_header(getter: &str) -> Vec<u8> {
    module(&format!(
        r#"(func (export "handle_request") (result i64) (local $n i32)
    (local.set $n (call ${getter} (i32.const 2048) (i32.const 4096)))
    (call $out (i32.const 2048) (local.get $n))
    (i64.const 0))
  {NOOP_RESPONSE}"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn get_method_reports_every_method(engine) {
        let plugin = load(engine, &copy_to_header("get_method"));
        for m in ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"] {
            let req = http::Request::builder().method(m).uri("/").body(Full::default()).unwrap();
            let got = send(&plugin, req).await;
            assert_eq!(got.header("x-out"), m);
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn get_uri_is_encoded_path_and_query(engine) {
        let plugin = load(engine, &copy_to_header("get_uri"));
        for uri in ["/", "/v1.0/hi", "/v1.0/hello?name=teddy", "/disney?name=chip%26dale", "/%E2%9C%93?q=%20"] {
            let got = send(&plugin, get(uri)).await;
            assert_eq!(got.header("x-out"), uri);
        }
        // An absolute-form target reports only path and query.
        let got = send(&plugin, get("http://example.com/a?b")).await;
        assert_eq!(got.header("x-out"), "/a?b");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn get_protocol_version_follows_the_request(engine) {
        let plugin = load(engine, &copy_to_header("get_protocol_version"));
        for (v, s) in [
            (http::Version::HTTP_10, "HTTP/1.0"),
            (http::Version::HTTP_11, "HTTP/1.1"),
            (http::Version::HTTP_2, "HTTP/2.0"),
        ] {
            let req = http::Request::builder().version(v).uri("/").body(Full::default()).unwrap();
            assert_eq!(send(&plugin, req).await.header("x-out"), s);
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn set_method_and_set_uri_reach_next(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "PATCH")
  (data (i32.const 16) "/disney?name=chip%26dale")
  (func (export "handle_request") (result i64)
    (call $set_method (i32.const 0) (i32.const 5))
    (call $set_uri (i32.const 16) (i32.const 24))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), get("/old?x=1")).await;
        assert_eq!(got.header("x-echo-method"), "PATCH");
        assert_eq!(got.header("x-echo-uri"), "/disney?name=chip%26dale");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn set_uri_empty_means_root(engine) {
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (call $set_uri (i32.const 0) (i32.const 0))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), get("/some/path?q")).await;
        assert_eq!(got.header("x-echo-uri"), "/");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn invalid_method_and_uri_are_guest_errors(engine) {
        for call in [
            "(call $set_method (i32.const 0) (i32.const 0))",
            "(call $set_method (i32.const 0) (i32.const 3))",
            "(call $set_uri (i32.const 0) (i32.const 3))",
        ] {
            let wasm = module(&format!(
                r#"(data (i32.const 0) "a b")
  (func (export "handle_request") (result i64) {call} (i64.const 1))
  {NOOP_RESPONSE}"#
            ));
            let got = send(&load(engine, &wasm), get("/")).await;
            assert_eq!(got.status, 500, "{call}");
            assert_eq!(&got.body[..], b"Internal Server Error\n", "no detail leaks");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn get_config_returns_raw_bytes(engine) {
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64) (local $n i32)
    (local.set $n (call $get_config (i32.const 2048) (i32.const 4096)))
    (call $write_body (i32.const 1) (i32.const 2048) (local.get $n))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let config: &[u8] = b"{\"a\":1}\xff\x00\x01";
        let plugin = builder(engine).config(config.to_vec()).build(&wasm).unwrap();
        let got = send(&plugin, get("/")).await;
        assert_eq!(&got.body[..], config);
        assert_eq!(got.header("content-length"), "10");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn buffer_limit_protocol_for_every_reader(engine) {
        // For each reader: limit 0 and one byte short write nothing and return
        // the full length; an exact limit writes the value.
        for (getter, expect) in [
            ("get_method", "GET"),
            ("get_uri", "/abc?d=e"),
            ("get_protocol_version", "HTTP/1.1"),
            ("get_config", "cfg!"),
            ("get_source_addr", "10.0.0.1:1234"),
        ] {
            let n = expect.len();
            let wasm = module(&format!(
                r#"(func (export "handle_request") (result i64)
    (i32.store8 (i32.const 2048) (i32.const 42))
    (call $assert (i32.eq (call ${getter} (i32.const 2048) (i32.const 0)) (i32.const {n})))
    (call $assert (i32.eq (i32.load8_u (i32.const 2048)) (i32.const 42)))
    (call $assert (i32.eq (call ${getter} (i32.const 2048) (i32.const {short})) (i32.const {n})))
    (call $assert (i32.eq (i32.load8_u (i32.const 2048)) (i32.const 42)))
    (call $assert (i32.eq (call ${getter} (i32.const 2048) (i32.const {n})) (i32.const {n})))
    (call $out (i32.const 2048) (i32.const {n}))
    (i64.const 0))
  {NOOP_RESPONSE}"#,
                short = n - 1
            ));
            let plugin = builder(engine).config("cfg!").build(&wasm).unwrap();
            let mut req = get("/abc?d=e");
            req.extensions_mut().insert(tower_http_wasm::SourceAddr("10.0.0.1:1234".parse().unwrap()));
            let got = send(&plugin, req).await;
            assert_eq!(got.status, 200, "{getter}: {:?}", got.body);
            assert_eq!(got.header("x-out"), expect, "{getter}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn features_unknown_bits_not_reported_and_per_request_scope(engine) {
        // Module level: the start function enables buffer_response.
        // Per request: buffer_request, only for that request.
        let wasm = module(&format!(
            r#"(global $n (mut i32) (i32.const 0))
  (func $init (drop (call $enable_features (i32.const 2))))
  (start $init)
  (func (export "handle_request") (result i64)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (if (i32.eq (global.get $n) (i32.const 1))
      (then
        ;; first request: unknown 1024 is dropped; 1|2 now enabled
        (call $assert (i32.eq (call $enable_features (i32.const 1025)) (i32.const 3))))
      (else
        ;; second request on the same instance: per-request bit gone
        (call $assert (i32.eq (call $enable_features (i32.const 0)) (i32.const 2)))))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).pool_size(1).build(&wasm).unwrap();
        assert_eq!(plugin.module_features(), tower_http_wasm::Features::BUFFER_RESPONSE);
        assert_eq!(send(&plugin, get("/")).await.status, 200, "first");
        assert_eq!(send(&plugin, get("/")).await.status, 200, "second");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn features_the_host_disallows_are_not_granted(engine) {
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (call $assert (i32.eq (call $enable_features (i32.const 7)) (i32.const 3)))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine)
            .features(tower_http_wasm::Features::BUFFER_REQUEST | tower_http_wasm::Features::BUFFER_RESPONSE)
            .build(&wasm)
            .unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 200);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn log_enabled_follows_the_configured_level(engine) {
        use tower_http_wasm::LogLevel;
        let wasm = module(&format!(
            r#"(data (i32.const 0) "hello from the guest")
  (func (export "handle_request") (result i64)
    (call $assert (i32.eqz (call $log_enabled (i32.const -1))))
    (call $assert (i32.eqz (call $log_enabled (i32.const 0))))
    (call $assert (call $log_enabled (i32.const 1)))
    (call $assert (call $log_enabled (i32.const 2)))
    (call $assert (i32.eqz (call $log_enabled (i32.const 3))))
    (call $assert (i32.eqz (call $log_enabled (i32.const 99))))
    ;; log never traps, even with a bad level or pointer
    (call $log (i32.const 2) (i32.const 0) (i32.const 20))
    (call $log (i32.const 77) (i32.const 0) (i32.const 20))
    (call $log (i32.const 2) (i32.const -16) (i32.const 100))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).log_level(LogLevel::Warn).build(&wasm).unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 200);
    }
}
