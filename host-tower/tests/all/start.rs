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

tower_http_wasm::per_engine! {
    #[test]
    fn command_that_exits_zero_loads(engine) {
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
        let plugin = builder(engine).env("MODE", "test").build(&wasm).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plugin.module_features(), tower_http_wasm::Features::BUFFER_REQUEST);
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn failing_starts_are_load_errors(engine) {
        for body in [
            r#"(func (export "_start") (call $proc_exit (i32.const 3)))"#,
            r#"(func (export "_start") unreachable)"#,
            r#"(func (export "_initialize") unreachable)"#,
        ] {
            let wasm = wasi_module(&format!(r#"{body} (func (export "handle_request") (result i64) (i64.const 1))"#));
            let err = builder(engine).build(&wasm).unwrap_err();
            assert!(err.is_start(), "{body}: {err}");
        }
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn reactor_initialize_runs_once_before_requests(engine) {
        let wasm = wasi_module(
            r#"(global $ready (mut i32) (i32.const 0))
  (func (export "_initialize") (global.set $ready (i32.const 1)))
  (func (export "handle_request") (result i64) (call $assert (global.get $ready)) (i64.const 1))"#,
        );
        let got = send(&load(engine, &wasm), get("/")).await;
        assert_eq!(got.status, 200);
    }
}

/// The configuration the start guests expect.
const START_CONFIG: &str = "start-config";

/// A guest whose start function, `$on_start`, calls every host function a
/// guest may call while it starts and traps unless each answers as
/// expected; `handle_request` traps unless `$on_start` ran. `hook` runs
/// `$on_start`: a start section, `_start` or `_initialize`.
fn calls_the_host_while_starting(hook: &str) -> Vec<u8> {
    let text = format!(
        r#"(module {WASI_IMPORTS}
  (import "wasi_snapshot_preview1" "environ_get" (func $env_get (param i32 i32) (result i32)))
{imports}  (memory (export "memory") 1)
  (global $started (mut i32) (i32.const 0))
  (func $assert (param i32) (if (i32.eqz (local.get 0)) (then unreachable)))
  ;; 1 when the n bytes at a and b are equal
  (func $eq (param $a i32) (param $b i32) (param $n i32) (result i32)
    (block $differ (loop $next
      (if (i32.eqz (local.get $n)) (then (return (i32.const 1))))
      (br_if $differ (i32.ne (i32.load8_u (local.get $a)) (i32.load8_u (local.get $b))))
      (local.set $a (i32.add (local.get $a) (i32.const 1)))
      (local.set $b (i32.add (local.get $b) (i32.const 1)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br $next)))
    (i32.const 0))
  (data (i32.const 100) "started\n")
  (data (i32.const 120) "{START_CONFIG}")
  (data (i32.const 140) "MODE=test\00")
  (func $on_start
    ;; the configuration, whole
    (call $assert (i32.eq (call $get_config (i32.const 1000) (i32.const 64)) (i32.const {config_len})))
    (call $assert (call $eq (i32.const 1000) (i32.const 120) (i32.const {config_len})))
    ;; features for every request
    (call $assert (i32.eq (call $enable_features (i32.const 1)) (i32.const 1)))
    ;; logging: error is on at the default level, debug is off
    (call $assert (i32.eq (call $log_enabled (i32.const 2)) (i32.const 1)))
    (call $assert (i32.eqz (call $log_enabled (i32.const -1))))
    (call $log (i32.const 2) (i32.const 100) (i32.const 7))
    ;; stdout: one iovec of 8 bytes at 0, the count written at 8
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 8))
    (call $assert (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))
    (call $assert (i32.eq (i32.load (i32.const 8)) (i32.const 8)))
    ;; 32 random bytes, not all zero
    (call $assert (i32.eqz (call $random_get (i32.const 200) (i32.const 32))))
    (call $assert (i64.ne (i64.or (i64.or (i64.load (i32.const 200)) (i64.load (i32.const 208)))
                                  (i64.or (i64.load (i32.const 216)) (i64.load (i32.const 224))))
                          (i64.const 0)))
    ;; clocks: the realtime clock is past 2020, the monotonic one is not zero
    (call $assert (i32.eqz (call $clock (i32.const 0) (i64.const 1) (i32.const 300))))
    (call $assert (i64.gt_u (i64.load (i32.const 300)) (i64.const 1577836800000000000)))
    (call $assert (i32.eqz (call $clock (i32.const 1) (i64.const 1) (i32.const 308))))
    (call $assert (i64.ne (i64.load (i32.const 308)) (i64.const 0)))
    ;; the environment: MODE=test
    (call $assert (i32.eqz (call $env_sizes (i32.const 400) (i32.const 404))))
    (call $assert (i32.eq (i32.load (i32.const 400)) (i32.const 1)))
    (call $assert (i32.eq (i32.load (i32.const 404)) (i32.const 10)))
    (call $assert (i32.eqz (call $env_get (i32.const 500) (i32.const 600))))
    (call $assert (i32.eq (i32.load (i32.const 500)) (i32.const 600)))
    (call $assert (call $eq (i32.const 600) (i32.const 140) (i32.const 10)))
    (global.set $started (i32.const 1)))
  {hook}
  (func (export "handle_request") (result i64) (call $assert (global.get $started)) (i64.const 1))
  (func (export "handle_response") (param i32 i32)))"#,
        imports = tower_http_wasm::testing::wat_imports(),
        config_len = START_CONFIG.len(),
    );
    wat::parse_str(&text).unwrap_or_else(|e| panic!("bad test WAT: {e}\n{text}"))
}

/// Loads a guest made by [`calls_the_host_while_starting`] and checks
/// that its start ran: the feature it enabled, a request it lets through.
async fn assert_starts_calling_the_host(engine: tower_http_wasm::Engine, hook: &str) {
    let wasm = calls_the_host_while_starting(hook);
    let plugin =
        builder(engine).config(START_CONFIG).env("MODE", "test").build(&wasm).unwrap_or_else(|e| panic!("{hook}: {e}"));
    assert_eq!(plugin.module_features(), tower_http_wasm::Features::BUFFER_REQUEST, "{hook}");
    let got = send(&plugin, get("/")).await;
    assert_eq!(got.status, 200, "{hook}: handle_request found the start did not run");
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn start_section_calls_the_host(engine) {
        assert_starts_calling_the_host(engine, "(start $on_start)").await;
    }

    #[tokio::test]
    async fn command_start_calls_the_host(engine) {
        assert_starts_calling_the_host(engine, r#"(func (export "_start") (call $on_start))"#).await;
    }

    #[tokio::test]
    async fn reactor_initialize_calls_the_host(engine) {
        assert_starts_calling_the_host(engine, r#"(func (export "_initialize") (call $on_start))"#).await;
    }

    #[tokio::test]
    async fn start_section_runs_before_start_export(engine) {
        // The start section sets 1; `_start` checks it and sets 2.
        let wasm = wasi_module(
            r#"(global $step (mut i32) (i32.const 0))
  (func $first (global.set $step (i32.const 1)))
  (start $first)
  (func (export "_start") (call $assert (i32.eq (global.get $step) (i32.const 1))) (global.set $step (i32.const 2)))
  (func (export "handle_request") (result i64) (call $assert (i32.eq (global.get $step) (i32.const 2))) (i64.const 1))"#,
        );
        let got = send(&load(engine, &wasm), get("/")).await;
        assert_eq!(got.status, 200);
    }

    #[test]
    fn trapping_start_section_is_a_start_error(engine) {
        let wasm = wasi_module(
            r#"(func $boom unreachable)
  (start $boom)
  (func (export "handle_request") (result i64) (i64.const 1))"#,
        );
        let err = builder(engine).build(&wasm).unwrap_err();
        assert!(err.is_start(), "{err}");
    }

    #[tokio::test]
    async fn command_reads_a_config_longer_than_its_first_buffer(engine) {
        // As TinyGo guests do: probe with a small buffer, then read with
        // the length the host returned. The guest answers with what it read.
        let config: String = (0..75).map(|i| format!("k{}=v;", i % 10)).collect();
        let wasm = module(&format!(
            r#"(global $len (mut i32) (i32.const 0))
  (func (export "_start") (local i32)
    ;; too small: nothing is written, the whole length comes back
    (local.set 0 (call $get_config (i32.const 4096) (i32.const 4)))
    (call $assert (i32.eq (local.get 0) (i32.const {len})))
    (call $assert (i32.eqz (i32.load (i32.const 4096))))
    ;; again with room for all of it
    (call $assert (i32.eq (call $get_config (i32.const 4096) (local.get 0)) (i32.const {len})))
    (global.set $len (local.get 0)))
  (func (export "handle_request") (result i64)
    (call $out (i32.const 4096) (global.get $len))
    (i64.const 1))
  {NOOP_RESPONSE}"#,
            len = config.len(),
        ));
        let plugin = builder(engine).config(config.clone()).build(&wasm).unwrap_or_else(|e| panic!("{e}"));
        let got = send(&plugin, get("/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.header("x-out"), config);
    }
}
