//! The request body's idle timeout: a client that stops sending its body
//! must not hold a guest instance (or anything else) forever.

use crate::body::BoxError;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

/// The error a request body fails with when no frame arrived within
/// [`PluginBuilder::body_timeout`](crate::PluginBuilder::body_timeout).
///
/// The request body the layer hands to the next handler fails with it too
/// (as the source of its [`BoxError`]): a proxy behind the layer tells a
/// stalled client from a broken one with [`BodyTimedOut::is_cause_of`].
#[derive(Debug)]
pub struct BodyTimedOut(pub(crate) Duration);

impl BodyTimedOut {
    /// The time allowed between two frames of the body.
    pub fn timeout(&self) -> Duration {
        self.0
    }

    /// Whether `error`, or an error it wraps, is a body timeout.
    pub fn is_cause_of(error: &(dyn std::error::Error + 'static)) -> bool {
        is_timed_out(error)
    }
}

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no request body data for {:?}", self.0)
    }
}

impl std::error::Error for BodyTimedOut {}

/// Whether `error`, or an error it wraps, is a [`BodyTimedOut`].
pub(crate) fn is_timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.is::<BodyTimedOut>() {
            return true;
        }
        next = e.source();
    }
    false
}

pin_project! {
    /// `inner`, failing with [`BodyTimedOut`] when no frame arrives within
    /// `timeout` of the previous one (or of the first poll). The timer
    /// runs only while a frame is awaited. It belongs to the tokio runtime
    /// the body was created in, so the body may be polled from any thread
    /// (a blocking-pool thread, wasmer's instance thread); created outside
    /// a runtime, the body is polled as it is.
    pub(crate) struct IdleTimeout<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        runtime: Option<tokio::runtime::Handle>,
        #[pin]
        sleep: Option<tokio::time::Sleep>,
    }
}

impl<B> IdleTimeout<B> {
    pub(crate) fn new(inner: B, timeout: Duration) -> Self {
        IdleTimeout { inner, timeout, runtime: tokio::runtime::Handle::try_current().ok(), sleep: None }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut this = self.project();
        if let Poll::Ready(frame) = this.inner.poll_frame(cx) {
            this.sleep.set(None);
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if this.sleep.is_none() {
            let Some(runtime) = this.runtime.as_ref() else { return Poll::Pending };
            let _in_runtime = runtime.enter();
            this.sleep.set(Some(tokio::time::sleep(*this.timeout)));
        }
        if let Some(sleep) = this.sleep.as_mut().as_pin_mut() {
            ready!(sleep.poll(cx));
            this.sleep.set(None);
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(*this.timeout)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
