//! `--idle-timeout`: idle client connections (HTTP/2 without a stream,
//! HTTP/1.1 between keep-alive requests) do not hold connection slots, and
//! a connection busy with a request is not cut.

use crate::net::{client, full, send, upstream, url};
use crate::process::{Server, tempdir};
use http::{Request, Response};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The HTTP/2 connection preface and an empty SETTINGS frame: all an idle
/// HTTP/2 client sends. It never answers the server's SETTINGS or PINGs.
const H2_PREFACE_AND_SETTINGS: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// An upstream that answers `up`, after 2 s for `/slow`.
async fn plain_upstream() -> SocketAddr {
    upstream(|req: Request<hyper::body::Incoming>| async move {
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        Response::new(full("up"))
    })
    .await
}

/// Reads `stream` until the server closes it; panics if that takes more
/// than 20 s (a bound, not a measurement).
async fn closed_by_server(stream: &mut TcpStream, what: &str) {
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "{what}: still open after 20 s");
}

/// A GET through the gateway on a new connection, answered within 20 s.
async fn served(gw: SocketAddr, http2: bool) -> u16 {
    let req = Request::get(url(gw, "/")).body(full("")).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(20), send(&client(http2), req)).await;
    got.unwrap_or_else(|_| panic!("http2={http2}: not served within 20 s: the idle connections hold every slot")).status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_and_free_their_slots() {
    let up = plain_upstream().await;
    let gw = Server::gateway(&tempdir("idle-h2"), up, &["--max-connections", "2", "--idle-timeout", "1s"]);
    let mut idle = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
        idle.push(s);
    }
    // Both slots are taken; a new client is served once the idle ones go.
    assert_eq!(served(gw.addr, true).await, 200);
    for (i, s) in idle.iter_mut().enumerate() {
        closed_by_server(s, &format!("idle HTTP/2 connection {i}")).await;
    }
    assert_eq!(served(gw.addr, false).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http1_keep_alive_connection_is_closed_and_frees_its_slot() {
    let up = plain_upstream().await;
    let gw = Server::gateway(&tempdir("idle-h1"), up, &["--max-connections", "1", "--idle-timeout", "1s"]);
    // One request, then the connection stays open, idle.
    let mut kept = TcpStream::connect(gw.addr).await.unwrap();
    kept.write_all(b"GET / HTTP/1.1\r\nhost: idle.test\r\n\r\n").await.unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&head).contains("\r\n\r\nup") {
        let n = kept.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before the response: {:?}", String::from_utf8_lossy(&head));
        head.extend_from_slice(&buf[..n]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{:?}", String::from_utf8_lossy(&head));
    assert_eq!(served(gw.addr, false).await, 200);
    closed_by_server(&mut kept, "the idle keep-alive connection").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_busy_past_the_idle_timeout_is_not_cut() {
    let up = plain_upstream().await;
    let gw = Server::gateway(&tempdir("idle-busy"), up, &["--idle-timeout", "1s"]);
    for http2 in [false, true] {
        // The upstream takes 2 s: twice the idle timeout, all of it busy.
        let c = client(http2);
        let got = send(&c, Request::get(url(gw.addr, "/slow")).body(full("")).unwrap()).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"up"[..]), "http2={http2}");
    }
}
