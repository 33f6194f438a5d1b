//! The wasmer backend (Cranelift).
//!
//! Wasmer has no instance-pre and binds imports to a store, so each new
//! instance builds its import object once; instances then live in the
//! plugin's pool and are reused. Wasmer lends guest memory through a
//! `MemoryView` (copying reads and writes) rather than a slice.
//!
//! **Threads.** A wasmer 7 `Store` is not `Send`: it must stay on the thread
//! that made it, while a tower service's future moves between the
//! runtime's threads. So each wasmer instance lives on a thread of its own
//! ("instance thread"), and a guest call is a hand-off: the request's
//! [`Exchange`](crate::host::Exchange) goes to that thread with the call,
//! and comes back with the result over the instance's answer channel (one
//! per instance, so a call allocates nothing). The caller first polls for the answer for up to [`SPIN`] (a filter's call
//! usually answers within it, and a poll costs less than a wake-up): such
//! a call is ready at once, without an allocation. A call still running
//! then is awaited (a boxed future, its deadline watched with tokio's
//! timer), so no runtime thread blocks on it. The instance thread is the
//! guest's own: a body read there may always park it. The cost is two
//! thread hand-offs per guest call; see `docs/performance.md` for the
//! measured figure. This crate has no `unsafe`, so it does not pretend the
//! store is `Send`.

use super::call_watch::{self, CallWatch, Waited, wait_for};
use super::{Call, Called, CompiledModule, GuestCall, GuestInstance, call_error};
use crate::error::{Error, Kind};
use crate::host::{Exchange, GuestMemory, HostError, HostState, wasi};
use crate::module::{Analysis, Checked};
use http_wasm_abi::MODULE;
use std::borrow::Cow;
use std::sync::{Arc, mpsc};
use std::time::Duration;
use tokio::sync::mpsc as channel;
use wasmer::sys::CompilerConfig;
use wasmer::wasmparser::Operator;
use wasmer::{
    Engine, Function, FunctionEnv, FunctionEnvMut, FunctionType, Global, Imports, Instance, Memory, MemoryView, Module,
    RuntimeError, Store, StoreMut, Type, TypedFunction, Value,
};
use wasmer_middlewares::Metering;
use wasmer_middlewares::metering::{self, MeteringPoints};

/// The global wasmer's metering middleware exports (see its
/// `set_remaining_points`), looked up once per instance.
const REMAINING_POINTS: &str = "wasmer_metering_remaining_points";

struct StoreData {
    host: HostState,
    memory: Option<Memory>,
    /// The call in progress, as the side waiting for it sees it.
    watch: Arc<CallWatch>,
}

#[derive(Clone)]
pub(crate) struct WasmerModule {
    engine: Engine,
    module: Module,
    checked: Checked,
    /// The export the module's start section became (see `wasmer_rewrite`).
    start_section: Option<String>,
}

fn compile_module(engine: &Engine, wasm: &[u8]) -> Result<Module, Error> {
    // Refuse text: the public API takes binary modules on both engines.
    if !wasm.starts_with(b"\0asm") {
        return Err(Error::new(Kind::Compile, "not a valid wasm module").with_source("missing the \\0asm magic"));
    }
    Module::new(engine, wasm)
        .map_err(|e| Error::new(Kind::Compile, "not a valid wasm module").with_source(e.to_string()))
}

/// A wasmer engine (Cranelift) that accepts WebAssembly 2.0 and nothing
/// later: `module::proposals` refuses the rest first; this is the engine's
/// own guard.
///
/// Its modules count the operators they execute (wasmer's metering
/// middleware; see `call_watch`). A `Metering` serves one module, and each
/// module gets an engine of its own.
fn new_engine() -> Engine {
    // (The budget is set per call; see `call_watch`.)
    let mut features = wasmer::sys::Features::none();
    features.reference_types(true).simd(true).bulk_memory(true).multi_value(true);
    let mut compiler = wasmer::sys::Cranelift::default();
    compiler.push_middleware(Arc::new(Metering::new(0, |_: &Operator<'_>| 1)));
    Engine::from(wasmer::sys::EngineBuilder::new(compiler).set_features(Some(features)))
}

/// Compiles `wasm` only to validate it.
pub(crate) fn validate(wasm: &[u8]) -> Result<(), Error> {
    compile_module(&new_engine(), wasm).map(drop)
}

/// The wasmer version in `Cargo.toml` (pinned with `=`), for cache keys.
#[cfg(feature = "module-cache")]
const WASMER_VERSION: &str = "7.3.0";

/// Compiles with one engine, for the compiled-module cache.
#[cfg(feature = "module-cache")]
struct Compiler<'a>(&'a Engine);

#[cfg(feature = "module-cache")]
impl super::cache::Compiler for Compiler<'_> {
    type Module = Module;

    fn id(&self) -> Vec<u8> {
        // `wasm2`: the proposals `new_engine` allows; `metered`: its middleware.
        format!("wasmer {WASMER_VERSION}:wasm2:metered:{}", self.0.deterministic_id()).into_bytes()
    }

    fn compile(&self, wasm: &[u8]) -> Result<Module, Error> {
        compile_module(self.0, wasm)
    }

    fn serialize(&self, module: &Module) -> Result<Vec<u8>, String> {
        module.serialize().map(|b| b.to_vec()).map_err(|e| e.to_string())
    }

    fn load(&self, bytes: &[u8]) -> Result<Module, String> {
        // SAFETY: `bytes` passed the cache's authentication (an HMAC under a
        // key only this user can read, over the entry's key and the bytes):
        // they are exactly what `Module::serialize` wrote for this module,
        // wasmer version and engine (all part of the entry's key).
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(self.0, bytes.to_vec()) };
        module.map_err(|e| e.to_string())
    }
}

impl WasmerModule {
    /// Compiles `wasm` (which `analysis` read) with its memories and tables
    /// capped at `memory_limit` bytes and `table_limit` elements and its
    /// start section deferred (see `wasmer_rewrite`).
    pub(crate) fn compile(
        wasm: &[u8],
        analysis: &Analysis,
        cache_dir: Option<&std::path::Path>,
        memory_limit: usize,
        table_limit: u64,
    ) -> Result<WasmerModule, Error> {
        let (deferred, start_section) = super::wasmer_rewrite::for_wasmer(wasm, analysis, memory_limit, table_limit)?;
        let engine = new_engine();
        let module = match cache_dir {
            #[cfg(feature = "module-cache")]
            Some(dir) => super::cache::load_or_compile(dir, &Compiler(&engine), &deferred)?,
            _ => compile_module(&engine, &deferred)?,
        };
        let checked = analysis.check()?;
        Ok(WasmerModule { engine, module, checked, start_section })
    }
}

/// Guest memory seen through a wasmer `MemoryView`.
struct ViewMemory<'a>(MemoryView<'a>);

impl GuestMemory for ViewMemory<'_> {
    fn size(&self) -> u64 {
        self.0.data_size()
    }

    fn read(&self, ptr: u32, len: u32) -> Result<Cow<'_, [u8]>, HostError> {
        // `copy_range_to_vec` clamps a range that runs past the end instead
        // of failing: check first, and never hand back fewer bytes.
        self.check(ptr, len)?;
        let mut bytes = vec![0; len as usize];
        self.0.read(ptr as u64, &mut bytes).map_err(|_| HostError::OutOfBounds { ptr, len })?;
        Ok(Cow::Owned(bytes))
    }

    fn write(&mut self, ptr: u32, bytes: &[u8]) -> Result<(), HostError> {
        let len = u32::try_from(bytes.len()).map_err(|_| HostError::OutOfBounds { ptr, len: u32::MAX })?;
        self.check(ptr, len)?;
        self.0.write(ptr as u64, bytes).map_err(|_| HostError::OutOfBounds { ptr, len })
    }
}

/// Runs the host function `f` under the call's watch: past the call's
/// deadline it traps instead (see `call_watch`).
fn guarded<R>(
    env: &mut FunctionEnvMut<'_, StoreData>,
    f: impl FnOnce(&mut FunctionEnvMut<'_, StoreData>) -> Result<R, HostError>,
) -> Result<R, HostError> {
    env.data().watch.enter().map_err(|_| HostError::Deadline)?;
    let out = f(env);
    env.data().watch.leave().map_err(|_| HostError::Deadline)?;
    out
}

/// Runs `f` with the guest memory and host state of a call.
fn with_memory<R>(
    env: &mut FunctionEnvMut<'_, StoreData>,
    f: impl FnOnce(&mut ViewMemory<'_>, &mut HostState) -> Result<R, HostError>,
) -> Result<R, HostError> {
    let (data, store): (&mut StoreData, StoreMut<'_>) = env.data_and_store_mut();
    let memory = data.memory.clone().ok_or(HostError::NoRequest("memory access before the memory export exists"))?;
    let mut mem = ViewMemory(memory.view(&store));
    f(&mut mem, &mut data.host)
}

/// The host function `f`, guarded, with the guest memory and host state.
fn with<R>(
    env: &mut FunctionEnvMut<'_, StoreData>,
    f: impl FnOnce(&mut ViewMemory<'_>, &mut HostState) -> Result<R, HostError>,
) -> Result<R, HostError> {
    guarded(env, |env| with_memory(env, f))
}

macro_rules! bind {
    ($imports:ident, $store:ident, $env:ident, $name:literal, |$h:ident, $m:ident $(, $a:ident)*| $body:expr) => {
        $imports.define(
            MODULE,
            $name,
            Function::new_typed_with_env(&mut *$store, $env, |mut env: FunctionEnvMut<'_, StoreData> $(, $a: i32)*| {
                with(&mut env, |$m, $h| $body)
            }),
        );
    };
}

fn imports(store: &mut Store, env: &FunctionEnv<StoreData>) -> Imports {
    let mut i = Imports::new();
    let s = store;
    i.define(
        MODULE,
        "enable_features",
        Function::new_typed_with_env(&mut *s, env, |mut e: FunctionEnvMut<'_, StoreData>, f: i32| {
            guarded(&mut e, |e| Ok(e.data_mut().host.enable_features(f)))
        }),
    );
    i.define(
        MODULE,
        "log_enabled",
        Function::new_typed_with_env(&mut *s, env, |mut e: FunctionEnvMut<'_, StoreData>, level: i32| {
            guarded(&mut e, |e| Ok(e.data().host.log_enabled(level)))
        }),
    );
    i.define(
        MODULE,
        "log",
        Function::new_typed_with_env(
            &mut *s,
            env,
            |mut e: FunctionEnvMut<'_, StoreData>, level: i32, ptr: i32, len: i32| {
                // A log line the host cannot read is dropped, not a trap.
                guarded(&mut e, |e| {
                    let _ = with_memory(e, |m, h| {
                        h.log(m, level, ptr as u32, len as u32);
                        Ok(())
                    });
                    Ok(())
                })
            },
        ),
    );
    i.define(
        MODULE,
        "get_status_code",
        Function::new_typed_with_env(&mut *s, env, |mut e: FunctionEnvMut<'_, StoreData>| {
            guarded(&mut e, |e| e.data_mut().host.get_status_code())
        }),
    );
    i.define(
        MODULE,
        "set_status_code",
        Function::new_typed_with_env(&mut *s, env, |mut e: FunctionEnvMut<'_, StoreData>, code: i32| {
            guarded(&mut e, |e| e.data_mut().host.set_status_code(code))
        }),
    );
    bind!(i, s, env, "get_config", |h, m, buf, limit| h.get_config(m, buf as u32, limit as u32));
    bind!(i, s, env, "get_header_names", |h, m, kind, buf, limit| h.get_header_names(
        m,
        kind,
        buf as u32,
        limit as u32
    ));
    bind!(i, s, env, "get_header_values", |h, m, kind, name, name_len, buf, limit| {
        h.get_header_values(m, kind, name as u32, name_len as u32, buf as u32, limit as u32)
    });
    bind!(i, s, env, "set_header_value", |h, m, kind, name, name_len, value, value_len| {
        h.set_header_value(m, kind, name as u32, name_len as u32, value as u32, value_len as u32)
    });
    bind!(i, s, env, "add_header_value", |h, m, kind, name, name_len, value, value_len| {
        h.add_header_value(m, kind, name as u32, name_len as u32, value as u32, value_len as u32)
    });
    bind!(i, s, env, "remove_header", |h, m, kind, name, name_len| h.remove_header(
        m,
        kind,
        name as u32,
        name_len as u32
    ));
    bind!(i, s, env, "read_body", |h, m, kind, buf, limit| h.read_body(m, kind, buf as u32, limit as u32));
    bind!(i, s, env, "write_body", |h, m, kind, ptr, len| h.write_body(m, kind, ptr as u32, len as u32));
    bind!(i, s, env, "get_method", |h, m, buf, limit| h.get_method(m, buf as u32, limit as u32));
    bind!(i, s, env, "set_method", |h, m, ptr, len| h.set_method(m, ptr as u32, len as u32));
    bind!(i, s, env, "get_uri", |h, m, buf, limit| h.get_uri(m, buf as u32, limit as u32));
    bind!(i, s, env, "set_uri", |h, m, ptr, len| h.set_uri(m, ptr as u32, len as u32));
    bind!(i, s, env, "get_protocol_version", |h, m, buf, limit| h.get_protocol_version(m, buf as u32, limit as u32));
    bind!(i, s, env, "get_source_addr", |h, m, buf, limit| h.get_source_addr(m, buf as u32, limit as u32));

    for func in wasi::FUNCS {
        let conv = |t: &http_wasm_abi::ValType| match t {
            http_wasm_abi::ValType::I32 => Type::I32,
            http_wasm_abi::ValType::I64 => Type::I64,
        };
        let ty = FunctionType::new(
            func.params.iter().map(conv).collect::<Vec<_>>(),
            func.results.iter().map(conv).collect::<Vec<_>>(),
        );
        let f =
            Function::new_with_env(&mut *s, env, ty, move |mut e: FunctionEnvMut<'_, StoreData>, params: &[Value]| {
                let args: Vec<i64> = params
                    .iter()
                    .map(|v| match v {
                        Value::I32(x) => *x as u32 as i64,
                        Value::I64(x) => *x,
                        _ => 0,
                    })
                    .collect();
                let out =
                    with(&mut e, |m, h| wasi::call(h, m, func, &args)).map_err(|e| RuntimeError::user(Box::new(e)))?;
                Ok(out.map(|v| vec![Value::I32(v as i32)]).unwrap_or_default())
            });
        i.define(wasi::MODULE, func.name, f);
    }
    i
}

fn host_error(e: &RuntimeError) -> Option<&HostError> {
    e.downcast_ref::<HostError>()
}

fn start_error(what: &str, detail: String) -> Error {
    Error::new(Kind::Start, format!("{what} failed")).with_source(detail)
}

impl CompiledModule for WasmerModule {
    fn checked(&self) -> &Checked {
        &self.checked
    }

    fn instantiate_bound(&self, host: HostState) -> Result<Box<dyn GuestInstance>, Error> {
        WasmerModule::instantiate_bound(self, host)
    }

    /// No: a bound instance runs inline on the thread that feeds the body.
    fn bound_may_wait(&self) -> bool {
        false
    }

    fn instantiate(&self, host: HostState) -> Result<Box<dyn GuestInstance>, Error> {
        let (jobs, mut inbox) = channel::unbounded_channel::<Job>();
        let (answer, answers) = channel::unbounded_channel::<Reply>();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let deadline = host.shared.deadline;
        let shared = host.shared.clone();
        let watch = Arc::new(CallWatch::default());
        let waits = host.waits.clone();
        let module = self.clone();
        let thread_watch = watch.clone();
        std::thread::Builder::new()
            .name(format!("wasmer-{}", shared.name))
            .spawn(move || {
                let watch = thread_watch;
                let mut instance = match module.instantiate_here(host, watch.clone()) {
                    Ok(i) => {
                        let features = i.env.as_ref(&i.store).host.module_features;
                        let _ = ready_tx.send(Ok(features));
                        i
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                // Serve calls until the proxy is dropped.
                while let Some(Job { call, exchange }) = next_job(&mut inbox) {
                    watch.reset();
                    // This thread is the guest's own: its body reads may park it.
                    instance.host().begin_call(exchange, true);
                    let result = match call {
                        Call::Request => instance.handle_request(),
                        Call::Response { req_ctx, is_error } => instance.handle_response(req_ctx, is_error).map(|()| 0),
                    };
                    let exchange = instance.host().end_call();
                    if answer.send((exchange, result)).is_err() {
                        // The caller gave up on the call, and dropped the proxy with it.
                        return;
                    }
                }
            })
            .map_err(|e| Error::new(Kind::Start, "could not start a wasmer instance thread").with_source(e))?;
        let ended = || Error::new(Kind::Start, "the wasmer instance thread ended during start");
        let past_deadline = || Error::new(Kind::Start, "the start function ran past its deadline");
        let features = match wait_for(|left| ready_rx.recv_timeout(left), deadline, &watch, &waits) {
            Waited::InTime(features) => features?,
            Waited::Stopped(_) => return Err(past_deadline()),
            Waited::Ended => return Err(ended()),
            Waited::Abandoned => {
                abandoned(&shared.name);
                return Err(past_deadline());
            }
        };
        let mut host = HostState::new(shared);
        host.module_features = features;
        host.waits = waits;
        Ok(Box::new(Proxy { host, jobs, answers, watch, deadline }))
    }
}

type Reply = (Box<Exchange>, Result<i64, Error>);

/// A call for an instance thread.
struct Job {
    call: Call,
    exchange: Box<Exchange>,
}

/// The `Send` side of an instance that lives on its own thread.
struct Proxy {
    host: HostState,
    jobs: channel::UnboundedSender<Job>,
    /// The answers to the calls sent on `jobs`, one at a time. A caller that
    /// gives up on a call drops the proxy with it (the call owns it), so an
    /// answer here is always the current call's.
    answers: channel::UnboundedReceiver<Reply>,
    watch: Arc<CallWatch>,
    deadline: Duration,
}

/// Logs an instance thread left behind (see `call_watch`).
fn abandoned(plugin: &str) {
    tracing::error!(
        plugin,
        "a wasmer instance thread did not stop {:?} past its deadline; the instance is discarded and its thread abandoned",
        call_watch::ABANDON_AFTER
    );
}

/// How long a waiting side polls before it sleeps or awaits: a call that
/// does little (and a request's second call, `handle_response`) usually
/// answers within this, and a poll answers it without the cost of waking
/// a sleeping thread or task.
const SPIN: Duration = Duration::from_micros(50);

/// Polls `rx` for up to [`SPIN`], yielding the core between polls.
fn spin<T>(rx: &mut channel::UnboundedReceiver<T>) -> Result<T, channel::error::TryRecvError> {
    let start = std::time::Instant::now();
    loop {
        match rx.try_recv() {
            Err(channel::error::TryRecvError::Empty) if start.elapsed() < SPIN => std::thread::yield_now(),
            other => return other,
        }
    }
}

/// The next job for an instance thread; `None` when the proxy is gone.
fn next_job(inbox: &mut channel::UnboundedReceiver<Job>) -> Option<Job> {
    match spin(inbox) {
        Ok(job) => Some(job),
        Err(channel::error::TryRecvError::Disconnected) => None,
        Err(channel::error::TryRecvError::Empty) => inbox.blocking_recv(),
    }
}

fn thread_lost() -> Error {
    Error::new(Kind::Guest, "the wasmer instance thread ended")
}

fn past_deadline(call: Call) -> Error {
    Error::new(Kind::Timeout, format!("{} ran past its deadline", call.export()))
}

impl Proxy {
    /// The outcome of `call` once its wait ended as `waited`.
    fn answered(self: Box<Self>, call: Call, waited: Waited<Reply>) -> Result<Called, Error> {
        let (exchange, result) = match waited {
            Waited::InTime(reply) => reply,
            Waited::Stopped((exchange, result)) => (exchange, result.map_err(|_| past_deadline(call))),
            Waited::Ended => return Err(thread_lost()),
            Waited::Abandoned => {
                abandoned(&self.host.shared.name);
                return Err(past_deadline(call));
            }
        };
        Ok(Called { instance: self, exchange, result })
    }
}

impl GuestInstance for Proxy {
    fn host(&mut self) -> &mut HostState {
        &mut self.host
    }

    /// On the instance thread; ready at once when it answers within
    /// [`SPIN`], else awaited (see the module docs).
    fn call(mut self: Box<Self>, call: Call, exchange: Box<Exchange>) -> GuestCall {
        if self.jobs.send(Job { call, exchange }).is_err() {
            return GuestCall::Ready(Err(thread_lost()));
        }
        match spin(&mut self.answers) {
            Ok(reply) => return GuestCall::Ready(self.answered(call, Waited::InTime(reply))),
            Err(channel::error::TryRecvError::Disconnected) => return GuestCall::Ready(Err(thread_lost())),
            Err(channel::error::TryRecvError::Empty) => {}
        }
        if tokio::runtime::Handle::try_current().is_err() {
            // No runtime, hence no timer: wait on this thread, which is no runtime's.
            let Proxy { answers, deadline, watch, host, .. } = &mut *self;
            let waited = wait_for(|left| call_watch::park_for(answers, left), *deadline, watch, &host.waits);
            return GuestCall::Ready(self.answered(call, waited));
        }
        GuestCall::waiting(async move {
            let Proxy { answers, deadline, watch, host, .. } = &mut *self;
            let waited = call_watch::wait_for_answer(answers, *deadline, watch, &host.waits).await;
            self.answered(call, waited)
        })
    }
}

impl WasmerModule {
    /// A new instance on the current thread, its start function run.
    pub(super) fn instantiate_here(&self, host: HostState, watch: Arc<CallWatch>) -> Result<WasmerInstance, Error> {
        let mut store = Store::new(self.engine.clone());
        let budget = call_watch::operator_budget(host.shared.deadline);
        let env = FunctionEnv::new(&mut store, StoreData { host, memory: None, watch });
        let imports = imports(&mut store, &env);
        let instance = Instance::new(&mut store, &self.module, &imports)
            .map_err(|e| start_error("instantiation", e.to_string()))?;
        let memory = instance
            .exports
            .get_memory(http_wasm_abi::MEMORY)
            .map_err(|_| Error::new(Kind::Abi, "export memory: missing"))?
            .clone();
        env.as_mut(&mut store).memory = Some(memory);
        // The metering middleware's global: the operators the call may still run.
        let points = instance
            .exports
            .get_global(REMAINING_POINTS)
            .map_err(|e| start_error("instantiation", format!("the metering global: {e}")))?
            .clone();
        // One budget of operators for the start section and start export together.
        points
            .set(&mut store, Value::I64(budget as i64))
            .map_err(|e| start_error("instantiation", format!("the metering global: {e}")))?;
        let start_failed = |store: &mut Store, what: &str, e: RuntimeError| {
            if metering::get_remaining_points(store, &instance) == MeteringPoints::Exhausted {
                return start_error(what, "ran past its deadline".into());
            }
            start_error(what, e.message())
        };
        // The start section, now that host functions reach the memory.
        if let Some(name) = &self.start_section {
            let f: TypedFunction<(), ()> = instance
                .exports
                .get_typed_function(&store, name)
                .map_err(|e| start_error("the start function", e.to_string()))?;
            f.call(&mut store).map_err(|e| start_failed(&mut store, "the start function", e))?;
        }
        if let Some(name) = self.checked.start_export() {
            let f: TypedFunction<(), ()> =
                instance.exports.get_typed_function(&store, name).map_err(|e| start_error(name, e.to_string()))?;
            if let Err(e) = f.call(&mut store) {
                match host_error(&e) {
                    Some(HostError::Exit(0)) => {}
                    _ => return Err(start_failed(&mut store, name, e)),
                }
            }
        }
        let handle_request = instance
            .exports
            .get_typed_function(&store, http_wasm_abi::HANDLE_REQUEST)
            .map_err(|e| start_error("handle_request", e.to_string()))?;
        let handle_response = instance
            .exports
            .get_typed_function(&store, http_wasm_abi::HANDLE_RESPONSE)
            .map_err(|e| start_error("handle_response", e.to_string()))?;
        Ok(WasmerInstance { store, env, instance, points, budget, handle_request, handle_response })
    }
}

pub(super) struct WasmerInstance {
    store: Store,
    env: FunctionEnv<StoreData>,
    /// For the metering globals.
    instance: Instance,
    /// The operators the call in progress may still run.
    points: Global,
    /// Operators each call may execute (see `call_watch`).
    budget: u64,
    handle_request: TypedFunction<(), i64>,
    handle_response: TypedFunction<(i32, i32), ()>,
}

impl WasmerInstance {
    pub(super) fn host(&mut self) -> &mut HostState {
        &mut self.env.as_mut(&mut self.store).host
    }

    pub(super) fn handle_request(&mut self) -> Result<i64, Error> {
        self.refuel();
        let out = self.handle_request.call(&mut self.store);
        out.map_err(|e| self.call_error("handle_request", e))
    }

    pub(super) fn handle_response(&mut self, req_ctx: u32, is_error: bool) -> Result<(), Error> {
        self.refuel();
        let out = self.handle_response.call(&mut self.store, req_ctx as i32, is_error as i32);
        out.map_err(|e| self.call_error("handle_response", e))
    }

    /// Gives the next call its budget. (A call that spent it failed, and its
    /// instance was discarded, so the exhausted flag is never set here.)
    fn refuel(&mut self) {
        // The middleware compares the budget as unsigned.
        let budget = Value::I64(self.budget as i64);
        if let Err(e) = self.points.set(&mut self.store, budget) {
            tracing::error!("wasmer metering global: {e}");
        }
    }

    /// The error of a failed call: a timeout when it spent its operators.
    fn call_error(&mut self, phase: &str, e: RuntimeError) -> Error {
        if metering::get_remaining_points(&mut self.store, &self.instance) == MeteringPoints::Exhausted {
            return Error::new(Kind::Timeout, format!("{phase} ran past its deadline"));
        }
        call_error(phase, host_error(&e), e.message())
    }
}
