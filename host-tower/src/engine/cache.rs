//! The compiled-module cache: a directory of files, one per module, engine
//! and engine settings, each authenticated with a key that only the
//! directory's owner can read.
//!
//! ## The directory
//!
//! Created if missing (mode 0700), then opened once without following a
//! symlink; its key and entries are reached through that handle only, so the
//! directory checked is the directory used. It is used only if it is a
//! directory owned by the effective user that group and others may not write
//! to. Otherwise the cache is not used for this build: the reason is logged
//! at `warn`, the module is compiled and nothing is written.
//!
//! ## The key
//!
//! The file `key` holds 32 random bytes. It is created on first use, with mode
//! 0600, under a temporary name that is then linked to `key` (which fails if
//! another build got there first: racing builds agree on one key). It is used
//! only if, opened without following a symlink, it is a regular file owned by
//! the effective user, of mode 0600 and exactly 32 bytes long; otherwise the
//! cache is not used. Whoever can read the key can forge entries.
//!
//! ## An entry
//!
//! A file is named by the SHA-256 of its key (the engine's name, its version
//! and settings fingerprint, this crate's version, and the module's bytes)
//! and holds:
//!
//! | bytes | content |
//! |---|---|
//! | 8 | magic `HWASMC02` |
//! | 32 | HMAC-SHA256, under the directory's key, of the magic, the entry's key and the payload |
//! | rest | the payload: what the engine's `serialize` wrote |
//!
//! An entry is read only if, opened without following a symlink, it is a
//! regular file owned by the effective user that group and others may not
//! write to, of at most 256 MiB, and it is handed to the engine
//! only if its tag verifies (compared in constant time). Otherwise (missing,
//! truncated, altered, renamed from another key, planted, or written in the
//! first format, `HWASMC01`, whose plain SHA-256 anyone could recompute) the
//! module is compiled and the entry replaced: written to a new temporary file
//! (mode 0600) and renamed over it, so a reader never sees half a file.
//!
//! Where a file's owner cannot be checked (not Unix), the cache is not used.
//!
//! Loading a compiled artifact is `unsafe` in both engines (the bytes become
//! machine code), so the `module-cache` feature holds the host's only
//! `unsafe` blocks: one per engine, in its [`Compiler::load`], each given
//! only bytes whose tag verified here.

use crate::error::Error;
use sha2::{Digest, Sha256};
#[cfg(not(unix))]
use std::path::Path;

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

#[cfg(unix)]
pub(crate) use unix::load_or_compile;

/// Compiles `wasm`: a file's owner cannot be checked here.
#[cfg(not(unix))]
pub(crate) fn load_or_compile<C: Compiler>(dir: &Path, compiler: &C, wasm: &[u8]) -> Result<C::Module, Error> {
    tracing::warn!(target: "http_wasm", "cache directory {} not used: a file's owner can only be checked on Unix", dir.display());
    compiler.compile(wasm)
}

#[cfg(unix)]
mod unix {
    use super::Compiler;
    use crate::error::Error;
    use hmac::{Hmac, Mac};
    use rustix::fs::{AtFlags, Mode, OFlags};
    use rustix::io::Errno;
    use sha2::{Digest, Sha256};
    use std::fs::{File, Metadata, Permissions};
    use std::io::{Read, Write};
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    use std::path::Path;

    /// The largest entry read back, 256 MiB: a larger file is recompiled,
    /// never read into memory.
    const MAX_ENTRY: u64 = 256 << 20;
    const MAGIC: &[u8; 8] = b"HWASMC02";
    const TAG: usize = 32;
    const HEADER: usize = MAGIC.len() + TAG;
    const KEY_FILE: &str = "key";
    const KEY_LEN: usize = 32;

    /// Opening an existing file: never through a symlink, never blocking on
    /// a FIFO.
    const READ: OFlags = OFlags::RDONLY.union(OFlags::NOFOLLOW).union(OFlags::NONBLOCK).union(OFlags::CLOEXEC);
    /// Creating a new file: only if nothing (not even a symlink) is there.
    const CREATE: OFlags =
        OFlags::WRONLY.union(OFlags::CREATE).union(OFlags::EXCL).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

    /// Loads the compiled `wasm` from `dir`, or compiles it and stores it there.
    pub(crate) fn load_or_compile<C: Compiler>(dir: &Path, compiler: &C, wasm: &[u8]) -> Result<C::Module, Error> {
        let cache = match CacheDir::open(dir) {
            Ok(cache) => cache,
            Err(reason) => {
                tracing::warn!(target: "http_wasm", "cache directory {} not used: {reason}; compiling", dir.display());
                return compiler.compile(wasm);
            }
        };
        let entry = Entry::new(&compiler.id(), wasm);
        let shown = dir.join(&entry.name);
        match cache.read(&entry) {
            Ok(Some(payload)) => match compiler.load(&payload) {
                Ok(module) => return Ok(module),
                Err(e) => {
                    tracing::warn!(target: "http_wasm", "cache entry {} rejected by the engine: {e}; recompiling", shown.display());
                }
            },
            Ok(None) => {}
            Err(reason) => {
                tracing::warn!(target: "http_wasm", "cache entry {} not used: {reason}; recompiling", shown.display());
            }
        }
        let module = compiler.compile(wasm)?;
        match compiler.serialize(&module) {
            Ok(payload) => {
                if let Err(reason) = cache.write(&entry, &payload) {
                    tracing::warn!(target: "http_wasm", "cache entry {} not written: {reason}", shown.display());
                }
            }
            Err(e) => tracing::warn!(target: "http_wasm", error = %e, "could not serialize the compiled module"),
        }
        Ok(module)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// A name no other writer uses, for a file about to be renamed or linked.
    fn temp_name(stem: &str) -> Result<String, String> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(|e| format!("no random bytes: {e}"))?;
        Ok(format!(".{stem}.{}.{}.tmp", std::process::id(), hex(&nonce)))
    }

    /// Why `meta` is not a file of the effective user that no one else may
    /// write to.
    fn not_private(meta: &Metadata, euid: u32) -> Option<String> {
        if meta.uid() != euid {
            return Some(format!("owned by uid {}, not {euid}", meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            return Some(format!("writable by group or others (mode {:o})", meta.mode() & 0o7777));
        }
        None
    }

    /// A module's entry: its key and its file name.
    struct Entry {
        key: [u8; 32],
        name: String,
    }

    impl Entry {
        fn new(engine_id: &[u8], wasm: &[u8]) -> Entry {
            let mut h = Sha256::new();
            h.update(engine_id);
            h.update(env!("CARGO_PKG_VERSION").as_bytes());
            h.update((wasm.len() as u64).to_le_bytes());
            h.update(wasm);
            let key: [u8; 32] = h.finalize().into();
            Entry { name: format!("{}.cwasm", hex(&key)), key }
        }
    }

    /// A cache directory that passed its checks, with its key.
    pub(super) struct CacheDir {
        /// The directory, opened without following a symlink: every file is
        /// opened relative to it.
        dir: File,
        /// HMAC-SHA256 keyed with the directory's key.
        mac: Hmac<Sha256>,
        euid: u32,
    }

    impl CacheDir {
        /// Opens `path` (created if missing) and its key, or says why not.
        pub(super) fn open(path: &Path) -> Result<CacheDir, String> {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(path)
                .map_err(|e| format!("cannot create it: {e}"))?;
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let dir = match rustix::fs::open(path, flags, Mode::empty()) {
                Ok(fd) => File::from(fd),
                // Linux says ENOTDIR for a symlink opened with O_DIRECTORY.
                Err(e @ (Errno::LOOP | Errno::NOTDIR))
                    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) =>
                {
                    return Err(format!("it is a symlink ({e})"));
                }
                Err(e) => return Err(format!("cannot open it: {e}")),
            };
            let meta = dir.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
            if !meta.is_dir() {
                return Err("not a directory".into());
            }
            let euid = rustix::process::geteuid().as_raw();
            if let Some(reason) = not_private(&meta, euid) {
                return Err(reason);
            }
            let key = read_key(&dir, euid)?;
            let mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| format!("its key: {e}"))?;
            Ok(CacheDir { dir, mac, euid })
        }

        fn tag(&self, entry: &Entry, payload: &[u8]) -> Hmac<Sha256> {
            let mut mac = self.mac.clone();
            mac.update(MAGIC);
            mac.update(&entry.key);
            mac.update(payload);
            mac
        }

        /// The entry's payload once its tag verified; `None` if there is no
        /// entry; why not otherwise.
        fn read(&self, entry: &Entry) -> Result<Option<Vec<u8>>, String> {
            let file = match rustix::fs::openat(&self.dir, &entry.name, READ, Mode::empty()) {
                Ok(fd) => File::from(fd),
                Err(Errno::NOENT) => return Ok(None),
                Err(Errno::LOOP) => return Err("it is a symlink".into()),
                Err(e) => return Err(format!("cannot open it: {e}")),
            };
            let meta = file.metadata().map_err(|e| format!("cannot stat it: {e}"))?;
            if !meta.is_file() {
                return Err("not a regular file".into());
            }
            if let Some(reason) = not_private(&meta, self.euid) {
                return Err(reason);
            }
            if meta.len() > MAX_ENTRY {
                return Err(format!("{} bytes, over the limit of {MAX_ENTRY}", meta.len()));
            }
            let mut header = [0u8; HEADER];
            let mut file = file.take(MAX_ENTRY);
            file.read_exact(&mut header).map_err(|e| format!("no header: {e}"))?;
            if &header[..MAGIC.len()] != MAGIC {
                return Err("not of this format (magic)".into());
            }
            let mut payload = Vec::with_capacity((meta.len() as usize).saturating_sub(HEADER));
            file.read_to_end(&mut payload).map_err(|e| format!("cannot read it: {e}"))?;
            self.tag(entry, &payload)
                .verify_slice(&header[MAGIC.len()..])
                .map_err(|_| "its tag does not verify: damaged, or not written here for this module")?;
            Ok(Some(payload))
        }

        /// Writes the entry under a temporary name and renames it into place.
        fn write(&self, entry: &Entry, payload: &[u8]) -> Result<(), String> {
            if payload.len() as u64 > MAX_ENTRY - HEADER as u64 {
                return Err(format!("{} bytes of compiled code, over the limit of {MAX_ENTRY}", payload.len()));
            }
            let tag = self.tag(entry, payload).finalize().into_bytes();
            let temp = temp_name(&entry.name)?;
            write_new(&self.dir, &temp, &[MAGIC, &tag[..], payload])?;
            rustix::fs::renameat(&self.dir, &temp, &self.dir, &entry.name).map_err(|e| {
                let _ = rustix::fs::unlinkat(&self.dir, &temp, AtFlags::empty());
                format!("cannot rename it into place: {e}")
            })
        }
    }

    /// Creates `name` in `dir` (mode 0600; failing if anything is there) and
    /// writes `parts` to disk; the file is removed again if that fails.
    fn write_new(dir: &File, name: &str, parts: &[&[u8]]) -> Result<(), String> {
        let mut file = match rustix::fs::openat(dir, name, CREATE, Mode::from_raw_mode(0o600)) {
            Ok(fd) => File::from(fd),
            Err(e) => return Err(format!("cannot create {name}: {e}")),
        };
        // The mode exactly 0600, whatever the umask took away.
        let written = file
            .set_permissions(Permissions::from_mode(0o600))
            .and_then(|()| parts.iter().try_for_each(|part| file.write_all(part)))
            .and_then(|()| file.sync_all());
        written.map_err(|e| {
            let _ = rustix::fs::unlinkat(dir, name, AtFlags::empty());
            format!("cannot write {name}: {e}")
        })
    }

    /// The directory's key, created if missing; why it cannot be used
    /// otherwise.
    fn read_key(dir: &File, euid: u32) -> Result<[u8; KEY_LEN], String> {
        let open = || rustix::fs::openat(dir, KEY_FILE, READ, Mode::empty());
        let fd = match open() {
            Err(Errno::NOENT) => {
                create_key(dir)?;
                open()
            }
            other => other,
        };
        let file = match fd {
            Ok(fd) => File::from(fd),
            Err(Errno::LOOP) => return Err("its key file is a symlink".into()),
            Err(e) => return Err(format!("cannot open its key file: {e}")),
        };
        let meta = file.metadata().map_err(|e| format!("cannot stat its key file: {e}"))?;
        if !meta.is_file() {
            return Err("its key file is not a regular file".into());
        }
        if meta.uid() != euid {
            return Err(format!("its key file is owned by uid {}, not {euid}", meta.uid()));
        }
        if meta.mode() & 0o7777 != 0o600 {
            return Err(format!("its key file has mode {:o}, not 600", meta.mode() & 0o7777));
        }
        if meta.len() != KEY_LEN as u64 {
            return Err(format!("its key file holds {} bytes, not {KEY_LEN}", meta.len()));
        }
        let mut key = [0u8; KEY_LEN];
        (&file).read_exact(&mut key).map_err(|e| format!("cannot read its key file: {e}"))?;
        Ok(key)
    }

    /// Writes a new random key under a temporary name and links it to the
    /// key file's name, unless another build did so first.
    fn create_key(dir: &File) -> Result<(), String> {
        let mut key = [0u8; KEY_LEN];
        getrandom::fill(&mut key).map_err(|e| format!("no random bytes for its key: {e}"))?;
        let temp = temp_name(KEY_FILE)?;
        write_new(dir, &temp, &[&key])?;
        let linked = rustix::fs::linkat(dir, &temp, dir, KEY_FILE, AtFlags::empty());
        let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
        match linked {
            Ok(()) | Err(Errno::EXIST) => Ok(()),
            Err(e) => Err(format!("cannot create its key file: {e}")),
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    //! The reasons logged for a directory or key file that is not used (the
    //! behaviour itself is tested through the plugin in `tests/all/cache.rs`).

    use super::unix::CacheDir;
    use std::os::unix::fs::PermissionsExt;

    fn dir(name: &str, mode: u32) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("http-wasm-cache-unit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap();
        dir
    }

    fn refusal(path: &std::path::Path) -> String {
        CacheDir::open(path).err().expect("refused")
    }

    #[test]
    fn a_refused_directory_or_key_says_why() {
        let euid = rustix::process::geteuid().as_raw();
        let nobodys = dir("nobodys", 0o755);
        std::os::unix::fs::chown(&nobodys, Some(65534), None).expect("chown (the tests run as root)");
        assert_eq!(refusal(&nobodys), format!("owned by uid 65534, not {euid}"));
        let shared = dir("shared", 0o777);
        assert_eq!(refusal(&shared), "writable by group or others (mode 777)");
        let link = std::env::temp_dir().join(format!("http-wasm-cache-unit-{}-link", std::process::id()));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&nobodys, &link).unwrap();
        assert!(refusal(&link).starts_with("it is a symlink"), "{}", refusal(&link));
        let keyed = dir("keyed", 0o700);
        std::fs::write(keyed.join("key"), [0; 32]).unwrap();
        std::fs::set_permissions(keyed.join("key"), std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(refusal(&keyed), "its key file has mode 644, not 600");
        std::fs::set_permissions(keyed.join("key"), std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(CacheDir::open(&keyed).is_ok());
        for path in [nobodys, shared, keyed] {
            let _ = std::fs::remove_dir_all(path);
        }
        let _ = std::fs::remove_file(&link);
    }
}
