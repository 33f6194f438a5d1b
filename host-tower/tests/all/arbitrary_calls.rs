//! Property test: any host function (the 19 of `http_handler` and every
//! WASI function the host provides), called with any arguments in either
//! phase or during start, never panics the host, never makes it allocate
//! far past what the guest's memory holds, and every request gets a
//! response.
//!
//! One guest per engine dispatches on a case: in a request, the guest reads
//! the body to offset 1024 and calls the function it names with the
//! arguments it carries; during start, it reads the case from its config.
//! Arguments aim at a payload the case also carries (names with NULs or
//! invalid UTF-8, values with CR/LF, WASI iovec arrays), at the memory's
//! end, or anywhere; lengths and limits are small, huge (a GiB), or zero.

use crate::fuzz::watch::Watch;
use crate::harness::*;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use http_wasm_abi::{HostFunction, ValType};
use proptest::prelude::*;
use tower::ServiceExt;
use tower_http_wasm::{Engine, HttpWasmLayer, Plugin};

use ValType::{I32, I64};

/// Every WASI preview 1 function the host provides (`host/wasi.rs`), with
/// its signature. [`the_host_provides_every_wasi_function_listed`] keeps it
/// honest.
pub const WASI_FUNCTIONS: &[(&str, &[ValType], &[ValType])] = &[
    ("args_get", &[I32, I32], &[I32]),
    ("args_sizes_get", &[I32, I32], &[I32]),
    ("environ_get", &[I32, I32], &[I32]),
    ("environ_sizes_get", &[I32, I32], &[I32]),
    ("clock_res_get", &[I32, I32], &[I32]),
    ("clock_time_get", &[I32, I64, I32], &[I32]),
    ("fd_close", &[I32], &[I32]),
    ("fd_fdstat_get", &[I32, I32], &[I32]),
    ("fd_prestat_get", &[I32, I32], &[I32]),
    ("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    ("fd_read", &[I32, I32, I32, I32], &[I32]),
    ("fd_seek", &[I32, I64, I32, I32], &[I32]),
    ("fd_write", &[I32, I32, I32, I32], &[I32]),
    ("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    ("proc_exit", &[I32], &[]),
    ("random_get", &[I32, I32], &[I32]),
    ("sched_yield", &[], &[I32]),
];

/// A function the dispatcher can call: `(module, name, params, results)`.
type Callee = (&'static str, &'static str, &'static [ValType], &'static [ValType]);

/// The dispatcher's functions: `http_handler`'s in ABI order, then WASI's.
fn callees() -> Vec<Callee> {
    let http = HostFunction::ALL.iter().map(|f| {
        let sig = f.signature();
        (http_wasm_abi::MODULE, f.name(), sig.params, sig.results)
    });
    let wasi =
        WASI_FUNCTIONS.iter().map(|(name, params, results)| ("wasi_snapshot_preview1", *name, *params, *results));
    http.chain(wasi).collect()
}

fn index(name: &str) -> u32 {
    callees().iter().position(|c| c.1 == name).unwrap_or_else(|| panic!("no function {name}")) as u32
}

/// Where the case lands in guest memory.
const CASE: u32 = 1024;
/// The case's head: the function index, six arguments and the phase.
const HEAD: u32 = 4 + 6 * 4 + 4;
/// The payload's offset.
const PAYLOAD: u32 = CASE + HEAD;
/// The most bytes of a case the guest reads.
const CASE_LIMIT: u32 = 512 << 10;
/// The dispatcher's memory: 40 pages.
const MEMORY_END: u32 = 40 * 65536;
/// Where the guest's memory holds 64 KiB for iovecs to point at: after the
/// largest case.
const SCRATCH: u32 = CASE + CASE_LIMIT;

/// When the guest makes the call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
enum Phase {
    /// In `handle_request`, which then asks for next.
    Request = 1,
    /// In `handle_response`.
    Response = 2,
    /// In `handle_request`, which then skips next.
    RequestWithoutNext = 3,
    /// In the start function (the case is the plugin's config).
    Start = 4,
}

/// How the dispatcher's start function runs.
#[derive(Clone, Copy, Debug)]
enum StartBy {
    /// The wasm start section: during instantiation.
    Section,
    /// The `_start` export (as TinyGo guests do): after instantiation.
    Export,
}

/// The dispatcher: `$dispatch` calls `callees()[index % count]` with the
/// case's arguments (an `i64` parameter gets the argument sign-extended).
fn dispatcher(start: StartBy) -> Vec<u8> {
    let callees = callees();
    let count = callees.len();
    let types = |ts: &[ValType]| ts.iter().map(|t| if *t == I32 { " i32" } else { " i64" }).collect::<String>();
    let mut imports = String::new();
    for (i, &(module, name, params, results)) in callees.iter().enumerate() {
        let params = if params.is_empty() { String::new() } else { format!(" (param{})", types(params)) };
        let results = if results.is_empty() { String::new() } else { format!(" (result{})", types(results)) };
        imports.push_str(&format!("  (import \"{module}\" \"{name}\" (func $f{i}{params}{results}))\n"));
    }
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
    for (i, &(_, name, params, results)) in callees.iter().enumerate() {
        let args: String = params
            .iter()
            .enumerate()
            .map(|(a, t)| match t {
                I32 => format!("(call $arg (i32.const {a})) "),
                I64 => format!("(i64.extend_i32_s (call $arg (i32.const {a}))) "),
            })
            .collect();
        let call = format!("(call $f{i} {args})");
        let call = if results.is_empty() { call } else { format!("(drop {call})") };
        blocks.push_str(&format!(") {call} (return) ;; {name}\n"));
    }
    blocks.push_str(")\n");
    let start = match start {
        StartBy::Section => "(start $start)",
        StartBy::Export => "(export \"_start\" (func $start))",
    };
    let text = format!(
        r#"(module
{imports}  (memory (export "memory") 40)
  (func $arg (param i32) (result i32) (i32.load (i32.add (i32.const {args}) (i32.shl (local.get 0) (i32.const 2)))))
  (func $phase (result i32) (i32.load (i32.const {phase})))
  {blocks}
  ;; reads the whole request body (up to the limit) into the case
  (func $read_case (local $at i32) (local $r i64)
    (i64.store (i32.const {CASE}) (i64.const 0))
    (i64.store (i32.const {case8}) (i64.const 0))
    (i64.store (i32.const {case16}) (i64.const 0))
    (i64.store (i32.const {case24}) (i64.const 0))
    (local.set $at (i32.const {CASE}))
    (block $done (loop $more
      (br_if $done (i32.ge_u (local.get $at) (i32.const {end})))
      (local.set $r (call $f{read_body} (i32.const 0) (local.get $at) (i32.sub (i32.const {end}) (local.get $at))))
      (local.set $at (i32.add (local.get $at) (i32.wrap_i64 (local.get $r))))
      (br_if $done (i64.ne (i64.shr_u (local.get $r) (i64.const 32)) (i64.const 0)))
      (br_if $more (i32.ne (i32.wrap_i64 (local.get $r)) (i32.const 0))))))
  ;; during start the case is the config
  (func $start
    (drop (call $f{get_config} (i32.const {CASE}) (i32.const {CASE_LIMIT})))
    (if (i32.eq (call $phase) (i32.const 4)) (then (call $dispatch))))
  {start}
  (func (export "handle_request") (result i64)
    (call $read_case)
    (if (i32.or (i32.eq (call $phase) (i32.const 1)) (i32.eq (call $phase) (i32.const 3))) (then (call $dispatch)))
    (i64.extend_i32_u (i32.ne (call $phase) (i32.const 3))))
  (func (export "handle_response") (param i32 i32)
    (if (i32.eq (call $phase) (i32.const 2)) (then (call $dispatch))))
)"#,
        args = CASE + 4,
        phase = CASE + HEAD - 4,
        case8 = CASE + 8,
        case16 = CASE + 16,
        case24 = CASE + 24,
        end = CASE + CASE_LIMIT,
        read_body = index("read_body"),
        get_config = index("get_config"),
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad dispatcher WAT: {e}\n{text}"))
}

/// One call: which function, its arguments, the phase, and the payload.
#[derive(Clone)]
struct Case {
    function: u32,
    args: [u32; 6],
    phase: Phase,
    payload: Vec<u8>,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let callees = callees();
        let name = callees[self.function as usize % callees.len()].1;
        let shown = self.payload.len().min(64);
        f.debug_struct("Case")
            .field("function", &name)
            .field("args", &self.args)
            .field("phase", &self.phase)
            .field("payload_len", &self.payload.len())
            .field("payload_head", &Bytes::copy_from_slice(&self.payload[..shown]))
            .finish()
    }
}

impl Case {
    fn new(name: &str, args: &[u32], phase: Phase, payload: Vec<u8>) -> Case {
        let mut all = [0u32; 6];
        all[..args.len()].copy_from_slice(args);
        Case { function: index(name), args: all, phase, payload }
    }

    fn bytes(&self) -> Bytes {
        let mut b = Vec::with_capacity(HEAD as usize + self.payload.len());
        b.extend_from_slice(&self.function.to_le_bytes());
        for a in self.args {
            b.extend_from_slice(&a.to_le_bytes());
        }
        b.extend_from_slice(&(self.phase as u32).to_le_bytes());
        b.extend_from_slice(&self.payload);
        Bytes::from(b)
    }
}

/// Pointers and lengths at the edges: in the payload, at or past the
/// memory's end, zero, negative, huge, anywhere.
fn arg() -> impl Strategy<Value = u32> {
    prop_oneof![
        (0u32..64).prop_map(|o| PAYLOAD + o),
        (0u32..64).prop_map(|n| n),
        (0u32..4096).prop_map(|n| n),
        (0u32..256).prop_map(|o| MEMORY_END.wrapping_sub(o)),
        (0u32..256).prop_map(|o| MEMORY_END + o),
        Just(SCRATCH),
        Just(64 << 10),
        Just(1 << 30),
        Just(u32::MAX),
        Just(i32::MIN as u32),
        any::<u32>(),
    ]
}

/// Bytes a name or value may hold: header-ish text, NUL, CR, LF, invalid UTF-8.
fn text() -> impl Strategy<Value = Vec<u8>> {
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

/// WASI iovecs (`ptr: u32, len: u32`): into the scratch area, to the
/// memory's end or past it, of 64 KiB, of the whole memory, or anything.
fn iovecs() -> impl Strategy<Value = Vec<u8>> {
    let ptr = prop_oneof![
        Just(SCRATCH),
        Just(PAYLOAD),
        (0u32..64).prop_map(|o| MEMORY_END - o),
        Just(MEMORY_END),
        any::<u32>()
    ];
    let len = prop_oneof![0u32..64, Just(64 << 10), Just(MEMORY_END), any::<u32>()];
    proptest::collection::vec((ptr, len), 1..2048).prop_map(|v| {
        v.into_iter().flat_map(|(p, l)| [p.to_le_bytes(), l.to_le_bytes()]).flatten().collect::<Vec<u8>>()
    })
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![3 => text(), 1 => iovecs()]
}

fn case(phases: &'static [Phase]) -> impl Strategy<Value = Case> {
    let count = callees().len() as u32;
    (0..count, proptest::array::uniform6(arg()), proptest::sample::select(phases), payload())
        .prop_map(|(function, args, phase, payload)| Case { function, args, phase, payload })
}

/// Sends `body` through `plugin`: a response must come, with a status the
/// host gives (the guest's, the echo's, or the failure response's).
async fn request(plugin: &Plugin, body: Bytes) -> Result<u16, String> {
    let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service_fn(echo);
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
    tokio::time::timeout(std::time::Duration::from_secs(30), call).await.map_err(|_| "no response".to_string())?
}

/// What became of a case.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// A start-phase case whose load failed (cleanly).
    Refused,
    /// The case's response status.
    Status(u16),
}

/// Runs `case` (a fresh plugin for a start-phase case, `plugin` otherwise)
/// under `watch`, then checks that a following request is served.
fn run(
    watch: &Watch,
    rt: &tokio::runtime::Runtime,
    engine: Engine,
    plugin: &Plugin,
    case: &Case,
    start: StartBy,
) -> Result<Outcome, String> {
    let outcome = watch.case(|| -> Result<(Outcome, Plugin), String> {
        if case.phase == Phase::Start {
            let built =
                builder(engine).name(format!("arbitrary-calls-{engine}")).config(case.bytes()).build(dispatcher(start));
            return match built {
                Ok(p) => Ok((Outcome::Status(0), p)),
                Err(_) => Ok((Outcome::Refused, plugin.clone())),
            };
        }
        let status = rt.block_on(request(plugin, case.bytes()))?;
        if !(100..1000).contains(&status) {
            return Err(format!("status {status}"));
        }
        Ok((Outcome::Status(status), plugin.clone()))
    });
    let (outcome, serving) = outcome.and_then(|r| r).map_err(|e| format!("[{engine}] {e}"))?;
    // The host stands: the next request (an empty body: no call) is served.
    let after = rt.block_on(request(&serving, Bytes::new())).map_err(|e| format!("[{engine}] after: {e}"))?;
    if after != 200 {
        return Err(format!("[{engine}] the next request got {after}"));
    }
    Ok(outcome)
}

fn plugin(engine: Engine) -> Plugin {
    builder(engine).name(format!("arbitrary-calls-{engine}")).pool_size(1).build(dispatcher(StartBy::Export)).unwrap()
}

fn check(engine: Engine, phases: &'static [Phase], cases: u32) {
    let watch = Watch::new(&format!("arbitrary-calls-{engine}"));
    let rt = watch.runtime();
    let plugin = plugin(engine);
    let config =
        ProptestConfig { cases, failure_persistence: None, max_shrink_iters: 256, ..ProptestConfig::default() };
    proptest!(config, |(case in case(phases), by_section in any::<bool>())| {
        let start = if by_section { StartBy::Section } else { StartBy::Export };
        run(&watch, &rt, engine, &plugin, &case, start).map_err(TestCaseError::fail)?;
    });
}

tower_http_wasm::per_engine! {
    #[test]
    fn any_host_call_with_any_arguments_gets_a_response(engine) {
        check(engine, &[Phase::Request, Phase::Response, Phase::RequestWithoutNext], 512);
    }

    #[test]
    fn any_host_call_during_start_is_a_clean_load_result(engine) {
        check(engine, &[Phase::Start], 96);
    }

    /// `random_get` of a GiB from a guest of 2.5 MiB: the host must check
    /// the range before it allocates.
    #[test]
    fn random_get_of_a_gib_allocates_no_gib(engine) {
        let watch = Watch::new(&format!("arbitrary-calls-{engine}"));
        let rt = watch.runtime();
        let plugin = plugin(engine);
        for phase in [Phase::Request, Phase::Response, Phase::Start] {
            for ptr in [0, PAYLOAD, MEMORY_END - 16] {
                let case = Case::new("random_get", &[ptr, 1 << 30], phase, Vec::new());
                run(&watch, &rt, engine, &plugin, &case, StartBy::Export).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            }
        }
        // The rest of the memory (after the case) is fine, and is a success.
        let rest = Case::new("random_get", &[SCRATCH, MEMORY_END - SCRATCH], Phase::Request, Vec::new());
        let got = run(&watch, &rt, engine, &plugin, &rest, StartBy::Export).unwrap();
        assert_eq!(got, Outcome::Status(200), "[{engine}] random_get of the memory's last {} bytes", MEMORY_END - SCRATCH);
    }

    /// `fd_write` of 16384 iovecs of 64 KiB each (a GiB of text from a
    /// guest of 2.5 MiB): what the host keeps of it is bounded, and an
    /// in-bounds write is not a guest failure.
    #[test]
    fn fd_write_of_thousands_of_64k_iovecs_stays_small(engine) {
        let watch = Watch::new(&format!("arbitrary-calls-{engine}"));
        let rt = watch.runtime();
        let plugin = plugin(engine);
        let n = 16384u32;
        let iovecs: Vec<u8> = (0..n).flat_map(|_| [SCRATCH.to_le_bytes(), (64u32 << 10).to_le_bytes()]).flatten().collect();
        for fd in [1, 2] {
            for phase in [Phase::Request, Phase::Response, Phase::Start] {
                let case = Case::new("fd_write", &[fd, PAYLOAD, n, SCRATCH - 4], phase, iovecs.clone());
                let got = run(&watch, &rt, engine, &plugin, &case, StartBy::Export)
                    .unwrap_or_else(|e| panic!("fd {fd} {phase:?}: {e}"));
                let expected = if phase == Phase::Start { Outcome::Status(0) } else { Outcome::Status(200) };
                assert_eq!(got, expected, "[{engine}] fd_write to fd {fd} in {phase:?}");
            }
        }
    }

    /// `fd_write` with iovecs reaching past the memory's end, or an iovec
    /// array that does: an error for the guest, never a host panic (wasmer
    /// once clamped such reads and the host indexed past them).
    #[test]
    fn fd_write_out_of_bounds_is_no_host_panic(engine) {
        let watch = Watch::new(&format!("arbitrary-calls-{engine}"));
        let rt = watch.runtime();
        let plugin = plugin(engine);
        let iovec = |ptr: u32, len: u32| [ptr.to_le_bytes(), len.to_le_bytes()].concat();
        let cases = [
            // One iovec straddling the end.
            (PAYLOAD, 1, iovec(MEMORY_END - 2, 16)),
            // One iovec wholly past the end.
            (PAYLOAD, 1, iovec(MEMORY_END + 8, 16)),
            // An in-bounds iovec, then one past the end.
            (PAYLOAD, 2, [iovec(SCRATCH, 8), iovec(MEMORY_END - 1, 2)].concat()),
            // The iovec array itself straddles the end.
            (MEMORY_END - 4, 1, Vec::new()),
            (MEMORY_END - 12, 2, Vec::new()),
            // A count whose array overflows u32.
            (PAYLOAD, u32::MAX / 4, iovec(SCRATCH, 8)),
        ];
        for (iovs, n, payload) in cases {
            for phase in [Phase::Request, Phase::Response, Phase::Start] {
                let case = Case::new("fd_write", &[1, iovs, n, SCRATCH], phase, payload.clone());
                run(&watch, &rt, engine, &plugin, &case, StartBy::Export).unwrap_or_else(|e| panic!("{case:?}: {e}"));
            }
        }
    }

    #[test]
    fn the_host_provides_every_wasi_function_listed(engine) {
        // The dispatcher imports each listed function with its signature.
        builder(engine).build(dispatcher(StartBy::Export)).unwrap();
        // Loading would not tell a missing one apart if any import loaded.
        let unknown = wat::parse_str(
            r#"(module (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
                (memory (export "memory") 1)
                (func (export "handle_request") (result i64) (i64.const 1))
                (func (export "handle_response") (param i32 i32)))"#,
        )
        .unwrap();
        let e = builder(engine).build(unknown).unwrap_err();
        assert!(e.to_string().contains("path_open"), "[{engine}] {e}");
    }

    #[test]
    fn the_dispatcher_calls_the_function_it_is_told_to(engine) {
        let watch = Watch::new(&format!("arbitrary-calls-{engine}"));
        let rt = watch.runtime();
        let plugin = load(engine, &dispatcher(StartBy::Export));
        let call = |name: &str, args: &[u32], phase: Phase, payload: &[u8]| {
            let body = Case::new(name, args, phase, payload.to_vec()).bytes();
            let req = http::Request::post("/p").header("content-length", body.len()).body(Full::new(body)).unwrap();
            rt.block_on(send(&plugin, req))
        };
        use Phase::*;
        let got = call("set_header_value", &[1, PAYLOAD, 5, PAYLOAD, 5], RequestWithoutNext, b"x-abc");
        assert_eq!(got.header("x-abc"), "x-abc", "[{engine}]");
        assert_eq!(call("set_status_code", &[201], RequestWithoutNext, b"").status, 201, "[{engine}]");
        assert_eq!(call("set_uri", &[PAYLOAD, 4], Request, b"/zzz").header("x-echo-uri"), "/zzz", "[{engine}]");
        assert_eq!(call("set_method", &[PAYLOAD, 3], Request, b"PUT").header("x-echo-method"), "PUT", "[{engine}]");
        assert_eq!(&call("write_body", &[1, PAYLOAD, 5], RequestWithoutNext, b"hello").body[..], b"hello", "[{engine}]");
        // WASI: an iovec of the payload's tail goes to the log as stdout.
        let iovec = [(PAYLOAD + 8).to_le_bytes(), 13u32.to_le_bytes()].concat();
        let got = call("fd_write", &[1, PAYLOAD, 1, SCRATCH], Request, &[&iovec[..], b"dispatched-13"].concat());
        assert_eq!(got.status, 200, "[{engine}]");
        assert!(watch.logs().iter().any(|l| l.contains("dispatched-13")), "[{engine}] {:?}", watch.logs());
        assert_eq!(call("proc_exit", &[3], Request, b"").status, 500, "[{engine}] proc_exit in a request fails it");
        // During start: a config case runs in the start function.
        let start = |name: &str, args: &[u32]| {
            let case = Case::new(name, args, Start, Vec::new());
            builder(engine).config(case.bytes()).build(dispatcher(StartBy::Export))
        };
        assert!(start("enable_features", &[1]).is_ok(), "[{engine}]");
        assert!(start("proc_exit", &[0]).is_ok(), "[{engine}] proc_exit(0) during start is success");
        assert!(start("proc_exit", &[1]).is_err(), "[{engine}] proc_exit(1) during start fails the load");
        assert!(start("get_method", &[PAYLOAD, 16]).is_err(), "[{engine}] no request during start");
    }
}
