//! One HTTP/2 connection to the upstream, shared by every request whatever
//! its `:authority`: a pool keyed by the request's authority (as hyper's
//! pooled client keys it) would open a connection for every `host` a
//! client names.

use super::proxy::Outgoing;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http2::SendRequest;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::time::Duration;
use tower::Service;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How often the connection is pinged when the upstream sends nothing, and
/// how long a ping may go unanswered before the connection is dropped (and
/// the next request dials again).
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(20);

/// The shared connection, dialled on first use and again once it closed.
#[derive(Debug)]
pub struct SharedHttp2 {
    connector: HttpConnector,
    upstream: Uri,
    sender: tokio::sync::Mutex<Option<SendRequest<Outgoing>>>,
}

impl SharedHttp2 {
    /// Connections go to `upstream` (`http://authority/`) through `connector`.
    pub fn new(connector: HttpConnector, upstream: Uri) -> SharedHttp2 {
        SharedHttp2 { connector, upstream, sender: tokio::sync::Mutex::new(None) }
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
        let io = self.connector.clone().call(self.upstream.clone()).await?;
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
