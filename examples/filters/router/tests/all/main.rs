//! The filter built to wasm (both targets), run through the real host on every engine.

use tower_http_wasm::testing::TestHost;

const CONFIG: &str = r#"{"routes":[
  {"prefix":"/api","to":"/v1","header":"api"},
  {"prefix":"/static","header":"assets"}
]}"#;

fn hosts() -> Vec<TestHost> {
    let builds = http_wasm_guest_build::build_all("http-wasm-example-router").unwrap_or_else(|e| panic!("{e}"));
    builds.iter().flat_map(|(_, wasm)| TestHost::builder().config(CONFIG).build_each_engine(wasm).unwrap()).collect()
}

#[test]
fn prefixes_rewrite_keep_encoding_and_tag() {
    for host in hosts() {
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

#[test]
fn unknown_prefixes_get_404_from_the_guest() {
    for host in hosts() {
        host.get("/apix").send().assert_status(404).assert_next_not_called();
        host.get("/").send().assert_status(404).assert_next_not_called();
    }
}
