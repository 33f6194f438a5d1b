//! The gateway's error policy: an upstream that is unreachable, refuses,
//! resets or answers garbage gives 502; one that does not answer in time
//! gives 504; a guest that traps in `handle_response` gives 500. Each a
//! complete response with a short generic body, after the guest's
//! `handle_response` ran with `is_error = 1`; the detail goes to the log
//! with the request id, never to the client.

use crate::guests;
use crate::net::{TestBody, client, full, gateway, send, upstream, url};
use crate::process::Server;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower_http_wasm::Engine;

/// An upstream on a port where nothing listens: connecting is refused.
fn refusing() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// An upstream that accepts, reads the request, then resets the connection.
async fn resetting() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.set_zero_linger();
            drop(stream);
        }
    });
    addr
}

/// An upstream that answers something that is not HTTP.
async fn garbling() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            let _ = stream.write_all(b"SECRET-UPSTREAM-TEXT \x00\x01 not http\r\n\r\n").await;
        }
    });
    addr
}

/// An upstream that accepts and reads, and never answers.
async fn silent() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf).await;
            held.push(stream);
        }
    });
    addr
}

fn post(addr: SocketAddr) -> Request<TestBody> {
    Request::post(url(addr, "/x")).body(full("payload")).unwrap()
}

/// The log line of request `id` that contains `text`.
fn line_of(gw: &Server, id: usize, text: &str) -> String {
    let span = format!("request{{id={id}}}");
    gw.wait_for_log(|l| l.contains(&span) && l.contains(text))
}

/// Sends request number `id` (1-based, one at a time) and checks the error
/// response, the guest's `is_error = 1` and the logged detail.
async fn expect_error(gw: &Server, engine: Engine, id: &mut usize, status: u16, body: &str, detail: &[&str]) {
    for http2 in [false, true] {
        *id += 1;
        let at = format!("[{engine} http2={http2} expecting {status}]");
        let got = send(&client(http2), post(gw.addr)).await;
        assert_eq!(got.status, status, "{at}");
        assert_eq!(std::str::from_utf8(&got.body).unwrap(), body, "{at}: a short generic body");
        assert_eq!(got.headers["content-type"], "text/plain; charset=utf-8", "{at}");
        // The detail is in the log, with the request id, and nowhere else.
        let logged = line_of(gw, *id, "upstream request failed");
        assert!(detail.iter().any(|d| logged.contains(d)), "{at}: {logged}");
        assert!(logged.contains(&format!("status={status}")), "{at}: {logged}");
        // The guest saw is_error = 1 (in the request's span on wasmtime;
        // wasmer runs guest calls on the instance's own thread, which does
        // not carry the span).
        let n = *id;
        gw.wait_until(|log| log.matches("saw is_error=1").count() == n);
        if engine == Engine::Wasmtime {
            line_of(gw, n, "saw is_error=1");
        }
        assert!(!gw.log().contains("saw is_error=0"), "{at}");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_refused_reset_or_garbled_gives_502_after_the_guest_saw_is_error(engine) {
        let wasm = guests::next_and_log(false);
        let reset = resetting().await;
        let garbled = garbling().await;
        for (tag, up, detail) in [
            ("refused", refusing(), &["Connection refused", "connect"][..]),
            ("reset", reset, &["reset", "closed", "incomplete"][..]),
            ("garbled", garbled, &["invalid", "parse", "version"][..]),
        ] {
            let gw = gateway(&format!("502-{tag}"), Some(&wasm), engine, up, &[], "info");
            let mut id = 0;
            expect_error(&gw, engine, &mut id, 502, "Bad Gateway\n", detail).await;
            assert!(!gw.log().is_empty());
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn upstream_silent_past_the_timeout_gives_504(engine) {
        let wasm = guests::next_and_log(false);
        let up = silent().await;
        let gw = gateway("504", Some(&wasm), engine, up, &["--upstream-timeout", "300ms"], "info");
        let mut id = 0;
        expect_error(&gw, engine, &mut id, 504, "Gateway Timeout\n", &["no response head within 300ms"]).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_filter_still_gives_502_and_504() {
    let up = silent().await;
    let gw = gateway("504-plain", None, Engine::Wasmtime, up, &["--upstream-timeout", "200ms"], "info");
    let got = send(&client(true), post(gw.addr)).await;
    assert_eq!((got.status, &got.body[..]), (504, &b"Gateway Timeout\n"[..]));
    line_of(&gw, 1, "no response head within 200ms");
    let gw = gateway("502-plain", None, Engine::Wasmtime, refusing(), &[], "info");
    let got = send(&client(false), post(gw.addr)).await;
    assert_eq!((got.status, &got.body[..]), (502, &b"Bad Gateway\n"[..]));
    line_of(&gw, 1, "Connection refused");
}

/// One client connection, HTTP/1.1 or HTTP/2.
enum Connection {
    Http1(hyper::client::conn::http1::SendRequest<TestBody>),
    Http2(hyper::client::conn::http2::SendRequest<TestBody>),
}

impl Connection {
    async fn open(addr: SocketAddr, http2: bool) -> Connection {
        let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
        if http2 {
            let (s, conn) =
                hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            Connection::Http2(s)
        } else {
            let (s, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Connection::Http1(s)
        }
    }

    async fn send(&mut self, req: Request<TestBody>) -> hyper::Result<Response<hyper::body::Incoming>> {
        match self {
            Connection::Http1(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
            Connection::Http2(s) => {
                s.ready().await?;
                s.send_request(req).await
            }
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_trap_in_handle_response_gives_a_clean_500_on_a_connection_that_lives_on(engine) {
        let wasm = guests::next_and_log(true);
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        let up = upstream(move |_req| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Response::builder().header("x-upstream", "1").body(full("from upstream")).unwrap() }
        })
        .await;
        let gw = gateway("trap-response", Some(&wasm), engine, up, &[], "info");
        let mut id = 0;
        for http2 in [false, true] {
            // One connection, two requests: the first trap does not close it.
            let mut conn = Connection::open(gw.addr, http2).await;
            for _ in 0..2 {
                id += 1;
                let at = format!("[{engine} http2={http2} request {id}]");
                let before = hits.load(std::sync::atomic::Ordering::SeqCst);
                let res = conn.send(post(gw.addr)).await.expect("a response, not a dropped connection");
                assert_eq!(res.status(), 500, "{at}");
                assert_eq!(res.headers()["content-length"], "22", "{at}");
                assert!(res.headers().get("x-upstream").is_none(), "{at}: nothing of the upstream's response");
                let body = res.into_body().collect().await.unwrap().to_bytes();
                assert_eq!(&body[..], b"Internal Server Error\n", "{at}");
                assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), before + 1, "{at}: the upstream was called");
                let logged = line_of(&gw, id, "guest failed");
                assert!(logged.contains("status=500"), "{at}: {logged}");
            }
        }
    }
}
