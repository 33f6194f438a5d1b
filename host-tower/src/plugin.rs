//! A loaded guest module and its instance pool.

use crate::engine::{CompiledModule, GuestInstance};
use crate::error::{Error, Kind};
use crate::host::{HostState, Shared};
use bytes::Bytes;
use http_wasm_abi::{Features, HostFunction, LogLevel};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which WebAssembly engine runs a plugin's guests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Engine {
    /// [wasmtime](https://wasmtime.dev), with Cranelift. The default.
    #[cfg(feature = "wasmtime")]
    #[cfg_attr(feature = "wasmtime", default)]
    Wasmtime,
    /// [wasmer](https://wasmer.io), with Cranelift.
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

/// Options for loading a [`Plugin`]. Every knob documents its default.
#[derive(Clone, Debug)]
pub struct PluginBuilder {
    name: Arc<str>,
    config: Bytes,
    log_level: LogLevel,
    features: Features,
    pool_size: usize,
    body_limit: usize,
    header_limit: usize,
    engine: Engine,
    env: Vec<Vec<u8>>,
    deadline: Duration,
    memory_limit: usize,
    pool_wait: Duration,
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
            pool_wait: Duration::from_secs(10),
        }
    }
}

impl PluginBuilder {
    /// The name used in logs. Default: `http-wasm`.
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

    /// The longest one guest call may run: the start function,
    /// `handle_request` or `handle_response`. A call past it is stopped
    /// (wasmtime: epoch interruption, checked every 10 ms; wasmer: an
    /// interrupt signal) and the request gets the failure response (a load
    /// error for start). Time the guest spends waiting inside a host call
    /// (a body still arriving) does not count. Default: 1 s.
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    /// The most bytes of linear memory one instance may grow to; a
    /// `memory.grow` past it traps. Enforced on wasmtime; on wasmer (whose
    /// limits need `unsafe` tunables) the module's own maximum applies.
    /// Default: 128 MiB.
    pub fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = bytes;
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

    /// Adds a WASI environment variable. Default: no environment.
    pub fn env(mut self, key: impl AsRef<str>, value: impl AsRef<str>) -> Self {
        self.env.push(format!("{}={}", key.as_ref(), value.as_ref()).into_bytes());
        self
    }

    /// Compiles, checks and starts `wasm` (binary or, for tests, text is
    /// not accepted: pass bytes of a binary module).
    ///
    /// Compiles once, checks every import and export against the ABI (the
    /// error lists each mismatch with the expected and found signature),
    /// links once, and starts a first instance so that a guest whose start
    /// fails is a load error, never a per-request surprise.
    pub fn build(self, wasm: impl AsRef<[u8]>) -> Result<Plugin, Error> {
        if self.pool_size == 0 {
            return Err(Error::new(Kind::Config, "pool_size must be at least 1"));
        }
        let shared = Arc::new(Shared {
            name: self.name,
            config: self.config,
            log_level: self.log_level,
            allowed: self.features,
            body_limit: self.body_limit,
            header_limit: self.header_limit,
            env: self.env,
            deadline: self.deadline,
            memory_limit: self.memory_limit,
        });
        let module = crate::engine::compile(self.engine, wasm.as_ref())?;
        let imports = module.checked().host_imports.clone();
        let first = module.instantiate(HostState::new(shared.clone()))?;
        let mut first = first;
        let module_features = first.host().module_features;
        let inner = Arc::new(PluginInner {
            shared,
            module,
            engine: self.engine,
            imports,
            module_features,
            permits: Arc::new(Semaphore::new(self.pool_size)),
            pool_wait: self.pool_wait,
            idle: Mutex::new(vec![first]),
        });
        Ok(Plugin { inner })
    }
}

pub(crate) struct PluginInner {
    pub(crate) shared: Arc<Shared>,
    module: Arc<dyn CompiledModule>,
    engine: Engine,
    imports: Vec<HostFunction>,
    module_features: Features,
    permits: Arc<Semaphore>,
    pool_wait: Duration,
    idle: Mutex<Vec<Box<dyn GuestInstance>>>,
}

/// A compiled, checked guest module with its pool of ready instances.
///
/// Cheap to clone (an `Arc`), `Send + Sync`. Build one with
/// [`Plugin::builder`] and wrap services with
/// [`HttpWasmLayer`](crate::HttpWasmLayer).
#[derive(Clone)]
pub struct Plugin {
    pub(crate) inner: Arc<PluginInner>,
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.inner.shared.name)
            .field("engine", &self.inner.engine)
            .field("module_features", &self.inner.module_features)
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
        &self.inner.shared.name
    }

    /// The engine running the plugin.
    pub fn engine(&self) -> Engine {
        self.inner.engine
    }

    /// The features the guest enabled while starting (they apply to every request).
    pub fn module_features(&self) -> Features {
        self.inner.module_features
    }

    /// The host functions the module imports.
    pub fn imports(&self) -> &[HostFunction] {
        &self.inner.imports
    }

    /// Takes an instance for one request, waiting while all are busy.
    pub(crate) async fn acquire(&self) -> Result<Lease, Error> {
        // Fast path: a free instance, no timer involved.
        let permit = match self.inner.permits.clone().try_acquire_owned() {
            Ok(p) => Ok(Ok(p)),
            Err(_) => tokio::time::timeout(self.inner.pool_wait, self.inner.permits.clone().acquire_owned()).await,
        };
        let permit = match permit {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return Err(Error::new(Kind::PoolTimeout, "instance pool closed")),
            Err(_) => {
                return Err(Error::new(
                    Kind::PoolTimeout,
                    format!("no instance free within {:?}", self.inner.pool_wait),
                ));
            }
        };
        let idle = self.inner.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let instance = match idle {
            Some(i) => i,
            None => self.inner.module.instantiate(HostState::new(self.inner.shared.clone()))?,
        };
        Ok(Lease { instance: Some(instance), plugin: self.inner.clone(), _permit: permit })
    }
}

/// An instance pinned to one request; back to the pool on drop unless discarded.
pub(crate) struct Lease {
    instance: Option<Box<dyn GuestInstance>>,
    plugin: Arc<PluginInner>,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub(crate) fn instance(&mut self) -> &mut dyn GuestInstance {
        self.instance.as_deref_mut().expect("instance present until drop or discard")
    }

    pub(crate) fn host(&mut self) -> &mut HostState {
        self.instance().host()
    }

    /// Drops the instance instead of returning it (after any trap).
    pub(crate) fn discard(&mut self) {
        self.instance = None;
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.plugin.shared
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(mut instance) = self.instance.take() {
            instance.host().exchange = None;
            self.plugin.idle.lock().unwrap_or_else(|e| e.into_inner()).push(instance);
        }
    }
}
