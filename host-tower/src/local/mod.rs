//! The local (`!Send`) service, for servers that run one single-threaded
//! runtime per core.

mod layer;
mod plugin;
mod service;

pub use layer::LocalHttpWasmLayer;
pub use plugin::LocalPlugin;
pub use service::{LocalHttpWasm, LocalResponseFuture};
