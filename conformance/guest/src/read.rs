//! Reading values, lists and bodies from the host, checking the ABI's
//! buffer rules on the way.

use crate::cases::Body;
use crate::ffi::{self, Reader};
use crate::verdict::{Res, fail, show};
use http_wasm_abi::{BodyKind, CountLen, HeaderKind, NulList};

/// A single value, read with a small buffer first and retried at its full
/// length when it did not fit.
pub fn value(reader: Reader) -> Res<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let len = reader.call(&mut buf, 256);
    if len < 0 {
        return Err(fail(format!("{}: negative length {len}", reader.name())));
    }
    let len = len as usize;
    if len > buf.len() {
        buf = vec![0u8; len];
        let again = reader.call(&mut buf, len);
        if again as usize != len {
            return Err(fail(format!("{}: length {len}, then {again} on retry", reader.name())));
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Which list to read.
#[derive(Clone, Copy, Debug)]
pub enum List<'a> {
    /// `get_header_names(kind)`.
    Names(HeaderKind),
    /// `get_header_values(kind, name)`.
    Values(HeaderKind, &'a [u8]),
}

impl List<'_> {
    /// Calls the host with the first `limit` bytes of `buf`.
    pub fn call(self, buf: &mut [u8], limit: usize) -> CountLen {
        match self {
            List::Names(kind) => ffi::get_header_names(kind as i32, buf, limit),
            List::Values(kind, name) => ffi::get_header_values(kind, name, buf, limit),
        }
    }

    /// How the call reads in a detail.
    pub fn describe(self) -> String {
        match self {
            List::Names(kind) => format!("get_header_names({kind})"),
            List::Values(kind, name) => format!("get_header_values({kind}, {})", show(name)),
        }
    }
}

/// The items of a list, checked: NUL-terminated, `count` items, `len`
/// bytes, nothing written past `len`.
pub fn list(which: List<'_>) -> Res<Vec<Vec<u8>>> {
    let mut buf = vec![0xAAu8; 512];
    let mut cl = which.call(&mut buf, 512);
    if cl.len as usize > 512 {
        buf = vec![0xAAu8; cl.len as usize + 16];
        let again = which.call(&mut buf, cl.len as usize);
        if again != cl {
            return Err(fail(format!("{}: {cl:?}, then {again:?} on retry", which.describe())));
        }
        cl = again;
    }
    let len = cl.len as usize;
    if cl.count == 0 && len != 0 || cl.count != 0 && len == 0 {
        return Err(fail(format!("{}: inconsistent count_len {cl:?}", which.describe())));
    }
    if buf[len..].iter().take(16).any(|b| *b != 0xAA) {
        return Err(fail(format!("{}: bytes written past len {len}", which.describe())));
    }
    let items = NulList::with_count(&buf[..len], cl)
        .map_err(|e| fail(format!("{}: {e} in {}", which.describe(), show(&buf[..len]))))?;
    Ok(items.iter().map(<[u8]>::to_vec).collect())
}

/// The items of a list as strings for details.
pub fn show_list(items: &[Vec<u8>]) -> String {
    let parts: Vec<String> = items.iter().map(|i| show(i)).collect();
    format!("[{}]", parts.join(", "))
}

/// Fails unless the list equals `expected`.
pub fn expect_list(which: List<'_>, expected: &[&str]) -> Res<()> {
    let got = list(which)?;
    if got.iter().map(Vec::as_slice).eq(expected.iter().map(|e| e.as_bytes())) {
        Ok(())
    } else {
        let want: Vec<Vec<u8>> = expected.iter().map(|e| e.as_bytes().to_vec()).collect();
        Err(fail(format!("{}: expected {}, got {}", which.describe(), show_list(&want), show_list(&got))))
    }
}

/// Reads a body to its end with reads of at most `chunk` bytes.
pub fn body(kind: BodyKind, chunk: usize) -> Res<Vec<u8>> {
    read_up_to(kind, chunk, usize::MAX).map(|(bytes, _)| bytes)
}

/// Reads at most `max` bytes of a body with reads of at most `chunk` bytes;
/// returns them and whether EOF was reported.
pub fn read_up_to(kind: BodyKind, chunk: usize, max: usize) -> Res<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; chunk];
    let mut empty_reads = 0;
    while out.len() < max {
        let limit = chunk.min(max - out.len());
        let r = ffi::read_body_decoded(kind, &mut buf[..limit])
            .map_err(|raw| fail(format!("read_body({kind}): eof flag neither 0 nor 1 in {raw:#x}")))?;
        let n = r.len as usize;
        if n > limit {
            return Err(fail(format!("read_body({kind}): returned {n} bytes for a limit of {limit}")));
        }
        out.extend_from_slice(&buf[..n]);
        if r.eof {
            return Ok((out, true));
        }
        if n == 0 {
            empty_reads += 1;
            if empty_reads > 1000 {
                return Err(fail(format!("read_body({kind}): 1000 empty reads without EOF after {} bytes", out.len())));
            }
        }
    }
    Ok((out, false))
}

/// Fails unless `got` is `expected`, naming the first differing byte.
pub fn expect_body(what: &str, got: &[u8], expected: Body) -> Res<()> {
    match expected.mismatch(got) {
        None => Ok(()),
        Some(at) => Err(fail(format!(
            "{what}: expected {} bytes, got {}; first difference at byte {at}",
            expected.len(),
            got.len()
        ))),
    }
}

/// The request header's first value as text (empty when absent).
pub fn request_header(name: &str) -> Res<String> {
    let items = list(List::Values(HeaderKind::Request, name.as_bytes()))?;
    Ok(items.first().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default())
}
