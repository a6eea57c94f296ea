//! Framing, fields and the encoder: a message whose BodyLength and
//! CheckSum were computed outside this code, every prefix of it, each
//! framing error, and arbitrary bytes (proptest) that must never panic.

use super::*;
use proptest::prelude::*;

/// A Logon whose BodyLength (69) and CheckSum (251) were computed by hand
/// (Python's `sum(bytes) % 256`), not by this module.
const LOGON: &[u8] =
    b"8=FIX.4.4\x019=69\x0135=A\x0149=CLIENT\x0156=TAILGATE\x0134=1\x0152=20261207-17:00:00.000\x0198=0\x01108=30\x0110=251\x01";

#[test]
fn a_whole_message_is_framed_and_its_fields_read_in_place() {
    assert_eq!(frame(LOGON), Ok(Some(LOGON.len())));
    // Followed by the next message's first bytes: still this one's length.
    let mut two = LOGON.to_vec();
    two.extend_from_slice(b"8=FIX.4");
    assert_eq!(frame(&two), Ok(Some(LOGON.len())));
    let f: Vec<Field<'_>> = Fields::new(LOGON).map(Result::unwrap).collect();
    let tags: Vec<u32> = f.iter().map(|f| f.tag).collect();
    assert_eq!(tags, vec![8, 9, 35, 49, 56, 34, 52, 98, 108, 10]);
    assert_eq!(f[3].value, b"CLIENT");
    assert_eq!(f[9].value, b"251");
}

#[test]
fn every_prefix_of_a_message_waits_for_more() {
    for n in 0..LOGON.len() {
        assert_eq!(frame(&LOGON[..n]), Ok(None), "prefix of {n} bytes");
    }
}

#[test]
fn each_framing_fault_is_named() {
    let bad = |from: &[u8], to: &[u8]| {
        let s = LOGON.windows(from.len()).position(|w| w == from).unwrap();
        let mut m = LOGON.to_vec();
        m.splice(s..s + from.len(), to.iter().copied());
        frame(&m)
    };
    assert_eq!(bad(b"FIX.4.4", b"FIX.4.2"), Err(FrameError::BeginString));
    assert_eq!(frame(b"8=FIX.4.4\x0135=A\x01"), Err(FrameError::BodyLength));
    assert_eq!(bad(b"9=69", b"9=6x"), Err(FrameError::BodyLength));
    assert_eq!(bad(b"9=69", b"9=\x01"), Err(FrameError::BodyLength));
    assert_eq!(bad(b"9=69", b"9=1234567"), Err(FrameError::BodyLength));
    assert_eq!(bad(b"9=69", b"9=99999"), Err(FrameError::TooLong));
    // One byte short: the CheckSum field is not where BodyLength says.
    assert_eq!(bad(b"9=69", b"9=68"), Err(FrameError::CheckSumField));
    assert_eq!(bad(b"10=251", b"10=25x"), Err(FrameError::CheckSumField));
    assert_eq!(bad(b"10=251", b"10=252"), Err(FrameError::CheckSum { expected: 251, got: 252 }));
    assert_eq!(bad(b"10=251", b"10=999"), Err(FrameError::CheckSum { expected: 251, got: 999 }));
    // The body's last byte is not SOH (BodyLength one short of it, the
    // checksum made to match): not a frame.
    let mut m = b"8=FIX.4.4\x019=4\x0135=A10=".to_vec();
    let sum = checksum(&m[..m.len() - 3]);
    m.truncate(m.len() - 3);
    m.extend_from_slice(format!("10={sum:03}\x01").as_bytes());
    assert_eq!(frame(&m), Err(FrameError::CheckSumField));
    // A body byte changed: the sum no longer matches.
    assert!(matches!(bad(b"CLIENT", b"CLIENU"), Err(FrameError::CheckSum { expected: 252, got: 251 })));
}

#[test]
fn malformed_fields_stop_the_reading_with_a_reason() {
    let errs = |b: &[u8]| Fields::new(b).find_map(Result::err);
    assert_eq!(errs(b"35=A\x01=x\x01"), Some(FieldError::Tag { at: 5 }));
    assert_eq!(errs(b"35=A\x010=x\x01"), Some(FieldError::Tag { at: 5 }));
    assert_eq!(errs(b"035=A\x01"), Some(FieldError::Tag { at: 0 }));
    assert_eq!(errs(b"35A\x01"), Some(FieldError::Tag { at: 0 }));
    assert_eq!(errs(b"1234567890=1\x01"), Some(FieldError::Tag { at: 0 }));
    assert_eq!(errs(b"35=\x01"), Some(FieldError::Empty { tag: 35 }));
    assert_eq!(errs(b"35=A"), Some(FieldError::Unterminated { tag: 35 }));
    // After an error, nothing more.
    let mut f = Fields::new(b"35\x0149=X\x01");
    assert!(f.next().unwrap().is_err());
    assert!(f.next().is_none());
}

#[test]
fn the_encoder_writes_what_the_reader_reads() {
    let mut buf = [0u8; 256];
    let mut e = Encoder::new(&mut buf, b"A");
    e.bytes(49, b"CLIENT").bytes(56, b"TAILGATE").uint(34, 1).bytes(52, b"20261207-17:00:00.000");
    e.uint(98, 0).uint(108, 30);
    let m = e.finish().expect("fits");
    // The same message as the hand-computed one.
    assert_eq!(m, LOGON);
    let mut buf = [0u8; 256];
    let mut e = Encoder::new(&mut buf, b"8");
    e.int(1, -42).decimal(44, 1_234_500, 4).decimal(31, -5, 2).decimal(32, 7, 0).decimal(6, 0, 4);
    let m = e.finish().unwrap().to_vec();
    assert_eq!(frame(&m), Ok(Some(m.len())));
    let v: Vec<(u32, Vec<u8>)> = Fields::new(&m).map(|f| f.unwrap()).map(|f| (f.tag, f.value.to_vec())).collect();
    let want: [(u32, &[u8]); 5] = [(1, b"-42"), (44, b"123.45"), (31, b"-0.05"), (32, b"7"), (6, b"0")];
    for (t, w) in want {
        assert_eq!(v.iter().find(|(k, _)| *k == t).map(|(_, x)| x.as_slice()), Some(w), "tag {t}");
    }
}

#[test]
fn an_encoder_refuses_what_does_not_fit_or_holds_a_separator() {
    let mut small = [0u8; 40];
    let mut e = Encoder::new(&mut small, b"A");
    e.bytes(58, &[b'x'; 30]);
    assert!(e.finish().is_none());
    let mut buf = [0u8; 256];
    let mut e = Encoder::new(&mut buf, b"A");
    e.bytes(58, b"a\x01b");
    assert!(e.finish().is_none());
    let mut e = Encoder::new(&mut buf, b"A");
    e.bytes(58, b"");
    assert!(e.finish().is_none());
    let mut e = Encoder::new(&mut buf, b"A");
    e.decimal(44, 1, 23);
    assert!(e.finish().is_none());
    let mut e = Encoder::new(&mut buf, b"A");
    e.decimal(44, i64::MIN, 19);
    let m = e.finish().unwrap().to_vec();
    assert!(Fields::new(&m).any(|f| f.unwrap().value == b"-0.9223372036854775808"));
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = frame(&bytes);
        let n = Fields::new(&bytes).take(1000).count();
        prop_assert!(n <= bytes.len());
    }

    #[test]
    fn arbitrary_bytes_after_a_valid_header_never_panic(tail in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut m = b"8=FIX.4.4\x019=".to_vec();
        m.extend_from_slice(&tail);
        let _ = frame(&m);
    }

    #[test]
    fn what_is_encoded_is_framed_and_read_back(
        fields in proptest::collection::vec((1u32..100_000, proptest::collection::vec(2u8..=255, 1..40)), 0..20)
    ) {
        let mut buf = [0u8; 4096];
        let mut e = Encoder::new(&mut buf, b"D");
        for (t, v) in &fields {
            e.bytes(*t, v);
        }
        let m = e.finish().unwrap().to_vec();
        prop_assert_eq!(frame(&m), Ok(Some(m.len())));
        let got: Vec<(u32, Vec<u8>)> = Fields::new(&m).map(|f| f.unwrap()).map(|f| (f.tag, f.value.to_vec())).collect();
        prop_assert_eq!(got.len(), fields.len() + 4);
        prop_assert_eq!(&got[2], &(35, b"D".to_vec()));
        for (i, (t, v)) in fields.iter().enumerate() {
            prop_assert_eq!(&got[3 + i], &(*t, v.clone()));
        }
        // Any single byte changed in the body breaks the frame's check.
        if !fields.is_empty() {
            let mut bad = m.clone();
            let i = m.len() - 8;
            bad[i] = bad[i].wrapping_add(1);
            prop_assert!(frame(&bad) != Ok(Some(m.len())));
        }
    }
}
