//! Integration tests of the host: real wasmtime, real tower services, WAT
//! guests written for the purpose, and real hyper servers on 127.0.0.1.

mod abi;
mod arbitrary_calls;
mod bodies;
mod cache;
mod concurrency;
mod failures;
mod fuzz;
mod harness;
mod headers;
mod limits;
mod local;
mod metrics;
mod policies;
mod reload;
mod request_line;
mod response;
mod security;
mod server;
mod start;
