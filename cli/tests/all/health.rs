//! `/healthz` and `/readyz` on the admin address, and SIGTERM: stop
//! accepting, not ready, drain the requests in flight (up to
//! `--drain-timeout`), exit 0. Through the real process and real signals.

use crate::net::{client, full, held_upstream, send, until, url};
use crate::process::{Server, get, tempdir};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Waits until `count` is `n`.
async fn until_count(count: &AtomicUsize, n: usize) {
    until("the request reaches the upstream", || async move { count.load(Ordering::SeqCst) == n }).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readyz_503_drains_the_request_in_flight_and_exits_0() {
    let (up, arrived, gate) = held_upstream("slow").await;
    let dir = tempdir("health-drain");
    let mut gw = Server::gateway_with_log(&dir, up, &["--admin", "127.0.0.1:0"], "http_wasm=info");
    let admin = gw.admin();
    assert_eq!(get(admin, "/healthz", &[]).await.0, 200);
    let (status, _, body) = get(admin, "/readyz", &[]).await;
    assert_eq!((status, body.as_str()), (200, "ready\n"));

    let addr = gw.addr;
    let in_flight =
        tokio::spawn(
            async move { send(&client(false), http::Request::get(url(addr, "/")).body(full("")).unwrap()).await },
        );
    until_count(&arrived, 1).await;

    gw.signal("TERM");
    until("/readyz turns 503", || async move { get(admin, "/readyz", &[]).await.0 == 503 }).await;
    assert_eq!(get(admin, "/healthz", &[]).await.0, 200, "the process is still up while draining");
    until("the listener stops accepting", || async move { tokio::net::TcpStream::connect(addr).await.is_err() }).await;
    assert!(!in_flight.is_finished(), "the request in flight was not cut");

    gate.add_permits(1);
    let got = in_flight.await.unwrap();
    assert_eq!((got.status, &got.body[..]), (200, &b"slow"[..]), "the request in flight completes");
    let status = tokio::task::block_in_place(|| gw.wait_exit());
    assert!(status.success(), "{status}\n{}", gw.log());
    assert!(gw.log().contains("SIGTERM"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_longer_than_the_drain_timeout_does_not_hold_the_exit() {
    let (up, arrived, _gate) = held_upstream("slow").await;
    let dir = tempdir("health-drain-timeout");
    let mut gw = Server::gateway_with_log(&dir, up, &["--drain-timeout", "300ms"], "http_wasm=info");
    let addr = gw.addr;
    let in_flight = tokio::spawn(async move {
        client(false).request(http::Request::get(url(addr, "/")).body(full("")).unwrap()).await.map(|r| r.status())
    });
    until_count(&arrived, 1).await;
    gw.signal("TERM");
    // The upstream never answers: the process still exits, with status 0.
    let status = tokio::task::block_in_place(|| gw.wait_exit());
    assert!(status.success(), "{status}\n{}", gw.log());
    assert!(gw.log().contains("still open after the drain timeout"), "{}", gw.log());
    assert!(in_flight.await.unwrap().is_err(), "the cut request got no response");
}
