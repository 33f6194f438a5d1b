//! The NUL-terminated list format of `get_header_names` and `get_header_values`.
//!
//! Items are written one after the other, each followed by a NUL byte:
//! `a\0b\0`. An empty item is a lone `\0`. No items is zero bytes.

use crate::CountLen;
use core::fmt;

/// The [`CountLen`] of `items` encoded as a NUL-terminated list.
///
/// # Panics
///
/// Never: lengths saturate at `u32::MAX`, which no guest buffer can hold, so
/// such a list is reported as too long and not written.
pub fn list_len<'a, I>(items: I) -> CountLen
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut count: u32 = 0;
    let mut len: u32 = 0;
    for item in items {
        count = count.saturating_add(1);
        let item_len = u32::try_from(item.len()).unwrap_or(u32::MAX);
        len = len.saturating_add(item_len).saturating_add(1);
    }
    CountLen { count, len }
}

/// Encodes `items` into `buf` as a NUL-terminated list, if it fits.
///
/// Follows the ABI's buffer rule: when the encoded list is longer than
/// `buf`, **nothing is written** and the full [`CountLen`] is still returned,
/// so the caller can retry with a buffer of `len` bytes. Items must not
/// contain NUL bytes (HTTP header names and values cannot).
pub fn encode_list<'a, I>(items: I, buf: &mut [u8]) -> CountLen
where
    I: IntoIterator<Item = &'a [u8]>,
    I::IntoIter: Clone,
{
    let iter = items.into_iter();
    let total = list_len(iter.clone());
    if total.len as usize <= buf.len() {
        write_list(iter, buf);
    }
    total
}

/// Writes `items` as a NUL-terminated list at the start of `buf`, as far as
/// it fits, and returns the bytes written. Callers that measured the list
/// with [`list_len`] first use it to write without a second measurement;
/// [`encode_list`] is the all-or-nothing form.
pub fn write_list<'a, I>(items: I, buf: &mut [u8]) -> usize
where
    I: IntoIterator<Item = &'a [u8]>,
{
    let mut at = 0;
    for item in items {
        let end = at + item.len();
        if end >= buf.len() {
            break;
        }
        buf[at..end].copy_from_slice(item);
        buf[end] = 0;
        at = end + 1;
    }
    at
}

/// Why bytes are not a well-formed NUL-terminated list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError {
    /// The bytes do not end with a NUL.
    Unterminated,
    /// The number of items differs from the count the host reported.
    CountMismatch {
        /// The count the host reported.
        expected: u32,
        /// The items found.
        found: u32,
    },
}

impl fmt::Display for ListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::Unterminated => f.write_str("list does not end with a NUL"),
            ListError::CountMismatch { expected, found } => {
                write!(f, "list holds {found} items, {expected} reported")
            }
        }
    }
}

impl core::error::Error for ListError {}

/// A borrowed, validated NUL-terminated list: iterating it copies nothing.
///
/// ```
/// use http_wasm_abi::NulList;
/// let list = NulList::new(b"a\0\0bc\0").unwrap();
/// let items: Vec<&[u8]> = list.iter().collect();
/// assert_eq!(items, [&b"a"[..], b"", b"bc"]);
/// assert_eq!(list.count(), 3);
/// ```
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct NulList<'a> {
    bytes: &'a [u8],
}

impl<'a> NulList<'a> {
    /// Validates `bytes` (empty, or ending with NUL).
    pub fn new(bytes: &'a [u8]) -> Result<NulList<'a>, ListError> {
        match bytes.last() {
            None | Some(0) => Ok(NulList { bytes }),
            Some(_) => Err(ListError::Unterminated),
        }
    }

    /// Validates `bytes` against the [`CountLen`] the host returned with them.
    pub fn with_count(bytes: &'a [u8], count_len: CountLen) -> Result<NulList<'a>, ListError> {
        let list = NulList::new(bytes)?;
        let found = list.count();
        if found != count_len.count {
            return Err(ListError::CountMismatch { expected: count_len.count, found });
        }
        Ok(list)
    }

    /// The number of items.
    pub fn count(&self) -> u32 {
        self.bytes.iter().filter(|b| **b == 0).count() as u32
    }

    /// The encoded bytes.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// The items, without their terminators.
    pub fn iter(&self) -> NulListIter<'a> {
        NulListIter { rest: self.bytes }
    }
}

impl fmt::Debug for NulList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter().map(|i| i.escape_ascii())).finish()
    }
}

impl<'a> IntoIterator for NulList<'a> {
    type Item = &'a [u8];
    type IntoIter = NulListIter<'a>;
    fn into_iter(self) -> NulListIter<'a> {
        self.iter()
    }
}

/// Iterator over the items of a [`NulList`].
#[derive(Clone, Debug)]
pub struct NulListIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for NulListIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let end = self.rest.iter().position(|b| *b == 0)?;
        let item = &self.rest[..end];
        self.rest = &self.rest[end + 1..];
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erratum_3_worked_examples() {
        let mut buf = [0u8; 10];
        assert_eq!(encode_list([&b"Date"[..], b"Etag"], &mut buf).encode(), 8_589_934_602);
        assert_eq!(&buf, b"Date\0Etag\0");
        let mut buf = [0u8; 8];
        assert_eq!(encode_list([&b"a=b"[..], b"c=d"], &mut buf).encode(), 8_589_934_600);
        assert_eq!(&buf, b"a=b\0c=d\0");
    }

    #[test]
    fn one_byte_short_writes_nothing() {
        let mut buf = [0xAAu8; 9];
        let cl = encode_list([&b"Date"[..], b"Etag"], &mut buf);
        assert_eq!(cl, CountLen { count: 2, len: 10 });
        assert_eq!(buf, [0xAA; 9]);
        assert_eq!(encode_list([&b"x"[..]], &mut []), CountLen { count: 1, len: 2 });
    }

    #[test]
    fn empty_value_is_a_lone_nul() {
        let mut buf = [9u8; 1];
        assert_eq!(encode_list([&b""[..]], &mut buf), CountLen { count: 1, len: 1 });
        assert_eq!(buf, [0]);
        assert_eq!(encode_list(core::iter::empty::<&[u8]>(), &mut []), CountLen::default());
    }

    #[test]
    fn parse_rejects_bad_lists() {
        assert_eq!(NulList::new(b"ab"), Err(ListError::Unterminated));
        assert_eq!(
            NulList::with_count(b"a\0", CountLen { count: 2, len: 2 }),
            Err(ListError::CountMismatch { expected: 2, found: 1 })
        );
        assert_eq!(NulList::new(b"").unwrap().iter().count(), 0);
    }
}
