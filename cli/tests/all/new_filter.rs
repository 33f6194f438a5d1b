//! `http-wasm new`: the generated crate builds for `wasm32-unknown-unknown`
//! and its module runs under the real `http-wasm serve`.
//!
//! The generated `src/lib.rs` and `tests/filter.rs` are the workspace member
//! `cli/template`, whose tests (the unit test, and `TestHost` on both
//! engines) `cargo test --workspace` runs with the artifacts it has built
//! anyway. The generated crate's own `cargo test` cannot share them: it is
//! a workspace of its own, and cargo unifies features across the members of
//! a workspace, so wasmtime, wasmer and Cranelift get other feature sets (and
//! other artifacts) there than in this workspace. It compiles them from
//! scratch, 305 s on 2 cores, so it runs only with
//! `HTTP_WASM_TEST_NEW_CRATE=1`.

use crate::net::{client, send, url};
use crate::process::{Server, run, tempdir};
use http::Request;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root (the CLI crate's parent).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("cli/ sits in the workspace").to_path_buf()
}

fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// `http-wasm new gate-filter --sdk-path <checkout>/guest` in a fresh
/// folder, checked and built once: the crate's folder and its module.
fn generated() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let dir = tempdir("new-filter");
        let sdk = workspace().join("guest");
        let out = run(&dir, &["new", "gate-filter", "--sdk-path", sdk.to_str().unwrap()]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "http-wasm new failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        let krate = dir.join("gate-filter");
        let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
        for expected in [
            "crate-type = [\"cdylib\"]",
            "opt-level = \"s\"",
            "panic = \"abort\"",
            &format!("http-wasm-sdk = {{ path = \"{}\" }}", sdk.canonicalize().unwrap().display()),
            &format!(
                "tower-http-wasm = {{ path = \"{}\" }}",
                workspace().join("host-tower").canonicalize().unwrap().display()
            ),
        ] {
            assert!(manifest.contains(expected), "{expected:?} missing from:\n{manifest}");
        }
        assert!(krate.join("src/lib.rs").is_file() && krate.join("tests/filter.rs").is_file());

        // A second `new` into the same folder refuses to overwrite it.
        let again = run(&dir, &["new", "gate-filter", "--sdk-path", sdk.to_str().unwrap()]);
        assert!(!again.status.success(), "new overwrote an existing crate");

        // The workspace's lock file pins the versions this checkout is
        // tested with, so the build resolves offline and downloads nothing.
        std::fs::copy(workspace().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
        let target_dir = workspace().join("target").join("new-filter");
        let out = cargo()
            .args(["build", "--quiet", "--release", "--target", "wasm32-unknown-unknown", "--target-dir"])
            .arg(&target_dir)
            .current_dir(&krate)
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .expect("cargo runs");
        assert!(out.status.success(), "building the generated crate failed:\n{}", String::from_utf8_lossy(&out.stderr));
        let wasm = target_dir.join("wasm32-unknown-unknown/release/gate_filter.wasm");
        let size = std::fs::metadata(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display())).len();
        println!("generated gate-filter: {size} bytes on wasm32-unknown-unknown");
        (krate, wasm)
    })
}

tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn the_generated_filter_serves(engine) {
        let (krate, wasm) = generated();
        let server = Server::start(
            krate,
            &["serve", "--listen", "127.0.0.1:0", "--engine", engine.name(),
              "--filter", wasm.to_str().unwrap(), "--config", "blue"],
        );
        let c = client(false);
        let get = |token: Option<&str>| {
            let mut req = Request::get(url(server.addr, "/x"));
            if let Some(token) = token {
                req = req.header("x-token", token);
            }
            req.body(crate::net::full("")).unwrap()
        };
        let denied = send(&c, get(None)).await;
        assert_eq!(denied.status, 403, "[{engine}]");
        assert_eq!(&denied.body[..], b"forbidden\n", "[{engine}]");
        assert!(denied.values("x-echo-uri").is_empty(), "[{engine}] a denied request reached the backend");
        let passed = send(&c, get(Some("t"))).await;
        assert_eq!(passed.status, 200, "[{engine}]");
        assert_eq!(passed.values("x-echo-uri"), ["/x"], "[{engine}]");
        assert_eq!(passed.values("x-echo-header-x-gate"), ["blue"], "[{engine}] the filter's tag reached the backend");
    }
}

/// The generated crate's own tests (`cargo test` in it: its native unit
/// test, and its `TestHost` test on both engines). Compiles wasmtime and
/// wasmer from scratch (see the module's documentation): set
/// `HTTP_WASM_TEST_NEW_CRATE=1`.
#[test]
fn the_generated_crate_passes_its_own_tests() {
    if std::env::var_os("HTTP_WASM_TEST_NEW_CRATE").is_none_or(|v| v != "1") {
        println!(
            "skipped: set HTTP_WASM_TEST_NEW_CRATE=1 to run the generated crate's cargo test (compiles both engines)"
        );
        return;
    }
    let (krate, _) = generated();
    let out = cargo()
        .args(["test", "--target-dir"])
        .arg(workspace().join("target").join("new-filter"))
        .current_dir(krate)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "cargo test failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for test in [
        "tests::config_sets_the_tag",
        "a_request_without_a_token_gets_403::wasmtime",
        "a_request_without_a_token_gets_403::wasmer",
        "a_request_with_a_token_is_tagged_and_passed_on::wasmtime",
        "a_request_with_a_token_is_tagged_and_passed_on::wasmer",
    ] {
        assert!(stdout.contains(&format!("test {test} ... ok")), "{test} did not pass:\n{stdout}");
    }
}
