//! The filter built to wasm and run through the real host, on every engine.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use tower_http_wasm::testing::TestHost;

/// The module, built once per test run: `cargo build --release --target
/// wasm32-unknown-unknown` into a target folder of its own (the one of this
/// `cargo test` is busy).
fn wasm() -> &'static [u8] {
    static WASM: OnceLock<Vec<u8>> = OnceLock::new();
    WASM.get_or_init(|| {
        let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(concat!(env!("CARGO_PKG_NAME"), "-wasm"));
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "--target", "wasm32-unknown-unknown", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("cargo runs");
        assert!(
            status.success(),
            "building the module failed (is the target installed? `rustup target add wasm32-unknown-unknown`)"
        );
        let file = format!("{}.wasm", env!("CARGO_PKG_NAME").replace('-', "_"));
        let path = target_dir.join("wasm32-unknown-unknown/release").join(file);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    })
}

tower_http_wasm::per_engine! {
    #[test]
    fn a_request_without_a_token_gets_403(engine) {
        let host = TestHost::builder().engine(engine).config("blue").build(wasm()).unwrap();
        let res = host.get("/").send();
        res.assert_status(403).assert_next_not_called();
    }

    #[test]
    fn a_request_with_a_token_is_tagged_and_passed_on(engine) {
        let host = TestHost::builder().engine(engine).config("blue").build(wasm()).unwrap();
        let res = host.get("/x").header("x-token", "t").send();
        res.assert_status(200).assert_next_called();
        let tag = res.received().headers.get("x-gate").and_then(|v| v.to_str().ok());
        assert_eq!(tag, Some("blue"), "[{engine}]");
    }
}
