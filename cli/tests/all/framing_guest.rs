//! The host owns framing: whatever a guest writes into `content-length` or
//! `transfer-encoding`, in either direction, the message that leaves the
//! gateway has framing that matches its body, so neither the client's
//! connection nor the upstream's is desynchronised. Checked with raw
//! sockets: hand-written HTTP/1.1 on both sides (hyper's client for
//! HTTP/2), and a second request on the same connection after each case.

use crate::guests;
use crate::net::{TestBody, gateway};
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The body the upstream always answers with: 12 bytes, `content-length: 12`.
const UPSTREAM_BODY: &[u8] = b"hello world!";

/// The body a client sends with a POST: 12 bytes.
const CLIENT_BODY: &[u8] = b"client body!";

/// The body the guest writes in case `W`.
const GUEST_BODY: &[u8] = b"guest body";

/// The framing guest, driven by the first byte of request header `x-frame`,
/// then calls next:
///
/// | `x-frame` | before next |
/// |---|---|
/// | `L` | request `content-length: 40` |
/// | `T` | request `transfer-encoding: chunked` |
/// | `W` | writes the request body `guest body` (10 bytes), then request `content-length: 99` |
/// | `B` | request `content-length: 99`, then writes the request body `guest body` |
/// | `R` | response `content-length: 5` |
/// | `C` | response `transfer-encoding: chunked` |
///
/// `P` and `Q` enable `buffer_response`, and after next (`handle_response`)
/// `P` sets response `content-length: 5`, `Q` response `transfer-encoding:
/// chunked`.
fn framing_guest() -> Vec<u8> {
    guests::module(
        r#"(data (i32.const 0) "x-frame")
  (data (i32.const 16) "content-length")
  (data (i32.const 32) "transfer-encoding")
  (data (i32.const 64) "40")
  (data (i32.const 80) "chunked")
  (data (i32.const 96) "99")
  (data (i32.const 112) "5")
  (data (i32.const 128) "guest body")
  (global $after (mut i32) (i32.const 0))
  (func (export "handle_request") (result i64) (local $c i32)
    (global.set $after (i32.const 0))
    (if (i32.le_s (call $value (i32.const 0) (i32.const 7)) (i32.const 0))
      (then (return (i64.const 1))))
    (local.set $c (i32.load8_u (i32.const 1024)))
    (global.set $after (local.get $c))
    (if (i32.ge_u (local.get $c) (i32.const 80)) ;; P, Q
      (then (if (i32.le_u (local.get $c) (i32.const 81))
        (then (drop (call $enable_features (i32.const 2)))))))
    (if (i32.eq (local.get $c) (i32.const 76)) ;; L
      (then (call $set_header_value (i32.const 0) (i32.const 16) (i32.const 14) (i32.const 64) (i32.const 2))))
    (if (i32.eq (local.get $c) (i32.const 84)) ;; T
      (then (call $set_header_value (i32.const 0) (i32.const 32) (i32.const 17) (i32.const 80) (i32.const 7))))
    (if (i32.eq (local.get $c) (i32.const 87)) ;; W
      (then
        (call $write_body (i32.const 0) (i32.const 128) (i32.const 10))
        (call $set_header_value (i32.const 0) (i32.const 16) (i32.const 14) (i32.const 96) (i32.const 2))))
    (if (i32.eq (local.get $c) (i32.const 66)) ;; B
      (then
        (call $set_header_value (i32.const 0) (i32.const 16) (i32.const 14) (i32.const 96) (i32.const 2))
        (call $write_body (i32.const 0) (i32.const 128) (i32.const 10))))
    (if (i32.eq (local.get $c) (i32.const 82)) ;; R
      (then (call $set_header_value (i32.const 1) (i32.const 16) (i32.const 14) (i32.const 112) (i32.const 1))))
    (if (i32.eq (local.get $c) (i32.const 67)) ;; C
      (then (call $set_header_value (i32.const 1) (i32.const 32) (i32.const 17) (i32.const 80) (i32.const 7))))
    (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (if (i32.eq (global.get $after) (i32.const 80)) ;; P
      (then (call $set_header_value (i32.const 1) (i32.const 16) (i32.const 14) (i32.const 112) (i32.const 1))))
    (if (i32.eq (global.get $after) (i32.const 81)) ;; Q
      (then (call $set_header_value (i32.const 1) (i32.const 32) (i32.const 17) (i32.const 80) (i32.const 7)))))"#,
    )
}

/// One HTTP/1.1 message read off a raw connection, framed strictly by its
/// own head (`content-length`, or `transfer-encoding: chunked`).
#[derive(Debug)]
struct Message {
    /// The start line (`GET /x HTTP/1.1`, `HTTP/1.1 200 OK`).
    start: String,
    /// Header lines, names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Message {
    fn header(&self, name: &str) -> Vec<&str> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }
}

/// A raw connection with what was read past the last message.
struct Raw<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> Raw<S> {
    fn new(io: S) -> Raw<S> {
        Raw { io, buf: Vec::new() }
    }

    /// Reads more bytes; `Err` at the end of the stream.
    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 8192];
        match self.io.read(&mut chunk).await {
            Ok(0) => Err(format!("connection closed; unparsed: {:?}", String::from_utf8_lossy(&self.buf))),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(format!("read failed: {e}")),
        }
    }

    /// A line ending in CRLF, without it.
    async fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(at) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line = String::from_utf8_lossy(&self.buf[..at]).into_owned();
                self.buf.drain(..at + 2);
                return Ok(line);
            }
            if self.buf.len() > 64 << 10 {
                return Err("a line over 64 KiB".into());
            }
            self.fill().await?;
        }
    }

    async fn exactly(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// The next message; `no_body` for the response to a HEAD. Errors on
    /// anything that is not well-framed HTTP/1.1.
    async fn message(&mut self, no_body: bool) -> Result<Message, String> {
        let start = self.line().await?;
        let mut headers = Vec::new();
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').ok_or_else(|| format!("not a header line: {line:?} after {start:?}"))?;
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut message = Message { start, headers, body: Vec::new() };
        let lengths = message.header("content-length");
        let te = message.header("transfer-encoding");
        if no_body {
            return Ok(message);
        }
        if !te.is_empty() {
            if !lengths.is_empty() {
                return Err(format!("both content-length and transfer-encoding: {message:?}"));
            }
            if te != ["chunked"] {
                return Err(format!("transfer-encoding {te:?}"));
            }
            loop {
                let size = self.line().await?;
                let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| format!("bad chunk size {size:?}"))?;
                if size == 0 {
                    // Trailers, then the empty line.
                    while !self.line().await?.is_empty() {}
                    break;
                }
                let chunk = self.exactly(size).await?;
                message.body.extend_from_slice(&chunk);
                if self.exactly(2).await? != b"\r\n" {
                    return Err("a chunk not followed by CRLF".into());
                }
            }
        } else if let Some(len) = lengths.first() {
            if lengths.len() > 1 {
                return Err(format!("{} content-length lines", lengths.len()));
            }
            let len: usize = len.parse().map_err(|_| format!("content-length {len:?}"))?;
            let body = self.exactly(len).await?;
            message.body = body;
        } else if message.start.starts_with("HTTP/") {
            return Err(format!("a response with neither content-length nor chunked: {message:?}"));
        }
        Ok(message)
    }
}

/// A request as the raw upstream parsed it, and on which of its
/// connections (0, 1...) it came.
#[derive(Debug)]
struct Seen {
    conn: usize,
    message: Result<Message, String>,
}

/// A raw HTTP/1.1 upstream: parses each request strictly by its framing,
/// records it, and answers [`UPSTREAM_BODY`] with `content-length: 12`, on
/// the same connection for as long as the gateway keeps it.
async fn raw_upstream() -> (SocketAddr, Arc<Mutex<Vec<Seen>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut conn = 0;
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let id = conn;
            conn += 1;
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut raw = Raw::new(read);
                loop {
                    // Nothing more on this connection: not a request.
                    if raw.buf.is_empty() && raw.fill().await.is_err() {
                        return;
                    }
                    let message = raw.message(false).await;
                    let failed = message.is_err();
                    log.lock().unwrap().push(Seen { conn: id, message });
                    if failed {
                        return;
                    }
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", UPSTREAM_BODY.len());
                    if write.write_all(head.as_bytes()).await.is_err() || write.write_all(UPSTREAM_BODY).await.is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, seen)
}

/// The method of a request with `body`: GET without one, else POST.
fn method(body: &[u8]) -> &'static str {
    if body.is_empty() { "GET" } else { "POST" }
}

/// Sends `GET path` (`POST` with `body` and its `content-length` when
/// there is one; with `x-frame: FRAME` when given) on a raw HTTP/1.1
/// connection and reads the response strictly.
async fn raw_get(
    raw: &mut Raw<tokio::net::tcp::OwnedReadHalf>,
    write: &mut tokio::net::tcp::OwnedWriteHalf,
    path: &str,
    frame: Option<&str>,
    body: &[u8],
) -> Result<Message, String> {
    let mut head = format!("{} {path} HTTP/1.1\r\nhost: framing.test\r\n", method(body));
    if let Some(f) = frame {
        head.push_str(&format!("x-frame: {f}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!("content-length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    write.write_all(&bytes).await.map_err(|e| e.to_string())?;
    tokio::time::timeout(Duration::from_secs(20), raw.message(false))
        .await
        .map_err(|_| "no response in 20 s".to_string())?
}

/// Sends `GET path` (`POST` with `body` when there is one; with
/// `x-frame`) on an HTTP/2 connection; hyper's client checks that
/// `content-length` matches the DATA frames.
async fn h2_get(
    send: &mut hyper::client::conn::http2::SendRequest<TestBody>,
    addr: SocketAddr,
    path: &str,
    frame: Option<&str>,
    body: &[u8],
) -> Result<(u16, Vec<String>, Bytes), String> {
    let mut req = Request::builder().method(method(body)).uri(format!("http://{addr}{path}"));
    if let Some(f) = frame {
        req = req.header("x-frame", f);
    }
    let req = if body.is_empty() {
        req.body(Empty::new().map_err(|e| match e {}).boxed_unsync()).unwrap()
    } else {
        req.body(crate::net::full(body.to_vec())).unwrap()
    };
    send.ready().await.map_err(|e| format!("connection not ready: {e}"))?;
    let res = tokio::time::timeout(Duration::from_secs(20), send.send_request(req))
        .await
        .map_err(|_| "no response in 20 s".to_string())?
        .map_err(|e| format!("request failed: {e}"))?;
    let status = res.status().as_u16();
    let lengths = crate::net::values(res.headers(), "content-length");
    let body = res.into_body().collect().await.map_err(|e| format!("body failed: {e}"))?.to_bytes();
    Ok((status, lengths, body))
}

async fn h2_connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    send
}

/// One case through a client connection of either protocol: the first
/// request with `x-frame: FRAME`, then a plain second one on the same
/// connection. Returns the first response's body, after checking that
/// both responses are whole and well framed.
async fn client_case(gw: SocketAddr, http2: bool, frame: &str, sent: &[u8], at: &str) -> Vec<u8> {
    if http2 {
        let mut send = h2_connect(gw).await;
        let (status, lengths, body) =
            h2_get(&mut send, gw, "/first", Some(frame), sent).await.unwrap_or_else(|e| panic!("{at}: first: {e}"));
        assert_eq!(status, 200, "{at}");
        assert!(
            lengths.is_empty() || lengths == [body.len().to_string()],
            "{at}: content-length {lengths:?} for {} bytes",
            body.len()
        );
        let (status, _, second) =
            h2_get(&mut send, gw, "/second", None, b"").await.unwrap_or_else(|e| panic!("{at}: second: {e}"));
        assert_eq!((status, &second[..]), (200, UPSTREAM_BODY), "{at}: second request on the connection");
        body.to_vec()
    } else {
        let (read, mut write) = TcpStream::connect(gw).await.unwrap().into_split();
        let mut raw = Raw::new(read);
        let first = raw_get(&mut raw, &mut write, "/first", Some(frame), sent)
            .await
            .unwrap_or_else(|e| panic!("{at}: first: {e}"));
        assert!(first.start.starts_with("HTTP/1.1 200"), "{at}: {first:?}");
        let second =
            raw_get(&mut raw, &mut write, "/second", None, b"").await.unwrap_or_else(|e| panic!("{at}: second: {e}"));
        assert!(second.start.starts_with("HTTP/1.1 200"), "{at}: second request on the connection: {second:?}");
        assert_eq!(second.body, UPSTREAM_BODY, "{at}: second");
        first.body
    }
}

/// The requests the upstream parsed for paths `/first` and `/second`,
/// after both arrived (or a parse failed).
async fn upstream_saw(seen: &Arc<Mutex<Vec<Seen>>>, at: &str) -> Vec<(usize, Message)> {
    for _ in 0..500 {
        {
            let mut log = seen.lock().unwrap();
            if let Some(bad) = log.iter().position(|s| s.message.is_err()) {
                panic!("{at}: the upstream got a malformed request: {:?}", log.remove(bad));
            }
            if log.len() >= 2 {
                return log.drain(..).map(|s| (s.conn, s.message.unwrap())).collect();
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{at}: the upstream did not get both requests: {:?}", seen.lock().unwrap());
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guest_set_response_length_never_desynchronises_the_client(engine) {
        let (up, seen) = raw_upstream().await;
        let gw = gateway("framing-response", Some(&framing_guest()), engine, up, &["--upstream-timeout", "5s"], "off");
        for http2 in [false, true] {
            for frame in ["R", "C", "P", "Q"] {
                let at = format!("[{engine} http2={http2} x-frame: {frame}]");
                let body = client_case(gw.addr, http2, frame, b"", &at).await;
                assert_eq!(body, UPSTREAM_BODY, "{at}: the whole upstream body, under framing that says so");
                upstream_saw(&seen, &at).await;
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_guest_set_request_length_never_desynchronises_the_upstream(engine) {
        let (up, seen) = raw_upstream().await;
        let gw = gateway("framing-request", Some(&framing_guest()), engine, up, &["--upstream-timeout", "5s"], "off");
        for (http2, sent) in [(false, &b""[..]), (true, b""), (false, CLIENT_BODY), (true, CLIENT_BODY)] {
            // A guest that writes no body leaves the client's; one that
            // writes one replaces it.
            for (frame, want) in [("L", sent), ("T", sent), ("W", GUEST_BODY), ("B", GUEST_BODY)] {
                let at = format!("[{engine} http2={http2} x-frame: {frame} client body: {}]", sent.len());
                let body = client_case(gw.addr, http2, frame, sent, &at).await;
                assert_eq!(body, UPSTREAM_BODY, "{at}");
                let got = upstream_saw(&seen, &at).await;
                let ((_, first), (_, second)) = (&got[0], &got[1]);
                // A body shorter than its promise would leave the upstream
                // waiting (504), a longer one would be parsed as the next
                // request (malformed): the strict upstream sees neither,
                // on whichever of its connections the requests came.
                assert!(first.start.starts_with(&format!("{} /first ", method(sent))), "{at}: {first:?}");
                assert_eq!(first.body, want, "{at}: the body the guest left, framed as such");
                let lengths = first.header("content-length");
                assert!(lengths.is_empty() || lengths == [want.len().to_string()], "{at}: {first:?}");
                assert!(second.start.starts_with("GET /second "), "{at}: {second:?}");
                assert!(second.body.is_empty(), "{at}: {second:?}");
            }
        }
    }
}
