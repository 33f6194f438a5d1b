//! Over real sockets: hyper servers on 127.0.0.1, HTTP/1.1 and HTTP/2, and axum.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use tower_http_wasm::{HttpWasmLayer, Plugin, SourceAddr};

/// Serves `plugin` in front of [`echo`] on an ephemeral port.
async fn serve(plugin: Plugin) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, peer)) = listener.accept().await else { return };
            let svc = tower::ServiceBuilder::new()
                .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                    req.extensions_mut().insert(SourceAddr(peer));
                    req
                })
                .layer(HttpWasmLayer::new(plugin.clone()))
                .service_fn(echo);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    addr
}

fn client(
    http2: bool,
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).http2_only(http2).build_http()
}

/// Copies protocol version, source address and host to response headers.
fn connection_guest() -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 0) "x-proto")
  (data (i32.const 8) "x-source")
  (data (i32.const 16) "host")
  (data (i32.const 24) "x-host")
  (func (export "handle_request") (result i64) (local $n i32) (local $cl i64)
    (local.set $n (call $get_protocol_version (i32.const 2048) (i32.const 100)))
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 2048) (local.get $n))
    (local.set $n (call $get_source_addr (i32.const 2048) (i32.const 100)))
    (call $set_header_value (i32.const 1) (i32.const 8) (i32.const 8) (i32.const 2048) (local.get $n))
    (local.set $cl (call $get_header_values (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 2048) (i32.const 100)))
    (call $assert (i64.eq (i64.shr_u (local.get $cl) (i64.const 32)) (i64.const 1)))
    (call $set_header_value (i32.const 1) (i32.const 24) (i32.const 6) (i32.const 2048)
      (i32.sub (i32.wrap_i64 (local.get $cl)) (i32.const 1)))
    (i64.const 1))
  {NOOP_RESPONSE}"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn protocol_source_and_host_over_http1_and_http2(engine) {
        let addr = serve(load(engine, &connection_guest())).await;
        for (http2, proto) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
            let uri = format!("http://{addr}/x?y=1");
            let req = http::Request::post(&uri).body(Full::new(Bytes::from("body"))).unwrap();
            let res = client(http2).request(req).await.unwrap();
            let h = |n: &str| res.headers()[n].to_str().unwrap().to_string();
            assert_eq!(res.status(), 200, "{proto}");
            assert_eq!(h("x-proto"), proto);
            let source: SocketAddr = h("x-source").parse().unwrap();
            assert_eq!(source.ip().to_string(), "127.0.0.1", "{proto}");
            assert_eq!(h("x-host"), addr.to_string(), "{proto}: host reported for HTTP/2 too");
            assert_eq!(
                h("x-echo-uri").rsplit_once('/').map(|(_, t)| t.to_string()).unwrap(),
                "x?y=1",
                "{proto}"
            );
            assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"body", "{proto}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn streaming_body_read_over_the_network_does_not_stall(engine) {
        // The guest reads a body that is still arriving (no buffer_request):
        // the read waits without blocking the runtime, and next gets the rest.
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64) (local $r i64)
    (local.set $r (call $read_body (i32.const 0) (i32.const 65536) (i32.const 10)))
    (call $assert (i64.eq (i64.and (local.get $r) (i64.const 0xffffffff)) (i64.const 10)))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let addr = serve(load(engine, &wasm)).await;
        // Send headers, wait, then the body: the guest's read must wait for it.
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(4);
        let body = http_body_util::StreamBody::new(stream_of(rx));
        let req = http::Request::post(format!("http://{addr}/")).body(body).unwrap();
        let pending = tokio::spawn(async move { sender.send_request(req).await });
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        tx.send(Ok(http_body::Frame::data(Bytes::from("0123456789abcdef")))).await.unwrap();
        drop(tx);
        let res = pending.await.unwrap().unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"abcdef");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn axum_router_layer_without_handle_error_layer(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "x-guest")
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 7) (i32.const 0) (i32.const 7))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let app = axum::Router::new()
            .route("/hello", axum::routing::get(|| async { "hello from axum" }))
            .layer(HttpWasmLayer::new(load(engine, &wasm)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let res = client(false).get(format!("http://{addr}/hello").parse().unwrap()).await.unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["x-guest"], "x-guest");
        assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"hello from axum");
    }
}

/// Reads the request body once, and a second time when the first read did
/// not report EOF and `second` is set; answers (without next) with the two
/// `read_body` results, 8 bytes each little-endian (0 for a read not made),
/// then the bytes read.
fn body_reporter(second: bool) -> Vec<u8> {
    module(&format!(
        r#"(func (export "handle_request") (result i64) (local $r i64) (local $n i32)
    (local.set $r (call $read_body (i32.const 0) (i32.const 4096) (i32.const 64)))
    (i64.store (i32.const 2000) (local.get $r))
    (local.set $n (i32.wrap_i64 (local.get $r)))
    (if (i32.and (i32.const {second}) (i64.eqz (i64.shr_u (local.get $r) (i64.const 32))))
      (then
        (local.set $r (call $read_body (i32.const 0) (i32.add (i32.const 4096) (local.get $n)) (i32.const 64)))
        (i64.store (i32.const 2008) (local.get $r))
        (local.set $n (i32.add (local.get $n) (i32.wrap_i64 (local.get $r))))))
    (call $write_body (i32.const 1) (i32.const 2000) (i32.const 16))
    (call $write_body (i32.const 1) (i32.const 4096) (local.get $n))
    (i64.const 0))
  {NOOP_RESPONSE}"#,
        second = second as i32,
    ))
}

/// One `read_body` result: `(eof, len)`.
type Read = (bool, u32);

/// The reads a [`body_reporter`] reported, and the bytes it read.
fn reported(body: &[u8]) -> (Read, Option<Read>, Vec<u8>) {
    assert!(body.len() >= 16, "not a report: {body:?}");
    let read = |at: usize| {
        let r = u64::from_le_bytes(body[at..at + 8].try_into().unwrap());
        (r >> 32 != 0, r as u32)
    };
    let second = (body[8..16] != [0; 8]).then(|| read(8));
    (read(0), second, body[16..].to_vec())
}

/// A bound on one exchange, so that a host that never answers fails the
/// test instead of hanging it.
const HANG: std::time::Duration = std::time::Duration::from_secs(30);

/// Writes `request` in one write on a new connection (which it asks to
/// close) and returns the response body, framed by `content-length`.
async fn http1_one_write(addr: SocketAddr, request: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(HANG, stream.read_to_end(&mut response)).await.expect("no response").unwrap();
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a response head") + 4;
    let head = String::from_utf8_lossy(&response[..end]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).expect("content-length").trim().parse().unwrap();
    assert_eq!(response.len() - end, len, "{head}");
    response[end..].to_vec()
}

/// An HTTP/2 frame: type, flags, stream, payload.
fn h2_frame(out: &mut Vec<u8>, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&[ty, flags]);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
}

/// Opens an HTTP/2 connection (prior knowledge) and writes, in one write,
/// the preface, a POST on stream 1 with `headers` (beyond the pseudo
/// ones), one DATA frame with `data`, and, when `end` is set, an empty
/// DATA frame that ends the stream. Returns the response body. The frames
/// are written by hand so that all of them reach the server together.
async fn http2_one_write(addr: SocketAddr, headers: &[(&str, &str)], data: &[u8], end: bool) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DATA: u8 = 0;
    const HEADERS: u8 = 1;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    // HPACK: `:method POST`, `:scheme http`, `:path /` from the static
    // table; `:authority` by its static name; the rest as new names. Every
    // literal without indexing or Huffman coding.
    let mut block = vec![0x83, 0x86, 0x84, 0x01];
    let literal = |block: &mut Vec<u8>, s: &str| {
        assert!(s.len() < 127);
        block.push(s.len() as u8);
        block.extend_from_slice(s.as_bytes());
    };
    literal(&mut block, &addr.to_string());
    for (name, value) in headers {
        block.push(0);
        literal(&mut block, name);
        literal(&mut block, value);
    }
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2_frame(&mut out, SETTINGS, 0, 0, &[]);
    h2_frame(&mut out, HEADERS, END_HEADERS, 1, &block);
    h2_frame(&mut out, DATA, 0, 1, data);
    if end {
        h2_frame(&mut out, DATA, END_STREAM, 1, &[]);
    }
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&out).await.unwrap();
    let exchange = async {
        let mut body = Vec::new();
        loop {
            let mut head = [0u8; 9];
            stream.read_exact(&mut head).await.expect("an HTTP/2 frame");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (ty, flags) = (head[3], head[4]);
            let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).await.unwrap();
            match ty {
                SETTINGS if flags & 1 == 0 => {
                    let mut ack = Vec::new();
                    h2_frame(&mut ack, SETTINGS, 1, 0, &[]);
                    stream.write_all(&ack).await.unwrap();
                }
                DATA if id == 1 => {
                    body.extend_from_slice(&payload);
                    if flags & END_STREAM != 0 {
                        return body;
                    }
                }
                HEADERS if id == 1 && flags & END_STREAM != 0 => return body,
                RST_STREAM | GOAWAY => panic!("the server ended the exchange (frame type {ty}): {payload:?}"),
                _ => {}
            }
        }
    };
    tokio::time::timeout(HANG, exchange).await.expect("no response")
}

/// A request body that tells the test when its reader waits for a frame
/// (polls with a waker that wakes, and finds none) after it received data:
/// the guest has taken the first bytes and now waits for more.
struct Watched {
    inner: hyper::body::Incoming,
    seen_data: bool,
    waiting: std::sync::Arc<tokio::sync::Notify>,
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, hyper::Error>>> {
        let polled = std::pin::Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            std::task::Poll::Ready(Some(Ok(frame))) if frame.is_data() => self.seen_data = true,
            // `Waker::noop` (the host's polls that do not wait) has no data.
            std::task::Poll::Pending if self.seen_data && !cx.waker().data().is_null() => self.waiting.notify_one(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// As [`serve`], the request body [`Watched`]; returns what it notifies.
async fn serve_watched(plugin: Plugin) -> (SocketAddr, std::sync::Arc<tokio::sync::Notify>) {
    let waiting = std::sync::Arc::new(tokio::sync::Notify::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let notify = waiting.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let waiting = notify.clone();
            let svc = tower::ServiceBuilder::new()
                .map_request(move |req: http::Request<hyper::body::Incoming>| {
                    req.map(|inner| Watched { inner, seen_data: false, waiting: waiting.clone() })
                })
                .layer(HttpWasmLayer::new(plugin.clone()))
                .service_fn(echo);
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), hyper_util::service::TowerToHyperService::new(svc))
                    .await;
            });
        }
    });
    (addr, waiting)
}

/// Sends 13 bytes, waits until the guest has read them and waits for
/// more, then ends the body; returns the guest's report.
async fn late_last_chunk(engine: tower_http_wasm::Engine, http2: bool) -> (Read, Option<Read>, Vec<u8>) {
    let (addr, waiting) = serve_watched(load(engine, &body_reporter(true))).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<http_body::Frame<Bytes>, std::convert::Infallible>>(4);
    tx.send(Ok(http_body::Frame::data(Bytes::from_static(b"hello, world!")))).await.unwrap();
    let body = http_body_util::StreamBody::new(stream_of(rx));
    let req = http::Request::post(format!("http://{addr}/")).body(body).unwrap();
    let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new()).http2_only(http2).build_http();
    let pending = tokio::spawn(async move { client.request(req).await });
    tokio::time::timeout(HANG, waiting.notified()).await.expect("the guest never waited for the rest");
    drop(tx);
    let res = tokio::time::timeout(HANG, pending).await.expect("no response").unwrap().unwrap();
    assert_eq!(res.status(), 200);
    reported(&res.into_body().collect().await.unwrap().to_bytes())
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_chunked_body_in_one_write_reads_with_eof(engine) {
        // The whole request, terminating chunk included, in one write: the
        // guest's first read gets the 13 bytes and EOF together.
        let addr = serve(load(engine, &body_reporter(true))).await;
        let body = http1_one_write(
            addr,
            "POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n\
             d\r\nhello, world!\r\n0\r\n\r\n",
        )
        .await;
        assert_eq!(reported(&body), ((true, 13), None, b"hello, world!".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_stream_ended_in_the_same_write_reads_with_eof(engine) {
        // DATA, then an empty DATA with END_STREAM, all buffered together.
        let addr = serve(load(engine, &body_reporter(true))).await;
        let body = http2_one_write(addr, &[], b"hello, world!", true).await;
        assert_eq!(reported(&body), ((true, 13), None, b"hello, world!".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_content_length_body_reads_with_eof(engine) {
        let addr = serve(load(engine, &body_reporter(true))).await;
        let body = http1_one_write(
            addr,
            "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: 13\r\nconnection: close\r\n\r\nhello, world!",
        )
        .await;
        assert_eq!(reported(&body), ((true, 13), None, b"hello, world!".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_content_length_reached_reads_with_eof(engine) {
        // The declared 13 bytes arrive; the stream itself is never ended.
        // The guest reads once: EOF must come with the bytes.
        let addr = serve(load(engine, &body_reporter(false))).await;
        let body = http2_one_write(addr, &[("content-length", "13")], b"hello, world!", false).await;
        assert_eq!(reported(&body), ((true, 13), None, b"hello, world!".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http1_late_last_chunk_gives_eof_alone(engine) {
        // The first read returns what is there without waiting for the end.
        let got = late_last_chunk(engine, false).await;
        assert_eq!(got, ((false, 13), Some((true, 0)), b"hello, world!".to_vec()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn http2_late_end_of_stream_gives_eof_alone(engine) {
        let got = late_last_chunk(engine, true).await;
        assert_eq!(got, ((false, 13), Some((true, 0)), b"hello, world!".to_vec()));
    }
}
