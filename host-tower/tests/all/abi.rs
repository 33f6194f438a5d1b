//! Loading checks imports and exports against the ABI.

use crate::harness::*;

fn load_err(engine: tower_http_wasm::Engine, wasm: &[u8]) -> tower_http_wasm::Error {
    builder(engine).build(wasm).expect_err("must not load")
}

tower_http_wasm::per_engine! {
    #[test]
    fn wrong_handle_request_signature_names_function_expected_and_found(engine) {
        let wasm = wat::parse_str(
            r#"(module (memory (export "memory") 1)
  (func (export "handle_request") (param i32) (result i32) (i32.const 0))
  (func (export "handle_response") (param i32 i32)))"#,
        )
        .unwrap();
        let err = load_err(engine, &wasm);
        assert!(err.is_abi(), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("export handle_request: expected () -> i64, found (i32) -> i32"), "{msg}");
    }

    #[test]
    fn wrong_import_signature_and_unknown_imports_are_listed(engine) {
        let wasm = wat::parse_str(
            r#"(module
  (import "http_handler" "get_method" (func (param i32) (result i32)))
  (import "http_handler" "get_path" (func (param i32 i32) (result i32)))
  (import "env" "abort" (func))
  (import "wasi_snapshot_preview1" "path_open" (func (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (func (export "handle_request") (result i64) (i64.const 0))
  (func (export "handle_response") (param i32 i32)))"#,
        )
        .unwrap();
        let msg = load_err(engine, &wasm).to_string();
        for needle in [
            "import http_handler.get_method: expected (i32, i32) -> i32, found (i32) -> i32",
            "import http_handler.get_path: not an http-wasm host function",
            "import env.abort (() -> ()): no such module is provided",
            "import wasi_snapshot_preview1.path_open: this WASI function is not provided",
            "export memory: missing",
        ] {
            assert!(msg.contains(needle), "missing {needle:?} in {msg}");
        }
    }

    #[test]
    fn not_wasm_is_a_compile_error(engine) {
        let err = load_err(engine, b"\0asm garbage");
        assert!(err.is_compile(), "{err}");
        let err = load_err(engine, b"hello");
        assert!(err.is_compile(), "{err}");
    }
    #[test]
    fn pool_size_zero_is_a_config_error(engine) {
        let wasm = module(&format!(r#"(func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#));
        assert!(builder(engine).pool_size(0).build(&wasm).unwrap_err().is_config());
    }
}
