//! The local (`!Send`) service (issue 17, item 3): a plugin's replica per
//! thread, whose instances run inline on that thread on both engines, on a
//! current-thread runtime as a thread-per-core server runs it.

use crate::harness::*;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;
use std::time::Duration;
use tower::{Service, ServiceExt};
use tower_http_wasm::{Engine, LocalHttpWasm, LocalHttpWasmLayer, LocalPlugin, RequestBody};

/// Sets the response header `x-out` to `value` and calls next.
fn tagging(value: &str) -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 0) "{value}")
  (func (export "handle_request") (result i64) (call $out (i32.const 0) (i32.const {len})) (i64.const 1))
  {NOOP_RESPONSE}"#,
        len = value.len()
    ))
}

/// `handle_request` reads the request body to its end, kept for the next
/// handler (`buffer_request` enabled first), then calls next.
const READS_BODY: &str = r#"
  (func (export "handle_request") (result i64)
    (drop (call $enable_features (i32.const 1)))
    (loop $more
      (br_if $more (i64.eqz (i64.shr_u (call $read_body (i32.const 0) (i32.const 0) (i32.const 100)) (i64.const 32)))))
    (i64.const 1))"#;

/// `handle_request` reads the request body to its end without keeping it
/// (a guest that streams it), then calls next.
const STREAMS_BODY: &str = r#"
  (func (export "handle_request") (result i64)
    (loop $more
      (br_if $more (i64.eqz (i64.shr_u (call $read_body (i32.const 0) (i32.const 0) (i32.const 100)) (i64.const 32)))))
    (i64.const 1))"#;

/// [`echo`] behind `plugin`, the inner service holding an `Rc` (so it is
/// not `Send`) that counts its calls.
fn service(
    plugin: LocalPlugin,
    calls: Rc<Cell<u32>>,
) -> LocalHttpWasm<impl Service<Request<RequestBody>, Response = Response<Full<Bytes>>, Error = Infallible> + Clone> {
    let inner = tower::service_fn(move |req: Request<RequestBody>| {
        calls.set(calls.get() + 1);
        echo(req)
    });
    tower::ServiceBuilder::new().layer(LocalHttpWasmLayer::new(plugin)).service(inner)
}

async fn send_local<S, B>(svc: &S, req: Request<B>) -> Got
where
    S: Service<Request<B>, Response = Response<tower_http_wasm::ResponseBody<Full<Bytes>>>, Error = Infallible> + Clone,
{
    let res = tokio::time::timeout(Duration::from_secs(20), svc.clone().oneshot(req))
        .await
        .expect("no response within 20 s")
        .unwrap();
    let (parts, body) = res.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    Got { status: parts.status.as_u16(), headers: parts.headers, body: collected.to_bytes(), trailers }
}

/// How many threads of this process carry `name` (Linux; 0 elsewhere).
fn threads_named(name: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return 0 };
    tasks
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim_end() == name)
        .count()
}

tower_http_wasm::per_engine! {
    // The guest runs on the caller's thread: no wasmer instance thread is
    // started for the replica's instances (the plugin's own first instance
    // keeps the one it started at load), whatever the requests in flight.
    #[tokio::test]
    async fn a_local_service_runs_its_guests_on_its_own_thread(engine) {
        // Short: a thread's name as /proc shows it has at most 15 bytes.
        let name = format!("lcl-{}", &engine.name()[..4]);
        let plugin = builder(engine).name(name.as_str()).pool_size(4).build(tagging("here")).unwrap();
        let at_load = threads_named(&format!("wasmer-{name}"));
        assert_eq!(at_load, usize::from(engine == Engine::Wasmer), "[{engine}]");
        let calls = Rc::new(Cell::new(0));
        let svc = service(plugin.local(), calls.clone());
        for _ in 0..10 {
            let got = send_local(&svc, get("/")).await;
            assert_eq!((got.status, got.header("x-out")), (200, "here"), "[{engine}]");
        }
        let (a, b, c) =
            tokio::join!(send_local(&svc, post("/", "a")), send_local(&svc, post("/", "b")), send_local(&svc, post("/", "c")));
        for (got, sent) in [(a, "a"), (b, "b"), (c, "c")] {
            assert_eq!((got.status, &got.body[..]), (200, sent.as_bytes()), "[{engine}]");
        }
        assert_eq!(calls.get(), 13, "[{engine}]");
        assert_eq!(threads_named(&format!("wasmer-{name}")), at_load, "[{engine}] a call left its thread");
        let m = plugin.metrics();
        assert_eq!((m.requests, m.request_failures, m.response_failures), (13, 0, 0), "[{engine}] {m:?}");
        assert!(m.instances_started >= 2, "[{engine}] the replica's instances count with the plugin's: {m:?}");
    }

    // A reload reaches the replica: its next request runs the new module.
    #[tokio::test]
    async fn a_local_plugin_follows_its_plugins_reloads(engine) {
        let plugin = load(engine, &tagging("one"));
        let svc = service(plugin.local(), Rc::default());
        assert_eq!(send_local(&svc, get("/")).await.header("x-out"), "one", "[{engine}]");
        plugin.reload(tagging("two")).unwrap();
        assert_eq!(send_local(&svc, get("/")).await.header("x-out"), "two", "[{engine}]");
        assert!(plugin.reload(b"not wasm").is_err());
        assert_eq!(send_local(&svc, get("/")).await.header("x-out"), "two", "[{engine}]");
        assert_eq!(plugin.metrics().reloads, 1, "[{engine}]");
    }

    // With no thread watching it, a call on the caller's thread still
    // stops at its deadline, whether the guest makes host calls or only
    // computes; the replica then serves the next request.
    #[tokio::test]
    async fn a_local_guest_past_its_deadline_fails_and_the_next_request_is_served(engine) {
        for spin in ["(drop (call $log_enabled (i32.const 0)))", "(nop)"] {
            let wasm = module(&format!(
                r#"(data (i32.const 0) "/loop")
  (func (export "handle_request") (result i64)
    (if (i32.eq (call $get_uri (i32.const 64) (i32.const 16)) (i32.const 5))
      (then (loop $l {spin} (br $l))))
    (i64.const 1))
  {NOOP_RESPONSE}"#
            ));
            let plugin = builder(engine).deadline(Duration::from_millis(200)).build(&wasm).unwrap();
            let svc = service(plugin.local(), Rc::default());
            let got = send_local(&svc, get("/loop")).await;
            assert_eq!(got.status, 500, "[{engine}] {spin}");
            assert_eq!(send_local(&svc, get("/")).await.status, 200, "[{engine}] {spin}");
            let m = plugin.metrics();
            assert_eq!((m.requests, m.request_failures), (2, 1), "[{engine}] {spin}: {m:?}");
        }
    }

    // Issue 17, item 2 on the local service: a client that pauses its body
    // for longer than the deadline does not fail a guest that reads it.
    #[tokio::test]
    async fn a_body_paused_past_the_deadline_reaches_a_local_guest(engine) {
        let wasm = module(&format!("{READS_BODY} {NOOP_RESPONSE}"));
        let plugin = builder(engine).deadline(Duration::from_millis(300)).build(&wasm).unwrap();
        let svc = service(plugin.local(), Rc::default());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let req = Request::post("/upload").body(StreamBody::new(stream_of(rx))).unwrap();
        let feed = async move {
            tx.send(Ok(Frame::data(Bytes::from_static(b"one ")))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"two")))).await.unwrap();
        };
        let (got, ()) = tokio::join!(send_local(&svc, req), feed);
        assert_eq!((got.status, &got.body[..]), (200, &b"one two"[..]), "[{engine}]");
    }

    // A body still arriving streams into the guest on both engines (on
    // wasmer through the plugin's own pool, whose instances may wait), past
    // the body limit for a guest that does not keep it.
    #[tokio::test]
    async fn a_long_arriving_body_streams_into_a_local_guest(engine) {
        let wasm = module(&format!("{STREAMS_BODY} {NOOP_RESPONSE}"));
        let plugin = builder(engine).body_limit(1000).build(&wasm).unwrap();
        let svc = service(plugin.local(), Rc::default());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let req = Request::post("/upload").body(StreamBody::new(stream_of(rx))).unwrap();
        let feed = async move {
            for _ in 0..3 {
                tx.send(Ok(Frame::data(Bytes::from(vec![b'x'; 800])))).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        let (got, ()) = tokio::join!(send_local(&svc, req), feed);
        assert_eq!(got.status, 200, "[{engine}]");
        let m = plugin.metrics();
        assert_eq!((m.requests, m.request_failures), (1, 0), "[{engine}] {m:?}");
    }

    // A client that waits for the response before it finishes its body
    // (full duplex) gets it: nothing waits for the body the guest and the
    // next handler do not read.
    #[tokio::test]
    async fn a_client_finishing_its_body_after_the_response_gets_it(engine) {
        let plugin = load(engine, &tagging("early"));
        let inner = tower::service_fn(|_req: Request<RequestBody>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"answered"))))
        });
        let svc = tower::ServiceBuilder::new().layer(LocalHttpWasmLayer::new(plugin.local())).service(inner);
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc")))).await.unwrap();
        let req = Request::post("/upload").header("content-length", "1000").body(StreamBody::new(stream_of(rx))).unwrap();
        let got = send_local(&svc, req).await;
        assert_eq!((got.status, got.header("x-out"), &got.body[..]), (200, "early", &b"answered"[..]), "[{engine}]");
        drop(tx);
    }
}
