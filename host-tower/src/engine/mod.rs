//! Engine backends. Each one only compiles, links and instantiates modules
//! and moves bytes between guest memory and the core in [`crate::host`].

use crate::error::{Error, Kind};
use crate::host::abi_check::{self, Checked, Shape};
use crate::host::{HostError, HostState};

#[cfg(feature = "module-cache")]
pub(crate) mod cache;
#[cfg(feature = "wasmer")]
mod call_watch;
#[cfg(feature = "wasmer")]
mod memory_cap;
#[cfg(feature = "wasmer")]
mod start_section;
#[cfg(feature = "wasmer")]
pub(crate) mod wasmer;
#[cfg(feature = "wasmtime")]
pub(crate) mod wasmtime;

/// Compiles, checks and links `wasm` with `engine` for instances shared as
/// `isolation` says, through the compiled-module cache in `cache_dir` if
/// one is given.
#[cfg_attr(not(all(feature = "wasmer", feature = "wasmtime")), allow(unused_variables))]
pub(crate) fn compile(
    engine: crate::Engine,
    wasm: &[u8],
    cache_dir: Option<&std::path::Path>,
    memory_limit: usize,
    table_limit: u64,
    isolation: crate::Isolation,
) -> Result<std::sync::Arc<dyn CompiledModule>, Error> {
    #[cfg(not(feature = "module-cache"))]
    if cache_dir.is_some() {
        return Err(Error::new(Kind::Config, "cache_dir needs the `module-cache` feature of tower-http-wasm"));
    }
    check_proposals(wasm)?;
    Ok(match engine {
        #[cfg(feature = "wasmtime")]
        crate::Engine::Wasmtime => std::sync::Arc::new(wasmtime::WasmtimeModule::compile(
            wasm,
            cache_dir,
            wasmtime::Allocation::for_isolation(isolation),
        )?),
        #[cfg(feature = "wasmer")]
        crate::Engine::Wasmer => {
            let wasm = memory_cap::cap_memories_and_tables(wasm, memory_limit, table_limit)?;
            std::sync::Arc::new(wasmer::WasmerModule::compile(&wasm, cache_dir)?)
        }
    })
}

/// Compiles `wasm` with `engine` (which validates it), then reads its
/// imports and exports.
pub(crate) fn shape_of(engine: crate::Engine, wasm: &[u8]) -> Result<Shape, Error> {
    check_proposals(wasm)?;
    match engine {
        #[cfg(feature = "wasmtime")]
        crate::Engine::Wasmtime => wasmtime::validate(wasm)?,
        #[cfg(feature = "wasmer")]
        crate::Engine::Wasmer => wasmer::validate(wasm)?,
    }
    shape(wasm)
}

/// Refuses a module that needs a WebAssembly proposal guests may not use
/// (see `host::proposals`), before any engine sees it.
fn check_proposals(wasm: &[u8]) -> Result<(), Error> {
    // Text and garbage are left to the engine, which says what is wrong.
    if !wasm.starts_with(b"\0asm") {
        return Ok(());
    }
    crate::host::proposals::check(wasm).map_err(|e| Error::new(Kind::Compile, "module refused").with_source(e))
}

/// The imports and exports of `wasm`, a module an engine has accepted.
pub(crate) fn shape(wasm: &[u8]) -> Result<Shape, Error> {
    Shape::read(wasm).map_err(|e| Error::new(Kind::Compile, "not a valid wasm module").with_source(e.to_string()))
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

/// Checks a module's shape against the ABI, as a load error listing every problem.
pub(crate) fn check_shape(shape: &Shape) -> Result<Checked, Error> {
    abi_check::check(shape).map_err(|problems| {
        Error::new(Kind::Abi, format!("module does not match the http-wasm ABI:\n  {}", problems.join("\n  ")))
    })
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
