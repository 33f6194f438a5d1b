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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_source_and_host_over_http1_and_http2() {
    for &engine in engines() {
        let addr = serve(load(engine, &connection_guest())).await;
        for (http2, proto) in [(false, "HTTP/1.1"), (true, "HTTP/2.0")] {
            let uri = format!("http://{addr}/x?y=1");
            let req = http::Request::post(&uri).body(Full::new(Bytes::from("body"))).unwrap();
            let res = client(http2).request(req).await.unwrap();
            let h = |n: &str| res.headers()[n].to_str().unwrap().to_string();
            assert_eq!(res.status(), 200, "[{engine}] {proto}");
            assert_eq!(h("x-proto"), proto, "[{engine}]");
            let source: SocketAddr = h("x-source").parse().unwrap();
            assert_eq!(source.ip().to_string(), "127.0.0.1", "[{engine}] {proto}");
            assert_eq!(h("x-host"), addr.to_string(), "[{engine}] {proto}: host reported for HTTP/2 too");
            assert_eq!(
                h("x-echo-uri").rsplit_once('/').map(|(_, t)| t.to_string()).unwrap(),
                "x?y=1",
                "[{engine}] {proto}"
            );
            assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"body", "[{engine}] {proto}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_body_read_over_the_network_does_not_stall() {
    // The guest reads a body that is still arriving (no buffer_request):
    // the read waits without blocking the runtime, and next gets the rest.
    for &engine in engines() {
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
        assert_eq!(res.status(), 200, "[{engine}]");
        assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"abcdef", "[{engine}]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn axum_router_layer_without_handle_error_layer() {
    for &engine in engines() {
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
        assert_eq!(res.status(), 200, "[{engine}]");
        assert_eq!(res.headers()["x-guest"], "x-guest", "[{engine}]");
        assert_eq!(&res.into_body().collect().await.unwrap().to_bytes()[..], b"hello from axum", "[{engine}]");
    }
}
