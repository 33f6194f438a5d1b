//! Engine backends. Each one only compiles, links and instantiates modules
//! and moves bytes between guest memory and the core in [`crate::host`].

use crate::error::{Error, Kind};
use crate::host::{Exchange, HostError, HostState};
use crate::module::{Analysis, Checked};
use std::future::Future;
use std::pin::Pin;

#[cfg(feature = "module-cache")]
pub(crate) mod cache;
#[cfg(feature = "wasmer")]
mod call_watch;
#[cfg(feature = "wasmer")]
pub(crate) mod wasmer;
#[cfg(feature = "wasmer")]
mod wasmer_bound;
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

    /// A new instance for calls made only on the current thread (a
    /// [`LocalPlugin`](crate::LocalPlugin)'s): a backend whose stores may
    /// not move runs them inline there instead of on a thread of their own.
    fn instantiate_bound(&self, host: HostState) -> Result<Box<dyn GuestInstance>, Error> {
        self.instantiate(host)
    }

    /// True when a call on an instance of [`instantiate_bound`](Self::instantiate_bound)
    /// may wait for a body still arriving (it can run where it may park).
    fn bound_may_wait(&self) -> bool {
        true
    }
}

/// One live instance of a guest.
///
/// A guest call is one operation by value: the backend takes the instance
/// and the request's [`Exchange`], and gives both back with the result
/// ([`GuestCall`]). The exchange travels boxed (several hundred bytes
/// that would otherwise be copied at every hand-over; the box is reused
/// from request to request, see `pool::Lease::exchange`). Where the guest runs and how the caller waits for it
/// are the backend's alone: inline when it can answer at once, elsewhere
/// when a body read may have to wait (see `host::body`) or the store lives
/// on another thread.
pub(crate) trait GuestInstance: Send {
    /// The host state in the instance's store (outside a call: what the
    /// module's start left, such as its features).
    fn host(&mut self) -> &mut HostState;
    /// Runs `call` with `exchange`.
    fn call(self: Box<Self>, call: Call, exchange: Box<Exchange>) -> GuestCall;
}

/// Which export a guest call runs, with its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Call {
    /// `handle_request`.
    Request,
    /// `handle_response(req_ctx, is_error)`.
    Response { req_ctx: u32, is_error: bool },
}

impl Call {
    /// The export's name, for errors.
    pub(crate) fn export(self) -> &'static str {
        match self {
            Call::Request => http_wasm_abi::HANDLE_REQUEST,
            Call::Response { .. } => http_wasm_abi::HANDLE_RESPONSE,
        }
    }
}

/// A finished guest call: the instance and the exchange back, with what
/// the export returned (`handle_request`'s raw `ctx_next`, `0` for
/// `handle_response`) or why it failed.
pub(crate) struct Called {
    pub(crate) instance: Box<dyn GuestInstance>,
    pub(crate) exchange: Box<Exchange>,
    pub(crate) result: Result<i64, Error>,
}

/// What a guest call ends with: `Err` when the backend lost the instance
/// and the exchange with it (a panic where the guest ran, a wasmer
/// instance thread that ended or was given up on).
pub(crate) type CallOutcome = Result<Called, Error>;

/// A guest call in progress.
pub(crate) enum GuestCall {
    /// The backend ran the guest at once: no allocation, no wait.
    Ready(CallOutcome),
    /// The call ends when this future does.
    Waiting(Pin<Box<dyn Future<Output = CallOutcome> + Send>>),
}

impl GuestCall {
    /// A call that ends with `outcome`.
    pub(crate) fn waiting(outcome: impl Future<Output = CallOutcome> + Send + 'static) -> GuestCall {
        GuestCall::Waiting(Box::pin(outcome))
    }
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
