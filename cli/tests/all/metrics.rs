//! The admin listener's `GET /metrics`: Prometheus text, one series per
//! filter, from each plugin's counters.

use crate::guests;
use crate::net::{client, full, send, upstream, url};
use crate::process::{Server, get, tempdir};
use http::Response;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The text of `GET http://admin/metrics` (which must answer 200).
pub async fn scrape(admin: SocketAddr) -> String {
    let (status, headers, body) = get(admin, "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    body
}

/// The value of `metric{filter="FILTER"}` in a scrape.
pub fn value(text: &str, metric: &str, filter: &str) -> Option<u64> {
    let series = format!("{metric}{{filter=\"{filter}\"}} ");
    text.lines().find_map(|l| l.strip_prefix(&series)).map(|v| v.parse().unwrap())
}

/// The current value of `metric{filter="FILTER"}` (which must exist).
pub async fn metric(admin: SocketAddr, metric: &str, filter: &str) -> u64 {
    let text = scrape(admin).await;
    value(&text, metric, filter).unwrap_or_else(|| panic!("no {metric}{{filter={filter:?}}} in\n{text}"))
}

/// Waits until `metric{filter="FILTER"}` reaches `at_least` (panics after
/// 30 s: a failure, not a measurement) and returns it.
pub async fn wait_metric(admin: SocketAddr, name: &str, filter: &str, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = metric(admin, name, filter).await;
        if v >= at_least {
            return v;
        }
        assert!(Instant::now() < deadline, "{name}{{filter={filter:?}}} stayed at {v}, expected {at_least}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_count_good_trapping_and_denied_requests_per_filter(engine) {
        let up = upstream(|_req| async { Response::new(full("from upstream")) }).await;
        let dir = tempdir(&format!("metrics-{}", engine.name()));
        std::fs::write(dir.join("first.wasm"), guests::versioned("1")).unwrap();
        std::fs::write(dir.join("second.wasm"), guests::versioned("2")).unwrap();
        let gw = Server::gateway(
            &dir,
            up,
            &["--engine", engine.name(), "--filter", "first.wasm", "--filter", "second.wasm", "--admin", "127.0.0.1:0"],
        );
        let admin = gw.admin();
        // Before any request: every series at zero, one instance each.
        let text = scrape(admin).await;
        for filter in ["first", "second"] {
            assert_eq!(value(&text, "http_wasm_requests_total", filter), Some(0), "{text}");
            assert_eq!(value(&text, "http_wasm_instances", filter), Some(1), "{text}");
        }
        let c = client(false);
        let request = |header: Option<&str>| {
            let mut req = http::Request::get(url(gw.addr, "/"));
            if let Some(h) = header {
                req = req.header(h, "1");
            }
            req.body(full("")).unwrap()
        };
        for _ in 0..3 {
            let got = send(&c, request(None)).await;
            let mut versions = got.values("x-version");
            versions.sort();
            assert_eq!((got.status, versions), (200, vec!["1".to_string(), "2".to_string()]));
        }
        for _ in 0..2 {
            assert_eq!(send(&c, request(Some("x-trap"))).await.status, 500);
        }
        assert_eq!(send(&c, request(Some("x-deny"))).await.status, 403);

        let text = scrape(admin).await;
        let at = format!("[{engine}]\n{text}");
        for (metric, first, second) in [
            ("http_wasm_requests_total", 6, 3),
            ("http_wasm_next_calls_total", 3, 3),
            ("http_wasm_short_circuits_total", 1, 0),
            ("http_wasm_request_failures_total", 2, 0),
            ("http_wasm_response_failures_total", 0, 0),
            ("http_wasm_reloads_total", 0, 0),
            ("http_wasm_reload_failures_total", 0, 0),
        ] {
            assert_eq!(value(&text, metric, "first"), Some(first), "{metric} {at}");
            assert_eq!(value(&text, metric, "second"), Some(second), "{metric} {at}");
        }
        // Each trapping request discarded its instance: two more started.
        assert_eq!(value(&text, "http_wasm_instances_started_total", "first"), Some(3), "{at}");
        assert_eq!(value(&text, "http_wasm_instances", "first"), Some(1), "{at}");
        // The exposition format: HELP and TYPE once per metric, before its series.
        for (metric, kind) in [("http_wasm_requests_total", "counter"), ("http_wasm_instances", "gauge")] {
            let help = format!("# HELP {metric} ");
            let ty = format!("# TYPE {metric} {kind}");
            assert_eq!(text.lines().filter(|l| l.starts_with(&help)).count(), 1, "{at}");
            let lines: Vec<&str> = text.lines().collect();
            let i = lines.iter().position(|l| *l == ty).unwrap_or_else(|| panic!("no {ty:?} {at}"));
            assert!(lines[i - 1].starts_with(&help), "{at}");
            assert!(lines[i + 1].starts_with(&format!("{metric}{{filter=\"first\"}} ")), "{at}");
            assert!(lines[i + 2].starts_with(&format!("{metric}{{filter=\"second\"}} ")), "{at}");
        }
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, v) = line.rsplit_once(' ').unwrap();
            assert!(series.starts_with("http_wasm_") && series.ends_with("\"}"), "{line}");
            v.parse::<u64>().unwrap();
        }
        // Other paths and methods.
        assert_eq!(get(admin, "/", &[]).await.0, 404);
        let post = http::Request::post(url(admin, "/metrics")).body(full("")).unwrap();
        let got = send(&c, post).await;
        assert_eq!((got.status, got.headers["allow"].to_str().unwrap()), (405, "GET, HEAD"));
    }
}

#[test]
fn the_admin_address_must_be_free() {
    let dir = tempdir("admin-busy");
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = busy.local_addr().unwrap().to_string();
    let out = crate::process::run(&dir, &["serve", "--listen", "127.0.0.1:0", "--admin", &at]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("--admin: cannot listen on {at}")), "{stderr}");
}
