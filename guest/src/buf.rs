//! The scratch buffer and the ABI's buffer-limit protocol.
//!
//! Every length-returning reader goes through here: the host is first
//! asked to write into the module's scratch buffer of [`SCRATCH_LEN`]
//! bytes. When the value fits, that single call is all (and no allocation
//! is made for it). When it does not, the host wrote nothing and returned
//! the full length, so the SDK allocates exactly that length and asks once
//! more, without any cap: values are never truncated.

use crate::ffi::Getter;
use core::cell::RefCell;
use http_wasm_abi::CountLen;

/// The size in bytes of the SDK's scratch buffer: a value (or a header list,
/// NUL terminators included) of at most this length is read with one host
/// call and without allocating for the call; a longer one costs a second
/// call into a buffer of its exact length.
pub const SCRATCH_LEN: usize = 2048;

std::thread_local! {
    // wasm guests are single-threaded: this is a plain static there.
    static SCRATCH: RefCell<[u8; SCRATCH_LEN]> = const { RefCell::new([0; SCRATCH_LEN]) };
}

/// Reads the value into a heap buffer of exactly its length. `len` is the
/// length the host last reported (0 to probe first).
pub(crate) fn read_heap(getter: Getter<'_>, mut len: u32) -> (Vec<u8>, CountLen) {
    loop {
        let mut buf = vec![0u8; len as usize];
        let cl = getter.call(&mut buf);
        if cl.len as usize <= buf.len() {
            buf.truncate(cl.len as usize);
            return (buf, cl);
        }
        // The value grew between the calls (it cannot on a conforming host
        // within one guest call, but a retry costs nothing to write).
        len = cl.len;
    }
}

/// Reads through `getter` and hands the bytes and their [`CountLen`] to `f`.
/// Uses the scratch buffer when it is free and the value fits.
///
/// `f` is called from one place whichever buffer holds the bytes, so the
/// filter's code inlined into it is in the module once.
pub(crate) fn with_read<R, F>(getter: Getter<'_>, f: F) -> R
where
    F: FnOnce(&[u8], CountLen) -> R,
{
    let read = SCRATCH.try_with(move |cell| {
        // Busy: `f` of an outer read is running and reads again.
        let mut scratch = cell.try_borrow_mut().ok();
        let (mut hint, mut from_scratch) = (0, None);
        if let Some(scratch) = scratch.as_deref_mut() {
            let cl = getter.call(&mut scratch[..]);
            match scratch.get(..cl.len as usize) {
                Some(bytes) => from_scratch = Some((bytes, cl)),
                None => hint = cl.len,
            }
        }
        let heap;
        let (bytes, cl) = match from_scratch {
            Some(read) => read,
            None => {
                heap = read_heap(getter, hint);
                (&heap.0[..], heap.1)
            }
        };
        f(bytes, cl)
    });
    match read {
        Ok(r) => r,
        Err(_) => tls_gone(),
    }
}

/// Reads through `getter` into an owned buffer of the value's length. With
/// `first_only`, keeps only the first item of a NUL-terminated list.
pub(crate) fn read_owned(getter: Getter<'_>, first_only: bool) -> (Vec<u8>, CountLen) {
    let scratch = SCRATCH.try_with(|cell| {
        let Ok(mut scratch) = cell.try_borrow_mut() else { return Err(0) };
        let cl = getter.call(&mut scratch[..]);
        match scratch.get(..cl.len as usize) {
            Some(bytes) => Ok((if first_only { first_item(bytes) } else { bytes }.to_vec(), cl)),
            None => Err(cl.len),
        }
    });
    match scratch {
        Ok(Ok(read)) => read,
        Ok(Err(hint)) => {
            let (mut buf, cl) = read_heap(getter, hint);
            if first_only {
                let len = first_item(&buf).len();
                buf.truncate(len);
            }
            (buf, cl)
        }
        Err(_) => tls_gone(),
    }
}

/// Only reachable natively, while the thread is being torn down.
fn tls_gone() -> ! {
    crate::trap("http-wasm sdk used after its thread ended")
}

/// The first item of a NUL-terminated list (all of `bytes` when the host
/// left out the terminator).
pub(crate) fn first_item(bytes: &[u8]) -> &[u8] {
    match bytes.iter().position(|b| *b == 0) {
        Some(end) => bytes.get(..end).unwrap_or(bytes),
        None => bytes,
    }
}

/// Bytes to a `String`, replacing invalid UTF-8 with U+FFFD (copies only
/// when the bytes are not valid UTF-8).
pub(crate) fn into_string(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_item_stops_at_nul() {
        assert_eq!(first_item(b"a\0b\0"), b"a");
        assert_eq!(first_item(b"\0b\0"), b"");
        assert_eq!(first_item(b""), b"");
        assert_eq!(first_item(b"abc"), b"abc");
    }

    #[test]
    fn lossy_strings() {
        assert_eq!(into_string(b"ok".to_vec()), "ok");
        assert_eq!(into_string(vec![b'a', 0xff]), "a\u{fffd}");
    }
}
