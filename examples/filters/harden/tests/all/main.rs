//! The filter built to wasm (both targets), run through the real host on every engine.

use bytes::Bytes;
use tower_http_wasm::testing::TestHost;

fn hosts(engine: tower_http_wasm::Engine, config: &str) -> Vec<TestHost> {
    let builds = http_wasm_guest_build::build_all("http-wasm-example-harden").unwrap_or_else(|e| panic!("{e}"));
    builds
        .iter()
        .map(|(_, wasm)| TestHost::builder().config(config.to_string()).engine(engine).build(wasm).unwrap())
        .collect()
}

tower_http_wasm::per_engine! {
    #[test]
    fn adds_security_headers_to_every_response(engine) {
        for host in hosts(engine, "") {
            let host = host.respond_with(|_| {
                let mut r = http::Response::new(Bytes::from_static(b"page"));
                r.headers_mut().insert("x-frame-options", "SAMEORIGIN".parse().unwrap());
                r
            });
            let res = host.get("/").send();
            res.assert_status(200)
                .assert_body("page")
                .assert_header("x-content-type-options", "nosniff")
                .assert_header("x-frame-options", "DENY")
                .assert_header("referrer-policy", "no-referrer")
                .assert_header("strict-transport-security", "max-age=63072000");
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn extra_headers_from_config(engine) {
        for host in hosts(engine, r#"{"content-security-policy":"default-src 'self'"}"#) {
            host.get("/")
                .send()
                .assert_header("content-security-policy", "default-src 'self'")
                .assert_header("x-frame-options", "DENY");
        }
    }
}
