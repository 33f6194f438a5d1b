//! The conformance suite through the binary: `conformance guest`, `serve`
//! with the guest in front of the backend, and `conformance run`.

use crate::process::{Server, run, tempdir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_passes_through_the_serve_proxy() {
    let dir = tempdir("conformance");
    let out = run(&dir, &["conformance", "guest", "--out", "guest.wasm", "--config-out", "guest.config"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let backend = http_wasm_conformance::backend::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let upstream = format!("http://{backend}");
    let server = Server::start(
        &dir,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--filter",
            "guest.wasm",
            "--config-file",
            "guest.config",
        ],
    );
    let url = format!("http://{}", server.addr);
    for http2 in [false, true] {
        let mut args = vec!["conformance", "run", "--url", &url];
        if http2 {
            args.push("--http2");
        }
        let out = tokio::task::spawn_blocking({
            let dir = dir.clone();
            let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
            move || run(&dir, &args.iter().map(String::as_str).collect::<Vec<_>>())
        })
        .await
        .unwrap();
        let table = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "http2={http2}:\n{table}\n{}", String::from_utf8_lossy(&out.stderr));
        let last = table.lines().last().unwrap_or_default();
        let n = http_wasm_conformance::CASES.len();
        assert_eq!(last, format!("{n} passed, 0 failed, 0 unsupported"), "http2={http2}");
    }
    // JSON, filtered.
    let out = tokio::task::spawn_blocking({
        let dir = dir.clone();
        let url = url.clone();
        move || run(&dir, &["conformance", "run", "--url", &url, "--format", "json", "--filter", "uri_"])
    })
    .await
    .unwrap();
    assert!(out.status.success());
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["failed"], 0);
    assert_eq!(json["passed"], 8);
    assert!(json["results"].as_array().unwrap().iter().all(|r| r["id"].as_str().unwrap().contains("uri_")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_exit_non_zero() {
    // The backend alone: no guest answers, so every case fails.
    let dir = tempdir("conformance-fail");
    let backend = http_wasm_conformance::backend::spawn("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let url = format!("http://{backend}");
    let out = tokio::task::spawn_blocking(move || {
        run(&dir, &["conformance", "run", "--url", &url, "--filter", "method_get"])
    })
    .await
    .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{table}");
    assert!(table.contains("method_get") && table.contains("no x-conformance-result"), "{table}");
    assert_eq!(table.lines().last().unwrap(), "0 passed, 1 failed, 0 unsupported");
}
