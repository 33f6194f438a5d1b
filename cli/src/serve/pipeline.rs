//! An ordered chain of filters, each an `HttpWasmLayer`, the first outermost.

use super::proxy::Next;
use super::{BodyError, OutBody};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use std::convert::Infallible;
use tower::ServiceExt;
use tower::util::BoxCloneService;
use tower_http_wasm::{Engine, HttpWasm, Plugin, RequestBody};

/// One filter to load.
#[derive(Clone, Debug)]
pub struct FilterSpec {
    /// The name in logs (the file or the Dapr component name).
    pub name: String,
    /// Where the module came from, for messages.
    pub source: String,
    /// The module.
    pub wasm: Vec<u8>,
    /// Its configuration bytes.
    pub config: Bytes,
}

/// The service behind a filter: the rest of the chain.
type Inner = BoxCloneService<Request<RequestBody>, Response<OutBody>, Infallible>;

/// The loaded chain, ready to serve requests of any body type.
#[derive(Clone)]
pub enum Pipeline {
    /// No filter: straight to the next handler.
    Plain(Next),
    /// The outermost filter around the rest.
    Filtered(HttpWasm<Inner>),
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pipeline::Plain(n) => f.debug_tuple("Plain").field(n).finish(),
            Pipeline::Filtered(_) => f.write_str("Filtered"),
        }
    }
}

fn boxed<S, B>(svc: S) -> Inner
where
    S: tower::Service<Request<RequestBody>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes, Error = BodyError> + Send + 'static,
{
    BoxCloneService::new(svc.map_response(|res: Response<B>| res.map(|b| b.boxed_unsync())))
}

impl Pipeline {
    /// Loads every filter and chains them in front of `next`.
    pub fn build(filters: Vec<FilterSpec>, next: Next, engine: Engine) -> Result<Pipeline, String> {
        let mut plugins = Vec::new();
        for f in filters {
            let plugin = Plugin::builder()
                .name(f.name.clone())
                .engine(engine)
                .config(f.config)
                .build(&f.wasm)
                .map_err(|e| format!("filter {} ({}): {e}", f.name, f.source))?;
            tracing::info!(target: "http_wasm::serve", filter = %f.name, source = %f.source, features = %plugin.module_features(), "filter loaded");
            plugins.push(plugin);
        }
        let Some(first) = plugins.first().cloned() else { return Ok(Pipeline::Plain(next)) };
        let end = next.clone();
        let mut inner: Inner = boxed(tower::service_fn(move |req: Request<RequestBody>| end.clone().call(req)));
        for plugin in plugins.into_iter().skip(1).rev() {
            inner = boxed(HttpWasm::new(inner, plugin));
        }
        Ok(Pipeline::Filtered(HttpWasm::new(inner, first)))
    }

    /// Handles one request.
    pub async fn call<B>(self, req: Request<B>) -> Response<OutBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let result = match self {
            Pipeline::Plain(next) => next.call(req).await,
            Pipeline::Filtered(svc) => {
                let req = req.map(|b| b.map_err(|e| BodyError(e.into())));
                svc.oneshot(req).await.map(|res| res.map(|b| b.boxed_unsync()))
            }
        };
        match result {
            Ok(res) => res,
            Err(never) => match never {},
        }
    }
}
