//! Heap allocations per request through the real tower services (the
//! `Send` one and the local one), guest path against a native baseline, on
//! every engine.
//!
//! A counting wrapper around the system allocator counts every allocation
//! (`alloc`, `alloc_zeroed` and `realloc` each count one) on every thread,
//! which is what we want: on wasmer a guest call runs on the instance's own
//! thread, and its allocations belong to the request. The file holds one
//! test per engine, which take turns ([`ALONE`]) so that no other test
//! allocates meanwhile, and nothing is printed (captured output allocates)
//! while counting.
//!
//! `cargo test -p http-wasm-benches --test allocations -- --nocapture`
//! prints the figures.
// `GlobalAlloc` is an unsafe trait; the implementation only forwards to
// `System` and counts.
#![allow(unsafe_code)]

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use http_wasm_benches::{PassThroughLayer, empty_ok, noop_guest, send};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tower::ServiceBuilder;
use tower_http_wasm::{Engine, HttpWasmLayer, LocalHttpWasmLayer, Plugin};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static BYTES: AtomicU64 = AtomicU64::new(0);

fn count(size: usize) {
    ALLOCATIONS.fetch_add(1, Relaxed);
    BYTES.fetch_add(size as u64, Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const WARM: u64 = 100;
const REQUESTS: u64 = 1000;

/// A GET with no headers, or with the three most browsers and clients send.
fn request(headers: bool) -> Request<Full<Bytes>> {
    let mut builder = Request::get("/some/path?q=1");
    if headers {
        builder = builder.header("host", "bench.example").header("user-agent", "curl/8.5.0").header("accept", "*/*");
    }
    builder.body(Full::default()).expect("request")
}

/// Rounds of [`REQUESTS`] measured; the fewest allocations of them count.
///
/// Under the `Send` service a wasmer call that its instance thread does
/// not answer within the caller's poll (the thread was not scheduled in
/// time: the machine is busy) is awaited, and that wait allocates, by
/// design. Scheduling adds allocations, it never takes any away: the
/// fewest of a few rounds is the path's own figure (CI once saw 12.75
/// for 12 in one round), and an allocation the code adds shows in every
/// round.
const ROUNDS: usize = 3;

/// Allocations and bytes per request over [`REQUESTS`] warm requests (the
/// request's construction and the response's draining included), in the
/// round of [`ROUNDS`] with the fewest allocations.
fn per_request<S, B>(rt: &tokio::runtime::Runtime, svc: &S, headers: bool) -> (f64, f64)
where
    S: tower::Service<Request<Full<Bytes>>, Response = http::Response<B>> + Clone,
    S::Error: std::fmt::Debug,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    for _ in 0..WARM {
        send(rt, svc, request(headers));
    }
    let round = || {
        let (a0, b0) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        for _ in 0..REQUESTS {
            send(rt, svc, request(headers));
        }
        let (a1, b1) = (ALLOCATIONS.load(Relaxed), BYTES.load(Relaxed));
        ((a1 - a0) as f64 / REQUESTS as f64, (b1 - b0) as f64 / REQUESTS as f64)
    };
    (0..ROUNDS).map(|_| round()).min_by(|a, b| a.0.total_cmp(&b.0)).expect("at least one round")
}

/// Allocations per request the guest path may add to the native baseline.
///
/// Measured 2026-11-27 (wasmtime 48, wasmer 7.3): native 1 (the URI)
/// without headers, 6 with three; wasmtime 1 and 6, the same as native:
/// the response future holds the exchange itself on the common path (see
/// `ResponseFuture`); wasmer 1 and 6 too since its hand-offs to the
/// instance's thread go through two channels that instance keeps (they
/// were 5.06 and 10.06 with a reply channel per call and a job channel
/// that allocates a block every 31 jobs). What the guest path adds:
///
/// * nothing of its own on either engine;
/// * [`request_copy`]: the URI and headers kept for `handle_response`, for
///   a guest that can read them (bytes that `Bytes` moves to a shared
///   allocation on the first clone; hyper's URIs and header values already
///   share the connection's buffer, so over a real connection this is less);
/// * [`SLACK`].
fn guest_extra(_engine: Engine) -> f64 {
    0.0
}

/// A guest that calls next and whose `handle_response` can read the
/// request (a `get_header_values` call behind a branch never taken), so the
/// host must keep the request's URI and headers for it.
fn reading_guest() -> Vec<u8> {
    wat::parse_str(
        r#"(module
  (import "http_handler" "get_header_values" (func $values (param i32 i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 1)
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (if (i32.eq (local.get 1) (i32.const 7))
      (then (drop (call $values (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 0)))))))"#,
    )
    .expect("valid WAT")
}

/// What forwarding costs for a guest whose `handle_response` can reach a
/// header or URI read: the host keeps a copy of the URI and headers then
/// (the map's index and entry tables, 2, plus one per value whose bytes are
/// not shared yet, 3 in [`request`]; and the URI's bytes, 1). For any other
/// guest they are moved: 0.
fn request_copy(reads_request: bool, headers: bool) -> f64 {
    match (reads_request, headers) {
        (false, _) => 0.0,
        (true, false) => 1.0,
        (true, true) => 6.0,
    }
}

/// Allocations that do not happen at every request (a channel's block
/// allocated again now and then); half an allocation per request covers
/// those, not one more per request.
const SLACK: f64 = 0.5;

/// Held by the test that counts: the per-engine tests run one at a time.
static ALONE: std::sync::Mutex<()> = std::sync::Mutex::new(());

tower_http_wasm::per_engine! {
    #[test]
    fn allocations_per_request(engine) {
        let _alone = ALONE.lock().unwrap_or_else(|e| e.into_inner());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let native = ServiceBuilder::new().layer(PassThroughLayer).service_fn(empty_ok);
        let mut rows = Vec::new();
        for headers in [false, true] {
            let base = per_request(&rt, &native, headers);
            rows.push(("native".to_string(), headers, base));
            for (reads, wasm) in [(false, noop_guest(true)), (true, reading_guest())] {
                let plugin = Plugin::builder().engine(engine).pool_size(1).build(wasm).expect("guest loads");
                let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service_fn(empty_ok);
                let shared = per_request(&rt, &svc, headers);
                drop(svc);
                // The local service, its replica's instance made by its first request.
                let svc = ServiceBuilder::new().layer(LocalHttpWasmLayer::new(plugin.local())).service_fn(empty_ok);
                let local = per_request(&rt, &svc, headers);
                drop(svc);
                let reading = if reads { " (handle_response reads)" } else { "" };
                for (service, guest) in [("", shared), ("local ", local)] {
                    rows.push((format!("{service}{engine}{reading}"), headers, guest));
                    let allowed = guest_extra(engine) + request_copy(reads, headers) + SLACK;
                    assert!(
                        guest.0 <= base.0 + allowed,
                        "{service}{engine}, reads the request: {reads}, headers: {headers}: {} allocations per request, native {} + {allowed} allowed",
                        guest.0,
                        base.0
                    );
                }
            }
        }
        println!("allocations per request, no-op guest that calls next ({REQUESTS} warm requests):");
        println!("{:<40} {:<9} {:>12} {:>10}", "path", "headers", "allocations", "bytes");
        for (path, headers, (allocs, bytes)) in rows {
            let headers = if headers { "3" } else { "none" };
            println!("{path:<40} {headers:<9} {allocs:>12.2} {bytes:>10.0}");
        }
    }
}
