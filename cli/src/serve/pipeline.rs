//! An ordered chain of filters, the first outermost: loaded once
//! ([`Filters`]), chained by each worker from its own replicas of them
//! ([`Pipeline`], each filter a `LocalHttpWasm`).

use super::body_timeout::DEFAULT_BODY_TIMEOUT;
use super::proxy::{Next, ProxyError};
use super::settings::Settings;
use super::{BodyError, OutBody};
use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tower::ServiceExt;
use tower_http_wasm::{Engine, LocalHttpWasm, LocalPlugin, Plugin, RequestBody};

/// One filter to load.
#[derive(Clone, Debug)]
pub struct FilterSpec {
    /// The name in logs and metrics (the file's stem, a URL's or
    /// repository's last path segment, or the Dapr component name), unique
    /// within the pipeline.
    pub name: String,
    /// Where the module came from, for messages.
    pub source: String,
    /// The module's file, re-read on reload (`None`: built into the binary).
    pub path: Option<PathBuf>,
    /// The module.
    pub wasm: Vec<u8>,
    /// Its configuration bytes.
    pub config: Bytes,
    /// This filter's own settings, over the pipeline's (Dapr metadata).
    pub settings: Settings,
}

/// What every filter of the pipeline is loaded with, unless its own
/// [`FilterSpec`] says otherwise.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The engine.
    pub engine: Engine,
    /// The settings of every filter (the `serve` flags).
    pub settings: Settings,
    /// Where compiled modules are kept (none: every load compiles).
    pub cache_dir: Option<PathBuf>,
}

/// A loaded filter: what reloads and metrics need.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Its unique name.
    pub name: String,
    /// The module's file, if it has one.
    pub path: Option<PathBuf>,
    /// The plugin serving it (clones share the module, pool and counters).
    pub plugin: Plugin,
}

/// Makes names unique by suffixing repeats with `-2`, `-3`... (two
/// `--filter` files may share a stem), so that logs and metric series
/// tell them apart.
pub fn unique_names(filters: &mut [FilterSpec]) {
    let mut seen: Vec<String> = Vec::new();
    for f in filters.iter_mut() {
        if seen.contains(&f.name) {
            let base = f.name.clone();
            let mut n = 2;
            while seen.contains(&format!("{base}-{n}")) {
                n += 1;
            }
            f.name = format!("{base}-{n}");
        }
        seen.push(f.name.clone());
    }
}

/// What a filter's service returns: the rest of the chain's response, or
/// the upstream's failure.
type Answer = Pin<Box<dyn Future<Output = Result<Response<OutBody>, ProxyError>>>>;

/// The service behind a filter: the rest of the chain, a shared function
/// of the worker's thread (cloned per request: a count, not a copy). Its
/// error is the upstream's failure, which each filter sees as
/// `is_error = 1` in `handle_response` before passing it out. (tower's
/// `BoxCloneService` needs `Send`; the worker's filters are not.)
#[derive(Clone)]
pub struct Rest(Rc<dyn Fn(Request<RequestBody>) -> Answer>);

impl tower::Service<Request<RequestBody>> for Rest {
    type Response = Response<OutBody>;
    type Error = ProxyError;
    type Future = Answer;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ProxyError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Answer {
        (self.0)(req)
    }
}

impl Rest {
    /// `filter` in front of `self`.
    fn behind(self, filter: LocalPlugin) -> Rest {
        let svc = LocalHttpWasm::new(self, filter);
        Rest(Rc::new(move |req| {
            let svc = svc.clone();
            Box::pin(async move { svc.oneshot(req).await.map(|res| res.map(|b| b.boxed_unsync())) })
        }))
    }
}

/// A worker's chain, ready to serve requests of any body type: it and its
/// clones stay on the thread that built it (see [`Filters::chain`]).
#[derive(Clone)]
pub enum Pipeline {
    /// No filter: straight to the next handler (shared by the clones: one
    /// per request), with the body timeout.
    Plain(Rc<Next>, Duration),
    /// The outermost filter around the rest.
    Filtered(LocalHttpWasm<Rest>),
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pipeline::Plain(n, t) => f.debug_tuple("Plain").field(n).field(t).finish(),
            Pipeline::Filtered(_) => f.write_str("Filtered"),
        }
    }
}

/// The loaded filters, in order, and what the chain needs besides them:
/// loaded once, then each worker chains its own replicas of them in front
/// of its own next handler.
#[derive(Clone, Debug)]
pub struct Filters {
    /// The filters, first outermost (clones share each plugin's module,
    /// pool and counters; each worker serves with its own replicas).
    pub loaded: Vec<Loaded>,
    /// How long a request body may stall on its way to the upstream: the
    /// shortest of the filters' body timeouts (the flag's without filters).
    body_timeout: Duration,
}

impl Filters {
    /// Loads every filter.
    pub fn load(filters: Vec<FilterSpec>, options: &Options) -> Result<Filters, String> {
        let mut loaded = Vec::new();
        // On the way to the upstream, a body stalls at the first filter's
        // timeout that fires: the shortest.
        let mut body_timeout = options.settings.body_timeout.unwrap_or(DEFAULT_BODY_TIMEOUT);
        for (i, f) in filters.into_iter().enumerate() {
            let settings = f.settings.over(&options.settings);
            let own = settings.body_timeout.unwrap_or(DEFAULT_BODY_TIMEOUT);
            body_timeout = if i == 0 { own } else { body_timeout.min(own) };
            let builder = Plugin::builder().name(f.name.clone()).engine(options.engine).config(f.config);
            let mut builder = settings.apply(builder);
            if let Some(dir) = &options.cache_dir {
                builder = builder.cache_dir(dir.clone());
            }
            let plugin = builder.build(&f.wasm).map_err(|e| format!("filter {} ({}): {e}", f.name, f.source))?;
            tracing::info!(target: "http_wasm::serve", filter = %f.name, source = %f.source, features = %plugin.module_features(), "filter loaded");
            loaded.push(Loaded { name: f.name, path: f.path, plugin });
        }
        Ok(Filters { loaded, body_timeout })
    }

    /// The chain of these filters in front of `next`, for the current
    /// thread: each filter a replica of its plugin made here
    /// ([`Plugin::local`]: its own instances, which run on this thread and
    /// never leave it; the module, counters and reloads stay the plugin's).
    /// Built on each worker's thread, once.
    pub fn chain(&self, next: Next) -> Pipeline {
        let body_timeout = self.body_timeout;
        let next = Rc::new(next);
        let Some((first, rest)) = self.loaded.split_first() else {
            return Pipeline::Plain(next, body_timeout);
        };
        let mut inner = Rest(Rc::new(move |req| {
            let next = next.clone();
            Box::pin(async move { next.call(req, body_timeout).await })
        }));
        for l in rest.iter().rev() {
            inner = inner.behind(l.plugin.local());
        }
        Pipeline::Filtered(LocalHttpWasm::new(inner, first.plugin.local()))
    }
}

impl Pipeline {
    /// Handles one request. An upstream failure becomes its short 502 or
    /// 504 response here, after every filter's `handle_response` saw it,
    /// and its detail is logged (in the request's span, with its id).
    pub async fn call<B>(self, req: Request<B>) -> Response<OutBody>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let result = match self {
            Pipeline::Plain(next, body_timeout) => next.call(req, body_timeout).await,
            Pipeline::Filtered(svc) => {
                let req = req.map(|b| b.map_err(|e| BodyError(e.into())));
                svc.oneshot(req).await.map(|res| res.map(|b| b.boxed_unsync()))
            }
        };
        match result {
            Ok(res) => res,
            Err(e) if e.is_client_side() => {
                tracing::info!(target: "http_wasm::proxy", error = %e, status = e.status().as_u16(), "the request body failed on its way to the upstream (client gone?)");
                e.response()
            }
            Err(e) => {
                tracing::warn!(target: "http_wasm::proxy", error = %e, status = e.status().as_u16(), "upstream request failed");
                e.response()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_names_get_suffixes() {
        let spec = |name: &str| FilterSpec {
            name: name.into(),
            source: String::new(),
            path: None,
            wasm: Vec::new(),
            config: Bytes::new(),
            settings: Settings::default(),
        };
        let mut specs = vec![spec("a"), spec("a"), spec("a-2"), spec("b"), spec("a")];
        unique_names(&mut specs);
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["a", "a-2", "a-2-2", "b", "a-3"]);
    }
}
