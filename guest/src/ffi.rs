//! The raw host functions of module `http_handler`, and safe wrappers over
//! them. This is the only module of the SDK with `unsafe` code.
//!
//! Every wrapper passes Rust slices as `(ptr, len)` pairs. The host only
//! reads or writes inside the ranges it is given (the ABI makes any other
//! access a host bug), so the wrappers are safe: the slices are valid for
//! the whole call, and the host writes at most `len` bytes into a mutable
//! one. On targets other than wasm the imports are replaced by stubs that
//! panic, so that filter crates still compile (and their plain functions
//! can be unit-tested) natively.
#![allow(unsafe_code)]

use http_wasm_abi::{BodyKind, CountLen, EofLen, Features, HeaderKind, LogLevel};

#[cfg(target_family = "wasm")]
mod raw {
    // Signatures exactly as `http_wasm_abi::HostFunction::ALL` lists them.
    #[link(wasm_import_module = "http_handler")]
    unsafe extern "C" {
        pub(super) fn enable_features(features: i32) -> i32;
        pub(super) fn get_config(buf: i32, buf_limit: i32) -> i32;
        pub(super) fn log(level: i32, message: i32, message_len: i32);
        pub(super) fn log_enabled(level: i32) -> i32;
        pub(super) fn get_header_names(kind: i32, buf: i32, buf_limit: i32) -> i64;
        pub(super) fn get_header_values(kind: i32, name: i32, name_len: i32, buf: i32, buf_limit: i32) -> i64;
        pub(super) fn set_header_value(kind: i32, name: i32, name_len: i32, value: i32, value_len: i32);
        pub(super) fn add_header_value(kind: i32, name: i32, name_len: i32, value: i32, value_len: i32);
        pub(super) fn remove_header(kind: i32, name: i32, name_len: i32);
        pub(super) fn read_body(kind: i32, buf: i32, buf_limit: i32) -> i64;
        pub(super) fn write_body(kind: i32, body: i32, body_len: i32);
        pub(super) fn get_method(buf: i32, buf_limit: i32) -> i32;
        pub(super) fn set_method(method: i32, method_len: i32);
        pub(super) fn get_uri(buf: i32, buf_limit: i32) -> i32;
        pub(super) fn set_uri(uri: i32, uri_len: i32);
        pub(super) fn get_protocol_version(buf: i32, buf_limit: i32) -> i32;
        pub(super) fn get_source_addr(buf: i32, buf_limit: i32) -> i32;
        pub(super) fn get_status_code() -> i32;
        pub(super) fn set_status_code(status_code: i32);
    }
}

/// Native stand-ins with the same signatures: they exist so that filter
/// crates compile on the host target (for `cargo test`), and are never
/// meant to be called there.
#[cfg(not(target_family = "wasm"))]
mod raw {
    macro_rules! stubs {
        ($(fn $name:ident($($arg:ident: $ty:ty),*) $(-> $ret:ty)?;)*) => {$(
            pub(super) unsafe fn $name($(_: $ty),*) $(-> $ret)? {
                panic!("http-wasm host functions exist only on wasm32")
            }
        )*};
    }
    stubs! {
        fn enable_features(features: i32) -> i32;
        fn get_config(buf: i32, buf_limit: i32) -> i32;
        fn log(level: i32, message: i32, message_len: i32);
        fn log_enabled(level: i32) -> i32;
        fn get_header_names(kind: i32, buf: i32, buf_limit: i32) -> i64;
        fn get_header_values(kind: i32, name: i32, name_len: i32, buf: i32, buf_limit: i32) -> i64;
        fn set_header_value(kind: i32, name: i32, name_len: i32, value: i32, value_len: i32);
        fn add_header_value(kind: i32, name: i32, name_len: i32, value: i32, value_len: i32);
        fn remove_header(kind: i32, name: i32, name_len: i32);
        fn read_body(kind: i32, buf: i32, buf_limit: i32) -> i64;
        fn write_body(kind: i32, body: i32, body_len: i32);
        fn get_method(buf: i32, buf_limit: i32) -> i32;
        fn set_method(method: i32, method_len: i32);
        fn get_uri(buf: i32, buf_limit: i32) -> i32;
        fn set_uri(uri: i32, uri_len: i32);
        fn get_protocol_version(buf: i32, buf_limit: i32) -> i32;
        fn get_source_addr(buf: i32, buf_limit: i32) -> i32;
        fn get_status_code() -> i32;
        fn set_status_code(status_code: i32);
    }
}

/// A slice as the ABI's `(ptr, len)`: pointers and lengths are 32-bit on
/// wasm32 (the truncation only happens in native builds, where the stubs
/// never look at the values).
#[inline]
fn arg(bytes: &[u8]) -> (i32, i32) {
    (bytes.as_ptr() as usize as i32, bytes.len() as i32)
}

#[inline]
fn arg_mut(buf: &mut [u8]) -> (i32, i32) {
    (buf.as_mut_ptr() as usize as i32, buf.len() as i32)
}

/// Which length-returning reader to call: the getters whose result is the
/// full length of the value (written only when it fits the limit).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Getter<'a> {
    Config,
    Method,
    Uri,
    ProtocolVersion,
    SourceAddr,
    HeaderNames(HeaderKind),
    HeaderValues(HeaderKind, &'a [u8]),
}

impl Getter<'_> {
    /// Calls the host reader with `buf` as buffer. Returns the full length
    /// and the item count (1 for single values): when the length exceeds
    /// `buf.len()` the host wrote nothing.
    pub(crate) fn call(self, buf: &mut [u8]) -> CountLen {
        let (ptr, limit) = arg_mut(buf);
        let single = |len: i32| CountLen { count: 1, len: len as u32 };
        // SAFETY: `buf` is a live, exclusively borrowed buffer of `limit`
        // bytes at `ptr`; the host writes at most `limit` bytes there and
        // only during the call. `name` is a live shared slice it only reads.
        unsafe {
            match self {
                Getter::Config => single(raw::get_config(ptr, limit)),
                Getter::Method => single(raw::get_method(ptr, limit)),
                Getter::Uri => single(raw::get_uri(ptr, limit)),
                Getter::ProtocolVersion => single(raw::get_protocol_version(ptr, limit)),
                Getter::SourceAddr => single(raw::get_source_addr(ptr, limit)),
                Getter::HeaderNames(kind) => CountLen::decode(raw::get_header_names(kind as i32, ptr, limit)),
                Getter::HeaderValues(kind, name) => {
                    let (name, name_len) = arg(name);
                    CountLen::decode(raw::get_header_values(kind as i32, name, name_len, ptr, limit))
                }
            }
        }
    }
}

pub(crate) fn enable_features(features: Features) -> Features {
    // SAFETY: numbers only.
    let raw = unsafe { raw::enable_features(features.bits() as i32) };
    Features::split(raw as u32).0
}

pub(crate) fn log(level: LogLevel, message: &[u8]) {
    let (ptr, len) = arg(message);
    // SAFETY: `message` is live for the call and the host only reads it.
    unsafe { raw::log(level as i32, ptr, len) }
}

pub(crate) fn log_enabled(level: LogLevel) -> bool {
    // SAFETY: numbers only.
    unsafe { raw::log_enabled(level as i32) == 1 }
}

/// `set_header_value` (`add == false`) or `add_header_value` (`add == true`).
pub(crate) fn put_header(kind: HeaderKind, add: bool, name: &[u8], value: &[u8]) {
    let (n, n_len) = arg(name);
    let (v, v_len) = arg(value);
    // SAFETY: both slices are live for the call and the host only reads them.
    unsafe {
        if add {
            raw::add_header_value(kind as i32, n, n_len, v, v_len)
        } else {
            raw::set_header_value(kind as i32, n, n_len, v, v_len)
        }
    }
}

pub(crate) fn remove_header(kind: HeaderKind, name: &[u8]) {
    let (n, n_len) = arg(name);
    // SAFETY: `name` is live for the call and the host only reads it.
    unsafe { raw::remove_header(kind as i32, n, n_len) }
}

/// Reads the next bytes of a body into `buf`, which must not be empty (a
/// limit of 0 is a guest error). `None` when the host broke the ABI (an eof
/// flag other than 0 or 1, or a length over the limit).
pub(crate) fn read_body(kind: BodyKind, buf: &mut [u8]) -> Option<EofLen> {
    let (ptr, limit) = arg_mut(buf);
    // SAFETY: `buf` is a live, exclusively borrowed buffer of `limit` bytes;
    // the host writes at most `limit` bytes there, during the call only.
    let raw = unsafe { raw::read_body(kind as i32, ptr, limit) };
    EofLen::decode(raw).ok().filter(|r| r.len as usize <= buf.len())
}

pub(crate) fn write_body(kind: BodyKind, bytes: &[u8]) {
    let (ptr, len) = arg(bytes);
    // SAFETY: `bytes` is live for the call and the host only reads it.
    unsafe { raw::write_body(kind as i32, ptr, len) }
}

pub(crate) fn set_method(method: &[u8]) {
    let (ptr, len) = arg(method);
    // SAFETY: `method` is live for the call and the host only reads it.
    unsafe { raw::set_method(ptr, len) }
}

pub(crate) fn set_uri(uri: &[u8]) {
    let (ptr, len) = arg(uri);
    // SAFETY: `uri` is live for the call and the host only reads it.
    unsafe { raw::set_uri(ptr, len) }
}

pub(crate) fn get_status_code() -> i32 {
    // SAFETY: numbers only.
    unsafe { raw::get_status_code() }
}

pub(crate) fn set_status_code(code: i32) {
    // SAFETY: numbers only.
    unsafe { raw::set_status_code(code) }
}
