//! Request and response bodies.

use crate::ffi;
use crate::trap;
use http_wasm_abi::{BodyKind, EofLen};
use std::io;

/// How much [`Body::read_all`] asks for in its first read; it doubles the
/// buffer from there.
const FIRST_READ: usize = 4096;

/// A handle to the request or the response body ([`BodyKind`]).
///
/// Reading is stateful on the host: each read returns the next bytes, so
/// [`read_all`](Body::read_all) and [`reader`](Body::reader) continue where
/// the last read stopped. Reading the request body without
/// [`Features::BUFFER_REQUEST`](crate::Features::BUFFER_REQUEST) consumes
/// it (the next handler receives what the filter did not read); reading the
/// response body in [`Filter::handle_response`](crate::Filter::handle_response)
/// needs [`Features::BUFFER_RESPONSE`](crate::Features::BUFFER_RESPONSE).
///
/// Writing follows the ABI: the first write of a body in a phase
/// (`handle_request` or `handle_response`) replaces it, even an empty one,
/// and later writes append. The host recomputes the framing
/// (`content-length`) of a body the filter replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Body {
    kind: BodyKind,
}

/// One `read_body` call into a non-empty `buf`; traps when the host broke
/// the ABI.
fn read_chunk(kind: BodyKind, buf: &mut [u8]) -> EofLen {
    match ffi::read_body(kind, buf) {
        Some(r) => r,
        None => trap("http-wasm host returned an invalid read_body result"),
    }
}

impl Body {
    /// The handle for `kind`.
    pub const fn new(kind: BodyKind) -> Body {
        Body { kind }
    }

    /// Which body this handle addresses.
    pub const fn kind(&self) -> BodyKind {
        self.kind
    }

    /// Reads the rest of the body, however long: there is no size cap and
    /// no truncation. The host writes straight into the returned buffer.
    pub fn read_all(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                let grow = buf.len().max(FIRST_READ);
                buf.resize(buf.len() + grow, 0);
            }
            let Some(free) = buf.get_mut(filled..) else { trap("http-wasm sdk: body buffer overrun") };
            let r = read_chunk(self.kind, free);
            filled += r.len as usize;
            if r.eof {
                buf.truncate(filled);
                return buf;
            }
        }
    }

    /// A streaming reader over the rest of the body: each
    /// [`read`](io::Read::read) is one host call straight into the caller's
    /// buffer, so memory stays bounded by that buffer.
    pub fn reader(&self) -> BodyReader {
        BodyReader { kind: self.kind, eof: false }
    }

    /// Writes `bytes`: the first write of this body in the current phase
    /// replaces it, later ones append. One host call.
    #[inline]
    pub fn write(&self, bytes: impl AsRef<[u8]>) {
        ffi::write_body(self.kind, bytes.as_ref());
    }

    /// A [`std::io::Write`] over [`write`](Body::write), for `write_all`,
    /// `write!` and [`io::copy`].
    pub fn writer(&self) -> BodyWriter {
        BodyWriter { kind: self.kind }
    }
}

/// A streaming [`io::Read`] over a body, from [`Body::reader`].
///
/// `read` returns `Ok(0)` only at the end of the body (or for an empty
/// buffer); it never fails.
#[derive(Debug)]
pub struct BodyReader {
    kind: BodyKind,
    eof: bool,
}

impl BodyReader {
    /// True once the host reported the end of the body.
    pub fn is_eof(&self) -> bool {
        self.eof
    }
}

impl io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while !self.eof {
            let r = read_chunk(self.kind, buf);
            self.eof = r.eof;
            if r.len > 0 {
                return Ok(r.len as usize);
            }
        }
        Ok(0)
    }
}

/// A [`io::Write`] over a body, from [`Body::writer`]; each `write` is one
/// host call and never fails.
#[derive(Debug)]
pub struct BodyWriter {
    kind: BodyKind,
}

impl io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        ffi::write_body(self.kind, buf);
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        ffi::write_body(self.kind, buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
