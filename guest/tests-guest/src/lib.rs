//! A guest that exercises the SDK's buffer handling, for the hosts' tests.
//!
//! Each request names its case in the `x-case` header; cases answer with
//! status 200 and a body, without calling the next handler:
//!
//! * `config-len`: the decimal length of the configuration read with
//!   [`Config::read`](http_wasm_sdk::Config::read) (built at start, so the
//!   length is the one given when the module was built).
//! * `echo-header`: the first value of `x-value`, read with
//!   [`Headers::get_bytes`](http_wasm_sdk::Headers::get_bytes): exercises
//!   values of 1 byte, around [`SCRATCH_LEN`](http_wasm_sdk::SCRATCH_LEN)
//!   and of 1 MiB. A missing header answers 404.
//! * `body-len`: the decimal length of the request body read with
//!   [`Body::read_all`](http_wasm_sdk::Body::read_all).
//! * `stream`: the decimal length of the request body read through
//!   [`Body::reader`](http_wasm_sdk::Body::reader) in reads of 1000 bytes.
//!
//! * `request-info`: one line each: method, URI, path, query (empty when
//!   none), protocol version, source address, the request header names
//!   joined by `,`, and the enabled features.
//! * `log`: logs `sdk-log <level>` at each level through the SDK's macros
//!   and `log-crate <level>` through the `log` crate facade, then answers
//!   with the levels the host reports enabled, joined by `,`.
//! * `panic`: panics, which traps.
//!
//! Cases that call the next handler:
//!
//! * `rewrite`: sets the method to `PUT` and the URI to `/rewritten?x=1`,
//!   adds `x-added: 1` and `x-added: 2`, sets `x-set: 3`, removes
//!   `x-remove`, then continues with `req_ctx` 7. `handle_response` logs
//!   `handle_response ctx=7 is_error=false status=<status>` at info level.
//!
//! Any other request (no `x-case`, or an unknown case) continues to the next
//! handler unchanged, with `req_ctx` 0.

use http_wasm_sdk::{Config, Error, Filter, LogLevel, Next, Request, Response};
use std::io::Read;

/// The size of each read of the `stream` case.
pub const STREAM_READ: usize = 1000;

/// The test guest: remembers the length of its configuration.
#[derive(Debug)]
pub struct TestGuest {
    config_len: usize,
}

fn respond(res: &mut Response, status: u16, body: &[u8]) -> Next {
    res.set_status(status);
    res.body().write(body);
    Next::Stop
}

impl Filter for TestGuest {
    fn new(config: &Config) -> Result<Self, Error> {
        http_wasm_sdk::init_logger();
        Ok(TestGuest { config_len: config.len() })
    }

    fn handle_response(&mut self, req_ctx: u32, _req: &mut Request, res: &mut Response, is_error: bool) {
        http_wasm_sdk::info!("handle_response ctx={req_ctx} is_error={is_error} status={}", res.status());
    }

    fn handle_request(&mut self, req: &mut Request, res: &mut Response) -> Next {
        let Some(case) = req.headers().get_bytes("x-case") else { return Next::Continue(0) };
        match case.as_slice() {
            b"config-len" => respond(res, 200, self.config_len.to_string().as_bytes()),
            b"echo-header" => match req.headers().get_bytes("x-value") {
                Some(value) => respond(res, 200, &value),
                None => respond(res, 404, b"no x-value\n"),
            },
            b"body-len" => {
                let body = req.body().read_all();
                respond(res, 200, body.len().to_string().as_bytes())
            }
            b"stream" => {
                let mut reader = req.body().reader();
                let mut chunk = [0u8; STREAM_READ];
                let mut total = 0usize;
                loop {
                    match reader.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => total += n,
                        Err(_) => return respond(res, 500, b"read error\n"),
                    }
                }
                respond(res, 200, total.to_string().as_bytes())
            }
            b"request-info" => {
                let lines = [
                    req.method(),
                    req.uri(),
                    req.path(),
                    req.query().unwrap_or_default(),
                    req.version(),
                    req.source_addr(),
                    req.headers().names().join(","),
                    http_wasm_sdk::enabled_features().to_string(),
                ];
                respond(res, 200, lines.join("\n").as_bytes())
            }
            b"log" => {
                http_wasm_sdk::debug!("sdk-log debug");
                http_wasm_sdk::info!("sdk-log {}", "info");
                http_wasm_sdk::warn!("sdk-log warn");
                http_wasm_sdk::error!("sdk-log {}", "error");
                log::trace!("log-crate trace");
                log::debug!("log-crate debug");
                log::info!("log-crate {}", "info");
                log::warn!("log-crate warn");
                log::error!("log-crate error");
                let levels = [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error]
                    .into_iter()
                    .filter(|l| http_wasm_sdk::log_enabled(*l))
                    .map(LogLevel::as_str)
                    .collect::<Vec<_>>();
                respond(res, 200, levels.join(",").as_bytes())
            }
            b"panic" => panic!("test guest asked to panic"),
            b"rewrite" => {
                req.set_method("PUT");
                req.set_uri("/rewritten?x=1");
                let headers = req.headers();
                headers.add("x-added", "1");
                headers.add("x-added", b"2");
                headers.set("x-set", "3");
                headers.remove("x-remove");
                Next::Continue(7)
            }
            _ => Next::Continue(0),
        }
    }
}

http_wasm_sdk::export_filter!(TestGuest);
