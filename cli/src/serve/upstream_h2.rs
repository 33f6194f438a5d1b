//! One HTTP/2 connection to the upstream, shared by every request whatever
//! its `:authority`: a pool keyed by the request's authority (as hyper's
//! pooled client keys it) would open a connection for every `host` a
//! client names.
//!
//! Over TLS the protocol is chosen by ALPN: with [`Alpn::Http2`] the
//! upstream must select `h2`; with [`Alpn::Both`] an upstream that selects
//! `http/1.1` (or nothing) is remembered as an HTTP/1.1 one, and
//! [`SharedHttp2::speaks_http2`] says so from then on (the connection that
//! found it out is dropped).

use super::proxy::Outgoing;
use super::tls::{Alpn, Connector};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::connect::Connection as _;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often the connection is pinged when the upstream sends nothing, and
/// how long a ping may go unanswered before the connection is dropped (and
/// the next request dials again).
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// A TLS upstream that did not select `h2` by ALPN.
#[derive(Debug)]
pub struct NotHttp2;

impl std::fmt::Display for NotHttp2 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream did not select h2 by ALPN")
    }
}

impl std::error::Error for NotHttp2 {}

/// The shared connection, dialled on first use and again once it closed.
#[derive(Debug)]
pub struct SharedHttp2 {
    connector: Connector,
    upstream: Uri,
    alpn: Alpn,
    /// Set once an upstream offered `h2` and `http/1.1` chose the latter.
    http1: AtomicBool,
    sender: tokio::sync::Mutex<Option<SendRequest<Outgoing>>>,
}

impl SharedHttp2 {
    /// Connections go to `upstream` (`http://authority/`, or `https://`
    /// with TLS offering `alpn`, which `connector` must be built with)
    /// through `connector`.
    pub fn new(connector: Connector, upstream: Uri, alpn: Alpn) -> SharedHttp2 {
        SharedHttp2 { connector, upstream, alpn, http1: AtomicBool::new(false), sender: tokio::sync::Mutex::new(None) }
    }

    /// Whether requests go over HTTP/2 here: always over plain HTTP and
    /// with [`Alpn::Http2`]; with [`Alpn::Both`], once a connection's ALPN
    /// said so (this dials when no connection is open), false for good
    /// once an upstream chose `http/1.1`.
    pub async fn speaks_http2(&self) -> Result<bool, BoxError> {
        if self.alpn != Alpn::Both {
            return Ok(true);
        }
        if self.http1.load(Ordering::Relaxed) {
            return Ok(false);
        }
        match self.sender().await {
            Ok(_) => Ok(true),
            Err(e) if e.is::<NotHttp2>() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The open connection, or a new one. Requests that arrive while it is
    /// being dialled wait for it rather than dial their own.
    async fn sender(&self) -> Result<SendRequest<Outgoing>, BoxError> {
        let mut slot = self.sender.lock().await;
        if let Some(sender) = slot.as_ref()
            && !sender.is_closed()
        {
            return Ok(sender.clone());
        }
        *slot = None;
        if self.http1.load(Ordering::Relaxed) {
            return Err(Box::new(NotHttp2));
        }
        let io = self.connector.clone().call(self.upstream.clone()).await?;
        if self.upstream.scheme() == Some(&http::uri::Scheme::HTTPS) && !io.connected().is_negotiated_h2() {
            if self.alpn == Alpn::Both {
                self.http1.store(true, Ordering::Relaxed);
                tracing::debug!(target: "http_wasm::proxy", upstream = %self.upstream, "the upstream chose HTTP/1.1 by ALPN");
            }
            return Err(Box::new(NotHttp2));
        }
        let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(PING_INTERVAL)
            .keep_alive_timeout(PING_TIMEOUT)
            .handshake(io)
            .await?;
        let upstream = self.upstream.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(target: "http_wasm::proxy", %upstream, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        *slot = Some(sender.clone());
        Ok(sender)
    }

    /// Sends `req` (its URI absolute: its authority goes as `:authority`).
    /// A request the connection could not take (it closed meanwhile) is
    /// sent once more on a new connection.
    pub async fn request(&self, mut req: Request<Outgoing>) -> Result<Response<Incoming>, BoxError> {
        let mut retried = false;
        loop {
            let mut sender = self.sender().await?;
            if sender.ready().await.is_err() && !retried {
                retried = true;
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(res) => return Ok(res),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if !retried => {
                        req = unsent;
                        retried = true;
                    }
                    _ => return Err(Box::new(e.into_error())),
                },
            }
        }
    }
}
