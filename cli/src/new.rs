//! `http-wasm new NAME`: writes a filter crate to start from.
//!
//! The crate is a `cdylib` depending on the SDK (`http-wasm-sdk`), with a
//! release profile tuned for module size, the README's `Gate` filter in
//! `src/lib.rs`, and a test in `tests/` that builds the module for
//! `wasm32-unknown-unknown` and runs it through the real host
//! (`tower_http_wasm::testing::TestHost`) on every engine.
//!
//! Those two files are the crate `cli/template`, a member of this
//! workspace: `cargo test --workspace` builds and runs the template's own
//! tests with the artifacts it already has, and this command copies them
//! word for word.
//!
//! Until the crates are published, the SDK and the host come as path
//! dependencies: on `--sdk-path` (and the `host-tower/` beside it), or on
//! the checkout this binary was built from when it is still there. Without
//! either, the crates.io version of this release is written.

use clap::Args;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The version of the SDK and the host written when no path is known: the
/// one this binary belongs to.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Arguments of `http-wasm new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The crate's name: ASCII letters, digits, `-` and `_`, starting with a
    /// letter. Also its folder, unless `--path` says otherwise.
    name: String,
    /// The folder to write the crate to; it must not exist or be empty.
    /// Default: `./NAME`.
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// The SDK's folder (`guest/` of a checkout of this project), written as
    /// a path dependency; the test's `tower-http-wasm` is the `host-tower/`
    /// beside it. Default: the checkout this binary was built from, when it
    /// still exists; otherwise the crates.io version.
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,
}

/// Where a dependency comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A path dependency on this folder.
    Path(PathBuf),
    /// The crates.io version.
    Version(&'static str),
}

impl Source {
    /// The right-hand side of the dependency's line in `Cargo.toml`.
    fn toml(&self) -> Result<String, String> {
        match self {
            Source::Version(v) => Ok(format!("\"{v}\"")),
            Source::Path(p) => {
                let text = p.to_str().ok_or_else(|| format!("{} is not valid UTF-8", p.display()))?;
                Ok(format!("{{ path = {} }}", toml_string(text)))
            }
        }
    }
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Checks a package name as cargo would accept it for a library.
fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if !first_ok || !rest_ok || name.len() > 64 {
        return Err(format!(
            "invalid crate name {name:?}: use ASCII letters, digits, '-' and '_', starting with a letter (at most 64)"
        ));
    }
    if matches!(name, "test" | "core" | "std" | "alloc" | "proc_macro" | "proc-macro") {
        return Err(format!("invalid crate name {name:?}: it is the name of a crate of Rust itself"));
    }
    Ok(())
}

/// The checkout this binary was built from, if it is still there.
fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent()?;
    let complete = root.join("guest/Cargo.toml").is_file() && root.join("host-tower/Cargo.toml").is_file();
    complete.then(|| root.to_path_buf())
}

/// The SDK's and the host's sources.
fn sources(sdk_path: Option<&Path>) -> Result<(Source, Source), String> {
    let sdk = match sdk_path {
        Some(dir) => {
            if !dir.join("Cargo.toml").is_file() {
                return Err(format!("--sdk-path {}: no Cargo.toml there", dir.display()));
            }
            dir.canonicalize().map_err(|e| format!("--sdk-path {}: {e}", dir.display()))?
        }
        None => match checkout() {
            Some(root) => root.join("guest"),
            None => return Ok((Source::Version(VERSION), Source::Version(VERSION))),
        },
    };
    let host = sdk.parent().map(|p| p.join("host-tower")).filter(|h| h.join("Cargo.toml").is_file());
    let host = host.map_or(Source::Version(VERSION), Source::Path);
    Ok((Source::Path(sdk), host))
}

/// The crate's `Cargo.toml`.
fn cargo_toml(name: &str, sdk: &Source, host: &Source) -> Result<String, String> {
    Ok(format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# Only the wasm module: a crate that is also an `rlib` is optimised less
# well (a larger module). Native `cargo test` still builds and runs.
[lib]
crate-type = ["cdylib"]

[dependencies]
http-wasm-sdk = {sdk}

[dev-dependencies]
tower-http-wasm = {host}

# `cargo build --release --target wasm32-unknown-unknown`: a small module.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true
panic = "abort"

# A crate of its own, not a member of an enclosing workspace.
[workspace]
"#,
        sdk = sdk.toml()?,
        host = host.toml()?,
    ))
}

/// The crate's `src/lib.rs`: the README's `Gate`. The template is a member
/// of this workspace (`cli/template`), so its code and tests run in its CI.
const LIB_RS: &str = include_str!("../template/src/lib.rs");

/// The crate's `tests/filter.rs`.
const TEST_RS: &str = include_str!("../template/tests/filter.rs");

/// Runs `http-wasm new`.
pub fn run(args: NewArgs) -> Result<ExitCode, String> {
    check_name(&args.name)?;
    let dir = args.path.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() {
        let mut entries = std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        if entries.next().is_some() {
            return Err(format!("{} already exists and is not empty", dir.display()));
        }
    }
    let (sdk, host) = sources(args.sdk_path.as_deref())?;
    let files = [
        ("Cargo.toml", cargo_toml(&args.name, &sdk, &host)?),
        (".gitignore", "/target\n".to_string()),
        ("src/lib.rs", LIB_RS.to_string()),
        ("tests/filter.rs", TEST_RS.to_string()),
    ];
    for (file, text) in &files {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let describe = |s: &Source| match s {
        Source::Path(p) => format!("path {}", p.display()),
        Source::Version(v) => format!("version {v} from crates.io"),
    };
    println!("created filter crate {} in {}", args.name, dir.display());
    println!("  http-wasm-sdk: {}", describe(&sdk));
    println!("  tower-http-wasm (tests): {}", describe(&host));
    println!("next:");
    println!("  cd {}", dir.display());
    println!("  cargo build --release --target wasm32-unknown-unknown");
    println!("  cargo test");
    println!(
        "  http-wasm serve --filter target/wasm32-unknown-unknown/release/{}.wasm --config my-tag",
        args.name.replace('-', "_")
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["gate", "my-filter", "f_2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "2fa", "-x", "a b", "ü", "test", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_strings_escape() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
        assert_eq!(toml_string("a\nb"), r#""a\u000Ab""#);
    }

    #[test]
    fn manifest_names_both_sources() {
        let sdk = Source::Path(PathBuf::from("/src/guest"));
        let text = cargo_toml("gate", &sdk, &Source::Version("0.1.0")).unwrap();
        assert!(text.contains("name = \"gate\""), "{text}");
        assert!(text.contains("http-wasm-sdk = { path = \"/src/guest\" }"), "{text}");
        assert!(text.contains("tower-http-wasm = \"0.1.0\""), "{text}");
        assert!(text.contains("crate-type = [\"cdylib\"]"), "{text}");
    }
}
