//! Field values: ClOrdIDs packed and written back, decimals in fixed
//! units, UTCTimestamps against dates computed elsewhere, and a message's
//! field index on arbitrary bytes.

use super::value::*;
use super::Msg;
use proptest::prelude::*;

#[test]
fn decimals_in_fixed_units() {
    assert_eq!(decimal(b"12.5", 4), Some(125_000));
    assert_eq!(decimal(b"12", 4), Some(120_000));
    assert_eq!(decimal(b".25", 4), Some(2_500));
    assert_eq!(decimal(b"-0.0001", 4), Some(-1));
    assert_eq!(decimal(b"1.00000", 4), Some(10_000), "trailing zeros beyond the scale");
    assert_eq!(decimal(b"1.00001", 4), None, "a fifth significant place");
    for bad in [&b""[..], b".", b"-", b"1.2.3", b"1e5", b"+1", b"99999999999999999999"] {
        assert_eq!(decimal(bad, 4), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

#[test]
fn timestamps_match_the_calendar() {
    // 2026-12-07 17:00:00.123 UTC and 2000-02-29 23:59:59.999 UTC (`date -u -d ... +%s`).
    let mut b = [0u8; TIMESTAMP_LEN];
    assert_eq!(timestamp(1_796_662_800_123_000_000, &mut b), b"20261207-17:00:00.123");
    assert_eq!(timestamp(951_868_799_999_000_000, &mut b), b"20000229-23:59:59.999");
    assert!(is_timestamp(b"20261207-17:00:00"));
    assert!(is_timestamp(b"20261207-17:00:00.123456"));
    assert!(!is_timestamp(b"20261207 17:00:00"));
    assert!(!is_timestamp(b"20261207-17:00:00."));
}

#[test]
fn cl_ord_ids_that_cannot_be_kept_are_refused() {
    assert_eq!(pack_id(b"123"), Some(123 | 1 << 63));
    assert_ne!(pack_id(b"0123"), pack_id(b"123"), "a leading zero is text");
    assert_eq!(pack_id(b"ord-1"), Some(u64::from_be_bytes(*b"\0\0\0ord-1")));
    for bad in [&b""[..], b"A23456789", b"0123456789", b"has space", b"\x7f"] {
        assert_eq!(pack_id(bad), None, "{:?}", String::from_utf8_lossy(bad));
    }
}

proptest! {
    #[test]
    fn a_packed_cl_ord_id_is_written_back_as_it_came(v in "[0-9]{1,18}|[!-~]{1,8}") {
        if let Some(id) = pack_id(v.as_bytes()) {
            let mut b = [0u8; ID_LEN];
            prop_assert_eq!(write_id(id, &mut b), v.as_bytes());
        } else {
            // Only numbers too long for text and not numbers (a leading zero)
            prop_assert!(v.len() > 8);
        }
    }

    #[test]
    fn a_message_index_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Ok(m) = Msg::parse(&bytes) {
            let _ = m.msg_type();
            for t in m.tags().collect::<Vec<_>>() {
                prop_assert!(m.get(t).is_some());
            }
        }
    }
}
