//! A loaded guest module, its options, and how it is replaced at run time.

use crate::error::{Error, Kind};
use crate::local::LocalPlugin;
use crate::metrics::{Counters, Metrics};
use crate::pool::Loaded;
use bytes::Bytes;
use http_wasm_abi::{Features, HostFunction, LogLevel};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Which WebAssembly engine runs a plugin's guests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// [wasmtime](https://wasmtime.dev), with Cranelift. The default.
    #[cfg_attr(docsrs, doc(cfg(feature = "wasmtime")))]
    #[cfg(feature = "wasmtime")]
    #[cfg_attr(feature = "wasmtime", default)]
    Wasmtime,
    /// [wasmer](https://wasmer.io), with Cranelift.
    #[cfg_attr(docsrs, doc(cfg(feature = "wasmer")))]
    #[cfg(feature = "wasmer")]
    #[cfg_attr(not(feature = "wasmtime"), default)]
    Wasmer,
}

impl Engine {
    /// Every engine compiled into this build.
    pub const ALL: &'static [Engine] = &[
        #[cfg(feature = "wasmtime")]
        Engine::Wasmtime,
        #[cfg(feature = "wasmer")]
        Engine::Wasmer,
    ];

    /// The engine's name: `wasmtime` or `wasmer`.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(feature = "wasmtime")]
            Engine::Wasmtime => "wasmtime",
            #[cfg(feature = "wasmer")]
            Engine::Wasmer => "wasmer",
        }
    }

    /// Parses `wasmtime` or `wasmer`.
    pub fn from_name(name: &str) -> Option<Engine> {
        Engine::ALL.iter().copied().find(|e| e.name() == name)
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How requests share guest instances.
///
/// Whatever the policy, an instance is pinned to one request from
/// `handle_request` through `handle_response`, and an instance that failed
/// (trap, deadline, invalid host call) is always discarded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// Instances go back to the pool after each request, so guest globals
    /// and memory persist from one request to the next (as in the Go host).
    /// The fastest policy, and the default.
    #[default]
    Reuse,
    /// A fresh instance (with its start function run) for every request:
    /// nothing a guest keeps survives its request. Costs an instantiation
    /// per request.
    ///
    /// On wasmtime, modules of this policy and of
    /// [`RecycleAfter`](Self::RecycleAfter) run on a second engine with
    /// wasmtime's pooling allocator: an instance takes a preallocated slot
    /// whose memory starts as a copy-on-write image of the module's data,
    /// and the slot is reset, not unmapped, when the instance ends (see
    /// `docs/performance.md` for the price per request). That engine holds
    /// 1,000 instances at once across all such plugins of the process (a
    /// start beyond that fails like any failed start), at most 8 tables per
    /// module and 100,000 elements per table; each slot reserves address
    /// space for a 4 GiB memory, of which only what the guest touches is
    /// resident. The memory and table caps of the builder apply as usual.
    PerRequest,
    /// Instances are reused, and replaced by a fresh one after serving this
    /// many requests (at least 1; 1 is [`PerRequest`](Self::PerRequest)).
    /// Runs on wasmtime's pooling engine, as `PerRequest` does.
    RecycleAfter(u64),
}

/// What the client gets when a guest fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// The request gets the layer's [`FailureResponse`](crate::FailureResponse)
    /// (a 500 by default). The default.
    #[default]
    Closed,
    /// The filter is skipped: the request goes to the next handler as the
    /// client sent it (a failure in `handle_response`: the client gets the
    /// next handler's response as it came). Logged at `warn` and counted in
    /// [`Metrics::failed_open`].
    ///
    /// Failing open needs a copy of the request head on every request, and
    /// is not possible once a guest consumed part of a request body without
    /// `buffer_request`, nor after a response body failed: those failures
    /// stay closed. Only the guest's own failures (a trap, the deadline, an
    /// invalid host call, a start failure) fail open: limits and the client
    /// are not the guest's doing, so a body over
    /// [`PluginBuilder::body_limit`] always answers 413, a busy pool 503
    /// (with `retry-after`), a client body that fails or stalls 400 or 408.
    Open,
}

/// Options for loading a [`Plugin`]. Every knob documents its default.
#[derive(Clone, Debug)]
pub struct PluginBuilder {
    pub(crate) name: Arc<str>,
    pub(crate) config: Bytes,
    pub(crate) log_level: LogLevel,
    pub(crate) features: Features,
    pub(crate) pool_size: usize,
    pub(crate) body_limit: usize,
    pub(crate) header_limit: usize,
    pub(crate) engine: Engine,
    pub(crate) env: Vec<Vec<u8>>,
    pub(crate) deadline: Duration,
    pub(crate) memory_limit: usize,
    pub(crate) table_limit: u64,
    pub(crate) pool_wait: Duration,
    pub(crate) body_timeout: Duration,
    pub(crate) isolation: Isolation,
    pub(crate) failure_policy: FailurePolicy,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) guest_time_sampling: u32,
}

impl Default for PluginBuilder {
    fn default() -> Self {
        PluginBuilder {
            name: Arc::from("http-wasm"),
            config: Bytes::new(),
            log_level: LogLevel::Info,
            features: Features::ALL,
            pool_size: 16,
            body_limit: 4 << 20,
            header_limit: 64 << 10,
            engine: Engine::default(),
            env: Vec::new(),
            deadline: Duration::from_secs(1),
            memory_limit: 128 << 20,
            table_limit: 10_000,
            pool_wait: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            isolation: Isolation::Reuse,
            failure_policy: FailurePolicy::Closed,
            cache_dir: None,
            guest_time_sampling: 16,
        }
    }
}

impl PluginBuilder {
    /// The name used in logs and metrics. Default: `http-wasm`.
    pub fn name(mut self, name: impl Into<Arc<str>>) -> Self {
        self.name = name.into();
        self
    }

    /// The bytes the guest reads with `get_config`. Default: empty.
    pub fn config(mut self, config: impl Into<Bytes>) -> Self {
        self.config = config.into();
        self
    }

    /// The lowest guest log level that is logged (`log_enabled` answers by
    /// it). Default: [`LogLevel::Info`]; [`LogLevel::None`] turns guest
    /// logging off.
    pub fn log_level(mut self, level: LogLevel) -> Self {
        self.log_level = level;
        self
    }

    /// The features a guest may enable. Default: all of them
    /// (`buffer_request|buffer_response|trailers`).
    pub fn features(mut self, features: Features) -> Self {
        self.features = features;
        self
    }

    /// The most instances alive at once, hence the most requests this plugin
    /// handles concurrently; further requests wait for a free instance.
    /// Default: 16. Must be at least 1.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// The most bytes of one body the host buffers for a guest
    /// (`buffer_request`, `buffer_response`, bodies the guest writes). A
    /// request body past it gets 413; a response body past it fails the
    /// guest call. Default: 4 MiB.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// The most bytes (names plus values) one header map may hold after a
    /// guest writes to it. Default: 64 KiB.
    pub fn header_limit(mut self, bytes: usize) -> Self {
        self.header_limit = bytes;
        self
    }

    /// The engine. Default: [`Engine::Wasmtime`].
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = engine;
        self
    }

    /// The longest one guest call may compute: the start function,
    /// `handle_request` or `handle_response`. Time the guest spends waiting
    /// inside `read_body` for a body that is still arriving does not count
    /// (a slow client never fails a good guest; [`Self::body_timeout`]
    /// bounds those waits). A call past it is stopped and the request gets
    /// the failure response (a load error for start): wasmtime by epoch
    /// interruption, checked every 10 ms; wasmer at the guest's next host
    /// call, and a guest computing without host calls when it has executed
    /// two billion WebAssembly operators per second of deadline (wasmer's
    /// metering; a tight loop on a loaded 2-core machine ran about six
    /// deadlines). Default: 1 s.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The most bytes of linear memory one instance may grow to (a module
    /// has one memory: `multi-memory` is refused at load). On wasmtime a
    /// `memory.grow` past it traps (a resource limiter per store). On wasmer
    /// (whose limits need `unsafe` tunables) the module's memory maximum is
    /// lowered to it before compiling, so a `memory.grow` past it fails as
    /// the wasm specification says (it returns -1; a Rust or TinyGo guest's
    /// allocator then aborts, a trap). A module whose initial memory is over
    /// it fails to load on both. Default: 128 MiB.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// The most elements the tables of one instance may hold together; a
    /// `table.grow` past it traps on wasmtime and fails (returns -1) on
    /// wasmer, where each table's maximum is lowered to its share of it as
    /// for [`memory_limit`](Self::memory_limit). Default: 10,000 (a Rust or
    /// TinyGo guest's function table holds its indirectly called
    /// functions, typically a few hundred).
    pub fn table_limit(mut self, elements: u64) -> Self {
        self.table_limit = elements;
        self
    }

    /// How long a request waits for a free instance when all
    /// [`pool_size`](Self::pool_size) are busy before it gets 503.
    /// Waiting uses tokio's timer, so the runtime needs its time driver
    /// (`#[tokio::main]` and hyper/axum servers have it). Default: 10 s.
    pub fn pool_wait(mut self, wait: Duration) -> Self {
        self.pool_wait = wait;
        self
    }

    /// How long the client's request body may go without sending data (a
    /// data or trailers frame) while the host or the guest waits for it.
    /// Past it the body fails: the client gets 408 (the
    /// [`FailureResponse`](crate::FailureResponse) of an error with
    /// [`Error::is_body_timeout`](crate::Error::is_body_timeout)) and the
    /// instance is released; a body the guest did not read fails the same
    /// way in the next handler. A client that trickles a body therefore
    /// never holds an instance forever. Uses tokio's timer, as
    /// [`pool_wait`](Self::pool_wait) does. Default: 30 s.
    pub fn body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How requests share instances. Default: [`Isolation::Reuse`].
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// What the client gets when the guest fails. Default:
    /// [`FailurePolicy::Closed`].
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.failure_policy = policy;
        self
    }

    /// Times one guest call in `one_in` for the guest-time histograms
    /// ([`Metrics::handle_request_time`], [`Metrics::handle_response_time`]),
    /// each call picked at random with that chance; 1 times every call.
    /// Timing reads the clock twice per call, which costs a no-op request a
    /// few percent of its time in the host (`docs/performance.md`); one in
    /// 16 makes that cost lost in the noise while the buckets and the mean
    /// still describe a busy filter's calls.
    /// The counters ([`Metrics::requests`] and the rest) count every call
    /// whatever this says. Default: 16. At least 1.
    pub fn guest_time_sampling(mut self, one_in: u32) -> Self {
        self.guest_time_sampling = one_in;
        self
    }

    /// A directory where compiled modules are kept, keyed by the module's
    /// hash, the engine, its version and its settings, so that loading the
    /// same module again skips compilation. The directory is trusted only
    /// as far as its owner: it and every file in it must be owned by the
    /// effective user, not be symlinks and not be writable by group or
    /// others (a directory that fails is not used, with a warning), and an
    /// entry is loaded only if its HMAC-SHA256 tag verifies under the
    /// directory's own key (a file `key`, mode 0600, made on first use). A
    /// truncated, altered or foreign entry is recompiled, never loaded.
    /// Default: none (every load compiles).
    #[cfg_attr(docsrs, doc(cfg(feature = "module-cache")))]
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Adds a WASI environment variable. Default: no environment.
    pub fn env(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.env.push(format!("{}={}", key.as_ref(), value.as_ref()).into_bytes());
        self
    }

    /// Compiles, checks and starts `wasm` (the bytes of a binary module).
    ///
    /// Compiles once, checks every import and export against the ABI (the
    /// error lists each mismatch with the expected and found signature),
    /// links once, and starts a first instance so that a guest whose start
    /// fails is a load error, never a per-request surprise.
    pub fn build(self, wasm: impl AsRef<[u8]>) -> Result<Plugin, Error> {
        let counters = Arc::new(Counters::default());
        let loaded = Loaded::load(&self, wasm.as_ref(), counters.clone())?;
        let current = RwLock::new(Arc::new(loaded));
        Ok(Plugin { slot: Arc::new(Slot { builder: self, current, generation: AtomicU64::new(0), counters }) })
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if self.pool_size == 0 {
            return Err(Error::new(Kind::Config, "pool_size must be at least 1"));
        }
        if self.guest_time_sampling == 0 {
            return Err(Error::new(Kind::Config, "guest_time_sampling must be at least 1 (1 times every call)"));
        }
        if self.isolation == Isolation::RecycleAfter(0) {
            return Err(Error::new(Kind::Config, "Isolation::RecycleAfter needs at least 1 request"));
        }
        Ok(())
    }
}

/// What all clones of a [`Plugin`] share: the options, the module serving
/// new requests, and the counters.
pub(crate) struct Slot {
    builder: PluginBuilder,
    current: RwLock<Arc<Loaded>>,
    /// Counts the reloads: a [`LocalPlugin`]'s replica of an older
    /// generation is replaced.
    generation: AtomicU64,
    counters: Arc<Counters>,
}

/// A compiled, checked guest module with its pool of ready instances.
///
/// Cheap to clone (an `Arc`), `Send + Sync`; clones share the module, the
/// pool and the counters, and see a [`reload`](Plugin::reload). Build one
/// with [`Plugin::builder`] and wrap services with
/// [`HttpWasmLayer`](crate::HttpWasmLayer).
#[derive(Clone)]
pub struct Plugin {
    slot: Arc<Slot>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.slot.builder.name)
            .field("engine", &self.slot.builder.engine)
            .field("module_features", &self.module_features())
            .finish_non_exhaustive()
    }
}

impl Plugin {
    /// Options with their defaults.
    pub fn builder() -> PluginBuilder {
        PluginBuilder::default()
    }

    /// Loads `wasm` with the default options.
    pub fn new(wasm: impl AsRef<[u8]>) -> Result<Plugin, Error> {
        PluginBuilder::default().build(wasm)
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.slot.builder.name
    }

    /// The engine running the plugin.
    pub fn engine(&self) -> Engine {
        self.slot.builder.engine
    }

    /// What the client gets when the guest fails.
    pub fn failure_policy(&self) -> FailurePolicy {
        self.slot.builder.failure_policy
    }

    /// The features the current module enabled while starting (they apply
    /// to every request).
    pub fn module_features(&self) -> Features {
        self.loaded().module_features
    }

    /// The host functions the current module imports.
    pub fn imports(&self) -> Vec<HostFunction> {
        self.loaded().imports.clone()
    }

    /// The plugin's counters so far (they survive reloads).
    pub fn metrics(&self) -> Metrics {
        self.slot.counters.snapshot()
    }

    /// Publishes the counters through the [`metrics`](https://docs.rs/metrics)
    /// facade (crate feature `metrics`): each figure of [`Metrics::iter`]
    /// as `http_wasm_<name>` (counters with a `_total` suffix) with the
    /// label `filter` set to the plugin's name, at its absolute value. Call
    /// it before a scrape or on a timer; requests never touch the facade, so
    /// the request path pays nothing for it.
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    #[cfg(feature = "metrics")]
    pub fn record_metrics(&self) {
        for (name, _, kind, value) in self.metrics().iter() {
            let filter = self.name().to_string();
            match kind {
                crate::MetricKind::Counter => {
                    ::metrics::counter!(format!("http_wasm_{name}_total"), "filter" => filter).absolute(value)
                }
                _ => ::metrics::gauge!(format!("http_wasm_{name}"), "filter" => filter).set(value as f64),
            }
        }
    }

    /// Replaces the module with `wasm`, keeping every option.
    ///
    /// The new module is compiled, checked and started before anything
    /// changes; if that fails the error is returned and the old module keeps
    /// serving. Otherwise the swap is atomic: requests already running finish
    /// on the old module (its instances are dropped as they come back, so
    /// for a moment up to twice [`PluginBuilder::pool_size`] instances may
    /// be alive), new requests use the new one. Compiling blocks the calling
    /// thread: from async code, call it inside `spawn_blocking`.
    pub fn reload(&self, wasm: impl AsRef<[u8]>) -> Result<(), Error> {
        match Loaded::load(&self.slot.builder, wasm.as_ref(), self.slot.counters.clone()) {
            Ok(loaded) => {
                let mut current = self.slot.current.write().unwrap_or_else(|e| e.into_inner());
                *current = Arc::new(loaded);
                self.slot.generation.fetch_add(1, Ordering::Release);
                drop(current);
                self.slot.counters.reloaded();
                tracing::info!(target: "http_wasm", plugin = self.name(), "module reloaded");
                Ok(())
            }
            Err(e) => {
                self.slot.counters.reload_failed();
                tracing::warn!(target: "http_wasm", plugin = self.name(), error = %e, "reload rejected; the old module keeps serving");
                Err(e)
            }
        }
    }

    /// A replica of this plugin for the current thread, for
    /// [`LocalHttpWasm`](crate::LocalHttpWasm): the same module, options
    /// and counters (so [`metrics`](Plugin::metrics) and
    /// [`reload`](Plugin::reload) cover it), with an instance pool of its
    /// own of [`PluginBuilder::pool_size`] instances, started as requests
    /// need them. On wasmer its instances live on this thread and run
    /// inline, without the hand-off to an instance thread the `Send`
    /// service makes. See [`LocalPlugin`].
    pub fn local(&self) -> LocalPlugin {
        LocalPlugin::new(self.clone())
    }

    /// The module serving new requests.
    pub(crate) fn loaded(&self) -> Arc<Loaded> {
        self.slot.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The module serving new requests, with its generation (how many
    /// reloads came before it).
    pub(crate) fn current(&self) -> (u64, Arc<Loaded>) {
        let current = self.slot.current.read().unwrap_or_else(|e| e.into_inner());
        (self.slot.generation.load(Ordering::Acquire), current.clone())
    }

    /// How many reloads succeeded so far.
    pub(crate) fn generation(&self) -> u64 {
        self.slot.generation.load(Ordering::Acquire)
    }

    /// [`PluginBuilder::pool_size`].
    pub(crate) fn pool_size(&self) -> usize {
        self.slot.builder.pool_size
    }

    pub(crate) fn counters(&self) -> &Counters {
        &self.slot.counters
    }
}
