//! Cases of the response side, of short-circuits and of trailers.

use crate::cases::{Body, Case};
use crate::exports::{Action, take_setup_is_error};
use crate::ffi;
use crate::read::{self, List, expect_body, expect_list};
use crate::request_side::check_names;
use crate::verdict::{Res, expect_eq, fail, unsupported};
use http_wasm_abi::{BodyKind, HeaderKind};

const BUFFER_RESPONSE: i32 = 2;
const TRAILERS: i32 = 4;
const RESP: HeaderKind = HeaderKind::Response;

fn buffer_response() -> Res<()> {
    let got = ffi::enable_features(BUFFER_RESPONSE);
    if got & BUFFER_RESPONSE == 0 {
        return Err(unsupported(format!("the host does not grant buffer_response (returned {got:#x})")));
    }
    Ok(())
}

fn trailers() -> Res<()> {
    let got = ffi::enable_features(0);
    if got & TRAILERS == 0 {
        return Err(unsupported(format!("the host does not offer trailers (features {got:#x})")));
    }
    Ok(())
}

/// Runs the request side of the case if it is one of this module's.
pub fn run(case: &'static Case, setup: bool) -> Res<Option<Action>> {
    let action = match case.id {
        "response_passthrough" => Action::Next,
        "response_status"
        | "response_header_get"
        | "response_header_names"
        | "response_header_set"
        | "response_header_add"
        | "response_header_remove"
        | "response_body_read"
        | "response_body_write"
        | "response_body_read_then_write"
        | "req_ctx_round_trip"
        | "is_error_zero" => {
            buffer_response()?;
            Action::NextThen
        }
        "status_default_before_next" => {
            expect_eq("get_status_code before next", ffi::get_status_code(), 200)?;
            Action::Reply
        }
        "before_next_headers" => {
            ffi::set_header_value(RESP as i32, b"x-guest-before", b"g");
            Action::Next
        }
        "before_next_status_guest" | "before_next_status_backend" => {
            ffi::set_status_code(203);
            expect_eq("get_status_code after set_status_code(203)", ffi::get_status_code(), 203)?;
            Action::Next
        }
        "short_circuit" => {
            ffi::set_status_code(418);
            ffi::add_header_value(RESP, b"x-guest", b"a");
            ffi::add_header_value(RESP, b"x-guest", b"b");
            ffi::write_body(BodyKind::Response, b"short-circuit ");
            ffi::write_body(BodyKind::Response, b"body");
            Action::ReplyHeaders
        }
        "short_circuit_default" => Action::ReplyHeaders,
        "is_error_on_failed_body" => {
            buffer_response()?;
            if setup {
                Action::NextThen
            } else {
                match take_setup_is_error() {
                    Some(1) => Action::Reply,
                    Some(other) => {
                        return Err(fail(format!("is_error was {other} after the next handler's body failed")));
                    }
                    None => {
                        return Err(unsupported(
                            "the setup request ran on another instance, or handle_response was not called for it",
                        ));
                    }
                }
            }
        }
        "trailers_request" => {
            trailers()?;
            check_names(&read::list(List::Names(HeaderKind::RequestTrailers))?, &["x-conf-trailer"])?;
            expect_list(List::Values(HeaderKind::RequestTrailers, b"x-conf-trailer"), &["t1"])?;
            let got = read::body(BodyKind::Request, 100)?;
            expect_body("request body", &got, case.request.body)?;
            Action::Reply
        }
        "trailers_request_forward" => {
            trailers()?;
            expect_list(List::Values(HeaderKind::RequestTrailers, b"x-conf-trailer"), &["t1"])?;
            ffi::add_header_value(HeaderKind::RequestTrailers, b"x-conf-added", b"t2");
            // Declare it, as HTTP/1.1 senders of trailers should.
            ffi::add_header_value(HeaderKind::Request, b"trailer", b"x-conf-added");
            Action::Next
        }
        "trailers_response" => {
            trailers()?;
            buffer_response()?;
            Action::NextThen
        }
        _ => return Ok(None),
    };
    Ok(Some(action))
}

/// Runs the response side of the case if it is one of this module's.
pub fn respond(case: &'static Case) -> Option<Res<()>> {
    match response_checks(case.id) {
        Ok(false) => None,
        Ok(true) => Some(Ok(())),
        Err(e) => Some(Err(e)),
    }
}

/// The response side of a case; `Ok(false)` when the id is not this module's.
fn response_checks(id: &str) -> Res<bool> {
    match id {
        "response_status" => {
            expect_eq("get_status_code after next", ffi::get_status_code(), 201)?;
            ffi::set_status_code(202);
            expect_eq("get_status_code after set_status_code(202)", ffi::get_status_code(), 202)?;
        }
        "response_header_get" => {
            expect_list(List::Values(RESP, b"x-b-one"), &["1"])?;
            expect_list(List::Values(RESP, b"X-B-Multi"), &["a", "b"])?;
            expect_list(List::Values(RESP, b"x-b-absent"), &[])?;
        }
        "response_header_names" => check_names(&read::list(List::Names(RESP))?, &["x-b-upper", "x-echo-method"])?,
        "response_header_set" => {
            ffi::set_header_value(RESP as i32, b"x-b-set", b"new");
            expect_list(List::Values(RESP, b"x-b-set"), &["new"])?;
        }
        "response_header_add" => {
            ffi::add_header_value(RESP, b"x-b-add", b"two");
            expect_list(List::Values(RESP, b"x-b-add"), &["one", "two"])?;
        }
        "response_header_remove" => {
            ffi::remove_header(RESP, b"x-b-remove");
            ffi::remove_header(RESP, b"x-b-never-sent");
            expect_list(List::Values(RESP, b"x-b-remove"), &[])?;
        }
        "response_body_read" => {
            let got = read::body(BodyKind::Response, 1000)?;
            expect_body("response body", &got, Body::Pattern(5000))?;
        }
        "response_body_write" => {
            ffi::write_body(BodyKind::Response, b"first");
            ffi::write_body(BodyKind::Response, b"+second");
        }
        "response_body_read_then_write" => {
            let got = read::body(BodyKind::Response, 999)?;
            expect_body("response body", &got, Body::Pattern(5000))?;
            ffi::write_body(BodyKind::Response, b"replaced");
        }
        // handle_response already checked req_ctx and is_error.
        "req_ctx_round_trip" | "is_error_zero" => {}
        "trailers_response" => {
            expect_list(List::Values(HeaderKind::ResponseTrailers, b"x-b-trailer"), &["v1"])?;
            ffi::set_header_value(HeaderKind::ResponseTrailers as i32, b"x-guest-trailer", b"g");
            // Declare it, as HTTP/1.1 senders of trailers should.
            ffi::add_header_value(RESP, b"trailer", b"x-guest-trailer");
            expect_list(List::Values(HeaderKind::ResponseTrailers, b"x-guest-trailer"), &["g"])?;
        }
        _ => return Ok(false),
    }
    Ok(true)
}
