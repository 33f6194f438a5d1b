//! Header functions: names, values, set, add, remove, kinds and trailers.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::Full;
use http_wasm_abi::{CountLen, NulList};

/// Body written by the list guests: 8 bytes of `count_len`, then the list.
fn decode(body: &[u8]) -> (CountLen, Vec<String>) {
    let cl = CountLen::decode(i64::from_le_bytes(body[..8].try_into().unwrap()));
    let list = NulList::with_count(&body[8..], cl).unwrap();
    (cl, list.iter().map(|i| String::from_utf8(i.to_vec()).unwrap()).collect())
}

/// A guest answering with `call`'s list (see [`decode`]); `call` leaves an i64.
fn list_guest(data: &str, call: &str, features: i32) -> Vec<u8> {
    module(&format!(
        r#"{data}
  (func (export "handle_request") (result i64) (local $cl i64)
    (drop (call $enable_features (i32.const {features})))
    (local.set $cl {call})
    (i64.store (i32.const 2040) (local.get $cl))
    (call $write_body (i32.const 1) (i32.const 2040)
      (i32.add (i32.const 8) (i32.wrap_i64 (i64.and (local.get $cl) (i64.const 0xffffffff)))))
    (i64.const 0))
  {NOOP_RESPONSE}"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn names_are_lowercase_sorted_and_include_host(engine) {
        let wasm = list_guest("", "(call $get_header_names (i32.const 0) (i32.const 2048) (i32.const 4096))", 0);
        let req = http::Request::get("http://example.com/")
            .header("Zeta", "1")
            .header("Accept", "x")
            .header("X-Multi", "a")
            .header("x-multi", "b")
            .body(Full::<Bytes>::default())
            .unwrap();
        let got = send(&load(engine, &wasm), req).await;
        let (cl, names) = decode(&got.body);
        assert_eq!(names, ["accept", "host", "x-multi", "zeta"]);
        assert_eq!(cl, CountLen { count: 4, len: 6 + 4 + 7 + 4 + 4 });
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn values_repeat_in_order_and_empty_is_a_lone_nul(engine) {
        for (name, expect, len) in
            [("x-multi", vec!["a", "bc"], 5), ("x-empty", vec![""], 1), ("X-MULTI", vec!["a", "bc"], 5)]
        {
            let n = name.len();
            let wasm = list_guest(
                &format!(r#"(data (i32.const 0) "{name}")"#),
                &format!(
                    "(call $get_header_values (i32.const 0) (i32.const 0) (i32.const {n}) (i32.const 2048) (i32.const 4096))"
                ),
                0,
            );
            let req = http::Request::get("/")
                .header("x-multi", "a")
                .header("x-multi", "bc")
                .header("x-empty", "")
                .body(Full::<Bytes>::default())
                .unwrap();
            let got = send(&load(engine, &wasm), req).await;
            let (cl, values) = decode(&got.body);
            assert_eq!(values, expect, "{name}");
            assert_eq!(cl, CountLen { count: expect.len() as u32, len }, "{name}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn absent_header_is_zero_and_list_limits_hold(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-none")
  (data (i32.const 16) "x-multi")
  (func (export "handle_request") (result i64)
    (call $assert (i64.eqz (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 6) (i32.const 2048) (i32.const 100))))
    (i32.store8 (i32.const 2048) (i32.const 42))
    ;; "a\0bc\0" is 5 bytes: a limit of 4 writes nothing and still reports 2<<32|5
    (call $assert (i64.eq (call $get_header_values (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 2048) (i32.const 4)) (i64.const 0x200000005)))
    (call $assert (i32.eq (i32.load8_u (i32.const 2048)) (i32.const 42)))
    (call $assert (i64.eq (call $get_header_values (i32.const 0) (i32.const 16) (i32.const 7) (i32.const 2048) (i32.const 5)) (i64.const 0x200000005)))
    (call $assert (i32.eq (i32.load8_u (i32.const 2048)) (i32.const 97)))
    (i64.const 0))
  {NOOP_RESPONSE}"#
        ));
        let req = http::Request::get("/")
            .header("x-multi", "a")
            .header("x-multi", "bc")
            .body(Full::<Bytes>::default())
            .unwrap();
        assert_eq!(send(&load(engine, &wasm), req).await.status, 200);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn set_add_remove_request_headers_reach_next(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-set")
  (data (i32.const 8) "x-add")
  (data (i32.const 16) "x-gone")
  (data (i32.const 32) "new")
  (data (i32.const 40) "two")
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const 0) (i32.const 0) (i32.const 5) (i32.const 32) (i32.const 3))
    (call $add_header_value (i32.const 0) (i32.const 8) (i32.const 5) (i32.const 40) (i32.const 3))
    (call $remove_header (i32.const 0) (i32.const 16) (i32.const 6))
    (call $remove_header (i32.const 0) (i32.const 16) (i32.const 6))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let req = http::Request::get("/")
            .header("x-set", "old1")
            .header("x-set", "old2")
            .header("x-add", "one")
            .header("x-gone", "bye")
            .body(Full::<Bytes>::default())
            .unwrap();
        let got = send(&load(engine, &wasm), req).await;
        let all = |n: &str| got.headers.get_all(n).iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(all("x-echo-h-x-set"), ["new"]);
        assert_eq!(all("x-echo-h-x-add"), ["one", "two"]);
        assert!(got.headers.get("x-echo-h-x-gone").is_none());
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn response_headers_set_before_next_are_kept_alongside_the_inner_ones(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-guest")
  (data (i32.const 16) "yes")
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 16) (i32.const 3))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), get("/p")).await;
        assert_eq!(got.header("x-guest"), "yes");
        assert_eq!(got.header("x-echo-uri"), "/p");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn invalid_header_calls_trap(engine) {
        for (what, call) in [
            (
                "empty name",
                "(call $set_header_value (i32.const 0) (i32.const 0) (i32.const 0) (i32.const 16) (i32.const 1))",
            ),
            (
                "CR LF in value",
                "(call $set_header_value (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 32) (i32.const 9))",
            ),
            (
                "space in name",
                "(call $add_header_value (i32.const 0) (i32.const 48) (i32.const 3) (i32.const 16) (i32.const 1))",
            ),
            ("invalid kind", "(call $remove_header (i32.const 9) (i32.const 0) (i32.const 3))"),
            ("name out of bounds", "(call $remove_header (i32.const 0) (i32.const -8) (i32.const 64))"),
            (
                "values out of bounds",
                "(drop (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 3) (i32.const 2621430) (i32.const 100)))",
            ),
        ] {
            let wasm = module(&format!(
                r#"(data (i32.const 0) "x-a")
  (data (i32.const 16) "v")
  (data (i32.const 32) "a\0d\0ax-b: c")
  (data (i32.const 48) "a b")
  (func (export "handle_request") (result i64) {call} (i64.const 1))
  {NOOP_RESPONSE}"#
            ));
            let req = http::Request::get("/")
                .header("x-a", "a long enough value for the read")
                .body(Full::<Bytes>::default())
                .unwrap();
            let got = send(&load(engine, &wasm), req).await;
            assert_eq!(got.status, 500, "{what}");
            assert!(got.headers.get("x-echo-uri").is_none(), "{what}: next must not run");
        }
    }
}

fn with_trailers(body: &'static str, trailers: &[(&'static str, &'static str)]) -> http::Request<Frames> {
    let mut t = http::HeaderMap::new();
    for (k, v) in trailers {
        t.append(*k, v.parse().unwrap());
    }
    let frames = vec![http_body::Frame::data(Bytes::from_static(body.as_bytes())), http_body::Frame::trailers(t)];
    http::Request::post("/").body(Frames::new(frames)).unwrap()
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn trailers_when_enabled(engine) {
        // Reads the request trailer x-t, sets request trailer x-added and
        // response trailer x-rt, answers with the value read.
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-t")
  (data (i32.const 8) "x-added")
  (data (i32.const 16) "x-rt")
  (data (i32.const 24) "v")
  (func (export "handle_request") (result i64) (local $cl i64)
    (call $assert (i32.eq (call $enable_features (i32.const 4)) (i32.const 4)))
    (local.set $cl (call $get_header_values (i32.const 2) (i32.const 0) (i32.const 3) (i32.const 2048) (i32.const 100)))
    (call $assert (i64.eq (local.get $cl) (i64.const 0x100000004)))
    (call $out (i32.const 2048) (i32.const 3))
    (call $set_header_value (i32.const 2) (i32.const 8) (i32.const 7) (i32.const 24) (i32.const 1))
    (call $set_header_value (i32.const 3) (i32.const 16) (i32.const 4) (i32.const 24) (i32.const 1))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), with_trailers("data", &[("x-t", "abc")])).await;
        assert_eq!(got.status, 200, "{:?}", got.body);
        assert_eq!(got.header("x-out"), "abc");
        // The next handler got the whole body and both trailers, not as headers.
        assert_eq!(&got.body[..], b"data");
        assert_eq!(got.header("x-echo-t-x-t"), "abc");
        assert_eq!(got.header("x-echo-t-x-added"), "v");
        assert!(got.headers.get("x-echo-h-x-added").is_none());
        let rt = got.trailers.as_ref().expect("response trailers");
        assert_eq!(rt["x-rt"], "v");
        assert!(got.headers.get("x-rt").is_none(), "a trailer is not a header");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn trailers_when_not_enabled_read_nothing_and_writes_trap(engine) {
        let read = module(&format!(
            r#"(data (i32.const 0) "x-t")
  (func (export "handle_request") (result i64)
    (call $assert (i64.eqz (call $get_header_names (i32.const 2) (i32.const 2048) (i32.const 100))))
    (call $assert (i64.eqz (call $get_header_values (i32.const 2) (i32.const 0) (i32.const 3) (i32.const 2048) (i32.const 100))))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).features(tower_http_wasm::Features::BUFFER_REQUEST).build(&read).unwrap();
        let got = send(&plugin, with_trailers("data", &[("x-t", "abc")])).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-echo-t-x-t"), "abc", "trailers still pass through");

        let write = module(&format!(
            r#"(data (i32.const 0) "x-t")
  (func (export "handle_request") (result i64)
    (call $assert (i32.eqz (call $enable_features (i32.const 4))))
    (call $set_header_value (i32.const 3) (i32.const 0) (i32.const 3) (i32.const 0) (i32.const 1))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).features(tower_http_wasm::Features::NONE).build(&write).unwrap();
        assert_eq!(send(&plugin, get("/")).await.status, 500);
    }
}

/// Copies request header `x-in` and the request URI into response headers
/// `x-saw` and `x-uri` in `handle_response`, called directly or through a
/// table (`indirect`).
fn reads_request_after_next(indirect: bool) -> Vec<u8> {
    let call = if indirect { "(call_indirect (type $copy_t) (i32.const 0))" } else { "(call $copy)" };
    module(&format!(
        r#"(data (i32.const 0) "x-in")
  (data (i32.const 8) "x-saw")
  (data (i32.const 16) "x-uri")
  (type $copy_t (func))
  (table 1 funcref)
  (elem (i32.const 0) $copy)
  (func (export "_start") (drop (call $enable_features (i32.const 2))))
  (func $copy (local $len i32)
    (local.set $len (i32.wrap_i64 (call $get_header_values (i32.const 0) (i32.const 0) (i32.const 4) (i32.const 1024) (i32.const 256))))
    ;; one value: 'x-in' bytes then a NUL; drop the NUL
    (call $set_header_value (i32.const 1) (i32.const 8) (i32.const 5) (i32.const 1024) (i32.sub (local.get $len) (i32.const 1)))
    (local.set $len (call $get_uri (i32.const 2048) (i32.const 256)))
    (call $set_header_value (i32.const 1) (i32.const 16) (i32.const 5) (i32.const 2048) (local.get $len)))
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32) {call})"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn request_headers_and_uri_stay_readable_in_handle_response(engine) {
        // The host keeps a copy past next only when handle_response can read
        // them: here directly, or through a table (which it cannot see through).
        for indirect in [false, true] {
            let plugin = load(engine, &reads_request_after_next(indirect));
            let req = http::Request::get("/where?q=1").header("x-in", "given").body(Full::<Bytes>::default()).unwrap();
            let got = send(&plugin, req).await;
            assert_eq!(got.status, 200, "indirect: {indirect}");
            assert_eq!(got.header("x-saw"), "given", "indirect: {indirect}");
            assert_eq!(got.header("x-uri"), "/where?q=1", "indirect: {indirect}");
            assert_eq!(got.header("x-echo-h-x-in"), "given", "the next handler got it too");
        }
    }
}
