//! Engine backends. Each one only compiles, links and instantiates modules
//! and moves bytes between guest memory and the core in [`crate::host`].

use crate::error::{Error, Kind};
use crate::host::{HostError, HostState};
use crate::module::{Analysis, Checked};

#[cfg(feature = "module-cache")]
pub(crate) mod cache;
#[cfg(feature = "wasmer")]
mod call_watch;
#[cfg(feature = "wasmer")]
pub(crate) mod wasmer;
#[cfg(feature = "wasmer")]
mod wasmer_rewrite;
#[cfg(feature = "wasmtime")]
pub(crate) mod wasmtime;

/// Compiles, checks and links `wasm`, which `analysis` read, with `engine`
/// for instances shared as `isolation` says, through the compiled-module
/// cache in `cache_dir` if one is given.
#[cfg_attr(not(all(feature = "wasmer", feature = "wasmtime")), allow(unused_variables))]
pub(crate) fn compile(
    engine: crate::Engine,
    wasm: &[u8],
    analysis: &Analysis,
    cache_dir: Option<&std::path::Path>,
    memory_limit: usize,
    table_limit: u64,
    isolation: crate::Isolation,
) -> Result<std::sync::Arc<dyn CompiledModule>, Error> {
    #[cfg(not(feature = "module-cache"))]
    if cache_dir.is_some() {
        return Err(Error::new(Kind::Config, "cache_dir needs the `module-cache` feature of tower-http-wasm"));
    }
    Ok(match engine {
        #[cfg(feature = "wasmtime")]
        crate::Engine::Wasmtime => std::sync::Arc::new(wasmtime::WasmtimeModule::compile(
            wasm,
            analysis,
            cache_dir,
            wasmtime::Allocation::for_isolation(isolation),
        )?),
        #[cfg(feature = "wasmer")]
        crate::Engine::Wasmer => {
            std::sync::Arc::new(wasmer::WasmerModule::compile(wasm, analysis, cache_dir, memory_limit, table_limit)?)
        }
    })
}

/// Compiles `wasm` with `engine` only to validate it: an engine may refuse
/// what the analysis accepted (wasmtime without its `gc` feature refuses
/// `externref`).
pub(crate) fn validate(engine: crate::Engine, wasm: &[u8]) -> Result<(), Error> {
    match engine {
        #[cfg(feature = "wasmtime")]
        crate::Engine::Wasmtime => wasmtime::validate(wasm),
        #[cfg(feature = "wasmer")]
        crate::Engine::Wasmer => wasmer::validate(wasm),
    }
}

/// A compiled and linked module, ready to instantiate.
pub(crate) trait CompiledModule: Send + Sync {
    /// What the ABI check learned about the module.
    fn checked(&self) -> &Checked;

    /// A new instance with its start function run.
    fn instantiate(&self, host: HostState) -> Result<Box<dyn GuestInstance>, Error>;
}

/// One live instance of a guest.
pub(crate) trait GuestInstance: Send {
    /// The host state in the instance's store.
    fn host(&mut self) -> &mut HostState;
    /// Calls `handle_request`.
    fn handle_request(&mut self) -> Result<i64, Error>;
    /// Calls `handle_response`.
    fn handle_response(&mut self, req_ctx: u32, is_error: bool) -> Result<(), Error>;
}

/// Classifies a failed guest call. `host` is the host error behind the
/// trap, if a host function raised it.
pub(crate) fn call_error(phase: &str, host: Option<&HostError>, detail: String) -> Error {
    match host {
        Some(HostError::Deadline) => Error::new(Kind::Timeout, format!("{phase} ran past its deadline")),
        Some(HostError::BodyTooLarge { .. }) => Error::new(Kind::BodyTooLarge, format!("{phase}: {detail}")),
        Some(HostError::Body(e)) if crate::body_timeout::is_timed_out(&**e) => {
            Error::new(Kind::BodyTimeout, format!("{phase}: {detail}"))
        }
        Some(HostError::Body(_)) => Error::new(Kind::Body, format!("{phase}: {detail}")),
        Some(_) => Error::new(Kind::Guest, format!("{phase}: invalid host call: {detail}")),
        None => Error::new(Kind::Guest, format!("{phase} trapped: {detail}")),
    }
}
