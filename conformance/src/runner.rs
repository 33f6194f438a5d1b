//! Sends every case to a host and judges the answers.

use crate::cases::{
    self, AUTHORITY_HEADER, CASES, Case, Check, DETAIL_HEADER, Flow, PROTOCOL_HEADER, RESULT_HEADER, SOURCE_IP_HEADER,
};
use crate::client::{Got, Target, body_bytes};
use crate::report::{CaseResult, Outcome, Report};
use http::{HeaderName, HeaderValue, Uri};
use std::fmt;
use std::time::Duration;

/// What to run, and where.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The URL of a host that runs the conformance guest (loaded with
    /// [`GUEST_CONFIG`](crate::GUEST_CONFIG)) in front of the
    /// [backend](crate::backend), e.g. `http://127.0.0.1:8080`. Only its
    /// scheme (`http`) and authority are used.
    pub url: String,
    /// Speak HTTP/2 with prior knowledge instead of HTTP/1.1.
    pub http2: bool,
    /// Run only the cases whose id contains this text.
    pub filter: Option<String>,
    /// How long one request may take.
    pub timeout: Duration,
}

impl RunOptions {
    /// Every case against `url` over HTTP/1.1, 10 s per request.
    pub fn new(url: impl Into<String>) -> RunOptions {
        RunOptions { url: url.into(), http2: false, filter: None, timeout: Duration::from_secs(10) }
    }
}

/// Why a run could not start.
#[derive(Debug)]
pub struct RunError(String);

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

/// The cases `filter` selects (all when `None`).
pub fn select(filter: Option<&str>) -> Vec<&'static Case> {
    CASES.iter().filter(|c| filter.is_none_or(|f| c.id.contains(f))).collect()
}

/// Runs the selected cases one after the other and reports them.
pub async fn run(options: &RunOptions) -> Result<Report, RunError> {
    let uri: Uri = options.url.parse().map_err(|e| RunError(format!("invalid URL {:?}: {e}", options.url)))?;
    if uri.scheme_str() != Some("http") {
        return Err(RunError(format!("only http:// URLs are supported, got {:?}", options.url)));
    }
    let Some(authority) = uri.authority().cloned() else {
        return Err(RunError(format!("the URL {:?} has no host", options.url)));
    };
    let protocol = if options.http2 { "HTTP/2.0" } else { "HTTP/1.1" };
    let header = |v: &str| HeaderValue::from_str(v).map_err(|_| RunError(format!("invalid header value {v:?}")));
    let mut extra = vec![
        (HeaderName::from_static(PROTOCOL_HEADER), header(protocol)?),
        (HeaderName::from_static(AUTHORITY_HEADER), header(authority.as_str())?),
    ];
    // A loopback IP literal: the client's address is that IP too.
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<std::net::IpAddr>()
        && ip.is_loopback()
    {
        extra.push((HeaderName::from_static(SOURCE_IP_HEADER), header(&ip.to_string())?));
    }
    let target = Target::new(uri, options.http2, extra);
    let mut results = Vec::new();
    for case in select(options.filter.as_deref()) {
        let (outcome, detail) = run_case(&target, case, options.timeout).await;
        results.push(CaseResult {
            id: case.id.to_string(),
            section: case.section.to_string(),
            description: case.description.to_string(),
            outcome,
            detail,
        });
    }
    Ok(Report { url: options.url.clone(), protocol: protocol.to_string(), results })
}

async fn send(target: &Target, case: &Case, step: Option<&str>, timeout: Duration) -> Result<Got, String> {
    match tokio::time::timeout(timeout, target.send(case, step)).await {
        Ok(r) => r,
        Err(_) => Err(format!("no complete response within {} s", timeout.as_secs_f32())),
    }
}

async fn run_case(target: &Target, case: &Case, timeout: Duration) -> (Outcome, String) {
    match case.flow {
        Flow::Verdict => judge(case, send(target, case, None, timeout).await),
        Flow::Setup => {
            // The setup response is allowed to be anything, even a failure.
            let _ = send(target, case, Some("setup"), timeout).await;
            judge(case, send(target, case, None, timeout).await)
        }
        Flow::Trap => {
            let first = judge_trap(send(target, case, None, timeout).await);
            if first.0 != Outcome::Pass {
                return first;
            }
            match judge(case, send(target, case, Some("after"), timeout).await) {
                (Outcome::Pass, _) => first,
                (o, d) => (o, format!("the request after the failure: {d}")),
            }
        }
    }
}

/// Words that betray engine internals in a client-visible body.
const LEAKS: &[&str] = &["wasm", "trap", "unreachable", "backtrace", "panicked", "stack", "cranelift"];

fn judge_trap(got: Result<Got, String>) -> (Outcome, String) {
    let got = match got {
        Ok(g) => g,
        Err(e) => return (Outcome::Fail, format!("expected an error response, got no response: {e}")),
    };
    if let Some(verdict) = got.header(RESULT_HEADER) {
        let detail = got.header(DETAIL_HEADER).unwrap_or_default();
        return (Outcome::Fail, format!("the host did not fail the guest (guest says {verdict}: {detail})"));
    }
    if !got.status.is_server_error() {
        return (Outcome::Fail, format!("expected a 5xx error response, got {}", got.status.as_u16()));
    }
    let body = String::from_utf8_lossy(&got.body).to_lowercase();
    if let Some(word) = LEAKS.iter().find(|w| body.contains(*w)) {
        return (Outcome::Fail, format!("the error body leaks internals ({word:?}): {:?}", short(&body)));
    }
    (Outcome::Pass, format!("{} with a generic body", got.status.as_u16()))
}

fn short(s: &str) -> String {
    if s.len() > 160 { format!("{}...", &s[..s.floor_char_boundary(160)]) } else { s.to_string() }
}

fn judge(case: &Case, got: Result<Got, String>) -> (Outcome, String) {
    let got = match got {
        Ok(g) => g,
        Err(e) => return (Outcome::Fail, e),
    };
    let detail = got.header(DETAIL_HEADER).unwrap_or_default();
    match got.header(RESULT_HEADER).as_deref() {
        Some("pass") => {}
        Some("unsupported") => return (Outcome::Unsupported, detail),
        Some("fail") => return (Outcome::Fail, detail),
        Some(other) => return (Outcome::Fail, format!("unknown verdict {other:?} ({detail})")),
        None => {
            let body = String::from_utf8_lossy(&got.body);
            return (
                Outcome::Fail,
                format!("no {RESULT_HEADER} in the response (status {}, body {:?})", got.status.as_u16(), short(&body)),
            );
        }
    }
    for check in case.checks {
        if let Err(e) = apply(check, &got) {
            return (Outcome::Fail, e);
        }
    }
    (Outcome::Pass, String::new())
}

fn apply(check: &Check, got: &Got) -> Result<(), String> {
    match *check {
        Check::Status(s) => {
            if got.status.as_u16() != s {
                return Err(format!("status: expected {s}, got {}", got.status.as_u16()));
            }
        }
        Check::Header(name, expected) => {
            let values = got.values(name);
            if values.iter().map(String::as_str).ne(expected.iter().copied()) {
                return Err(format!("response header {name}: expected {expected:?}, got {values:?}"));
            }
        }
        Check::NoHeader(name) => {
            let values = got.values(name);
            if !values.is_empty() {
                return Err(format!("response header {name}: expected none, got {values:?}"));
            }
        }
        Check::Body(expected) => {
            if let Some(at) = expected.mismatch(&got.body) {
                let shown = if expected.len() <= 64 && got.body.len() <= 64 {
                    format!(
                        ": expected {:?}, got {:?}",
                        String::from_utf8_lossy(&body_bytes(expected)),
                        String::from_utf8_lossy(&got.body)
                    )
                } else {
                    String::new()
                };
                return Err(format!(
                    "response body: expected {} bytes, got {}; first difference at byte {at}{shown}",
                    expected.len(),
                    got.body.len()
                ));
            }
        }
        Check::Framing => {
            if let Some(cl) = got.header("content-length")
                && cl.parse::<usize>().ok() != Some(got.body.len())
            {
                return Err(format!("content-length {cl} but the body has {} bytes", got.body.len()));
            }
        }
        Check::EchoFraming => {
            if let Some(cl) = got.header("x-echo-header-content-length") {
                let received = got.header("x-echo-body-length").unwrap_or_default();
                if cl != received {
                    return Err(format!(
                        "the next handler received content-length {cl} with a body of {received} bytes"
                    ));
                }
            }
        }
        Check::Trailer(name, expected) => {
            let values: Vec<String> = got
                .trailers
                .as_ref()
                .map(|t| t.get_all(name).iter().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()).collect())
                .unwrap_or_default();
            if values.iter().map(String::as_str).ne(expected.iter().copied()) {
                return Err(format!("response trailer {name}: expected {expected:?}, got {values:?}"));
            }
        }
    }
    Ok(())
}

/// The case table's ids, for callers that list them.
pub fn ids() -> impl Iterator<Item = &'static str> {
    cases::CASES.iter().map(|c| c.id)
}
