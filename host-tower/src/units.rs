//! The text forms of the settings, parsed once here for every front end
//! (the `http-wasm` command's flags, Dapr component metadata...):
//!
//! | value | text |
//! | --- | --- |
//! | [`Engine`] | `wasmtime`, `wasmer` |
//! | [`Isolation`] | `reuse`, `per-request`, `recycle-after:N` (N ≥ 1) |
//! | [`FailurePolicy`] | `closed`, `open` |
//! | [`TimeSpan`] | a whole number and a unit: `250us`, `500ms`, `1s`, `2m`, `1h` |
//! | [`ByteSize`] | a whole number of bytes, or with a unit: `64KiB`, `4MiB`, `1GiB` (also `B`, `kB`, `MB`, `GB`) |
//! | [`LogLevel`] | `debug`, `info`, `warn`, `error`, `none` ([`log_level`]) |
//! | [`Features`] | `buffer_request\|buffer_response\|trailers` (or `,`), `none` ([`features`]) |
//!
//! Each [`Display`](fmt::Display) writes what the parser reads back. A
//! parse error ([`ParseError`]) quotes the input and says what was
//! expected.
//!
//! ```
//! use tower_http_wasm::units::{ByteSize, TimeSpan};
//! use tower_http_wasm::{Isolation, PluginBuilder};
//!
//! let isolation: Isolation = "recycle-after:100".parse()?;
//! let memory: ByteSize = "64MiB".parse()?;
//! let wait: TimeSpan = "250ms".parse()?;
//! let builder = PluginBuilder::default()
//!     .isolation(isolation)
//!     .memory_limit(memory.as_usize()?)
//!     .pool_wait(wait.into());
//! # let _ = builder;
//! # Ok::<(), tower_http_wasm::units::ParseError>(())
//! ```

use crate::plugin::{Engine, FailurePolicy, Isolation};
use http_wasm_abi::{Feature, Features, LogLevel};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A setting's text that does not parse: the input, quoted, and what was
/// expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    input: String,
    message: String,
}

impl ParseError {
    /// `"INPUT": EXPECTED`.
    fn new(input: &str, expected: impl fmt::Display) -> ParseError {
        ParseError { input: input.to_string(), message: format!("{input:?}: {expected}") }
    }

    /// The text that did not parse.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Engine {
    type Err = ParseError;

    /// `wasmtime` or `wasmer`, among the engines compiled into this build.
    fn from_str(s: &str) -> Result<Engine, ParseError> {
        Engine::from_name(s).ok_or_else(|| {
            let known: Vec<&str> = Engine::ALL.iter().map(|e| e.name()).collect();
            let message = format!("unknown engine {s:?} (this build has: {})", known.join(", "));
            ParseError { input: s.to_string(), message }
        })
    }
}

impl FromStr for Isolation {
    type Err = ParseError;

    /// `reuse`, `per-request` or `recycle-after:N` with N at least 1.
    fn from_str(s: &str) -> Result<Isolation, ParseError> {
        match s {
            "reuse" => Ok(Isolation::Reuse),
            "per-request" => Ok(Isolation::PerRequest),
            _ => match s.strip_prefix("recycle-after:").map(whole) {
                Some(Some(n)) if n >= 1 => Ok(Isolation::RecycleAfter(n)),
                Some(_) => Err(ParseError::new(s, "recycle-after needs a whole number of requests, at least 1")),
                None => Err(ParseError::new(s, "expected reuse, per-request or recycle-after:N")),
            },
        }
    }
}

impl fmt::Display for Isolation {
    /// `reuse`, `per-request` or `recycle-after:N`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Isolation::Reuse => f.write_str("reuse"),
            Isolation::PerRequest => f.write_str("per-request"),
            Isolation::RecycleAfter(n) => write!(f, "recycle-after:{n}"),
        }
    }
}

impl FromStr for FailurePolicy {
    type Err = ParseError;

    /// `closed` or `open`.
    fn from_str(s: &str) -> Result<FailurePolicy, ParseError> {
        match s {
            "closed" => Ok(FailurePolicy::Closed),
            "open" => Ok(FailurePolicy::Open),
            _ => Err(ParseError::new(s, "expected closed or open")),
        }
    }
}

impl fmt::Display for FailurePolicy {
    /// `closed` or `open`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailurePolicy::Closed => "closed",
            FailurePolicy::Open => "open",
        })
    }
}

/// Parses `debug`, `info`, `warn`, `error` or `none` (ASCII
/// case-insensitive), the guest log levels of
/// [`PluginBuilder::log_level`](crate::PluginBuilder::log_level).
pub fn log_level(s: &str) -> Result<LogLevel, ParseError> {
    LogLevel::from_name(s).ok_or_else(|| ParseError::new(s, "expected debug, info, warn, error or none"))
}

/// Parses a set of features for
/// [`PluginBuilder::features`](crate::PluginBuilder::features): names
/// joined by `|` or `,` (`buffer_request|trailers`), `none` for the empty
/// set, or `all`. The [`Display`](fmt::Display) of [`Features`] reads back.
pub fn features(s: &str) -> Result<Features, ParseError> {
    if s.trim().is_empty() {
        return Err(ParseError::new(s, "expected features (e.g. buffer_request|trailers), all or none"));
    }
    let mut set = Features::NONE;
    for part in s.split(['|', ',']).map(str::trim) {
        match part {
            "none" => {}
            "all" => set |= Features::ALL,
            _ => match Feature::ALL.iter().find(|f| f.as_str() == part) {
                Some(f) => set |= Features::from(*f),
                None => {
                    return Err(ParseError::new(
                        s,
                        format!(
                            "unknown feature {part:?} (expected buffer_request, buffer_response, trailers, all or none, joined by |)"
                        ),
                    ));
                }
            },
        }
    }
    Ok(set)
}

/// Digits only (no sign, no space), as a `u64`; `None` otherwise or on
/// overflow.
fn whole(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Splits `12ms` into `("12", "ms")`.
fn number_and_unit(text: &str) -> (&str, &str) {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    text.split_at(split)
}

/// A duration as written in settings: a whole number and a unit, `ns`,
/// `us`, `ms`, `s`, `m` or `h` (`500ms`, `30s`, `2m`, `1h`). Zero is
/// allowed here (`0s`); a setting that needs more says so itself.
///
/// [`Display`](fmt::Display) uses the largest unit that is exact
/// (`120s` shows as `2m`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeSpan(
    /// The duration.
    pub Duration,
);

impl TimeSpan {
    /// The duration.
    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<TimeSpan> for Duration {
    fn from(span: TimeSpan) -> Duration {
        span.0
    }
}

impl From<Duration> for TimeSpan {
    fn from(d: Duration) -> TimeSpan {
        TimeSpan(d)
    }
}

const TIME_UNITS: [(&str, u128); 6] = [
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

impl FromStr for TimeSpan {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<TimeSpan, ParseError> {
        const EXPECTED: &str = "expected a whole number and a unit: ms, s, m or h (e.g. 500ms, 30s)";
        let (number, unit) = number_and_unit(s);
        let n = whole(number).ok_or_else(|| ParseError::new(s, EXPECTED))?;
        let Some(&(_, scale)) = TIME_UNITS.iter().find(|(u, _)| *u == unit) else {
            let what = if unit.is_empty() { "a unit is needed".to_string() } else { format!("unknown unit {unit:?}") };
            return Err(ParseError::new(s, format!("{what}: use ns, us, ms, s, m or h (e.g. 500ms, 30s)")));
        };
        let nanos = u128::from(n) * scale;
        let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| ParseError::new(s, "too long"))?;
        Ok(TimeSpan(Duration::new(secs, (nanos % 1_000_000_000) as u32)))
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (unit, scale) =
            TIME_UNITS.iter().find(|(_, scale)| nanos.is_multiple_of(*scale)).expect("ns divides everything");
        write!(f, "{}{unit}", nanos / scale)
    }
}

/// A number of bytes as written in settings: plain digits (`65536`), or a
/// whole number and a unit: `B`, `KiB`, `MiB`, `GiB`, `TiB` (powers of
/// 1024), or `kB`, `MB`, `GB`, `TB` (powers of 1000).
///
/// [`Display`](fmt::Display) uses the largest binary unit that is exact
/// (`4194304` shows as `4MiB`), else plain bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(
    /// The number of bytes.
    pub u64,
);

const BYTE_UNITS: [(&str, u64); 10] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("B", 1),
    ("", 1),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("kB", 1_000),
];

impl ByteSize {
    /// The number of bytes.
    pub const fn get(self) -> u64 {
        self.0
    }

    /// The number of bytes as a `usize`, or an error on a target where it
    /// does not fit.
    pub fn as_usize(self) -> Result<usize, ParseError> {
        usize::try_from(self.0).map_err(|_| ParseError::new(&self.to_string(), "too large for this machine"))
    }
}

impl From<ByteSize> for u64 {
    fn from(size: ByteSize) -> u64 {
        size.0
    }
}

impl FromStr for ByteSize {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<ByteSize, ParseError> {
        let (number, unit) = number_and_unit(s);
        let n = whole(number).ok_or_else(|| {
            ParseError::new(s, "expected a whole number of bytes, optionally with a unit (e.g. 65536, 64KiB, 4MiB)")
        })?;
        let Some(&(_, scale)) = BYTE_UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(ParseError::new(
                s,
                format!("unknown unit {unit:?}: use B, KiB, MiB, GiB, TiB (or kB, MB, GB, TB for powers of 1000)"),
            ));
        };
        n.checked_mul(scale).map(ByteSize).ok_or_else(|| ParseError::new(s, "too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        match BYTE_UNITS[..4].iter().find(|(_, scale)| n != 0 && n.is_multiple_of(*scale)) {
            Some((unit, scale)) => write!(f, "{}{unit}", n / scale),
            None => write!(f, "{n}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines() {
        for engine in Engine::ALL {
            assert_eq!(engine.to_string().parse::<Engine>(), Ok(*engine));
        }
        let e = "v8".parse::<Engine>().unwrap_err().to_string();
        assert!(e.starts_with("unknown engine \"v8\" (this build has: "), "{e}");
    }

    #[test]
    fn isolation_reads_back_and_names_bad_input() {
        for text in ["reuse", "per-request", "recycle-after:1", "recycle-after:250"] {
            let parsed: Isolation = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        assert_eq!("recycle-after:7".parse(), Ok(Isolation::RecycleAfter(7)));
        for bad in ["", "Reuse", "recycle-after:0", "recycle-after:", "recycle-after:x", "recycle-after:-1", "recycle"]
        {
            assert!(bad.parse::<Isolation>().is_err(), "{bad:?}");
        }
        assert_eq!(
            "shared".parse::<Isolation>().unwrap_err().to_string(),
            "\"shared\": expected reuse, per-request or recycle-after:N"
        );
        assert!("recycle-after:0".parse::<Isolation>().unwrap_err().to_string().contains("at least 1"));
    }

    #[test]
    fn failure_policies() {
        for p in [FailurePolicy::Closed, FailurePolicy::Open] {
            assert_eq!(p.to_string().parse::<FailurePolicy>(), Ok(p));
        }
        assert_eq!("Open".parse::<FailurePolicy>().unwrap_err().to_string(), "\"Open\": expected closed or open");
    }

    #[test]
    fn time_spans() {
        let ok = |s: &str| s.parse::<TimeSpan>().unwrap().get();
        assert_eq!(ok("500ms"), Duration::from_millis(500));
        assert_eq!(ok("1s"), Duration::from_secs(1));
        assert_eq!(ok("2m"), Duration::from_secs(120));
        assert_eq!(ok("1h"), Duration::from_secs(3600));
        assert_eq!(ok("250us"), Duration::from_micros(250));
        assert_eq!(ok("0s"), Duration::ZERO);
        for bad in
            ["", "s", "30", "1.5s", "-1s", " 1s", "1 s", "1d", "1S", "99999999999999999999s", "18446744073709551615h"]
        {
            assert!(bad.parse::<TimeSpan>().is_err(), "{bad:?}");
        }
        assert!("30".parse::<TimeSpan>().unwrap_err().to_string().contains("a unit is needed"));
        assert!("1d".parse::<TimeSpan>().unwrap_err().to_string().contains("unknown unit \"d\""));
        for (d, text) in [
            (Duration::from_secs(120), "2m"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_nanos(7), "7ns"),
            (Duration::ZERO, "0s"),
        ] {
            assert_eq!(TimeSpan(d).to_string(), text);
            assert_eq!(ok(text), d);
        }
    }

    #[test]
    fn byte_sizes() {
        let ok = |s: &str| s.parse::<ByteSize>().unwrap().get();
        assert_eq!(ok("65536"), 65536);
        assert_eq!(ok("64KiB"), 64 << 10);
        assert_eq!(ok("4MiB"), 4 << 20);
        assert_eq!(ok("128MiB"), 128 << 20);
        assert_eq!(ok("1GiB"), 1 << 30);
        assert_eq!(ok("10B"), 10);
        assert_eq!(ok("2MB"), 2_000_000);
        assert_eq!(ok("0"), 0);
        for bad in ["", "MiB", "1.5MiB", "-1", "4 MiB", "4mib", "4M", "4Mi", "99999999999999999999", "17179869184GiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
        assert!("4M".parse::<ByteSize>().unwrap_err().to_string().starts_with("\"4M\": unknown unit \"M\""));
        for (n, text) in [(4 << 20, "4MiB"), (64 << 10, "64KiB"), (1000, "1000"), (1536, "1536"), (0, "0")] {
            assert_eq!(ByteSize(n).to_string(), text);
            assert_eq!(ok(text), n);
        }
    }

    #[test]
    fn log_levels_and_features() {
        assert_eq!(log_level("warn"), Ok(LogLevel::Warn));
        assert_eq!(log_level("NONE"), Ok(LogLevel::None));
        assert!(log_level("loud").unwrap_err().to_string().contains("expected debug, info, warn, error or none"));
        assert_eq!(features("none"), Ok(Features::NONE));
        assert_eq!(features("all"), Ok(Features::ALL));
        assert_eq!(features("buffer_request|trailers"), Ok(Features::BUFFER_REQUEST | Features::TRAILERS));
        assert_eq!(features("buffer_response, trailers"), Ok(Features::BUFFER_RESPONSE | Features::TRAILERS));
        for set in [Features::NONE, Features::ALL, Features::BUFFER_RESPONSE] {
            assert_eq!(features(&set.to_string()), Ok(set));
        }
        let e = features("buffer_request|gzip").unwrap_err().to_string();
        assert!(e.contains("unknown feature \"gzip\""), "{e}");
        assert!(features("").is_err());
    }
}
