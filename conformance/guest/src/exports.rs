//! The guest's exports, per-instance state and the dispatch by case id.

use crate::cases::{self, CASE_HEADER, Case, STEP_HEADER};
use crate::verdict::{self, Res, fail};
use crate::{bodies, ffi, meta, read, request_side, response_side, traps};
use http_wasm_abi::{CtxNext, Features};
use std::cell::RefCell;

/// What a case does after its request-side checks.
pub enum Action {
    /// Answer now (no next) with the verdict as headers and body.
    Reply,
    /// Answer now (no next) with the verdict as headers only: the case
    /// wrote its own status, headers and body.
    ReplyHeaders,
    /// Write the verdict as response headers, then call next.
    Next,
    /// Call next; `handle_response` gives the verdict (the case enabled
    /// `buffer_response`).
    NextThen,
    /// Call next; `handle_response` runs the case but cannot report (no
    /// `buffer_response`).
    NextSilent,
    /// Return this raw `ctx_next`.
    Raw(i64),
}

/// The request in flight on this instance.
struct Current {
    case: &'static Case,
    setup: bool,
    req_ctx: u32,
    action_then: bool,
}

#[derive(Default)]
struct State {
    /// What `enable_features(trailers)` returned in `_initialize`.
    start_features: Option<i32>,
    counter: u32,
    current: Option<Current>,
    /// `is_error` of the last `setup` step of `is_error_on_failed_body`.
    setup_is_error: Option<i32>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

/// The features enabled at start, if `_initialize` ran.
pub fn start_features() -> Option<i32> {
    STATE.with(|s| s.borrow().start_features)
}

/// Takes the recorded `is_error` of the setup step.
pub fn take_setup_is_error() -> Option<i32> {
    STATE.with(|s| s.borrow_mut().setup_is_error.take())
}

/// Called once by the host after instantiation: enables `trailers` for
/// every request (the only module-level feature: the cases enable the
/// others per request) and records what the host granted.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    let granted = ffi::enable_features(Features::TRAILERS.bits() as i32);
    STATE.with(|s| s.borrow_mut().start_features = Some(granted));
}

/// `handle_request() -> i64`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn handle_request() -> i64 {
    let id = match read::request_header(CASE_HEADER) {
        Ok(id) => id,
        Err(e) => return reply(Err(e)),
    };
    let step = match read::request_header(STEP_HEADER) {
        Ok(step) => step,
        Err(e) => return reply(Err(e)),
    };
    if id.is_empty() {
        return reply(Err(fail(format!("no {CASE_HEADER} request header"))));
    }
    let Some(case) = cases::find(&id) else {
        return reply(Err(fail(format!("the guest does not know case {id:?}"))));
    };
    if step == "after" {
        return reply(Ok(()));
    }
    let setup = step == "setup";
    let (action, result) = match run_request(case, setup) {
        Ok(action) => (action, Ok(())),
        Err(e) => (Action::Reply, Err(e)),
    };
    let req_ctx = STATE.with(|s| {
        let mut s = s.borrow_mut();
        s.counter = s.counter.wrapping_add(1);
        // The high bit is set so that a host taking req_ctx as signed shows.
        0x8000_0000 | (s.counter & 0x7fff_ffff)
    });
    let next = match action {
        Action::Reply => {
            verdict::write_reply(&result, case.request.method);
            false
        }
        Action::ReplyHeaders => {
            verdict::write_headers(&result);
            false
        }
        Action::Next => {
            verdict::write_headers(&result);
            true
        }
        Action::NextThen | Action::NextSilent => true,
        Action::Raw(raw) => return raw,
    };
    if next {
        let action_then = matches!(action, Action::NextThen);
        STATE.with(|s| s.borrow_mut().current = Some(Current { case, setup, req_ctx, action_then }));
    }
    CtxNext { req_ctx, next }.encode()
}

fn reply(result: Res<()>) -> i64 {
    // The method is unknown here: a body is fine for every case but the
    // HEAD and CONNECT ones, which only come here on a broken host.
    verdict::write_reply(&result, "");
    CtxNext { req_ctx: 0, next: false }.encode()
}

/// `handle_response(req_ctx, is_error)`.
#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn handle_response(req_ctx: i32, is_error: i32) {
    let Some(current) = STATE.with(|s| s.borrow_mut().current.take()) else { return };
    if current.setup {
        STATE.with(|s| s.borrow_mut().setup_is_error = Some(is_error));
        return;
    }
    let result = if req_ctx as u32 != current.req_ctx {
        Err(fail(format!(
            "handle_response got req_ctx {:#x}, handle_request returned {:#x}",
            req_ctx as u32, current.req_ctx
        )))
    } else if is_error != 0 {
        Err(fail(format!("handle_response got is_error {is_error} after a next handler that succeeded")))
    } else {
        run_response(current.case)
    };
    if current.action_then {
        verdict::write_headers(&result);
    }
}

/// The request side of a case.
fn run_request(case: &'static Case, setup: bool) -> Res<Action> {
    let id = case.id;
    if let Some(a) = request_side::run(case)? {
        return Ok(a);
    }
    if let Some(a) = meta::run(case)? {
        return Ok(a);
    }
    if let Some(a) = bodies::run(case)? {
        return Ok(a);
    }
    if let Some(a) = response_side::run(case, setup)? {
        return Ok(a);
    }
    if let Some(a) = traps::run(case)? {
        return Ok(a);
    }
    Err(fail(format!("case {id} has no request-side implementation in this guest")))
}

/// The response side of a case (after next).
fn run_response(case: &'static Case) -> Res<()> {
    if let Some(r) = response_side::respond(case) {
        return r;
    }
    if let Some(r) = traps::respond(case) {
        return r;
    }
    Ok(())
}
