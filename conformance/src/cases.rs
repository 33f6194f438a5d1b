//! The conformance cases, as data.
//!
//! This file is compiled twice: into the `http-wasm-conformance` library
//! (the runner reads what to send and what to check) and into the
//! conformance guest (`conformance/guest`, through `#[path]`), which looks
//! each request's case up by the id in [`CASE_HEADER`] and checks what the
//! host reports. One table for both means the runner and the guest cannot
//! disagree on ids, requests or parameters. It depends on nothing but
//! `core`.
//!
//! Every case names the section of the project's normative specification
//! (`abi/src/spec.md`, rendered as `http_wasm_abi::spec`) it checks.

/// The configuration bytes every host must load the conformance guest with
/// (`get_config`). They contain a NUL and bytes that are not UTF-8, so a
/// host that treats the configuration as text fails `config_bytes`.
pub const GUEST_CONFIG: &[u8] = b"conformance-config\x00\xff\xfe{\"k\":\"v\xc3\xa9\"}\x80end";

/// Request header naming the case (`id` of a [`Case`]).
pub const CASE_HEADER: &str = "x-conformance-case";
/// Request header naming the step of a multi-request case: absent for the
/// main request, `setup` for the first request of [`Flow::Setup`], `after`
/// for the follow-up of [`Flow::Trap`].
pub const STEP_HEADER: &str = "x-conformance-step";
/// Request header: the protocol the runner used (`HTTP/1.1` or `HTTP/2.0`).
pub const PROTOCOL_HEADER: &str = "x-conformance-protocol";
/// Request header: the authority the runner connected to (`host:port`).
pub const AUTHORITY_HEADER: &str = "x-conformance-authority";
/// Request header: the client's IP as the runner knows it, when it does.
pub const SOURCE_IP_HEADER: &str = "x-conformance-source-ip";
/// Response header: the guest's verdict, `pass`, `fail` or `unsupported`.
pub const RESULT_HEADER: &str = "x-conformance-result";
/// Response header: the guest's detail (also the body when the guest answers itself).
pub const DETAIL_HEADER: &str = "x-conformance-detail";

/// A request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body {
    /// No bytes.
    Empty,
    /// These bytes.
    Text(&'static [u8]),
    /// `len` bytes of [`pattern_byte`] from offset 0.
    Pattern(usize),
    /// Bytes `start..end` of the pattern.
    PatternRange(usize, usize),
}

/// Byte `i` of the pattern bodies: a hash of the offset, so that a body
/// shifted, truncated or duplicated by any amount never matches.
pub const fn pattern_byte(i: usize) -> u8 {
    let x = (i as u32).wrapping_add(0x9e37_79b9).wrapping_mul(0x85eb_ca6b);
    (x ^ (x >> 13)).wrapping_mul(0xc2b2_ae35).to_le_bytes()[3]
}

impl Body {
    /// Its length in bytes.
    pub const fn len(self) -> usize {
        match self {
            Body::Empty => 0,
            Body::Text(t) => t.len(),
            Body::Pattern(n) => n,
            Body::PatternRange(a, b) => b - a,
        }
    }

    /// True when it has no bytes.
    pub const fn is_empty(self) -> bool {
        self.len() == 0
    }

    /// Byte `i`.
    pub const fn byte(self, i: usize) -> u8 {
        match self {
            Body::Empty => 0,
            Body::Text(t) => t[i],
            Body::Pattern(_) => pattern_byte(i),
            Body::PatternRange(a, _) => pattern_byte(a + i),
        }
    }

    /// The index of the first byte where `got` differs from this body
    /// (`got.len()` or `self.len()` when one is a prefix of the other), or
    /// `None` when they are equal.
    pub fn mismatch(self, got: &[u8]) -> Option<usize> {
        let n = self.len().min(got.len());
        for (i, b) in got.iter().take(n).enumerate() {
            if *b != self.byte(i) {
                return Some(i);
            }
        }
        if got.len() == self.len() { None } else { Some(n) }
    }
}

/// How the runner frames a request body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// One frame with `content-length`.
    Length,
    /// Several frames of at most 1000 bytes without `content-length`
    /// (chunked in HTTP/1.1).
    Chunked,
}

/// What the runner sends.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The method.
    pub method: &'static str,
    /// The request-target, path and query, exactly as sent. For `CONNECT`
    /// the runner sends the authority form of the URL instead.
    pub uri: &'static str,
    /// Headers, in order; a repeated name is sent as separate lines.
    pub headers: &'static [(&'static str, &'static str)],
    /// The body.
    pub body: Body,
    /// How the body is framed.
    pub framing: Framing,
    /// Request trailers (the body is then always sent chunked).
    pub trailers: &'static [(&'static str, &'static str)],
    /// Over HTTP/1.1, send the request as raw bytes (to keep header-name case).
    pub raw_http1: bool,
}

impl Request {
    /// `GET /` with nothing else.
    pub const GET: Request = Request {
        method: "GET",
        uri: "/",
        headers: &[],
        body: Body::Empty,
        framing: Framing::Length,
        trailers: &[],
        raw_http1: false,
    };

    const fn method(method: &'static str) -> Request {
        Request { method, ..Request::GET }
    }

    const fn uri(self, uri: &'static str) -> Request {
        Request { uri, ..self }
    }

    const fn headers(self, headers: &'static [(&'static str, &'static str)]) -> Request {
        Request { headers, ..self }
    }

    const fn post(body: Body) -> Request {
        Request { method: "POST", body, ..Request::GET }
    }

    const fn chunked(self) -> Request {
        Request { framing: Framing::Chunked, ..self }
    }

    const fn trailers(self, trailers: &'static [(&'static str, &'static str)]) -> Request {
        Request { trailers, framing: Framing::Chunked, ..self }
    }
}

/// How a case runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// One request; the guest's verdict ([`RESULT_HEADER`]) decides, then
    /// the [`Check`]s.
    Verdict,
    /// The guest traps (or makes a call the host must reject): the response
    /// must be a 5xx without a verdict and without engine internals in its
    /// body; then a follow-up request (step `after`) must pass, showing the
    /// host recovered.
    Trap,
    /// A `setup` request whose response is ignored, then the main request,
    /// judged as [`Flow::Verdict`].
    Setup,
}

/// What the runner checks of the response, besides the guest's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// The status code.
    Status(u16),
    /// Every value of a response header, in order.
    Header(&'static str, &'static [&'static str]),
    /// The response header is absent.
    NoHeader(&'static str),
    /// The response body, byte for byte.
    Body(Body),
    /// `content-length`, when present, equals the response body's length.
    Framing,
    /// The backend's echoed `content-length` (`x-echo-header-content-length`),
    /// when present, equals the length of the body the backend received.
    EchoFraming,
    /// A response trailer's values. Over HTTP/1.1 the runner sends
    /// `te: trailers` and the backend declares its trailers in `trailer`,
    /// so a host must frame the response chunked to deliver them.
    Trailer(&'static str, &'static [&'static str]),
}

/// One conformance case.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    /// Stable id, sent in [`CASE_HEADER`].
    pub id: &'static str,
    /// What it checks, in one line.
    pub description: &'static str,
    /// The section of `abi/src/spec.md` it checks.
    pub section: &'static str,
    /// What the runner sends.
    pub request: Request,
    /// How it runs.
    pub flow: Flow,
    /// What the runner checks besides the guest's verdict.
    pub checks: &'static [Check],
    /// A value the guest uses (e.g. the URI to set); meaning per case.
    pub param: &'static str,
}

const fn case(id: &'static str, section: &'static str, description: &'static str, request: Request) -> Case {
    Case { id, description, section, request, flow: Flow::Verdict, checks: &[], param: "" }
}

impl Case {
    const fn checks(self, checks: &'static [Check]) -> Case {
        Case { checks, ..self }
    }

    const fn param(self, param: &'static str) -> Case {
        Case { param, ..self }
    }

    const fn flow(self, flow: Flow) -> Case {
        Case { flow, ..self }
    }
}

/// The case with this id.
pub fn find(id: &str) -> Option<&'static Case> {
    CASES.iter().find(|c| c.id == id)
}

use Body::{Pattern, PatternRange, Text};
use Check::{EchoFraming, Framing as Frames, Header, NoHeader, Status};

const ECHO_5000: &[Check] = &[Check::Body(Pattern(5000)), EchoFraming];

/// Every case, in the order the runner sends them.
pub const CASES: &[Case] = &[
    // ----- request line -----
    case(
        "protocol_version",
        "§4 get_protocol_version",
        "get_protocol_version names the protocol the client used",
        Request::GET,
    ),
    case("method_get", "§4 get_method", "get_method reports GET", Request::GET),
    case(
        "method_head",
        "§4 get_method",
        "get_method reports HEAD (verdict in headers: no body)",
        Request::method("HEAD"),
    ),
    case("method_post", "§4 get_method", "get_method reports POST", Request::method("POST")),
    case("method_put", "§4 get_method", "get_method reports PUT", Request::method("PUT")),
    case("method_delete", "§4 get_method", "get_method reports DELETE", Request::method("DELETE")),
    case(
        "method_connect",
        "§4 get_method",
        "get_method reports CONNECT (authority-form target)",
        Request::method("CONNECT"),
    ),
    case("method_options", "§4 get_method", "get_method reports OPTIONS", Request::method("OPTIONS")),
    case("method_trace", "§4 get_method", "get_method reports TRACE", Request::method("TRACE")),
    case("method_patch", "§4 get_method", "get_method reports PATCH", Request::method("PATCH")),
    case("set_method", "§4 set_method", "set_method changes the method the next handler receives", Request::GET)
        .param("POST")
        .checks(&[Header("x-echo-method", &["POST"])]),
    case("uri_get_root", "§4 get_uri", "get_uri reports `/`", Request::GET),
    case("uri_get_path", "§4 get_uri", "get_uri reports a path", Request::GET.uri("/v1.0/hi")),
    case("uri_get_query", "§4 get_uri", "get_uri reports path and query", Request::GET.uri("/v1.0/hi?name=panda")),
    case(
        "uri_get_escaped",
        "§4 get_uri",
        "get_uri keeps percent-escapes as received",
        Request::GET.uri("/v1.0/hello%20world?name=chip%26dale&path=%2Fa%2Fb"),
    ),
    case(
        "uri_set_path",
        "§4 set_uri",
        "set_uri replaces the path the next handler receives",
        Request::GET.uri("/old?q=1"),
    )
    .param("/v2/next")
    .checks(&[Header("x-echo-uri", &["/v2/next"])]),
    case("uri_set_query", "§4 set_uri", "set_uri replaces path and query", Request::GET.uri("/old"))
        .param("/v2/next?name=panda&n=1")
        .checks(&[Header("x-echo-uri", &["/v2/next?name=panda&n=1"])]),
    case("uri_set_escaped", "§4 set_uri", "set_uri passes an encoded target through unchanged", Request::GET)
        .param("/a%2Fb/c%20d?x=chip%26dale")
        .checks(&[Header("x-echo-uri", &["/a%2Fb/c%20d?x=chip%26dale"])]),
    case("uri_set_empty", "§4 set_uri", "set_uri with an empty value means `/`", Request::GET.uri("/old?q=1"))
        .checks(&[Header("x-echo-uri", &["/"])]),
    // ----- request headers -----
    case(
        "header_get",
        "§4 get_header_values",
        "one value, with its count_len",
        Request::GET.headers(&[("x-conf-single", "value-1")]),
    ),
    case(
        "header_get_repeated",
        "§4 get_header_values",
        "repeated header lines are separate values, in order",
        Request::GET.headers(&[("x-conf-multi", "a"), ("x-conf-multi", "b c")]),
    ),
    case(
        "header_get_empty_value",
        "§3 lists",
        "an empty value is a lone NUL: count 1, len 1",
        Request::GET.headers(&[("x-conf-empty", "")]),
    ),
    case(
        "header_get_case_insensitive",
        "§4 get_header_values",
        "names are matched case-insensitively",
        Request::GET.headers(&[("x-conf-single", "value-1")]),
    ),
    case("header_get_absent", "§4 get_header_values", "an absent header gives 0", Request::GET),
    case(
        "header_names",
        "§4 get_header_names",
        "distinct, lowercased, sorted names with a consistent count_len",
        Request::GET.headers(&[("x-conf-b", "2"), ("x-conf-a", "1"), ("x-conf-b", "3")]),
    ),
    case(
        "header_names_lowercase",
        "§4 get_header_names",
        "names sent in mixed case are reported lowercased (raw HTTP/1.1)",
        Request { raw_http1: true, ..Request::GET.headers(&[("X-Conf-MiXed", "1")]) },
    ),
    case(
        "header_host",
        "§4 get_header_names",
        "`host` is a request header with the authority the client used",
        Request::GET,
    ),
    case(
        "header_set",
        "§4 set_header_value",
        "set_header_value replaces every value",
        Request::GET.headers(&[("x-conf-set", "old1"), ("x-conf-set", "old2")]),
    )
    .checks(&[Header("x-echo-header-x-conf-set", &["new"])]),
    case(
        "header_add",
        "§4 add_header_value",
        "add_header_value appends a value after the existing ones",
        Request::GET.headers(&[("x-conf-add", "one")]),
    )
    .checks(&[Header("x-echo-header-x-conf-add", &["one", "two"])]),
    case(
        "header_remove",
        "§4 remove_header",
        "remove_header removes every value; an absent name is no error",
        Request::GET.headers(&[("x-conf-remove", "x"), ("x-conf-remove", "y")]),
    )
    .checks(&[NoHeader("x-echo-header-x-conf-remove")]),
    // ----- the buffer-limit protocol -----
    case("limit_get_config", "§3 readers", "get_config: limit 0, one short, exact", Request::GET),
    case("limit_get_method", "§3 readers", "get_method: limit 0, one short, exact", Request::GET),
    case("limit_get_uri", "§3 readers", "get_uri: limit 0, one short, exact", Request::GET.uri("/limit/uri?q=%20")),
    case("limit_get_protocol_version", "§3 readers", "get_protocol_version: limit 0, one short, exact", Request::GET),
    case("limit_get_source_addr", "§3 readers", "get_source_addr: limit 0, one short, exact", Request::GET),
    case(
        "limit_get_header_names",
        "§3 readers",
        "get_header_names: limit 0, one short, exact",
        Request::GET.headers(&[("x-conf-a", "1")]),
    ),
    case(
        "limit_get_header_values",
        "§3 readers",
        "get_header_values: limit 0, one short, exact",
        Request::GET.headers(&[("x-conf-multi", "first value"), ("x-conf-multi", "second")]),
    ),
    // ----- configuration, logging, features -----
    case("config_bytes", "§4 get_config", "get_config returns GUEST_CONFIG byte for byte (not UTF-8)", Request::GET),
    case(
        "log_enabled_levels",
        "§4 log_enabled",
        "log_enabled is 0 or 1, monotonic, 0 for none and invalid levels",
        Request::GET,
    ),
    case("log_never_traps", "§4 log", "log ignores invalid levels, pointers and UTF-8", Request::GET),
    case("features_module", "§4 enable_features", "features enabled at start apply to each request", Request::GET),
    case(
        "features_per_request",
        "§4 enable_features",
        "enable_features during a request adds to the set",
        Request::GET,
    ),
    case(
        "features_not_leaked",
        "§4 enable_features",
        "per-request features do not outlive their request",
        Request::GET,
    ),
    case(
        "features_unknown_bits",
        "§4 enable_features",
        "unknown feature bits are never reported enabled",
        Request::GET,
    ),
    // ----- connection -----
    case("source_addr", "§4 get_source_addr", "get_source_addr is `ip:port` of the client", Request::GET),
    // ----- request bodies -----
    case("body_read_0", "§4 read_body", "an empty body reads as EOF", Request::post(Body::Empty)),
    case("body_read_1", "§4 read_body", "a 1-byte body", Request::post(Pattern(1))),
    case("body_read_100", "§4 read_body", "a 100-byte body", Request::post(Pattern(100))),
    case("body_read_4096", "§4 read_body", "a 4096-byte body read in chunks", Request::post(Pattern(4096))),
    case("body_read_5000", "§4 read_body", "a 5000-byte body read in chunks", Request::post(Pattern(5000))),
    case(
        "body_read_chunked",
        "§4 read_body",
        "a 5000-byte chunked body read in chunks",
        Request::post(Pattern(5000)).chunked(),
    ),
    case(
        "body_buffer_request_forward",
        "§4.2",
        "with buffer_request the next handler gets the whole body the guest read",
        Request::post(Pattern(5000)),
    )
    .checks(ECHO_5000),
    case(
        "body_buffer_request_forward_chunked",
        "§4.2",
        "the same with a chunked body",
        Request::post(Pattern(5000)).chunked(),
    )
    .checks(ECHO_5000),
    case(
        "body_buffer_request_partial",
        "§4.2",
        "with buffer_request a partly read body reaches next whole",
        Request::post(Pattern(5000)),
    )
    .checks(ECHO_5000),
    case(
        "body_unbuffered_rest",
        "§4.2",
        "without buffer_request the next handler gets what the guest did not read",
        Request::post(Pattern(5000)),
    )
    .checks(&[Check::Body(PatternRange(100, 5000)), EchoFraming]),
    case(
        "body_write_request",
        "§4 write_body",
        "the first write replaces the request body, later writes append",
        Request::post(Text(b"original body")),
    )
    .checks(&[Check::Body(Text(b"replaced and appended")), EchoFraming]),
    case(
        "body_write_request_after_read",
        "§4 write_body",
        "a body written after reading it all replaces it for next",
        Request::post(Pattern(5000)),
    )
    .checks(&[Check::Body(Text(b"short")), EchoFraming]),
    case(
        "body_write_request_empty",
        "§4 write_body",
        "a write of length 0 replaces the body with nothing",
        Request::post(Text(b"original body")),
    )
    .checks(&[Check::Body(Body::Empty), EchoFraming]),
    case("body_write_request_on_get", "§4 write_body", "a body written on a GET reaches next", Request::GET)
        .checks(&[Check::Body(Text(b"added")), EchoFraming]),
    // ----- the response side -----
    case(
        "response_passthrough",
        "§2",
        "without buffer_response the next handler's status, headers and body reach the client",
        Request::GET.headers(&[
            ("x-backend-status", "203"),
            ("x-backend-header", "x-b-one: 1"),
            ("x-backend-body", "backend body"),
        ]),
    )
    .checks(&[Status(203), Header("x-b-one", &["1"]), Check::Body(Text(b"backend body")), Frames]),
    case(
        "response_status",
        "§4 get_status_code",
        "after next: get_status_code is the next handler's, set_status_code changes it",
        Request::GET.headers(&[("x-backend-status", "201")]),
    )
    .checks(&[Status(202)]),
    case(
        "response_header_get",
        "§4 get_header_values",
        "response header values from the next handler, repeated lines apart",
        Request::GET.headers(&[
            ("x-backend-header", "x-b-one: 1"),
            ("x-backend-header", "x-b-multi: a"),
            ("x-backend-header", "x-b-multi: b"),
        ]),
    ),
    case(
        "response_header_names",
        "§4 get_header_names",
        "response header names: lowercased, sorted, consistent count_len",
        Request::GET.headers(&[("x-backend-header", "X-B-Upper: 1")]),
    ),
    case(
        "response_header_set",
        "§4 set_header_value",
        "set_header_value replaces a response header of the next handler",
        Request::GET.headers(&[("x-backend-header", "x-b-set: old1"), ("x-backend-header", "x-b-set: old2")]),
    )
    .checks(&[Header("x-b-set", &["new"])]),
    case(
        "response_header_add",
        "§4 add_header_value",
        "add_header_value appends to a response header of the next handler",
        Request::GET.headers(&[("x-backend-header", "x-b-add: one")]),
    )
    .checks(&[Header("x-b-add", &["one", "two"])]),
    case(
        "response_header_remove",
        "§4 remove_header",
        "remove_header removes a response header of the next handler",
        Request::GET.headers(&[("x-backend-header", "x-b-remove: x")]),
    )
    .checks(&[NoHeader("x-b-remove")]),
    case(
        "response_body_read",
        "§4 read_body",
        "the next handler's body read in chunks, then sent on unchanged",
        Request::post(Pattern(5000)),
    )
    .checks(&[Check::Body(Pattern(5000)), Frames]),
    case(
        "response_body_write",
        "§4 write_body",
        "the first response write replaces the next handler's body, later ones append",
        Request::GET.headers(&[("x-backend-body", "backend body")]),
    )
    .checks(&[Check::Body(Text(b"first+second")), Frames]),
    case(
        "response_body_read_then_write",
        "§4 write_body",
        "a response body read in full, then replaced",
        Request::post(Pattern(5000)),
    )
    .checks(&[Check::Body(Text(b"replaced")), Frames]),
    case("status_default_before_next", "§4 get_status_code", "before next, get_status_code is 200", Request::GET),
    case(
        "before_next_headers",
        "§2.1",
        "response headers written before next are kept beside the next handler's",
        Request::GET.headers(&[("x-backend-header", "x-b-one: 1")]),
    )
    .checks(&[Header("x-guest-before", &["g"]), Header("x-b-one", &["1"])]),
    case(
        "before_next_status_guest",
        "§2.1",
        "a status written before next wins over the next handler's 200",
        Request::GET,
    )
    .checks(&[Status(203)]),
    case(
        "before_next_status_backend",
        "§2.1",
        "a non-200 status of the next handler wins over the guest's",
        Request::GET.headers(&[("x-backend-status", "404")]),
    )
    .checks(&[Status(404)]),
    case(
        "short_circuit",
        "§2",
        "without next, the guest's status, headers and body reach the client, nothing invented",
        Request::GET,
    )
    .checks(&[
        Status(418),
        Header("x-guest", &["a", "b"]),
        Check::Body(Text(b"short-circuit body")),
        NoHeader("content-type"),
        NoHeader("x-echo-method"),
        Frames,
    ]),
    case("short_circuit_default", "§2", "without next and without writes: status 200, empty body", Request::GET)
        .checks(&[Status(200), Check::Body(Body::Empty), NoHeader("x-echo-method")]),
    case(
        "req_ctx_round_trip",
        "§2",
        "handle_response gets the req_ctx (high bit set) on the same instance",
        Request::GET,
    ),
    case("is_error_zero", "§2", "is_error is 0 after a next handler that succeeded", Request::GET),
    case(
        "is_error_on_failed_body",
        "§2",
        "is_error is 1 when the next handler's body fails (seen by the following request)",
        Request::GET.headers(&[("x-backend-fail", "body")]),
    )
    .flow(Flow::Setup),
    // ----- trailers -----
    case(
        "trailers_request",
        "§4.1",
        "request trailers are readable with the trailers feature",
        Request::post(Text(b"abc")).headers(&[("trailer", "x-conf-trailer")]).trailers(&[("x-conf-trailer", "t1")]),
    ),
    case(
        "trailers_request_forward",
        "§4.1",
        "request trailers, and one the guest adds, reach the next handler",
        Request::post(Text(b"abc")).headers(&[("trailer", "x-conf-trailer")]).trailers(&[("x-conf-trailer", "t1")]),
    )
    .checks(&[Header("x-echo-trailer-x-conf-trailer", &["t1"]), Header("x-echo-trailer-x-conf-added", &["t2"])]),
    case(
        "trailers_response",
        "§4.1",
        "response trailers of the next handler are readable and a guest's trailer is sent",
        Request::GET.headers(&[("te", "trailers"), ("x-backend-trailer", "x-b-trailer: v1")]),
    )
    .checks(&[Check::Trailer("x-b-trailer", &["v1"]), Check::Trailer("x-guest-trailer", &["g"])]),
    // ----- traps -----
    case("trap_handle_request", "§3 errors", "a trap in handle_request gives an error response", Request::GET)
        .flow(Flow::Trap),
    case("trap_handle_response", "§3 errors", "a trap in handle_response gives an error response", Request::GET)
        .flow(Flow::Trap),
    case(
        "trap_read_body_zero_limit",
        "§3 read_body",
        "read_body with limit 0 is a guest error",
        Request::post(Text(b"x")),
    )
    .flow(Flow::Trap),
    case("trap_invalid_header_kind", "§4.1", "a header kind outside 0..=3 is a guest error", Request::GET)
        .flow(Flow::Trap),
    case("trap_invalid_body_kind", "§4.1", "a body kind outside 0..=1 is a guest error", Request::GET).flow(Flow::Trap),
    case("trap_empty_header_name", "§4.1", "an empty header name is a guest error", Request::GET).flow(Flow::Trap),
    case("trap_invalid_header_value", "§4.1", "a header value with CR LF is a guest error", Request::GET)
        .flow(Flow::Trap),
    case("trap_set_method_empty", "§4 set_method", "an empty method is a guest error", Request::GET).flow(Flow::Trap),
    case("trap_set_status_invalid", "§4 set_status_code", "status 1000 is a guest error", Request::GET)
        .flow(Flow::Trap),
    case("trap_next_flag", "§2", "a next flag other than 0 or 1 is a guest error", Request::GET).flow(Flow::Trap),
    case("trap_out_of_bounds", "§3 errors", "a buffer outside guest memory is a guest error", Request::GET)
        .flow(Flow::Trap),
    case(
        "trap_response_write_without_buffer",
        "§4.2",
        "a response header write after next without buffer_response is a guest error",
        Request::GET,
    )
    .flow(Flow::Trap),
    case("trap_request_write_after_next", "§4.2", "a request header write after next is a guest error", Request::GET)
        .flow(Flow::Trap),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_plain() {
        for (i, c) in CASES.iter().enumerate() {
            assert!(c.id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{}", c.id);
            assert!(c.section.starts_with('§'), "{}", c.id);
            assert!(CASES[i + 1..].iter().all(|d| d.id != c.id), "duplicate {}", c.id);
            assert_eq!(find(c.id).map(|f| f.id), Some(c.id));
        }
    }

    #[test]
    fn pattern_is_not_periodic() {
        let p = Body::Pattern(5000);
        assert_eq!(p.mismatch(&(0..5000).map(pattern_byte).collect::<Vec<_>>()), None);
        for shift in [1usize, 2, 36, 256, 1000] {
            let shifted: Vec<u8> = (shift..5000 + shift).map(pattern_byte).collect();
            assert!(p.mismatch(&shifted).is_some_and(|i| i < 16), "shift {shift}");
        }
        assert_eq!(Body::PatternRange(100, 200).byte(0), pattern_byte(100));
        assert_eq!(Body::Text(b"ab").mismatch(b"a"), Some(1));
    }

    #[test]
    fn guest_config_is_not_utf8_and_has_a_nul() {
        assert!(std::str::from_utf8(std::hint::black_box(GUEST_CONFIG)).is_err());
        assert!(GUEST_CONFIG.contains(&0));
    }
}
