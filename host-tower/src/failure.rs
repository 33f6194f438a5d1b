//! What the client receives when a guest fails.

use crate::Error;
use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderValue, Response, StatusCode};

/// Builds the response sent in place of a failed guest's.
///
/// The layer calls it for every guest failure (a trap, an invalid host call,
/// a start failure of a new instance, a buffered body over the limit) after
/// logging the error at `error` level with its detail. The response must not
/// leak that detail: clients see only what this returns.
///
/// Any `Fn(&Error) -> Response<Bytes> + Clone + Send + Sync + 'static`
/// implements it, like tower-http's `CatchPanicLayer::custom`.
pub trait FailureResponse: Clone + Send + Sync + 'static {
    /// The response for `error`.
    fn response(&self, error: &Error) -> Response<Bytes>;
}

impl<F> FailureResponse for F
where
    F: Fn(&Error) -> Response<Bytes> + Clone + Send + Sync + 'static,
{
    fn response(&self, error: &Error) -> Response<Bytes> {
        self(error)
    }
}

/// The default policy: a short plain-text body and a status by kind.
///
/// | error | status |
/// |---|---|
/// | request body over the buffer limit ([`Error::is_body_too_large`]) | 413 |
/// | no request body data within the body timeout ([`Error::is_body_timeout`]) | 408, with `connection: close` |
/// | no instance free in time ([`Error::is_pool_timeout`]) | 503, with `retry-after: 1` |
/// | client's request body failed ([`Error::is_body`]) | 400 |
/// | next handler's response body failed or was over the buffer limit ([`Error::is_response_body`]) | 502 |
/// | anything else | 500 |
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultFailureResponse;

impl FailureResponse for DefaultFailureResponse {
    fn response(&self, error: &Error) -> Response<Bytes> {
        let status = if error.is_body_too_large() {
            StatusCode::PAYLOAD_TOO_LARGE
        } else if error.is_body_timeout() {
            StatusCode::REQUEST_TIMEOUT
        } else if error.is_pool_timeout() {
            StatusCode::SERVICE_UNAVAILABLE
        } else if error.is_body() {
            StatusCode::BAD_REQUEST
        } else if error.is_response_body() {
            StatusCode::BAD_GATEWAY
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        let reason = status.canonical_reason().unwrap_or("Error");
        let mut res = Response::new(Bytes::from(format!("{reason}\n")));
        *res.status_mut() = status;
        res.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
        if error.is_pool_timeout() {
            res.headers_mut().insert(RETRY_AFTER, HeaderValue::from_static("1"));
        } else if error.is_body_timeout() {
            res.headers_mut().insert(CONNECTION, HeaderValue::from_static("close"));
        }
        res
    }
}
