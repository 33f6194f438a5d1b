//! The current request and response.

use crate::body::Body;
use crate::buf::{into_string, read_owned, with_read};
use crate::ffi::{self, Getter};
use crate::headers::Headers;
use http_wasm_abi::{BodyKind, HeaderKind};

fn read_string(getter: Getter<'_>) -> String {
    into_string(read_owned(getter, false).0)
}

/// Splits an encoded request-target into its path and its query (without
/// the `?`), decoding nothing: `/a%20b?x=1` gives `("/a%20b", Some("x=1"))`.
pub fn split_uri(uri: &str) -> (&str, Option<&str>) {
    match uri.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (uri, None),
    }
}

/// The request being handled. Every accessor asks the host; values are
/// returned owned.
///
/// Request-side writes (method, URI, headers, trailers, body) are allowed
/// only in [`Filter::handle_request`](crate::Filter::handle_request); the
/// host traps on them later.
#[derive(Debug)]
pub struct Request {
    _private: (),
}

impl Request {
    pub(crate) const fn new() -> Request {
        Request { _private: () }
    }

    /// The method, e.g. `GET`.
    pub fn method(&self) -> String {
        read_string(Getter::Method)
    }

    /// Replaces the method. An empty or invalid method traps.
    pub fn set_method(&mut self, method: &str) {
        ffi::set_method(method.as_bytes());
    }

    /// The request-target as received: path and query, percent-encoded,
    /// `/` rather than empty.
    pub fn uri(&self) -> String {
        read_string(Getter::Uri)
    }

    /// Calls `f` with the encoded request-target, without allocating when it
    /// fits the scratch buffer.
    pub fn with_uri<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        with_read(Getter::Uri, |bytes, _| match core::str::from_utf8(bytes) {
            Ok(uri) => f(uri),
            // A conforming host sends ASCII; be lossy rather than fail.
            Err(_) => f(&String::from_utf8_lossy(bytes)),
        })
    }

    /// The path part of [`uri`](Request::uri), still encoded.
    pub fn path(&self) -> String {
        self.with_uri(|uri| split_uri(uri).0.to_owned())
    }

    /// The query part of [`uri`](Request::uri) without the `?`, still
    /// encoded; `None` when the target has no `?`.
    pub fn query(&self) -> Option<String> {
        self.with_uri(|uri| split_uri(uri).1.map(str::to_owned))
    }

    /// Replaces path and query. `uri` must be encoded (`/a%20b?x=1`); empty
    /// means `/`; anything that is not a valid request-target traps.
    pub fn set_uri(&mut self, uri: &str) {
        ffi::set_uri(uri.as_bytes());
    }

    /// The protocol version: `HTTP/1.0`, `HTTP/1.1`, `HTTP/2.0` or `HTTP/3.0`.
    pub fn version(&self) -> String {
        read_string(Getter::ProtocolVersion)
    }

    /// The client address, `1.2.3.4:5678` or `[::1]:5678`; empty when the
    /// host does not know it.
    pub fn source_addr(&self) -> String {
        read_string(Getter::SourceAddr)
    }

    /// The request headers.
    pub fn headers(&self) -> Headers {
        Headers::new(HeaderKind::Request)
    }

    /// The request trailers (need [`Features::TRAILERS`](crate::Features::TRAILERS)).
    pub fn trailers(&self) -> Headers {
        Headers::new(HeaderKind::RequestTrailers)
    }

    /// The request body.
    pub fn body(&self) -> Body {
        Body::new(BodyKind::Request)
    }
}

/// The response: what the filter writes in `handle_request`, or the next
/// handler's in `handle_response`.
///
/// Without `next` ([`Next::Stop`](crate::Next::Stop)) the response is what
/// the filter wrote (status 200 and an empty body unless it wrote
/// otherwise). Reading the status is always allowed; changing status,
/// headers or body in [`Filter::handle_response`](crate::Filter::handle_response)
/// needs [`Features::BUFFER_RESPONSE`](crate::Features::BUFFER_RESPONSE).
#[derive(Debug)]
pub struct Response {
    _private: (),
}

impl Response {
    pub(crate) const fn new() -> Response {
        Response { _private: () }
    }

    /// The status so far: the filter's (default 200) before next, the next
    /// handler's after (which needs `buffer_response`).
    pub fn status(&self) -> u16 {
        ffi::get_status_code() as u16
    }

    /// Sets the status; a code outside `100..=999` traps.
    pub fn set_status(&mut self, code: u16) {
        ffi::set_status_code(i32::from(code));
    }

    /// The response headers.
    pub fn headers(&self) -> Headers {
        Headers::new(HeaderKind::Response)
    }

    /// The response trailers (need [`Features::TRAILERS`](crate::Features::TRAILERS)).
    pub fn trailers(&self) -> Headers {
        Headers::new(HeaderKind::ResponseTrailers)
    }

    /// The response body.
    pub fn body(&self) -> Body {
        Body::new(BodyKind::Response)
    }
}

#[cfg(test)]
mod tests {
    use super::split_uri;

    #[test]
    fn split_keeps_encoding() {
        assert_eq!(split_uri("/a%20b?x=1&y=%26"), ("/a%20b", Some("x=1&y=%26")));
        assert_eq!(split_uri("/"), ("/", None));
        assert_eq!(split_uri("/p?"), ("/p", Some("")));
        assert_eq!(split_uri("/p?a?b"), ("/p", Some("a?b")));
    }
}
