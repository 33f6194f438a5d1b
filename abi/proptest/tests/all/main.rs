//! Round-trips of every packed encoding and of the NUL-terminated list format.

use http_wasm_abi::{CountLen, CtxNext, EofLen, Features, NulList, encode_list, list_len, write_list};
use proptest::prelude::*;

proptest! {
    #[test]
    fn ctx_next_round_trips(req_ctx: u32, next: bool) {
        let v = CtxNext { req_ctx, next };
        prop_assert_eq!(CtxNext::decode(v.encode()), Ok(v));
    }

    #[test]
    fn ctx_next_rejects_other_flags(high: u32, low in 2u32..) {
        let raw = ((high as u64) << 32 | low as u64) as i64;
        prop_assert!(CtxNext::decode(raw).is_err());
    }

    #[test]
    fn count_len_round_trips(count: u32, len: u32) {
        let v = CountLen { count, len };
        prop_assert_eq!(CountLen::decode(v.encode()), v);
    }

    #[test]
    fn eof_len_round_trips(eof: bool, len: u32) {
        let v = EofLen { eof, len };
        prop_assert_eq!(EofLen::decode(v.encode()), Ok(v));
    }

    #[test]
    fn features_split_keeps_unknown_bits_apart(raw: u32) {
        let (known, unknown) = Features::split(raw);
        prop_assert_eq!(known.bits() | unknown, raw);
        prop_assert_eq!(known.bits() & unknown, 0);
        prop_assert!(Features::ALL.contains(known));
        prop_assert_eq!(Features::from_bits(raw).is_ok(), unknown == 0);
        prop_assert_eq!(known.to_string().parse::<Features>(), Ok(known));
    }

    #[test]
    fn lists_round_trip_and_respect_the_limit(
        items in prop::collection::vec(prop::collection::vec(1u8..=255, 0..12), 0..8),
        limit in 0usize..120,
    ) {
        let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
        let total = list_len(refs.iter().copied());
        prop_assert_eq!(total.count as usize, refs.len());
        prop_assert_eq!(total.len as usize, refs.iter().map(|i| i.len() + 1).sum::<usize>());

        let mut buf = vec![0xAAu8; limit];
        let got = encode_list(refs.iter().copied(), &mut buf);
        prop_assert_eq!(got, total);
        if total.len as usize <= limit {
            let list = NulList::with_count(&buf[..total.len as usize], total).unwrap();
            let back: Vec<&[u8]> = list.iter().collect();
            prop_assert_eq!(back, refs.clone());
        } else {
            // Too long: nothing written, the full length still reported.
            prop_assert!(buf.iter().all(|b| *b == 0xAA));
        }

        let mut exact = vec![0u8; total.len as usize];
        prop_assert_eq!(write_list(refs.iter().copied(), &mut exact), total.len as usize);
    }
}
