//! Start functions: reactors, commands, proc_exit, WASI.

use crate::harness::*;

const WASI_IMPORTS: &str = r#"
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $env_sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock (param i32 i64 i32) (result i32)))"#;

fn wasi_module(body: &str) -> Vec<u8> {
    let text = format!(
        r#"(module {WASI_IMPORTS}
  (import "http_handler" "enable_features" (func $enable_features (param i32) (result i32)))
  (memory (export "memory") 1)
  (func $assert (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  (func (export "handle_response") (param i32 i32))
  {body})"#
    );
    wat::parse_str(&text).unwrap()
}

#[test]
fn command_that_exits_zero_loads() {
    for &engine in engines() {
        let wasm = wasi_module(
            r#"(data (i32.const 100) "started\n")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 8))
    (call $assert (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
    (call $assert (i32.eq (i32.load (i32.const 8)) (i32.const 8)))
    (call $assert (i32.eqz (call $random_get (i32.const 200) (i32.const 32))))
    (call $assert (i32.eqz (call $clock (i32.const 1) (i64.const 1) (i32.const 300))))
    (call $assert (i32.eqz (call $env_sizes (i32.const 400) (i32.const 404))))
    (call $assert (i32.eq (i32.load (i32.const 400)) (i32.const 1)))
    (drop (call $enable_features (i32.const 1)))
    (call $proc_exit (i32.const 0)))
  (func (export "handle_request") (result i64) (i64.const 1))"#,
        );
        let plugin = builder(engine).env("MODE", "test").build(&wasm).unwrap_or_else(|e| panic!("[{engine}] {e}"));
        assert_eq!(plugin.module_features(), tower_http_wasm::Features::BUFFER_REQUEST, "[{engine}]");
    }
}

#[test]
fn failing_starts_are_load_errors() {
    for &engine in engines() {
        for body in [
            r#"(func (export "_start") (call $proc_exit (i32.const 3)))"#,
            r#"(func (export "_start") unreachable)"#,
            r#"(func (export "_initialize") unreachable)"#,
        ] {
            let wasm = wasi_module(&format!(r#"{body} (func (export "handle_request") (result i64) (i64.const 1))"#));
            let err = builder(engine).build(&wasm).unwrap_err();
            assert!(err.is_start(), "[{engine}] {body}: {err}");
        }
    }
}

#[tokio::test]
async fn reactor_initialize_runs_once_before_requests() {
    for &engine in engines() {
        let wasm = wasi_module(
            r#"(global $ready (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $ready (i32.const 1)))
  (func (export "handle_request") (result i64) (call $assert (global.get $ready)) (i64.const 1))"#,
        );
        let got = send(&load(engine, &wasm), get("/")).await;
        assert_eq!(got.status, 200, "[{engine}]");
    }
}
