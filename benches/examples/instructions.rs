//! Sends N requests through one no-op filter (a guest that calls next)
//! or through its native baseline, for an instruction count with valgrind's
//! callgrind: `benches/instructions.sh` runs it with two values of N and
//! prints the instructions one request costs (the difference divided by
//! the difference of N), start and compilation left out.
//!
//! `instructions native|wasmtime|wasmer|local-wasmtime|local-wasmer N` (`local-`: through
//! the local service).

use http_wasm_benches::{PassThroughLayer, empty_ok, noop_guest, one_request};
use tower::ServiceBuilder;
use tower_http_wasm::{Engine, HttpWasmLayer, LocalHttpWasmLayer, Plugin};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(row), Some(Ok(n))) = (args.get(1), args.get(2).map(|n| n.parse::<u64>())) else {
        eprintln!("usage: instructions native|wasmtime|wasmer N");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    if row == "native" {
        let svc = ServiceBuilder::new().layer(PassThroughLayer).service_fn(empty_ok);
        (0..n).for_each(|_| one_request(&rt, &svc));
        return;
    }
    let (local, name) = match row.strip_prefix("local-") {
        Some(name) => (true, name),
        None => (false, row.as_str()),
    };
    let Some(engine) = Engine::from_name(name) else {
        eprintln!("unknown row {row:?}: native, wasmtime, wasmer, local-wasmtime or local-wasmer");
        std::process::exit(2);
    };
    let plugin = Plugin::builder().engine(engine).pool_size(1).build(noop_guest(true)).expect("guest loads");
    if local {
        let svc = ServiceBuilder::new().layer(LocalHttpWasmLayer::new(plugin.local())).service_fn(empty_ok);
        (0..n).for_each(|_| one_request(&rt, &svc));
    } else {
        let svc = ServiceBuilder::new().layer(HttpWasmLayer::new(plugin)).service_fn(empty_ok);
        (0..n).for_each(|_| one_request(&rt, &svc));
    }
}
