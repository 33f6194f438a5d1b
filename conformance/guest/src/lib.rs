//! The http-wasm conformance guest.
//!
//! Built for `wasm32-unknown-unknown` (a reactor: the host calls
//! `_initialize` once), it runs one named case per request: the case id
//! travels in the request header `x-conformance-case`, the case table is
//! the one of the `http-wasm-conformance` library (`conformance/src/cases.rs`,
//! compiled into this crate), and the guest answers with its verdict in the
//! response header `x-conformance-result` (`pass`, `fail` or `unsupported`)
//! and the detail in `x-conformance-detail` (and in the body when it answers
//! without calling next). It calls the host's imports directly, through
//! [`http_wasm_abi`] for constants and encodings only, never through the
//! SDK, so that an SDK bug cannot hide a host bug. It never traps for a
//! plain failure: only the `trap_*` cases trap, on purpose.
//!
//! The host must load it with `GUEST_CONFIG` of the library as its
//! configuration (case `config_bytes` checks it).
//!
//! On other targets only the case table is compiled (so that a native
//! `cargo build --workspace` still works).

#[path = "../../src/cases.rs"]
#[allow(dead_code)]
mod cases;

#[cfg(target_family = "wasm")]
mod bodies;
#[cfg(target_family = "wasm")]
mod exports;
#[cfg(target_family = "wasm")]
mod ffi;
#[cfg(target_family = "wasm")]
mod meta;
#[cfg(target_family = "wasm")]
mod read;
#[cfg(target_family = "wasm")]
mod request_side;
#[cfg(target_family = "wasm")]
mod response_side;
#[cfg(target_family = "wasm")]
mod traps;
#[cfg(target_family = "wasm")]
mod verdict;

/// The ids of the cases this guest knows (all of the table).
pub fn case_ids() -> impl Iterator<Item = &'static str> {
    cases::CASES.iter().map(|c| c.id)
}
