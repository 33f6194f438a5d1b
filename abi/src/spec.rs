//! The normative specification of the http-wasm handler ABI, as this project
//! implements it.
#![doc = include_str!("spec.md")]
