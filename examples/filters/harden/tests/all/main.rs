//! The filter built to wasm (both targets), run through the real host on every engine.

use bytes::Bytes;
use tower_http_wasm::testing::TestHost;

fn hosts(config: &str) -> Vec<TestHost> {
    let builds = http_wasm_guest_build::build_all("http-wasm-example-harden").unwrap_or_else(|e| panic!("{e}"));
    builds
        .iter()
        .flat_map(|(_, wasm)| TestHost::builder().config(config.to_string()).build_each_engine(wasm).unwrap())
        .collect()
}

#[test]
fn adds_security_headers_to_every_response() {
    for host in hosts("") {
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

#[test]
fn extra_headers_from_config() {
    for host in hosts(r#"{"content-security-policy":"default-src 'self'"}"#) {
        host.get("/")
            .send()
            .assert_header("content-security-policy", "default-src 'self'")
            .assert_header("x-frame-options", "DENY");
    }
}
