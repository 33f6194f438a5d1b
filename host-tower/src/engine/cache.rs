//! The compiled-module cache: a directory of files, one per module, engine
//! and engine settings.
//!
//! A file is named by the SHA-256 of its key (the engine's name, its version
//! and settings fingerprint, this crate's version, and the module's bytes)
//! and holds:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `HWASMC01` |
//! | 32 | SHA-256 of the key followed by the payload |
//! | rest | the payload: what the engine's `serialize` wrote |
//!
//! A file whose magic or digest does not match (truncated, altered, renamed
//! from another key) is never handed to the engine: the module is compiled
//! and the file rewritten. Files are written to a temporary name and
//! renamed, so a reader never sees half a file. On Unix a directory that
//! other users may write to is not used at all.
//!
//! Loading a compiled artifact is `unsafe` in both engines (the bytes become
//! machine code), so the `module-cache` feature holds the host's only
//! `unsafe` blocks: one per engine, in its [`Compiler::load`], each given
//! only bytes that passed the digest check here.

use crate::error::Error;
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"HWASMC01";
const HEADER: usize = MAGIC.len() + 32;

/// How one engine compiles, serializes and loads back a module.
pub(crate) trait Compiler {
    /// The compiled module.
    type Module;
    /// The engine's name, version and settings: what a compiled module
    /// depends on besides the wasm bytes.
    fn id(&self) -> Vec<u8>;
    /// Compiles `wasm`.
    fn compile(&self, wasm: &[u8]) -> Result<Self::Module, Error>;
    /// What `load` accepts back.
    fn serialize(&self, module: &Self::Module) -> Result<Vec<u8>, String>;
    /// Loads bytes that `serialize` wrote for the same [`id`](Self::id).
    fn load(&self, bytes: &[u8]) -> Result<Self::Module, String>;
}

/// Feeds `Hash` values into a SHA-256 (for an engine's settings fingerprint).
pub(crate) struct DigestHasher(pub(crate) Sha256);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        0
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Where a module's entry lives, and its key.
struct Entry {
    key: [u8; 32],
    path: PathBuf,
}

impl Entry {
    fn new(dir: &Path, engine_id: &[u8], wasm: &[u8]) -> Entry {
        let mut h = Sha256::new();
        h.update(engine_id);
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update((wasm.len() as u64).to_le_bytes());
        h.update(wasm);
        let key: [u8; 32] = h.finalize().into();
        Entry { path: dir.join(format!("{}.cwasm", hex(&key))), key }
    }

    fn digest(&self, payload: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.key);
        h.update(payload);
        h.finalize().into()
    }

    /// The payload, if the file exists and is intact.
    fn read(&self) -> Option<Vec<u8>> {
        let mut bytes = std::fs::read(&self.path).ok()?;
        let intact = bytes.len() >= HEADER
            && &bytes[..MAGIC.len()] == MAGIC
            && bytes[MAGIC.len()..HEADER] == self.digest(&bytes[HEADER..]);
        if !intact {
            tracing::warn!(target: "http_wasm", file = %self.path.display(), "compiled-module cache file is damaged; recompiling");
            return None;
        }
        bytes.drain(..HEADER);
        Some(bytes)
    }

    fn write(&self, payload: &[u8]) -> std::io::Result<()> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let tmp = dir.join(format!(".{}.{}.tmp", hex(&self.key[..8]), std::process::id()));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(MAGIC)?;
        file.write_all(&self.digest(payload))?;
        file.write_all(payload)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &self.path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// True when `dir` exists (or was created) and only its owner may write to it.
fn usable(dir: &Path) -> bool {
    if let Err(e) = std::fs::create_dir_all(dir) {
        tracing::warn!(target: "http_wasm", dir = %dir.display(), error = %e, "compiled-module cache unusable; compiling");
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match std::fs::metadata(dir) {
            Ok(m) if m.permissions().mode() & 0o022 == 0 => {}
            _ => {
                tracing::warn!(target: "http_wasm", dir = %dir.display(), "compiled-module cache directory is writable by other users; not used");
                return false;
            }
        }
    }
    true
}

/// Loads the compiled `wasm` from `dir`, or compiles it and stores it there.
pub(crate) fn load_or_compile<C: Compiler>(dir: &Path, compiler: &C, wasm: &[u8]) -> Result<C::Module, Error> {
    if !usable(dir) {
        return compiler.compile(wasm);
    }
    let entry = Entry::new(dir, &compiler.id(), wasm);
    if let Some(payload) = entry.read() {
        match compiler.load(&payload) {
            Ok(a) => return Ok(a),
            Err(e) => {
                tracing::warn!(target: "http_wasm", file = %entry.path.display(), error = %e, "compiled-module cache file rejected by the engine; recompiling");
            }
        }
    }
    let module = compiler.compile(wasm)?;
    match compiler.serialize(&module) {
        Ok(payload) => {
            if let Err(e) = entry.write(&payload) {
                tracing::warn!(target: "http_wasm", file = %entry.path.display(), error = %e, "could not write the compiled-module cache");
            }
        }
        Err(e) => tracing::warn!(target: "http_wasm", error = %e, "could not serialize the compiled module"),
    }
    Ok(module)
}
