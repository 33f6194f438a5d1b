//! Per-plugin counters and histograms.
//!
//! Requests record into atomics only: a counter is one `fetch_add`, a
//! [`DurationHistogram`] two, in fixed buckets. Nothing on the request path
//! takes a lock or allocates for metrics; an exporter reads a snapshot
//! ([`Metrics`], [`HistogramSnapshot`]) when it is scraped. Guest calls are
//! timed one in [`PluginBuilder::guest_time_sampling`](crate::PluginBuilder::guest_time_sampling),
//! picked by [`CallSampler`]: the clock is read on those calls only.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How many bounds [`DURATION_BUCKETS`] has.
const BOUNDS: usize = 22;

/// The upper bounds of a [`DurationHistogram`]'s buckets: 1 µs to 10 s in
/// steps of 1, 2.5 and 5 (guest calls take microseconds, requests through
/// a gateway milliseconds). One more bucket counts what is over 10 s.
pub const DURATION_BUCKETS: [Duration; BOUNDS] = [
    Duration::from_micros(1),
    Duration::from_nanos(2_500),
    Duration::from_micros(5),
    Duration::from_micros(10),
    Duration::from_micros(25),
    Duration::from_micros(50),
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2_500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2_500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

/// [`DURATION_BUCKETS`] in nanoseconds, for [`DurationHistogram::record`].
const BOUNDS_NANOS: [u64; BOUNDS] = {
    let mut nanos = [0; BOUNDS];
    let mut i = 0;
    while i < BOUNDS {
        nanos[i] = DURATION_BUCKETS[i].as_nanos() as u64;
        i += 1;
    }
    nanos
};

/// Durations counted in the fixed buckets of [`DURATION_BUCKETS`] (and one
/// for longer ones), with their sum, in atomics: [`record`](Self::record)
/// takes no lock and allocates nothing, so it can sit on a request path
/// that many threads share. Read it with [`snapshot`](Self::snapshot).
///
/// ```
/// use std::time::Duration;
/// use tower_http_wasm::DurationHistogram;
///
/// let latency = DurationHistogram::new();
/// latency.record(Duration::from_micros(40));
/// latency.record(Duration::from_millis(3));
/// let seen = latency.snapshot();
/// assert_eq!(seen.count(), 2);
/// assert_eq!(seen.sum, Duration::from_micros(3_040));
/// ```
#[derive(Debug)]
pub struct DurationHistogram {
    counts: [AtomicU64; BOUNDS + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    /// An empty histogram.
    pub const fn new() -> DurationHistogram {
        DurationHistogram { counts: [const { AtomicU64::new(0) }; BOUNDS + 1], sum_nanos: AtomicU64::new(0) }
    }

    /// Counts `d` in the first bucket whose bound it does not exceed (past
    /// 10 s, the last bucket). A duration over 584 years counts as that.
    pub fn record(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BOUNDS_NANOS.iter().position(|&bound| nanos <= bound).unwrap_or(BOUNDS);
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    /// The counts and sum so far. Read while others record, the sum may
    /// include a duration whose count is not in yet (or the reverse).
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Relaxed)),
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
        }
    }
}

impl Default for DurationHistogram {
    fn default() -> DurationHistogram {
        DurationHistogram::new()
    }
}

/// A [`DurationHistogram`]'s figures at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// How many durations fell in each bucket, not cumulative: `counts[i]`
    /// those over the bound before `DURATION_BUCKETS[i]` and at most it;
    /// the last, those over 10 s.
    pub counts: [u64; BOUNDS + 1],
    /// The sum of the durations recorded.
    pub sum: Duration,
}

impl HistogramSnapshot {
    /// How many durations were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Each bucket as Prometheus counts it: its upper bound (`None` for the
    /// last one, `+Inf`) and how many durations were at most that,
    /// cumulative. The last count is [`count`](Self::count).
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<Duration>, u64)> + '_ {
        let bounds = DURATION_BUCKETS.iter().copied().map(Some).chain([None]);
        bounds.zip(self.counts.iter().scan(0u64, |total, &n| {
            *total += n;
            Some(*total)
        }))
    }
}

/// A plugin's counters at one moment, from [`Plugin::metrics`](crate::Plugin::metrics).
///
/// Counters start at zero when the plugin is built and survive reloads.
/// [`Metrics::iter`] lists them with a name and help text, ready for an
/// exporter (the `http-wasm serve` admin port renders them for Prometheus).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Requests that reached the plugin.
    pub requests: u64,
    /// Requests the guest passed to the next handler.
    pub next_calls: u64,
    /// Requests the guest answered itself, without the next handler.
    pub short_circuits: u64,
    /// Guest failures (trap, deadline, invalid host call) in `handle_request`.
    pub request_failures: u64,
    /// Guest failures in `handle_response`.
    pub response_failures: u64,
    /// New instances whose start failed while a request waited for them.
    pub start_failures: u64,
    /// Guest calls stopped at their deadline (counted in the failures too).
    pub deadline_hits: u64,
    /// Requests that found every instance busy and had to wait.
    pub pool_waits: u64,
    /// Requests that waited longer than the pool's wait limit (503).
    pub pool_timeouts: u64,
    /// Request bodies over the buffer limit (413).
    pub bodies_too_large: u64,
    /// Response bodies of the next handler that failed or were over the
    /// buffer limit while buffered for the guest (502).
    pub response_bodies_failed: u64,
    /// Failures answered by skipping the filter ([`FailurePolicy::Open`](crate::FailurePolicy::Open)).
    pub failed_open: u64,
    /// Instances started, including the first one of each load.
    pub instances_started: u64,
    /// Instances alive now (idle or serving), across old and new modules.
    pub instances: u64,
    /// Successful reloads.
    pub reloads: u64,
    /// Reloads rejected because the new module failed to load.
    pub reload_failures: u64,
    /// Instances serving a request now (taken from the pool, not yet back).
    pub instances_in_use: u64,
    /// How long the timed `handle_request` calls took, wall time: the
    /// guest's work and its host calls, waits for a request body still
    /// arriving included. Failed calls count too. One call in
    /// [`PluginBuilder::guest_time_sampling`](crate::PluginBuilder::guest_time_sampling)
    /// (16 by default) is timed, picked at random, so the count is about
    /// that fraction of the calls ([`requests`](Self::requests) counts
    /// them all) and the buckets, sum and mean describe the calls as a
    /// whole.
    pub handle_request_time: HistogramSnapshot,
    /// How long the timed `handle_response` calls took, the same way.
    pub handle_response_time: HistogramSnapshot,
}

/// Whether a figure only grows or goes up and down.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricKind {
    /// Only grows.
    Counter,
    /// Goes up and down.
    Gauge,
}

impl Metrics {
    /// The time of the guest's calls, per phase, as `(phase, help,
    /// histogram)`: `handle_request` and `handle_response`.
    pub fn guest_time(&self) -> [(&'static str, &'static str, &HistogramSnapshot); 2] {
        [
            ("handle_request", "Time in the guest's handle_request (sampled calls).", &self.handle_request_time),
            ("handle_response", "Time in the guest's handle_response (sampled calls).", &self.handle_response_time),
        ]
    }

    /// Every counter and gauge as `(name, help, kind, value)`, names in
    /// snake case (the histograms are in [`guest_time`](Self::guest_time)).
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'static str, MetricKind, u64)> {
        use MetricKind::{Counter, Gauge};
        [
            ("requests", "Requests that reached the filter.", Counter, self.requests),
            ("next_calls", "Requests passed to the next handler.", Counter, self.next_calls),
            (
                "short_circuits",
                "Requests answered by the guest without the next handler.",
                Counter,
                self.short_circuits,
            ),
            ("request_failures", "Guest failures in handle_request.", Counter, self.request_failures),
            ("response_failures", "Guest failures in handle_response.", Counter, self.response_failures),
            ("start_failures", "New instances whose start failed.", Counter, self.start_failures),
            ("deadline_hits", "Guest calls stopped at their deadline.", Counter, self.deadline_hits),
            ("pool_waits", "Requests that waited for a free instance.", Counter, self.pool_waits),
            ("pool_timeouts", "Requests that waited past the pool's limit.", Counter, self.pool_timeouts),
            ("bodies_too_large", "Request bodies over the buffer limit.", Counter, self.bodies_too_large),
            (
                "response_bodies_failed",
                "Next-handler response bodies that failed or were over the buffer limit.",
                Counter,
                self.response_bodies_failed,
            ),
            ("failed_open", "Failures answered by skipping the filter.", Counter, self.failed_open),
            ("instances_started", "Instances started.", Counter, self.instances_started),
            ("instances", "Instances alive.", Gauge, self.instances),
            ("instances_in_use", "Instances serving a request.", Gauge, self.instances_in_use),
            ("reloads", "Successful module reloads.", Counter, self.reloads),
            ("reload_failures", "Rejected module reloads.", Counter, self.reload_failures),
        ]
        .into_iter()
    }
}

/// Picks the guest calls that are timed: each one with a chance of one in
/// `one_in`, independently of the others, as the gaps between picks are
/// drawn from the geometric distribution (a xorshift generator of its own,
/// one per instance, so picking touches no shared state). A call that is
/// not picked costs a decrement; the generator runs once per pick. The
/// sampler is 8 bytes: it moves with its instance on every request. Timing
/// every call reads the clock twice per call, which costs a no-op request
/// a few percent of its time (`docs/performance.md`).
#[derive(Debug)]
pub(crate) struct CallSampler {
    state: u32,
    /// Calls to pass over before the next pick.
    skip: u32,
}

impl CallSampler {
    /// A generator seeded apart from every other one of the process, for
    /// one call in `one_in`.
    pub(crate) fn new(one_in: u32) -> CallSampler {
        static NEXT_SEED: AtomicU32 = AtomicU32::new(0x9e37_79b9);
        // A Weyl sequence, mixed (the finaliser of MurmurHash3), so that
        // neighbouring instances start far apart; never zero.
        let mut x = NEXT_SEED.fetch_add(0x9e37_79b9, Relaxed);
        x ^= x >> 16;
        x = x.wrapping_mul(0x85eb_ca6b);
        x ^= x >> 13;
        x = x.wrapping_mul(0xc2b2_ae35);
        x ^= x >> 16;
        let mut sampler = CallSampler { state: x | 1, skip: 0 };
        // The first call is picked like any other: a fresh instance per
        // request is not timed on every request.
        sampler.skip = sampler.gap(one_in);
        sampler
    }

    /// True for about one call in `one_in` (every call when it is 1).
    pub(crate) fn pick(&mut self, one_in: u32) -> bool {
        if let Some(left) = self.skip.checked_sub(1) {
            self.skip = left;
            return false;
        }
        self.skip = self.gap(one_in);
        true
    }

    /// How many calls to pass over: `k` or more with a chance of
    /// `(1 - 1/one_in)^k`.
    fn gap(&mut self, one_in: u32) -> u32 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.state = x;
        // `x` is uniform over 1..=u32::MAX, so `u` over (0, 1).
        let u = f64::from(x) / 4_294_967_296.0;
        let keep = 1.0 - 1.0 / f64::from(one_in);
        // One in 1: `keep.ln()` is minus infinity and the gap 0. The cast
        // saturates.
        (u.ln() / keep.ln()) as u32
    }
}

/// Where a guest failure happened, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Taking an instance: pool wait or the start of a new instance.
    Acquire,
    /// Before the guest ran: the request body.
    Body,
    /// `handle_request`.
    Request,
    /// `handle_response`.
    Response,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    requests: AtomicU64,
    next_calls: AtomicU64,
    short_circuits: AtomicU64,
    request_failures: AtomicU64,
    response_failures: AtomicU64,
    start_failures: AtomicU64,
    deadline_hits: AtomicU64,
    pool_waits: AtomicU64,
    pool_timeouts: AtomicU64,
    bodies_too_large: AtomicU64,
    response_bodies_failed: AtomicU64,
    failed_open: AtomicU64,
    instances_started: AtomicU64,
    instances_dropped: AtomicU64,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
    in_use: AtomicU64,
    handle_request_time: DurationHistogram,
    handle_response_time: DurationHistogram,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> Metrics {
        let started = self.instances_started.load(Relaxed);
        Metrics {
            requests: self.requests.load(Relaxed),
            next_calls: self.next_calls.load(Relaxed),
            short_circuits: self.short_circuits.load(Relaxed),
            request_failures: self.request_failures.load(Relaxed),
            response_failures: self.response_failures.load(Relaxed),
            start_failures: self.start_failures.load(Relaxed),
            deadline_hits: self.deadline_hits.load(Relaxed),
            pool_waits: self.pool_waits.load(Relaxed),
            pool_timeouts: self.pool_timeouts.load(Relaxed),
            bodies_too_large: self.bodies_too_large.load(Relaxed),
            response_bodies_failed: self.response_bodies_failed.load(Relaxed),
            failed_open: self.failed_open.load(Relaxed),
            instances_started: started,
            instances: started.saturating_sub(self.instances_dropped.load(Relaxed)),
            reloads: self.reloads.load(Relaxed),
            reload_failures: self.reload_failures.load(Relaxed),
            instances_in_use: self.in_use.load(Relaxed),
            handle_request_time: self.handle_request_time.snapshot(),
            handle_response_time: self.handle_response_time.snapshot(),
        }
    }

    /// An instance was taken from the pool for a request.
    pub(crate) fn lease_taken(&self) {
        bump(&self.in_use);
    }

    /// It went back (or was discarded).
    pub(crate) fn lease_returned(&self) {
        self.in_use.fetch_sub(1, Relaxed);
    }

    /// A timed guest call of `stage` (`Request` or `Response`) took `took`.
    pub(crate) fn guest_call(&self, stage: Stage, took: Duration) {
        match stage {
            Stage::Request => self.handle_request_time.record(took),
            Stage::Response => self.handle_response_time.record(took),
            Stage::Acquire | Stage::Body => {}
        }
    }

    pub(crate) fn request(&self) {
        bump(&self.requests);
    }

    pub(crate) fn next_call(&self) {
        bump(&self.next_calls);
    }

    pub(crate) fn short_circuit(&self) {
        bump(&self.short_circuits);
    }

    pub(crate) fn failed_open(&self) {
        bump(&self.failed_open);
    }

    pub(crate) fn pool_waited(&self) {
        bump(&self.pool_waits);
    }

    pub(crate) fn instance_started(&self) {
        bump(&self.instances_started);
    }

    pub(crate) fn instance_dropped(&self) {
        bump(&self.instances_dropped);
    }

    pub(crate) fn reloaded(&self) {
        bump(&self.reloads);
    }

    pub(crate) fn reload_failed(&self) {
        bump(&self.reload_failures);
    }

    /// Counts a failure by where it happened and what it was.
    pub(crate) fn failure(&self, stage: Stage, error: &crate::Error) {
        if error.is_timeout() {
            bump(&self.deadline_hits);
        }
        if error.is_pool_timeout() {
            bump(&self.pool_timeouts);
        } else if error.is_response_body() {
            bump(&self.response_bodies_failed);
        } else if error.is_body_too_large() && stage != Stage::Response {
            bump(&self.bodies_too_large);
        } else {
            match stage {
                Stage::Acquire if error.is_start() => bump(&self.start_failures),
                Stage::Acquire | Stage::Body => {}
                Stage::Request => bump(&self.request_failures),
                Stage::Response => bump(&self.response_failures),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::CallSampler;

    #[test]
    fn a_sampler_picks_every_call_at_one_and_about_one_in_n_otherwise() {
        let mut every = CallSampler::new(1);
        assert!((0..1000).all(|_| every.pick(1)));
        for one_in in [2, 16, 1000] {
            let mut sampler = CallSampler::new(one_in);
            let draws = 64_000 * one_in;
            let picked = (0..draws).filter(|_| sampler.pick(one_in)).count();
            // 64,000 expected, deviation about 250.
            assert!((62_000..=66_000).contains(&picked), "one in {one_in}: {picked} of {draws}");
        }
        // Two samplers do not pick the same calls.
        let (mut a, mut b) = (CallSampler::new(16), CallSampler::new(16));
        let same = (0..1600).filter(|_| a.pick(16) && b.pick(16)).count();
        assert!(same < 30, "{same}");
        // The first call of a fresh sampler (a fresh instance per request)
        // is picked one time in 16 too, and so is the second.
        let mut firsts = [0; 2];
        for _ in 0..64_000 {
            let mut fresh = CallSampler::new(16);
            for seen in &mut firsts {
                *seen += usize::from(fresh.pick(16));
            }
        }
        for seen in firsts {
            // 4,000 expected, deviation about 60.
            assert!((3_700..=4_300).contains(&seen), "{firsts:?}");
        }
    }
}
