//! Property test: any host function, called with any arguments in either
//! phase, never panics the host, and every request gets a response.
//!
//! One guest per engine dispatches on the request body: the guest reads it
//! to offset 1024 and calls the function it names with the arguments it
//! carries. Arguments aim at a payload the body also carries (names with
//! NULs or invalid UTF-8, values with CR/LF), at the memory's end, or
//! anywhere; lengths and limits are small, huge, or zero.

use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_wasm_abi::{HostFunction, ValType};
use proptest::prelude::*;
use tower::ServiceExt;
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin};

/// Where the case lands in guest memory.
const CASE: u32 = 1024;
/// The payload's offset: after the function index, six arguments and the phase.
const PAYLOAD: u32 = CASE + 4 + 6 * 4 + 4;
/// The harness module's memory: 40 pages.
const MEMORY_END: u32 = 40 * 65536;

/// `$dispatch` calls `HostFunction::ALL[index % 19]` with the case's arguments.
fn dispatcher() -> Vec<u8> {
    let count = HostFunction::ALL.len();
    let mut blocks = String::from("(func $dispatch\n");
    for i in (0..count).rev() {
        blocks.push_str(&format!("(block $b{i}\n"));
    }
    let labels: Vec<String> = (0..count).map(|i| format!("$b{i}")).collect();
    blocks.push_str(&format!(
        "(br_table {} {} (i32.rem_u (i32.load (i32.const {CASE})) (i32.const {count})))\n",
        labels.join(" "),
        labels[0]
    ));
    for (i, f) in HostFunction::ALL.iter().enumerate() {
        let sig = f.signature();
        let args: String = (0..sig.params.len()).map(|a| format!("(call $arg (i32.const {a})) ")).collect();
        let call = format!("(call ${} {args})", f.name());
        let call = if sig.results.is_empty() { call } else { format!("(drop {call})") };
        debug_assert!(sig.params.iter().all(|p| *p == ValType::I32));
        blocks.push_str(&format!(") {call} (return) ;; {i}\n"));
    }
    blocks.push_str(")\n");
    module(&format!(
        r#"(func $arg (param i32) (result i32) (i32.load (i32.add (i32.const {args}) (i32.shl (local.get 0) (i32.const 2)))))
  {blocks}
  (func (export "handle_request") (result i64)
    (drop (call $read_body (i32.const 0) (i32.const {CASE}) (i32.const 8192)))
    (if (i32.ne (i32.load (i32.const {phase})) (i32.const 1)) (then (call $dispatch)))
    (i64.extend_i32_u (i32.ne (i32.load (i32.const {phase})) (i32.const 2))))
  (func (export "handle_response") (param i32 i32)
    (if (i32.eq (i32.load (i32.const {phase})) (i32.const 1)) (then (call $dispatch))))"#,
        args = CASE + 4,
        phase = CASE + 28,
    ))
}

/// One call: which function, its arguments, the phase (0: request, 1:
/// response, 2: request without next), and the payload.
#[derive(Debug, Clone)]
struct Case {
    function: u32,
    args: [u32; 6],
    phase: u32,
    payload: Vec<u8>,
}

impl Case {
    fn body(&self) -> Bytes {
        let mut b = Vec::new();
        b.extend_from_slice(&self.function.to_le_bytes());
        for a in self.args {
            b.extend_from_slice(&a.to_le_bytes());
        }
        b.extend_from_slice(&self.phase.to_le_bytes());
        b.extend_from_slice(&self.payload);
        Bytes::from(b)
    }
}

/// Pointers and lengths at the edges: in the payload, at or past the
/// memory's end, zero, negative, anywhere.
fn arg() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0u32..64).prop_map(|o| PAYLOAD + o),
        (0u32..64).prop_map(|n| n),
        (0u32..256).prop_map(|o| MEMORY_END.wrapping_sub(o)),
        (0u32..256).prop_map(|o| MEMORY_END + o),
        Just(u32::MAX),
        Just(i32::MIN as u32),
        any::<u32>(),
    ]
}

/// Bytes a name or value may hold: header-ish text, NUL, CR, LF, invalid UTF-8.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            4 => proptest::sample::select(b"x-abc:/?=, 0123456789".to_vec()),
            1 => Just(0u8),
            1 => Just(b'\r'),
            1 => Just(b'\n'),
            1 => Just(0xffu8),
            1 => any::<u8>(),
        ],
        0..64,
    )
}

fn case() -> impl Strategy<Value = Case> {
    (0u32..19, proptest::array::uniform6(arg()), 0u32..3, payload()).prop_map(|(function, args, phase, payload)| Case {
        function,
        args,
        phase,
        payload,
    })
}

/// Sends `case` through `plugin`: a response must come, with a status the
/// host gives (the guest's, the echo's, or the failure response's).
async fn run(plugin: &Plugin, case: &Case) -> Result<u16, String> {
    let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service_fn(echo);
    let body = case.body();
    let req = http::Request::post("/p?q=1")
        .header("content-length", body.len())
        .header("x-abc", "v")
        .body(Full::new(body))
        .unwrap();
    let call = async {
        let res = svc.oneshot(req).await.map_err(|e| format!("service error: {e}"))?;
        let status = res.status().as_u16();
        res.into_body().collect().await.map_err(|e| format!("body error: {e}"))?;
        Ok(status)
    };
    tokio::time::timeout(std::time::Duration::from_secs(20), call).await.map_err(|_| "no response".to_string())?
}

fn check(engine: Engine, cases: u32) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let plugin = builder(engine).pool_size(1).build(dispatcher()).unwrap();
    let config = ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() };
    proptest!(config, |(case in case())| {
        let status = rt.block_on(run(&plugin, &case)).map_err(|e| TestCaseError::fail(format!("[{engine}] {e}")))?;
        // Any guest-chosen status is fine (set_status_code takes any value the
        // host accepts); what matters is that one came and the host stands.
        prop_assert!((100..1000).contains(&status), "[{engine}] status {status}");
        let after = rt.block_on(send(&plugin, get("/after")));
        prop_assert_eq!(after.status, 200, "[{}] the next request is served", engine);
    });
}

#[test]
fn any_host_call_with_any_arguments_gets_a_response_on_wasmtime() {
    if let Some(&engine) = engines().iter().find(|e| e.name() == "wasmtime") {
        check(engine, 512);
    }
}

#[test]
fn any_host_call_with_any_arguments_gets_a_response_on_wasmer() {
    if let Some(&engine) = engines().iter().find(|e| e.name() == "wasmer") {
        check(engine, 512);
    }
}

#[tokio::test]
async fn the_dispatcher_calls_the_function_it_is_told_to() {
    let index = |name: &str| HostFunction::ALL.iter().position(|f| f.name() == name).unwrap() as u32;
    for &engine in engines() {
        let plugin = builder(engine).build(dispatcher()).unwrap();
        let call = |name: &str, args: &[u32], phase: u32, payload: &[u8]| {
            let mut all = [0u32; 6];
            all[..args.len()].copy_from_slice(args);
            let body = Case { function: index(name), args: all, phase, payload: payload.to_vec() }.body();
            let req = http::Request::post("/p").header("content-length", body.len()).body(Full::new(body)).unwrap();
            send(&plugin, req)
        };
        let got = call("set_header_value", &[1, PAYLOAD, 5, PAYLOAD, 5], 2, b"x-abc").await;
        assert_eq!(got.header("x-abc"), "x-abc", "[{engine}]");
        assert_eq!(call("set_status_code", &[201], 2, b"").await.status, 201, "[{engine}]");
        assert_eq!(call("set_uri", &[PAYLOAD, 4], 0, b"/zzz").await.header("x-echo-uri"), "/zzz", "[{engine}]");
        assert_eq!(call("set_method", &[PAYLOAD, 3], 0, b"PUT").await.header("x-echo-method"), "PUT", "[{engine}]");
        assert_eq!(&call("write_body", &[1, PAYLOAD, 5], 2, b"hello").await.body[..], b"hello", "[{engine}]");
    }
}
