//! `serve --workers N`: one single-threaded runtime per worker, each on its
//! own `SO_REUSEPORT` listener. Requests on many connections are all
//! answered and spread over the workers (the debug log names the worker
//! that accepted each connection),
//! `/metrics` counts every worker's requests, a reload reaches every
//! worker, and SIGTERM drains the requests in flight on all of them. Each
//! worker has its own instances of each filter (`--pool-size` is per
//! worker), and on wasmer they run on the worker's thread: they start no
//! thread of their own, as the `Send` service's instances do.

use crate::guests;
use crate::metrics::{histogram, scrape, value, wait_metric};
use crate::net::{client, full, held_upstream, send, until, upstream, url};
use crate::process::{Server, replace, run, tempdir};
use http::Response;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many connections the tests open: with two workers, the chance that
/// the kernel puts all of them on one listener is 2^-63.
const CONNECTIONS: usize = 64;

/// The log filter that logs each accepted connection with its worker.
const ACCEPTS: &str = "http_wasm::serve=debug";

/// The workers that accepted connections in `log` (`worker=N`).
fn workers_in(log: &str) -> BTreeSet<String> {
    log.lines()
        .filter(|l| l.contains("connection accepted"))
        .filter_map(|l| l.split("worker=").nth(1))
        .filter_map(|rest| rest.split(['}', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// `n` GETs on `n` new connections at once (a client each); every status
/// and every `x-version` value.
async fn on_new_connections(addr: SocketAddr, n: usize) -> (Vec<u16>, BTreeSet<String>) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let got = send(&client(false), http::Request::get(url(addr, "/")).body(full("")).unwrap()).await;
                (got.status, got.values("x-version"))
            })
        })
        .collect();
    let (mut statuses, mut versions) = (Vec::new(), BTreeSet::new());
    for t in tasks {
        let (status, v) = t.await.unwrap();
        statuses.push(status);
        versions.extend(v);
    }
    (statuses, versions)
}

/// The number of listening TCP sockets on `port` (Linux's `/proc/net/tcp`).
fn listeners_on(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(3) == Some(&"0A") && cols[1].ends_with(&format!(":{port:04X}"))
        })
        .count()
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_workers_answer_many_connections_and_metrics_count_them_all(engine) {
        let up = upstream(|_req| async { Response::new(full("from upstream")) }).await;
        let dir = tempdir(&format!("workers-many-{}", engine.name()));
        std::fs::write(dir.join("guest.wasm"), guests::versioned("1")).unwrap();
        let gw = Server::gateway_with_log(
            &dir,
            up,
            &["--workers", "2", "--engine", engine.name(), "--filter", "guest.wasm", "--admin", "127.0.0.1:0"],
            ACCEPTS,
        );
        assert_eq!(listeners_on(gw.addr.port()), 2, "[{engine}] one listener per worker");
        let (statuses, versions) = on_new_connections(gw.addr, CONNECTIONS).await;
        assert!(statuses.iter().all(|s| *s == 200), "[{engine}] {statuses:?}");
        assert_eq!(versions, BTreeSet::from(["1".to_string()]), "[{engine}]");
        // Both workers served some of them.
        gw.wait_until(|log| log.matches("connection accepted").count() >= CONNECTIONS);
        let log = gw.log();
        assert_eq!(workers_in(&log), BTreeSet::from(["0".into(), "1".into()]), "[{engine}]\n{log}");

        // The filter's counters and the gateway's histogram count every
        // request, whichever worker served it; the connections closed.
        let admin = gw.admin();
        let total = CONNECTIONS as u64;
        let text = scrape(admin).await;
        assert_eq!(value(&text, "http_wasm_requests_total", "guest"), Some(total), "[{engine}]\n{text}");
        assert_eq!(value(&text, "http_wasm_next_calls_total", "guest"), Some(total), "[{engine}]\n{text}");
        assert_eq!(histogram(&text, "http_wasm_request_duration_seconds", &[]), total, "[{engine}]\n{text}");
        until("every connection is closed", || async move {
            crate::metrics::find(&scrape(admin).await, "http_wasm_connections_open", &[]) == Some(0.0)
        })
        .await;
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_reaches_every_worker(engine) {
        let up = upstream(|_req| async { Response::new(full("from upstream")) }).await;
        let dir = tempdir(&format!("workers-reload-{}", engine.name()));
        let file = dir.join("guest.wasm");
        std::fs::write(&file, guests::versioned("1")).unwrap();
        let gw = Server::gateway_with_log(
            &dir,
            up,
            &["--workers", "2", "--engine", engine.name(), "--filter", "guest.wasm", "--watch-interval", "50ms", "--admin", "127.0.0.1:0"],
            ACCEPTS,
        );
        let (_, versions) = on_new_connections(gw.addr, 8).await;
        assert_eq!(versions, BTreeSet::from(["1".to_string()]), "[{engine}]");

        replace(&file, &guests::versioned("2"));
        wait_metric(gw.admin(), "http_wasm_reloads_total", "guest", 1).await;
        gw.wait_until(|log| log.matches("connection accepted").count() >= 8);
        let before = gw.log().matches("connection accepted").count();
        let (statuses, versions) = on_new_connections(gw.addr, CONNECTIONS).await;
        assert!(statuses.iter().all(|s| *s == 200), "[{engine}] {statuses:?}");
        assert_eq!(versions, BTreeSet::from(["2".to_string()]), "[{engine}] every worker serves the new module");
        gw.wait_until(|log| log.matches("connection accepted").count() >= before + CONNECTIONS);
        let log = gw.log();
        let after: Vec<&str> = log.lines().filter(|l| l.contains("connection accepted")).skip(before).collect();
        let after = after.join("\n");
        assert_eq!(workers_in(&after), BTreeSet::from(["0".into(), "1".into()]), "[{engine}]\n{log}");
        // One reload of the filter, not one per worker.
        assert_eq!(crate::metrics::metric(gw.admin(), "http_wasm_reloads_total", "guest").await, 1, "[{engine}]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_requests_in_flight_on_every_worker() {
    let (up, arrived, gate) = held_upstream("slow").await;
    let dir = tempdir("workers-drain");
    let mut gw = Server::gateway_with_log(&dir, up, &["--workers", "2", "--admin", "127.0.0.1:0"], "http_wasm=debug");
    let (addr, admin) = (gw.addr, gw.admin());
    let n = 32;
    let in_flight: Vec<_> = (0..n)
        .map(|_| {
            tokio::spawn(async move {
                send(&client(false), http::Request::get(url(addr, "/")).body(full("")).unwrap()).await
            })
        })
        .collect();
    until("every request reaches the upstream", || {
        let arrived = arrived.clone();
        async move { arrived.load(Ordering::SeqCst) == n }
    })
    .await;

    gw.signal("TERM");
    until("/readyz turns 503", || async move { crate::process::get(admin, "/readyz", &[]).await.0 == 503 }).await;
    until("every listener stops accepting", || async move { listeners_on(addr.port()) == 0 }).await;
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "a new connection is refused");
    assert!(in_flight.iter().all(|t| !t.is_finished()), "no request in flight was cut");

    gate.add_permits(n);
    for t in in_flight {
        let got = t.await.unwrap();
        assert_eq!((got.status, &got.body[..]), (200, &b"slow"[..]), "every request in flight completes");
    }
    let status = tokio::task::block_in_place(|| gw.wait_exit());
    assert!(status.success(), "{status}\n{}", gw.log());
    let log = gw.log();
    assert_eq!(workers_in(&log).len(), 2, "both workers had requests in flight\n{log}");
    assert!(!log.contains("still open after the drain timeout"), "{log}");
}

#[test]
fn the_workers_flag_says_its_default_and_refuses_zero() {
    let dir = tempdir("workers-flag");
    let help = String::from_utf8(run(&dir, &["serve", "--help"]).stdout).unwrap();
    let at = help.find("--workers <N>").unwrap_or_else(|| panic!("--workers missing from:\n{help}"));
    let block = &help[at..];
    let block = &block[..block[2..].find("\n  -").map_or(block.len(), |e| e + 2)];
    assert!(block.contains("Default: the number of cores"), "{block}");
    let out = run(&dir, &["serve", "--listen", "127.0.0.1:0", "--workers", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--workers") && stderr.contains('0'), "{stderr}");
}

/// `n` GETs on `n` new connections at once, each counted in `answered` when
/// its response arrives; their statuses.
fn spawn_gets(addr: SocketAddr, n: usize, answered: &Arc<AtomicUsize>) -> Vec<tokio::task::JoinHandle<u16>> {
    (0..n)
        .map(|_| {
            let answered = answered.clone();
            tokio::spawn(async move {
                let got = send(&client(false), http::Request::get(url(addr, "/")).body(full("")).unwrap()).await;
                answered.fetch_add(1, Ordering::SeqCst);
                got.status
            })
        })
        .collect()
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_worker_has_its_own_pool(engine) {
        // One instance per worker, and no wait for one: with the requests
        // held at the upstream, exactly one per worker gets through (one
        // shared pool would let one through), the others get 503 at once.
        let (up, arrived, gate) = held_upstream("held").await;
        let dir = tempdir(&format!("workers-pools-{}", engine.name()));
        std::fs::write(dir.join("guest.wasm"), guests::versioned("1")).unwrap();
        let gw = Server::gateway_with_log(
            &dir,
            up,
            &[
                "--workers",
                "2",
                "--engine",
                engine.name(),
                "--filter",
                "guest.wasm",
                "--pool-size",
                "1",
                "--pool-wait",
                "0s",
                "--admin",
                "127.0.0.1:0",
            ],
            ACCEPTS,
        );
        let answered = Arc::new(AtomicUsize::new(0));
        let tasks = spawn_gets(gw.addr, CONNECTIONS, &answered);
        until("every request is refused or reaches the upstream", || {
            let decided = arrived.load(Ordering::SeqCst) + answered.load(Ordering::SeqCst);
            async move { decided == CONNECTIONS }
        })
        .await;
        let log = gw.log();
        assert_eq!(workers_in(&log), BTreeSet::from(["0".into(), "1".into()]), "[{engine}]\n{log}");
        assert_eq!(arrived.load(Ordering::SeqCst), 2, "[{engine}] one request through each worker's instance");
        let text = scrape(gw.admin()).await;
        assert_eq!(value(&text, "http_wasm_instances_in_use", "guest"), Some(2), "[{engine}]\n{text}");
        gate.add_permits(2);
        let mut statuses = Vec::new();
        for t in tasks {
            statuses.push(t.await.unwrap());
        }
        statuses.sort();
        let mut expected = vec![200, 200];
        expected.resize(CONNECTIONS, 503);
        assert_eq!(statuses, expected, "[{engine}]");
    }
}

/// How many threads of process `pid` are named `name` (Linux's
/// `/proc/PID/task/*/comm`, at most 15 bytes of the name).
fn threads_named(pid: u32, name: &str) -> usize {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasmer_instances_of_the_workers_start_no_thread() {
    use tower::ServiceExt;
    let wasmer = tower_http_wasm::Engine::from_name("wasmer").unwrap();
    // The control: an instance of the `Send` service on wasmer lives on a
    // thread of its own, named for its filter, and /proc shows it.
    let plugin =
        tower_http_wasm::Plugin::builder().engine(wasmer).name("control").build(guests::versioned("1")).unwrap();
    let inner = tower::service_fn(|_req: http::Request<tower_http_wasm::RequestBody>| async {
        Ok::<_, std::convert::Infallible>(Response::new(full("inner")))
    });
    // (`plugin` stays alive past the request: its instance thread ends with it.)
    let res =
        tower_http_wasm::HttpWasm::new(inner, plugin.clone()).oneshot(http::Request::new(full(""))).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(threads_named(std::process::id(), "wasmer-control") >= 1, "the control's instance thread");

    // The gateway's workers: 48 requests held at the upstream, an instance
    // of the filter busy for each (the pools are large enough for all of
    // them on one worker), and not one thread more named for the filter.
    let (up, arrived, gate) = held_upstream("held").await;
    let dir = tempdir("workers-wasmer-threads");
    std::fs::write(dir.join("guest.wasm"), guests::versioned("1")).unwrap();
    let gw = Server::gateway(
        &dir,
        up,
        &[
            "--workers",
            "2",
            "--engine",
            "wasmer",
            "--filter",
            "guest.wasm",
            "--pool-size",
            "64",
            "--admin",
            "127.0.0.1:0",
        ],
    );
    let before = threads_named(gw.pid(), "wasmer-guest");
    let n = 48;
    let answered = Arc::new(AtomicUsize::new(0));
    let tasks = spawn_gets(gw.addr, n, &answered);
    until("every request reaches the upstream", || {
        let arrived = arrived.load(Ordering::SeqCst);
        async move { arrived == n }
    })
    .await;
    let text = scrape(gw.admin()).await;
    assert_eq!(value(&text, "http_wasm_instances_in_use", "guest"), Some(n as u64), "{text}");
    assert_eq!(threads_named(gw.pid(), "wasmer-guest"), before, "{n} instances in use, no thread started for them");
    gate.add_permits(n);
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
}
