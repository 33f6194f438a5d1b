//! The crate's error type.

use std::fmt;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An error from loading or running an http-wasm guest.
///
/// Opaque by design (like `hyper::Error`): ask what kind it is with the
/// `is_*` predicates. The engines' own error types never appear here; their
/// text is kept in the message for logs, never sent to a client.
pub struct Error {
    kind: Kind,
    message: String,
    source: Option<BoxError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// The bytes are not a valid module for the engine.
    Compile,
    /// The module's imports or exports do not match the ABI.
    Abi,
    /// Instantiation or the start function failed.
    Start,
    /// The guest trapped or made an invalid host call while handling a request.
    Guest,
    /// The guest ran past its deadline.
    Timeout,
    /// A body the host buffers for the guest exceeded the limit.
    BodyTooLarge,
    /// The request body failed while the host read it.
    Body,
    /// No request body data arrived within the body timeout.
    BodyTimeout,
    /// The next handler's response body failed, or exceeded the buffer
    /// limit, while the host buffered it for the guest.
    ResponseBody,
    /// No instance became free within the pool's wait limit (never a guest
    /// failure: a busy pool is a 503 whatever the failure policy).
    PoolTimeout,
    /// A configuration value is invalid.
    Config,
}

impl Error {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into(), source: None }
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Error {
        self.source = Some(source.into());
        self
    }

    /// The module could not be compiled (not wasm, or invalid wasm).
    pub fn is_compile(&self) -> bool {
        self.kind == Kind::Compile
    }

    /// The module's imports or exports do not match the http-wasm ABI.
    pub fn is_abi(&self) -> bool {
        self.kind == Kind::Abi
    }

    /// Instantiating the module or running its start function failed.
    pub fn is_start(&self) -> bool {
        self.kind == Kind::Start
    }

    /// Any error raised while loading a module (compile, ABI, start, config).
    pub fn is_load(&self) -> bool {
        matches!(self.kind, Kind::Compile | Kind::Abi | Kind::Start | Kind::Config)
    }

    /// The guest trapped, or called a host function in a way the ABI forbids,
    /// while handling a request.
    pub fn is_guest(&self) -> bool {
        self.kind == Kind::Guest
    }

    /// The guest ran past its CPU deadline.
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::Timeout
    }

    /// A body buffered for the guest exceeded the configured limit.
    pub fn is_body_too_large(&self) -> bool {
        self.kind == Kind::BodyTooLarge
    }

    /// Reading the request body from the client failed.
    pub fn is_body(&self) -> bool {
        self.kind == Kind::Body
    }

    /// The next handler's response body failed, or exceeded
    /// [`body_limit`](crate::PluginBuilder::body_limit), while the host
    /// buffered it for a guest with `buffer_response`. Not a guest failure.
    pub fn is_response_body(&self) -> bool {
        self.kind == Kind::ResponseBody
    }

    /// The client's request body stopped: no data arrived within
    /// [`PluginBuilder::body_timeout`](crate::PluginBuilder::body_timeout).
    pub fn is_body_timeout(&self) -> bool {
        self.kind == Kind::BodyTimeout
    }

    /// No guest instance became free within the pool's wait limit.
    pub fn is_pool_timeout(&self) -> bool {
        self.kind == Kind::PoolTimeout
    }

    /// A builder value is invalid.
    pub fn is_config(&self) -> bool {
        self.kind == Kind::Config
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", &format_args!("{s}"));
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(s) = &self.source {
            write!(f, ": {s}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}
