//! The http-wasm handler ABI, as a dependency-free `no_std` crate.
//!
//! This crate is the normative specification of the ABI that the hosts and
//! guests of this project implement. Its prose lives in [`spec`]; the items
//! below are that specification as data and code:
//!
//! * names: [`MODULE`], [`MEMORY`], [`HANDLE_REQUEST`], [`HANDLE_RESPONSE`];
//! * every host function with its flat wasm signature: [`HostFunction`];
//!   the guest exports: [`GuestExport`];
//! * constants: [`Features`], [`LogLevel`], [`HeaderKind`], [`BodyKind`],
//!   each with a fallible conversion from the raw `i32` that names the bad value;
//! * the packed `i64` results: [`CtxNext`], [`CountLen`], [`EofLen`];
//! * the NUL-terminated list format: [`encode_list`] and [`NulList`].
//!
//! ```
//! use http_wasm_abi::{CountLen, HostFunction, encode_list};
//!
//! let f = HostFunction::from_name("get_header_names").unwrap();
//! assert_eq!(f.signature().to_string(), "(i32, i32, i32) -> i64");
//!
//! let mut buf = [0u8; 16];
//! let packed = encode_list([&b"date"[..], b"etag"], &mut buf);
//! assert_eq!(packed, CountLen { count: 2, len: 10 });
//! assert_eq!(&buf[..10], b"date\0etag\0");
//! ```
#![no_std]
#![deny(missing_docs)]

#[cfg(test)]
extern crate std;

pub mod spec;

mod constants;
mod encoding;
mod list;
mod signature;

pub use constants::{BodyKind, Feature, Features, FeaturesIter, HeaderKind, InvalidValue, LogLevel};
pub use encoding::{CountLen, CtxNext, EofLen};
pub use list::{ListError, NulList, NulListIter, encode_list, list_len, write_list};
pub use signature::{GuestExport, HostFunction, Signature, ValType};

/// The import module name of every host function: `http_handler`.
pub const MODULE: &str = "http_handler";

/// The name of the linear memory the guest must export: `memory`.
pub const MEMORY: &str = "memory";

/// The guest export called for each request: `handle_request() -> i64`.
pub const HANDLE_REQUEST: &str = "handle_request";

/// The guest export called after the next handler: `handle_response(i32, i32)`.
pub const HANDLE_RESPONSE: &str = "handle_response";
