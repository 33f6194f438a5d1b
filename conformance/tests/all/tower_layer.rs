//! Every case against `HttpWasmLayer`, for every engine, HTTP/1.1 and HTTP/2.

use crate::host::{plugin, plugin_with, serve};
use http_wasm_conformance::{Outcome, RunOptions, run};
use tower_http_wasm::{Engine, Features};

/// Cases a conforming host may legitimately report unsupported here: none
/// (the layer offers every feature and knows the client's address).
const ALLOWED_UNSUPPORTED: &[&str] = &[];

/// Host bugs the suite found and that are reported to the host crate's
/// owners: `(protocol, case, what goes wrong)`. The cases are not weakened:
/// the test requires them to still fail, so that a fix shows up here and
/// the entry gets removed.
const KNOWN_HOST_BUGS: &[(&str, &str, &str)] = &[];

async fn all_cases_pass(engine: Engine, http2: bool) {
    let mut failed = Vec::new();
    let addr = serve(plugin(engine), None).await;
    let options = RunOptions { http2, ..RunOptions::new(format!("http://{addr}")) };
    let report = run(&options).await.expect("the run starts");
    println!("[{engine}] {} against {addr}\n{}", report.protocol, report.table());
    for r in &report.results {
        if let Some((_, _, why)) = KNOWN_HOST_BUGS.iter().find(|(p, id, _)| *p == report.protocol && *id == r.id) {
            if r.outcome == Outcome::Fail {
                println!("[{engine}] known host bug, {}: {why}", r.id);
            } else {
                failed.push(format!(
                    "[{engine}] {} {}: now passes; remove it from KNOWN_HOST_BUGS",
                    report.protocol, r.id
                ));
            }
            continue;
        }
        let ok = match r.outcome {
            Outcome::Pass => true,
            Outcome::Unsupported => ALLOWED_UNSUPPORTED.contains(&r.id.as_str()),
            Outcome::Fail => false,
        };
        if !ok {
            failed.push(format!("[{engine}] {} {}: {}", report.protocol, r.id, r.detail));
        }
    }
    assert!(failed.is_empty(), "{} case(s) did not pass:\n{}", failed.len(), failed.join("\n"));
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_case_passes_over_http1(engine) {
        all_cases_pass(engine, false).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_case_passes_over_http2(engine) {
        all_cases_pass(engine, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_without_trailers_gets_unsupported_not_failed() {
    let features = Features::BUFFER_REQUEST | Features::BUFFER_RESPONSE;
    let addr = serve(plugin_with(Engine::default(), features), None).await;
    let options = RunOptions { http2: true, ..RunOptions::new(format!("http://{addr}")) };
    let report = run(&options).await.unwrap();
    println!("{}", report.table());
    let unsupported: Vec<&str> =
        report.results.iter().filter(|r| r.outcome == Outcome::Unsupported).map(|r| r.id.as_str()).collect();
    assert_eq!(unsupported, ["trailers_request", "trailers_request_forward", "trailers_response"]);
    assert!(report.ok(), "{}", report.table());
    let r = report.results.iter().find(|r| r.id == "trailers_request").unwrap();
    assert!(r.detail.contains("does not offer trailers"), "{}", r.detail);
}
