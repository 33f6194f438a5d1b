//! Verdicts and how they reach the client.

use crate::cases::{DETAIL_HEADER, RESULT_HEADER};
use crate::ffi;
use http_wasm_abi::{BodyKind, HeaderKind};

/// Why a case did not pass.
#[derive(Debug)]
pub enum Failure {
    /// The host does something wrong.
    Fail(String),
    /// The host legitimately lacks what the case needs.
    Unsupported(String),
}

/// The result of a check.
pub type Res<T> = Result<T, Failure>;

/// A failure with this detail.
pub fn fail(detail: impl Into<String>) -> Failure {
    Failure::Fail(detail.into())
}

/// An unsupported verdict with this detail.
pub fn unsupported(detail: impl Into<String>) -> Failure {
    Failure::Unsupported(detail.into())
}

/// Fails with `what: expected X, got Y` unless `got == expected`.
pub fn expect_eq<T: PartialEq + core::fmt::Debug>(what: &str, got: T, expected: T) -> Res<()> {
    if got == expected { Ok(()) } else { Err(fail(format!("{what}: expected {expected:?}, got {got:?}"))) }
}

/// Bytes shown in a detail: printable ASCII as is, the rest escaped.
pub fn show(bytes: &[u8]) -> String {
    format!("\"{}\"", bytes.escape_ascii())
}

/// A header-safe detail: printable ASCII, at most 900 bytes.
fn header_safe(detail: &str) -> String {
    let mut out = String::with_capacity(detail.len().min(900));
    for c in detail.chars() {
        if out.len() >= 900 {
            out.push_str("...");
            break;
        }
        if (' '..='~').contains(&c) {
            out.push(c);
        } else {
            out.push_str(&c.escape_default().to_string());
        }
    }
    out
}

/// The verdict word and detail of a result.
fn words(result: &Res<()>) -> (&'static str, String) {
    match result {
        Ok(()) => ("pass", String::from("ok")),
        Err(Failure::Fail(d)) => ("fail", d.clone()),
        Err(Failure::Unsupported(d)) => ("unsupported", d.clone()),
    }
}

/// Writes the verdict as response headers.
pub fn write_headers(result: &Res<()>) {
    let (word, detail) = words(result);
    let kind = HeaderKind::Response as i32;
    ffi::set_header_value(kind, RESULT_HEADER.as_bytes(), word.as_bytes());
    ffi::set_header_value(kind, DETAIL_HEADER.as_bytes(), header_safe(&detail).as_bytes());
}

/// Writes the verdict as headers and the detail as the body, except for
/// `HEAD` and `CONNECT`, whose responses have no body.
pub fn write_reply(result: &Res<()>, method: &str) {
    write_headers(result);
    if method == "HEAD" || method == "CONNECT" {
        return;
    }
    let (_, detail) = words(result);
    let mut body = detail.into_bytes();
    body.push(b'\n');
    ffi::write_body(BodyKind::Response, &body);
}
