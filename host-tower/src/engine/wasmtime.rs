//! The wasmtime backend.

use super::{Call, Called, CompiledModule, GuestCall, GuestInstance, call_error};
use crate::error::{Error, Kind};
use crate::host::{Exchange, HostError, HostState, SliceMemory, wasi};
use crate::module::{Analysis, Checked};
use crate::plugin::Isolation;
use http_wasm_abi::MODULE;
use std::sync::OnceLock;
use std::time::Duration;
use wasmtime::{
    Caller, Config, Engine, Extern, FuncType, Instance, InstanceAllocationStrategy, InstancePre, Linker, Memory,
    Module, ModuleExport, PoolingAllocationConfig, Store, TypedFunc, UpdateDeadline, Val, ValType, WasmParams,
    WasmResults,
};

/// What the store of every instance holds.
struct StoreData {
    host: HostState,
    /// Resolved once after instantiation; looked up by name during a start section.
    memory: Option<Memory>,
    limits: InstanceLimits,
    /// The guest call in progress.
    call: CallClock,
}

/// One guest call's deadline, measured in epoch ticks of wall time: when
/// they run out, the time the call waited for the client's body is granted
/// again (`host::waits`), so only the time the guest computes counts.
#[derive(Clone, Copy, Debug, Default)]
struct CallClock {
    /// The call's deadline.
    deadline: Duration,
    /// Wall time granted so far: the deadline plus every extension.
    granted: Duration,
    /// The instance's body waits when the call started.
    waits_at_start: Duration,
}

impl CallClock {
    /// Starts a call of `deadline` in `store`.
    fn start(store: &mut Store<StoreData>, deadline: Duration) {
        let data = store.data_mut();
        data.call = CallClock { deadline, granted: deadline, waits_at_start: data.host.waits.total() };
        store.set_epoch_deadline(ticks(deadline));
    }

    /// At the end of the granted time: more ticks for the time spent
    /// waiting since the last grant, or an interrupt.
    fn on_deadline(data: &mut StoreData) -> UpdateDeadline {
        let call = &mut data.call;
        let waited = data.host.waits.total().saturating_sub(call.waits_at_start);
        let ran = call.granted.saturating_sub(waited);
        match call.deadline.checked_sub(ran) {
            Some(left) if !left.is_zero() => {
                call.granted += left;
                UpdateDeadline::Continue(ticks(left))
            }
            _ => UpdateDeadline::Interrupt,
        }
    }
}

/// The memory and table caps of one instance (a store holds one), as a
/// whole: its one linear memory (multi-memory is refused at load) and the
/// elements of all its tables together. Growth past a cap traps.
struct InstanceLimits {
    memory_cap: usize,
    table_cap: usize,
    /// Elements of every table of the instance, as they grew.
    table_elements: usize,
}

impl wasmtime::ResourceLimiter for InstanceLimits {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            wasmtime::bail!("linear memory of {desired} bytes is over the instance's {}-byte cap", self.memory_cap);
        }
        Ok(true)
    }

    fn table_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        let total = self.table_elements.saturating_sub(current).saturating_add(desired);
        if total > self.table_cap {
            wasmtime::bail!("tables of {total} elements are over the instance's {}-element cap", self.table_cap);
        }
        self.table_elements = total;
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn memories(&self) -> usize {
        1
    }
}

/// How often an engine's epoch advances: the granularity of deadlines.
const TICK: Duration = Duration::from_millis(10);

/// Instances alive at once, across every module of the pooling engine
/// ([`Isolation::PerRequest`] and [`Isolation::RecycleAfter`]): its slots
/// of instance state and of linear memory.
pub(crate) const POOLED_INSTANCES: u32 = 1000;
/// Tables one module of the pooling engine may define.
pub(crate) const POOLED_TABLES_PER_MODULE: u32 = 8;
/// Elements one table of the pooling engine may grow to (the plugin's
/// table cap still applies to all of an instance's tables together).
pub(crate) const POOLED_TABLE_ELEMENTS: usize = 100_000;

/// The bytes of a pooled slot's memory reset in place rather than given
/// back to the kernel when its instance ends.
const KEEP_RESIDENT: usize = 1 << 20;

/// The process's wasmtime engines, one per way instances are allocated.
/// A module runs on the engine it was compiled with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Allocation {
    /// Each instance's memory and state are mapped when it starts and
    /// unmapped when it ends: the best fit for instances that live long
    /// ([`Isolation::Reuse`]).
    OnDemand,
    /// wasmtime's pooling allocator: instances take preallocated slots,
    /// memories start from a copy-on-write image of the module's data and
    /// a slot is reset, not unmapped, when its instance ends. Starting an
    /// instance costs no `mmap`, which is what a fresh instance per request
    /// needs ([`Isolation::PerRequest`], [`Isolation::RecycleAfter`]).
    Pooling,
}

impl Allocation {
    /// The allocation that suits `isolation`.
    pub(crate) fn for_isolation(isolation: Isolation) -> Allocation {
        match isolation {
            Isolation::Reuse => Allocation::OnDemand,
            Isolation::PerRequest | Isolation::RecycleAfter(_) => Allocation::Pooling,
        }
    }

    /// The engine, built with its epoch ticker on first use.
    fn engine(self) -> Result<&'static Engine, Error> {
        static ON_DEMAND: OnceLock<Result<Engine, String>> = OnceLock::new();
        static POOLING: OnceLock<Result<Engine, String>> = OnceLock::new();
        let engine = match self {
            Allocation::OnDemand => ON_DEMAND.get_or_init(|| ticking(config(self))),
            Allocation::Pooling => POOLING.get_or_init(|| ticking(config(self))),
        };
        engine.as_ref().map_err(|e| Error::new(Kind::Config, "wasmtime engine").with_source(e.clone()))
    }
}

/// The configuration of the engine for `allocation`: epoch interruption,
/// WebAssembly 2.0 and nothing later (`module::proposals` refuses the rest
/// first; this is the engine's own guard).
fn config(allocation: Allocation) -> Config {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config.epoch_interruption(true);
    config.wasm_features(wasmtime::WasmFeatures::all().difference(wasmtime::WasmFeatures::WASM2), false);
    if allocation == Allocation::Pooling {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_core_instances(POOLED_INSTANCES)
            .total_memories(POOLED_INSTANCES)
            .total_tables(POOLED_INSTANCES)
            .max_memories_per_module(1)
            .max_tables_per_module(POOLED_TABLES_PER_MODULE)
            .table_elements(POOLED_TABLE_ELEMENTS)
            // A slot is reset by rewriting the pages the instance dirtied,
            // found with Linux's PAGEMAP_SCAN (6.7 and later), up to
            // KEEP_RESIDENT bytes, instead of giving them back to the kernel
            // to fault in again: half the price of a fresh instance of an
            // SDK guest (`docs/performance.md`). Without the ioctl, the
            // lowest KEEP_RESIDENT bytes are rewritten.
            .pagemap_scan(wasmtime::Enabled::Auto)
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT / 16);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// Builds the engine of `config` and starts the thread that advances its
/// epoch every [`TICK`], for as long as the process runs (the engine lives
/// in a static).
fn ticking(config: Config) -> Result<Engine, String> {
    let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
    let ticker = engine.clone();
    std::thread::Builder::new()
        .name("wasmtime-epoch".into())
        .spawn(move || {
            loop {
                std::thread::sleep(TICK);
                ticker.increment_epoch();
            }
        })
        .map_err(|e| e.to_string())?;
    Ok(engine)
}

/// Epoch ticks for `deadline`, at least one.
fn ticks(deadline: Duration) -> u64 {
    (deadline.as_nanos() / TICK.as_nanos()).max(1) as u64 + 1
}

pub(crate) struct WasmtimeModule {
    pre: InstancePre<StoreData>,
    engine: Engine,
    checked: Checked,
    exports: Exports,
}

/// The exports an instance needs, found in the module once so that a new
/// instance does not look them up by name.
struct Exports {
    memory: ModuleExport,
    start: Option<(&'static str, ModuleExport)>,
    handle_request: ModuleExport,
    handle_response: ModuleExport,
}

impl Exports {
    fn find(module: &Module, checked: &Checked) -> Result<Exports, Error> {
        let find = |name: &str| {
            module.get_export_index(name).ok_or_else(|| Error::new(Kind::Abi, format!("export {name}: missing")))
        };
        let start = match checked.start_export() {
            Some(name) => Some((name, find(name)?)),
            None => None,
        };
        Ok(Exports {
            memory: find(http_wasm_abi::MEMORY)?,
            start,
            handle_request: find(http_wasm_abi::HANDLE_REQUEST)?,
            handle_response: find(http_wasm_abi::HANDLE_RESPONSE)?,
        })
    }
}

/// The guest memory and the host state of a call, borrowed together.
fn split<'a>(caller: &'a mut Caller<'_, StoreData>) -> Result<(SliceMemory<'a>, &'a mut HostState), HostError> {
    let memory = match caller.data().memory {
        Some(m) => m,
        None => caller
            .get_export(http_wasm_abi::MEMORY)
            .and_then(|e| e.into_memory())
            .ok_or(HostError::NoRequest("memory access before the memory export exists"))?,
    };
    let (bytes, data) = memory.data_and_store_mut(caller);
    Ok((SliceMemory(bytes), &mut data.host))
}

fn trap(e: HostError) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

/// Binds a host function that uses memory: `bind!(linker, "name", |host, mem, a: i32, ...| expr)`.
macro_rules! bind {
    ($linker:ident, $name:literal, |$h:ident, $m:ident $(, $a:ident)*| $body:expr) => {
        $linker
            .func_wrap(MODULE, $name, |mut caller: Caller<'_, StoreData> $(, $a: i32)*| {
                let (mut mem, $h) = split(&mut caller).map_err(trap)?;
                let $m = &mut mem;
                $body.map_err(trap)
            })
            .map_err(link_error)?;
    };
}

fn link_error(e: wasmtime::Error) -> Error {
    Error::new(Kind::Start, "linking failed").with_source(e.to_string())
}

fn link(engine: &Engine) -> Result<Linker<StoreData>, Error> {
    let mut l = Linker::new(engine);
    l.func_wrap(MODULE, "enable_features", |mut c: Caller<'_, StoreData>, f: i32| c.data_mut().host.enable_features(f))
        .map_err(link_error)?;
    l.func_wrap(MODULE, "log_enabled", |c: Caller<'_, StoreData>, level: i32| c.data().host.log_enabled(level))
        .map_err(link_error)?;
    l.func_wrap(MODULE, "log", |mut c: Caller<'_, StoreData>, level: i32, ptr: i32, len: i32| {
        if let Ok((mut mem, h)) = split(&mut c) {
            h.log(&mut mem, level, ptr as u32, len as u32);
        }
    })
    .map_err(link_error)?;
    l.func_wrap(MODULE, "get_status_code", |mut c: Caller<'_, StoreData>| {
        c.data_mut().host.get_status_code().map_err(trap)
    })
    .map_err(link_error)?;
    l.func_wrap(MODULE, "set_status_code", |mut c: Caller<'_, StoreData>, code: i32| {
        c.data_mut().host.set_status_code(code).map_err(trap)
    })
    .map_err(link_error)?;
    bind!(l, "get_config", |h, m, buf, limit| h.get_config(m, buf as u32, limit as u32));
    bind!(l, "get_header_names", |h, m, kind, buf, limit| h.get_header_names(m, kind, buf as u32, limit as u32));
    bind!(l, "get_header_values", |h, m, kind, name, name_len, buf, limit| {
        h.get_header_values(m, kind, name as u32, name_len as u32, buf as u32, limit as u32)
    });
    bind!(l, "set_header_value", |h, m, kind, name, name_len, value, value_len| {
        h.set_header_value(m, kind, name as u32, name_len as u32, value as u32, value_len as u32)
    });
    bind!(l, "add_header_value", |h, m, kind, name, name_len, value, value_len| {
        h.add_header_value(m, kind, name as u32, name_len as u32, value as u32, value_len as u32)
    });
    bind!(l, "remove_header", |h, m, kind, name, name_len| h.remove_header(m, kind, name as u32, name_len as u32));
    bind!(l, "read_body", |h, m, kind, buf, limit| h.read_body(m, kind, buf as u32, limit as u32));
    bind!(l, "write_body", |h, m, kind, ptr, len| h.write_body(m, kind, ptr as u32, len as u32));
    bind!(l, "get_method", |h, m, buf, limit| h.get_method(m, buf as u32, limit as u32));
    bind!(l, "set_method", |h, m, ptr, len| h.set_method(m, ptr as u32, len as u32));
    bind!(l, "get_uri", |h, m, buf, limit| h.get_uri(m, buf as u32, limit as u32));
    bind!(l, "set_uri", |h, m, ptr, len| h.set_uri(m, ptr as u32, len as u32));
    bind!(l, "get_protocol_version", |h, m, buf, limit| h.get_protocol_version(m, buf as u32, limit as u32));
    bind!(l, "get_source_addr", |h, m, buf, limit| h.get_source_addr(m, buf as u32, limit as u32));

    for func in wasi::FUNCS {
        let conv = |t: &http_wasm_abi::ValType| match t {
            http_wasm_abi::ValType::I32 => ValType::I32,
            http_wasm_abi::ValType::I64 => ValType::I64,
        };
        let ty = FuncType::new(engine, func.params.iter().map(conv), func.results.iter().map(conv));
        l.func_new(wasi::MODULE, func.name, ty, move |mut caller, params, results| {
            let args: Vec<i64> = params
                .iter()
                .map(|v| match v {
                    Val::I32(x) => *x as u32 as i64,
                    Val::I64(x) => *x,
                    _ => 0,
                })
                .collect();
            let (mut mem, host) = split(&mut caller).map_err(trap)?;
            let out = wasi::call(host, &mut mem, func, &args).map_err(trap)?;
            if let (Some(v), Some(slot)) = (out, results.first_mut()) {
                *slot = Val::I32(v as i32);
            }
            Ok(())
        })
        .map_err(link_error)?;
    }
    Ok(l)
}

/// Compiles `wasm` only to validate it.
pub(crate) fn validate(wasm: &[u8]) -> Result<(), Error> {
    compile_module(Allocation::OnDemand.engine()?, wasm).map(drop)
}

/// Compiles with one of the engines, for the compiled-module cache.
#[cfg(feature = "module-cache")]
struct Compiler<'a>(&'a Engine, Allocation);

#[cfg(feature = "module-cache")]
impl super::cache::Compiler for Compiler<'_> {
    type Module = Module;

    fn id(&self) -> Vec<u8> {
        use sha2::Digest;
        let mut h = super::cache::DigestHasher(sha2::Sha256::new());
        std::hash::Hash::hash(&self.0.precompile_compatibility_hash(), &mut h);
        let mut id = match self.1 {
            Allocation::OnDemand => b"wasmtime:".to_vec(),
            Allocation::Pooling => b"wasmtime-pooling:".to_vec(),
        };
        id.extend_from_slice(&h.0.finalize());
        id
    }

    fn compile(&self, wasm: &[u8]) -> Result<Module, Error> {
        compile_module(self.0, wasm)
    }

    fn serialize(&self, module: &Module) -> Result<Vec<u8>, String> {
        module.serialize().map_err(|e| format!("{e:#}"))
    }

    fn load(&self, bytes: &[u8]) -> Result<Module, String> {
        // SAFETY: `bytes` passed the cache's authentication (an HMAC under a
        // key only this user can read, over the entry's key and the bytes):
        // they are exactly what `Module::serialize` wrote for this module and
        // this engine's compatibility hash (both part of the entry's key).
        #[allow(unsafe_code)]
        let module = unsafe { Module::deserialize(self.0, bytes) };
        module.map_err(|e| format!("{e:#}"))
    }
}

fn compile_module(engine: &Engine, wasm: &[u8]) -> Result<Module, Error> {
    Module::new(engine, wasm)
        .map_err(|e| Error::new(Kind::Compile, "not a valid wasm module").with_source(format!("{e:#}")))
}

impl WasmtimeModule {
    pub(crate) fn compile(
        wasm: &[u8],
        analysis: &Analysis,
        cache_dir: Option<&std::path::Path>,
        allocation: Allocation,
    ) -> Result<WasmtimeModule, Error> {
        let engine = allocation.engine()?.clone();
        let module = match cache_dir {
            #[cfg(feature = "module-cache")]
            Some(dir) => super::cache::load_or_compile(dir, &Compiler(&engine, allocation), wasm)?,
            _ => compile_module(&engine, wasm)?,
        };
        let checked = analysis.check()?;
        let exports = Exports::find(&module, &checked)?;
        let linker = link(&engine)?;
        let pre = linker.instantiate_pre(&module).map_err(link_error)?;
        Ok(WasmtimeModule { pre, engine, checked, exports })
    }
}

/// The function `export` (named `name`) of `instance`, with its type checked.
fn typed<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut Store<StoreData>,
    export: &ModuleExport,
    name: &str,
) -> Result<TypedFunc<P, R>, Error> {
    let func = instance
        .get_module_export(&mut *store, export)
        .and_then(Extern::into_func)
        .ok_or_else(|| Error::new(Kind::Abi, format!("export {name}: not a function")))?;
    func.typed(&*store).map_err(|e| start_error(name, e))
}

fn host_error(e: &wasmtime::Error) -> Option<&HostError> {
    e.downcast_ref::<HostError>()
}

fn start_error(what: &str, e: wasmtime::Error) -> Error {
    Error::new(Kind::Start, format!("{what} failed")).with_source(describe(&e))
}

impl CompiledModule for WasmtimeModule {
    fn checked(&self) -> &Checked {
        &self.checked
    }

    fn instantiate(&self, host: HostState) -> Result<Box<dyn GuestInstance>, Error> {
        let deadline = host.shared.deadline;
        let limits = InstanceLimits {
            memory_cap: host.shared.memory_limit,
            table_cap: usize::try_from(host.shared.table_limit).unwrap_or(usize::MAX),
            table_elements: 0,
        };
        let mut store = Store::new(&self.engine, StoreData { host, memory: None, limits, call: CallClock::default() });
        store.limiter(|d| &mut d.limits);
        store.epoch_deadline_callback(|mut cx| Ok(CallClock::on_deadline(cx.data_mut())));
        CallClock::start(&mut store, deadline);
        let instance = self.pre.instantiate(&mut store).map_err(|e| start_error("instantiation", e))?;
        let exports = &self.exports;
        let memory = instance
            .get_module_export(&mut store, &exports.memory)
            .and_then(Extern::into_memory)
            .ok_or_else(|| Error::new(Kind::Abi, "export memory: not a memory"))?;
        store.data_mut().memory = Some(memory);
        if let Some((name, start)) = &exports.start {
            let f = typed::<(), ()>(&instance, &mut store, start, name)?;
            CallClock::start(&mut store, deadline);
            if let Err(e) = f.call(&mut store, ()) {
                match host_error(&e) {
                    Some(HostError::Exit(0)) => {}
                    _ => return Err(start_error(name, e)),
                }
            }
        }
        let handle_request =
            typed::<(), i64>(&instance, &mut store, &exports.handle_request, http_wasm_abi::HANDLE_REQUEST)?;
        let handle_response =
            typed::<(i32, i32), ()>(&instance, &mut store, &exports.handle_response, http_wasm_abi::HANDLE_RESPONSE)?;
        Ok(Box::new(WasmtimeInstance { store, handle_request, handle_response, deadline }))
    }
}

struct WasmtimeInstance {
    store: Store<StoreData>,
    handle_request: TypedFunc<(), i64>,
    handle_response: TypedFunc<(i32, i32), ()>,
    /// The time each call may compute.
    deadline: Duration,
}

fn guest_call_error(phase: &str, e: wasmtime::Error) -> Error {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => Error::new(Kind::Timeout, format!("{phase} ran past its deadline")),
        Some(t) => call_error(phase, None, t.to_string()),
        None => call_error(phase, host_error(&e), describe(&e)),
    }
}

/// What went wrong in a guest call or start: the trap or host error, not
/// wasmtime's wasm backtrace around it (kept for `debug` logs: a
/// filter's author wants it, a gateway's error line does not).
fn describe(e: &wasmtime::Error) -> String {
    if let Some(backtrace) = e.downcast_ref::<wasmtime::WasmBacktrace>() {
        tracing::debug!(target: "http_wasm::guest", "wasm backtrace:\n{backtrace}");
        return e.root_cause().to_string();
    }
    format!("{e:#}")
}

impl WasmtimeInstance {
    /// Runs `call` on this thread with `exchange`; its body reads may park
    /// the thread if `may_park`.
    fn run(&mut self, call: Call, exchange: Box<Exchange>, may_park: bool) -> (Box<Exchange>, Result<i64, Error>) {
        self.store.data_mut().host.begin_call(exchange, may_park);
        CallClock::start(&mut self.store, self.deadline);
        let result = match call {
            Call::Request => self.handle_request.call(&mut self.store, ()),
            Call::Response { req_ctx, is_error } => {
                self.handle_response.call(&mut self.store, (req_ctx as i32, is_error as i32)).map(|()| 0)
            }
        };
        let exchange = self.store.data_mut().host.end_call();
        (exchange, result.map_err(|e| guest_call_error(call.export(), e)))
    }

    /// [`WasmtimeInstance::run`], giving the instance back with the outcome.
    fn called(mut self: Box<Self>, call: Call, exchange: Box<Exchange>, may_park: bool) -> Called {
        let (exchange, result) = self.run(call, exchange, may_park);
        Called { instance: self, exchange, result }
    }
}

impl GuestInstance for WasmtimeInstance {
    fn host(&mut self) -> &mut HostState {
        &mut self.store.data_mut().host
    }

    /// Inline on the caller's thread when no body read can wait (the
    /// common case: no allocation, no hand-off); on tokio's blocking pool
    /// when one may, where a read parks that thread, not a runtime thread
    /// (outside a runtime, on the caller's thread, which may then park).
    fn call(self: Box<Self>, call: Call, exchange: Box<Exchange>) -> GuestCall {
        if !exchange.body_arriving() {
            return GuestCall::Ready(Ok(self.called(call, exchange, false)));
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return GuestCall::Ready(Ok(self.called(call, exchange, true)));
        };
        let task = runtime.spawn_blocking(move || self.called(call, exchange, true));
        GuestCall::waiting(async move {
            // The instance and the exchange went down with a panic.
            task.await.map_err(|_| Error::new(Kind::Guest, format!("{} panicked", call.export())))
        })
    }
}
