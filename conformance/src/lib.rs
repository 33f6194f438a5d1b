//! A conformance suite for http-wasm hosts.
//!
//! Three parts, used together:
//!
//! 1. **The guest** (`conformance/guest`, package
//!    `http-wasm-conformance-guest`; the `http-wasm conformance guest --out
//!    FILE` command writes it): a wasm module written on the raw ABI imports
//!    (not the SDK) that runs one named case per request.
//! 2. **The [backend]**: an echo server, the next handler behind the host.
//! 3. **The [runner]**: sends every case to the host and reads the verdicts.
//!
//! ```text
//!  runner ──HTTP──▶ host under test ──▶ conformance guest ──next──▶ backend
//! ```
//!
//! The cases are data, in [`cases`]: a stable id, a one-line description,
//! the section of the project's specification (`abi/src/spec.md`) it
//! checks, what the runner sends and what it checks of the response. The
//! same file is compiled into the guest, so the two cannot disagree.
//!
//! # Running it against a host
//!
//! The host must load the guest with [`GUEST_CONFIG`] as its configuration
//! bytes (the `config_bytes` case checks them byte for byte; they are not
//! UTF-8 on purpose), with every feature allowed, put it in front of the
//! backend, and insert the client's address where its API asks for it.
//!
//! ```text
//! http-wasm conformance guest --out guest.wasm --config-out guest.config
//! http-wasm conformance backend --listen 127.0.0.1:9000 &
//! http-wasm serve --listen 127.0.0.1:8080 --upstream http://127.0.0.1:9000 \
//!     --filter guest.wasm --config-file guest.config &
//! http-wasm conformance run --url http://127.0.0.1:8080
//! ```
//!
//! # The guest's verdict
//!
//! Each request carries the case id in [`CASE_HEADER`] (and a step in
//! [`STEP_HEADER`] for cases of several requests). The guest checks what
//! the host reports and answers with the response header [`RESULT_HEADER`]
//! (`pass`, `fail` or `unsupported`) and a detail in [`DETAIL_HEADER`] such
//! as `get_uri: expected "/a%20b", got "/a b"`. When it answers itself (no
//! next) the detail is the body too. The runner reads the header, never
//! the status code, so a host whose next handler overwrites the status
//! cannot mask a failure. The guest never traps for a plain failure; only
//! the `trap_*` cases make the host fail the guest on purpose, and then the
//! runner expects a 5xx response without a verdict and without engine
//! internals in the body, followed by a request that passes.
//!
//! How each case decides, by kind:
//!
//! * read-only cases (method, URI, headers, limits, config, features,
//!   request bodies) answer from `handle_request` without calling next;
//! * cases that change the request (`set_method`, `uri_set_*`, `header_set`,
//!   bodies written or buffered) write their verdict as response headers
//!   before calling next; the runner then checks what the backend echoed
//!   (e.g. `x-echo-uri`, or the echoed body byte for byte);
//! * response-side cases enable `buffer_response` for the request and give
//!   their verdict from `handle_response`; the runner also checks what the
//!   client received (status, headers, body, framing);
//! * `is_error_on_failed_body` sends a `setup` request whose backend body
//!   fails (`x-backend-fail: body`); the guest records `is_error` of that
//!   `handle_response` and reports it on the next request. It reports
//!   `unsupported` if that request lands on another instance.
//!
//! Response trailers ([`cases::Check::Trailer`]) are checked over both
//! protocols: over HTTP/1.1 the runner asks for them (`te: trailers`) and
//! the backend declares them (`trailer`), so a host must send such a
//! response chunked rather than with a `content-length`.
//!
//! # The backend
//!
//! [`backend::respond`] answers every request with an echo of what it
//! received:
//!
//! | response header | value |
//! |---|---|
//! | `x-echo-method` | the method |
//! | `x-echo-uri` | the request-target's path and query, as received (`/` when empty) |
//! | `x-echo-version` | `HTTP/1.1`, `HTTP/2.0`, ... |
//! | `x-echo-header-<name>` | every value of every request header, one line per value, in order |
//! | `x-echo-trailer-<name>` | every request trailer (the body is read in full before answering) |
//! | `x-echo-body-length` | the number of body bytes received |
//!
//! and the request body as its body, with status 200. It never adds a
//! `content-type`. Request headers make it answer otherwise:
//!
//! | request header | effect |
//! |---|---|
//! | `x-backend-status: 404` | the status |
//! | `x-backend-header: name: value` (repeatable) | adds a response header line |
//! | `x-backend-body: text` | the body, instead of the echo |
//! | `x-backend-trailer: name: value` (repeatable) | a response trailer, declared in `trailer`; the body is then sent without a length |
//! | `x-backend-fail: body` | the body fails after 7 bytes (`partial`) |
//!
//! [`backend::serve`] serves it over HTTP/1.1 and HTTP/2 (prior knowledge);
//! `http-wasm conformance backend --listen ADDR` runs it.
#![deny(missing_docs)]

pub mod backend;
pub mod cases;
mod client;
mod frames;
mod report;
pub mod runner;

pub use cases::{CASE_HEADER, CASES, Case, DETAIL_HEADER, GUEST_CONFIG, RESULT_HEADER, STEP_HEADER};
pub use frames::{BoxError, Frames};
pub use report::{CaseResult, Outcome, Report};
pub use runner::{RunError, RunOptions, run};
