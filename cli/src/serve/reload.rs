//! Reloading filter modules while `serve` runs: when a module's file
//! changes on disk (polled), and on SIGHUP (which also fetches `http(s)://`
//! and `oci://` modules again, and reads the listener's TLS certificate
//! and key again).
//!
//! Only the module is re-read: its configuration, the flags and Dapr
//! metadata stay as they were at start. A module that cannot be read or
//! fails to load is logged at `warn` and the old one keeps serving; the
//! swap itself is [`Plugin::reload`](tower_http_wasm::Plugin::reload)'s
//! (atomic, requests in flight finish on the old module).

use super::pipeline::Loaded;
use super::tls::ServerCert;
use crate::module_source::{self, Fetch};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::time::MissedTickBehavior;

/// What is compared to notice a change: modification time, length and
/// (on Unix) the file's identity, so that a file renamed over the old one
/// counts as a change even with the same time and length.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    id: (u64, u64),
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let id = {
        use std::os::unix::fs::MetadataExt;
        (m.dev(), m.ino())
    };
    #[cfg(not(unix))]
    let id = (0, 0);
    Some(Stamp { modified: m.modified().ok(), len: m.len(), id })
}

/// One filter whose module comes from a file.
struct Watched {
    filter: Loaded,
    path: PathBuf,
    /// The file as last seen (`None`: it could not be read, or the module
    /// is fetched: polling never reloads it, SIGHUP does).
    seen: Option<Stamp>,
    /// How a module from `http(s)://` or `oci://` is fetched again.
    fetch: Fetch,
}

impl Watched {
    /// Re-reads the module and reloads it, on the blocking pool (reading
    /// and compiling block). Failures are logged; the old module stays.
    async fn reload(&mut self, why: &'static str) {
        let (name, path, plugin) = (self.filter.name.clone(), self.path.clone(), self.filter.plugin.clone());
        let fetch = self.fetch.clone();
        let task = tokio::task::spawn_blocking(move || {
            let wasm =
                module_source::load(&path, &fetch).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            plugin.reload(&wasm).map_err(|e| e.to_string())
        });
        match task.await {
            Ok(Ok(())) => {
                tracing::info!(target: "http_wasm::serve", filter = %name, file = %self.path.display(), why, "filter reloaded");
            }
            Ok(Err(error)) => {
                tracing::warn!(target: "http_wasm::serve", filter = %name, file = %self.path.display(), why, %error, "reload failed; the old module keeps serving");
            }
            Err(e) => {
                tracing::warn!(target: "http_wasm::serve", filter = %name, error = %e, "reload task failed; the old module keeps serving");
            }
        }
    }
}

/// A future that completes at each SIGHUP (never, off Unix or if the
/// signal cannot be installed).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Hangup {
        #[cfg(unix)]
        {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
                Ok(signal) => Hangup { signal: Some(signal) },
                Err(e) => {
                    tracing::warn!(target: "http_wasm::serve", error = %e, "cannot handle SIGHUP; no reload on signal");
                    Hangup { signal: None }
                }
            }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal
            && signal.recv().await.is_some()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Reads the listener's certificate and key again (on the blocking pool);
/// a pair that fails to load is logged and the old one keeps serving.
async fn reload_cert(cert: &Arc<ServerCert>) {
    let task = tokio::task::spawn_blocking({
        let cert = cert.clone();
        move || cert.reload()
    });
    let file = cert.cert_path().display();
    match task.await {
        Ok(Ok(())) => tracing::info!(target: "http_wasm::serve", %file, "TLS certificate reloaded"),
        Ok(Err(error)) => {
            tracing::warn!(target: "http_wasm::serve", %file, %error, "TLS certificate reload failed; the old certificate keeps serving")
        }
        Err(error) => {
            tracing::warn!(target: "http_wasm::serve", %file, %error, "TLS certificate reload task failed; the old certificate keeps serving")
        }
    }
}

/// The next tick, or never without an interval.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Watches the filters' module files every `interval` (`None`: no
/// polling) and reloads every filter on SIGHUP. Runs until the runtime
/// stops. SIGHUP is handled (not fatal) as soon as this function is
/// called, even when no filter has a file (the built-in demo); it also
/// reloads `cert`, the listener's TLS certificate, first.
pub fn spawn(filters: &[Loaded], interval: Option<Duration>, fetch: Fetch, cert: Option<Arc<ServerCert>>) {
    let mut watched: Vec<Watched> = filters
        .iter()
        .filter_map(|f| {
            let path = f.path.clone()?;
            Some(Watched { filter: f.clone(), seen: stamp(&path), path, fetch: fetch.clone() })
        })
        .collect();
    let mut hangup = Hangup::install();
    tokio::spawn(async move {
        let mut tick = interval.map(|every| {
            let mut t = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
            t
        });
        loop {
            let signalled = tokio::select! {
                () = hangup.recv() => true,
                () = next_tick(&mut tick) => false,
            };
            if signalled {
                if let Some(cert) = &cert {
                    reload_cert(cert).await;
                }
                tracing::info!(target: "http_wasm::serve", filters = watched.len(), "SIGHUP: reloading every filter module");
            }
            for w in &mut watched {
                let now = stamp(&w.path);
                if signalled {
                    w.seen = now;
                    w.reload("SIGHUP").await;
                } else if now != w.seen {
                    w.seen = now.clone();
                    match now {
                        Some(_) => w.reload("file changed").await,
                        None => {
                            tracing::warn!(target: "http_wasm::serve", filter = %w.filter.name, file = %w.path.display(), "module file unreadable; the old module keeps serving")
                        }
                    }
                }
            }
        }
    });
}
