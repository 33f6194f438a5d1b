//! Request bodies that are still arriving when a filter's request phase
//! starts, through the real `serve --workers 2` over raw HTTP/1.1
//! connections, on both engines. On wasmer each worker's instances run on
//! the worker's thread and cannot wait for a body, so such a request is
//! served by the filter's own pool, whose instances may wait: a client
//! that waits for the response before it finishes its body gets it, and a
//! guest that reads a streamed body reads all of it, past `--body-limit`.

use crate::guests;
use crate::net::{full, gateway, upstream};
use bytes::Bytes;
use http::Response;
use http_body_util::BodyExt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for a response or a close (a bound, not a
/// measurement): well under the gateways' `--body-timeout` of 10 s, so a
/// request held until then fails here rather than getting 408.
const BOUND: Duration = Duration::from_secs(5);

/// Reads one response with a `content-length` from `stream`: its head (up
/// to the blank line) and body. Panics if the connection ends first.
async fn read_response(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(at) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut buf).await.expect("reading the response head");
        assert!(n > 0, "the connection closed before a response head: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&got[..end]).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case("content-length")))
        .map(|(_, v)| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("a response without content-length: {head:?}"));
    let mut body = got.split_off(end);
    while body.len() < len {
        let n = stream.read(&mut buf).await.expect("reading the response body");
        assert!(n > 0, "the connection closed within the response body: {head:?}");
        body.extend_from_slice(&buf[..n]);
    }
    assert_eq!(body.len(), len, "more than one response: {head:?}");
    (head, body)
}

/// What the gateway does with a connection after its response: reads
/// until the end, `Ok(bytes)` when it closed (a FIN: `read` returns 0),
/// `Err` on a reset; `None` if it neither closes nor sends within `BOUND`.
async fn until_closed(stream: &mut TcpStream) -> Option<std::io::Result<Vec<u8>>> {
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(BOUND, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(rest),
                Ok(n) => rest.extend_from_slice(&buf[..n]),
                Err(e) => return Err(e),
            }
        }
    })
    .await
    .ok()
}

/// The status code of a response head.
fn status(head: &str) -> u16 {
    head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// `--workers 2` and a `--body-timeout` far beyond [`BOUND`].
const FLAGS: [&str; 4] = ["--workers", "2", "--body-timeout", "10s"];

tower_http_wasm::per_engine! {
    // The upstream answers before the body is complete; the client sends
    // the rest only after the response. The gateway must not wait for the
    // rest first (on wasmer at 41cd929 the worker received the body before
    // the guest ran: no response until `--body-timeout`).
    //
    // After the response the gateway closes the connection, without
    // waiting for the rest: the upstream drops the body unread, so its
    // hyper server stops reading (`poll_drain_or_close_read` cannot drain
    // the 997 bytes still to come: `close_read`, keep-alive off) and closes
    // its connection after the response; the gateway's upstream
    // connection then ends (hyper's client sees the EOF mid-message) and
    // drops the request body; the gateway's own hyper server then stops
    // reading the client's body the same way, so its connection cannot be
    // kept alive and is closed (FIN) once the response is written.
    // Whether that response carries `connection: close` depends on which
    // comes first, the upstream's EOF or the response head's write (so
    // far the head, without it): not asserted.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_finishing_its_body_after_the_response_gets_it(engine) {
        let heads = Arc::new(AtomicUsize::new(0));
        let seen = heads.clone();
        let up = upstream(move |_req| {
            seen.fetch_add(1, Ordering::SeqCst);
            async { Response::new(full("from upstream")) }
        })
        .await;
        let gw = gateway("full-duplex-early", Some(&guests::next_and_log(false)), engine, up, &FLAGS, "warn");

        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let head = "POST /upload HTTP/1.1\r\nhost: duplex.test\r\ncontent-length: 1000\r\n\r\nabc";
        stream.write_all(head.as_bytes()).await.unwrap();
        let (head, body) = tokio::time::timeout(BOUND, read_response(&mut stream))
            .await
            .unwrap_or_else(|_| panic!("[{engine}] no response within {BOUND:?} while the body is incomplete"));
        assert_eq!((status(&head), &body[..]), (200, &b"from upstream"[..]), "[{engine}] {head:?}");
        assert_eq!(heads.load(Ordering::SeqCst), 1, "[{engine}]");

        // Closed after the response, cleanly (FIN, nothing more sent),
        // with 997 body bytes never sent.
        let closed = until_closed(&mut stream).await;
        match closed {
            Some(Ok(rest)) => assert!(rest.is_empty(), "[{engine}] after the response: {:?}", String::from_utf8_lossy(&rest)),
            Some(Err(e)) => panic!("[{engine}] reset instead of closed: {e}"),
            None => panic!("[{engine}] still open {BOUND:?} after the response"),
        }
        // The rest of the body goes to a closed connection: nothing comes
        // back but the end (the peer's reset, if any, follows its FIN).
        let _ = stream.write_all(&[b'x'; 997]).await;
        assert!(matches!(until_closed(&mut stream).await, Some(Ok(rest)) if rest.is_empty()), "[{engine}]");

        // The gateway serves the next connection as usual.
        let mut stream = TcpStream::connect(gw.addr).await.unwrap();
        let head = "POST /upload HTTP/1.1\r\nhost: duplex.test\r\ncontent-length: 3\r\n\r\nabc";
        stream.write_all(head.as_bytes()).await.unwrap();
        let (head, body) = tokio::time::timeout(BOUND, read_response(&mut stream)).await.expect("a response");
        assert_eq!((status(&head), &body[..]), (200, &b"from upstream"[..]), "[{engine}] {head:?}");
        assert!(!gw.log().contains("panicked"), "{}", gw.log());
    }
}

/// Reads the whole request body, without keeping it, before calling next,
/// when the request has header `x-read-body`; then sets request header
/// `x-guest-read` to the number of bytes it read (decimal). Without the
/// header it calls next at once, leaving the body unread.
fn reads_the_body() -> Vec<u8> {
    guests::module(
        r#"(data (i32.const 0) "x-read-body")
  (data (i32.const 16) "x-guest-read")
  (func (export "handle_request") (result i64) (local $r i64) (local $total i32)
    (if (i32.lt_s (call $value (i32.const 0) (i32.const 11)) (i32.const 0))
      (then (return (i64.const 1))))
    ;; 256 bytes at a time, to 64 KiB, overwritten by the next read
    (loop $more
      (local.set $r (call $read_body (i32.const 0) (i32.const 65536) (i32.const 256)))
      (local.set $total (i32.add (local.get $total) (i32.wrap_i64 (local.get $r))))
      (br_if $more (i64.eqz (i64.shr_u (local.get $r) (i64.const 32)))))
    (call $set_decimal (i32.const 0) (i32.const 16) (i32.const 12) (local.get $total))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
    )
}

/// What the upstream received of one request: its `x-guest-read` values
/// and its body.
type Received = Arc<Mutex<Vec<(Vec<String>, Bytes)>>>;

/// An upstream that reads each request's whole body, records it, and
/// answers 200 `from upstream`.
async fn recording_upstream() -> (SocketAddr, Received) {
    let received = Received::default();
    let log = received.clone();
    let addr = upstream(move |req: http::Request<hyper::body::Incoming>| {
        let log = log.clone();
        async move {
            let read = crate::net::values(req.headers(), "x-guest-read");
            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            log.lock().unwrap().push((read, body));
            Response::new(full("from upstream"))
        }
    })
    .await;
    (addr, received)
}

/// A raw HTTP/1.1 POST of `body` with its `content-length` (and `extra`
/// header lines), in pieces of 800 bytes 200 ms apart, the head with the
/// first: the response (within [`BOUND`] of the last piece).
async fn post_in_pieces(addr: SocketAddr, extra: &str, body: &[u8]) -> (String, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!("POST /upload HTTP/1.1\r\nhost: duplex.test\r\ncontent-length: {}\r\n{extra}\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    for (i, piece) in body.chunks(800).enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        stream.write_all(piece).await.unwrap();
    }
    tokio::time::timeout(BOUND, read_response(&mut stream)).await.expect("a response")
}

tower_http_wasm::per_engine! {
    // A body of 2400 bytes streamed in three pieces over `--body-limit
    // 1000`: a guest that reads it before next reads all of it (on wasmer
    // at 41cd929 the worker received only up to the limit before the
    // guest ran, and the read past it failed: 500); one that leaves it
    // unread passes all of it on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_streamed_body_past_the_limit_is_read_whole_or_forwarded_whole(engine) {
        let (up, received) = recording_upstream().await;
        let flags = [&FLAGS[..], &["--body-limit", "1000"]].concat();
        let gw = gateway("full-duplex-streamed", Some(&reads_the_body()), engine, up, &flags, "warn");
        let sent = guests::pattern(2400, 7);

        // Read by the guest without keeping it (no `buffer_request`): it
        // is consumed, so the upstream gets an empty body, and the count.
        let (head, body) = post_in_pieces(gw.addr, "x-read-body: 1\r\n", &sent).await;
        assert_eq!((status(&head), &body[..]), (200, &b"from upstream"[..]), "[{engine}] {head:?}\n{}", gw.log());
        let got = received.lock().unwrap().pop().expect("the upstream got the request");
        assert_eq!(got, (vec!["2400".to_string()], Bytes::new()), "[{engine}]");

        // Left unread: the upstream gets all of it.
        let (head, body) = post_in_pieces(gw.addr, "", &sent).await;
        assert_eq!((status(&head), &body[..]), (200, &b"from upstream"[..]), "[{engine}] {head:?}\n{}", gw.log());
        let got = received.lock().unwrap().pop().expect("the upstream got the request");
        assert_eq!((got.0, got.1.len()), (vec![], 2400), "[{engine}]");
        assert!(got.1 == sent, "[{engine}] the upstream got other bytes than sent");
        assert!(!gw.log().contains("panicked"), "{}", gw.log());
    }
}
