//! A body made of ready frames, used for requests the runner sends and
//! responses the backend gives.

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// The error type of [`Frames`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A body yielding the given frames (and errors) in order, one per poll.
#[derive(Debug, Default)]
pub struct Frames {
    frames: VecDeque<Result<Frame<Bytes>, String>>,
    exact: Option<u64>,
    /// Waits this long before yielding an error, so that what came before
    /// it is flushed to the peer first.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Frames {
    /// One data frame of `data` with an exact size hint (so that it is sent
    /// with a `content-length`).
    pub fn full(data: impl Into<Bytes>) -> Frames {
        let data: Bytes = data.into();
        let exact = Some(data.len() as u64);
        let mut frames = VecDeque::new();
        if !data.is_empty() {
            frames.push_back(Ok(Frame::data(data)));
        }
        Frames { frames, exact, pause: None }
    }

    /// `data` in frames of at most `chunk` bytes, then `trailers` if any,
    /// with no size hint (so that HTTP/1.1 sends it chunked).
    pub fn chunked(data: &[u8], chunk: usize, trailers: Option<HeaderMap>) -> Frames {
        let mut frames: VecDeque<_> =
            data.chunks(chunk.max(1)).map(|c| Ok(Frame::data(Bytes::copy_from_slice(c)))).collect();
        if let Some(t) = trailers {
            frames.push_back(Ok(Frame::trailers(t)));
        }
        Frames { frames, exact: None, pause: None }
    }

    /// `data`, then (after a pause of 50 ms that lets a server flush the
    /// response head and `data`) an error with `message`.
    pub fn failing(data: impl Into<Bytes>, message: &str) -> Frames {
        let frames = VecDeque::from([Ok(Frame::data(data.into())), Err(message.to_string())]);
        let pause = Some(Box::pin(tokio::time::sleep(std::time::Duration::from_millis(50))));
        Frames { frames, exact: None, pause }
    }
}

#[derive(Debug)]
struct FrameError(String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FrameError {}

impl Body for Frames {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if matches!(self.frames.front(), Some(Err(_)))
            && let Some(pause) = self.pause.as_mut()
        {
            std::task::ready!(pause.as_mut().poll(cx));
            self.pause = None;
        }
        Poll::Ready(self.frames.pop_front().map(|f| f.map_err(|m| Box::new(FrameError(m)) as BoxError)))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        match self.exact {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}
