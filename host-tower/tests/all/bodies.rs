//! Request bodies: reading with and without buffer_request, writing, limits.

use crate::harness::*;
use bytes::Bytes;

fn payload(n: usize) -> Bytes {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect::<Vec<u8>>().into()
}

/// Reads the request body in `chunk`-byte reads into memory at 65536, then
/// either answers with what it read (`next == 0`) or continues.
fn reader(features: i32, chunk: i32, next: i64) -> Vec<u8> {
    module(&format!(
        r#"(func (export "handle_request") (result i64) (local $at i32) (local $r i64)
    (drop (call $enable_features (i32.const {features})))
    (local.set $at (i32.const 65536))
    (block $done (loop $more
      (local.set $r (call $read_body (i32.const 0) (local.get $at) (i32.const {chunk})))
      (call $assert (i32.le_u (i32.wrap_i64 (local.get $r)) (i32.const {chunk})))
      (local.set $at (i32.add (local.get $at) (i32.wrap_i64 (local.get $r))))
      (br_if $done (i64.ne (i64.shr_u (local.get $r) (i64.const 32)) (i64.const 0)))
      (br $more)))
    (if (i64.eqz (i64.const {next}))
      (then (call $write_body (i32.const 1) (i32.const 65536) (i32.sub (local.get $at) (i32.const 65536)))))
    (i64.const {next}))
  {NOOP_RESPONSE}"#
    ))
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn guest_reads_the_whole_body_in_chunks(engine) {
        let body = payload(5000);
        let got = send(&load(engine, &reader(1, 2048, 0)), post("/", body.clone())).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.body, body);
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn buffer_request_next_receives_the_entire_body(engine) {
        // The Go host forwards only the last chunk read (904 of 5000 bytes).
        let body = payload(5000);
        let plugin = load(engine, &reader(1, 2048, 1));
        let got = send(&plugin, post("/", body.clone())).await;
        assert_eq!(got.header("x-echo-len"), "5000");
        assert_eq!(got.header("x-echo-cl"), "5000");
        assert_eq!(got.body, body);

        // Chunked, in several frames, with no content-length.
        let frames = body.chunks(700).map(|c| http_body::Frame::data(Bytes::copy_from_slice(c))).collect();
        let req = http::Request::post("/").body(Frames::new(frames)).unwrap();
        let got = send(&plugin, req).await;
        assert_eq!(got.header("x-echo-len"), "5000", "chunked");
        assert_eq!(got.body, body, "chunked");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn module_level_buffer_request_collects_first_and_caps(engine) {
        let wasm = module(&format!(
            r#"(func $init (drop (call $enable_features (i32.const 1))))
  (start $init)
  (func (export "handle_request") (result i64) (local $r i64)
    (local.set $r (call $read_body (i32.const 0) (i32.const 65536) (i32.const 2048)))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = builder(engine).body_limit(4096).build(&wasm).unwrap();
        let got = send(&plugin, post("/", payload(4000))).await;
        assert_eq!(got.header("x-echo-len"), "4000");
        let got = send(&plugin, post("/", payload(5000))).await;
        assert_eq!(got.status, 413, "over the limit");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn without_buffer_request_reading_consumes(engine) {
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (call $assert (i64.eq (call $read_body (i32.const 0) (i32.const 65536) (i32.const 2048)) (i64.const 2048)))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let body = payload(5000);
        let got = send(&load(engine, &wasm), post("/", body.clone())).await;
        assert_eq!(got.header("x-echo-len"), "2952");
        assert_eq!(got.body, body.slice(2048..));
        // Never a stale content-length for the shorter body.
        assert_ne!(got.header("x-echo-cl"), "5000");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn write_body_replaces_then_appends_and_fixes_length(engine) {
        let wasm = module(&format!(
            r#"(data (i32.const 0) "abcdef")
  (func (export "handle_request") (result i64)
    (call $write_body (i32.const 0) (i32.const 0) (i32.const 3))
    (call $write_body (i32.const 0) (i32.const 3) (i32.const 3))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let plugin = load(engine, &wasm);
        let got = send(&plugin, post("/", "the original, longer body")).await;
        assert_eq!(&got.body[..], b"abcdef");
        assert_eq!(got.header("x-echo-cl"), "6");
        // A GET without a body gets the guest's body too.
        let got = send(&plugin, get("/")).await;
        assert_eq!(&got.body[..], b"abcdef", "GET");
        assert_eq!(got.header("x-echo-cl"), "6", "GET");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn empty_write_still_replaces(engine) {
        let wasm = module(&format!(
            r#"(func (export "handle_request") (result i64)
    (call $write_body (i32.const 0) (i32.const 0) (i32.const 0))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let got = send(&load(engine, &wasm), post("/", "gone")).await;
        assert_eq!(got.header("x-echo-len"), "0");
        assert_eq!(got.header("x-echo-cl"), "0");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn untouched_body_streams_through_with_its_length(engine) {
        let wasm = module(&format!(r#"(func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#));
        let body = payload(70_000);
        let got = send(&load(engine, &wasm), post("/", body.clone())).await;
        assert_eq!(got.body, body);
        assert_eq!(got.header("x-echo-cl"), "70000");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn read_body_rejects_zero_limit_and_bad_kind(engine) {
        for call in [
            "(call $read_body (i32.const 0) (i32.const 0) (i32.const 0))",
            "(call $read_body (i32.const 5) (i32.const 0) (i32.const 10))",
            "(call $read_body (i32.const 0) (i32.const -4) (i32.const 10))",
        ] {
            let wasm = module(&format!(
                r#"(func (export "handle_request") (result i64) (drop {call}) (i64.const 1)) {NOOP_RESPONSE}"#
            ));
            let got = send(&load(engine, &wasm), post("/", "abc")).await;
            assert_eq!(got.status, 500, "{call}");
        }
    }
}

/// A body of `chunks` frames of the same 1 MiB, made as it is read.
struct Generated {
    chunk: Bytes,
    left: usize,
}

impl http_body::Body for Generated {
    type Data = Bytes;
    type Error = std::convert::Infallible;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        self.left -= 1;
        std::task::Poll::Ready(Some(Ok(http_body::Frame::data(self.chunk.clone()))))
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_hundred_mebibytes_stream_through_a_reading_guest(engine) {
        // No buffer_request: the guest consumes the body as a stream in 64 KiB
        // reads and counts it; the host holds at most one frame at a time
        // (each frame is the same shared 1 MiB buffer, so a host that kept
        // them would still not copy, but the count shows every byte passed).
        let wasm = module(&format!(
            r#"(global $total (mut i64) (i64.const 0))
  (func (export "handle_request") (result i64) (local $r i64)
    (global.set $total (i64.const 0))
    (block $done (loop $more
      (local.set $r (call $read_body (i32.const 0) (i32.const 65536) (i32.const 65536)))
      (global.set $total (i64.add (global.get $total) (i64.and (local.get $r) (i64.const 0xffffffff))))
      (br_if $done (i64.ne (i64.shr_u (local.get $r) (i64.const 32)) (i64.const 0)))
      (br $more)))
    (call $assert (i64.eq (global.get $total) (i64.const 104857600)))
    (i64.const 1))
  {NOOP_RESPONSE}"#
        ));
        let body = Generated { chunk: Bytes::from(vec![b'x'; 1 << 20]), left: 100 };
        let req = http::Request::post("/").body(body).unwrap();
        let got = send(&load(engine, &wasm), req).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-echo-len"), "0", "the guest consumed it all");
    }
}
