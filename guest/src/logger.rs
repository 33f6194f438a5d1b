//! A [`log`] crate facade over the host's logger (feature `log`).

use crate::ffi;
use http_wasm_abi::LogLevel;

/// The [`::log::Log`] that forwards to the host.
struct HostLogger;

static LOGGER: HostLogger = HostLogger;

/// `log` levels to the host's: `trace` and `debug` are `debug`.
fn host_level(level: ::log::Level) -> LogLevel {
    match level {
        ::log::Level::Error => LogLevel::Error,
        ::log::Level::Warn => LogLevel::Warn,
        ::log::Level::Info => LogLevel::Info,
        ::log::Level::Debug | ::log::Level::Trace => LogLevel::Debug,
    }
}

impl ::log::Log for HostLogger {
    fn enabled(&self, metadata: &::log::Metadata<'_>) -> bool {
        ffi::log_enabled(host_level(metadata.level()))
    }

    fn log(&self, record: &::log::Record<'_>) {
        let level = host_level(record.level());
        if !ffi::log_enabled(level) {
            return;
        }
        match record.args().as_str() {
            Some(message) => ffi::log(level, message.as_bytes()),
            None => ffi::log(level, record.args().to_string().as_bytes()),
        }
    }

    fn flush(&self) {}
}

/// Routes the [`log`](https://docs.rs/log) crate's macros (`log::info!` and
/// the others) to the host's logger. `trace` and `debug` map to the host's
/// `debug`. Call it once, e.g. at the start of [`Filter::new`](crate::Filter::new);
/// later calls do nothing.
///
/// The `log` crate's maximum level is set from what the host logs at that
/// moment, so disabled levels cost nothing; each message is still checked
/// with the host's `log_enabled` before it is formatted.
pub fn init_logger() {
    if ::log::set_logger(&LOGGER).is_err() {
        return;
    }
    let max = [
        (LogLevel::Debug, ::log::LevelFilter::Trace),
        (LogLevel::Info, ::log::LevelFilter::Info),
        (LogLevel::Warn, ::log::LevelFilter::Warn),
        (LogLevel::Error, ::log::LevelFilter::Error),
    ]
    .into_iter()
    .find(|(level, _)| ffi::log_enabled(*level))
    .map_or(::log::LevelFilter::Off, |(_, filter)| filter);
    ::log::set_max_level(max);
}
