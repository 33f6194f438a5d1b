//! Every `PluginBuilder` knob as a `serve` flag (for every filter) and as
//! Dapr component metadata (for one filter, over the flag), through the
//! real `serve`.

use crate::guests;
use crate::net::{client, full, held_upstream, send, until, upstream, url};
use crate::process::{Server, run, tempdir};
use http::Response;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// A Dapr component named `name` for `file://FILE` with extra metadata.
fn component(name: &str, file: &str, metadata: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: file://{file}\n"
    );
    for (n, v) in metadata {
        yaml.push_str(&format!("  - name: {n}\n    value: \"{v}\"\n"));
    }
    yaml
}

/// Two concurrent requests through a filter that calls next, while the
/// upstream holds the first: `(second's status when it answered before
/// the upstream was released or None, how many reached the upstream)`;
/// then releases everything and checks the held ones got 200.
async fn second_while_first_is_held(gw: &Server, arrived: &AtomicUsize, gate: &Semaphore) -> (Option<u16>, usize) {
    let c = client(false);
    let addr = gw.addr;
    let first = tokio::spawn({
        let c = c.clone();
        async move { send(&c, http::Request::get(url(addr, "/1")).body(full("")).unwrap()).await }
    });
    until("the first request reaches the upstream", || async { arrived.load(Ordering::SeqCst) == 1 }).await;
    let second = tokio::spawn({
        let c = c.clone();
        async move { send(&c, http::Request::get(url(addr, "/2")).body(full("")).unwrap()).await }
    });
    // Either the second is refused (pool exhausted) or it reaches the upstream too.
    until("the second request is answered or reaches the upstream", || {
        let done = second.is_finished() || arrived.load(Ordering::SeqCst) == 2;
        async move { done }
    })
    .await;
    let reached = arrived.load(Ordering::SeqCst);
    let refused = second.is_finished();
    // Exactly one permit per request held at the upstream.
    gate.add_permits(reached);
    assert_eq!(first.await.unwrap().status, 200);
    let second = second.await.unwrap().status;
    if refused {
        (Some(second), reached)
    } else {
        assert_eq!(second, 200);
        (None, reached)
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pool_size_and_pool_wait_flags_and_their_dapr_override(engine) {
        let (up, arrived, gate) = held_upstream("released").await;
        let dir = tempdir(&format!("knobs-pool-{}", engine.name()));
        std::fs::write(dir.join("next.wasm"), guests::next_and_log(false)).unwrap();
        // One worker: a pool is each worker's, and the two requests come
        // on two connections, which two workers could take one each.
        let flags = ["--engine", engine.name(), "--workers", "1", "--pool-size", "1", "--pool-wait", "200ms"];

        let mut args = flags.to_vec();
        args.extend(["--filter", "next.wasm"]);
        let gw = Server::gateway(&dir, up, &args);
        let (refused, reached) = second_while_first_is_held(&gw, &arrived, &gate).await;
        assert_eq!((refused, reached), (Some(503), 1), "[{engine}] one instance, the second request waits 200ms");
        drop(gw);

        // The component's poolSize wins over the flag: both get an instance.
        arrived.store(0, Ordering::SeqCst);
        std::fs::write(dir.join("next.yaml"), component("next", "next.wasm", &[("poolSize", "2")])).unwrap();
        let mut args = flags.to_vec();
        args.extend(["--dapr", "next.yaml"]);
        let gw = Server::gateway(&dir, up, &args);
        let (refused, reached) = second_while_first_is_held(&gw, &arrived, &gate).await;
        assert_eq!((refused, reached), (None, 2), "[{engine}] poolSize 2 from the component");
    }
}

/// A guest whose `handle_request` never returns.
fn looping() -> Vec<u8> {
    guests::module(
        r#"(func (export "handle_request") (result i64) (loop $spin (br $spin)) (i64.const 1))
  (func (export "handle_response") (param i32 i32))"#,
    )
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_deadline_flag_stops_a_looping_guest(engine) {
        let up = upstream(|_req| async { Response::new(full("up")) }).await;
        let dir = tempdir(&format!("knobs-deadline-{}", engine.name()));
        std::fs::write(dir.join("loop.wasm"), looping()).unwrap();
        let base = ["--engine", engine.name(), "--filter", "loop.wasm", "--deadline"];
        // The same guest under an hour's deadline, asked first, must still be
        // running when the one under 100ms has answered.
        let mut slow = base.to_vec();
        slow.push("1h");
        let slow = Server::gateway(&dir, up, &slow);
        let mut quick = base.to_vec();
        quick.push("100ms");
        let quick = Server::gateway(&dir, up, &quick);
        let c = client(false);
        let pending = tokio::spawn({
            let c = c.clone();
            let addr = slow.addr;
            async move { send(&c, http::Request::get(url(addr, "/")).body(full("")).unwrap()).await }
        });
        let got = send(&c, http::Request::get(url(quick.addr, "/")).body(full("")).unwrap()).await;
        assert_eq!(got.status, 500, "[{engine}]");
        assert!(!pending.is_finished(), "[{engine}] the guest under --deadline 1h was stopped");
        pending.abort();
        drop(slow);
    }
}

tower_http_wasm::per_engine! {
    #[test]
    fn a_dapr_memory_limit_too_small_for_the_module_fails_the_start(engine) {
        // The test guests ask for 48 pages (3 MiB) of memory at start.
        let dir = tempdir(&format!("knobs-memory-{}", engine.name()));
        std::fs::write(dir.join("next.wasm"), guests::next_and_log(false)).unwrap();
        let start = |limit: &str| {
            std::fs::write(dir.join("small.yaml"), component("small", "next.wasm", &[("memoryLimit", limit)])).unwrap();
            let args = ["serve", "--listen", "127.0.0.1:0", "--engine", engine.name(), "--dapr", "small.yaml"];
            (dir.clone(), args)
        };
        let (d, args) = start("1MiB");
        let out = run(&d, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "[{engine}] {stderr}");
        assert!(stderr.contains("filter small (") && stderr.contains("memory"), "[{engine}] {stderr}");
        // The same component with room for the module starts.
        let (d, args) = start("4MiB");
        let server = Server::start(&d, &args);
        drop(server);
        // A value that does not parse names the file and field.
        let (d, args) = start("4M");
        let out = run(&d, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("small.yaml: Component \"small\": spec.metadata memoryLimit: \"4M\": unknown unit"),
            "[{engine}] {stderr}"
        );
    }
}

#[test]
fn unknown_dapr_metadata_is_an_error_naming_the_file_and_field() {
    let dir = tempdir("knobs-unknown");
    std::fs::write(dir.join("next.wasm"), guests::next_and_log(false)).unwrap();
    std::fs::write(dir.join("c.yaml"), component("c", "next.wasm", &[("poolsize", "2")])).unwrap();
    let out = run(&dir, &["serve", "--listen", "127.0.0.1:0", "--dapr", "c.yaml"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("c.yaml: Component \"c\": spec.metadata \"poolsize\": unknown field"), "{stderr}");
}

#[test]
fn every_knob_is_a_flag_with_its_default_and_bad_values_are_named() {
    let out = run(&tempdir("knobs-help"), &["serve", "--help"]);
    let help = String::from_utf8(out.stdout).unwrap();
    for (flag, default) in [
        ("--pool-size <N>", "[default: 16]"),
        ("--pool-wait <DURATION>", "[default: 10s]"),
        ("--deadline <DURATION>", "[default: 1s]"),
        ("--memory-limit <SIZE>", "[default: 128MiB]"),
        ("--table-limit <N>", "[default: 10000]"),
        ("--body-limit <SIZE>", "[default: 4MiB]"),
        ("--header-limit <SIZE>", "[default: 64KiB]"),
        ("--body-timeout <DURATION>", "[default: 30s]"),
        ("--guest-log-level <LEVEL>", "[default: info]"),
        ("--features <FEATURES>", "[default: all]"),
        ("--drain-timeout <DURATION>", "[default: 10s]"),
        ("--idle-timeout <DURATION>", "[default: 60s]"),
        ("--upstream-max-idle <N>", "[default: 32]"),
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
        let block = &help[at..];
        let end = block[flag.len()..].find("\n  -").map_or(block.len(), |e| e + flag.len());
        assert!(block[..end].contains(default), "{flag}: {}", &block[..end]);
    }
    for bad in [
        ["--pool-size", "0"],
        ["--deadline", "0s"],
        ["--memory-limit", "12XB"],
        ["--guest-log-level", "loud"],
        ["--features", "gzip"],
        ["--engine", "v8"],
    ] {
        let out = run(&tempdir("knobs-help"), &["serve", "--listen", "127.0.0.1:0", bad[0], bad[1]]);
        assert!(!out.status.success(), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(bad[0]) && stderr.contains(bad[1]), "{stderr}");
    }
}
