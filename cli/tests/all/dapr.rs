//! `http-wasm serve --dapr` with the files of `examples/dapr`, a real
//! upstream on 127.0.0.1 and a real HTTP client.

use crate::process::{Server, get, run, tempdir};
use std::path::Path;

fn example_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/dapr"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_pipeline_runs_router_then_header_validation() {
    let dir = tempdir("dapr");
    for f in ["router.yaml", "header-validation.yaml", "pipeline.yaml"] {
        std::fs::copy(example_dir().join(f), dir.join(f)).unwrap();
    }
    let out = run(&dir, &["build-examples", "--out", "wasm"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let backend = http_wasm_conformance::backend::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let upstream = format!("http://{backend}");
    let server = Server::start(&dir, &["serve", "--dapr", ".", "--upstream", &upstream, "--listen", "127.0.0.1:0"]);
    let addr = server.addr;

    // No route: the router answers 404 before header-validation could say 401.
    let (status, headers, body) = get(addr, "/elsewhere", &[]).await;
    assert_eq!(status, 404, "{body}");
    assert!(!headers.contains_key("x-echo-method"), "the upstream was not called");

    // Routed, then rejected by the second filter.
    let (status, headers, _) = get(addr, "/api/users", &[]).await;
    assert_eq!(status, 401);
    assert!(!headers.contains_key("x-echo-method"));

    // Both passed: the upstream sees the router's rewrite and tag.
    let (status, headers, _) = get(
        addr,
        "/api/users?id=%2F7",
        &[
            ("x-api-key", "demo12345"),
            ("connection", "x-private"),
            ("x-private", "secret"),
            ("keep-alive", "timeout=5"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let h = |n: &str| headers.get(n).map(|v| v.to_str().unwrap().to_string());
    assert_eq!(h("x-echo-uri").as_deref(), Some("/v1/users?id=%2F7"));
    assert_eq!(h("x-echo-header-x-route").as_deref(), Some("api"));
    assert_eq!(h("x-echo-header-host"), Some(addr.to_string()), "host passes as the client sent it");
    for hop in ["x-echo-header-x-private", "x-echo-header-connection", "x-echo-header-keep-alive"] {
        assert_eq!(h(hop), None, "{hop} must not reach the upstream");
    }
    assert_eq!(h("content-type"), None, "no content-type invented");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dapr_errors_name_the_file_and_field() {
    let dir = tempdir("dapr-errors");
    std::fs::copy(example_dir().join("router.yaml"), dir.join("router.yaml")).unwrap();
    std::fs::write(
        dir.join("pipeline.yaml"),
        "kind: Configuration\nspec:\n  httpPipeline:\n    handlers:\n    - name: router\n      type: middleware.http.wasm\n    - name: missing\n      type: middleware.http.wasm\n",
    )
    .unwrap();
    let out = run(&dir, &["serve", "--dapr", ".", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("pipeline.yaml: spec.httpPipeline.handlers[1].name: no Component named \"missing\""),
        "{stderr}"
    );
    std::fs::remove_file(dir.join("pipeline.yaml")).unwrap();
    // One component alone is used without a Configuration, but its module is not there.
    let out = run(&dir, &["serve", "--dapr", "router.yaml", "--listen", "127.0.0.1:0"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("router.yaml: Component \"router\": spec.metadata url") && stderr.contains("wasm/router.wasm"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_upstream_gives_502() {
    let dir = tempdir("502");
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let upstream = format!("http://127.0.0.1:{port}");
    let server = Server::start(&dir, &["serve", "--upstream", &upstream, "--listen", "127.0.0.1:0"]);
    let (status, _, body) = get(server.addr, "/", &[]).await;
    assert_eq!(status, 502);
    assert_eq!(body, "Bad Gateway\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_serves_the_built_in_filters() {
    let dir = tempdir("demo");
    let server = Server::start(&dir, &["serve", "--listen", "127.0.0.1:0"]);
    let (status, headers, _) = get(server.addr, "/api/users", &[("x-api-key", "demo12345")]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["x-echo-uri"], "/v1/users");
    assert_eq!(headers["x-frame-options"], "DENY", "harden ran");
    let (status, headers, _) = get(server.addr, "/elsewhere", &[]).await;
    assert_eq!(status, 404);
    assert_eq!(headers["x-content-type-options"], "nosniff", "harden is outermost");
}
