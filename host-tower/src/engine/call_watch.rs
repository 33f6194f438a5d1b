//! How a wasmer guest call is stopped at its deadline.
//!
//! Wasmer 7.3 can interrupt a store with a signal to its thread, but its
//! signal handler allocates and unwinds from wherever the thread is on the
//! WebAssembly stack: inside a host function, a libcall (`memory.grow`) or
//! wasmer's own bookkeeping after a host call, where it holds `malloc`'s or
//! a shared lock. The fuzzer found both deadlocks (the second one took the
//! lock of wasmer's global interrupt registry with it, which would hang every
//! later wasmer store of the process). So this backend sends no signal:
//!
//! 1. **Operators.** Modules are compiled with wasmer's metering middleware;
//!    each call may execute [`operator_budget`] operators — the deadline
//!    times [`OPERATORS_PER_SECOND`] — and traps when they are spent. This
//!    bounds a guest that computes without host calls, deterministically,
//!    though only roughly in time (see [`OPERATORS_PER_SECOND`]).
//! 2. **Wall time.** Past the deadline (its body waits left out) the call's
//!    [`CallWatch`] is marked expired, and every host function then traps at
//!    its entry or exit ([`CallWatch::enter`], [`CallWatch::leave`]): a guest
//!    that makes host calls stops at its next one.
//! 3. A call that has not answered [`ABANDON_AFTER`] past its deadline (it
//!    cannot outlive its operators, but may run on a slow machine) is
//!    given up on: the request fails with a timeout, the instance is
//!    discarded, and its thread ends by itself when its operators run out.
//!
//! Time the guest spends waiting for the client's body does not count
//! ([`BodyWaits`]).
//!
//! An instance bound to the caller's thread (`wasmer_bound::Bound`) has no
//! waiting side: its call is armed with the instant its deadline passes
//! ([`CallWatch::arm`]), and each host function compares the clock with
//! it. Such a call never waits for a body (a read that would wait fails),
//! so its deadline is wall time.

use crate::host::waits::BodyWaits;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedReceiver;

/// How often the waiting side looks at an expired call.
const POLL: Duration = Duration::from_millis(10);

/// Operators a call may execute per second of its deadline. A tight
/// metered loop (`loop br`) ran about 0.3 billion operators a second on
/// this project's 2-core machine under load: stopped after about 0.6 s at
/// a 100 ms deadline. Straight-line code runs more operators a second and
/// is stopped sooner, but not before its deadline unless it runs over two
/// billion a second. (A guest computing flat out for a whole deadline is
/// already far outside what a filter does per request.)
pub(crate) const OPERATORS_PER_SECOND: u64 = 2_000_000_000;

/// Operators one call of `deadline` may execute.
pub(crate) fn operator_budget(deadline: Duration) -> u64 {
    let budget = deadline.as_nanos().saturating_mul(u128::from(OPERATORS_PER_SECOND)) / 1_000_000_000;
    u64::try_from(budget).unwrap_or(u64::MAX).max(1)
}

/// How long past its deadline a call that does not stop is waited for.
pub(crate) const ABANDON_AFTER: Duration = Duration::from_secs(5);

/// What the instance thread and the side waiting for it share about the
/// call in progress.
#[derive(Debug, Default)]
pub(crate) struct CallWatch {
    /// Set past the wall-time deadline: host functions trap.
    expired: AtomicBool,
    /// For a call armed on its own thread: when its deadline passes, in
    /// nanoseconds since [`epoch`] (0: not armed).
    until: AtomicU64,
}

/// The instant armed deadlines count from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds from [`epoch`] to `at` (at least 1: 0 means not armed).
fn since_epoch(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX).max(1)
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
        match self.until.load(Ordering::Relaxed) {
            0 => Ok(()),
            until if since_epoch(Instant::now()) > until => Err(Expired),
            _ => Ok(()),
        }
    }

    /// Before a call that runs on the caller's thread: it expires
    /// `deadline` from now.
    pub(crate) fn arm(&self, deadline: Duration) {
        self.reset();
        let until = Instant::now().checked_add(deadline).map_or(u64::MAX, since_epoch);
        self.until.store(until, Ordering::Relaxed);
    }

    /// After a call [`arm`](Self::arm)ed.
    pub(crate) fn disarm(&self) {
        self.until.store(0, Ordering::Relaxed);
    }

    /// At a host function's exit (which may have waited past the deadline).
    pub(crate) fn leave(&self) -> Result<(), Expired> {
        self.enter()
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
    /// The answer, after the call's deadline passed.
    Stopped(T),
    /// The instance thread ended without answering.
    Ended,
    /// The call did not answer within [`ABANDON_AFTER`] past the deadline.
    Abandoned,
}

/// Why a receive with a timeout returned nothing.
pub(crate) enum NoAnswer {
    /// Not yet.
    Timeout,
    /// The answering side is gone.
    Gone,
}

impl From<mpsc::RecvTimeoutError> for NoAnswer {
    fn from(e: mpsc::RecvTimeoutError) -> NoAnswer {
        match e {
            mpsc::RecvTimeoutError::Timeout => NoAnswer::Timeout,
            mpsc::RecvTimeoutError::Disconnected => NoAnswer::Gone,
        }
    }
}

/// The time a call that started now has computed: the time since, its
/// body waits left out.
fn computing(waits: &BodyWaits) -> impl Fn() -> Duration + '_ {
    let start = Instant::now();
    let waits_at_start = waits.total();
    move || start.elapsed().saturating_sub(waits.total().saturating_sub(waits_at_start))
}

/// The schedule of one wait for a guest call's answer, shared by
/// [`wait_for`] and [`wait_for_answer`]: until the call has computed for
/// its deadline (its body waits left out), wait for what is left of it;
/// then mark the call expired and wait in steps of [`POLL`] until
/// [`ABANDON_AFTER`] past the deadline.
struct Schedule<'a, R> {
    ran: R,
    deadline: Duration,
    watch: &'a CallWatch,
    expired: bool,
}

/// The schedule of a call that starts now.
fn schedule<'a>(
    deadline: Duration,
    watch: &'a CallWatch,
    waits: &'a BodyWaits,
) -> Schedule<'a, impl Fn() -> Duration + 'a> {
    Schedule { ran: computing(waits), deadline, watch, expired: false }
}

impl<R: Fn() -> Duration> Schedule<'_, R> {
    /// How long the next wait may take; `None`: give the call up.
    fn next_wait(&mut self) -> Option<Duration> {
        if !self.expired {
            let left = self.deadline.saturating_sub((self.ran)());
            if !left.is_zero() {
                return Some(left);
            }
            self.expired = true;
            self.watch.expired.store(true, Ordering::Release);
            return Some(POLL);
        }
        ((self.ran)() <= self.deadline + ABANDON_AFTER).then_some(POLL)
    }

    /// What a wait that got an answer, or learnt there is none, ended with.
    fn waited<T>(&self, answer: Result<T, NoAnswer>) -> Option<Waited<T>> {
        match answer {
            Ok(v) if self.expired => Some(Waited::Stopped(v)),
            Ok(v) => Some(Waited::InTime(v)),
            Err(NoAnswer::Gone) => Some(Waited::Ended),
            Err(NoAnswer::Timeout) => None,
        }
    }
}

/// Waits on this thread for the answer of a call that may compute for
/// `deadline`, not counting its waits for the body, through `recv`, which
/// waits for it at most the time it is given; past the deadline, marks
/// the call expired (see the module docs).
pub(crate) fn wait_for<T, E: Into<NoAnswer>>(
    mut recv: impl FnMut(Duration) -> Result<T, E>,
    deadline: Duration,
    watch: &CallWatch,
    waits: &BodyWaits,
) -> Waited<T> {
    let mut schedule = schedule(deadline, watch, waits);
    while let Some(wait) = schedule.next_wait() {
        if let Some(waited) = schedule.waited(recv(wait).map_err(Into::into)) {
            return waited;
        }
    }
    Waited::Abandoned
}

/// [`wait_for`] as a future, on tokio's timer: the caller's thread is free
/// while the call runs.
pub(crate) async fn wait_for_answer<T>(
    answer: &mut UnboundedReceiver<T>,
    deadline: Duration,
    watch: &CallWatch,
    waits: &BodyWaits,
) -> Waited<T> {
    let mut schedule = schedule(deadline, watch, waits);
    while let Some(wait) = schedule.next_wait() {
        let received = match tokio::time::timeout(wait, answer.recv()).await {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(NoAnswer::Gone),
            Err(_) => Err(NoAnswer::Timeout),
        };
        if let Some(waited) = schedule.waited(received) {
            return waited;
        }
    }
    Waited::Abandoned
}

/// Waits for `answer` at most `timeout`, parking this thread (for a
/// caller outside any runtime).
pub(crate) fn park_for<T>(answer: &mut UnboundedReceiver<T>, timeout: Duration) -> Result<T, NoAnswer> {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let until = Instant::now() + timeout;
    loop {
        match answer.poll_recv(&mut cx) {
            Poll::Ready(Some(v)) => return Ok(v),
            Poll::Ready(None) => return Err(NoAnswer::Gone),
            Poll::Pending => {}
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NoAnswer::Timeout);
        }
        std::thread::park_timeout(left);
    }
}
