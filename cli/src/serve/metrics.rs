//! The gateway's own figures, beside each filter's (which its plugin
//! keeps): connections open, latency through the gateway, upstream errors
//! by kind. One gateway runs per process, so they live in one static,
//! [`GATEWAY`], that the accept loop, the request handler and the proxy
//! record into and the admin port reads.
//!
//! Recording is an atomic add (two for the latency histogram): no lock, no
//! allocation on the request path. The admin port renders a snapshot when
//! it is scraped (see [`admin`](super::admin)).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;
use tower_http_wasm::{DurationHistogram, HistogramSnapshot};

/// The process's gateway figures.
pub static GATEWAY: GatewayMetrics = GatewayMetrics::new();

/// Why an exchange with the upstream failed, as the metrics tell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// The upstream refused the connection (nothing listens there).
    Refused,
    /// The connection was reset or closed before the response head.
    Reset,
    /// No response head within `--upstream-timeout`.
    Timeout,
    /// Anything else: unreachable, a TLS failure, not HTTP.
    Other,
}

impl UpstreamError {
    /// Every kind, in the order the exposition lists them.
    pub const ALL: [UpstreamError; 4] =
        [UpstreamError::Refused, UpstreamError::Reset, UpstreamError::Timeout, UpstreamError::Other];

    /// The `kind` label.
    pub fn name(self) -> &'static str {
        match self {
            UpstreamError::Refused => "refused",
            UpstreamError::Reset => "reset",
            UpstreamError::Timeout => "timeout",
            UpstreamError::Other => "other",
        }
    }

    /// The kind of `error` by the first cause in its chain that tells: an
    /// I/O error's kind, or hyper's "connection closed before the message
    /// completed".
    pub fn of(error: &(dyn std::error::Error + 'static)) -> UpstreamError {
        use std::io::ErrorKind;
        let mut cause = Some(error);
        while let Some(e) = cause {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                match io.kind() {
                    ErrorKind::ConnectionRefused => return UpstreamError::Refused,
                    ErrorKind::ConnectionReset
                    | ErrorKind::ConnectionAborted
                    | ErrorKind::BrokenPipe
                    | ErrorKind::UnexpectedEof => return UpstreamError::Reset,
                    ErrorKind::TimedOut => return UpstreamError::Timeout,
                    _ => {}
                }
            }
            if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_incomplete_message) {
                return UpstreamError::Reset;
            }
            cause = e.source();
        }
        UpstreamError::Other
    }
}

/// The gateway's figures: see [`GATEWAY`].
#[derive(Debug)]
pub struct GatewayMetrics {
    connections_open: AtomicI64,
    latency: DurationHistogram,
    upstream_errors: [AtomicU64; UpstreamError::ALL.len()],
}

impl GatewayMetrics {
    const fn new() -> GatewayMetrics {
        GatewayMetrics {
            connections_open: AtomicI64::new(0),
            latency: DurationHistogram::new(),
            upstream_errors: [const { AtomicU64::new(0) }; UpstreamError::ALL.len()],
        }
    }

    /// A client connection was accepted.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    /// It closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// A request got its response head after `took` (from its arrival).
    pub fn request_done(&self, took: Duration) {
        self.latency.record(took);
    }

    /// An exchange with the upstream failed.
    pub fn upstream_failed(&self, kind: UpstreamError) {
        self.upstream_errors[kind as usize].fetch_add(1, Relaxed);
    }

    /// Client connections open now.
    pub fn connections_open(&self) -> i64 {
        self.connections_open.load(Relaxed)
    }

    /// The latency of requests through the gateway so far.
    pub fn latency(&self) -> HistogramSnapshot {
        self.latency.snapshot()
    }

    /// How many exchanges with the upstream failed so far, per kind.
    pub fn upstream_errors(&self) -> impl Iterator<Item = (UpstreamError, u64)> + '_ {
        UpstreamError::ALL.into_iter().map(|kind| (kind, self.upstream_errors[kind as usize].load(Relaxed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_is_known_by_the_io_error_in_its_chain() {
        #[derive(Debug)]
        struct Wrapped(std::io::Error);
        impl std::fmt::Display for Wrapped {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("connect failed")
            }
        }
        impl std::error::Error for Wrapped {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        use std::io::{Error, ErrorKind};
        for (kind, expected) in [
            (ErrorKind::ConnectionRefused, UpstreamError::Refused),
            (ErrorKind::ConnectionReset, UpstreamError::Reset),
            (ErrorKind::BrokenPipe, UpstreamError::Reset),
            (ErrorKind::TimedOut, UpstreamError::Timeout),
            (ErrorKind::InvalidData, UpstreamError::Other),
        ] {
            assert_eq!(UpstreamError::of(&Wrapped(Error::from(kind))), expected, "{kind:?}");
        }
        assert_eq!(UpstreamError::of(&std::fmt::Error), UpstreamError::Other);
    }

    #[test]
    fn each_kind_counts_apart() {
        let m = GatewayMetrics::new();
        m.upstream_failed(UpstreamError::Refused);
        m.upstream_failed(UpstreamError::Timeout);
        m.upstream_failed(UpstreamError::Timeout);
        let counts: Vec<_> = m.upstream_errors().map(|(k, n)| (k.name(), n)).collect();
        assert_eq!(counts, [("refused", 1), ("reset", 0), ("timeout", 2), ("other", 0)]);
    }
}
