//! The request body's idle timeout at the gateway (`--body-timeout`): a
//! body that no filter reads streams to the upstream, and a client that
//! stops sending it must not hold the upstream exchange (and the filters'
//! instances pinned around it) forever. The client then gets 408.
//!
//! The filters' host applies the same timeout to what it reads itself and
//! to the bodies it passes on, failing them with
//! [`tower_http_wasm::BodyTimedOut`]; whichever timer fires first, the
//! gateway answers 408.

use super::BodyError;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// The body timeout when none is set: 30 s, the host's default.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);

/// The error of a body that sent nothing for its whole timeout.
#[derive(Debug)]
pub struct BodyTimedOut(pub Duration);

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the client sent no request body data for {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// A request body that fails with [`BodyTimedOut`] when no frame arrives
/// within `timeout` of the previous one (or of the first poll), or when
/// the host's own body timeout failed it.
pub struct IdleTimeout<B> {
    inner: B,
    timeout: Duration,
    /// The timer for the frame awaited.
    waiting: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<B> IdleTimeout<B> {
    /// `inner` with `timeout` between frames.
    pub fn new(inner: B, timeout: Duration) -> IdleTimeout<B> {
        IdleTimeout { inner, timeout, waiting: None }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes, Error = BodyError> + Unpin,
{
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.waiting = None;
            return Poll::Ready(match frame {
                Some(Err(e)) if tower_http_wasm::BodyTimedOut::is_cause_of(&*e.0) => {
                    Some(Err(BodyError(Box::new(BodyTimedOut(this.timeout)))))
                }
                other => other,
            });
        }
        let timeout = this.timeout;
        let sleep = this.waiting.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        ready!(sleep.as_mut().poll(cx));
        this.waiting = None;
        Poll::Ready(Some(Err(BodyError(Box::new(BodyTimedOut(timeout))))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// True when `error` is, or wraps, a [`BodyTimedOut`].
pub fn is_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        // `BodyError` is transparent: its source skips the error it holds.
        if let Some(BodyError(inner)) = e.downcast_ref::<BodyError>()
            && is_timed_out(&**inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}
