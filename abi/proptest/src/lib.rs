//! Property tests of [`http_wasm_abi`] live in `tests/`; this crate exists so
//! that `cargo tree -p http-wasm-abi` shows no dependency, dev ones included.
