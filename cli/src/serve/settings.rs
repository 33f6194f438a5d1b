//! What a filter is loaded with: every [`PluginBuilder`] knob the gateway
//! exposes, set for every filter by the `serve` flags and for one filter by
//! its Dapr component's metadata (which wins). The text of each value is
//! parsed by the library ([`tower_http_wasm::units`]); this module only
//! adds the ranges a gateway needs (a deadline of zero would fail every
//! request).

use std::time::Duration;
use tower_http_wasm::units::{self, ByteSize, TimeSpan};
use tower_http_wasm::{FailurePolicy, Features, Isolation, LogLevel, PluginBuilder};

/// The knobs; `None` leaves the library's default (or, for a filter's own
/// settings, the pipeline's).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Settings {
    /// How requests share instances.
    pub isolation: Option<Isolation>,
    /// What the client gets when a guest fails.
    pub failure_policy: Option<FailurePolicy>,
    /// The most instances alive at once.
    pub pool_size: Option<usize>,
    /// How long a request waits for a free instance before 503.
    pub pool_wait: Option<Duration>,
    /// The longest one guest call may run.
    pub deadline: Option<Duration>,
    /// The most linear memory one instance may grow to, in bytes.
    pub memory_limit: Option<usize>,
    /// The most elements one table may grow to.
    pub table_limit: Option<u64>,
    /// The most bytes of one body buffered for a guest.
    pub body_limit: Option<usize>,
    /// The most bytes of one header map after a guest wrote to it.
    pub header_limit: Option<usize>,
    /// How long a request body may send nothing while it is waited for.
    pub body_timeout: Option<Duration>,
    /// The lowest guest log level logged.
    pub log_level: Option<LogLevel>,
    /// The features a guest may enable.
    pub features: Option<Features>,
    /// One guest call in this many is timed for the metrics.
    pub guest_time_sampling: Option<u32>,
}

/// The Dapr metadata fields of [`Settings`], each with its `serve` flag.
pub const METADATA: [(&str, &str); 13] = [
    ("isolation", "--isolation"),
    ("failurePolicy", "--failure-policy"),
    ("poolSize", "--pool-size"),
    ("poolWait", "--pool-wait"),
    ("deadline", "--deadline"),
    ("memoryLimit", "--memory-limit"),
    ("tableLimit", "--table-limit"),
    ("bodyLimit", "--body-limit"),
    ("headerLimit", "--header-limit"),
    ("bodyTimeout", "--body-timeout"),
    ("logLevel", "--guest-log-level"),
    ("features", "--features"),
    ("guestTimeSampling", "--guest-time-sampling"),
];

/// A duration ([`TimeSpan`]) of at least 1 ms.
pub fn positive(text: &str) -> Result<Duration, String> {
    let d = text.parse::<TimeSpan>().map_err(|e| e.to_string())?.get();
    if d < Duration::from_millis(1) { Err(format!("{text:?}: must be more than zero (at least 1ms)")) } else { Ok(d) }
}

/// A duration ([`TimeSpan`]), zero allowed.
pub fn span(text: &str) -> Result<Duration, String> {
    text.parse::<TimeSpan>().map(TimeSpan::get).map_err(|e| e.to_string())
}

/// A byte size ([`ByteSize`]) that fits this machine's `usize`.
pub fn bytes(text: &str) -> Result<usize, String> {
    text.parse::<ByteSize>().and_then(ByteSize::as_usize).map_err(|e| e.to_string())
}

/// A whole number of at least 1 that fits a `usize`.
pub fn count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{text:?}: expected a whole number, at least 1")),
    }
}

/// A whole number of at least 1 that fits a `u32` (one call in how many).
pub fn one_in(text: &str) -> Result<u32, String> {
    count(text).and_then(|n| u32::try_from(n).map_err(|_| format!("{text:?}: at most {}", u32::MAX)))
}

/// A whole number (table elements).
pub fn elements(text: &str) -> Result<u64, String> {
    match text.parse::<u64>() {
        Ok(n) if text.bytes().all(|b| b.is_ascii_digit()) => Ok(n),
        _ => Err(format!("{text:?}: expected a whole number")),
    }
}

/// An [`Isolation`].
pub fn isolation(text: &str) -> Result<Isolation, String> {
    text.parse().map_err(|e: units::ParseError| e.to_string())
}

/// A [`FailurePolicy`].
pub fn failure_policy(text: &str) -> Result<FailurePolicy, String> {
    text.parse().map_err(|e: units::ParseError| e.to_string())
}

/// A guest [`LogLevel`].
pub fn log_level(text: &str) -> Result<LogLevel, String> {
    units::log_level(text).map_err(|e| e.to_string())
}

/// A set of [`Features`].
pub fn features(text: &str) -> Result<Features, String> {
    units::features(text).map_err(|e| e.to_string())
}

impl Settings {
    /// Sets the knob of Dapr metadata field `field` from `text`.
    /// `Ok(false)`: no such field.
    pub fn set(&mut self, field: &str, text: &str) -> Result<bool, String> {
        match field {
            "isolation" => self.isolation = Some(isolation(text)?),
            "failurePolicy" => self.failure_policy = Some(failure_policy(text)?),
            "poolSize" => self.pool_size = Some(count(text)?),
            "poolWait" => self.pool_wait = Some(span(text)?),
            "deadline" => self.deadline = Some(positive(text)?),
            "memoryLimit" => self.memory_limit = Some(bytes(text)?),
            "tableLimit" => self.table_limit = Some(elements(text)?),
            "bodyLimit" => self.body_limit = Some(bytes(text)?),
            "headerLimit" => self.header_limit = Some(bytes(text)?),
            "bodyTimeout" => self.body_timeout = Some(positive(text)?),
            "logLevel" => self.log_level = Some(log_level(text)?),
            "features" => self.features = Some(features(text)?),
            "guestTimeSampling" => self.guest_time_sampling = Some(one_in(text)?),
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Each knob of `self`, else `base`'s.
    pub fn over(&self, base: &Settings) -> Settings {
        Settings {
            isolation: self.isolation.or(base.isolation),
            failure_policy: self.failure_policy.or(base.failure_policy),
            pool_size: self.pool_size.or(base.pool_size),
            pool_wait: self.pool_wait.or(base.pool_wait),
            deadline: self.deadline.or(base.deadline),
            memory_limit: self.memory_limit.or(base.memory_limit),
            table_limit: self.table_limit.or(base.table_limit),
            body_limit: self.body_limit.or(base.body_limit),
            header_limit: self.header_limit.or(base.header_limit),
            body_timeout: self.body_timeout.or(base.body_timeout),
            log_level: self.log_level.or(base.log_level),
            features: self.features.or(base.features),
            guest_time_sampling: self.guest_time_sampling.or(base.guest_time_sampling),
        }
    }

    /// `builder` with every knob that is set.
    pub fn apply(&self, mut b: PluginBuilder) -> PluginBuilder {
        if let Some(v) = self.isolation {
            b = b.isolation(v);
        }
        if let Some(v) = self.failure_policy {
            b = b.failure_policy(v);
        }
        if let Some(v) = self.pool_size {
            b = b.pool_size(v);
        }
        if let Some(v) = self.pool_wait {
            b = b.pool_wait(v);
        }
        if let Some(v) = self.deadline {
            b = b.deadline(v);
        }
        if let Some(v) = self.memory_limit {
            b = b.memory_limit(v);
        }
        if let Some(v) = self.table_limit {
            b = b.table_limit(v);
        }
        if let Some(v) = self.body_limit {
            b = b.body_limit(v);
        }
        if let Some(v) = self.header_limit {
            b = b.header_limit(v);
        }
        if let Some(v) = self.body_timeout {
            b = b.body_timeout(v);
        }
        if let Some(v) = self.log_level {
            b = b.log_level(v);
        }
        if let Some(v) = self.features {
            b = b.features(v);
        }
        if let Some(v) = self.guest_time_sampling {
            b = b.guest_time_sampling(v);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metadata_field_sets_its_knob() {
        let values = [
            ("isolation", "per-request"),
            ("failurePolicy", "open"),
            ("poolSize", "3"),
            ("poolWait", "0s"),
            ("deadline", "250ms"),
            ("memoryLimit", "64MiB"),
            ("tableLimit", "500"),
            ("bodyLimit", "1MiB"),
            ("headerLimit", "8KiB"),
            ("bodyTimeout", "5s"),
            ("logLevel", "warn"),
            ("features", "buffer_request|trailers"),
            ("guestTimeSampling", "1"),
        ];
        assert_eq!(values.map(|(f, _)| f), METADATA.map(|(f, _)| f));
        let mut s = Settings::default();
        for (field, text) in values {
            assert_eq!(s.set(field, text), Ok(true), "{field}");
        }
        let want = Settings {
            isolation: Some(Isolation::PerRequest),
            failure_policy: Some(FailurePolicy::Open),
            pool_size: Some(3),
            pool_wait: Some(Duration::ZERO),
            deadline: Some(Duration::from_millis(250)),
            memory_limit: Some(64 << 20),
            table_limit: Some(500),
            body_limit: Some(1 << 20),
            header_limit: Some(8 << 10),
            body_timeout: Some(Duration::from_secs(5)),
            log_level: Some(LogLevel::Warn),
            features: Some(Features::BUFFER_REQUEST | Features::TRAILERS),
            guest_time_sampling: Some(1),
        };
        assert_eq!(s, want);
        assert_eq!(s.set("url", "file://x"), Ok(false));
    }

    #[test]
    fn bad_values_are_named() {
        let mut s = Settings::default();
        for (field, text, says) in [
            ("poolSize", "0", "at least 1"),
            ("poolSize", "+2", "at least 1"),
            ("deadline", "0s", "more than zero"),
            ("deadline", "1", "a unit is needed"),
            ("memoryLimit", "64M", "unknown unit \"M\""),
            ("tableLimit", "-1", "whole number"),
            ("logLevel", "loud", "expected debug"),
            ("features", "gzip", "unknown feature \"gzip\""),
            ("isolation", "shared", "expected reuse"),
            ("guestTimeSampling", "0", "at least 1"),
            ("guestTimeSampling", "4294967296", "at most 4294967295"),
        ] {
            let e = s.set(field, text).unwrap_err();
            assert!(e.contains(says) && e.contains(text), "{field} {text}: {e}");
        }
        assert_eq!(s, Settings::default(), "nothing set on error");
    }

    #[test]
    fn a_filters_own_settings_win() {
        let base = Settings { pool_size: Some(16), deadline: Some(Duration::from_secs(1)), ..Settings::default() };
        let own = Settings { pool_size: Some(2), ..Settings::default() };
        let got = own.over(&base);
        assert_eq!((got.pool_size, got.deadline), (Some(2), Some(Duration::from_secs(1))));
    }
}
