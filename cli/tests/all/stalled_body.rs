//! `--body-timeout` on a request body the gateway forwards itself (no
//! filter, or filters that pass it on unread): a client that stops sending
//! gets 408 (HTTP/1.1: with `connection: close`, and the connection is
//! closed), the upstream exchange is aborted, and neither the connection
//! nor a filter instance is held. Through the real `serve` over sockets.

use crate::guests;
use crate::net::{TestBody, client, full, h2_connection, send, until, url};
use crate::process::{Server, tempdir};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the upstream counted: request heads, and bodies that failed
/// before their end (the gateway aborted the exchange).
#[derive(Clone, Default)]
struct Counts {
    heads: Arc<AtomicUsize>,
    broken_bodies: Arc<AtomicUsize>,
}

/// An upstream that counts each request as its head arrives, then reads
/// the whole body before it answers 200 `from upstream`.
async fn reading_upstream() -> (SocketAddr, Counts) {
    let counts = Counts::default();
    let seen = counts.clone();
    let addr = crate::net::upstream(move |req: Request<hyper::body::Incoming>| {
        let seen = seen.clone();
        async move {
            seen.heads.fetch_add(1, Ordering::SeqCst);
            if req.into_body().collect().await.is_err() {
                seen.broken_bodies.fetch_add(1, Ordering::SeqCst);
            }
            Response::new(full("from upstream"))
        }
    })
    .await;
    (addr, counts)
}

/// A raw HTTP/1.1 upload that promises 1000 body bytes, sends 3 and then
/// nothing: everything the gateway sends back until it closes the
/// connection (panics if it neither answers nor closes within 20 s, a
/// bound, not a measurement).
async fn stalled_http1(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "POST /upload HTTP/1.1\r\nhost: slow.test\r\ncontent-length: 1000\r\n\r\nabc";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let got = String::from_utf8_lossy(&got).into_owned();
    assert!(closed.is_ok(), "not closed within 20 s; got {got:?}");
    got
}

/// A request body that sends `abc` and then nothing, ever.
struct Stalled(bool);

impl http_body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        if self.0 {
            return Poll::Pending;
        }
        self.0 = true;
        Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from_static(b"abc")))))
    }
}

/// A stalled upload over HTTP/2, then a plain GET on the same connection:
/// their statuses (each within 20 s).
async fn stalled_http2(addr: SocketAddr) -> (u16, u16) {
    let mut h2 = h2_connection(addr).await;
    let req: Request<TestBody> = Request::post(url(addr, "/upload")).body(Stalled(false).boxed_unsync()).unwrap();
    h2.ready().await.unwrap();
    let res = tokio::time::timeout(Duration::from_secs(20), h2.send_request(req))
        .await
        .expect("a response within 20 s")
        .expect("a response, not a reset");
    let stalled = res.status().as_u16();
    h2.ready().await.unwrap();
    let res = h2.send_request(Request::get(url(addr, "/")).body(full("")).unwrap()).await.unwrap();
    (stalled, res.status().as_u16())
}

/// Both protocols against `gw`: 408 each time, the upstream exchange
/// aborted (when `forwarded`: the body streams to the upstream; else it
/// never reaches it), and a new request served at once.
async fn stalled_both_ways(gw: &Server, counts: &Counts, forwarded: bool, at: &str) {
    let got = stalled_http1(gw.addr).await;
    assert!(got.starts_with("HTTP/1.1 408"), "{at} http1: {got:?}");
    assert!(got.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{at} http1: {got:?}");
    let broken = |n: usize| async move { counts.broken_bodies.load(Ordering::SeqCst) == n };
    if forwarded {
        until("the upstream saw the first body break off", || broken(1)).await;
    }
    assert_eq!(stalled_http2(gw.addr).await, (408, 200), "{at} http2: the stalled stream, then the next one");
    if forwarded {
        until("the upstream saw the second body break off", || broken(2)).await;
    } else {
        // The one GET after the HTTP/2 stall reached it, nothing else.
        assert_eq!(counts.heads.load(Ordering::SeqCst), 1, "{at}");
    }
    for http2 in [false, true] {
        let got = send(&client(http2), Request::post(url(gw.addr, "/")).body(full("whole")).unwrap()).await;
        assert_eq!((got.status, &got.body[..]), (200, &b"from upstream"[..]), "{at} http2={http2}");
    }
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_filters_a_stalled_body_gets_408_and_the_upstream_exchange_is_aborted() {
    let (up, counts) = reading_upstream().await;
    let gw = Server::gateway_with_log(&tempdir("stalled-plain"), up, &["--body-timeout", "1s"], "warn");
    stalled_both_ways(&gw, &counts, true, "[no filter]").await;
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_body_a_filter_passes_on_unread_gets_408_and_frees_the_instance(engine) {
        let (up, counts) = reading_upstream().await;
        // One instance (one worker: a pool is each worker's), and a
        // request that finds it busy gets 503 after 300 ms: the requests
        // after each stall get 200 only if the stalled one released it.
        let flags = ["--workers", "1", "--body-timeout", "1s", "--pool-size", "1", "--pool-wait", "300ms"];
        let gw = crate::net::gateway("stalled-filter", Some(&guests::next_and_log(false)), engine, up, &flags, "warn");
        // (On wasmer a request whose body is still arriving is served by
        // the filter's own pool, whose instances may wait for it; the
        // worker's replica serves the rest. Both have one instance.)
        stalled_both_ways(&gw, &counts, true, &format!("[{engine}]")).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_body_for_a_buffering_filter_gets_408_with_connection_close(engine) {
        let (up, counts) = reading_upstream().await;
        let flags = ["--workers", "1", "--body-timeout", "1s", "--pool-size", "1", "--pool-wait", "300ms"];
        let gw = crate::net::gateway("stalled-buffering", Some(&guests::buffering()), engine, up, &flags, "warn");
        stalled_both_ways(&gw, &counts, false, &format!("[{engine} buffering]")).await;
    }
}
