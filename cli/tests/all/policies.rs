//! `serve`'s per-filter policies: instance isolation, failure policy (as
//! flags and as Dapr metadata), the compiled-module cache, and the
//! defaults `--help` documents.

use crate::guests;
use crate::net::{client, full, send, upstream, url};
use crate::process::{Server, run, tempdir};
use http::Response;
use std::net::SocketAddr;
use std::path::Path;
use tower_http_wasm::Engine;

/// A Dapr component named `name` for `file://FILE`, with extra metadata
/// (`(name, value)` pairs).
fn component(name: &str, file: &str, metadata: &[(&str, &str)]) -> String {
    let mut yaml = format!(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: {name}\nspec:\n  type: middleware.http.wasm\n  version: v1\n  metadata:\n  - name: url\n    value: file://{file}\n"
    );
    for (n, v) in metadata {
        yaml.push_str(&format!("  - name: {n}\n    value: \"{v}\"\n"));
    }
    yaml
}

/// `x-count` of `n` requests sent one after another on one connection.
async fn counts(addr: SocketAddr, n: usize) -> Vec<u32> {
    let c = client(false);
    let mut out = Vec::new();
    for _ in 0..n {
        let got = send(&c, http::Request::get(url(addr, "/")).body(full("")).unwrap()).await;
        assert_eq!(got.status, 200);
        out.push(got.values("x-count")[0].parse().unwrap());
    }
    out
}

fn serve_args<'a>(upstream: &'a str, engine: Engine, extra: &[&'a str]) -> Vec<&'a str> {
    // One worker: instances are each worker's, and a request the client
    // sends on a new connection could reach the other worker's.
    let mut args =
        vec!["serve", "--listen", "127.0.0.1:0", "--upstream", upstream, "--engine", engine.name(), "--workers", "1"];
    args.extend(extra);
    args
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn isolation_flag_and_dapr_metadata_decide_how_instances_are_shared(engine) {
        let up = upstream(|_req| async { Response::new(full("up")) }).await;
        let up = format!("http://{up}");
        let dir = tempdir(&format!("isolation-{}", engine.name()));
        std::fs::write(dir.join("counter.wasm"), guests::counter()).unwrap();
        for (policy, expected) in [
            (None, vec![1, 2, 3, 4, 5, 6]),
            (Some("reuse"), vec![1, 2, 3, 4, 5, 6]),
            (Some("per-request"), vec![1, 1, 1, 1, 1, 1]),
            (Some("recycle-after:2"), vec![1, 2, 1, 2, 1, 2]),
            (Some("recycle-after:1"), vec![1, 1, 1, 1, 1, 1]),
        ] {
            let mut extra = vec!["--filter", "counter.wasm"];
            if let Some(p) = policy {
                extra.extend(["--isolation", p]);
            }
            let gw = Server::start(&dir, &serve_args(&up, engine, &extra));
            assert_eq!(counts(gw.addr, 6).await, expected, "[{engine}] --isolation {policy:?}");
        }
        // Dapr metadata wins over the flag, for its component only.
        std::fs::write(
            dir.join("components.yaml"),
            [
                component("recycled", "counter.wasm", &[("isolation", "recycle-after:3")]),
                component("plain", "counter.wasm", &[]),
                "kind: Configuration\nspec:\n  httpPipeline:\n    handlers:\n    - name: recycled\n    - name: plain\n"
                    .into(),
            ]
            .join("---\n"),
        )
        .unwrap();
        let gw =
            Server::start(&dir, &serve_args(&up, engine, &["--dapr", "components.yaml", "--isolation", "per-request"]));
        let c = client(false);
        let mut seen = Vec::new();
        for _ in 0..4 {
            let got = send(&c, http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await;
            let mut v = got.values("x-count");
            v.sort();
            seen.push(v.join(","));
        }
        // `plain` (per-request, from the flag) always says 1; `recycled` counts to 3.
        assert_eq!(seen, ["1,1", "1,2", "1,3", "1,1"], "[{engine}]");
    }
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn failure_policy_open_skips_a_trapping_filter_closed_answers_500(engine) {
        let up = upstream(|req: http::Request<hyper::body::Incoming>| async move {
            // Reports what reached it: the trap header the guest never handled.
            let trap = req.headers().contains_key("x-trap");
            Response::builder().header("x-upstream-saw-trap", trap.to_string()).body(full("from upstream")).unwrap()
        })
        .await;
        let up = format!("http://{up}");
        let dir = tempdir(&format!("failure-policy-{}", engine.name()));
        std::fs::write(dir.join("guest.wasm"), guests::versioned("v")).unwrap();
        let trap = || http::Request::get("/").header("x-trap", "1");
        let send_trap = |addr: SocketAddr| {
            let req = trap().uri(url(addr, "/")).body(full("")).unwrap();
            async move { send(&client(false), req).await }
        };
        for policy in [None, Some("closed"), Some("open")] {
            let mut extra = vec!["--filter", "guest.wasm"];
            if let Some(p) = policy {
                extra.extend(["--failure-policy", p]);
            }
            let gw = Server::start_with_log(&dir, &serve_args(&up, engine, &extra), "warn");
            let got = send_trap(gw.addr).await;
            let at = format!("[{engine}] --failure-policy {policy:?}");
            if policy == Some("open") {
                assert_eq!(got.status, 200, "{at}");
                assert_eq!(&got.body[..], b"from upstream", "{at}");
                assert_eq!(got.values("x-upstream-saw-trap"), ["true"], "{at}: the request as the client sent it");
                assert!(got.values("x-version").is_empty(), "{at}: the filter was skipped");
                gw.wait_for_log(|l| l.contains("WARN"));
            } else {
                assert_eq!((got.status, &got.body[..]), (500, &b"Internal Server Error\n"[..]), "{at}");
            }
            // Good requests are unaffected either way.
            let got = send(&client(true), http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await;
            assert_eq!((got.status, got.values("x-version")), (200, vec!["v".to_string()]), "{at}");
        }
        // As Dapr metadata.
        std::fs::write(dir.join("open.yaml"), component("open", "guest.wasm", &[("failurePolicy", "open")])).unwrap();
        let gw = Server::start(&dir, &serve_args(&up, engine, &["--dapr", "open.yaml"]));
        assert_eq!(send_trap(gw.addr).await.status, 200, "[{engine}] Dapr failurePolicy: open");
        std::fs::write(dir.join("closed.yaml"), component("closed", "guest.wasm", &[("failurePolicy", "closed")]))
            .unwrap();
        let gw = Server::start(&dir, &serve_args(&up, engine, &["--dapr", "closed.yaml", "--failure-policy", "open"]));
        assert_eq!(send_trap(gw.addr).await.status, 500, "[{engine}] Dapr failurePolicy: closed over the flag");
    }
}

/// The file's inode (0 off Unix): a cache file rewritten gets a new one.
fn inode(path: &Path) -> u64 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().ino()
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        0
    }
}

/// The `.cwasm` files in `dir`.
fn cached(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(".cwasm")).collect())
        .unwrap_or_default();
    files.sort();
    files
}

tower_http_wasm::per_engine! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cache_dir_keeps_compiled_modules_across_starts_and_reloads(engine) {
        let up = upstream(|_req| async { Response::new(full("up")) }).await;
        let up = format!("http://{up}");
        let dir = tempdir(&format!("cache-dir-{}", engine.name()));
        std::fs::write(dir.join("guest.wasm"), guests::versioned("a")).unwrap();
        let cache = dir.join("cache").join("http-wasm");
        let cache_arg = cache.to_str().unwrap();
        // Started twice with the same module: one file for this engine,
        // created with the missing directories, and read (not rewritten:
        // the same inode) by the second start.
        let mut first = None;
        for start in 0..2 {
            let gw =
                Server::start(&dir, &serve_args(&up, engine, &["--filter", "guest.wasm", "--cache-dir", cache_arg]));
            let files = cached(&cache);
            assert_eq!(files.len(), 1, "[{engine} start {start}]");
            let inodes: Vec<u64> = files.iter().map(|f| inode(&cache.join(f))).collect();
            assert_eq!(*first.get_or_insert(inodes.clone()), inodes, "[{engine}] the second start used the cache");
            let got = send(&client(false), http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await;
            assert_eq!((got.status, got.values("x-version")), (200, vec!["a".to_string()]), "[{engine}]");
        }
        // The other engine (if this build has it) keeps a file of its own
        // beside this one's.
        let mut expected_files = 1;
        for &other in Engine::ALL.iter().filter(|&&e| e != engine) {
            expected_files += 1;
            let gw =
                Server::start(&dir, &serve_args(&up, other, &["--filter", "guest.wasm", "--cache-dir", cache_arg]));
            assert_eq!(cached(&cache).len(), expected_files, "[{engine} then {other}]");
            let got = send(&client(false), http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await;
            assert_eq!((got.status, got.values("x-version")), (200, vec!["a".to_string()]), "[{other}]");
        }
        let _ = std::fs::remove_dir_all(&cache);
        // A reload compiles the new module into the cache too.
        let gw = Server::start_with_log(
            &dir,
            &serve_args(
                &up,
                engine,
                &["--filter", "guest.wasm", "--cache-dir", cache_arg, "--watch-interval", "50ms"],
            ),
            "info",
        );
        assert_eq!(cached(&cache).len(), 1);
        crate::process::replace(&dir.join("guest.wasm"), &guests::versioned("b"));
        gw.wait_for_log(|l| l.contains("filter reloaded"));
        assert_eq!(cached(&cache).len(), 2);
        let got = send(&client(false), http::Request::get(url(gw.addr, "/")).body(full("")).unwrap()).await;
        assert_eq!(got.values("x-version"), ["b"]);
    }
}

#[test]
fn every_serve_flag_documents_its_default() {
    let out = run(&tempdir("help"), &["serve", "--help"]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    // Blocks start at a line `      --flag <VALUE>`; each must state a default.
    let mut blocks: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") || t.starts_with("-h, --help") {
            blocks.push((t.split_whitespace().next().unwrap().to_string(), String::new()));
        } else if let Some((_, text)) = blocks.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    let flags: Vec<&str> = blocks.iter().map(|(f, _)| f.as_str()).collect();
    for f in ["--isolation", "--failure-policy", "--cache-dir", "--watch-interval", "--admin"] {
        assert!(flags.contains(&f), "{f} missing from:\n{help}");
    }
    for (flag, text) in &blocks {
        if flag == "-h," {
            continue;
        }
        assert!(text.contains("[default: ") || text.contains("Default: "), "{flag} states no default:\n{text}");
    }
    for bad in [["--isolation", "recycle-after:0"], ["--failure-policy", "maybe"], ["--watch-interval", "0s"]] {
        let out = run(&tempdir("help"), &["serve", "--listen", "127.0.0.1:0", bad[0], bad[1]]);
        assert!(!out.status.success(), "{bad:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(bad[0]) && stderr.contains(bad[1]), "{stderr}");
    }
}
