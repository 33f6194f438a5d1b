//! The filter built to wasm (both targets), run through the real host on every engine.

use bytes::Bytes;
use tower_http_wasm::testing::TestHost;

fn hosts(engine: tower_http_wasm::Engine) -> Vec<TestHost> {
    let builds = http_wasm_guest_build::build_all("http-wasm-example-redact").unwrap_or_else(|e| panic!("{e}"));
    builds
        .iter()
        .map(|(_, wasm)| {
            TestHost::builder().config(r#"{"patterns":["card","email"]}"#).engine(engine).build(wasm).unwrap()
        })
        .collect()
}

tower_http_wasm::per_engine! {
    #[test]
    fn masks_both_ways_and_keeps_lengths_right(engine) {
        for host in hosts(engine) {
            let e = host.engine();
            let host = host
                .respond_with(|_| http::Response::new(Bytes::from_static(br#"{"contact":"ann@example.com","note":"ok"}"#)));
            let sent = r#"{"card":"4111 1111 1111 1111","name":"Ann"}"#;
            let res = host.post("/pay").header("content-type", "application/json").body(sent).send();
            res.assert_status(200);
            let got = res.received();
            assert_eq!(std::str::from_utf8(&got.body).unwrap(), r#"{"card":"*******************","name":"Ann"}"#, "[{e}]");
            assert_eq!(got.headers["content-length"], got.body.len().to_string(), "[{e}] request length");
            assert_eq!(res.text(), r#"{"contact":"***************","note":"ok"}"#, "[{e}]");
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn untouched_bodies_pass_unchanged(engine) {
        for host in hosts(engine) {
            let e = host.engine();
            let body = r#"{"nothing":"secret here"}"#;
            let res = host.post("/").body(body).send();
            assert_eq!(res.received().body, body.as_bytes(), "[{e}]");
            assert_eq!(res.received().headers["content-length"], body.len().to_string(), "[{e}]");
        }
    }
}
