//! Replacing a plugin's module at run time, and the compiled-module cache.

use crate::harness::*;
use std::sync::Arc;
use tower::ServiceExt;
use tower_http_wasm::HttpWasmLayer;

/// Sets `x-version: <version>` on the response in `handle_response` (with
/// `buffer_response`, which makes response headers writable there), so the
/// header shows which module finished the request.
fn versioned(version: char) -> Vec<u8> {
    module(&format!(
        r#"(data (i32.const 0) "x-version")
  (data (i32.const 16) "{version}")
  (func (export "_start") (drop (call $enable_features (i32.const 2))))
  (func (export "handle_request") (result i64) (i64.const 1))
  (func (export "handle_response") (param i32 i32)
    (call $set_header_value (i32.const 1) (i32.const 0) (i32.const 9) (i32.const 16) (i32.const 1)))"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_traffic_fails_no_request() {
    for &engine in engines() {
        let plugin = builder(engine).pool_size(4).build(versioned('a')).unwrap();
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service_fn(echo);
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut clients = Vec::new();
        for _ in 0..8 {
            let (svc, stop) = (svc.clone(), stop.clone());
            clients.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let res = svc.clone().oneshot(get("/")).await.unwrap();
                    seen.push((res.status().as_u16(), res.headers()["x-version"].to_str().unwrap().to_string()));
                }
                seen
            }));
        }
        let reloader = plugin.clone();
        tokio::task::spawn_blocking(move || {
            for round in 0..6 {
                let version = if round % 2 == 0 { 'b' } else { 'a' };
                reloader.reload(versioned(version)).unwrap();
                // A module that fails to load is rejected; the current one keeps serving.
                assert!(reloader.reload(b"not wasm").unwrap_err().is_compile());
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut total = 0;
        for client in clients {
            for (status, version) in client.await.unwrap() {
                total += 1;
                assert_eq!(status, 200, "[{engine}]");
                assert!(version == "a" || version == "b", "[{engine}] {version}");
            }
        }
        assert!(total > 0, "[{engine}]");
        // The last reload loaded 'a': every new request sees it.
        let got = send(&plugin, get("/")).await;
        assert_eq!(got.header("x-version"), "a", "[{engine}]");
        let m = plugin.metrics();
        assert_eq!((m.reloads, m.reload_failures), (6, 6), "[{engine}] {m:?}");
        assert_eq!(m.request_failures + m.response_failures, 0, "[{engine}] {m:?}");
    }
}

#[tokio::test]
async fn a_request_in_flight_finishes_on_the_old_module() {
    for &engine in engines() {
        let plugin = builder(engine).build(versioned('a')).unwrap();
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        let g = gate.clone();
        let inner = tower::service_fn(move |req| {
            let g = g.clone();
            async move {
                let _p = g.acquire().await.unwrap();
                echo(req).await
            }
        });
        let svc = tower::ServiceBuilder::new().layer(HttpWasmLayer::new(plugin.clone())).service(inner);
        let held = tokio::spawn(svc.clone().oneshot(get("/held")));
        while plugin.metrics().next_calls == 0 {
            tokio::task::yield_now().await;
        }
        plugin.reload(versioned('b')).unwrap();
        gate.add_permits(10);
        let fresh = svc.oneshot(get("/fresh")).await.unwrap();
        assert_eq!(fresh.headers()["x-version"], "b", "[{engine}]");
        let held = held.await.unwrap().unwrap();
        assert_eq!(held.headers()["x-version"], "a", "[{engine}] the old module finished the request it began");
        // The old module's instances are gone once its last request ended.
        assert_eq!(plugin.metrics().instances, 1, "[{engine}] {:?}", plugin.metrics());
    }
}

#[tokio::test]
async fn a_reload_whose_start_fails_keeps_the_old_module() {
    for &engine in engines() {
        let plugin = load(engine, &versioned('a'));
        let trapping_start = module(&format!(
            r#"(func (export "_start") unreachable)
  (func (export "handle_request") (result i64) (i64.const 1)) {NOOP_RESPONSE}"#
        ));
        assert!(plugin.reload(&trapping_start).unwrap_err().is_start(), "[{engine}]");
        let wrong_abi = wat::parse_str(r#"(module (memory (export "memory") 1))"#).unwrap();
        assert!(plugin.reload(&wrong_abi).unwrap_err().is_abi(), "[{engine}]");
        let got = send(&plugin, get("/")).await;
        assert_eq!((got.status, got.header("x-version")), (200, "a"), "[{engine}]");
        assert_eq!(plugin.metrics().reload_failures, 2, "[{engine}]");
    }
}

#[cfg(feature = "module-cache")]
mod cache {
    use super::*;

    fn cache_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("http-wasm-cache-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    #[tokio::test]
    async fn a_cached_module_serves_like_a_compiled_one() {
        for &engine in engines() {
            let dir = cache_dir(&format!("serve-{engine}"));
            let wasm = versioned('c');
            let cold = builder(engine).cache_dir(&dir).build(&wasm).unwrap();
            let written = files(&dir);
            assert_eq!(written.len(), 1, "[{engine}] one entry: {written:?}");
            let stamp = std::fs::metadata(&written[0]).unwrap().modified().unwrap();
            let warm = builder(engine).cache_dir(&dir).build(&wasm).unwrap();
            assert_eq!(
                std::fs::metadata(&written[0]).unwrap().modified().unwrap(),
                stamp,
                "[{engine}] read, not rewritten"
            );
            for plugin in [cold, warm] {
                let got = send(&plugin, get("/")).await;
                assert_eq!((got.status, got.header("x-version")), (200, "c"), "[{engine}]");
            }
            // Another module is another entry.
            builder(engine).cache_dir(&dir).build(versioned('d')).unwrap();
            assert_eq!(files(&dir).len(), 2, "[{engine}]");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[tokio::test]
    async fn a_truncated_or_altered_cache_file_is_recompiled_not_loaded() {
        for &engine in engines() {
            let dir = cache_dir(&format!("damage-{engine}"));
            let wasm = versioned('e');
            builder(engine).cache_dir(&dir).build(&wasm).unwrap();
            let file = files(&dir).remove(0);
            let good = std::fs::read(&file).unwrap();
            let damages: [(&str, Vec<u8>); 4] = [
                ("truncated", good[..good.len() / 2].to_vec()),
                ("empty", Vec::new()),
                ("one bit flipped in the code", {
                    let mut b = good.clone();
                    let at = b.len() - 100;
                    b[at] ^= 1;
                    b
                }),
                ("magic changed", {
                    let mut b = good.clone();
                    b[0] = b'X';
                    b
                }),
            ];
            for (what, bytes) in damages {
                std::fs::write(&file, &bytes).unwrap();
                let plugin = builder(engine).cache_dir(&dir).build(&wasm).unwrap();
                let got = send(&plugin, get("/")).await;
                assert_eq!((got.status, got.header("x-version")), (200, "e"), "[{engine}] {what}");
                assert_eq!(std::fs::read(&file).unwrap(), good, "[{engine}] {what}: the entry was rewritten whole");
            }
            // An intact entry of another module under this module's name is refused too.
            builder(engine).cache_dir(&dir).build(versioned('f')).unwrap();
            let other = files(&dir).into_iter().find(|p| *p != file).unwrap();
            std::fs::copy(&other, &file).unwrap();
            let got = send(&builder(engine).cache_dir(&dir).build(&wasm).unwrap(), get("/")).await;
            assert_eq!(got.header("x-version"), "e", "[{engine}] renamed entry");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_directory_others_may_write_to_is_not_used() {
        use std::os::unix::fs::PermissionsExt;
        let dir = cache_dir("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let plugin = builder(engines()[0]).cache_dir(&dir).build(versioned('g')).unwrap();
        assert_eq!(send(&plugin, get("/")).await.header("x-version"), "g");
        assert!(files(&dir).is_empty(), "nothing written to a world-writable directory");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(not(feature = "module-cache"))]
#[test]
fn cache_dir_without_the_feature_is_a_config_error() {
    let err = builder(engines()[0]).cache_dir("/tmp").build(versioned('h')).unwrap_err();
    assert!(err.is_config(), "{err}");
}
