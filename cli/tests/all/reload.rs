//! Reloading filter modules in a running `serve`: a module file replaced
//! on disk is picked up (polling), SIGHUP reloads every filter, a module
//! that fails to load is rejected and the old one keeps serving, and no
//! request in flight fails meanwhile.

use crate::guests;
use crate::metrics::{metric, wait_metric};
use crate::net::{client, full, gateway, send, upstream};
use crate::process::{Server, replace, tempdir};
use bytes::Bytes;
use http::Response;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A module that is valid wasm but not an http-wasm guest.
fn not_a_guest() -> Vec<u8> {
    wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap()
}

/// The `x-version` a fresh request gets (on a new connection).
async fn version(addr: SocketAddr) -> String {
    let got = send(&client(false), http::Request::get(format!("http://{addr}/")).body(full("")).unwrap()).await;
    assert_eq!(got.status, 200);
    got.values("x-version").join(",")
}

/// `tasks` clients (half HTTP/1.1, half HTTP/2) sending requests one
/// after another until stopped; each outcome (`200 a`, `500`, or a client
/// error) is counted.
struct Traffic {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<BTreeMap<String, u64>>>,
}

impl Traffic {
    fn start(addr: SocketAddr, tasks: usize) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|i| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let c = client(i % 2 == 1);
                    let mut seen = BTreeMap::new();
                    while !stop.load(Ordering::Relaxed) {
                        let req = http::Request::get(format!("http://{addr}/")).body(full("")).unwrap();
                        let outcome = match tokio::time::timeout(Duration::from_secs(60), c.request(req)).await {
                            Err(_) => "no response within 60 s".to_string(),
                            Ok(Err(e)) => format!("client error: {e:?}"),
                            Ok(Ok(res)) => {
                                let status = res.status().as_u16();
                                let version = crate::net::values(res.headers(), "x-version").join(",");
                                match http_body_util::BodyExt::collect(res.into_body()).await {
                                    Ok(_) => format!("{status} {version}"),
                                    Err(e) => format!("body error: {e:?}"),
                                }
                            }
                        };
                        *seen.entry(outcome).or_insert(0) += 1;
                    }
                    seen
                })
            })
            .collect();
        Traffic { stop, tasks }
    }

    /// Stops the clients and returns every outcome with its count.
    async fn finish(self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = BTreeMap::new();
        for t in self.tasks {
            for (k, v) in t.await.unwrap() {
                *all.entry(k).or_insert(0) += v;
            }
        }
        all
    }
}

async fn plain_upstream() -> SocketAddr {
    upstream(|_req| async { Response::new(full(Bytes::from_static(b"from upstream"))) }).await
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replaced_module_is_reloaded_under_traffic_and_a_broken_one_is_rejected(engine) {
        let up = plain_upstream().await;
        let gw = gateway(
            "reload-watch",
            Some(&guests::versioned("a")),
            engine,
            up,
            &["--watch-interval", "50ms", "--admin", "127.0.0.1:0"],
            "info",
        );
        let (admin, file) = (gw.admin(), gw.dir().join("guest.wasm"));
        let traffic = Traffic::start(gw.addr, 16);
        let mut reloads = 0;
        let mut failures = 0;
        let mut current = "a";
        for (round, next) in ["b", "a", "b", "broken", "a", "not-a-guest", "b"].into_iter().enumerate() {
            // Let the clients run on the current module for a while.
            wait_metric(
                admin,
                "http_wasm_requests_total",
                "guest",
                metric(admin, "http_wasm_requests_total", "guest").await + 200,
            )
            .await;
            let at = format!("[{engine} round {round}: {current} -> {next}]");
            match next {
                "broken" | "not-a-guest" => {
                    let bytes = if next == "broken" { b"\0asm but not really".to_vec() } else { not_a_guest() };
                    replace(&file, &bytes);
                    failures += 1;
                    wait_metric(admin, "http_wasm_reload_failures_total", "guest", failures).await;
                    // Rejected: the old module keeps answering.
                    assert_eq!(version(gw.addr).await, current, "{at}");
                    assert_eq!(metric(admin, "http_wasm_reloads_total", "guest").await, reloads, "{at}");
                }
                v => {
                    replace(&file, &guests::versioned(v));
                    reloads += 1;
                    wait_metric(admin, "http_wasm_reloads_total", "guest", reloads).await;
                    // Once the swap is counted, every new request gets the new module.
                    assert_eq!(version(gw.addr).await, v, "{at}");
                    current = v;
                }
            }
        }
        let outcomes = traffic.finish().await;
        let total: u64 = outcomes.values().sum();
        let good: u64 = ["200 a", "200 b"].iter().filter_map(|k| outcomes.get(*k)).sum();
        assert_eq!(good, total, "[{engine}] every request answered by one version or the other: {outcomes:?}");
        assert!(outcomes.contains_key("200 a") && outcomes.contains_key("200 b"), "[{engine}] {outcomes:?}");
        assert_eq!(metric(admin, "http_wasm_reloads_total", "guest").await, 5);
        assert_eq!(metric(admin, "http_wasm_reload_failures_total", "guest").await, 2);
        assert_eq!(metric(admin, "http_wasm_request_failures_total", "guest").await, 0);
        // Both rejections are logged at warn with the file, the reloads at info.
        let log = gw.log();
        let rejected: Vec<&str> =
            log.lines().filter(|l| l.contains("reload failed; the old module keeps serving")).collect();
        assert_eq!(rejected.len(), 2, "[{engine}] {log}");
        assert!(rejected.iter().all(|l| l.contains("WARN") && l.contains("guest.wasm")), "{rejected:?}");
        assert_eq!(log.matches("filter reloaded").count(), 5, "[{engine}] {log}");
        eprintln!("[{engine}] reload under traffic: {total} requests, {outcomes:?}");
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_every_filter_and_keeps_the_old_module_on_failure() {
    let up = plain_upstream().await;
    let dir = tempdir("reload-sighup");
    std::fs::write(dir.join("one.wasm"), guests::versioned("1a")).unwrap();
    std::fs::write(dir.join("two.wasm"), guests::versioned("2a")).unwrap();
    let gw = Server::gateway_with_log(
        &dir,
        up,
        &["--filter", "one.wasm", "--filter", "two.wasm", "--watch-interval", "off", "--admin", "127.0.0.1:0"],
        "info",
    );
    let admin = gw.admin();
    let versions = || async {
        let mut v: Vec<String> = version(gw.addr).await.split(',').map(String::from).collect();
        v.sort();
        v.join(",")
    };
    assert_eq!(versions().await, "1a,2a");
    let traffic = Traffic::start(gw.addr, 8);
    replace(&dir.join("one.wasm"), &guests::versioned("1b"));
    replace(&dir.join("two.wasm"), &guests::versioned("2b"));
    // Not watched: nothing changes until the signal.
    assert_eq!(versions().await, "1a,2a");
    assert_eq!(metric(admin, "http_wasm_reloads_total", "one").await, 0);
    gw.signal("HUP");
    wait_metric(admin, "http_wasm_reloads_total", "one", 1).await;
    wait_metric(admin, "http_wasm_reloads_total", "two", 1).await;
    assert_eq!(versions().await, "1b,2b");
    // A broken module and a missing file: both rejected, the rest reloads.
    replace(&dir.join("one.wasm"), b"garbage");
    std::fs::remove_file(dir.join("two.wasm")).unwrap();
    gw.signal("HUP");
    wait_metric(admin, "http_wasm_reload_failures_total", "one", 1).await;
    gw.wait_for_log(|l| l.contains("WARN") && l.contains("cannot read") && l.contains("two.wasm"));
    assert_eq!(versions().await, "1b,2b");
    // The same module again: a reload all the same (a signal is a request).
    replace(&dir.join("one.wasm"), &guests::versioned("1b"));
    replace(&dir.join("two.wasm"), &guests::versioned("2b"));
    gw.signal("HUP");
    wait_metric(admin, "http_wasm_reloads_total", "one", 2).await;
    wait_metric(admin, "http_wasm_reloads_total", "two", 2).await;
    assert_eq!(versions().await, "1b,2b");
    let outcomes = traffic.finish().await;
    let good: u64 = outcomes.iter().filter(|(k, _)| k.starts_with("200 ")).map(|(_, v)| v).sum();
    assert_eq!(good, outcomes.values().sum::<u64>(), "{outcomes:?}");
    assert!(gw.log().contains("SIGHUP: reloading every filter module"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dapr_component_module_is_reloaded_when_its_file_changes() {
    let up = plain_upstream().await;
    let dir = tempdir("reload-dapr");
    std::fs::create_dir_all(dir.join("wasm")).unwrap();
    std::fs::write(dir.join("wasm/guest.wasm"), guests::versioned("a")).unwrap();
    std::fs::write(
        dir.join("component.yaml"),
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: versioned\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: file://wasm/guest.wasm\n",
    )
    .unwrap();
    let gw =
        Server::gateway(&dir, up, &["--dapr", "component.yaml", "--watch-interval", "50ms", "--admin", "127.0.0.1:0"]);
    let admin = gw.admin();
    assert_eq!(version(gw.addr).await, "a");
    replace(&dir.join("wasm/guest.wasm"), &guests::versioned("b"));
    wait_metric(admin, "http_wasm_reloads_total", "versioned", 1).await;
    assert_eq!(version(gw.addr).await, "b");
}
