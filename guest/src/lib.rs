//! Write [http-wasm](http_wasm_abi::spec) HTTP filters in safe Rust.
//!
//! A filter is a type that implements [`Filter`]; one call of
//! [`export_filter!`] turns it into a guest module: it generates the exports
//! the host calls (`handle_request`, `handle_response`, and on
//! `wasm32-unknown-unknown` also `_initialize`). No `unsafe`, no
//! `#[no_mangle]` and no `main` in the filter's crate.
//!
//! ```
//! use http_wasm_sdk::{Config, Error, Filter, Next, Request, Response};
//!
//! /// Answers 403 to requests without `x-token`, tags the others.
//! struct Gate {
//!     tag: String,
//! }
//!
//! impl Filter for Gate {
//!     fn new(config: &Config) -> Result<Self, Error> {
//!         let tag = config.as_str().ok_or("config must be UTF-8")?.trim();
//!         Ok(Gate { tag: if tag.is_empty() { "gate".into() } else { tag.into() } })
//!     }
//!
//!     fn handle_request(&mut self, req: &mut Request, res: &mut Response) -> Next {
//!         if !req.headers().contains("x-token") {
//!             res.set_status(403);
//!             res.body().write("forbidden\n");
//!             return Next::Stop;
//!         }
//!         req.headers().set("x-gate", &self.tag);
//!         Next::Continue(0)
//!     }
//! }
//!
//! http_wasm_sdk::export_filter!(Gate);
//! ```
//!
//! Build it as a `cdylib` for `wasm32-unknown-unknown` or `wasm32-wasip1`.
//!
//! # Lifecycle
//!
//! The host instantiates the module, possibly several times (each instance
//! has its own filter value), and calls `handle_request` for each request it
//! gives the instance. When the filter returns [`Next::Continue`] the host
//! runs the next handler and then calls
//! [`Filter::handle_response`] on the same instance with the `req_ctx` the
//! filter returned; with [`Next::Stop`] the response is what the filter
//! wrote and `handle_response` is not called.
//!
//! The filter value is built once per instance, by [`Filter::new`] from the
//! configuration bytes ([`Config`]):
//!
//! * on **`wasm32-unknown-unknown`** the macro exports `_initialize`, which
//!   the host calls once after instantiation. It enables
//!   [`Filter::features`] at module level (for every request) and builds the
//!   filter; a configuration error fails the load of the module.
//! * on **`wasm32-wasip1`** the toolchain's reactor or command glue owns
//!   `_initialize`/`_start`, so the filter is built lazily, in the first
//!   `handle_request`. Features enabled there only apply to that request, so
//!   the SDK then enables [`Filter::features`] at the start of every
//!   request (one cheap host call). A configuration error traps that
//!   request (the host answers 500), and the next request tries again.
//!
//! A host that never calls `_initialize` gets the `wasm32-wasip1` behaviour
//! on either target.
//!
//! # Errors and panics
//!
//! Host functions report errors by trapping: a write in the wrong phase, a
//! feature that is not enabled, an invalid header name or value, a bad URI
//! or method. A panic in the filter traps too (wasm32 has no unwinding: it
//! ends in `unreachable`), so the host fails the request, answering 500 if
//! it had not started the response. A [`Filter::new`] error is logged at
//! [`LogLevel::Error`] and then traps.
//!
//! # Buffers
//!
//! Values the host returns (method, URI, header values and names, config)
//! are read into one scratch buffer of [`SCRATCH_LEN`] bytes: a value that
//! fits costs one host call and no allocation for the call. A longer one is
//! read again into a buffer of its exact length: there is no size cap and
//! no silent truncation. Bodies are read straight into the caller's buffer
//! ([`Body::read_all`], or [`Body::reader`] for streaming).
//!
//! # Module size
//!
//! The SDK adds about 2 KB of code to a filter, and installs
//! [talc](https://docs.rs/talc) as the global allocator (crate feature
//! `talc`, on by default): about 1.6 KB of code where the standard
//! library's dlmalloc is about 7.5 KB on `wasm32-unknown-unknown`. The
//! header-validation example is 7.9 KB on `wasm32-unknown-unknown` (13.9 KB
//! with dlmalloc); `wasm32-wasip1` adds wasi-libc and the standard panic
//! hook (31.3 KB in all). Avoid `format!` and `serde_json`
//! in filters that must stay small. Build with `lto`, `opt-level = "s"`,
//! `panic = "abort"` and `strip`, and emit only the `cdylib`: a crate whose
//! `crate-type` also lists `rlib` is optimized less well (about 6 KB more),
//! which `cargo rustc --crate-type cdylib` avoids.
//!
//! # Features of this crate
//!
//! * `talc` (default): [talc](https://docs.rs/talc) as the module's
//!   `#[global_allocator]` on single-threaded wasm (both targets), in place
//!   of the standard library's. Turn default features off to install
//!   another allocator (two global allocators do not link). Without wasm it
//!   does nothing.
//! * `json`: `Config::json`, deserializing the configuration with
//!   `serde_json`.
//! * `log`: `init_logger`, a [`log`](https://docs.rs/log) facade over the
//!   host's logger.
#![deny(missing_docs)]

#[cfg(all(feature = "talc", target_family = "wasm", not(target_feature = "atomics")))]
mod allocator;
mod body;
mod buf;
mod ffi;
mod headers;
mod http;
#[cfg(feature = "log")]
mod logger;

use core::fmt;
use std::borrow::Cow;

pub use body::{Body, BodyReader, BodyWriter};
pub use buf::SCRATCH_LEN;
pub use headers::Headers;
pub use http::{Request, Response, split_uri};
pub use http_wasm_abi as abi;
pub use http_wasm_abi::{BodyKind, Feature, Features, HeaderKind, LogLevel};
#[cfg(feature = "log")]
pub use logger::init_logger;

/// An HTTP filter: the guest's logic, built once per module instance.
///
/// See the [crate documentation](crate) for the lifecycle and
/// [`export_filter!`] to export it.
pub trait Filter: Sized + 'static {
    /// The features to enable for every request: for example
    /// [`Features::BUFFER_RESPONSE`] to change the response in
    /// [`handle_response`](Filter::handle_response), or
    /// [`Features::BUFFER_REQUEST`] to read the request body and still pass
    /// it on. Called once, when the filter is built.
    fn features() -> Features {
        Features::NONE
    }

    /// Builds the filter from the guest configuration bytes. An `Err` is
    /// logged at error level and traps.
    fn new(config: &Config) -> Result<Self, Error>;

    /// Handles a request: inspect or change it, write a response, and say
    /// whether the next handler runs.
    fn handle_request(&mut self, req: &mut Request, res: &mut Response) -> Next;

    /// Called after the next handler when
    /// [`handle_request`](Filter::handle_request) returned
    /// [`Next::Continue`], with its `req_ctx`. `is_error` is true when the
    /// next handler failed. Changing the response here needs
    /// [`Features::BUFFER_RESPONSE`]. Does nothing by default.
    fn handle_response(&mut self, req_ctx: u32, req: &mut Request, res: &mut Response, is_error: bool) {
        let _ = (req_ctx, req, res, is_error);
    }
}

/// What happens after [`Filter::handle_request`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Next {
    /// Run the next handler, then [`Filter::handle_response`] with this
    /// request context (any value the filter likes, e.g. `0`).
    Continue(u32),
    /// Skip the next handler: the response is what the filter wrote.
    Stop,
}

impl Next {
    /// The ABI's packed `ctx_next`.
    pub const fn to_ctx_next(self) -> abi::CtxNext {
        match self {
            Next::Continue(req_ctx) => abi::CtxNext { req_ctx, next: true },
            Next::Stop => abi::CtxNext { req_ctx: 0, next: false },
        }
    }
}

/// An error of the filter, with a message for the host's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    message: Cow<'static, str>,
}

impl Error {
    /// An error with `message`.
    pub fn new(message: impl Into<Cow<'static, str>>) -> Error {
        Error { message: message.into() }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<&'static str> for Error {
    fn from(message: &'static str) -> Error {
        Error::new(message)
    }
}

impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::new(message)
    }
}

/// The guest configuration: opaque bytes set by the host's operator (often
/// JSON, not necessarily UTF-8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Config {
    bytes: Vec<u8>,
}

impl Config {
    /// Reads the configuration from the host, whatever its length.
    pub fn read() -> Config {
        // Read once per instance: a probe for the length, then one read into
        // a buffer of that length, without the scratch buffer's code path.
        Config { bytes: buf::read_heap(ffi::Getter::Config, 0).0 }
    }

    /// A configuration from bytes, e.g. to test [`Filter::new`] natively.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Config {
        Config { bytes: bytes.into() }
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes as text, `None` when they are not UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        core::str::from_utf8(&self.bytes).ok()
    }

    /// The length in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when the host gave no configuration.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Deserializes the configuration as JSON. The error names the problem
    /// and where it is (`invalid JSON config: missing field `header` at line
    /// 1 column 2`).
    #[cfg(feature = "json")]
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        serde_json::from_slice(&self.bytes).map_err(|e| Error::new(format!("invalid JSON config: {e}")))
    }
}

/// Enables `features` and returns the set now enabled (which may lack some
/// the host refused). Called while the module starts (as
/// [`Filter::features`] is on `wasm32-unknown-unknown`) it applies to every
/// request; in `handle_request`, to that request only.
pub fn enable_features(features: Features) -> Features {
    ffi::enable_features(features)
}

/// The features enabled now (enables nothing).
pub fn enabled_features() -> Features {
    ffi::enable_features(Features::NONE)
}

/// Logs `message` at `level` through the host. Never fails.
pub fn log(level: LogLevel, message: &str) {
    ffi::log(level, message.as_bytes());
}

/// True when the host would log a message at `level`: check it before
/// building an expensive message (the [`log!`] macros do).
pub fn log_enabled(level: LogLevel) -> bool {
    ffi::log_enabled(level)
}

/// Logs through the host when `level` is enabled, formatting only then:
/// `log!(LogLevel::Info, "routed {} to {}", from, to)`. A message without
/// arguments is not formatted at all.
#[macro_export]
macro_rules! log {
    ($level:expr, $($arg:tt)+) => {
        $crate::__private::log_fmt($level, ::core::format_args!($($arg)+))
    };
}

/// [`log!`] at [`LogLevel::Debug`].
#[macro_export]
macro_rules! debug {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Debug, $($arg)+) };
}

/// [`log!`] at [`LogLevel::Info`].
#[macro_export]
macro_rules! info {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Info, $($arg)+) };
}

/// [`log!`] at [`LogLevel::Warn`].
#[macro_export]
macro_rules! warn {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Warn, $($arg)+) };
}

/// [`log!`] at [`LogLevel::Error`].
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::log!($crate::LogLevel::Error, $($arg)+) };
}

/// Logs `message` at error level and traps (the host fails the request, or
/// the load of the module during start).
pub(crate) fn trap(message: &str) -> ! {
    trap_bytes(message.as_bytes())
}

fn trap_bytes(message: &[u8]) -> ! {
    ffi::log(LogLevel::Error, message);
    std::process::abort()
}

/// Exports a [`Filter`] type as the guest's `handle_request` and
/// `handle_response` (and `_initialize` on `wasm32-unknown-unknown`).
///
/// ```
/// use http_wasm_sdk::{Config, Error, Filter, Next, Request, Response};
///
/// /// Passes every request on.
/// struct Pass;
///
/// impl Filter for Pass {
///     fn new(_config: &Config) -> Result<Self, Error> {
///         Ok(Pass)
///     }
///
///     fn handle_request(&mut self, _req: &mut Request, _res: &mut Response) -> Next {
///         Next::Continue(0)
///     }
/// }
///
/// http_wasm_sdk::export_filter!(Pass);
/// ```
///
/// Call it once per crate, at module level. The filter value lives in a
/// thread-local (wasm guests are single-threaded) and is built as the
/// [crate documentation](crate#lifecycle) describes. On targets other than
/// wasm the macro exports nothing and only checks that the type implements
/// [`Filter`], so filter crates still build and unit-test natively.
#[macro_export]
macro_rules! export_filter {
    ($filter:ty $(,)?) => {
        #[cfg(target_family = "wasm")]
        const _: () = {
            ::std::thread_local! {
                static FILTER: $crate::__private::Slot<$filter> = const { $crate::__private::Slot::new() };
            }

            /// `handle_request() -> i64`: the packed `ctx_next`.
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn handle_request() -> i64 {
                $crate::__private::handle_request(&FILTER)
            }

            /// `handle_response(req_ctx: i32, is_error: i32)`.
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn handle_response(req_ctx: i32, is_error: i32) {
                $crate::__private::handle_response(&FILTER, req_ctx, is_error)
            }

            /// Called once by the host after instantiation.
            #[cfg(target_os = "unknown")]
            #[allow(unsafe_code)]
            #[unsafe(no_mangle)]
            pub extern "C" fn _initialize() {
                $crate::__private::initialize(&FILTER)
            }
        };

        #[cfg(not(target_family = "wasm"))]
        const _: fn() = $crate::__private::check::<$filter>;
    };
}

/// Support for the macros; not a public API.
#[doc(hidden)]
pub mod __private {
    use super::{Config, Features, Filter, LogLevel, Next, Request, Response, ffi, trap};
    use core::cell::RefCell;
    use core::fmt;
    use std::thread::LocalKey;

    /// Where [`export_filter!`](crate::export_filter) keeps the filter.
    pub struct Slot<F>(RefCell<Option<Built<F>>>);

    struct Built<F> {
        filter: F,
        /// Features to enable at each request: those of a filter built
        /// lazily, outside the module's start.
        each_request: Features,
    }

    impl<F> Slot<F> {
        /// An empty slot.
        #[allow(clippy::new_without_default)]
        pub const fn new() -> Slot<F> {
            Slot(RefCell::new(None))
        }
    }

    impl<F> fmt::Debug for Slot<F> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Slot")
        }
    }

    /// `LocalKey::with` without its formatting panic.
    fn with<T, R>(key: &'static LocalKey<T>, f: impl FnOnce(&T) -> R) -> R {
        match key.try_with(f) {
            Ok(r) => r,
            Err(_) => trap("http-wasm filter used after its thread ended"),
        }
    }

    /// Type-checks the filter in native builds.
    pub fn check<F: Filter>() {}

    fn build<F: Filter>(at_start: bool) -> Built<F> {
        let features = F::features();
        if at_start && !features.is_empty() {
            ffi::enable_features(features);
        }
        let config = Config::read();
        match F::new(&config) {
            Ok(filter) => Built { filter, each_request: if at_start { Features::NONE } else { features } },
            Err(e) => {
                // Concatenated without `String` growth or formatting, which
                // would link in code every filter would carry.
                let (prefix, detail) = (b"http-wasm filter failed to start: ", e.message().as_bytes());
                let mut message = vec![0u8; prefix.len() + detail.len()];
                for (to, from) in message.iter_mut().zip(prefix.iter().chain(detail)) {
                    *to = *from;
                }
                super::trap_bytes(&message)
            }
        }
    }

    /// The `_initialize` export.
    pub fn initialize<F: Filter>(slot: &'static LocalKey<Slot<F>>) {
        with(slot, |slot| {
            let Ok(mut built) = slot.0.try_borrow_mut() else { trap("http-wasm filter re-entered") };
            built.get_or_insert_with(|| build::<F>(true));
        })
    }

    /// The `handle_request` export.
    pub fn handle_request<F: Filter>(slot: &'static LocalKey<Slot<F>>) -> i64 {
        with(slot, |slot| {
            let Ok(mut built) = slot.0.try_borrow_mut() else { trap("http-wasm filter re-entered") };
            let built = built.get_or_insert_with(|| build::<F>(false));
            if !built.each_request.is_empty() {
                ffi::enable_features(built.each_request);
            }
            let next: Next = built.filter.handle_request(&mut Request::new(), &mut Response::new());
            next.to_ctx_next().encode()
        })
    }

    /// The `handle_response` export.
    pub fn handle_response<F: Filter>(slot: &'static LocalKey<Slot<F>>, req_ctx: i32, is_error: i32) {
        with(slot, |slot| {
            let Ok(mut built) = slot.0.try_borrow_mut() else { trap("http-wasm filter re-entered") };
            let Some(built) = built.as_mut() else { trap("http-wasm handle_response before handle_request") };
            built.filter.handle_response(req_ctx as u32, &mut Request::new(), &mut Response::new(), is_error != 0);
        })
    }

    /// The body of the [`log!`](crate::log!) macros.
    pub fn log_fmt(level: LogLevel, args: fmt::Arguments<'_>) {
        if !ffi::log_enabled(level) {
            return;
        }
        match args.as_str() {
            Some(message) => ffi::log(level, message.as_bytes()),
            None => ffi::log(level, std::fmt::format(args).as_bytes()),
        }
    }
}
