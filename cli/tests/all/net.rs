//! Real sockets: hyper clients speaking HTTP/1.1 or HTTP/2 (prior
//! knowledge), upstream servers on 127.0.0.1, and `serve` gateways in
//! front of them.

use crate::process::{Server, tempdir};
use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Semaphore;
use tower_http_wasm::Engine;

/// Every body the tests send.
pub type TestBody = UnsyncBoxBody<Bytes, Infallible>;

/// A body of these chunks, one per poll, with no length: HTTP/1.1 sends it
/// chunked, HTTP/2 without `content-length`.
pub struct Chunks(pub VecDeque<Bytes>);

impl http_body::Body for Chunks {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(|c| Ok(http_body::Frame::data(c))))
    }
}

/// A body sent with its length.
pub fn full(bytes: impl Into<Bytes>) -> TestBody {
    http_body_util::Full::new(bytes.into()).boxed_unsync()
}

/// A body sent without a length, in `parts` chunks.
pub fn chunked(bytes: &[u8], parts: usize) -> TestBody {
    let size = bytes.len().div_ceil(parts.max(1)).max(1);
    Chunks(bytes.chunks(size).map(Bytes::copy_from_slice).collect()).boxed_unsync()
}

/// A pooled client, HTTP/2 with prior knowledge when `http2`.
pub fn client(http2: bool) -> Client<HttpConnector, TestBody> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    Client::builder(TokioExecutor::new()).http2_only(http2).build(http)
}

/// What a test reads of a response.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Got {
    /// Every value of `name`, as text.
    pub fn values(&self, name: &str) -> Vec<String> {
        values(&self.headers, name)
    }
}

/// Every value of `name` in `headers`, as text.
pub fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect()
}

/// Sends `req` and reads the whole response.
pub async fn send(client: &Client<HttpConnector, TestBody>, req: Request<TestBody>) -> Got {
    let what = format!("{} {}", req.method(), req.uri());
    let res = client.request(req).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
    let (parts, body) = res.into_parts();
    let body = body.collect().await.unwrap_or_else(|e| panic!("{what}: body: {e:?}")).to_bytes();
    Got { status: parts.status.as_u16(), headers: parts.headers, body }
}

/// Serves `handler` on an ephemeral port of 127.0.0.1, HTTP/1.1 and HTTP/2
/// (prior knowledge) alike, until the test's runtime ends.
pub async fn upstream<F, Fut>(handler: F) -> SocketAddr
where
    F: Fn(Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let _ = stream.set_nodelay(true);
            let handler = handler.clone();
            let svc = hyper::service::service_fn(move |req| {
                let res = handler(req);
                async move { Ok::<_, Infallible>(res.await) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A `serve` process on an ephemeral port in front of `upstream`, with
/// `wasm` as its one filter (if any), on `engine`, with `extra` arguments.
/// `log`: a `RUST_LOG` filter whose output [`Server::wait_for_log`] reads.
pub fn gateway(
    tag: &str,
    wasm: Option<&[u8]>,
    engine: Engine,
    upstream: SocketAddr,
    extra: &[&str],
    log: &str,
) -> Server {
    let dir = tempdir(&format!("{tag}-{}", engine.name()));
    let url = format!("http://{upstream}");
    let mut args = vec!["serve", "--listen", "127.0.0.1:0", "--upstream", url.as_str(), "--engine", engine.name()];
    if let Some(wasm) = wasm {
        std::fs::write(dir.join("guest.wasm"), wasm).unwrap();
        args.extend(["--filter", "guest.wasm"]);
    }
    args.extend(extra);
    Server::start_with_log(&dir, &args, log)
}

/// `http://addr/path`.
pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// One HTTP/2 connection (prior knowledge) to `addr`, its driver spawned.
pub async fn h2_connection(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<TestBody> {
    let io = TokioIo::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    let (send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
    tokio::spawn(conn);
    send
}

/// An upstream that counts arrivals and answers `body` only once the test
/// adds a permit to the returned semaphore (one per request).
pub async fn held_upstream(body: &'static str) -> (SocketAddr, Arc<AtomicUsize>, Arc<Semaphore>) {
    let arrived = Arc::new(AtomicUsize::new(0));
    let gate = Arc::new(Semaphore::new(0));
    let (a, g) = (arrived.clone(), gate.clone());
    let addr = upstream(move |_req| {
        let (a, g) = (a.clone(), g.clone());
        async move {
            a.fetch_add(1, Ordering::SeqCst);
            g.acquire().await.unwrap().forget();
            Response::new(full(body))
        }
    })
    .await;
    (addr, arrived, gate)
}

/// Waits until `pred` holds, checking every 20 ms; panics after 20 s (a
/// bound, not a measurement).
pub async fn until<F: Future<Output = bool>>(what: &str, pred: impl Fn() -> F) {
    for _ in 0..1000 {
        if pred().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never: {what}");
}
