//! One client connection: its protocol settings, its idle timeout and its
//! shutdown.
//!
//! A connection is idle while no request is in progress on it (an HTTP/1.1
//! keep-alive connection between requests, an HTTP/2 connection without a
//! stream). Idle for the idle timeout, it is shut down gracefully (HTTP/2:
//! GOAWAY), and dropped if that has not finished within the idle timeout
//! again, so an idle client never holds a connection slot for long.
//! HTTP/2 connections are also pinged, so a peer that vanished is noticed
//! even while a stream waits.
//!
//! A connection runs on its worker's thread (a task of the worker's
//! [`tokio::task::LocalSet`]), and so do its HTTP/2 streams
//! ([`LocalExecutor`]): its requests' filters are the worker's own
//! replicas, which never leave that thread.

use super::Limits;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper_util::rt::TokioTimer;
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulConnection;
use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Instant;

/// How often an HTTP/2 client is pinged when it sends nothing (so that a
/// peer that vanished is noticed even while a stream waits).
pub const PING_INTERVAL: Duration = Duration::from_secs(20);

/// How long a ping may go unanswered before the connection is closed.
pub const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// How much longer than the drain timeout a stopping connection may take
/// to close before it is dropped.
const DRAIN_MARGIN: Duration = Duration::from_secs(1);

/// The executor of a connection's HTTP/2 streams: each a task of the
/// current thread's [`tokio::task::LocalSet`], so a stream's future (its
/// request through the worker's filters) need not be `Send`. Used only
/// from within a `LocalSet` (a worker's), where hyper spawns the streams
/// of a connection it is polling.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExecutor;

impl<F: Future + 'static> hyper::rt::Executor<F> for LocalExecutor {
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

/// The server's per-connection settings: HTTP/1.1's head timeout, HTTP/2's
/// keep-alive pings, HTTP/2 streams on the current thread.
pub fn builder(limits: Limits) -> auto::Builder<LocalExecutor> {
    let mut builder = auto::Builder::new(LocalExecutor);
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    builder.http2().timer(TokioTimer::new()).keep_alive_interval(PING_INTERVAL).keep_alive_timeout(PING_TIMEOUT);
    builder
}

/// What a connection is doing: its requests in progress, and since when it
/// has had none. Shared by the connection's task and its requests, all on
/// its worker's thread.
#[derive(Debug)]
pub struct Activity {
    in_flight: Cell<usize>,
    idle_since: Cell<Instant>,
}

impl Activity {
    /// A connection that just opened: idle from now. It counts as open
    /// (`http_wasm_connections_open`) until dropped.
    pub fn new() -> Rc<Activity> {
        super::metrics::GATEWAY.connection_opened();
        Rc::new(Activity { in_flight: Cell::new(0), idle_since: Cell::new(Instant::now()) })
    }

    /// A request starts; it is in progress until the returned guard (or the
    /// response body it is moved into) is dropped.
    pub fn start(self: &Rc<Activity>) -> InFlight {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(self.clone())
    }

    /// When the connection will have been idle for `idle`, if it is idle now.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        (self.in_flight.get() == 0).then(|| self.idle_since.get() + idle)
    }
}

impl Drop for Activity {
    fn drop(&mut self) {
        super::metrics::GATEWAY.connection_closed();
    }
}

/// A request in progress on a connection.
#[derive(Debug)]
pub struct InFlight(Rc<Activity>);

impl InFlight {
    /// The response body, keeping the request in progress until it is sent
    /// (or dropped).
    pub fn body<B>(self, body: B) -> Tracked<B> {
        Tracked { body, _in_flight: self }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let left = self.0.in_flight.get() - 1;
        self.0.in_flight.set(left);
        if left == 0 {
            self.0.idle_since.set(Instant::now());
        }
    }
}

/// A response body whose request counts as in progress until it is done.
pub struct Tracked<B> {
    body: B,
    _in_flight: InFlight,
}

impl<B: Body<Data = Bytes> + Unpin> Body for Tracked<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Why a connection is being shut down.
#[derive(Debug)]
enum Ending {
    Idle,
    Shutdown,
}

/// Serves `conn` until it ends, it has been idle for the idle timeout, or
/// `stopping` turns true (the server stops); then shuts it down
/// gracefully, dropping it if that takes longer than the idle timeout
/// (when idle) or the drain timeout and [`DRAIN_MARGIN`] (when stopping).
pub async fn drive<C>(
    conn: C,
    activity: &Activity,
    limits: Limits,
    mut stopping: tokio::sync::watch::Receiver<bool>,
    peer: SocketAddr,
) where
    C: GracefulConnection,
    C::Error: std::fmt::Display,
{
    let idle = limits.idle_timeout;
    let mut conn = std::pin::pin!(conn);
    let ending = loop {
        let wake = activity.idle_deadline(idle).unwrap_or_else(|| Instant::now() + idle);
        tokio::select! {
            ended = conn.as_mut() => {
                if let Err(e) = ended {
                    tracing::debug!(target: "http_wasm::serve", %peer, error = %e, "connection ended");
                }
                return;
            }
            changed = stopping.changed() => {
                if changed.is_err() || *stopping.borrow() {
                    break Ending::Shutdown;
                }
            }
            () = tokio::time::sleep_until(wake) => {
                if activity.idle_deadline(idle).is_some_and(|at| at <= Instant::now()) {
                    break Ending::Idle;
                }
            }
        }
    };
    tracing::debug!(target: "http_wasm::serve", %peer, ?ending, "closing the connection");
    conn.as_mut().graceful_shutdown();
    let grace = match ending {
        Ending::Idle => idle,
        // The server's own drain timeout decides (and logs) when it stops
        // waiting; this one only bounds a connection that outlives it. Were
        // they equal, both timers would fire in the same tick and the
        // server would find every connection closed, not cut.
        Ending::Shutdown => limits.drain_timeout + DRAIN_MARGIN,
    };
    match tokio::time::timeout(grace, conn).await {
        Ok(Err(e)) => tracing::debug!(target: "http_wasm::serve", %peer, error = %e, "connection ended"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!(target: "http_wasm::serve", %peer, ?ending, "dropped: it did not close in time"),
    }
}
