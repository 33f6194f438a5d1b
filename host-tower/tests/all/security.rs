//! What an outside review broke (issue 15), each through the real tower
//! service on both engines: busy pools and fail-open, stalled bodies,
//! guest-written framing, host calls that allocate or read out of bounds,
//! wasm proposals, late `enable_features`, fail-open trailers, forged logs.

use crate::fuzz::watch::Watch;
use crate::harness::*;
use bytes::Bytes;
use http::Request;
use http_body::Frame;
use http_body_util::StreamBody;
use std::convert::Infallible;
use std::time::Duration;
use tower_http_wasm::FailurePolicy;

/// A request body fed by the returned sender (capacity 1, so a `reserve`
/// on it completes once the host took the previous chunk).
fn fed_body() -> (
    tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    impl http_body::Body<Data = Bytes, Error = Infallible> + Send + 'static,
) {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    (tx, StreamBody::new(stream_of(rx)))
}

/// `handle_request` reads the request body to its end (100 bytes at a time
/// into offset 0), then calls next.
const READS_BODY: &str = r#"
  (func (export "handle_request") (result i64)
    (loop $more
      (br_if $more (i64.eqz (i64.shr_u (call $read_body (i32.const 0) (i32.const 0) (i32.const 100)) (i64.const 32)))))
    (i64.const 1))"#;

/// Sends `req` with a bound on the wait: a hang is a failure, not a stuck test.
async fn send_bounded<B>(plugin: &tower_http_wasm::Plugin, req: Request<B>) -> Got
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<tower_http_wasm::BoxError>,
{
    tokio::time::timeout(Duration::from_secs(20), send(plugin, req)).await.expect("no response within 20 s")
}

/// Starts `POST /upload` through `plugin` with a body fed by the returned
/// sender; the handle gives the response.
fn upload(
    plugin: &tower_http_wasm::Plugin,
) -> (tokio::sync::mpsc::Sender<Result<Frame<Bytes>, Infallible>>, tokio::task::JoinHandle<Got>) {
    let (tx, body) = fed_body();
    let req = Request::post("/upload").body(body).unwrap();
    let plugin = plugin.clone();
    (tx, tokio::spawn(async move { send_bounded(&plugin, req).await }))
}

tower_http_wasm::per_engine! {
    // Item 2: a busy pool is 503 (with retry-after), never a skipped filter.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_pool_is_503_even_when_failing_open(engine) {
        let wasm = module(&format!("{READS_BODY} {NOOP_RESPONSE}"));
        let plugin = builder(engine)
            .pool_size(1)
            .pool_wait(Duration::from_millis(200))
            .failure_policy(FailurePolicy::Open)
            .build(&wasm)
            .unwrap();
        let (tx, holder) = upload(&plugin);
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc")))).await.unwrap();
        // Taken by the host, so the one instance is held by the slow upload.
        let permit = tx.reserve().await.unwrap();
        let got = send_bounded(&plugin, get("/")).await;
        assert_eq!(got.status, 503, "[{engine}] a busy pool must not skip the filter: {:?}", got.headers);
        assert_eq!(got.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]), "[{engine}]");
        assert!(!got.headers.contains_key("x-echo-method"), "[{engine}] the next handler ran");
        permit.send(Ok(Frame::data(Bytes::from_static(b"def"))));
        drop(tx);
        assert_eq!(holder.await.unwrap().status, 200, "[{engine}]");
    }

    // Item 2: a body that stops arriving gets 408 and frees the instance,
    // whether the guest streams it or the host collects it first.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_body_gets_408_and_releases_the_instance(engine) {
        let buffering = r#"(func (export "_initialize") (drop (call $enable_features (i32.const 1))))"#;
        for start in ["", buffering] {
            let wasm = module(&format!("{start} {READS_BODY} {NOOP_RESPONSE}"));
            let plugin = builder(engine)
                .pool_size(1)
                .pool_wait(Duration::from_secs(5))
                .body_timeout(Duration::from_millis(300))
                .build(&wasm)
                .unwrap();
            let (tx, body) = fed_body();
            let slow = Request::post("/upload").body(body).unwrap();
            let feed = tokio::spawn(async move {
                tx.send(Ok(Frame::data(Bytes::from_static(b"abc")))).await.unwrap();
                // A second chunk once the first was taken, then silence:
                // the timer restarts wherever the guest waits.
                tx.reserve().await.unwrap().send(Ok(Frame::data(Bytes::from_static(b"def"))));
                tx
            });
            let got = send_bounded(&plugin, slow).await;
            assert_eq!(got.status, 408, "[{engine}] buffering={}: {:?}", !start.is_empty(), got.body);
            assert_eq!(got.headers.get("connection").map(|v| v.as_bytes()), Some(&b"close"[..]), "[{engine}]");
            let next = send_bounded(&plugin, post("/", "ok")).await;
            assert_eq!(next.status, 200, "[{engine}] the instance was not released");
            drop(feed.await.unwrap());
        }
    }

    // Item 3: framing headers a guest writes never describe a body that is
    // not there; the host frames each message by what it carries.
    #[tokio::test]
    async fn guest_framing_headers_give_way_to_the_real_body(engine) {
        let set = |kind: u32, name: &str, value: &str, next: u32| {
            module(&format!(
                r#"(data (i32.const 100) "{name}") (data (i32.const 200) "{value}")
  (func (export "handle_request") (result i64)
    (call $set_header_value (i32.const {kind}) (i32.const 100) (i32.const {nl}) (i32.const 200) (i32.const {vl}))
    (i64.const {next}))
  {NOOP_RESPONSE}"#,
                nl = name.len(),
                vl = value.len(),
            ))
        };
        // Response side, then next: the next handler's 12 bytes go out as 12.
        let plugin = load(engine, &set(1, "content-length", "5", 1));
        let got = send(&plugin, post("/", "twelve bytes")).await;
        assert_eq!(got.header("content-length"), "12", "[{engine}]");
        assert_eq!(got.headers.get_all("content-length").iter().count(), 1, "[{engine}]");
        assert_eq!(&got.body[..], b"twelve bytes", "[{engine}]");
        let plugin = load(engine, &set(1, "transfer-encoding", "chunked", 1));
        let got = send(&plugin, post("/", "twelve bytes")).await;
        assert!(!got.headers.contains_key("transfer-encoding"), "[{engine}] {:?}", got.headers);
        assert_eq!(got.header("content-length"), "12", "[{engine}]");
        // Response side without next: no body, so a length of 0.
        let plugin = load(engine, &set(1, "content-length", "40", 0));
        let got = send(&plugin, get("/")).await;
        assert_eq!((got.header("content-length"), got.body.len()), ("0", 0), "[{engine}]");
        // Request side: a GET without a body promises none.
        let plugin = load(engine, &set(0, "content-length", "40", 1));
        let got = send(&plugin, get("/")).await;
        assert_eq!((got.header("x-echo-cl"), got.header("x-echo-len")), ("none", "0"), "[{engine}]");
        let plugin = load(engine, &set(0, "transfer-encoding", "chunked", 1));
        let got = send(&plugin, get("/")).await;
        assert!(!got.headers.contains_key("x-echo-h-transfer-encoding"), "[{engine}] {:?}", got.headers);
        // Request side with a body: the body's own length.
        let plugin = load(engine, &set(0, "content-length", "99", 1));
        let got = send(&plugin, post("/", "hello")).await;
        assert_eq!((got.header("x-echo-cl"), got.header("x-echo-len")), ("5", "5"), "[{engine}]");
    }

    // Item 5: the memory cap is the instance's: a second memory is refused
    // at load, naming the proposal.
    #[test]
    fn a_module_with_two_memories_is_refused(engine) {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1) (memory 1)
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)))"#,
        )
        .unwrap();
        let err = builder(engine).build(&wasm).unwrap_err();
        assert!(err.is_compile(), "[{engine}] {err}");
        assert!(err.to_string().contains("multi-memory"), "[{engine}] {err}");
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") i64 1)
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)))"#,
        )
        .unwrap();
        let err = builder(engine).build(&wasm).unwrap_err();
        assert!(err.to_string().contains("memory64"), "[{engine}] {err}");
    }

    // Item 6: every host function that reads guest memory refuses a range
    // that runs past its end (wasmer's view clamped it and read less).
    #[tokio::test]
    async fn reads_past_the_end_of_memory_trap(engine) {
        // Memory is 40 pages: 3 bytes before its end.
        let end = 40 * 65536 - 3;
        for call in [
            format!("(call $set_header_value (i32.const 0) (i32.const {end}) (i32.const 10) (i32.const 0) (i32.const 1))"),
            format!("(call $set_header_value (i32.const 0) (i32.const 900) (i32.const 5) (i32.const {end}) (i32.const 10))"),
            format!("(call $add_header_value (i32.const 0) (i32.const 900) (i32.const 5) (i32.const {end}) (i32.const 10))"),
            format!("(call $remove_header (i32.const 0) (i32.const {end}) (i32.const 10))"),
            format!("(drop (call $get_header_values (i32.const 0) (i32.const {end}) (i32.const 10) (i32.const 0) (i32.const 0)))"),
            format!("(call $write_body (i32.const 1) (i32.const {end}) (i32.const 10))"),
            format!("(call $set_method (i32.const {end}) (i32.const 10))"),
            format!("(call $set_uri (i32.const {end}) (i32.const 10))"),
            format!("(drop (call $read_body (i32.const 0) (i32.const {end}) (i32.const 10)))"),
            format!("(drop (call $get_method (i32.const {end}) (i32.const 10)))"),
        ] {
            let wasm = module(&format!(
                r#"(func (export "handle_request") (result i64) {call} (i64.const 0)) {NOOP_RESPONSE}"#
            ));
            let plugin = load(engine, &wasm);
            let got = send(&plugin, post("/", "body")).await;
            assert_eq!(got.status, 500, "[{engine}] {call}: {:?}", got.headers);
        }
        // `log` never traps: a bad range is ignored.
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (call $log (i32.const 0) (i32.const {end}) (i32.const 10)) (i64.const 0)) {NOOP_RESPONSE}"#
        ));
        assert_eq!(send(&load(engine, &wasm), get("/")).await.status, 200, "[{engine}] log");
    }

    // Item 4: WASI calls check bounds before they allocate, and fd_write
    // copies out only what one log line holds.
    #[test]
    fn wasi_calls_allocate_nothing_a_guest_asks_for(engine) {
        let wasi = |body: &str| {
            wat::parse_str(format!(
                r#"(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_get" (func $environ_get (param i32 i32) (result i32)))
  (memory (export "memory") 16)
  (func $assert (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  (func (export "handle_response") (param i32 i32))
  (func (export "handle_request") (result i64) {body} (i64.const 0)))"#
            ))
            .unwrap()
        };
        let watch = Watch::new(&format!("wasi-bounds-{engine}"));
        let runtime = watch.runtime();
        let run = |wasm: Vec<u8>| {
            let plugin = builder(engine).name(format!("wasi-bounds-{engine}")).env("K", "V").build(&wasm).unwrap();
            runtime.block_on(send(&plugin, get("/"))).status
        };
        // 1 GiB of randomness into a 1 MiB memory: a trap, not an allocation.
        let status = watch.case(|| run(wasi("(drop (call $random_get (i32.const 0) (i32.const 1073741824)))")));
        assert_eq!(status, Ok(500), "[{engine}]");
        // Randomness that fits is written.
        let status = watch.case(|| run(wasi(
            "(call $assert (i32.eqz (call $random_get (i32.const 16) (i32.const 65536))))",
        )));
        assert_eq!(status, Ok(200), "[{engine}]");
        // More iovecs than IOV_MAX: EINVAL.
        let status = watch.case(|| run(wasi(
            "(call $assert (i32.eq (call $fd_write (i32.const 1) (i32.const 0) (i32.const 4096) (i32.const 65532)) (i32.const 28)))",
        )));
        assert_eq!(status, Ok(200), "[{engine}]");
        // 1024 iovecs of the whole 1 MiB memory: 1 GiB "written", one log line kept.
        let status = watch.case(|| run(wasi(
            r#"(local $i i32)
    (loop $fill
      (i32.store (i32.add (i32.const 65536) (i32.mul (local.get $i) (i32.const 8))) (i32.const 0))
      (i32.store (i32.add (i32.const 65540) (i32.mul (local.get $i) (i32.const 8))) (i32.const 1048576))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (i32.const 1024))))
    (call $assert (i32.eqz (call $fd_write (i32.const 1) (i32.const 65536) (i32.const 1024) (i32.const 0))))
    (call $assert (i32.eq (i32.load (i32.const 0)) (i32.const 1073741824)))"#,
        )));
        assert_eq!(status, Ok(200), "[{engine}]");
        // An environment written at the very end of the address space: a trap.
        let status = watch.case(|| run(wasi("(drop (call $environ_get (i32.const 0) (i32.const -2)))")));
        assert_eq!(status, Ok(500), "[{engine}]");
    }

    // Item 9: a feature enabled when it can no longer take effect is not
    // enabled, so the body a late redactor writes is a guest error, never
    // dropped while the original goes out.
    #[tokio::test]
    async fn features_enabled_too_late_are_refused(engine) {
        let wasm = module(
            r#"(data (i32.const 300) "REDACTED")
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (drop (call $enable_features (i32.const 2)))
    (call $write_body (i32.const 1) (i32.const 300) (i32.const 8)))"#,
        );
        let got = send(&load(engine, &wasm), post("/", "secret")).await;
        assert_eq!(got.status, 500, "[{engine}] {:?}", got.body);
        assert!(!got.body.windows(6).any(|w| w == b"secret"), "[{engine}] the original body leaked");
        // buffer_request after bytes were read without it: not granted.
        let wasm = module(
            r#"(data (i32.const 300) "no") (data (i32.const 310) "yes")
  (func (export "handle_request") (result i64)
    (drop (call $read_body (i32.const 0) (i32.const 0) (i32.const 1)))
    (if (i32.and (call $enable_features (i32.const 1)) (i32.const 1))
      (then (call $out (i32.const 310) (i32.const 3)))
      (else (call $out (i32.const 300) (i32.const 2))))
    (i64.const 0))
  (func (export "handle_response") (param i32 i32))"#,
        );
        let got = send(&load(engine, &wasm), post("/", "abc")).await;
        assert_eq!(got.header("x-out"), "no", "[{engine}]");
    }

    // Item 11: failing open restores the request's trailers too.
    #[tokio::test]
    async fn failing_open_restores_the_request_trailers(engine) {
        let wasm = module(
            r#"(data (i32.const 300) "x-t") (data (i32.const 310) "guest")
  (func (export "_initialize") (drop (call $enable_features (i32.const 5))))
  (func (export "handle_request") (result i64)
    (drop (call $read_body (i32.const 0) (i32.const 0) (i32.const 100)))
    (call $set_header_value (i32.const 2) (i32.const 300) (i32.const 3) (i32.const 310) (i32.const 5))
    unreachable)
  (func (export "handle_response") (param i32 i32))"#,
        );
        let plugin = builder(engine).failure_policy(FailurePolicy::Open).build(&wasm).unwrap();
        let mut trailers = http::HeaderMap::new();
        trailers.insert("x-t", "client".parse().unwrap());
        let body = Frames::new(vec![Frame::data(Bytes::from_static(b"abc")), Frame::trailers(trailers)]);
        let got = send(&plugin, Request::post("/").body(body).unwrap()).await;
        assert_eq!(got.status, 200, "[{engine}]");
        assert_eq!(got.header("x-echo-t-x-t"), "client", "[{engine}]");
        assert_eq!(&got.body[..], b"abc", "[{engine}]");
    }

    // Item 12: guest log lines and WASI output cannot forge log records.
    #[test]
    fn guest_log_lines_are_escaped(engine) {
        let tag = format!("log-escape-{engine}");
        let wasm = wat::parse_str(format!(
            r#"(module
  (import "http_handler" "log" (func $log (param i32 i32 i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 100) "one\nFORGED-{tag} \1b[31m")
  (func (export "handle_response") (param i32 i32))
  (func (export "handle_request") (result i64)
    (call $log (i32.const 1) (i32.const 100) (i32.const {len}))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const {len}))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
    (i64.const 0)))"#,
            len = format!("one\nFORGED-{tag} \x1b[31m").len()
        ))
        .unwrap();
        let watch = Watch::new(&tag);
        let runtime = watch.runtime();
        let plugin = builder(engine).name(tag.clone()).build(&wasm).unwrap();
        assert_eq!(runtime.block_on(send(&plugin, get("/"))).status, 200, "[{engine}]");
        let lines: Vec<String> = watch.logs().into_iter().filter(|l| l.contains(&format!("FORGED-{tag}"))).collect();
        assert_eq!(lines.len(), 2, "[{engine}] {lines:#?}");
        for line in &lines {
            assert!(line.contains(&format!("one\\nFORGED-{tag} \\u{{1b}}[31m")), "[{engine}] {line}");
            assert!(!line.contains('\n') && !line.contains('\x1b'), "[{engine}] {line:?}");
        }
    }
}

tower_http_wasm::per_engine! {
    // Issue 17: the deadline bounds the guest's computing, not the client's
    // pauses. A guest reading its body 100 bytes at a time, with a 100 ms
    // deadline, while the client pauses 600 ms mid-body: before, it was
    // stopped at its deadline (500); a guest that computes past it still is.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_pausing_mid_body_does_not_spend_the_guests_deadline(engine) {
        let wasm = module(&format!("{READS_BODY} {NOOP_RESPONSE}"));
        let plugin = builder(engine).deadline(Duration::from_millis(100)).build(&wasm).unwrap();
        let (tx, sent) = upload(&plugin);
        for _ in 0..3 {
            tx.send(Ok(Frame::data(Bytes::from(vec![b'a'; 50])))).await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        drop(tx);
        let got = sent.await.unwrap();
        // (The guest consumed the body, so the next handler echoes none.)
        assert_eq!(got.status, 200, "{:?}", String::from_utf8_lossy(&got.body));
        assert_eq!(plugin.metrics().deadline_hits, 0);

        // The same guest, looping after it read the body, is still stopped.
        let reads_then_loops = READS_BODY.replace("(i64.const 1))", "(loop $l (br $l)) (i64.const 1))");
        assert_ne!(reads_then_loops, READS_BODY);
        let looping = module(&format!("{reads_then_loops} {NOOP_RESPONSE}"));
        let plugin = builder(engine).deadline(Duration::from_millis(100)).build(&looping).unwrap();
        let (tx, sent) = upload(&plugin);
        tx.send(Ok(Frame::data(Bytes::from_static(b"abc")))).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(tx);
        assert_eq!(sent.await.unwrap().status, 500);
        assert_eq!(plugin.metrics().deadline_hits, 1);
    }
}

tower_http_wasm::per_engine! {
    // Issue 17, item 1: the backend decides where a call that may wait for
    // the body runs (wasmtime: the blocking pool; wasmer: its instance
    // thread, awaited). On a one-thread runtime, a guest reading a body
    // that arrives in pieces gets all of it, and the runtime's only thread
    // serves another request while the guest waits for the next piece.
    #[tokio::test]
    async fn a_body_arriving_in_pieces_reaches_the_guest_without_holding_the_runtime(engine) {
        // Enabled in handle_request, so the host streams the body into the
        // guest (rather than collecting it first) and keeps what it read.
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (drop (call $enable_features (i32.const 1)))
    (loop $more
      (br_if $more (i64.eqz (i64.shr_u (call $read_body (i32.const 0) (i32.const 0) (i32.const 100)) (i64.const 32)))))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).pool_size(2).build(&wasm).unwrap();
        let (tx, sent) = upload(&plugin);
        tx.send(Ok(Frame::data(Bytes::from_static(b"one ")))).await.unwrap();
        // The host took the first piece: the guest now waits for the next.
        let permit = tx.reserve().await.unwrap();
        let other = send_bounded(&plugin, post("/other", "meanwhile")).await;
        assert_eq!((other.status, &other.body[..]), (200, &b"meanwhile"[..]), "[{engine}]");
        permit.send(Ok(Frame::data(Bytes::from_static(b"two "))));
        tokio::time::sleep(Duration::from_millis(20)).await;
        tx.send(Ok(Frame::data(Bytes::from_static(b"three")))).await.unwrap();
        drop(tx);
        let got = sent.await.unwrap();
        assert_eq!((got.status, &got.body[..]), (200, &b"one two three"[..]), "[{engine}]");
        let m = plugin.metrics();
        assert_eq!((m.requests, m.request_failures), (2, 0), "[{engine}] {m:?}");
    }

    // Issue 17, item 1: a guest call that does not answer at once (wasmer
    // awaits it past its first polls) in either phase, on a request without
    // a body: the response comes when it answers, and a trap after that
    // wait is still the guest's failure.
    #[tokio::test]
    async fn guest_calls_that_take_a_while_answer_in_both_phases(engine) {
        // A few hundred thousand iterations: well past a millisecond.
        let work = "(local $i i32) (local.set $i (i32.const 400000))
    (loop $l (local.set $i (i32.sub (local.get $i) (i32.const 1))) (br_if $l (local.get $i)))";
        let guest = |end: &str| {
            module(&format!(
                r#"(func (export "handle_request") (result i64) {work} (i64.const 1))
  (func (export "handle_response") (param i32 i32) {work} {end})"#
            ))
        };
        let plugin = load(engine, &guest(""));
        for _ in 0..3 {
            let got = send_bounded(&plugin, post("/", "body")).await;
            assert_eq!((got.status, &got.body[..]), (200, &b"body"[..]), "[{engine}]");
            let got = send_bounded(&plugin, get("/")).await;
            assert_eq!(got.status, 200, "[{engine}]");
        }
        assert_eq!(plugin.metrics().response_failures, 0, "[{engine}]");

        let plugin = load(engine, &guest("unreachable"));
        let got = send_bounded(&plugin, get("/")).await;
        assert_eq!(got.status, 500, "[{engine}]");
        let m = plugin.metrics();
        assert_eq!((m.request_failures, m.response_failures), (0, 1), "[{engine}] {m:?}");
    }
}
