//! The raw host functions of module `http_handler`, and thin wrappers.
//!
//! This is the only module with `unsafe` code. The guest deliberately does
//! not use the SDK: an SDK bug must not hide a host bug. Wrappers pass Rust
//! slices as `(ptr, len)`; the host only reads or writes inside the ranges
//! it is given (anything else is the host bug this guest exists to find).
//! A few wrappers pass values the host must reject (bad kinds, a zero
//! limit, a range outside memory): they exist for the trap cases.
#![allow(unsafe_code)]

use http_wasm_abi::{BodyKind, CountLen, EofLen, HeaderKind};

// Signatures exactly as `http_wasm_abi::HostFunction::ALL` lists them.
#[link(wasm_import_module = "http_handler")]
unsafe extern "C" {
    #[link_name = "enable_features"]
    fn raw_enable_features(features: i32) -> i32;
    #[link_name = "get_config"]
    fn raw_get_config(buf: i32, buf_limit: i32) -> i32;
    #[link_name = "log"]
    fn raw_log(level: i32, message: i32, message_len: i32);
    #[link_name = "log_enabled"]
    fn raw_log_enabled(level: i32) -> i32;
    #[link_name = "get_header_names"]
    fn raw_get_header_names(kind: i32, buf: i32, buf_limit: i32) -> i64;
    #[link_name = "get_header_values"]
    fn raw_get_header_values(kind: i32, name: i32, name_len: i32, buf: i32, buf_limit: i32) -> i64;
    #[link_name = "set_header_value"]
    fn raw_set_header_value(kind: i32, name: i32, name_len: i32, value: i32, value_len: i32);
    #[link_name = "add_header_value"]
    fn raw_add_header_value(kind: i32, name: i32, name_len: i32, value: i32, value_len: i32);
    #[link_name = "remove_header"]
    fn raw_remove_header(kind: i32, name: i32, name_len: i32);
    #[link_name = "read_body"]
    fn raw_read_body(kind: i32, buf: i32, buf_limit: i32) -> i64;
    #[link_name = "write_body"]
    fn raw_write_body(kind: i32, body: i32, body_len: i32);
    #[link_name = "get_method"]
    fn raw_get_method(buf: i32, buf_limit: i32) -> i32;
    #[link_name = "set_method"]
    fn raw_set_method(method: i32, method_len: i32);
    #[link_name = "get_uri"]
    fn raw_get_uri(buf: i32, buf_limit: i32) -> i32;
    #[link_name = "set_uri"]
    fn raw_set_uri(uri: i32, uri_len: i32);
    #[link_name = "get_protocol_version"]
    fn raw_get_protocol_version(buf: i32, buf_limit: i32) -> i32;
    #[link_name = "get_source_addr"]
    fn raw_get_source_addr(buf: i32, buf_limit: i32) -> i32;
    #[link_name = "get_status_code"]
    fn raw_get_status_code() -> i32;
    #[link_name = "set_status_code"]
    fn raw_set_status_code(status_code: i32);
}

fn arg(bytes: &[u8]) -> (i32, i32) {
    (bytes.as_ptr() as usize as i32, bytes.len() as i32)
}

/// A single-value reader: its result is the full length of the value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reader {
    /// `get_config`
    Config,
    /// `get_method`
    Method,
    /// `get_uri`
    Uri,
    /// `get_protocol_version`
    ProtocolVersion,
    /// `get_source_addr`
    SourceAddr,
}

impl Reader {
    /// The host function's name.
    pub fn name(self) -> &'static str {
        match self {
            Reader::Config => "get_config",
            Reader::Method => "get_method",
            Reader::Uri => "get_uri",
            Reader::ProtocolVersion => "get_protocol_version",
            Reader::SourceAddr => "get_source_addr",
        }
    }

    /// Calls the reader with the first `limit` bytes of `buf` as buffer
    /// (`limit <= buf.len()`), returning the raw length result.
    pub fn call(self, buf: &mut [u8], limit: usize) -> i32 {
        assert!(limit <= buf.len());
        let (ptr, limit) = (buf.as_mut_ptr() as usize as i32, limit as i32);
        // SAFETY: `buf` is live and exclusively borrowed for the call, and
        // at least `limit` bytes long; the host writes at most `limit`
        // bytes at `ptr`, during the call only.
        unsafe {
            match self {
                Reader::Config => raw_get_config(ptr, limit),
                Reader::Method => raw_get_method(ptr, limit),
                Reader::Uri => raw_get_uri(ptr, limit),
                Reader::ProtocolVersion => raw_get_protocol_version(ptr, limit),
                Reader::SourceAddr => raw_get_source_addr(ptr, limit),
            }
        }
    }
}

/// `get_header_names(kind, buf, limit)` with the first `limit` bytes of `buf`.
pub fn get_header_names(kind: i32, buf: &mut [u8], limit: usize) -> CountLen {
    assert!(limit <= buf.len());
    // SAFETY: as in `Reader::call`: at most `limit` bytes of the live,
    // exclusively borrowed `buf` are written, during the call.
    CountLen::decode(unsafe { raw_get_header_names(kind, buf.as_mut_ptr() as usize as i32, limit as i32) })
}

/// `get_header_values(kind, name, buf, limit)` with the first `limit` bytes of `buf`.
pub fn get_header_values(kind: HeaderKind, name: &[u8], buf: &mut [u8], limit: usize) -> CountLen {
    assert!(limit <= buf.len());
    let (n, n_len) = arg(name);
    // SAFETY: `name` is only read; at most `limit` bytes of the live,
    // exclusively borrowed `buf` are written, during the call.
    CountLen::decode(unsafe {
        raw_get_header_values(kind as i32, n, n_len, buf.as_mut_ptr() as usize as i32, limit as i32)
    })
}

/// `set_header_value` with a raw kind.
pub fn set_header_value(kind: i32, name: &[u8], value: &[u8]) {
    let (n, n_len) = arg(name);
    let (v, v_len) = arg(value);
    // SAFETY: both slices are live for the call and only read.
    unsafe { raw_set_header_value(kind, n, n_len, v, v_len) }
}

/// `add_header_value`.
pub fn add_header_value(kind: HeaderKind, name: &[u8], value: &[u8]) {
    let (n, n_len) = arg(name);
    let (v, v_len) = arg(value);
    // SAFETY: both slices are live for the call and only read.
    unsafe { raw_add_header_value(kind as i32, n, n_len, v, v_len) }
}

/// `remove_header`.
pub fn remove_header(kind: HeaderKind, name: &[u8]) {
    let (n, n_len) = arg(name);
    // SAFETY: `name` is live for the call and only read.
    unsafe { raw_remove_header(kind as i32, n, n_len) }
}

/// `read_body(kind, buf, limit)` with a raw kind and the first `limit`
/// bytes of `buf` (`limit` may be 0: a trap case). Returns the raw result.
pub fn read_body(kind: i32, buf: &mut [u8], limit: usize) -> i64 {
    assert!(limit <= buf.len());
    // SAFETY: at most `limit` bytes of the live, exclusively borrowed `buf`
    // are written, during the call.
    unsafe { raw_read_body(kind, buf.as_mut_ptr() as usize as i32, limit as i32) }
}

/// `read_body` decoded, for well-formed calls.
pub fn read_body_decoded(kind: BodyKind, buf: &mut [u8]) -> Result<EofLen, i64> {
    let raw = read_body(kind as i32, buf, buf.len());
    EofLen::decode(raw).map_err(|_| raw)
}

/// `write_body`.
pub fn write_body(kind: BodyKind, bytes: &[u8]) {
    let (p, len) = arg(bytes);
    // SAFETY: `bytes` is live for the call and only read.
    unsafe { raw_write_body(kind as i32, p, len) }
}

/// `set_method`.
pub fn set_method(method: &[u8]) {
    let (p, len) = arg(method);
    // SAFETY: `method` is live for the call and only read.
    unsafe { raw_set_method(p, len) }
}

/// `set_uri`.
pub fn set_uri(uri: &[u8]) {
    let (p, len) = arg(uri);
    // SAFETY: `uri` is live for the call and only read.
    unsafe { raw_set_uri(p, len) }
}

/// `enable_features` with raw bits.
pub fn enable_features(bits: i32) -> i32 {
    // SAFETY: numbers only.
    unsafe { raw_enable_features(bits) }
}

/// `log` with a raw level.
pub fn log(level: i32, message: &[u8]) {
    let (p, len) = arg(message);
    // SAFETY: `message` is live for the call and only read.
    unsafe { raw_log(level, p, len) }
}

/// `log` with a range that lies past the end of linear memory: the host
/// must ignore it (log never traps).
pub fn log_out_of_bounds() {
    let end = core::arch::wasm32::memory_size(0) * 65536;
    // SAFETY: the range starts past the end of linear memory, so it aliases
    // no Rust object; the host only reads (and must refuse to).
    unsafe { raw_log(0, (end as u32).wrapping_add(16) as i32, 64) }
}

/// `get_method` into a range starting at the end of linear memory: the host must
/// fail the call (a trap case).
pub fn get_method_out_of_bounds() -> i32 {
    let end = core::arch::wasm32::memory_size(0) * 65536;
    // SAFETY: the range starts at the end of linear memory, so no Rust
    // object lives there; a conforming host writes nothing and traps.
    unsafe { raw_get_method(end as u32 as i32, 64) }
}

/// `log_enabled` with a raw level.
pub fn log_enabled(level: i32) -> i32 {
    // SAFETY: numbers only.
    unsafe { raw_log_enabled(level) }
}

/// `get_status_code`.
pub fn get_status_code() -> i32 {
    // SAFETY: numbers only.
    unsafe { raw_get_status_code() }
}

/// `set_status_code`.
pub fn set_status_code(code: i32) {
    // SAFETY: numbers only.
    unsafe { raw_set_status_code(code) }
}
