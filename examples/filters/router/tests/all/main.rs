//! The filter built to wasm (both targets), run through the real host on every engine.

use tower_http_wasm::testing::TestHost;

const CONFIG: &str = r#"{"routes":[
  {"prefix":"/api","to":"/v1","header":"api"},
  {"prefix":"/static","header":"assets"}
]}"#;

fn hosts(engine: tower_http_wasm::Engine) -> Vec<TestHost> {
    let builds = http_wasm_guest_build::build_all("http-wasm-example-router").unwrap_or_else(|e| panic!("{e}"));
    builds.iter().map(|(_, wasm)| TestHost::builder().config(CONFIG).engine(engine).build(wasm).unwrap()).collect()
}

tower_http_wasm::per_engine! {
    #[test]
    fn prefixes_rewrite_keep_encoding_and_tag(engine) {
        for host in hosts(engine) {
            let e = host.engine();
            let res = host.get("/api/users?id=%2F7&q=a%20b").header("x-route", "spoofed").send();
            res.assert_status(200);
            assert_eq!(res.received().uri, "/v1/users?id=%2F7&q=a%20b", "[{e}]");
            assert_eq!(res.received().headers["x-route"], "api", "[{e}]");
            assert_eq!(res.received().headers.get_all("x-route").iter().count(), 1, "[{e}]");

            let res = host.get("/static/app.js").send();
            assert_eq!(res.received().uri, "/static/app.js", "[{e}]");
            assert_eq!(res.received().headers["x-route"], "assets", "[{e}]");
        }
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn unknown_prefixes_get_404_from_the_guest(engine) {
        for host in hosts(engine) {
            host.get("/apix").send().assert_status(404).assert_next_not_called();
            host.get("/").send().assert_status(404).assert_next_not_called();
        }
    }
}
