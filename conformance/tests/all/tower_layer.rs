//! Every case against `HttpWasmLayer`, for every engine, HTTP/1.1 and HTTP/2.

use crate::host::{plugin, serve};
use http_wasm_conformance::{Outcome, RunOptions, run};
use tower_http_wasm::Engine;

/// Cases a conforming host may legitimately report unsupported here: none
/// (the layer offers every feature and knows the client's address).
const ALLOWED_UNSUPPORTED: &[&str] = &[];

async fn all_cases_pass(http2: bool) {
    let mut failed = Vec::new();
    for &engine in Engine::ALL {
        let addr = serve(plugin(engine), None).await;
        let options = RunOptions { http2, ..RunOptions::new(format!("http://{addr}")) };
        let report = run(&options).await.expect("the run starts");
        println!("[{engine}] {} against {addr}\n{}", report.protocol, report.table());
        for r in &report.results {
            let ok = match r.outcome {
                Outcome::Pass => true,
                Outcome::Unsupported => ALLOWED_UNSUPPORTED.contains(&r.id.as_str()),
                Outcome::Fail => false,
            };
            if !ok {
                failed.push(format!("[{engine}] {} {}: {}", report.protocol, r.id, r.detail));
            }
        }
    }
    assert!(failed.is_empty(), "{} case(s) did not pass:\n{}", failed.len(), failed.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_over_http1() {
    all_cases_pass(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_case_passes_over_http2() {
    all_cases_pass(true).await;
}
