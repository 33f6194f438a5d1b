//! Cases of configuration, logging, features, the source address and the
//! buffer-limit protocol of every reader.

use crate::cases::{Case, GUEST_CONFIG, SOURCE_IP_HEADER};
use crate::exports::{Action, start_features};
use crate::ffi::{self, Reader};
use crate::read::{self, List};
use crate::verdict::{Res, expect_eq, fail, show, unsupported};
use http_wasm_abi::HeaderKind;

const KNOWN: i32 = 7;

/// Runs the case if it is one of this module's.
pub fn run(case: &'static Case) -> Res<Option<Action>> {
    match case.id {
        "limit_get_config" => limits_single(Reader::Config)?,
        "limit_get_method" => limits_single(Reader::Method)?,
        "limit_get_uri" => limits_single(Reader::Uri)?,
        "limit_get_protocol_version" => limits_single(Reader::ProtocolVersion)?,
        "limit_get_source_addr" => limits_single(Reader::SourceAddr)?,
        "limit_get_header_names" => limits_list(List::Names(HeaderKind::Request))?,
        "limit_get_header_values" => limits_list(List::Values(HeaderKind::Request, b"x-conf-multi"))?,
        "config_bytes" => {
            let got = read::value(Reader::Config)?;
            expect_eq("get_config", show(&got), show(GUEST_CONFIG))?;
        }
        "log_enabled_levels" => log_enabled_levels()?,
        "log_never_traps" => {
            for level in -1..=3 {
                ffi::log(level, b"conformance: log_never_traps");
            }
            ffi::log(42, b"conformance: invalid level");
            ffi::log(-7, b"conformance: invalid level");
            ffi::log(2, b"conformance: invalid UTF-8 \xff\xfe\xc3");
            ffi::log_out_of_bounds();
        }
        "features_module" => {
            let start = start_features().ok_or_else(|| fail("_initialize was not called (the guest is a reactor)"))?;
            if start & !KNOWN != 0 {
                return Err(fail(format!("enable_features(trailers) at start returned unknown bits: {start:#x}")));
            }
            expect_eq("enable_features(0) during a request (module-level features)", ffi::enable_features(0), start)?;
        }
        "features_per_request" => {
            let start = start_features().unwrap_or(0);
            let got = ffi::enable_features(1);
            if got & 1 == 0 {
                return Err(unsupported(format!("the host does not grant buffer_request (returned {got:#x})")));
            }
            expect_eq("enable_features(buffer_request) during a request", got, start | 1)?;
            expect_eq("enable_features(0) after enabling buffer_request", ffi::enable_features(0), start | 1)?;
        }
        "features_not_leaked" => {
            let start = start_features().unwrap_or(0);
            expect_eq("enable_features(0) in a new request", ffi::enable_features(0), start)?;
        }
        "features_unknown_bits" => {
            let start = start_features().unwrap_or(0);
            let got = ffi::enable_features(!KNOWN);
            if got & !KNOWN != 0 {
                return Err(fail(format!("enable_features({:#x}) reported unknown bits: {got:#x}", !KNOWN as u32)));
            }
            expect_eq("enable_features(unknown bits only)", got, start)?;
        }
        "source_addr" => source_addr()?,
        _ => return Ok(None),
    }
    Ok(Some(Action::Reply))
}

fn log_enabled_levels() -> Res<()> {
    let mut last = 0;
    for level in -1..=2 {
        let e = ffi::log_enabled(level);
        if e != 0 && e != 1 {
            return Err(fail(format!("log_enabled({level}) = {e}, expected 0 or 1")));
        }
        if e < last {
            return Err(fail(format!("log_enabled({level}) = 0 although level {} is enabled", level - 1)));
        }
        last = e;
    }
    for level in [3, -2, 4, 100, i32::MIN] {
        expect_eq(&format!("log_enabled({level})"), ffi::log_enabled(level), 0)?;
    }
    Ok(())
}

fn source_addr() -> Res<()> {
    let got = read::value(Reader::SourceAddr)?;
    if got.is_empty() {
        return Err(unsupported("get_source_addr is empty: the host does not know the peer"));
    }
    let text = core::str::from_utf8(&got).map_err(|_| fail(format!("get_source_addr: {} is not UTF-8", show(&got))))?;
    let addr: std::net::SocketAddr =
        text.parse().map_err(|_| fail(format!("get_source_addr: {} is not ip:port or [ip6]:port", show(&got))))?;
    if addr.port() == 0 {
        return Err(fail(format!("get_source_addr: port 0 in {text:?}")));
    }
    let ip = read::request_header(SOURCE_IP_HEADER)?;
    if !ip.is_empty() {
        expect_eq("get_source_addr's IP", addr.ip().to_string(), ip)?;
    }
    Ok(())
}

/// The limit protocol of one reader whose value has `len` bytes: limit 0
/// and `len - 1` write nothing and return `len`; `len` and more write
/// exactly `len` bytes.
fn limits<F>(what: &str, call: F) -> Res<()>
where
    F: Fn(&mut [u8], usize) -> (u32, u32),
{
    let mut probe = [0xAAu8; 8];
    let (count, len) = call(&mut probe, 0);
    if probe != [0xAA; 8] {
        return Err(fail(format!("{what} with limit 0 wrote {}", show(&probe))));
    }
    let len = len as usize;
    if len == 0 {
        if what == "get_source_addr" {
            return Err(unsupported("get_source_addr is empty: the host does not know the peer"));
        }
        return Err(fail(format!("{what} returned length 0 for a value that is not empty")));
    }
    let mut buf = vec![0xAAu8; len + 16];
    let short = call(&mut buf, len - 1);
    expect_eq(&format!("{what} with limit {} (one byte short)", len - 1), short, (count, len as u32))?;
    if buf.iter().any(|b| *b != 0xAA) {
        return Err(fail(format!("{what} with a limit one byte short wrote bytes (it must write nothing)")));
    }
    let exact = call(&mut buf, len);
    expect_eq(&format!("{what} with limit {len} (exact)"), exact, (count, len as u32))?;
    if buf[len..].iter().any(|b| *b != 0xAA) {
        return Err(fail(format!("{what} with the exact limit wrote past {len} bytes")));
    }
    let value = buf[..len].to_vec();
    buf.fill(0xAA);
    let roomy = call(&mut buf, len + 16);
    expect_eq(&format!("{what} with limit {}", len + 16), roomy, (count, len as u32))?;
    if buf[len..].iter().any(|b| *b != 0xAA) {
        return Err(fail(format!("{what} with a larger limit wrote past {len} bytes")));
    }
    expect_eq(&format!("{what} with a larger limit"), show(&buf[..len]), show(&value))
}

fn limits_single(reader: Reader) -> Res<()> {
    limits(reader.name(), |buf, limit| {
        let len = reader.call(buf, limit);
        (1, len as u32)
    })
}

fn limits_list(which: List<'_>) -> Res<()> {
    limits(&which.describe(), |buf, limit| {
        let cl = which.call(buf, limit);
        (cl.count, cl.len)
    })
}
