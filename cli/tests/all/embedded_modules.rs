//! The wasm modules the binary embeds (`modules/`, included by
//! `src/embedded.rs`) are committed so that the published crate builds on
//! its own. These tests rebuild each one from its source crate, as
//! `http-wasm-guest-build` builds every guest, and fail when a committed
//! file differs: a change to a guest, the SDK, the ABI, `Cargo.lock` or the
//! toolchain must come with refreshed modules.

use http_wasm_guest_build::{Target, build_bytes};
use std::path::{Path, PathBuf};

/// `(package, file in modules/)`: every module the binary embeds.
const MODULES: &[(&str, &str)] = &[
    ("http-wasm-conformance-guest", "conformance-guest.wasm"),
    ("http-wasm-example-router", "router.wasm"),
    ("http-wasm-example-header-validation", "header-validation.wasm"),
    ("http-wasm-example-harden", "harden.wasm"),
];

/// Set to `1` to rewrite the stale modules instead of failing.
const BLESS: &str = "HTTP_WASM_BLESS";

/// The command that refreshes the committed modules.
const REFRESH: &str = "HTTP_WASM_BLESS=1 cargo test -p http-wasm-cli --test all embedded_modules";

fn modules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("modules")
}

#[test]
fn committed_modules_match_a_fresh_build() {
    let bless = std::env::var_os(BLESS).is_some_and(|v| v == "1");
    let mut stale = Vec::new();
    for (package, file) in MODULES {
        let built = build_bytes(package, Target::Unknown).unwrap_or_else(|e| panic!("building {package}: {e}"));
        let path = modules_dir().join(file);
        let committed = match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => panic!("reading {}: {e}", path.display()),
        };
        if committed.as_deref() == Some(&built[..]) {
            continue;
        }
        let was = committed.map_or_else(|| "missing".to_string(), |c| format!("{} bytes", c.len()));
        if bless {
            std::fs::write(&path, &built).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            eprintln!("rewrote {} from {package} ({was}, now {} bytes)", path.display(), built.len());
        } else {
            stale.push(format!(
                "  {} ({was}) differs from a fresh build of {package} ({} bytes)",
                path.display(),
                built.len()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "the modules the http-wasm binary embeds are stale:\n{}\nrefresh them with\n  {REFRESH}\nand commit modules/",
        stale.join("\n")
    );
}

/// Every `.wasm` in `modules/` and every module `src/embedded.rs` includes
/// is one the test above checks, and the other way round.
#[test]
fn every_embedded_module_is_checked() {
    let checked: Vec<&str> = {
        let mut files: Vec<&str> = MODULES.iter().map(|(_, file)| *file).collect();
        files.sort_unstable();
        files
    };

    let mut in_dir: Vec<String> = std::fs::read_dir(modules_dir())
        .expect("modules/ exists")
        .map(|entry| entry.expect("modules/ is readable").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wasm"))
        .collect();
    in_dir.sort_unstable();
    assert_eq!(in_dir, checked, "the .wasm files in modules/ and the ones this test checks");

    let source = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/embedded.rs"))
        .expect("src/embedded.rs is readable");
    let marker = "include_bytes!(\"../modules/";
    let mut included: Vec<&str> = source
        .match_indices(marker)
        .map(|(at, _)| {
            let rest = &source[at + marker.len()..];
            &rest[..rest.find('"').expect("the include_bytes! path is closed")]
        })
        .collect();
    included.sort_unstable();
    assert_eq!(included, checked, "the modules src/embedded.rs includes and the ones this test checks");
}
