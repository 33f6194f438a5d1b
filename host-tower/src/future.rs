//! The service's response future.

use crate::FailureResponse;
use crate::body::ResponseBody;
use crate::service::{Forwarded, Responding};
use http::Response;
use http_body::Body;
use pin_project_lite::pin_project;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

type Boxed<B, E> = Pin<Box<dyn Future<Output = Result<Response<ResponseBody<B>>, E>> + Send>>;

pin_project! {
    /// Response future of [`HttpWasm`](crate::HttpWasm).
    ///
    /// The common request (no body, a free instance, a filter that fails
    /// closed, a guest that does not buffer the response) runs its request
    /// phase in [`call`](tower_service::Service::call), waits here for the
    /// next handler's future, then runs the response phase: no allocation
    /// of its own. Anything else (a body to collect or stream into the
    /// guest, a wait for an instance, fail-open, a response to buffer, a
    /// guest call its backend did not answer at once) runs as one boxed
    /// future.
    pub struct ResponseFuture<B, E, Fut, F> {
        #[pin]
        state: State<B, E, Fut, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<B, E, Fut, F> {
        /// Waiting for the next handler, with what the response phase needs.
        Forwarding {
            #[pin]
            next: Fut,
            cycle: Option<Forwarded<F>>,
        },
        /// The rest of the exchange as an `async` block.
        Boxed { exchange: Boxed<B, E> },
        /// The rest of the response phase, after the next handler answered.
        Responding { rest: Responding<B> },
        /// `handle_response` after the next handler failed with `error`.
        Failing { call: Pin<Box<dyn Future<Output = ()> + Send>>, error: Option<E> },
        /// Answered already (a short circuit, a failure response).
        Ready { response: Option<Response<ResponseBody<B>>> },
    }
}

impl<B, E, Fut, F> ResponseFuture<B, E, Fut, F> {
    pub(crate) fn forwarding(next: Fut, cycle: Forwarded<F>) -> Self {
        ResponseFuture { state: State::Forwarding { next, cycle: Some(cycle) } }
    }

    pub(crate) fn boxed(exchange: Boxed<B, E>) -> Self {
        ResponseFuture { state: State::Boxed { exchange } }
    }

    pub(crate) fn ready(response: Response<ResponseBody<B>>) -> Self {
        ResponseFuture { state: State::Ready { response: Some(response) } }
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

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let next = match self.as_mut().project().state.project() {
            StateProj::Ready { response } => {
                return Poll::Ready(Ok(response.take().expect("ResponseFuture polled after completion")));
            }
            StateProj::Boxed { exchange } => return exchange.as_mut().poll(cx),
            StateProj::Responding { rest } => return rest.as_mut().poll(cx).map(Ok),
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
                        Err(rest) => State::Responding { rest },
                    },
                }
            }
        };
        self.as_mut().project().state.set(next);
        self.poll(cx)
    }
}

impl<B, E, Fut, F> fmt::Debug for ResponseFuture<B, E, Fut, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
