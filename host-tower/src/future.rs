//! The services' response future.

use crate::FailureResponse;
use crate::body::ResponseBody;
use crate::service::{Forwarded, Later, SendBoxed};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

/// The rest of a response phase that waits, boxed for the `Send` service.
type SendResponding<B> = Pin<Box<dyn Future<Output = Response<ResponseBody<B>>> + Send>>;
/// The response future's boxed exchange, for the local service.
pub(crate) type LocalBoxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>>>>;
/// The rest of a response phase that waits, boxed for the local service.
pub(crate) type LocalResponding<B> = Pin<Box<dyn Future<Output = Response<ResponseBody<B>>>>>;

pin_project! {
    /// Response future of [`HttpWasm`](crate::HttpWasm) and, with its
    /// boxes not `Send` (`X` and `R`), of
    /// [`LocalHttpWasm`](crate::LocalHttpWasm).
    ///
    /// The common request (no body, a free instance, a filter that fails
    /// closed, a guest that does not buffer the response) runs its request
    /// phase in [`call`](tower_service::Service::call), waits here for the
    /// next handler's future, then runs the response phase: no allocation
    /// of its own. Anything else (a body to collect or stream into the
    /// guest, a wait for an instance, fail-open, a response to buffer, a
    /// guest call its backend did not answer at once) runs as one boxed
    /// future.
    pub struct ResponseFuture<B, E, Fut, F, X = SendBoxed<B, E>, R = SendResponding<B>> {
        #[pin]
        state: State<B, E, Fut, F, X, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, E, Fut, F, X, R> {
        /// Waiting for the next handler, with what the response phase needs.
        Forwarding {
            #[pin]
            next: Fut,
            cycle: Option<Forwarded<F>>,
        },
        /// The rest of the exchange as an `async` block.
        Boxed { exchange: X },
        /// The rest of the response phase, after the next handler answered.
        Responding { rest: R },
        /// `handle_response` after the next handler failed with `error`.
        Failing { call: Pin<Box<dyn Future<Output = ()> + Send>>, error: Option<E> },
        /// Answered already (a short circuit, a failure response).
        Ready { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<B, E, Fut, F, X, R> ResponseFuture<B, E, Fut, F, X, R> {
    pub(crate) fn forwarding(next: Fut, cycle: Forwarded<F>) -> Self {
        ResponseFuture { state: State::Forwarding { next, cycle: Some(cycle) } }
    }

    pub(crate) fn boxed(exchange: X) -> Self {
        ResponseFuture { state: State::Boxed { exchange } }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture { state: State::Ready { response: Some(response) } }
    }

    /// Polls the exchange; what the response phase leaves to wait for is
    /// boxed by `later`.
    fn poll_with(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        later: impl Fn(Later<B, F>) -> R,
    ) -> Poll<Result<Response<ResponseBody<B>>, E>>
    where
        Fut: Future<Output = Result<Response<B>, E>>,
        F: FailureResponse,
        B: Body,
        B::Error: fmt::Display,
        X: Future<Output = Result<Response<ResponseBody<B>>, E>> + Unpin,
        R: Future<Output = Response<ResponseBody<B>>> + Unpin,
    {
        let next = match self.as_mut().project().state.project() {
            StateProj::Ready { response } => {
                return Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion")));
            }
            StateProj::Boxed { exchange } => return Pin::new(exchange).poll(cx),
            StateProj::Responding { rest } => return Pin::new(rest).poll(cx).map(Ok),
            StateProj::Failing { call, error } => {
                ready!(call.as_mut().poll(cx));
                return Poll::Ready(Err(error.take().expect("ResponseFuture polled after completion")));
            }
            StateProj::Forwarding { next, cycle } => {
                let result = ready!(next.poll(cx));
                let cycle = cycle.take().expect("ResponseFuture polled after completion");
                match result {
                    Err(error) => match cycle.next_failed() {
                        None => return Poll::Ready(Err(error)),
                        Some(call) => State::Failing { call: Box::pin(call), error: Some(error) },
                    },
                    Ok(response) => match cycle.respond_now(response) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        // The guest buffers the response, or its call waits: go on.
                        Err(rest) => State::Responding { rest: later(rest) },
                    },
                }
            }
        };
        self.as_mut().project().state.set(next);
        self.poll_with(cx, later)
    }
}

impl<B, E, Fut, F> Future for ResponseFuture<B, E, Fut, F>
where
    Fut: Future<Output = Result<Response<B>, E>>,
    F: FailureResponse,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: fmt::Display,
    E: Send + 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_with(cx, |rest| -> SendResponding<B> { Box::pin(rest.run()) })
    }
}

impl<B, E, Fut, F> Future for ResponseFuture<B, E, Fut, F, LocalBoxed<B, E>, LocalResponding<B>>
where
    Fut: Future<Output = Result<Response<B>, E>>,
    F: FailureResponse,
    B: Body + 'static,
    B::Error: fmt::Display,
    E: 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.poll_with(cx, |rest| -> LocalResponding<B> { Box::pin(rest.run()) })
    }
}

impl<B, E, Fut, F, X, R> fmt::Debug for ResponseFuture<B, E, Fut, F, X, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
