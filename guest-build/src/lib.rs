//! Builds the workspace's guest crates to wasm, for tests and build scripts.
//!
//! Tests never load checked-in binaries: they call [`build`] with a package
//! name and get the bytes cargo just produced. The build runs a nested cargo
//! with its own target directory (`target/guests`: the outer build holds the
//! lock on `target/`), the workspace's `Cargo.lock`, and the `guest` profile
//! (small, optimised wasm), building only the crate's `cdylib`. Cargo's own freshness check means an unchanged
//! guest is not rebuilt; within one process each guest is built once.
//!
//! A wasm target missing from the toolchain is added with `rustup target add`
//! (normally `rust-toolchain.toml` has already installed both).
//!
//! The bytes depend only on the sources, `Cargo.lock` and the toolchain, not
//! on where the checkout or the cargo home is: the panic locations a module
//! keeps name a dependency's file under the cargo home
//! (`~/.cargo/registry/src/...`), so the build remaps the cargo home to
//! `/cargo` and the workspace root to `/http-wasm` (`--remap-path-prefix`).
//! That is what lets `http-wasm-cli` commit the modules it embeds and test
//! that they match a fresh build on any machine.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

/// A wasm target.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `wasm32-unknown-unknown`: no WASI, a reactor.
    Unknown,
    /// `wasm32-wasip1`: WASI preview 1.
    Wasip1,
}

impl Target {
    /// Both targets.
    pub const ALL: [Target; 2] = [Target::Unknown, Target::Wasip1];

    /// The target triple.
    pub fn triple(self) -> &'static str {
        match self {
            Target::Unknown => "wasm32-unknown-unknown",
            Target::Wasip1 => "wasm32-wasip1",
        }
    }
}

/// Why a guest did not build.
#[derive(Debug)]
pub struct BuildError(String);

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

/// The workspace root (the folder holding `Cargo.lock`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("guest-build sits in the workspace").to_path_buf()
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// A command with the outer cargo's build settings removed, so the nested
/// build is an ordinary one.
fn clean(mut cmd: Command) -> Command {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let drop = (key.starts_with("CARGO_") && key != "CARGO_HOME" && key != "CARGO_NET_OFFLINE")
            || matches!(
                key,
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "MAKEFLAGS"
                    | "MFLAGS"
                    | "RUSTC"
                    | "RUSTDOC"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if drop {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn ensure_target(target: Target) -> Result<(), BuildError> {
    let out = clean(Command::new("rustc"))
        .current_dir(workspace_root())
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| BuildError(format!("running rustc: {e}")))?;
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if Path::new(&sysroot).join("lib/rustlib").join(target.triple()).exists() {
        return Ok(());
    }
    let status = clean(Command::new("rustup"))
        .current_dir(workspace_root())
        .args(["target", "add", target.triple()])
        .status()
        .map_err(|e| BuildError(format!("target {} is missing and rustup failed to run: {e}", target.triple())))?;
    if status.success() { Ok(()) } else { Err(BuildError(format!("rustup target add {} failed", target.triple()))) }
}

type Cache = Mutex<HashMap<(String, Target), Arc<OnceLock<Result<PathBuf, String>>>>>;

/// Builds `package` (a workspace member) for `target` and returns the path
/// of its `.wasm` file.
pub fn build(package: &str, target: Target) -> Result<PathBuf, BuildError> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let slot = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry((package.to_string(), target))
        .or_default()
        .clone();
    slot.get_or_init(|| build_uncached(package, target).map_err(|e| e.0)).clone().map_err(BuildError)
}

/// Builds `package` for `target` and reads the module's bytes.
pub fn build_bytes(package: &str, target: Target) -> Result<Vec<u8>, BuildError> {
    let path = build(package, target)?;
    std::fs::read(&path).map_err(|e| BuildError(format!("reading {}: {e}", path.display())))
}

/// Builds `package` for both targets: `(target, module bytes)` each.
pub fn build_all(package: &str) -> Result<Vec<(Target, Vec<u8>)>, BuildError> {
    Target::ALL.iter().map(|&t| Ok((t, build_bytes(package, t)?))).collect()
}

/// The cargo home: `$CARGO_HOME`, else `~/.cargo` (as cargo finds it).
fn cargo_home() -> Option<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => Some(PathBuf::from(home)),
        _ => std::env::home_dir().map(|home| home.join(".cargo")),
    }
}

/// The nested build's rustflags, as `CARGO_ENCODED_RUSTFLAGS` (flags
/// separated by `0x1f`, so a path may hold spaces): the workspace root and
/// the cargo home remapped to fixed names, so no absolute path of this
/// machine ends up in a module. The cargo home comes last: rustc applies the
/// last matching remap, and the cargo home may sit inside the workspace.
fn encoded_rustflags(root: &Path) -> std::ffi::OsString {
    let mut flags = std::ffi::OsString::new();
    let remaps = [(Some(root.to_path_buf()), "/http-wasm"), (cargo_home(), "/cargo")];
    for (from, to) in remaps {
        let Some(from) = from else { continue };
        if !flags.is_empty() {
            flags.push("\x1f");
        }
        flags.push("--remap-path-prefix=");
        flags.push(from.as_os_str());
        flags.push("=");
        flags.push(to);
    }
    flags
}

fn build_uncached(package: &str, target: Target) -> Result<PathBuf, BuildError> {
    ensure_target(target)?;
    let root = workspace_root();
    let target_dir = root.join("target").join("guests");
    let out = clean(Command::new(cargo()))
        .current_dir(&root)
        .env("CARGO_ENCODED_RUSTFLAGS", encoded_rustflags(&root))
        // `rustc --crate-type cdylib`: only the module, without the rlib a
        // guest crate also declares for native tests (smaller wasm).
        .args(["rustc", "--quiet", "--lib", "--crate-type", "cdylib", "--profile", "guest", "-p", package])
        .args(["--target", target.triple(), "--target-dir"])
        .arg(&target_dir)
        .output()
        .map_err(|e| BuildError(format!("running cargo: {e}")))?;
    if !out.status.success() {
        return Err(BuildError(format!(
            "building guest {package} for {}:\n{}",
            target.triple(),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let file = format!("{}.wasm", package.replace('-', "_"));
    let path = target_dir.join(target.triple()).join("guest").join(file);
    if path.exists() {
        Ok(path)
    } else {
        Err(BuildError(format!("cargo built {package} but {} is missing", path.display())))
    }
}
