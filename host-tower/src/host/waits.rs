//! The time a guest call spends waiting for the client's body.
//!
//! A guest's deadline bounds the time it computes, not the time the client
//! takes to send (spec §4, `PluginBuilder::deadline`): a body read that has
//! to wait parks the guest's thread, and that wait is recorded here so the
//! engine can leave it out of the call's deadline. The record is shared:
//! wasmer's deadline is watched from another thread than the one that waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Waits for the client's body by one instance, since it started.
#[derive(Debug)]
pub(crate) struct BodyWaits {
    origin: Instant,
    /// Nanoseconds of the waits that ended.
    ended: AtomicU64,
    /// When the wait in progress started, in nanoseconds since `origin`
    /// plus one; 0 when none is.
    since: AtomicU64,
}

impl Default for BodyWaits {
    fn default() -> BodyWaits {
        BodyWaits { origin: Instant::now(), ended: AtomicU64::new(0), since: AtomicU64::new(0) }
    }
}

impl BodyWaits {
    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Runs `wait`, recording the time it takes as a wait for the body.
    pub(crate) fn during<R>(&self, wait: impl FnOnce() -> R) -> R {
        let start = self.now();
        self.since.store(start + 1, Ordering::Release);
        let out = wait();
        let took = self.now().saturating_sub(start);
        // `ended` first: a reader between the two stores counts this wait
        // twice, never not at all (an overcount only gives the guest more time).
        self.ended.fetch_add(took, Ordering::AcqRel);
        self.since.store(0, Ordering::Release);
        out
    }

    /// The waits so far, the one in progress included.
    pub(crate) fn total(&self) -> Duration {
        let since = self.since.load(Ordering::Acquire);
        let ended = self.ended.load(Ordering::Acquire);
        let current = if since == 0 { 0 } else { self.now().saturating_sub(since - 1) };
        Duration::from_nanos(ended.saturating_add(current))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_counts_while_it_lasts_and_after() {
        let waits = BodyWaits::default();
        assert_eq!(waits.total(), Duration::ZERO);
        let inside = waits.during(|| {
            std::thread::sleep(Duration::from_millis(20));
            waits.total()
        });
        assert!(inside >= Duration::from_millis(20), "{inside:?}");
        assert!(waits.total() >= inside);
    }
}
