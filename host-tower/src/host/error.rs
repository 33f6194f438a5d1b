//! Why a host call fails: each of these becomes a trap in the guest.

use http_wasm_abi::InvalidValue;
use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A host function refused a guest's call. The backend turns it into a
/// trap; the service turns the trap into the failure response.
#[derive(Debug)]
pub(crate) enum HostError {
    /// A pointer and length outside the guest's memory.
    OutOfBounds { ptr: u32, len: u32 },
    /// A kind, level or flag outside its enumeration.
    Invalid(InvalidValue),
    /// A header name of zero bytes.
    EmptyHeaderName,
    /// A header name that is not a valid HTTP field name.
    InvalidHeaderName,
    /// A header value with bytes HTTP forbids (CR, LF, NUL, ...).
    InvalidHeaderValue,
    /// Headers written by the guest exceed the configured size.
    HeadersTooLarge { limit: usize },
    /// An empty or invalid method.
    InvalidMethod,
    /// A request-target that is not a valid path and query.
    InvalidUri,
    /// A status code outside 100..=999.
    InvalidStatus(i32),
    /// `read_body` with a limit of zero.
    ZeroLimit,
    /// A request function called outside a request (e.g. during start).
    NoRequest(&'static str),
    /// A call the current phase or the enabled features forbid.
    NotAllowed(&'static str),
    /// A body the host buffers grew past the limit.
    BodyTooLarge { limit: usize },
    /// The guest wrote a body past the limit (a guest failure, not the
    /// client's: never a 413).
    WrittenTooLarge { limit: usize },
    /// The client's request body failed.
    Body(BoxError),
    /// A body read that would have to wait on a runtime thread.
    WouldBlock,
    /// The guest called WASI `proc_exit`.
    Exit(i32),
    /// A value does not fit the 32-bit length the ABI returns.
    TooLong,
    /// A host call made after the guest call's deadline passed (raised by
    /// wasmer's backend; wasmtime stops a guest by epoch instead).
    #[cfg_attr(not(feature = "wasmer"), allow(dead_code))]
    Deadline,
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostError::OutOfBounds { ptr, len } => {
                write!(f, "out of bounds memory access: {len} bytes at {ptr}")
            }
            HostError::Invalid(v) => write!(f, "{v}"),
            HostError::EmptyHeaderName => f.write_str("empty header name"),
            HostError::InvalidHeaderName => f.write_str("invalid header name"),
            HostError::InvalidHeaderValue => f.write_str("invalid header value"),
            HostError::HeadersTooLarge { limit } => write!(f, "headers exceed {limit} bytes"),
            HostError::InvalidMethod => f.write_str("invalid method"),
            HostError::InvalidUri => f.write_str("invalid request-target"),
            HostError::InvalidStatus(c) => write!(f, "invalid status code {c}"),
            HostError::ZeroLimit => f.write_str("read_body with buf_limit 0"),
            HostError::NoRequest(func) => write!(f, "{func} called outside a request"),
            HostError::NotAllowed(why) => f.write_str(why),
            HostError::BodyTooLarge { limit } => write!(f, "body exceeds the {limit}-byte buffer limit"),
            HostError::WrittenTooLarge { limit } => write!(f, "the guest wrote a body over the {limit}-byte limit"),
            HostError::Body(e) => write!(f, "request body failed: {e}"),
            HostError::WouldBlock => f.write_str("a body read would block a runtime thread"),
            HostError::Exit(code) => write!(f, "guest exited with code {code}"),
            HostError::TooLong => f.write_str("value longer than i32::MAX"),
            HostError::Deadline => f.write_str("host call after the deadline"),
        }
    }
}

impl std::error::Error for HostError {}

impl From<InvalidValue> for HostError {
    fn from(v: InvalidValue) -> HostError {
        HostError::Invalid(v)
    }
}
