//! The bodies the middleware hands on: to the next handler and to the client.

use crate::host::BoxBody;
use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::collections::VecDeque;
use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// Boxed error of [`RequestBody`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Yields `chunks`, then the frames of a rest (if any), then `trailers`
/// merged into the rest's trailers (the guest's values win).
#[derive(Default)]
struct Tail {
    chunks: VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Tail {
    fn pop(&mut self) -> Option<Frame<Bytes>> {
        self.chunks.pop_front().map(Frame::data)
    }

    fn merge(&mut self, mut theirs: HeaderMap) -> HeaderMap {
        if let Some(ours) = self.trailers.take() {
            for name in ours.keys() {
                theirs.remove(name);
            }
            theirs.extend(ours);
        }
        theirs
    }

    fn len(&self) -> u64 {
        self.chunks.iter().map(|c| c.len() as u64).sum()
    }

    /// The size of what this tail yields. Not exact when trailers follow:
    /// HTTP/1.1 can only send trailers in a chunked message, and hyper frames
    /// a body with an exact size by `content-length`.
    fn size_hint(&self) -> SizeHint {
        let len = self.len();
        if self.trailers.is_some() {
            let mut s = SizeHint::new();
            s.set_lower(len);
            s
        } else {
            SizeHint::with_exact(len)
        }
    }
}

/// The request body the next handler receives.
///
/// The client's body as it arrived when the guest did not touch it; the
/// bytes the guest read (kept with `buffer_request`) followed by the rest
/// of the stream; or the body the guest wrote.
pub struct RequestBody {
    tail: Tail,
    rest: Option<BoxBody>,
}

impl RequestBody {
    pub(crate) fn stream(rest: Option<BoxBody>) -> RequestBody {
        RequestBody { tail: Tail::default(), rest }
    }

    pub(crate) fn full(data: Bytes, trailers: Option<HeaderMap>) -> RequestBody {
        let chunks = if data.is_empty() { VecDeque::new() } else { VecDeque::from([data]) };
        RequestBody { tail: Tail { chunks, trailers }, rest: None }
    }

    pub(crate) fn buffered(chunks: VecDeque<Bytes>, rest: Option<BoxBody>, trailers: Option<HeaderMap>) -> RequestBody {
        RequestBody { tail: Tail { chunks, trailers }, rest }
    }

    /// An empty body.
    pub fn empty() -> RequestBody {
        RequestBody::stream(None)
    }
}

impl From<Bytes> for RequestBody {
    /// A body of these bytes (for inner services and tests that build requests).
    fn from(data: Bytes) -> RequestBody {
        RequestBody::full(data, None)
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestBody")
            .field("buffered", &self.tail.len())
            .field("streaming", &self.rest.is_some())
            .finish()
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(f) = this.tail.pop() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(rest) = this.rest.as_mut() {
            match ready!(Pin::new(rest).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    return Poll::Ready(Some(Ok(match frame.into_trailers() {
                        Ok(t) => Frame::trailers(this.tail.merge(t)),
                        Err(frame) => frame,
                    })));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.rest = None,
            }
        }
        Poll::Ready(this.tail.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.tail.chunks.is_empty()
            && self.tail.trailers.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        let own = self.tail.len();
        match &self.rest {
            None => self.tail.size_hint(),
            Some(r) => {
                let h = r.size_hint();
                let mut s = SizeHint::new();
                s.set_lower(h.lower() + own);
                if let Some(u) = h.upper() {
                    s.set_upper(u + own);
                }
                s
            }
        }
    }
}

pin_project! {
    /// The response body the client receives.
    ///
    /// The next handler's body streamed as it comes when the guest did not
    /// buffer it; otherwise the buffered bytes or the body the guest wrote,
    /// with trailers.
    pub struct ResponseBody<B> {
        #[pin]
        inner: Option<B>,
        tail: Tail,
    }
}

impl<B> ResponseBody<B> {
    /// The inner body, with `trailers` merged into (or appended after) its own.
    pub(crate) fn inner(body: B, trailers: Option<HeaderMap>) -> ResponseBody<B> {
        ResponseBody { inner: Some(body), tail: Tail { chunks: VecDeque::new(), trailers } }
    }

    pub(crate) fn buffered(chunks: VecDeque<Bytes>, trailers: Option<HeaderMap>) -> ResponseBody<B> {
        ResponseBody { inner: None, tail: Tail { chunks, trailers } }
    }

    pub(crate) fn full(data: Bytes, trailers: Option<HeaderMap>) -> ResponseBody<B> {
        let chunks = if data.is_empty() { VecDeque::new() } else { VecDeque::from([data]) };
        ResponseBody::buffered(chunks, trailers)
    }
}

impl<B> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseBody")
            .field("buffered", &self.tail.len())
            .field("streaming", &self.inner.is_some())
            .finish()
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let mut this = self.project();
        if let Some(f) = this.tail.pop() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(inner) = this.inner.as_mut().as_pin_mut() {
            match ready!(inner.poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let frame = match frame.into_data() {
                        Ok(mut data) => Frame::data(data.copy_to_bytes(data.remaining())),
                        Err(frame) => match frame.into_trailers() {
                            Ok(t) => Frame::trailers(this.tail.merge(t)),
                            Err(_) => return Poll::Ready(None),
                        },
                    };
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => this.inner.set(None),
            }
        }
        Poll::Ready(this.tail.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.tail.chunks.is_empty()
            && self.tail.trailers.is_none()
            && self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            None => self.tail.size_hint(),
            Some(b) if self.tail.trailers.is_some() => {
                let mut s = SizeHint::new();
                s.set_lower(b.size_hint().lower());
                s
            }
            Some(b) => b.size_hint(),
        }
    }
}
