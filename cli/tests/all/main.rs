//! The `http-wasm` binary, run as a real process.

mod config;
mod conformance;
mod dapr;
mod deploy;
mod embedded_modules;
mod errors;
mod forwarding;
mod framing_guest;
mod guests;
mod health;
mod hostile;
mod idle;
mod inspect;
mod knobs;
mod metrics;
mod model;
mod module_sources;
mod net;
mod new_filter;
mod policies;
mod process;
mod reload;
mod soak;
mod stalled_body;
mod tls;
mod upstream_pool;
