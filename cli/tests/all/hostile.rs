//! Hostile and broken clients through the real `serve`: oversized heads,
//! an oversized body for a buffering guest, a body that trickles in, a
//! client that disconnects mid-body, HTTP/2 with hundreds of concurrent
//! streams. Each gets a clean outcome, nothing panics, no instance leaks,
//! and the server keeps serving.

use crate::guests;
use crate::metrics::metric;
use crate::net::{TestBody, client, full, send, upstream, url};
use crate::process::{Server, tempdir};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An upstream that reads the whole request body and answers with its
/// length in `x-received` (or `x-received: error`); counts its requests.
async fn counting_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let addr = upstream(move |req: Request<hyper::body::Incoming>| {
        counter.fetch_add(1, Ordering::SeqCst);
        async move {
            let received = match req.into_body().collect().await {
                Ok(b) => b.to_bytes().len().to_string(),
                Err(_) => "error".to_string(),
            };
            Response::builder().header("x-received", received).body(full("from upstream")).unwrap()
        }
    })
    .await;
    (addr, hits)
}

/// The most instances of the guest a [`hostile_gateway`] may hold: a pool
/// of 16 on each of its 2 workers, and the plugin's own first instance
/// (made when the filter loads; the workers serve with their replicas).
const MOST_INSTANCES: u64 = 2 * 16 + 1;

/// A gateway in front of `up` with the two test filters (a buffering one
/// and a pass-through one, chosen by path: the buffering guest runs in
/// front of everything, which makes every request body buffered), 2
/// workers, an admin port, and its log at `warn`.
fn hostile_gateway(tag: &str, up: SocketAddr, buffering: bool) -> Server {
    let dir = tempdir(tag);
    let wasm = if buffering { guests::buffering() } else { guests::versioned("v") };
    std::fs::write(dir.join("guest.wasm"), wasm).unwrap();
    let args = ["--workers", "2", "--filter", "guest.wasm", "--admin", "127.0.0.1:0"];
    Server::gateway_with_log(&dir, up, &args, "warn")
}

/// The gateway still serves a normal request, on a new connection, over
/// both protocols; its log has no panic; and once idle it holds no more
/// instances than its pools ([`MOST_INSTANCES`]).
async fn still_serving(gw: &Server) {
    for http2 in [false, true] {
        let got = send(&client(http2), Request::post(url(gw.addr, "/after")).body(full("after")).unwrap()).await;
        assert_eq!(got.status, 200, "http2={http2}");
        assert_eq!(got.values("x-received"), ["5"], "http2={http2}");
    }
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
    let instances = metric(gw.admin(), "http_wasm_instances", "guest").await;
    assert!(instances <= MOST_INSTANCES, "{instances} instances alive");
}

/// Sends `head` (and `body`) on a raw connection and reads until the
/// server closes it or 30 s pass: the bytes received, and whether the
/// connection ended with an error (a reset) rather than a clean close.
async fn raw_exchange(addr: SocketAddr, head: Vec<u8>, body: Vec<u8>) -> (String, Option<std::io::ErrorKind>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        // The server may answer and close before taking everything.
        let _ = write.write_all(&head).await;
        let _ = write.write_all(&body).await;
        write
    });
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65536];
    let ended = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            match read.read(&mut buf).await {
                Ok(0) => return None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return Some(e.kind()),
            }
        }
    })
    .await
    .expect("the server answers or closes within 30 s");
    drop(writer.await);
    (String::from_utf8_lossy(&got).into_owned(), ended)
}

/// The status of the first response in `raw`.
fn status_of(raw: &str) -> Option<u16> {
    raw.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// One step of a [`Scripted`] body.
enum Step {
    /// Send these bytes.
    Data(Bytes),
    /// Wait for this before going on.
    Wait(Pin<Box<dyn std::future::Future<Output = ()> + Send>>),
    /// Fail the body: the client abandons the request mid-body (HTTP/2:
    /// the stream is reset; HTTP/1.1: the connection is closed).
    Fail,
}

/// A request body that follows a script, with no length.
struct Scripted(std::collections::VecDeque<Step>);

impl http_body::Body for Scripted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        loop {
            match self.0.front_mut() {
                None => return Poll::Ready(None),
                Some(Step::Wait(f)) => {
                    std::task::ready!(f.as_mut().poll(cx));
                    self.0.pop_front();
                }
                Some(Step::Data(_)) => {
                    let Some(Step::Data(b)) = self.0.pop_front() else { unreachable!() };
                    return Poll::Ready(Some(Ok(http_body::Frame::data(b))));
                }
                Some(Step::Fail) => {
                    self.0.clear();
                    return Poll::Ready(Some(Err(std::io::Error::other("the client gives up"))));
                }
            }
        }
    }
}

/// `n` chunks of `size` bytes, `pause` before each (a trickle), with a
/// wait for `gate` after the first half.
fn trickle(n: usize, size: usize, pause: Duration, gate: tokio::sync::oneshot::Receiver<()>) -> Scripted {
    let mut steps = std::collections::VecDeque::new();
    let mut gate = Some(gate);
    for i in 0..n {
        if i == n / 2
            && let Some(g) = gate.take()
        {
            steps.push_back(Step::Wait(Box::pin(async move {
                let _ = g.await;
            })));
        }
        steps.push_back(Step::Wait(Box::pin(tokio::time::sleep(pause))));
        steps.push_back(Step::Data(Bytes::from(vec![b'x'; size])));
    }
    Scripted(steps)
}

/// Sends `req` on a fresh connection of its own (HTTP/2 with prior
/// knowledge when `http2`) and returns the response head and body.
async fn send_scripted(addr: SocketAddr, http2: bool, req: Request<Scripted>) -> hyper::Result<(u16, http::HeaderMap)> {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let res = if http2 {
        let (mut s, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        s.send_request(req).await?
    } else {
        let (mut s, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        s.send_request(req).await?
    };
    let (parts, body) = res.into_parts();
    body.collect().await?;
    Ok((parts.status.as_u16(), parts.headers))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_get_431_over_both_protocols() {
    let (up, hits) = counting_upstream().await;
    let gw = hostile_gateway("hostile-heads", up, false);
    // HTTP/1.1, more than 100 header lines: the whole head was read, so the
    // 431 always arrives, then the connection closes.
    let many: String = (0..150).map(|i| format!("x-h{i}: {i}\r\n")).collect();
    let head = format!("GET / HTTP/1.1\r\nhost: gw\r\n{many}\r\n").into_bytes();
    let (raw, ended) = raw_exchange(gw.addr, head, Vec::new()).await;
    assert_eq!((status_of(&raw), ended), (Some(431), None), "{raw}");
    // HTTP/1.1, one header line of 1 MiB (past hyper's ~400 KiB head
    // buffer): 431; the server stops reading there, so the kernel may
    // reset the connection under the 431 (then nothing arrives).
    let huge = format!("GET / HTTP/1.1\r\nhost: gw\r\nx-huge: {}\r\n\r\n", "a".repeat(1 << 20)).into_bytes();
    let (raw, ended) = raw_exchange(gw.addr, huge, Vec::new()).await;
    assert!(
        status_of(&raw) == Some(431) || (raw.is_empty() && ended == Some(std::io::ErrorKind::ConnectionReset)),
        "{ended:?} {raw}"
    );
    // A 64 KiB header is within the HTTP/1.1 limit: it reaches the upstream.
    let got = send(
        &client(false),
        Request::get(url(gw.addr, "/")).header("x-big", "a".repeat(64 << 10)).body(full("")).unwrap(),
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // HTTP/2: a header list over 16 KiB gets 431 on its stream; the
    // connection lives on.
    let io = TokioIo::new(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake::<_, _, TestBody>(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get(url(gw.addr, "/")).header("x-big", "a".repeat(32 << 10)).body(full("")).unwrap();
    assert_eq!(h2.send_request(req).await.unwrap().status(), 431);
    h2.ready().await.unwrap();
    let res = h2.send_request(Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(hits.load(Ordering::SeqCst), 2, "no oversized head reached the upstream");
    still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_for_a_buffering_guest_gets_413() {
    let (up, hits) = counting_upstream().await;
    let gw = hostile_gateway("hostile-413", up, true);
    let over = vec![b'x'; (4 << 20) + (64 << 10)];
    let mut count = 0;
    for http2 in [false, true] {
        // With a length and without (chunked on HTTP/1.1).
        for body in [full(over.clone()), crate::net::chunked(&over, 80)] {
            let got = send(&client(http2), Request::post(url(gw.addr, "/big")).body(body).unwrap()).await;
            count += 1;
            assert_eq!((got.status, &got.body[..]), (413, &b"Payload Too Large\n"[..]), "http2={http2}");
        }
    }
    // HTTP/2, 64 MiB announced and streamed: 413 as soon as the limit is
    // passed; the stream is reset, the upload stops, the connection lives.
    let io = TokioIo::new(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake::<_, _, TestBody>(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    let endless = crate::net::Chunks((0..1024).map(|_| Bytes::from(vec![b'y'; 64 << 10])).collect());
    let req = Request::post(url(gw.addr, "/huge")).header("content-length", (64u64 << 20).to_string());
    let res = h2.send_request(req.body(endless.boxed_unsync()).unwrap()).await.unwrap();
    assert_eq!(res.status(), 413);
    count += 1;
    h2.ready().await.unwrap();
    let res = h2.send_request(Request::post(url(gw.addr, "/")).body(full("ok")).unwrap()).await.unwrap();
    assert_eq!((res.status().as_u16(), res.headers()["x-received"].to_str().unwrap()), (200, "2"));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "no oversized body reached the upstream");
    assert_eq!(metric(gw.admin(), "http_wasm_bodies_too_large_total", "guest").await, count);
    still_serving(&gw).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_arrives_whole_while_others_are_served() {
    let (up, _) = counting_upstream().await;
    for buffering in [false, true] {
        let gw = hostile_gateway(&format!("hostile-slow-{buffering}"), up, buffering);
        for http2 in [false, true] {
            let at = format!("[buffering={buffering} http2={http2}]");
            // 32 chunks of 512 bytes, 20 ms apart, stopping half-way until
            // another request got through.
            let (open, gate) = tokio::sync::oneshot::channel();
            let req =
                Request::post(url(gw.addr, "/slow")).body(trickle(32, 512, Duration::from_millis(20), gate)).unwrap();
            let slow = tokio::spawn(send_scripted(gw.addr, http2, req));
            let got = send(&client(http2), Request::post(url(gw.addr, "/quick")).body(full("quick")).unwrap()).await;
            assert_eq!((got.status, got.values("x-received")), (200, vec!["5".to_string()]), "{at}");
            assert!(!slow.is_finished(), "{at}: the slow request is still waiting on its gate");
            open.send(()).unwrap();
            let (status, headers) = slow.await.unwrap().unwrap_or_else(|e| panic!("{at}: {e:?}"));
            assert_eq!((status, headers["x-received"].to_str().unwrap()), (200, "16384"), "{at}");
        }
        still_serving(&gw).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_mid_body_leaves_the_server_serving() {
    let (up, _) = counting_upstream().await;
    for buffering in [false, true] {
        let gw = hostile_gateway(&format!("hostile-disconnect-{buffering}"), up, buffering);
        // HTTP/1.1: 1 MiB announced, 10 KiB sent, then the socket closes.
        for _ in 0..20 {
            let head = format!("POST /gone HTTP/1.1\r\nhost: gw\r\ncontent-length: {}\r\n\r\n", 1 << 20).into_bytes();
            let mut stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
            stream.write_all(&head).await.unwrap();
            stream.write_all(&[b'z'; 10 << 10]).await.unwrap();
            drop(stream);
        }
        // HTTP/2: the body fails after 10 KiB (the client resets the
        // stream); the same connection then serves a normal request.
        let io = TokioIo::new(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
        let (mut h2, conn) =
            hyper::client::conn::http2::handshake::<_, _, Scripted>(TokioExecutor::new(), io).await.unwrap();
        tokio::spawn(conn);
        for _ in 0..20 {
            let body = Scripted([Step::Data(Bytes::from(vec![b'z'; 10 << 10])), Step::Fail].into());
            let req = Request::post(url(gw.addr, "/gone")).body(body).unwrap();
            h2.ready().await.unwrap();
            // Either the stream is reset before an answer, or the gateway
            // answered (it may, once the body failed): never a hang.
            let _ = h2.send_request(req).await;
        }
        h2.ready().await.unwrap();
        let res = h2
            .send_request(
                Request::post(url(gw.addr, "/"))
                    .body(Scripted([Step::Data(Bytes::from_static(b"fine"))].into()))
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!((res.status().as_u16(), res.headers()["x-received"].to_str().unwrap()), (200, "4"));
        // Every abandoned request gave its instance back.
        let admin = gw.admin();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while metric(admin, "http_wasm_instances", "guest").await > MOST_INSTANCES {
            assert!(std::time::Instant::now() < deadline);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        still_serving(&gw).await;
        // The upstream is not blamed for the client's vanishing body.
        assert!(!gw.log().contains("upstream request failed"), "{}", gw.log());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_concurrent_http2_streams_on_one_connection_all_complete() {
    let (up, hits) = counting_upstream().await;
    let gw = hostile_gateway("hostile-streams", up, false);
    let io = TokioIo::new(tokio::net::TcpStream::connect(gw.addr).await.unwrap());
    let (h2, conn) = hyper::client::conn::http2::handshake::<_, _, TestBody>(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    // 500 at once: the server allows 200 concurrent streams (hyper's
    // default), the client queues the rest; the pool has 16 instances.
    let tasks: Vec<_> = (0..500)
        .map(|i| {
            let mut h2 = h2.clone();
            let addr = gw.addr;
            tokio::spawn(async move {
                h2.ready().await.unwrap();
                let body = format!("stream {i}");
                let res =
                    h2.send_request(Request::post(url(addr, "/")).body(full(body.clone())).unwrap()).await.unwrap();
                let (parts, body_in) = res.into_parts();
                body_in.collect().await.unwrap();
                (
                    parts.status.as_u16(),
                    parts.headers["x-received"].to_str().unwrap().parse::<usize>().unwrap(),
                    body.len(),
                )
            })
        })
        .collect();
    for t in tasks {
        let (status, received, sent) = t.await.unwrap();
        assert_eq!((status, received), (200, sent));
    }
    assert_eq!(hits.load(Ordering::SeqCst), 500);
    still_serving(&gw).await;
}

/// A gateway in front of `up` with one pass-through filter and `extra` flags.
fn limited_gateway(tag: &str, up: SocketAddr, extra: &[&str]) -> Server {
    let dir = tempdir(tag);
    std::fs::write(dir.join("guest.wasm"), guests::versioned("v")).unwrap();
    let mut args = vec!["--filter", "guest.wasm"];
    args.extend_from_slice(extra);
    Server::gateway_with_log(&dir, up, &args, "warn")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_that_never_completes_is_closed_at_the_header_timeout() {
    let (up, hits) = counting_upstream().await;
    let gw = limited_gateway("header-timeout", up, &["--header-timeout", "200ms"]);
    // Half a head, then silence (the write side stays open): the server
    // ends the connection (raw_exchange waits at most 30 s for that).
    let (got, _) = raw_exchange(gw.addr, b"GET / HTTP/1.1\r\nhost: x\r\nx-slow".to_vec(), Vec::new()).await;
    assert!(got.is_empty() || status_of(&got) == Some(408), "{got}");
    assert_eq!(hits.load(Ordering::SeqCst), 0, "nothing reached the upstream");
    let got = send(&client(false), Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await;
    assert_eq!(got.status, 200);
    assert!(!gw.log().contains("panicked"), "{}", gw.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_wait_until_one_closes() {
    let (up, _) = counting_upstream().await;
    let gw = limited_gateway("max-connections", up, &["--max-connections", "1"]);
    // Connection A: one exchange, then kept open (keep-alive) and idle.
    let mut a = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    a.write_all(b"GET /a HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("from upstream") {
        let n = tokio::time::timeout(Duration::from_secs(30), a.read(&mut buf)).await.expect("A is answered").unwrap();
        assert!(n > 0, "A closed early");
        seen.extend_from_slice(&buf[..n]);
    }
    // Connection B waits in the listen backlog while A holds the only slot.
    let addr = gw.addr;
    let b = tokio::spawn(async move {
        raw_exchange(addr, b"GET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec(), Vec::new()).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!b.is_finished(), "B was served while A held the only connection slot");
    drop(a);
    let (got, _) = b.await.unwrap();
    assert_eq!(status_of(&got), Some(200), "{got}");
}
