//! The engine-neutral core: every host function, once, over `http` types.
//!
//! An engine backend owns a [`HostState`] in its store and, for each import,
//! lends the core the guest's memory as a [`GuestMemory`] and forwards the
//! raw arguments. Nothing here knows which engine runs the guest.

pub(crate) mod body;
mod error;
pub(crate) mod exchange;
mod log_line;
mod memory;
pub(crate) mod waits;
pub(crate) mod wasi;

pub(crate) use body::{BodyState, BoxBody, Phase};
pub(crate) use error::HostError;
pub(crate) use exchange::Exchange;
pub(crate) use memory::GuestMemory;
#[cfg(feature = "wasmtime")]
pub(crate) use memory::SliceMemory;

use bytes::Bytes;
use http::header::HOST;
use http::{HeaderName, HeaderValue, Method, StatusCode, Version};
use http_wasm_abi::{BodyKind, EofLen, Feature, Features, HeaderKind, LogLevel, list_len, write_list};
use std::sync::Arc;

/// Settings shared by every instance of one plugin.
#[derive(Debug)]
pub(crate) struct Shared {
    /// Names the plugin in logs.
    pub(crate) name: Arc<str>,
    /// The guest's configuration bytes.
    pub(crate) config: Bytes,
    /// The lowest level logged.
    pub(crate) log_level: LogLevel,
    /// Features the host lets guests enable.
    pub(crate) allowed: Features,
    /// The most bytes of one body buffered for the guest.
    pub(crate) body_limit: usize,
    /// How long the request body may go without data.
    pub(crate) body_timeout: std::time::Duration,
    /// The most bytes of header names and values in one header map the guest writes.
    pub(crate) header_limit: usize,
    /// WASI environment variables, `KEY=VALUE`.
    pub(crate) env: Vec<Vec<u8>>,
    /// The longest one guest call (start, `handle_request`, `handle_response`) may run.
    pub(crate) deadline: std::time::Duration,
    /// The most bytes of linear memory one instance may have (read by
    /// wasmtime's store limits; wasmer's caps are set in the module).
    #[cfg_attr(not(feature = "wasmtime"), allow(dead_code))]
    pub(crate) memory_limit: usize,
    /// The most elements one table may grow to (as `memory_limit`).
    #[cfg_attr(not(feature = "wasmtime"), allow(dead_code))]
    pub(crate) table_limit: u64,
}

/// The per-instance state an engine keeps in its store.
#[derive(Debug)]
pub(crate) struct HostState {
    pub(crate) shared: Arc<Shared>,
    /// Features enabled while the module started: they apply to every request.
    pub(crate) module_features: Features,
    /// The request being handled, if any.
    pub(crate) exchange: Option<Box<Exchange>>,
    /// This instance's waits for the client's body (left out of deadlines).
    pub(crate) waits: Arc<waits::BodyWaits>,
    /// A body read in the call in progress may park the thread the guest
    /// runs on to wait for the client (see `host::body`): set by the
    /// backend for each call, true only where it runs the guest off the
    /// runtime's threads.
    pub(crate) may_park: bool,
}

type R<T> = Result<T, HostError>;

/// Writes `value` at `buf` when it fits `limit`; returns its length either way.
fn write_value(mem: &mut dyn GuestMemory, buf: u32, limit: u32, value: &[u8]) -> R<i32> {
    let len = i32::try_from(value.len()).map_err(|_| HostError::TooLong)?;
    if value.len() <= limit as usize {
        mem.write(buf, value)?;
    }
    Ok(len)
}

fn header_name(bytes: &[u8]) -> R<HeaderName> {
    if bytes.is_empty() {
        return Err(HostError::EmptyHeaderName);
    }
    HeaderName::from_bytes(bytes).map_err(|_| HostError::InvalidHeaderName)
}

fn read_name(mem: &dyn GuestMemory, ptr: u32, len: u32) -> R<HeaderName> {
    header_name(&mem.read(ptr, len)?)
}

fn read_value(mem: &dyn GuestMemory, ptr: u32, len: u32) -> R<HeaderValue> {
    HeaderValue::from_bytes(&mem.read(ptr, len)?).map_err(|_| HostError::InvalidHeaderValue)
}

/// Writes a NUL-terminated list when it fits `limit`; `items` is called
/// twice (measure, then write) so no iterator needs to be `Clone`.
fn encode_into<'a, I>(mem: &mut dyn GuestMemory, items: impl Fn() -> I, buf: u32, limit: u32) -> R<i64>
where
    I: Iterator<Item = &'a [u8]>,
{
    let total = list_len(items());
    if total.len <= limit {
        mem.write_with(buf, total.len, &mut |dst| {
            write_list(items(), dst);
        })?;
    }
    Ok(total.encode())
}

fn map_bytes(map: &http::HeaderMap) -> usize {
    map.iter().map(|(k, v)| k.as_str().len() + v.len()).sum()
}

impl HostState {
    pub(crate) fn new(shared: Arc<Shared>) -> HostState {
        HostState { shared, module_features: Features::NONE, exchange: None, waits: Arc::default(), may_park: false }
    }

    /// Puts `exchange` in place for a guest call that may park its thread
    /// for a body read if `may_park` (the backend's decision).
    pub(crate) fn begin_call(&mut self, exchange: Box<Exchange>, may_park: bool) {
        self.exchange = Some(exchange);
        self.may_park = may_park;
    }

    /// Takes the exchange back after the call [`HostState::begin_call`] began.
    pub(crate) fn end_call(&mut self) -> Box<Exchange> {
        self.may_park = false;
        // Host functions only borrow the exchange: it is there until now.
        self.exchange.take().expect("a guest call's exchange stays in its store until the call ends")
    }

    fn ex(&mut self, func: &'static str) -> R<&mut Exchange> {
        self.exchange.as_deref_mut().ok_or(HostError::NoRequest(func))
    }

    // ----- features, config, logging -----

    pub(crate) fn enable_features(&mut self, raw: i32) -> i32 {
        let (known, _unknown) = Features::split(raw as u32);
        let granted = known.intersection(self.shared.allowed);
        let now = match self.exchange.as_deref_mut() {
            Some(ex) => {
                ex.features |= ex.still_effective(granted);
                ex.features
            }
            None => {
                self.module_features |= granted;
                self.module_features
            }
        };
        now.bits() as i32
    }

    pub(crate) fn get_config(&mut self, mem: &mut dyn GuestMemory, buf: u32, limit: u32) -> R<i32> {
        write_value(mem, buf, limit, &self.shared.config)
    }

    pub(crate) fn log_enabled(&self, level: i32) -> i32 {
        match LogLevel::try_from(level) {
            Ok(l) => {
                (l != LogLevel::None && self.shared.log_level != LogLevel::None && l >= self.shared.log_level) as i32
            }
            Err(_) => 0,
        }
    }

    /// Never fails: a bad level, pointer or text is ignored (spec §4).
    pub(crate) fn log(&mut self, mem: &mut dyn GuestMemory, level: i32, ptr: u32, len: u32) {
        if self.log_enabled(level) == 0 {
            return;
        }
        // Only what reaches the log is copied out of the guest.
        if mem.check(ptr, len).is_err() {
            return;
        }
        let Ok(bytes) = mem.read(ptr, len.min(log_line::LOG_LINE_LIMIT as u32)) else { return };
        let msg = log_line::log_line(&bytes, len as usize);
        let plugin = &*self.shared.name;
        match LogLevel::try_from(level) {
            Ok(LogLevel::Debug) => tracing::debug!(target: "http_wasm::guest", plugin, "{msg}"),
            Ok(LogLevel::Info) => tracing::info!(target: "http_wasm::guest", plugin, "{msg}"),
            Ok(LogLevel::Warn) => tracing::warn!(target: "http_wasm::guest", plugin, "{msg}"),
            Ok(LogLevel::Error) => tracing::error!(target: "http_wasm::guest", plugin, "{msg}"),
            _ => {}
        }
    }

    // ----- headers -----

    pub(crate) fn get_header_names(&mut self, mem: &mut dyn GuestMemory, kind: i32, buf: u32, limit: u32) -> R<i64> {
        let kind = HeaderKind::try_from(kind)?;
        let limit_b = self.shared.body_limit;
        let ex = self.exchange.as_deref_mut().ok_or(HostError::NoRequest("get_header_names"))?;
        ex.receive_trailers(kind, limit_b, self.may_park.then_some(&*self.waits))?;
        let Some(map) = ex.headers(kind) else { return Ok(0) };
        let host = (kind == HeaderKind::Request).then(|| ex.synthetic_host()).flatten();
        let mut names: Vec<&[u8]> = map.keys().map(|k| k.as_str().as_bytes()).collect();
        if host.is_some() {
            names.push(b"host");
        }
        names.sort_unstable();
        encode_into(mem, || names.iter().copied(), buf, limit)
    }

    pub(crate) fn get_header_values(
        &mut self,
        mem: &mut dyn GuestMemory,
        kind: i32,
        name: u32,
        name_len: u32,
        buf: u32,
        limit: u32,
    ) -> R<i64> {
        let kind = HeaderKind::try_from(kind)?;
        let name = read_name(mem, name, name_len)?;
        let limit_b = self.shared.body_limit;
        let ex = self.exchange.as_deref_mut().ok_or(HostError::NoRequest("get_header_values"))?;
        ex.receive_trailers(kind, limit_b, self.may_park.then_some(&*self.waits))?;
        if kind == HeaderKind::Request
            && name == HOST
            && let Some(host) = ex.synthetic_host()
        {
            return encode_into(mem, || std::iter::once(host.as_bytes()), buf, limit);
        }
        let Some(map) = ex.headers(kind) else { return Ok(0) };
        let values = map.get_all(&name);
        if values.iter().next().is_none() {
            return Ok(0);
        }
        encode_into(mem, || values.iter().map(HeaderValue::as_bytes), buf, limit)
    }

    fn write_header(
        &mut self,
        mem: &mut dyn GuestMemory,
        kind: i32,
        name: u32,
        name_len: u32,
        value: Option<(u32, u32, bool)>,
        func: &'static str,
    ) -> R<()> {
        let kind = HeaderKind::try_from(kind)?;
        let name = read_name(mem, name, name_len)?;
        let value = match value {
            Some((ptr, len, append)) => Some((read_value(mem, ptr, len)?, append)),
            None => None,
        };
        let limit = self.shared.header_limit;
        let ex = self.ex(func)?;
        let framing = exchange::is_framing(&name);
        let map = ex.headers_mut(kind)?;
        match value {
            None => {
                map.remove(&name);
            }
            Some((value, append)) => {
                if map_bytes(map) + name.as_str().len() + value.len() > limit {
                    return Err(HostError::HeadersTooLarge { limit });
                }
                if append {
                    map.append(name, value);
                } else {
                    map.insert(name, value);
                }
            }
        }
        // Only a write that took place: the host replaces framing headers
        // the guest wrote when the message leaves.
        if framing {
            ex.wrote_framing(kind);
        }
        Ok(())
    }

    pub(crate) fn set_header_value(
        &mut self,
        mem: &mut dyn GuestMemory,
        kind: i32,
        name: u32,
        name_len: u32,
        value: u32,
        value_len: u32,
    ) -> R<()> {
        self.write_header(mem, kind, name, name_len, Some((value, value_len, false)), "set_header_value")
    }

    pub(crate) fn add_header_value(
        &mut self,
        mem: &mut dyn GuestMemory,
        kind: i32,
        name: u32,
        name_len: u32,
        value: u32,
        value_len: u32,
    ) -> R<()> {
        self.write_header(mem, kind, name, name_len, Some((value, value_len, true)), "add_header_value")
    }

    pub(crate) fn remove_header(&mut self, mem: &mut dyn GuestMemory, kind: i32, name: u32, name_len: u32) -> R<()> {
        self.write_header(mem, kind, name, name_len, None, "remove_header")
    }

    // ----- bodies -----

    pub(crate) fn read_body(&mut self, mem: &mut dyn GuestMemory, kind: i32, buf: u32, limit: u32) -> R<i64> {
        let kind = BodyKind::try_from(kind)?;
        if limit == 0 {
            return Err(HostError::ZeroLimit);
        }
        let body_limit = self.shared.body_limit;
        let ex = self.exchange.as_deref_mut().ok_or(HostError::NoRequest("read_body"))?;
        let (body, keep) = match (kind, ex.phase) {
            (BodyKind::Request, Phase::Request) => {
                let keep = ex.has(Feature::BufferRequest);
                (&mut ex.req_body, keep)
            }
            // After next the request body belongs to the next handler.
            (BodyKind::Request, Phase::Response) => return Ok(EofLen { eof: true, len: 0 }.encode()),
            // Before next there is no response body to read yet.
            (BodyKind::Response, Phase::Request) => return Ok(EofLen { eof: true, len: 0 }.encode()),
            (BodyKind::Response, Phase::Response) => {
                if !ex.has(Feature::BufferResponse) {
                    return Err(HostError::NotAllowed("reading the response body needs buffer_response"));
                }
                (&mut ex.resp_body, true)
            }
        };
        // Guard the range before consuming anything from the body.
        mem.check(buf, limit)?;
        let waits = self.may_park.then_some(&*self.waits);
        let (eof, len) = body.read(limit, keep, body_limit, waits, |at, bytes| mem.write(buf + at, bytes))?;
        Ok(EofLen { eof, len }.encode())
    }

    pub(crate) fn write_body(&mut self, mem: &mut dyn GuestMemory, kind: i32, ptr: u32, len: u32) -> R<()> {
        let kind = BodyKind::try_from(kind)?;
        let bytes = mem.read(ptr, len)?;
        let limit = self.shared.body_limit;
        let ex = self.ex("write_body")?;
        let phase = ex.phase;
        match kind {
            BodyKind::Request => {
                ex.check_request_write()?;
                ex.req_body.write(phase, &bytes, limit)
            }
            BodyKind::Response => {
                ex.check_response_write()?;
                ex.resp_body.write(phase, &bytes, limit)
            }
        }
    }

    // ----- request line -----

    pub(crate) fn get_method(&mut self, mem: &mut dyn GuestMemory, buf: u32, limit: u32) -> R<i32> {
        let ex = self.ex("get_method")?;
        write_value(mem, buf, limit, ex.request.method.as_str().as_bytes())
    }

    pub(crate) fn set_method(&mut self, mem: &mut dyn GuestMemory, ptr: u32, len: u32) -> R<()> {
        let bytes = mem.read(ptr, len)?;
        if bytes.is_empty() {
            return Err(HostError::InvalidMethod);
        }
        let method = Method::from_bytes(&bytes).map_err(|_| HostError::InvalidMethod)?;
        let ex = self.ex("set_method")?;
        ex.check_request_write()?;
        ex.request.method = method;
        Ok(())
    }

    pub(crate) fn get_uri(&mut self, mem: &mut dyn GuestMemory, buf: u32, limit: u32) -> R<i32> {
        let ex = self.ex("get_uri")?;
        let uri = ex.request.uri.path_and_query().map_or("/", |pq| pq.as_str());
        write_value(mem, buf, limit, if uri.is_empty() { b"/" } else { uri.as_bytes() })
    }

    pub(crate) fn set_uri(&mut self, mem: &mut dyn GuestMemory, ptr: u32, len: u32) -> R<()> {
        let bytes = mem.read(ptr, len)?;
        let pq = if bytes.is_empty() {
            http::uri::PathAndQuery::from_static("/")
        } else {
            if bytes[0] != b'/' && &bytes[..] != b"*" {
                return Err(HostError::InvalidUri);
            }
            http::uri::PathAndQuery::from_maybe_shared(Bytes::copy_from_slice(&bytes))
                .map_err(|_| HostError::InvalidUri)?
        };
        let ex = self.ex("set_uri")?;
        ex.check_request_write()?;
        let mut parts = std::mem::take(&mut ex.request.uri).into_parts();
        parts.path_and_query = Some(pq);
        ex.request.uri = http::Uri::from_parts(parts).map_err(|_| HostError::InvalidUri)?;
        Ok(())
    }

    pub(crate) fn get_protocol_version(&mut self, mem: &mut dyn GuestMemory, buf: u32, limit: u32) -> R<i32> {
        let ex = self.ex("get_protocol_version")?;
        let v: &[u8] = match ex.request.version {
            Version::HTTP_09 => b"HTTP/0.9",
            Version::HTTP_10 => b"HTTP/1.0",
            Version::HTTP_11 => b"HTTP/1.1",
            Version::HTTP_2 => b"HTTP/2.0",
            Version::HTTP_3 => b"HTTP/3.0",
            _ => b"HTTP/1.1",
        };
        write_value(mem, buf, limit, v)
    }

    pub(crate) fn get_source_addr(&mut self, mem: &mut dyn GuestMemory, buf: u32, limit: u32) -> R<i32> {
        let ex = self.ex("get_source_addr")?;
        let addr = ex.source_addr.map(|a| a.to_string()).unwrap_or_default();
        write_value(mem, buf, limit, addr.as_bytes())
    }

    // ----- status -----

    pub(crate) fn get_status_code(&mut self) -> R<i32> {
        Ok(self.ex("get_status_code")?.status.as_u16() as i32)
    }

    pub(crate) fn set_status_code(&mut self, code: i32) -> R<()> {
        let status = u16::try_from(code)
            .ok()
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or(HostError::InvalidStatus(code))?;
        let ex = self.ex("set_status_code")?;
        ex.check_response_write()?;
        ex.status = status;
        if ex.phase == Phase::Request {
            ex.status_set = true;
        }
        Ok(())
    }
}
