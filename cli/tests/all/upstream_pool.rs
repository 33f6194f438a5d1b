//! Connections to the upstream are kept by the upstream's address alone,
//! whatever `host` clients name, and their number is bounded: over
//! HTTP/2 one shared connection, over HTTP/1.1 at most
//! `--upstream-max-idle` kept idle.

use crate::net::{TestBody, client, full, h2_connection, send, until, url};
use crate::process::{Server, tempdir};
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// What the upstream counted: connections accepted, connections open, and
/// requests that arrived.
#[derive(Clone, Default)]
struct Counts {
    accepted: Arc<AtomicUsize>,
    open: Arc<AtomicUsize>,
    arrived: Arc<AtomicUsize>,
}

/// A hyper upstream (HTTP/1.1 and HTTP/2) that counts its connections and
/// answers each request, once the test adds a permit to the returned
/// semaphore, with the `host` (or `:authority`) it received in
/// `x-seen-host`.
async fn counting_upstream() -> (SocketAddr, Counts, Arc<Semaphore>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Counts::default();
    let gate = Arc::new(Semaphore::new(0));
    let (c, g) = (counts.clone(), gate.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            c.accepted.fetch_add(1, Ordering::SeqCst);
            c.open.fetch_add(1, Ordering::SeqCst);
            let (c, g) = (c.clone(), g.clone());
            let arrived = c.arrived.clone();
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let (arrived, g) = (arrived.clone(), g.clone());
                async move {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    g.acquire().await.unwrap().forget();
                    let host = match req.headers().get("host") {
                        Some(h) => h.to_str().unwrap_or("").to_string(),
                        None => req.uri().authority().map(|a| a.to_string()).unwrap_or_default(),
                    };
                    Ok::<_, Infallible>(Response::builder().header("x-seen-host", host).body(full("up")).unwrap())
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
                c.open.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    (addr, counts, gate)
}

/// Request `i` over HTTP/1.1 to the gateway, naming `hI.example` in `host`.
fn named(gw: SocketAddr, i: usize) -> (String, Request<TestBody>) {
    let host = format!("h{i}.example");
    (host.clone(), Request::get(url(gw, "/")).header("host", host).body(full("")).unwrap())
}

/// Fifty requests at once from an HTTP/1.1 client pool, each naming its own
/// `host`; released once all fifty reached the upstream (or
/// `reached_all` is false: then as they come). Checks each got 200 and
/// its own host.
async fn fifty_hosts(gw: SocketAddr, counts: &Counts, gate: &Semaphore, reached_all: bool) {
    let c = client(false);
    let base = counts.arrived.load(Ordering::SeqCst);
    let sent: Vec<_> = (0..50)
        .map(|i| {
            let c = c.clone();
            let (host, req) = named(gw, i);
            tokio::spawn(async move { (host, send(&c, req).await) })
        })
        .collect();
    if reached_all {
        until("all fifty requests reach the upstream", || async { counts.arrived.load(Ordering::SeqCst) == base + 50 })
            .await;
    }
    gate.add_permits(50);
    for s in sent {
        let (host, got) = s.await.unwrap();
        assert_eq!((got.status, got.values("x-seen-host")), (200, vec![host.clone()]), "{host}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hosts_share_one_http2_upstream_connection() {
    let (up, counts, gate) = counting_upstream().await;
    let gw = Server::gateway(&tempdir("upstream-pool-h2"), up, &["--upstream-http2", "--upstream-max-idle", "2"]);
    // Fifty distinct hosts at once, each held at the upstream until all
    // fifty are there: over one connection.
    fifty_hosts(gw.addr, &counts, &gate, true).await;
    // And fifty more from an HTTP/2 client naming them as `:authority`.
    let mut h2 = h2_connection(gw.addr).await;
    gate.add_permits(50);
    for i in 50..100 {
        let host = format!("h{i}.example");
        let req = Request::get(format!("http://{host}/")).body(full("")).unwrap();
        h2.ready().await.unwrap();
        let res = h2.send_request(req).await.unwrap();
        let seen = crate::net::values(res.headers(), "x-seen-host");
        assert_eq!((res.status().as_u16(), seen), (200, vec![host.clone()]), "{host}");
    }
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 1, "upstream connections for 100 hosts over HTTP/2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_hosts_over_http1_leave_at_most_max_idle_upstream_connections_open() {
    let (up, counts, gate) = counting_upstream().await;
    let gw = Server::gateway(&tempdir("upstream-pool-h1"), up, &["--upstream-max-idle", "2"]);
    // Fifty distinct hosts held at the upstream at once: fifty connections
    // while they are in flight, whatever the bound...
    fifty_hosts(gw.addr, &counts, &gate, true).await;
    assert_eq!(counts.accepted.load(Ordering::SeqCst), 50);
    // ... but only two are kept once they are done.
    until("the upstream connections past the bound close", || async { counts.open.load(Ordering::SeqCst) <= 2 }).await;
    // One at a time, fifty more hosts reuse the kept connections.
    let c = client(false);
    gate.add_permits(50);
    for i in 50..100 {
        let (host, req) = named(gw.addr, i);
        let got = send(&c, req).await;
        assert_eq!((got.status, got.values("x-seen-host")), (200, vec![host.clone()]), "{host}");
    }
    let accepted = counts.accepted.load(Ordering::SeqCst);
    assert_eq!(accepted, 50, "fifty hosts one at a time opened {} more upstream connections", accepted - 50);
}
