//! Body state the guest reads and writes, and how a read waits for frames.
//!
//! # Which path a read takes
//!
//! * Frames already received are returned at once. Before `handle_request`
//!   the service pulls every frame that is already there (a poll with a
//!   no-op waker, up to [`PREFETCH_LIMIT`] bytes); a body that ends within
//!   them is complete, and the call needs no thread that may wait (on
//!   wasmtime it runs inline on the runtime thread): the common case (bodies that arrive with their headers, empty bodies,
//!   bodies collected for modules that enable `buffer_request` at start, and
//!   `buffer_response` after next) never waits.
//! * A call whose exchange has a body still arriving (the request phase,
//!   with frames not yet received) may have to wait for one, and no call
//!   may park a runtime thread: the backend that runs it decides where
//!   it runs instead (`engine::GuestInstance::call`) and says with the
//!   call, in `HostState::may_park`, that a read may park the thread the
//!   guest runs on. wasmtime runs such a
//!   call on tokio's blocking pool (`spawn_blocking`; outside a runtime,
//!   on the caller's thread), and every other call inline on the runtime
//!   thread; wasmer runs every call on its instance's own thread, which
//!   may always park. A read that waits parks that thread until the next
//!   frame comes; the runtime's threads, and with them the connection task
//!   that feeds the body (hyper drives an HTTP/1 body from the same task
//!   that polls the service), keep running. A blocking `block_in_place` on
//!   the runtime thread would deadlock HTTP/1. The wait is recorded
//!   (`host::waits`) and left out of the call's deadline.
//! * A read that would wait in a call not allowed to park fails with a
//!   guest error rather than block a runtime thread.
//!
//! # When a read reports EOF
//!
//! With the last bytes whenever the end is known without waiting: the
//! source says it is at its end (`Body::is_end_stream`: an HTTP/1 body that
//! reached its `content-length`, an HTTP/2 stream whose `END_STREAM` was
//! received), the bytes the source declared up front (its exact size hint)
//! have all arrived, or a poll that cannot wait finds the end (or the
//! trailers) already there, as for an HTTP/1 terminating chunk. Otherwise
//! the read returns what it has and a later read reports EOF alone: a read
//! never waits only to learn that nothing more comes.

use super::HostError;
use super::waits::BodyWaits;
use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// A request body moved into the guest's store.
pub(crate) type BoxBody = UnsyncBoxBody<Bytes, BoxError>;

/// Which handler call is running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Request,
    Response,
}

/// One body as the guest sees it: frames pulled from the source, the
/// guest's read position, and what the guest wrote.
#[derive(Default)]
pub(crate) struct BodyState {
    /// Bytes the guest has read, kept when the body is buffered.
    pub(crate) read: Vec<Bytes>,
    /// Bytes received and not yet read by the guest.
    pub(crate) unread: VecDeque<Bytes>,
    /// Frames not yet received.
    pub(crate) source: Option<BoxBody>,
    /// Trailers, received or written by the guest.
    pub(crate) trailers: Option<HeaderMap>,
    /// The guest read bytes without keeping them (no buffering feature).
    pub(crate) consumed: bool,
    /// What the guest wrote, and in which phase it began writing.
    pub(crate) written: Option<(Phase, BytesMut)>,
    /// Bytes held in `read` and `unread`, for the buffer limit.
    pub(crate) held: usize,
    /// Data bytes received from the source so far.
    received: u64,
    /// The data length the source declared before its first frame.
    declared: Option<u64>,
}

impl std::fmt::Debug for BodyState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyState")
            .field("held", &self.held)
            .field("streaming", &self.source.is_some())
            .field("written", &self.written.as_ref().map(|(_, b)| b.len()))
            .finish()
    }
}

impl BodyState {
    /// A body still to be received, of `declared` data bytes if its
    /// length is known (its exact size hint, taken before boxing it).
    pub(crate) fn streaming(source: BoxBody, declared: Option<u64>) -> BodyState {
        BodyState { source: Some(source), declared, ..BodyState::default() }
    }

    /// A body received in full.
    pub(crate) fn complete(chunks: VecDeque<Bytes>, trailers: Option<HeaderMap>) -> BodyState {
        let held = chunks.iter().map(Bytes::len).sum();
        BodyState { unread: chunks, trailers, held, ..BodyState::default() }
    }

    /// True while more of the body may come.
    pub(crate) fn arriving(&self) -> bool {
        self.source.is_some()
    }

    /// The body for the next handler as it came (what has arrived, then
    /// the rest), when the filter is skipped before the guest saw it.
    pub(crate) fn into_request_body(mut self) -> crate::body::RequestBody {
        let chunks = self.take_chunks();
        crate::body::RequestBody::buffered(chunks, self.source.take(), self.trailers.take())
    }

    /// True when nothing was pulled, read or written: the source can be
    /// forwarded untouched.
    pub(crate) fn untouched(&self) -> bool {
        self.read.is_empty()
            && self.unread.is_empty()
            && !self.consumed
            && self.written.is_none()
            && self.trailers.is_none()
    }

    /// Pulls one frame from the source. Returns false when the source is done.
    fn pull(&mut self, keep: bool, limit: usize, waits: Option<&BodyWaits>) -> Result<bool, HostError> {
        let Some(source) = self.source.as_mut() else { return Ok(false) };
        match next_frame(source, waits)? {
            None => {
                self.source = None;
                Ok(false)
            }
            Some(Err(e)) => {
                self.source = None;
                Err(HostError::Body(e))
            }
            Some(Ok(frame)) => {
                self.accept(frame, keep.then_some(limit))?;
                Ok(true)
            }
        }
    }

    /// Takes a received frame: data joins the unread bytes (failing past
    /// `limit` when one is given), trailers are kept.
    fn accept(&mut self, frame: Frame<Bytes>, limit: Option<usize>) -> Result<(), HostError> {
        match frame.into_data() {
            Ok(data) => {
                if let Some(limit) = limit
                    && self.held + data.len() > limit
                {
                    return Err(HostError::BodyTooLarge { limit });
                }
                self.held += data.len();
                self.received += data.len() as u64;
                if !data.is_empty() {
                    self.unread.push_back(data);
                }
            }
            Err(frame) => {
                if let Ok(t) = frame.into_trailers() {
                    self.trailers.get_or_insert_with(HeaderMap::new).extend(t);
                }
            }
        }
        Ok(())
    }

    /// Receives the rest of the body, keeping it.
    pub(crate) fn drain(&mut self, limit: usize, waits: Option<&BodyWaits>) -> Result<(), HostError> {
        while self.pull(true, limit, waits)? {}
        Ok(())
    }

    /// Pulls the frames already received, without waiting, up to `limit`
    /// bytes. Returns true when the body is complete.
    pub(crate) fn prefetch(&mut self, limit: usize) -> Result<bool, HostError> {
        let mut cx = Context::from_waker(Waker::noop());
        while self.held < limit {
            let Some(source) = self.source.as_mut() else { return Ok(true) };
            if source.is_end_stream() {
                self.source = None;
                return Ok(true);
            }
            match std::pin::Pin::new(&mut *source).poll_frame(&mut cx) {
                Poll::Pending => return Ok(false),
                Poll::Ready(None) => self.source = None,
                Poll::Ready(Some(Err(e))) => {
                    self.source = None;
                    return Err(HostError::Body(e));
                }
                Poll::Ready(Some(Ok(frame))) => self.accept(frame, None)?,
            }
        }
        if self.source.as_ref().is_some_and(|s| s.is_end_stream()) {
            self.source = None;
        }
        Ok(self.source.is_none())
    }

    /// True when every byte the source declared has arrived (trailers may
    /// still follow on HTTP/2).
    fn declared_received(&self) -> bool {
        self.declared.is_some_and(|n| self.received >= n)
    }

    /// True when no more bytes will come.
    fn at_end(&self) -> bool {
        self.unread.is_empty() && (self.declared_received() || self.source.as_ref().is_none_or(|s| s.is_end_stream()))
    }

    /// Takes what the source already has, without waiting, until a data
    /// frame or the end: so that a read that emptied `unread` can tell
    /// whether the body ended. As in [`Self::prefetch`], a frame taken here
    /// is held even past the buffer limit (it is already in memory); the
    /// next pull enforces the limit.
    fn peek(&mut self) -> Result<(), HostError> {
        let mut cx = Context::from_waker(Waker::noop());
        while self.unread.is_empty() && !self.declared_received() {
            let Some(source) = self.source.as_mut() else { return Ok(()) };
            if source.is_end_stream() {
                self.source = None;
                return Ok(());
            }
            match std::pin::Pin::new(&mut *source).poll_frame(&mut cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(None) => self.source = None,
                Poll::Ready(Some(Err(e))) => {
                    self.source = None;
                    return Err(HostError::Body(e));
                }
                Poll::Ready(Some(Ok(frame))) => self.accept(frame, None)?,
            }
        }
        Ok(())
    }

    /// Reads up to `limit` bytes through `fill`, which receives the bytes to
    /// copy into the guest's buffer. Returns `(eof, len)`.
    pub(crate) fn read(
        &mut self,
        limit: u32,
        keep: bool,
        buffer_limit: usize,
        waits: Option<&BodyWaits>,
        mut fill: impl FnMut(u32, &[u8]) -> Result<(), HostError>,
    ) -> Result<(bool, u32), HostError> {
        while self.unread.is_empty() {
            if self.declared_received() || !self.pull(keep, buffer_limit, waits)? {
                return Ok((true, 0));
            }
        }
        let mut done = 0u32;
        while done < limit {
            let Some(front) = self.unread.front_mut() else { break };
            let n = front.len().min((limit - done) as usize);
            let piece = front.split_to(n);
            if front.is_empty() {
                self.unread.pop_front();
            }
            fill(done, &piece)?;
            done += n as u32;
            if keep {
                self.read.push(piece);
            } else {
                self.held -= piece.len();
                self.consumed = true;
            }
        }
        if self.unread.is_empty() {
            self.peek()?;
        }
        Ok((self.at_end(), done))
    }

    /// Appends `bytes` to what the guest wrote in `phase`; the first write of
    /// a phase replaces the body.
    pub(crate) fn write(&mut self, phase: Phase, bytes: &[u8], limit: usize) -> Result<(), HostError> {
        match &mut self.written {
            Some((p, buf)) if *p == phase => {
                if buf.len() + bytes.len() > limit {
                    return Err(HostError::WrittenTooLarge { limit });
                }
                buf.extend_from_slice(bytes);
            }
            slot => {
                if bytes.len() > limit {
                    return Err(HostError::WrittenTooLarge { limit });
                }
                *slot = Some((phase, BytesMut::from(bytes)));
            }
        }
        Ok(())
    }

    /// The guest's body, if it wrote one.
    pub(crate) fn take_written(&mut self) -> Option<Bytes> {
        self.written.take().map(|(_, b)| b.freeze())
    }

    /// Every byte held, read or not, in order.
    pub(crate) fn take_chunks(&mut self) -> VecDeque<Bytes> {
        let mut all: VecDeque<Bytes> = std::mem::take(&mut self.read).into();
        all.append(&mut self.unread);
        self.held = 0;
        all
    }

    /// The length of the held bytes when nothing remains to be received.
    pub(crate) fn known_len(&self) -> Option<u64> {
        self.source.is_none().then_some(self.held as u64)
    }
}

fn next_frame(
    body: &mut BoxBody,
    waits: Option<&BodyWaits>,
) -> Result<Option<Result<Frame<Bytes>, BoxError>>, HostError> {
    let mut cx = Context::from_waker(Waker::noop());
    if let Poll::Ready(frame) = std::pin::Pin::new(&mut *body).poll_frame(&mut cx) {
        return Ok(frame);
    }
    wait(std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)), waits)
}

/// The most bytes pulled before `handle_request` to find out whether a
/// body is already complete.
pub(crate) const PREFETCH_LIMIT: usize = 64 << 10;

/// Waits for `fut` by parking this thread, recording the wait in `waits`;
/// with no `waits` (the call runs where it must not park, see the module
/// docs), fails instead.
fn wait<F: Future>(fut: F, waits: Option<&BodyWaits>) -> Result<F::Output, HostError> {
    match waits {
        Some(waits) => Ok(waits.during(|| park_on(fut))),
        None => Err(HostError::WouldBlock),
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

fn park_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::park();
    }
}
