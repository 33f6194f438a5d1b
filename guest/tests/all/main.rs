//! The SDK through the real host: the test guest is built from source with
//! the SDK for both wasm targets and run on every engine.

use http_wasm_guest_build::build_all;
use http_wasm_sdk::SCRATCH_LEN;
use tower_http_wasm::testing::TestHost;

/// The test guest on `engine`, built for both targets; each with a label.
fn hosts(engine: tower_http_wasm::Engine, config: &[u8]) -> Vec<(String, TestHost)> {
    let mut out = Vec::new();
    for (target, wasm) in build_all("http-wasm-sdk-test-guest").unwrap_or_else(|e| panic!("{e}")) {
        let builder = TestHost::builder()
            .engine(engine)
            .config(config.to_vec())
            .plugin(|p| p.body_limit(4 << 20).header_limit(4 << 20));
        let host = builder.build(&wasm).unwrap_or_else(|e| panic!("[{}] {e}", target.triple()));
        out.push((format!("{} {}", host.engine(), target.triple()), host));
    }
    out
}

tower_http_wasm::per_engine! {
    #[test]
    fn header_values_grow_the_buffer_without_truncation(engine) {
        for (name, host) in hosts(engine, b"") {
            for len in [1, SCRATCH_LEN - 1, SCRATCH_LEN, SCRATCH_LEN + 1, 1 << 20] {
                let value: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
                let res = host.get("/").header("x-case", "echo-header").header("x-value", &value).send();
                res.assert_status(200).assert_next_not_called();
                assert_eq!(res.body.len(), len, "[{name}] value of {len} bytes");
                assert!(res.body == value.as_bytes(), "[{name}] value of {len} bytes differs");
            }
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn config_of_one_mebibyte_is_read_whole(engine) {
        let config = vec![0xffu8; 1 << 20];
        for (name, host) in hosts(engine, &config) {
            let res = host.get("/").header("x-case", "config-len").send();
            assert_eq!(res.text(), (1 << 20).to_string(), "[{name}]");
        }
        for (name, host) in hosts(engine, b"x") {
            assert_eq!(host.get("/").header("x-case", "config-len").send().text(), "1", "[{name}]");
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn bodies_are_read_whole_and_streamed(engine) {
        for (name, host) in hosts(engine, b"") {
            for len in [0, 1, SCRATCH_LEN, 5000, 1 << 20] {
                let body = vec![b'z'; len];
                for case in ["body-len", "stream"] {
                    let res = host.post("/").header("x-case", case).body(body.clone()).send();
                    assert_eq!(res.text(), len.to_string(), "[{name}] {case} {len}");
                }
            }
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn rewrite_reaches_next_and_a_panic_is_a_500(engine) {
        for (name, host) in hosts(engine, b"") {
            let res = host.get("/old").header("x-case", "rewrite").header("x-remove", "1").send();
            res.assert_status(200);
            let seen = res.received();
            assert_eq!(seen.method, "PUT", "[{name}]");
            assert_eq!(seen.uri, "/rewritten?x=1", "[{name}]");
            let added: Vec<_> = seen.headers.get_all("x-added").iter().map(|v| v.to_str().unwrap()).collect();
            assert_eq!(added, ["1", "2"], "[{name}]");
            assert_eq!(seen.headers["x-set"], "3", "[{name}]");
            assert!(seen.headers.get("x-remove").is_none(), "[{name}]");

            host.get("/").header("x-case", "panic").send().assert_status(500).assert_next_not_called();
            // The host keeps serving after the trap.
            host.get("/").send().assert_status(200).assert_next_called();
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn request_info_reports_the_request(engine) {
        for (name, host) in hosts(engine, b"") {
            let res = host.get("/p/a?q=1").header("x-case", "request-info").send();
            let lines: Vec<&str> = std::str::from_utf8(&res.body).unwrap().lines().collect();
            assert_eq!(&lines[..5], ["GET", "/p/a?q=1", "/p/a", "q=1", "HTTP/1.1"], "[{name}] {lines:?}");
        }
    }
}
