//! The `http-wasm` binary, run as a real process.

mod conformance;
mod dapr;
mod inspect;
mod process;
