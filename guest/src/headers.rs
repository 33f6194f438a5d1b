//! Header and trailer maps.

use crate::buf::{first_item, into_string, read_owned, with_read};
use crate::ffi::{self, Getter};
use crate::trap;
use http_wasm_abi::{HeaderKind, NulList};

/// A handle to one header map of the current request or response: request
/// or response headers, or trailers ([`HeaderKind`]).
///
/// The handle holds no data: every call asks the host. Names are matched
/// case-insensitively by the host and accepted as `&str`, `String`, `&[u8]`
/// or anything else that is `AsRef<[u8]>`, like values.
///
/// Reading trailers needs [`Features::TRAILERS`](crate::Features::TRAILERS)
/// (without it they read as empty and writing them traps). Writing response
/// headers in [`Filter::handle_response`](crate::Filter::handle_response)
/// needs [`Features::BUFFER_RESPONSE`](crate::Features::BUFFER_RESPONSE).
/// Names must be valid HTTP field names and values valid field values (no
/// CR, LF or NUL): the host traps on anything else.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Headers {
    kind: HeaderKind,
}

/// The NUL-terminated list the host wrote, as owned items. Traps when the
/// host broke the list format.
fn items(bytes: &[u8], cl: http_wasm_abi::CountLen) -> NulList<'_> {
    match NulList::with_count(bytes, cl) {
        Ok(list) => list,
        Err(_) => trap("http-wasm host returned a malformed header list"),
    }
}

impl Headers {
    /// The handle for `kind`.
    pub const fn new(kind: HeaderKind) -> Headers {
        Headers { kind }
    }

    /// Which map this handle addresses.
    pub const fn kind(&self) -> HeaderKind {
        self.kind
    }

    /// The first value of `name`, with invalid UTF-8 replaced by U+FFFD.
    #[inline]
    pub fn get(&self, name: impl AsRef<[u8]>) -> Option<String> {
        self.first(name.as_ref()).map(into_string)
    }

    /// The first value of `name`, as bytes.
    #[inline]
    pub fn get_bytes(&self, name: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.first(name.as_ref())
    }

    fn first(&self, name: &[u8]) -> Option<Vec<u8>> {
        match read_owned(Getter::HeaderValues(self.kind, name), true) {
            (value, cl) if cl.count > 0 => Some(value),
            _ => None,
        }
    }

    /// Calls `f` with the first value of `name` (`None` when absent) without
    /// allocating when the values fit the scratch buffer: the cheapest way
    /// to check a header.
    #[inline]
    pub fn with_value<R>(&self, name: impl AsRef<[u8]>, f: impl FnOnce(Option<&[u8]>) -> R) -> R {
        with_read(Getter::HeaderValues(self.kind, name.as_ref()), |bytes, cl| {
            f(if cl.count > 0 { Some(first_item(bytes)) } else { None })
        })
    }

    /// Every value of `name` in arrival order (repeated header lines are
    /// separate values), with invalid UTF-8 replaced by U+FFFD.
    #[inline]
    pub fn get_all(&self, name: impl AsRef<[u8]>) -> Vec<String> {
        self.all(Getter::HeaderValues(self.kind, name.as_ref())).into_iter().map(into_string).collect()
    }

    /// Every value of `name` in arrival order, as bytes.
    #[inline]
    pub fn get_all_bytes(&self, name: impl AsRef<[u8]>) -> Vec<Vec<u8>> {
        self.all(Getter::HeaderValues(self.kind, name.as_ref()))
    }

    fn all(&self, getter: Getter<'_>) -> Vec<Vec<u8>> {
        with_read(getter, |bytes, cl| items(bytes, cl).iter().map(<[u8]>::to_vec).collect())
    }

    /// The distinct names, lowercased and sorted by the host. Request
    /// headers include `host`.
    pub fn names(&self) -> Vec<String> {
        self.all(Getter::HeaderNames(self.kind)).into_iter().map(into_string).collect()
    }

    /// True when `name` has at least one value. One host call, nothing copied.
    #[inline]
    pub fn contains(&self, name: impl AsRef<[u8]>) -> bool {
        Getter::HeaderValues(self.kind, name.as_ref()).call(&mut []).count > 0
    }

    /// Replaces every value of `name` with `value`.
    #[inline]
    pub fn set(&self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        ffi::put_header(self.kind, false, name.as_ref(), value.as_ref());
    }

    /// Appends one value to `name`.
    #[inline]
    pub fn add(&self, name: impl AsRef<[u8]>, value: impl AsRef<[u8]>) {
        ffi::put_header(self.kind, true, name.as_ref(), value.as_ref());
    }

    /// Removes every value of `name`; an absent name is not an error.
    #[inline]
    pub fn remove(&self, name: impl AsRef<[u8]>) {
        ffi::remove_header(self.kind, name.as_ref());
    }
}
