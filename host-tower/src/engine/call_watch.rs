//! How a wasmer guest call is stopped at its deadline.
//!
//! Wasmer interrupts a store with a signal to its thread, and its signal
//! handler allocates (it records a backtrace). If the signal lands while the
//! instance thread is itself allocating — in a host function, or in wasmer's
//! own code around one — the thread deadlocks on the allocator's lock and
//! never answers. The fuzzer found this; a guest that calls a host function
//! in a loop hits it within a few dozen deadlines. So the signal is only the
//! last resort:
//!
//! 1. Past the deadline the call's [`CallWatch`] is marked expired, and every
//!    host function then traps at its entry or exit ([`CallWatch::enter`],
//!    [`CallWatch::leave`]): a guest that makes host calls stops at its next
//!    one, without a signal.
//! 2. Only a guest that made no host call for a whole poll interval and is
//!    not inside one — computing in WebAssembly, where the signal is safe — is
//!    sent wasmer's interrupt, again each interval until it answers.
//! 3. A thread that still has not answered [`ABANDON_AFTER`] past its
//!    deadline is abandoned: the call fails with a timeout, the instance is
//!    discarded, and the thread is left to itself (logged as an error). The
//!    host never hangs on a guest.
//!
//! Time the guest spends waiting for the client's body does not count
//! ([`BodyWaits`]).

use crate::host::waits::BodyWaits;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use wasmer::Interrupter;

/// How often the waiting side looks at an expired call.
const POLL: Duration = Duration::from_millis(10);

/// How long past its deadline a call that does not stop is waited for.
pub(crate) const ABANDON_AFTER: Duration = Duration::from_secs(5);

/// What the instance thread and the side waiting for it share about the
/// call in progress.
#[derive(Debug, Default)]
pub(crate) struct CallWatch {
    /// True while the guest is inside a host function.
    in_host: AtomicBool,
    /// Host calls made so far: the waiting side sees the guest's progress.
    host_calls: AtomicU64,
    /// Set past the deadline: host functions trap.
    expired: AtomicBool,
}

/// A host call made after the call's deadline.
#[derive(Debug)]
pub(crate) struct Expired;

impl CallWatch {
    /// At a host function's entry.
    pub(crate) fn enter(&self) -> Result<(), Expired> {
        if self.expired.load(Ordering::Acquire) {
            return Err(Expired);
        }
        self.in_host.store(true, Ordering::Release);
        // One writer (the instance thread): no read-modify-write needed.
        self.host_calls.store(self.host_calls.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
        Ok(())
    }

    /// At a host function's exit.
    pub(crate) fn leave(&self) -> Result<(), Expired> {
        self.in_host.store(false, Ordering::Release);
        if self.expired.load(Ordering::Acquire) { Err(Expired) } else { Ok(()) }
    }

    /// Before a new call on the instance thread.
    pub(crate) fn reset(&self) {
        self.expired.store(false, Ordering::Release);
    }
}

/// How a wait for a guest call ended.
pub(crate) enum Waited<T> {
    /// The answer, within the deadline.
    InTime(T),
    /// The answer, after the call was stopped at its deadline.
    Stopped(T),
    /// The instance thread ended without answering.
    Ended,
    /// The thread did not stop within [`ABANDON_AFTER`] past the deadline.
    Abandoned,
}

/// Waits for `rx`, the answer of a call that may compute for `deadline`,
/// not counting its waits for the body; past it, stops the call as the
/// module docs say.
pub(crate) fn wait_for<T>(
    rx: &mpsc::Receiver<T>,
    deadline: Duration,
    watch: &CallWatch,
    waits: &BodyWaits,
    interrupter: &Interrupter,
) -> Waited<T> {
    match super::wasmer::spin(rx) {
        Ok(v) => return Waited::InTime(v),
        Err(mpsc::TryRecvError::Disconnected) => return Waited::Ended,
        Err(mpsc::TryRecvError::Empty) => {}
    }
    let start = Instant::now();
    let waits_at_start = waits.total();
    // The time the call computed, its body waits left out.
    let ran = || start.elapsed().saturating_sub(waits.total().saturating_sub(waits_at_start));
    loop {
        let left = deadline.saturating_sub(ran());
        if left.is_zero() {
            break;
        }
        match rx.recv_timeout(left) {
            Ok(v) => return Waited::InTime(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Waited::Ended,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    watch.expired.store(true, Ordering::Release);
    let mut seen = watch.host_calls.load(Ordering::Acquire);
    loop {
        match rx.recv_timeout(POLL) {
            Ok(v) => return Waited::Stopped(v),
            Err(mpsc::RecvTimeoutError::Disconnected) => return Waited::Ended,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if ran() > deadline + ABANDON_AFTER {
            return Waited::Abandoned;
        }
        let calls = watch.host_calls.load(Ordering::Acquire);
        if calls == seen && !watch.in_host.load(Ordering::Acquire) {
            interrupter.interrupt();
        }
        seen = calls;
    }
}
