//! The compiled-module cache: an entry serves like a compiled module; a
//! damaged or forged entry is recompiled, never loaded; a directory, entry or
//! key file that someone else could have planted or changed is not used.
//!
//! The tests run as root (as the project's machines do): they hand files to
//! uid 65534 (`nobody`) with `chown`, as another user would have made them.

#[cfg(all(unix, feature = "module-cache"))]
use fixture::*;

/// Cache directories, entries and the plugins built on them.
#[cfg(all(unix, feature = "module-cache"))]
mod fixture {
    pub use crate::harness::*;
    pub use crate::reload::versioned;
    pub use std::os::unix::fs::{MetadataExt, PermissionsExt};
    pub use std::path::{Path, PathBuf};
    use tower_http_wasm::Engine;

    /// Something done to a file, as another user could have.
    pub type Change = Box<dyn Fn(&Path)>;

    /// Another user's uid.
    pub const NOBODY: u32 = 65534;

    /// A path for a cache directory, with nothing there yet.
    pub fn cache_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("http-wasm-cache-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    /// A directory of ours, made with `mode`.
    pub fn made_dir(name: &str, mode: u32) -> PathBuf {
        let dir = cache_dir(name);
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, mode);
        dir
    }

    /// Every file in `dir`, sorted.
    pub fn files(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
        v.sort();
        v
    }

    /// The compiled modules in `dir`: its files but the key.
    pub fn entries(dir: &Path) -> Vec<PathBuf> {
        files(dir).into_iter().filter(|p| p.extension().is_some_and(|e| e == "cwasm")).collect()
    }

    /// Builds `wasm` with the cache in `dir` and returns the `x-version` its
    /// plugin answers a request with, through the tower service.
    pub async fn answer(engine: Engine, dir: &Path, wasm: &[u8]) -> String {
        let plugin = builder(engine).cache_dir(dir).build(wasm).unwrap_or_else(|e| panic!("[{engine}] build: {e}"));
        let got = send(&plugin, get("/")).await;
        assert_eq!(got.status, 200, "[{engine}]");
        got.header("x-version").to_string()
    }

    /// Builds `wasm` with the cache in `dir` and returns the entry that appeared.
    pub fn new_entry(engine: Engine, dir: &Path, wasm: &[u8]) -> PathBuf {
        let before = if dir.exists() { entries(dir) } else { Vec::new() };
        builder(engine).cache_dir(dir).build(wasm).unwrap();
        let mut added: Vec<_> = entries(dir).into_iter().filter(|p| !before.contains(p)).collect();
        assert_eq!(added.len(), 1, "[{engine}] one new entry: {added:?}");
        added.remove(0)
    }

    pub fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    /// Writes `bytes` to a new file of ours with `mode`.
    pub fn write_with_mode(path: &Path, bytes: &[u8], mode: u32) {
        std::fs::write(path, bytes).unwrap();
        chmod(path, mode);
    }

    pub fn give_to_nobody(path: &Path) {
        std::os::unix::fs::chown(path, Some(NOBODY), Some(NOBODY)).expect("chown to uid 65534 (the tests run as root)");
    }

    pub fn unhex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }
}

#[cfg(all(unix, feature = "module-cache"))]
tower_http_wasm::per_engine! {
    #[tokio::test]
    async fn a_cached_module_serves_like_a_compiled_one(engine) {
        let dir = cache_dir(&format!("serve-{engine}"));
        let wasm = versioned('c');
        let cold = builder(engine).cache_dir(&dir).build(&wasm).unwrap();
        let written = entries(&dir);
        assert_eq!(written.len(), 1, "[{engine}] one entry: {written:?}");
        let stamp = std::fs::metadata(&written[0]).unwrap().modified().unwrap();
        let warm = builder(engine).cache_dir(&dir).build(&wasm).unwrap();
        assert_eq!(
            std::fs::metadata(&written[0]).unwrap().modified().unwrap(),
            stamp,
            "[{engine}] read, not rewritten"
        );
        for plugin in [cold, warm] {
            let got = send(&plugin, get("/")).await;
            assert_eq!((got.status, got.header("x-version")), (200, "c"), "[{engine}]");
        }
        // Another module is another entry.
        builder(engine).cache_dir(&dir).build(versioned('d')).unwrap();
        assert_eq!(entries(&dir).len(), 2, "[{engine}]");
        // The directory, its key and its entries are the owner's alone.
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&dir), 0o700, "[{engine}] the directory");
        let key = dir.join("key");
        assert_eq!((mode(&key), std::fs::metadata(&key).unwrap().len()), (0o600, 32), "[{engine}] the key");
        assert_eq!(files(&dir).len(), 3, "[{engine}] the key and two entries, no temporary file left");
        for entry in entries(&dir) {
            assert_eq!(mode(&entry), 0o600, "[{engine}] {}", entry.display());
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_truncated_or_altered_cache_file_is_recompiled_not_loaded(engine) {
        let dir = cache_dir(&format!("damage-{engine}"));
        let wasm = versioned('e');
        builder(engine).cache_dir(&dir).build(&wasm).unwrap();
        let file = entries(&dir).remove(0);
        let good = std::fs::read(&file).unwrap();
        let damages: [(&str, Vec<u8>); 4] = [
            ("truncated", good[..good.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("one bit flipped in the code", {
                let mut b = good.clone();
                let at = b.len() - 100;
                b[at] ^= 1;
                b
            }),
            ("magic changed", {
                let mut b = good.clone();
                b[0] = b'X';
                b
            }),
        ];
        for (what, bytes) in damages {
            std::fs::write(&file, &bytes).unwrap();
            let plugin = builder(engine).cache_dir(&dir).build(&wasm).unwrap();
            let got = send(&plugin, get("/")).await;
            assert_eq!((got.status, got.header("x-version")), (200, "e"), "[{engine}] {what}");
            assert_eq!(std::fs::read(&file).unwrap(), good, "[{engine}] {what}: the entry was rewritten whole");
        }
        // A file past the size cap (sparse: no disk used) is not read.
        std::fs::File::options().write(true).open(&file).unwrap().set_len((256 << 20) + 1).unwrap();
        assert_eq!(answer(engine, &dir, &wasm).await, "e", "[{engine}] over the cap");
        assert_eq!(std::fs::read(&file).unwrap(), good, "[{engine}] over the cap: rewritten");
        // An intact entry of another module under this module's name is refused too.
        builder(engine).cache_dir(&dir).build(versioned('f')).unwrap();
        let other = entries(&dir).into_iter().find(|p| *p != file).unwrap();
        std::fs::copy(&other, &file).unwrap();
        let got = send(&builder(engine).cache_dir(&dir).build(&wasm).unwrap(), get("/")).await;
        assert_eq!(got.header("x-version"), "e", "[{engine}] renamed entry");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_directory_others_may_write_to_is_not_used(engine) {
        for mode in [0o777, 0o770, 0o703] {
            let dir = made_dir(&format!("shared-{mode:o}-{engine}"), mode);
            assert_eq!(answer(engine, &dir, &versioned('g')).await, "g", "[{engine}] {mode:o}");
            assert!(files(&dir).is_empty(), "[{engine}] nothing written to a directory of mode {mode:o}");
            let _ = std::fs::remove_dir_all(&dir);
        }
    }

    #[tokio::test]
    async fn a_directory_owned_by_another_user_is_not_used(engine) {
        let dir = made_dir(&format!("nobodys-{engine}"), 0o755);
        give_to_nobody(&dir);
        assert_eq!(answer(engine, &dir, &versioned('g')).await, "g", "[{engine}]");
        assert!(files(&dir).is_empty(), "[{engine}] nothing written to another user's directory");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_directory_that_is_a_symlink_is_not_used(engine) {
        let real = made_dir(&format!("link-target-{engine}"), 0o700);
        let link = cache_dir(&format!("link-{engine}"));
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert_eq!(answer(engine, &link, &versioned('g')).await, "g", "[{engine}]");
        assert!(files(&real).is_empty(), "[{engine}] nothing written through the link");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "[{engine}]");
        let _ = std::fs::remove_file(&link);
        let _ = std::fs::remove_dir_all(&real);
    }

    #[tokio::test]
    async fn an_entry_another_user_owns_or_may_write_is_not_loaded(engine) {
        let dir = cache_dir(&format!("entry-owner-{engine}"));
        let wasm = versioned('b');
        let entry = new_entry(engine, &dir, &wasm);
        let good = std::fs::read(&entry).unwrap();
        let ours = std::fs::metadata(&dir).unwrap().uid();
        let changes: [(&str, Change); 3] = [
            ("owned by uid 65534", Box::new(give_to_nobody)),
            ("writable by others", Box::new(|p| chmod(p, 0o602))),
            ("writable by the group", Box::new(|p| chmod(p, 0o620))),
        ];
        for (what, change) in &changes {
            change(&entry);
            let inode = std::fs::metadata(&entry).unwrap().ino();
            assert_eq!(answer(engine, &dir, &wasm).await, "b", "[{engine}] {what}");
            // Loading never writes: a new file in its place shows that it was
            // recompiled, not loaded.
            let now = std::fs::metadata(&entry).unwrap();
            assert_ne!(now.ino(), inode, "[{engine}] {what}: replaced, not loaded");
            assert_eq!((now.uid(), now.mode() & 0o777), (ours, 0o600), "[{engine}] {what}");
            assert_eq!(std::fs::read(&entry).unwrap(), good, "[{engine}] {what}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_entry_that_is_a_symlink_is_not_followed(engine) {
        let dir = cache_dir(&format!("entry-link-{engine}"));
        let wasm = versioned('b');
        let entry = new_entry(engine, &dir, &wasm);
        let good = std::fs::read(&entry).unwrap();
        let elsewhere = made_dir(&format!("entry-link-elsewhere-{engine}"), 0o700);
        for target in [dir.join("copy-of-the-entry"), elsewhere.join("entry")] {
            write_with_mode(&target, &good, 0o600);
            std::fs::remove_file(&entry).unwrap();
            std::os::unix::fs::symlink(&target, &entry).unwrap();
            assert_eq!(answer(engine, &dir, &wasm).await, "b", "[{engine}] {}", target.display());
            let now = std::fs::symlink_metadata(&entry).unwrap();
            assert!(now.file_type().is_file(), "[{engine}] {}: the link was replaced by an entry", target.display());
            assert_eq!(std::fs::read(&entry).unwrap(), good, "[{engine}]");
            assert_eq!(std::fs::read(&target).unwrap(), good, "[{engine}] the link's target is left alone");
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&elsewhere);
    }

    /// The attack of issue 15: someone who may write the directory puts
    /// module A's compiled code under module B's name, with the digest
    /// recomputed as the file format says.
    #[tokio::test]
    async fn another_modules_code_under_a_recomputed_digest_is_not_loaded(engine) {
        use sha2::Digest;
        let dir = cache_dir(&format!("forged-{engine}"));
        let (a, b) = (versioned('a'), versioned('b'));
        let entry_a = new_entry(engine, &dir, &a);
        let entry_b = new_entry(engine, &dir, &b);
        let (good_a, good_b) = (std::fs::read(&entry_a).unwrap(), std::fs::read(&entry_b).unwrap());
        // What the format gives away: a file is named by the hex of its key
        // and holds an 8-byte magic, a 32-byte tag and the payload.
        let key_b = unhex(entry_b.file_stem().unwrap().to_str().unwrap());
        let payload_a = &good_a[40..];
        let forge = |magic: &[u8]| {
            let digest = sha2::Sha256::new().chain_update(&key_b).chain_update(payload_a).finalize();
            [magic, &digest[..], payload_a].concat()
        };
        let forgeries = [
            ("A's code with the first format's SHA-256 of B's key and A's code", forge(b"HWASMC01")),
            ("A's code with the current magic and a SHA-256 of B's key and A's code", forge(&good_a[..8])),
            ("A's entry as it is", good_a.clone()),
        ];
        for (what, bytes) in forgeries {
            // Planted as a writer of the directory would: a new file renamed over B's.
            let planted = dir.join("planted");
            write_with_mode(&planted, &bytes, 0o600);
            std::fs::rename(&planted, &entry_b).unwrap();
            assert_eq!(answer(engine, &dir, &b).await, "b", "[{engine}] {what}: B answers as B");
            assert_eq!(std::fs::read(&entry_b).unwrap(), good_b, "[{engine}] {what}: B's entry was rewritten");
        }
        // A's entry file itself moved over B's.
        std::fs::rename(&entry_a, &entry_b).unwrap();
        assert_eq!(answer(engine, &dir, &b).await, "b", "[{engine}] A's entry moved");
        assert_eq!(std::fs::read(&entry_b).unwrap(), good_b, "[{engine}] A's entry moved: rewritten");
        assert_eq!(answer(engine, &dir, &a).await, "a", "[{engine}] A is recompiled");
        assert_eq!(std::fs::read(&entry_a).unwrap(), good_a, "[{engine}]");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_key_file_that_is_not_the_owners_alone_disables_the_cache(engine) {
        let elsewhere = made_dir(&format!("key-elsewhere-{engine}"), 0o700);
        let good_key = elsewhere.join("key");
        write_with_mode(&good_key, &[7; 32], 0o600);
        let target = good_key.clone();
        let cases: [(&str, Change); 7] = [
            ("readable by others", Box::new(|k| write_with_mode(k, &[7; 32], 0o604))),
            ("readable by the group", Box::new(|k| write_with_mode(k, &[7; 32], 0o640))),
            ("owned by uid 65534", Box::new(|k| {
                write_with_mode(k, &[7; 32], 0o600);
                give_to_nobody(k);
            })),
            ("31 bytes", Box::new(|k| write_with_mode(k, &[7; 31], 0o600))),
            ("33 bytes", Box::new(|k| write_with_mode(k, &[7; 33], 0o600))),
            ("a symlink to a good key elsewhere", Box::new(move |k| std::os::unix::fs::symlink(&target, k).unwrap())),
            ("a directory", Box::new(|k| std::fs::create_dir(k).unwrap())),
        ];
        for (i, (what, plant)) in cases.iter().enumerate() {
            let dir = made_dir(&format!("key-{i}-{engine}"), 0o700);
            let key = dir.join("key");
            plant(&key);
            let before = std::fs::symlink_metadata(&key).unwrap();
            assert_eq!(answer(engine, &dir, &versioned('k')).await, "k", "[{engine}] key {what}");
            assert_eq!(files(&dir), std::slice::from_ref(&key), "[{engine}] key {what}: nothing written");
            let after = std::fs::symlink_metadata(&key).unwrap();
            assert_eq!(
                (after.ino(), after.mode(), after.uid(), after.len()),
                (before.ino(), before.mode(), before.uid(), before.len()),
                "[{engine}] key {what}: left as it was"
            );
            let _ = std::fs::remove_dir_all(&dir);
        }
        let _ = std::fs::remove_dir_all(&elsewhere);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn builds_racing_on_a_new_directory_agree_on_one_key(engine) {
        let dir = cache_dir(&format!("race-{engine}"));
        let wasm = versioned('r');
        let builds: Vec<_> = (0..4)
            .map(|_| {
                let (dir, wasm) = (dir.clone(), wasm.clone());
                std::thread::spawn(move || builder(engine).cache_dir(&dir).build(&wasm).unwrap())
            })
            .collect();
        for build in builds {
            let plugin = build.join().unwrap();
            assert_eq!(send(&plugin, get("/")).await.header("x-version"), "r", "[{engine}]");
        }
        let written = entries(&dir);
        assert_eq!((written.len(), files(&dir).len()), (1, 2), "[{engine}] one key, one entry: {:?}", files(&dir));
        let inode = std::fs::metadata(&written[0]).unwrap().ino();
        assert_eq!(answer(engine, &dir, &wasm).await, "r", "[{engine}]");
        assert_eq!(std::fs::metadata(&written[0]).unwrap().ino(), inode, "[{engine}] the entry was loaded");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(not(feature = "module-cache"))]
tower_http_wasm::per_engine! {
    #[test]
    fn cache_dir_without_the_feature_is_a_config_error(engine) {
        let err = crate::harness::builder(engine).cache_dir("/tmp").build(crate::reload::versioned('h')).unwrap_err();
        assert!(err.is_config(), "[{engine}] {err}");
    }
}
