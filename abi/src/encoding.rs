//! The packed `i64` results: `ctx_next`, `count_len` and `eof_len`.
//!
//! Each packs a 32-bit value in the high half and another in the low half:
//! `high << 32 | low`, both taken as unsigned.

use crate::InvalidValue;

const fn pack(high: u32, low: u32) -> i64 {
    (((high as u64) << 32) | low as u64) as i64
}

const fn unpack(raw: i64) -> (u32, u32) {
    ((raw as u64 >> 32) as u32, raw as u64 as u32)
}

/// The result of `handle_request`: `req_ctx << 32 | next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CtxNext {
    /// Opaque guest value handed back to `handle_response`.
    pub req_ctx: u32,
    /// Whether the host calls the next handler (and then `handle_response`).
    pub next: bool,
}

impl CtxNext {
    /// Packs into the `i64` the guest returns.
    pub const fn encode(self) -> i64 {
        pack(self.req_ctx, self.next as u32)
    }

    /// Unpacks a guest's result. The low half must be `0` or `1`; anything
    /// else is a guest error (the Go host takes any non-zero value as next).
    pub const fn decode(raw: i64) -> Result<CtxNext, InvalidValue> {
        let (req_ctx, next) = unpack(raw);
        match next {
            0 | 1 => Ok(CtxNext { req_ctx, next: next == 1 }),
            other => Err(InvalidValue { what: "next flag", value: other as i64 }),
        }
    }
}

/// The result of `get_header_names` and `get_header_values`: `count << 32 | len`.
///
/// `len` counts every byte written, the NUL terminators included; `0` means
/// no item.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct CountLen {
    /// The number of items.
    pub count: u32,
    /// The encoded length in bytes, NULs included.
    pub len: u32,
}

impl CountLen {
    /// Packs into the `i64` the host returns.
    pub const fn encode(self) -> i64 {
        pack(self.count, self.len)
    }

    /// Unpacks a host's result.
    pub const fn decode(raw: i64) -> CountLen {
        let (count, len) = unpack(raw);
        CountLen { count, len }
    }
}

/// The result of `read_body`: `eof << 32 | len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct EofLen {
    /// True when the body has no more bytes after these.
    pub eof: bool,
    /// How many bytes were written to the buffer.
    pub len: u32,
}

impl EofLen {
    /// Packs into the `i64` the host returns.
    pub const fn encode(self) -> i64 {
        pack(self.eof as u32, self.len)
    }

    /// Unpacks a host's result; the high half must be `0` or `1`.
    pub const fn decode(raw: i64) -> Result<EofLen, InvalidValue> {
        let (eof, len) = unpack(raw);
        match eof {
            0 | 1 => Ok(EofLen { eof: eof == 1, len }),
            other => Err(InvalidValue { what: "eof flag", value: other as i64 }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erratum_3_count_len_examples() {
        // Upstream prints wrong values; these are the corrected ones.
        assert_eq!(CountLen { count: 2, len: 10 }.encode(), (2i64 << 32) | 10);
        assert_eq!(CountLen { count: 2, len: 10 }.encode(), 8_589_934_602);
        assert_eq!(CountLen { count: 2, len: 8 }.encode(), 8_589_934_600);
        assert_eq!(CountLen::decode(0), CountLen { count: 0, len: 0 });
    }

    #[test]
    fn erratum_4_ctx_next_example() {
        // 68719476736 is 16<<32|0: req_ctx 16 and no next (upstream says 16<<32|16).
        assert_eq!(CtxNext::decode(68_719_476_736), Ok(CtxNext { req_ctx: 16, next: false }));
        assert_eq!(CtxNext { req_ctx: 16, next: true }.encode(), 68_719_476_737);
    }

    #[test]
    fn next_must_be_zero_or_one() {
        assert_eq!(CtxNext::decode(2).unwrap_err().value, 2);
        assert_eq!(CtxNext::decode(-1).unwrap_err().value, u32::MAX as i64);
        assert_eq!(CtxNext::decode(1), Ok(CtxNext { req_ctx: 0, next: true }));
        // The high half is unsigned: a guest may use every bit of req_ctx.
        assert_eq!(CtxNext::decode(CtxNext { req_ctx: u32::MAX, next: true }.encode()).unwrap().req_ctx, u32::MAX);
    }

    #[test]
    fn eof_len() {
        assert_eq!(EofLen { eof: true, len: 5 }.encode(), (1i64 << 32) | 5);
        assert_eq!(EofLen::decode((1i64 << 32) | 5), Ok(EofLen { eof: true, len: 5 }));
        assert!(EofLen::decode(2i64 << 32).is_err());
    }
}
