//! Cases of the request line and request headers.

use crate::cases::{AUTHORITY_HEADER, Case, PROTOCOL_HEADER};
use crate::exports::Action;
use crate::ffi::{self, Reader};
use crate::read::{self, List, expect_list, show_list};
use crate::verdict::{Res, expect_eq, fail, show};
use http_wasm_abi::HeaderKind;

const REQ: HeaderKind = HeaderKind::Request;

/// Runs the case if it is one of this module's.
pub fn run(case: &'static Case) -> Res<Option<Action>> {
    let id = case.id;
    let action = match id {
        "protocol_version" => {
            let got = read::value(Reader::ProtocolVersion)?;
            let allowed: [&[u8]; 4] = [b"HTTP/1.0", b"HTTP/1.1", b"HTTP/2.0", b"HTTP/3.0"];
            if !allowed.contains(&got.as_slice()) {
                return Err(fail(format!(
                    "get_protocol_version: {} is not one of HTTP/1.0, HTTP/1.1, HTTP/2.0, HTTP/3.0",
                    show(&got)
                )));
            }
            let sent = read::request_header(PROTOCOL_HEADER)?;
            if !sent.is_empty() {
                expect_eq("get_protocol_version", show(&got), show(sent.as_bytes()))?;
            }
            Action::Reply
        }
        _ if id.starts_with("method_") => {
            let got = read::value(Reader::Method)?;
            expect_eq("get_method", show(&got), show(case.request.method.as_bytes()))?;
            Action::Reply
        }
        "set_method" => {
            ffi::set_method(case.param.as_bytes());
            let got = read::value(Reader::Method)?;
            expect_eq("get_method after set_method", show(&got), show(case.param.as_bytes()))?;
            Action::Next
        }
        _ if id.starts_with("uri_get_") => {
            let got = read::value(Reader::Uri)?;
            expect_eq("get_uri", show(&got), show(case.request.uri.as_bytes()))?;
            Action::Reply
        }
        _ if id.starts_with("uri_set_") => {
            ffi::set_uri(case.param.as_bytes());
            let expected = if case.param.is_empty() { "/" } else { case.param };
            let got = read::value(Reader::Uri)?;
            expect_eq("get_uri after set_uri", show(&got), show(expected.as_bytes()))?;
            Action::Next
        }
        "header_get" => {
            expect_list(List::Values(REQ, b"x-conf-single"), &["value-1"])?;
            let cl = ffi::get_header_values(REQ, b"x-conf-single", &mut [0u8; 64], 64);
            expect_eq("count_len of x-conf-single", (cl.count, cl.len), (1, 8))?;
            Action::Reply
        }
        "header_get_repeated" => {
            expect_list(List::Values(REQ, b"x-conf-multi"), &["a", "b c"])?;
            let cl = ffi::get_header_values(REQ, b"x-conf-multi", &mut [0u8; 64], 64);
            expect_eq("count_len of x-conf-multi", (cl.count, cl.len), (2, 6))?;
            Action::Reply
        }
        "header_get_empty_value" => {
            let mut buf = [0xAAu8; 4];
            let cl = ffi::get_header_values(REQ, b"x-conf-empty", &mut buf, 4);
            expect_eq("count_len of an empty value", (cl.count, cl.len), (1, 1))?;
            expect_eq("bytes written for an empty value", show(&buf[..2]), show(b"\0\xAA"))?;
            Action::Reply
        }
        "header_get_case_insensitive" => {
            expect_list(List::Values(REQ, b"X-CONF-Single"), &["value-1"])?;
            Action::Reply
        }
        "header_get_absent" => {
            let mut buf = [0xAAu8; 8];
            let cl = ffi::get_header_values(REQ, b"x-conf-absent", &mut buf, 8);
            expect_eq("count_len of an absent header", (cl.count, cl.len), (0, 0))?;
            expect_eq("bytes written for an absent header", show(&buf), show(&[0xAA; 8]))?;
            Action::Reply
        }
        "header_names" => {
            let names = read::list(List::Names(REQ))?;
            check_names(&names, &["host", "x-conf-a", "x-conf-b", "x-conformance-case"])?;
            Action::Reply
        }
        "header_names_lowercase" => {
            let names = read::list(List::Names(REQ))?;
            check_names(&names, &["x-conf-mixed"])?;
            Action::Reply
        }
        "header_host" => {
            let names = read::list(List::Names(REQ))?;
            check_names(&names, &["host"])?;
            let authority = read::request_header(AUTHORITY_HEADER)?;
            if authority.is_empty() {
                return Err(fail(format!("the runner sent no {AUTHORITY_HEADER}")));
            }
            expect_list(List::Values(REQ, b"host"), &[&authority])?;
            Action::Reply
        }
        "header_set" => {
            ffi::set_header_value(REQ as i32, b"x-conf-set", b"new");
            expect_list(List::Values(REQ, b"x-conf-set"), &["new"])?;
            Action::Next
        }
        "header_add" => {
            ffi::add_header_value(REQ, b"x-conf-add", b"two");
            expect_list(List::Values(REQ, b"x-conf-add"), &["one", "two"])?;
            Action::Next
        }
        "header_remove" => {
            ffi::remove_header(REQ, b"x-conf-remove");
            ffi::remove_header(REQ, b"x-conf-never-sent");
            expect_list(List::Values(REQ, b"x-conf-remove"), &[])?;
            Action::Next
        }
        _ => return Ok(None),
    };
    Ok(Some(action))
}

/// Checks a name list: lowercase, sorted by byte, distinct, containing `required`.
pub fn check_names(names: &[Vec<u8>], required: &[&str]) -> Res<()> {
    if let Some(n) = names.iter().find(|n| n.iter().any(u8::is_ascii_uppercase)) {
        return Err(fail(format!("name {} is not lowercased in {}", show(n), show_list(names))));
    }
    if names.windows(2).any(|w| w[0] >= w[1]) {
        return Err(fail(format!("names are not sorted and distinct: {}", show_list(names))));
    }
    for r in required {
        if !names.iter().any(|n| n == r.as_bytes()) {
            return Err(fail(format!("{r:?} missing from {}", show_list(names))));
        }
    }
    Ok(())
}
