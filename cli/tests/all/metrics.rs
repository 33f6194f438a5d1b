//! The admin listener's `GET /metrics`: the OpenMetrics text that
//! `prometheus-client` encodes, one series per filter of each plugin's
//! figures (counters, gauges, guest time per phase), and the gateway's own
//! (latency, upstream errors by kind, connections open). The text is
//! parsed line by line, not compared whole.

use crate::guests;
use crate::net::{client, full, gateway, held_upstream, send, until, upstream, url};
use crate::process::{Server, get, tempdir};
use http::Response;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tower_http_wasm::{DURATION_BUCKETS, Engine};

/// The text of `GET http://admin/metrics` (which must answer 200).
pub async fn scrape(admin: SocketAddr) -> String {
    let (status, headers, body) = get(admin, "/metrics", &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "application/openmetrics-text; version=1.0.0; charset=utf-8");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body
}

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

/// Parses a sample line (panics on anything else: the test then fails
/// with the line).
pub fn sample(line: &str) -> Sample {
    let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line:?}"));
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().unwrap_or_else(|e| panic!("{line:?}: {e}")),
    };
    let Some((name, labels)) = series.split_once('{') else {
        return Sample { name: series.to_string(), labels: Vec::new(), value };
    };
    let mut rest = labels.strip_suffix('}').unwrap_or_else(|| panic!("unclosed labels: {line:?}"));
    let mut parsed = Vec::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("bad label: {line:?}"));
        // The value runs to the next `"` not escaped by `\`.
        let mut escaped = false;
        let end = after
            .char_indices()
            .find(|&(_, c)| {
                let stop = c == '"' && !escaped;
                escaped = c == '\\' && !escaped;
                stop
            })
            .map(|(i, _)| i)
            .unwrap_or_else(|| panic!("unclosed label value: {line:?}"));
        parsed.push((key.to_string(), after[..end].replace("\\\"", "\"").replace("\\\\", "\\")));
        rest = after[end + 1..].strip_prefix(',').unwrap_or(&after[end + 1..]);
    }
    Sample { name: name.to_string(), labels: parsed, value }
}

/// Every sample of a scrape.
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).map(sample).collect()
}

/// The value of the series `metric{labels}` (exactly those labels).
pub fn find(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(text)
        .into_iter()
        .find(|s| {
            s.name == metric
                && s.labels.len() == labels.len()
                && labels.iter().all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
        })
        .map(|s| s.value)
}

/// The value of `metric{filter="FILTER"}` in a scrape (a whole number).
pub fn value(text: &str, metric: &str, filter: &str) -> Option<u64> {
    find(text, metric, &[("filter", filter)]).map(whole)
}

/// `v` as a count (it must be one).
fn whole(v: f64) -> u64 {
    assert!(v >= 0.0 && v.fract() == 0.0, "not a count: {v}");
    v as u64
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

/// Checks the histogram `name{labels}` as a scrape shows it: a `le` bucket
/// per bound of [`DURATION_BUCKETS`] and `+Inf`, in order, cumulative,
/// `+Inf` equal to `_count`, a `_sum` that is positive when anything was
/// counted; returns `_count`.
pub fn histogram(text: &str, name: &str, labels: &[(&str, &str)]) -> u64 {
    let at = || format!("{name}{labels:?} in\n{text}");
    let count = whole(find(text, &format!("{name}_count"), labels).unwrap_or_else(|| panic!("no _count: {}", at())));
    let sum = find(text, &format!("{name}_sum"), labels).unwrap_or_else(|| panic!("no _sum: {}", at()));
    assert_eq!(sum > 0.0, count > 0, "{}", at());
    let bucket = format!("{name}_bucket");
    let buckets: Vec<(f64, u64)> = samples(text)
        .into_iter()
        .filter(|s| {
            s.name == bucket
                && s.labels.len() == labels.len() + 1
                && labels.iter().all(|(k, v)| s.labels.iter().any(|(k2, v2)| k2 == k && v2 == v))
        })
        .map(|s| {
            let le = &s.labels.iter().find(|(k, _)| k == "le").unwrap_or_else(|| panic!("no le: {s:?}")).1;
            let le = if le == "+Inf" { f64::INFINITY } else { le.parse().unwrap() };
            (le, whole(s.value))
        })
        .collect();
    let bounds: Vec<f64> = DURATION_BUCKETS.iter().map(Duration::as_secs_f64).chain([f64::INFINITY]).collect();
    assert_eq!(buckets.iter().map(|b| b.0).collect::<Vec<_>>(), bounds, "{}", at());
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "cumulative: {}", at());
    assert_eq!(buckets.last().unwrap().1, count, "{}", at());
    count
}

/// `http_wasm_guest_duration_seconds{filter, phase}`'s count.
fn guest_calls(text: &str, filter: &str, phase: &str) -> u64 {
    histogram(text, "http_wasm_guest_duration_seconds", &[("filter", filter), ("phase", phase)])
}

/// `http_wasm_upstream_errors_total{kind}`, every kind.
fn upstream_errors(text: &str) -> [(&'static str, u64); 4] {
    ["refused", "reset", "timeout", "other"].map(|kind| {
        let n = find(text, "http_wasm_upstream_errors_total", &[("kind", kind)]);
        (kind, whole(n.unwrap_or_else(|| panic!("no {kind} in\n{text}"))))
    })
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn metrics_count_good_trapping_and_denied_requests_per_filter(engine) {
        // Each filter's counters and gauges, one series per filter.
        let up = upstream(|_req| async { Response::new(full("from upstream")) }).await;
        let dir = tempdir(&format!("metrics-{}", engine.name()));
        std::fs::write(dir.join("first.wasm"), guests::versioned("1")).unwrap();
        std::fs::write(dir.join("second.wasm"), guests::versioned("2")).unwrap();
        // One worker, whose instances serve every request (instances are
        // each worker's, and the client may open a second connection).
        let gw = Server::gateway(
            &dir,
            up,
            &[
                "--engine",
                engine.name(),
                "--workers",
                "1",
                "--filter",
                "first.wasm",
                "--filter",
                "second.wasm",
                "--admin",
                "127.0.0.1:0",
            ],
        );
        let admin = gw.admin();
        // Before any request: every series at zero, one instance each (the
        // plugin's own, made when the filter loads; the worker starts its
        // own at its first request).
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
        // The plugin's own and the worker's first; each trapping request
        // discarded the worker's instance: two more started. Alive: the
        // plugin's and the worker's.
        assert_eq!(value(&text, "http_wasm_instances_started_total", "first"), Some(4), "{at}");
        assert_eq!(value(&text, "http_wasm_instances", "first"), Some(2), "{at}");
        // The exposition format: HELP and TYPE once per metric, before its
        // series (a counter's family is named without `_total`).
        let lines: Vec<&str> = text.lines().collect();
        for (family, series, kind) in [
            ("http_wasm_requests", "http_wasm_requests_total", "counter"),
            ("http_wasm_instances", "http_wasm_instances", "gauge"),
        ] {
            let help = format!("# HELP {family} ");
            let ty = format!("# TYPE {family} {kind}");
            assert_eq!(lines.iter().filter(|l| l.starts_with(&help)).count(), 1, "{at}");
            let i = lines.iter().position(|l| *l == ty).unwrap_or_else(|| panic!("no {ty:?} {at}"));
            assert!(lines[i - 1].starts_with(&help), "{at}");
            assert!(lines[i + 1].starts_with(&format!("{series}{{filter=\"first\"}} ")), "{at}");
            assert!(lines[i + 2].starts_with(&format!("{series}{{filter=\"second\"}} ")), "{at}");
        }
        // Every sample parses, and is ours.
        for s in samples(&text) {
            assert!(s.name.starts_with("http_wasm_"), "{s:?}");
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

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn histograms_count_each_guest_call_and_each_request(engine) {
        let (up, arrived, release) = held_upstream("from upstream").await;
        let dir = tempdir(&format!("metrics-histograms-{}", engine.name()));
        std::fs::write(dir.join("first.wasm"), guests::versioned("1")).unwrap();
        std::fs::write(dir.join("second.wasm"), guests::versioned("2")).unwrap();
        let gw = Server::gateway(
            &dir,
            up,
            &[
                "--engine",
                engine.name(),
                "--filter",
                "first.wasm",
                "--filter",
                "second.wasm",
                "--admin",
                "127.0.0.1:0",
                "--guest-time-sampling",
                "1",
            ],
        );
        let admin = gw.admin();
        let text = scrape(admin).await;
        let at = format!("[{engine}]\n{text}");
        for filter in ["first", "second"] {
            for phase in ["handle_request", "handle_response"] {
                assert_eq!(guest_calls(&text, filter, phase), 0, "{at}");
            }
            assert_eq!(value(&text, "http_wasm_instances_in_use", filter), Some(0), "{at}");
        }
        assert_eq!(histogram(&text, "http_wasm_request_duration_seconds", &[]), 0, "{at}");

        // One request held at the upstream: an instance of each filter in use.
        let c = client(false);
        let held = {
            let c = c.clone();
            tokio::spawn(async move { send(&c, http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await })
        };
        until("the request reaches the upstream", || async { arrived.load(std::sync::atomic::Ordering::SeqCst) == 1 })
            .await;
        let text = scrape(admin).await;
        for filter in ["first", "second"] {
            assert_eq!(value(&text, "http_wasm_instances_in_use", filter), Some(1), "[{engine}]\n{text}");
        }
        release.add_permits(1);
        assert_eq!(held.await.unwrap().status, 200);

        // Four more through both filters, two denied by the first.
        release.add_permits(4);
        for _ in 0..4 {
            assert_eq!(send(&c, http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await.status, 200);
        }
        for _ in 0..2 {
            let req = http::Request::get(url(gw.addr, "/")).header("x-deny", "1").body(full("")).unwrap();
            assert_eq!(send(&c, req).await.status, 403);
        }
        let text = scrape(admin).await;
        let at = format!("[{engine}]\n{text}");
        // The first filter ran handle_request for all 7 and handle_response
        // for the 5 it passed on; the second saw those 5.
        assert_eq!(guest_calls(&text, "first", "handle_request"), 7, "{at}");
        assert_eq!(guest_calls(&text, "first", "handle_response"), 5, "{at}");
        assert_eq!(guest_calls(&text, "second", "handle_request"), 5, "{at}");
        assert_eq!(guest_calls(&text, "second", "handle_response"), 5, "{at}");
        assert_eq!(histogram(&text, "http_wasm_request_duration_seconds", &[]), 7, "{at}");
        for filter in ["first", "second"] {
            assert_eq!(value(&text, "http_wasm_instances_in_use", filter), Some(0), "{at}");
        }
        assert_eq!(upstream_errors(&text), [("refused", 0), ("reset", 0), ("timeout", 0), ("other", 0)], "{at}");
    }
}

/// Sends one request through a gateway in front of `upstream` (with
/// `extra` flags, no filter) and returns its status and the upstream
/// error counts scraped after it.
async fn upstream_failure(tag: &str, upstream: SocketAddr, extra: &[&str]) -> (u16, [(&'static str, u64); 4]) {
    let mut args = vec!["--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let gw = gateway(tag, None, Engine::default(), upstream, &args, "off");
    let status = get(gw.addr, "/", &[]).await.0;
    (status, upstream_errors(&scrape(gw.admin()).await))
}

#[tokio::test]
async fn upstream_errors_are_counted_by_kind() {
    // Refused: nothing listens on the port any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let (status, errors) = upstream_failure("metrics-refused", closed, &[]).await;
    assert_eq!((status, errors), (502, [("refused", 1), ("reset", 0), ("timeout", 0), ("other", 0)]));

    // Timeout: accepted, never answered.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let (status, errors) = upstream_failure("metrics-timeout", silent_addr, &["--upstream-timeout", "200ms"]).await;
    assert_eq!((status, errors), (504, [("refused", 0), ("reset", 0), ("timeout", 1), ("other", 0)]));
    held.abort();

    // Reset: the connection closes before any response.
    let closing = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closing_addr = closing.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = closing.accept().await {
            let mut head = [0u8; 1024];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut head).await;
            drop(stream);
        }
    });
    let (status, errors) = upstream_failure("metrics-reset", closing_addr, &[]).await;
    assert_eq!((status, errors), (502, [("refused", 0), ("reset", 1), ("timeout", 0), ("other", 0)]));
}

#[tokio::test]
async fn connections_open_follows_a_keep_alive_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream(|_req| async { Response::new(full("ok")) }).await;
    let gw = gateway("metrics-connections", None, Engine::default(), up, &["--admin", "127.0.0.1:0"], "off");
    let admin = gw.admin();
    let open = || async { whole(find(&scrape(admin).await, "http_wasm_connections_open", &[]).expect("the gauge")) };
    // The admin port's own connections do not count.
    assert_eq!(open().await, 0);
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nhost: example.com\r\n\r\n").await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.ends_with(b"ok") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&got));
    // Answered and still open (keep-alive).
    assert_eq!(open().await, 1);
    let second = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    until("two connections open", || async { open().await == 2 }).await;
    drop(conn);
    drop(second);
    until("no connection open", || async { open().await == 0 }).await;
}
