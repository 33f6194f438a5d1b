//! Per-plugin counters.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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
    /// Every figure as `(name, help, kind, value)`, names in snake case.
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
            ("reloads", "Successful module reloads.", Counter, self.reloads),
            ("reload_failures", "Rejected module reloads.", Counter, self.reload_failures),
        ]
        .into_iter()
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
