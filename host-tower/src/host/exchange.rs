//! The state of one request/response exchange, as the guest sees it.

use super::HostError;
use super::body::{BodyState, Phase};
use super::waits::BodyWaits;
use http::header::{CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode, request};
use http_wasm_abi::{Feature, Features, HeaderKind};
use std::net::SocketAddr;

/// One request as it passes through a guest.
///
/// Its box is reused from request to request ([`Exchange::end`] empties
/// it, [`Exchange::begin`] fills it): a field added here is reset in
/// `end` too.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) phase: Phase,
    /// Features in force for this request (module-level plus per-request).
    pub(crate) features: Features,
    pub(crate) request: request::Parts,
    pub(crate) req_body: BodyState,
    pub(crate) source_addr: Option<SocketAddr>,
    pub(crate) status: StatusCode,
    /// The guest set the status in `handle_request`.
    pub(crate) status_set: bool,
    pub(crate) resp_headers: HeaderMap,
    pub(crate) resp_body: BodyState,
    /// The request trailers as they were before the guest first wrote to
    /// them (`None`: it has not), to restore them when the filter is skipped.
    pub(crate) req_trailers_before: Option<Option<HeaderMap>>,
    /// The guest wrote `content-length` or `transfer-encoding` of the
    /// request, or of the response: the host then frames that message by
    /// the body it actually carries (spec §2.2).
    pub(crate) req_framing_written: bool,
    pub(crate) resp_framing_written: bool,
}

impl Exchange {
    pub(crate) fn new(
        request: request::Parts,
        req_body: BodyState,
        features: Features,
        source_addr: Option<SocketAddr>,
    ) -> Exchange {
        Exchange {
            phase: Phase::Request,
            features,
            request,
            req_body,
            source_addr,
            status: StatusCode::OK,
            status_set: false,
            resp_headers: HeaderMap::new(),
            resp_body: BodyState::default(),
            req_trailers_before: None,
            req_framing_written: false,
            resp_framing_written: false,
        }
    }

    /// Starts the exchange of `request` in an exchange [`Exchange::end`]
    /// emptied (a box reused from request to request), as
    /// [`Exchange::new`] would; `req_body` `None` leaves the body empty.
    pub(crate) fn begin(
        &mut self,
        request: request::Parts,
        req_body: Option<BodyState>,
        features: Features,
        source_addr: Option<SocketAddr>,
    ) {
        self.features = features;
        self.request = request;
        if let Some(body) = req_body {
            self.req_body = body;
        }
        self.source_addr = source_addr;
    }

    /// Empties the exchange once its response is built: what the request
    /// left in it is dropped (a client body never read among it), and every
    /// field is as [`Exchange::new`] sets it, ready for
    /// [`Exchange::begin`].
    pub(crate) fn end(&mut self) {
        self.phase = Phase::Request;
        let request = &mut self.request;
        request.method = http::Method::GET;
        request.uri = http::Uri::default();
        request.version = http::Version::default();
        // A map already emptied (moved on, as usually) is not replaced.
        if !request.headers.is_empty() {
            request.headers = HeaderMap::new();
        }
        request.extensions = http::Extensions::new();
        self.req_body = BodyState::default();
        self.status = StatusCode::OK;
        self.status_set = false;
        if !self.resp_headers.is_empty() {
            self.resp_headers = HeaderMap::new();
        }
        self.resp_body = BodyState::default();
        self.req_trailers_before = None;
        self.req_framing_written = false;
        self.resp_framing_written = false;
    }

    pub(crate) fn has(&self, f: Feature) -> bool {
        self.features.has(f)
    }

    /// True when a body read may have to wait for frames not yet received:
    /// a call with this exchange must run where it may park (see
    /// `host::body`).
    #[cfg_attr(not(feature = "wasmtime"), allow(dead_code))]
    pub(crate) fn body_arriving(&self) -> bool {
        self.req_body.arriving() || self.resp_body.arriving()
    }

    /// Of `features`, those that can still take effect if enabled now
    /// (spec §4.1): none after next, since the request has gone to the next
    /// handler and the response is already buffered or streaming; and not
    /// `buffer_request` once the guest has read request bytes without
    /// keeping them. The others are not enabled, and `enable_features`
    /// returns the set without them.
    pub(crate) fn still_effective(&self, features: Features) -> Features {
        match self.phase {
            Phase::Response => Features::NONE,
            Phase::Request if self.req_body.consumed => {
                features.into_iter().filter(|&f| f != Feature::BufferRequest).collect()
            }
            Phase::Request => features,
        }
    }

    /// The header map of `kind` for reading; `None` for trailers that are
    /// absent or not enabled.
    pub(crate) fn headers(&self, kind: HeaderKind) -> Option<&HeaderMap> {
        match kind {
            HeaderKind::Request => Some(&self.request.headers),
            HeaderKind::Response => Some(&self.resp_headers),
            HeaderKind::RequestTrailers if self.has(Feature::Trailers) => self.req_body.trailers.as_ref(),
            HeaderKind::ResponseTrailers if self.has(Feature::Trailers) => self.resp_body.trailers.as_ref(),
            _ => None,
        }
    }

    /// Before request trailers are read in `handle_request`, receives the
    /// rest of the request body (kept for the next handler) so they exist.
    pub(crate) fn receive_trailers(
        &mut self,
        kind: HeaderKind,
        limit: usize,
        waits: Option<&BodyWaits>,
    ) -> Result<(), HostError> {
        if kind == HeaderKind::RequestTrailers && self.has(Feature::Trailers) && self.phase == Phase::Request {
            self.req_body.drain(limit, waits)?;
        }
        Ok(())
    }

    /// The header map of `kind` for writing, after checking phase and features.
    pub(crate) fn headers_mut(&mut self, kind: HeaderKind) -> Result<&mut HeaderMap, HostError> {
        if kind.is_trailers() && !self.has(Feature::Trailers) {
            return Err(HostError::NotAllowed("writing trailers needs the trailers feature"));
        }
        if kind.is_request() {
            self.check_request_write()?;
        } else {
            self.check_response_write()?;
        }
        if kind == HeaderKind::RequestTrailers && self.req_trailers_before.is_none() {
            self.req_trailers_before = Some(self.req_body.trailers.clone());
        }
        Ok(match kind {
            HeaderKind::Request => &mut self.request.headers,
            HeaderKind::Response => &mut self.resp_headers,
            HeaderKind::RequestTrailers => self.req_body.trailers.get_or_insert_with(HeaderMap::new),
            HeaderKind::ResponseTrailers => self.resp_body.trailers.get_or_insert_with(HeaderMap::new),
        })
    }

    pub(crate) fn check_request_write(&self) -> Result<(), HostError> {
        match self.phase {
            Phase::Request => Ok(()),
            Phase::Response => Err(HostError::NotAllowed("the request cannot change after next")),
        }
    }

    pub(crate) fn check_response_write(&self) -> Result<(), HostError> {
        match self.phase {
            Phase::Request => Ok(()),
            Phase::Response if self.has(Feature::BufferResponse) => Ok(()),
            Phase::Response => Err(HostError::NotAllowed("changing the response after next needs buffer_response")),
        }
    }

    /// The request's `host`: the header, else the request-target's authority.
    pub(crate) fn synthetic_host(&self) -> Option<HeaderValue> {
        if self.request.headers.contains_key(HOST) {
            return None;
        }
        let authority = self.request.uri.authority()?;
        HeaderValue::from_str(authority.as_str()).ok()
    }
}

/// Sets `content-length` to `len` (dropping `transfer-encoding`), or removes
/// it when the length is unknown, so the message is framed by what it carries.
pub(crate) fn set_content_length(headers: &mut HeaderMap, len: Option<u64>) {
    headers.remove(TRANSFER_ENCODING);
    match len {
        Some(len) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
}

/// How a rebuilt body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Framing {
    /// The message's own headers still describe the body.
    Keep,
    /// The body has this length.
    Length(u64),
    /// The length is not known in advance: send it without one.
    Unknown,
}

impl Framing {
    /// The framing of a body of `len` bytes, or without a length when
    /// trailers follow it (HTTP/1.1 sends trailers only when chunked).
    pub(crate) fn of(len: u64, trailers: bool) -> Framing {
        if trailers { Framing::Unknown } else { Framing::Length(len) }
    }

    /// The framing that replaces the one a guest wrote: the body's exact
    /// length when it knows it, none otherwise.
    pub(crate) fn of_hint(hint: http_body::SizeHint) -> Framing {
        hint.exact().map_or(Framing::Unknown, Framing::Length)
    }

    /// Applies the framing to `headers`.
    pub(crate) fn apply(self, headers: &mut HeaderMap) {
        match self {
            Framing::Keep => {}
            Framing::Length(n) => set_content_length(headers, Some(n)),
            Framing::Unknown => set_content_length(headers, None),
        }
    }
}

/// Whether `name` is a framing header of HTTP/1.1 messages.
pub(crate) fn is_framing(name: &http::HeaderName) -> bool {
    name == CONTENT_LENGTH || name == TRANSFER_ENCODING
}

impl Exchange {
    /// Notes that the guest wrote a framing header of `kind`: the host
    /// replaces it when the message leaves.
    pub(crate) fn wrote_framing(&mut self, kind: HeaderKind) {
        match kind {
            HeaderKind::Request => self.req_framing_written = true,
            HeaderKind::Response => self.resp_framing_written = true,
            HeaderKind::RequestTrailers | HeaderKind::ResponseTrailers => {}
        }
    }

    /// Undoes what the guest did to the request body and its trailers, to
    /// hand the client's request on when the filter is skipped. Bytes the
    /// guest read are still there (it may only fail open when it kept them).
    pub(crate) fn restore_request_body(&mut self) {
        self.req_body.written = None;
        if let Some(before) = self.req_trailers_before.take() {
            self.req_body.trailers = before;
        }
    }

    /// Takes the request's body for the next handler, with its framing.
    #[inline]
    pub(crate) fn forward_request_body(&mut self) -> (crate::body::RequestBody, Framing) {
        use crate::body::RequestBody;
        let body = &mut self.req_body;
        if let Some(written) = body.take_written() {
            let len = written.len() as u64;
            let trailers = body.trailers.take();
            body.source = None;
            let framing = Framing::of(len, trailers.is_some());
            return (RequestBody::full(written, trailers), framing);
        }
        if body.untouched() {
            return (RequestBody::stream(body.source.take()), Framing::Keep);
        }
        let framing = match (body.consumed, body.known_len()) {
            _ if body.trailers.is_some() => Framing::Unknown,
            (false, _) => Framing::Keep,
            (true, Some(n)) => Framing::Length(n),
            (true, None) => Framing::Unknown,
        };
        let chunks = body.take_chunks();
        let trailers = body.trailers.take();
        let rest = body.source.take();
        (RequestBody::buffered(chunks, rest, trailers), framing)
    }

    /// The request body for the next handler, framed by what it carries
    /// whatever framing headers the guest wrote.
    #[inline]
    pub(crate) fn forward_request(&mut self) -> (crate::body::RequestBody, Framing) {
        let (body, framing) = self.forward_request_body();
        if !self.req_framing_written || framing != Framing::Keep {
            return (body, framing);
        }
        // An empty request goes without `content-length` (a GET with
        // `content-length: 0` is legal but unusual).
        let framing = match Framing::of_hint(http_body::Body::size_hint(&body)) {
            Framing::Length(0) => Framing::Unknown,
            framing => framing,
        };
        (body, framing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::collections::VecDeque;

    fn parts() -> request::Parts {
        http::Request::get("/next?q=1").header("accept", "*/*").body(()).expect("request").into_parts().0
    }

    fn trailers() -> HeaderMap {
        HeaderMap::from_iter([(http::header::ETAG, HeaderValue::from_static("\"t\""))])
    }

    /// An exchange a request used every field of, ended and begun again,
    /// is the exchange `new` makes for the next request.
    #[test]
    fn an_ended_exchange_begins_as_a_new_one() {
        let source_addr = Some(SocketAddr::from(([127, 0, 0, 1], 8080)));
        let mut used = Exchange::new(
            http::Request::post("http://a.example/first").header("x-a", "1").body(()).expect("request").into_parts().0,
            BodyState::complete(VecDeque::from([Bytes::from_static(b"body")]), Some(trailers())),
            Features::ALL,
            source_addr,
        );
        used.request.extensions.insert(7u8);
        used.phase = Phase::Response;
        used.status = StatusCode::NOT_FOUND;
        used.status_set = true;
        used.resp_headers.insert(http::header::SERVER, HeaderValue::from_static("guest"));
        used.resp_body = BodyState::complete(VecDeque::from([Bytes::from_static(b"answer")]), Some(trailers()));
        used.req_trailers_before = Some(None);
        used.req_framing_written = true;
        used.resp_framing_written = true;

        used.end();
        assert!(used.request.headers.is_empty() && used.request.extensions.get::<u8>().is_none());
        assert!(used.req_body.untouched() && used.resp_body.untouched() && used.resp_headers.is_empty());
        used.begin(parts(), None, Features::NONE, None);
        let new = Exchange::new(parts(), BodyState::default(), Features::NONE, None);
        assert_eq!(format!("{used:?}"), format!("{new:?}"));
        assert_eq!(used.req_body.held, 0);
        assert_eq!(used.resp_body.held, 0);
    }
}
