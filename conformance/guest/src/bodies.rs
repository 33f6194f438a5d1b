//! Cases of the request body.

use crate::cases::{Body, Case};
use crate::exports::Action;
use crate::ffi;
use crate::read::{self, expect_body};
use crate::verdict::{Res, fail, unsupported};
use http_wasm_abi::BodyKind;

const BUFFER_REQUEST: i32 = 1;

/// Enables `buffer_request` for this request, or reports it unsupported.
fn buffer_request() -> Res<()> {
    let got = ffi::enable_features(BUFFER_REQUEST);
    if got & BUFFER_REQUEST == 0 {
        return Err(unsupported(format!("the host does not grant buffer_request (returned {got:#x})")));
    }
    Ok(())
}

/// Reads exactly the first `n` bytes and checks them against the pattern.
fn read_prefix(n: usize) -> Res<()> {
    let (got, eof) = read::read_up_to(BodyKind::Request, 64, n)?;
    if eof && got.len() < n {
        return Err(fail(format!("read_body: EOF after {} bytes, expected at least {n}", got.len())));
    }
    expect_body("the first bytes of the request body", &got, Body::Pattern(n))
}

/// Runs the case if it is one of this module's.
pub fn run(case: &'static Case) -> Res<Option<Action>> {
    let action = match case.id {
        "body_read_0" | "body_read_1" | "body_read_100" | "body_read_4096" | "body_read_5000" | "body_read_chunked" => {
            // 777: chunk boundaries that never line up with the body's frames.
            let got = read::body(BodyKind::Request, 777)?;
            expect_body("request body", &got, case.request.body)?;
            Action::Reply
        }
        "body_buffer_request_forward" | "body_buffer_request_forward_chunked" => {
            buffer_request()?;
            let got = read::body(BodyKind::Request, 1000)?;
            expect_body("request body", &got, case.request.body)?;
            Action::Next
        }
        "body_buffer_request_partial" => {
            buffer_request()?;
            read_prefix(100)?;
            Action::Next
        }
        "body_unbuffered_rest" => {
            read_prefix(100)?;
            Action::Next
        }
        "body_write_request" => {
            ffi::write_body(BodyKind::Request, b"replaced");
            ffi::write_body(BodyKind::Request, b" and appended");
            Action::Next
        }
        "body_write_request_after_read" => {
            buffer_request()?;
            let got = read::body(BodyKind::Request, 1000)?;
            expect_body("request body", &got, case.request.body)?;
            ffi::write_body(BodyKind::Request, b"short");
            Action::Next
        }
        "body_write_request_empty" => {
            ffi::write_body(BodyKind::Request, b"");
            Action::Next
        }
        "body_write_request_on_get" => {
            ffi::write_body(BodyKind::Request, b"added");
            Action::Next
        }
        _ => return Ok(None),
    };
    Ok(Some(action))
}
