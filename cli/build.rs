//! Builds the wasm modules the `http-wasm` binary embeds: the conformance
//! guest and the example filters of the serve demo. Each is built with
//! `http-wasm-guest-build` (a nested cargo with its own target directory)
//! and written to `OUT_DIR`, where `src/embedded.rs` includes it.

use http_wasm_guest_build::{Target, build_bytes, workspace_root};
use std::path::Path;

/// `(package, file in OUT_DIR)`.
const MODULES: &[(&str, &str)] = &[
    ("http-wasm-conformance-guest", "conformance-guest.wasm"),
    ("http-wasm-example-router", "router.wasm"),
    ("http-wasm-example-header-validation", "header-validation.wasm"),
    ("http-wasm-example-harden", "harden.wasm"),
];

/// Sources whose change must rebuild the modules.
const WATCHED: &[&str] = &[
    "abi/src",
    "abi/Cargo.toml",
    "guest/src",
    "guest/Cargo.toml",
    "conformance/guest/src",
    "conformance/guest/Cargo.toml",
    "conformance/src/cases.rs",
    "examples/filters/router/src",
    "examples/filters/router/Cargo.toml",
    "examples/filters/header-validation/src",
    "examples/filters/header-validation/Cargo.toml",
    "examples/filters/harden/src",
    "examples/filters/harden/Cargo.toml",
];

fn main() {
    let root = workspace_root();
    for path in WATCHED {
        println!("cargo:rerun-if-changed={}", root.join(path).display());
    }
    let out_dir = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR for build scripts");
    for (package, file) in MODULES {
        let bytes = match build_bytes(package, Target::Unknown) {
            Ok(bytes) => bytes,
            Err(e) => fail(package, &e.to_string()),
        };
        let dest = Path::new(&out_dir).join(file);
        if let Err(e) = std::fs::write(&dest, bytes) {
            fail(package, &format!("writing {}: {e}", dest.display()));
        }
    }
}

fn fail(package: &str, why: &str) -> ! {
    eprintln!(
        "\nerror: the http-wasm binary embeds the wasm module of `{package}`, and building it failed.\n\
         It is built for wasm32-unknown-unknown with the `guest` profile into target/guests\n\
         (`rustup target add wasm32-unknown-unknown` if the target is missing). The nested build said:\n\n{why}\n"
    );
    std::process::exit(1);
}
