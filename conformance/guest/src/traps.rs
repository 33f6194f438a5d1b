//! Cases where the host must fail the guest: a trap of the guest's own, or
//! a host call the ABI makes a guest error. When the host does not trap,
//! the guest answers `fail` (where it still can).

use crate::cases::Case;
use crate::exports::Action;
use crate::ffi;
use crate::verdict::{Res, fail, unsupported};
use http_wasm_abi::{CtxNext, HeaderKind};

fn did_not_trap(what: &str) -> crate::verdict::Failure {
    fail(format!("{what} returned instead of failing the guest"))
}

/// Runs the request side of the case if it is one of this module's.
pub fn run(case: &'static Case) -> Res<Option<Action>> {
    let mut buf = [0u8; 64];
    match case.id {
        "trap_handle_request" => core::arch::wasm32::unreachable(),
        "trap_handle_response" | "trap_response_write_without_buffer" => Ok(Some(Action::NextSilent)),
        "trap_request_write_after_next" => {
            let got = ffi::enable_features(2);
            if got & 2 == 0 {
                return Err(unsupported("the host does not grant buffer_response"));
            }
            Ok(Some(Action::NextThen))
        }
        "trap_read_body_zero_limit" => {
            let r = ffi::read_body(0, &mut buf, 0);
            Err(did_not_trap(&format!("read_body with limit 0 (result {r:#x})")))
        }
        "trap_invalid_header_kind" => {
            let r = ffi::get_header_names(9, &mut buf, 64);
            Err(did_not_trap(&format!("get_header_names with kind 9 (result {r:?})")))
        }
        "trap_invalid_body_kind" => {
            let r = ffi::read_body(5, &mut buf, 64);
            Err(did_not_trap(&format!("read_body with kind 5 (result {r:#x})")))
        }
        "trap_empty_header_name" => {
            ffi::set_header_value(HeaderKind::Request as i32, b"", b"v");
            Err(did_not_trap("set_header_value with an empty name"))
        }
        "trap_invalid_header_value" => {
            ffi::set_header_value(HeaderKind::Request as i32, b"x-conf-bad", b"a\r\nx-injected: 1");
            Err(did_not_trap("set_header_value with CR LF in the value"))
        }
        "trap_set_method_empty" => {
            ffi::set_method(b"");
            Err(did_not_trap("set_method with an empty method"))
        }
        "trap_set_status_invalid" => {
            ffi::set_status_code(1000);
            Err(did_not_trap("set_status_code(1000)"))
        }
        "trap_next_flag" => Ok(Some(Action::Raw(CtxNext { req_ctx: 7, next: false }.encode() | 2))),
        "trap_out_of_bounds" => {
            let r = ffi::get_method_out_of_bounds();
            Err(did_not_trap(&format!("get_method into a buffer outside memory (result {r})")))
        }
        _ => Ok(None),
    }
}

/// Runs the response side of the case if it is one of this module's.
pub fn respond(case: &'static Case) -> Option<Res<()>> {
    match case.id {
        "trap_handle_response" => core::arch::wasm32::unreachable(),
        "trap_response_write_without_buffer" => {
            ffi::set_header_value(HeaderKind::Response as i32, b"x-late", b"1");
            // Without buffer_response nothing more can reach the client.
            Some(Err(did_not_trap("set_header_value(response) after next without buffer_response")))
        }
        "trap_request_write_after_next" => {
            ffi::set_header_value(HeaderKind::Request as i32, b"x-late", b"1");
            Some(Err(did_not_trap("set_header_value(request) after next")))
        }
        _ => None,
    }
}
