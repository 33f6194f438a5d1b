//! One runtime per core: `serve --workers N` runs N threads, each a tokio
//! current-thread runtime accepting on its own listener, so a connection,
//! its requests, its filters' guest calls and its upstream exchanges stay
//! on the thread that accepted it and no request is handed to another
//! thread.
//!
//! With more than one worker every listener is bound to the same address
//! with `SO_REUSEPORT` (Linux spreads new connections over them by a hash
//! of the addresses); with one, the listener is bound as any other. (So
//! with several, another process of the same user that also sets
//! `SO_REUSEPORT`, a second gateway started by mistake, can bind the same
//! address and take a share of the connections instead of failing.) Each
//! worker has its own upstream HTTP/1.1 pool (its share of
//! `--upstream-max-idle`; over HTTP/2 one connection serves all workers),
//! its own connection tasks and timers, and its own replica of each filter
//! ([`Plugin::local`](tower_http_wasm::Plugin::local), made on the
//! worker's thread): its own instance pool, so `--pool-size` is per
//! worker (a filter has at most `--pool-size` instances on each worker,
//! `--workers` times that in all), and instances that run on the worker's
//! thread, inline (on wasmer too: a store never leaves its thread). The
//! worker's connections are tasks of its [`LocalSet`], their HTTP/2
//! streams too ([`connection::LocalExecutor`]).
//!
//! What the workers share: each filter's module, options and counters (so
//! `/metrics` counts every worker's requests, and a reload, of the shared
//! plugin, reaches every replica: each rebuilds itself on its next
//! request), the gateway's metrics, the `--max-connections` slots and the
//! stop signal. The control thread (the caller's runtime) keeps the
//! signals, the reload watcher and the admin listener, and after a stop
//! waits for the workers' connections to end.

use super::forwarded::Forwarded;
use super::pipeline::Filters;
use super::proxy::Next;
use super::{Gateway, Limits, connection, tls};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::LocalSet;
use tracing::Instrument;

/// The default of `--workers`: the number of cores available to the
/// process (1 when it cannot be known).
pub fn default_count() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The backlog of each listener, as tokio's `TcpListener::bind` sets it.
const BACKLOG: i32 = 1024;

/// Binds one listener to `addr`: `SO_REUSEADDR` (as tokio's own bind
/// sets it), `SO_REUSEPORT` when `shared` (on Unix), non-blocking.
fn bind_one(addr: SocketAddr, shared: bool) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    #[cfg(unix)]
    {
        socket.set_reuse_address(true)?;
        if shared {
            socket.set_reuse_port(true)?;
        }
    }
    #[cfg(not(unix))]
    let _ = shared;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Binds `count` listeners to `addr` (port 0: one port chosen for all),
/// each listening at once, so connections queue in the backlog until the
/// workers accept them. More than one share the address by `SO_REUSEPORT`
/// (off Unix: one listener, whatever `count`).
pub fn bind(addr: SocketAddr, count: usize) -> Result<Vec<std::net::TcpListener>, String> {
    let shared = count > 1 && cfg!(unix);
    let count = if cfg!(unix) { count.max(1) } else { 1 };
    let first = bind_one(addr, shared).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let at = first.local_addr().map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(bind_one(at, shared).map_err(|e| format!("cannot listen on {at} (worker's listener): {e}"))?);
    }
    Ok(listeners)
}

/// A request id for the logs: a sequence number within the process.
fn request_id() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The running workers, as the control thread holds them.
#[derive(Debug)]
pub struct Workers {
    slots: Arc<Semaphore>,
    stop: watch::Sender<bool>,
    limits: Limits,
}

impl Workers {
    /// Starts one worker thread per listener, each serving `filters` in
    /// front of its own next handler, with its own replicas of the filters
    /// (see the [module](self) docs). Returns once every worker accepts,
    /// or with the first worker's failure to start.
    pub async fn start(
        workers: Vec<(std::net::TcpListener, Next)>,
        filters: &Filters,
        forwarded: Forwarded,
        tls: Option<tokio_rustls::TlsAcceptor>,
        limits: Limits,
    ) -> Result<Workers, String> {
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let (stop, stopping) = watch::channel(false);
        let mut started = Vec::new();
        for (i, (listener, next)) in workers.into_iter().enumerate() {
            let (ready, accepting) = oneshot::channel();
            let (tls, slots, stopping, filters) = (tls.clone(), slots.clone(), stopping.clone(), filters.clone());
            let spawned = std::thread::Builder::new().name(format!("http-wasm-worker-{i}")).spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(format!("worker {i}: cannot start its runtime: {e}")));
                        return;
                    }
                };
                LocalSet::new().block_on(&runtime, async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready.send(Err(format!("worker {i}: cannot register its listener: {e}")));
                            return;
                        }
                    };
                    // This thread's replicas of the filters.
                    let gateway = Gateway { pipeline: filters.chain(next), forwarded };
                    let _ = ready.send(Ok(()));
                    accept(i, listener, tls, gateway, limits, slots, stopping).await;
                    // Its connections drain on this runtime: it runs until
                    // the control thread ends the process.
                    std::future::pending::<()>().await
                });
            });
            if let Err(e) = spawned {
                return Err(format!("cannot start worker {i}: {e}"));
            }
            started.push(accepting);
        }
        for accepting in started {
            accepting.await.map_err(|_| "a worker stopped while starting".to_string())??;
        }
        Ok(Workers { slots, stop, limits })
    }

    /// Stops every worker accepting (their listeners close) and lets open
    /// connections finish their requests for at most
    /// [`Limits::drain_timeout`]; returns when all have ended or that has
    /// passed (the connections left are cut when the process exits).
    pub async fn stop(self) {
        let limits = self.limits;
        tracing::info!(target: "http_wasm::serve", drain_timeout = ?limits.drain_timeout, "shutting down: waiting for open connections");
        let _ = self.stop.send(true);
        // Every connection holds a slot until it ends: all slots back, all ended.
        let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(limits.drain_timeout, self.slots.acquire_many(all)).await.is_err() {
            tracing::warn!(target: "http_wasm::serve", drain_timeout = ?limits.drain_timeout, "connections still open after the drain timeout; closing");
        }
    }
}

/// Worker `index`'s accept loop: serves `gateway` on `listener`, each
/// connection a task of the worker's [`LocalSet`], until `stopping` turns
/// true, then closes the listener and tells its connections to finish
/// (see [`connection::drive`]). A connection takes
/// one of the process's `slots` before it is accepted, and holds it until
/// it ends. With `tls`, every connection starts with its handshake (within
/// [`Limits::header_timeout`]).
async fn accept(
    index: usize,
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    gateway: Gateway,
    limits: Limits,
    slots: Arc<Semaphore>,
    mut stopping: watch::Receiver<bool>,
) {
    let builder = connection::builder(limits);
    let stopped = |stopping: &watch::Receiver<bool>| *stopping.borrow();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(target: "http_wasm::serve", error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            changed = stopping.changed() => match changed {
                Ok(()) if !stopped(&stopping) => continue,
                _ => break,
            },
        };
        // Then a free connection slot: past the limit, this connection
        // waits unserved and the next ones wait in the listen backlog, so
        // a worker holds at most one connection beyond the limit (a slot
        // taken before accepting would sit idle with one worker while
        // another worker's clients wait for it).
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            _ = stopping.wait_for(|stop| *stop) => break,
        };
        tracing::debug!(target: "http_wasm::serve", %peer, worker = index, "connection accepted");
        // Small writes (headers, chunks) go out at once, not after a delayed ACK.
        let _ = stream.set_nodelay(true);
        let gateway = gateway.clone();
        let activity = connection::Activity::new();
        let tracked = activity.clone();
        let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            // In progress until its response body is sent or dropped.
            let in_flight = tracked.start();
            let gateway = gateway.clone();
            let res = async move { gateway.handle(req, peer).await.map(|body| in_flight.body(body)) };
            // The id is only taken when the span is enabled (`info`). The
            // request's future is large: boxed once here, it is not copied
            // again on its way into the connection's task.
            let span = tracing::info_span!(target: "http_wasm::serve", "request", id = request_id());
            let res = Box::pin(res.instrument(span));
            async move { Ok::<_, Infallible>(res.await) }
        });
        let stopping = stopping.clone();
        if let Some(tls) = &tls {
            let (tls, builder) = (tls.clone(), builder.clone());
            tokio::task::spawn_local(async move {
                let _slot = slot;
                let Some(stream) = tls::accept(&tls, stream, limits.header_timeout, peer).await else { return };
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                connection::drive(conn, &activity, limits, stopping, peer).await;
            });
            continue;
        }
        let conn = builder.serve_connection(TokioIo::new(stream), svc).into_owned();
        tokio::task::spawn_local(async move {
            let _slot = slot;
            connection::drive(conn, &activity, limits, stopping, peer).await;
        });
    }
    drop(listener);
}
