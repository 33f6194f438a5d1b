//! A module's bytes name no path of this machine, so the same sources build
//! to the same bytes in any checkout with any cargo home (what lets
//! `http-wasm-cli` commit the modules it embeds and check them in CI).

use http_wasm_guest_build::{Target, build_bytes, workspace_root};
use std::path::PathBuf;

/// The cargo home as cargo finds it: `$CARGO_HOME`, else `~/.cargo`.
fn cargo_home() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => PathBuf::from(home),
        _ => std::env::home_dir().expect("a home directory").join(".cargo"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The router example keeps panic locations in `serde_json` (a crates.io
/// dependency, under the cargo home) and in its own sources (under the
/// workspace); both targets.
#[test]
fn modules_name_neither_the_checkout_nor_the_cargo_home() {
    let root = workspace_root();
    let home = cargo_home();
    for target in Target::ALL {
        let wasm = build_bytes("http-wasm-example-router", target).unwrap_or_else(|e| panic!("{e}"));
        // Prefixes of what a module would name: its crates' sources, the
        // SDK's and the ABI's, and the dependencies' under the cargo home.
        for path in [root.join("examples"), root.join("guest"), root.join("abi"), home.join("registry")] {
            let path = format!("{}/", path.to_str().expect("a UTF-8 path"));
            assert!(!contains(&wasm, path.as_bytes()), "{}: the module names {path}", target.triple());
        }
        assert!(
            contains(&wasm, b"/cargo/registry/src/"),
            "{}: the module names its dependencies under the remapped cargo home",
            target.triple()
        );
    }
}
