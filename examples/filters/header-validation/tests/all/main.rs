//! The filter built to wasm (both targets), run through the real host on every engine.

use tower_http_wasm::testing::TestHost;

mod size;

fn hosts(engine: tower_http_wasm::Engine, config: &str) -> Vec<TestHost> {
    let builds =
        http_wasm_guest_build::build_all("http-wasm-example-header-validation").unwrap_or_else(|e| panic!("{e}"));
    builds
        .iter()
        .map(|(_, wasm)| TestHost::builder().config(config.to_string()).engine(engine).build(wasm).unwrap())
        .collect()
}

tower_http_wasm::per_engine! {
    #[test]
    fn bearer_missing_malformed_and_valid(engine) {
        for host in hosts(engine, r#"{"header":"authorization","kind":"bearer"}"#) {
            let e = host.engine();
            let res = host.get("/").send();
            res.assert_status(401).assert_next_not_called().assert_header("www-authenticate", "Bearer");
            host.get("/").header("authorization", "Basic abc").send().assert_status(400).assert_next_not_called();
            host.get("/").header("authorization", "Bearer a b").send().assert_status(400).assert_next_not_called();
            let ok = host.get("/x").header("authorization", "Bearer abc.DEF-123~+/==").send();
            ok.assert_status(200).assert_next_called();
            assert_eq!(ok.received().uri, "/x", "[{e}]");
            host.get("/").header("authorization", "bearer token").send().assert_status(200);
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn api_key_with_minimum_length(engine) {
        for host in hosts(engine, r#"{"header":"x-api-key","kind":"api_key","min_len":16}"#) {
            host.get("/").send().assert_status(401).assert_next_not_called();
            host.get("/").header("x-api-key", "short").send().assert_status(400);
            host.get("/").header("x-api-key", "0123456789abcdef!").send().assert_status(400);
            host.get("/").header("X-API-KEY", "0123456789abcdef").send().assert_status(200).assert_next_called();
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn invalid_config_fails_the_load_or_the_request(engine) {
        let builds = http_wasm_guest_build::build_all("http-wasm-example-header-validation").unwrap();
        for (target, wasm) in builds {
            let built = TestHost::builder().engine(engine).config(r#"{"header":"x"}"#).build(&wasm);
            // Built at start on wasm32-unknown-unknown (load error), or on the
            // first request on wasm32-wasip1 (a 500, never a pass).
            match built {
                Err(e) => assert!(e.is_start(), "[{target:?}] {e}"),
                Ok(host) => {
                    host.get("/").send().assert_status(500).assert_next_not_called();
                }
            }
        }
    }
}
