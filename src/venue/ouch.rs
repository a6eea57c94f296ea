//! OUCH 5.0 (Nasdaq US equities order entry): the messages the gateway and
//! the exchange simulator exchange, carried one per SoupBinTCP packet
//! (inbound in Unsequenced Data, outbound in Sequenced Data). Codec only, in
//! the style of `soup`: checked views, fixed layouts, big-endian binary
//! integers, left-justified space-padded alpha fields, no allocation, no
//! panic on any input. The layouts are summarised in docs/VENUE.md.
//!
//! Supported: Enter Order, Replace Order, Cancel Order in; System Event,
//! Order Accepted, Order Replaced, Order Canceled, Order Executed, Rejected
//! and Cancel Reject out. The optional appendage is written empty and, on
//! input, checked (its TagValue elements must fill it exactly) and skipped.

use std::fmt;

pub const SYMBOL_LEN: usize = 8;
pub const CL_ORD_ID_LEN: usize = 14;

/// Message type characters.
pub mod kind {
    pub const ENTER: u8 = b'O';
    pub const REPLACE: u8 = b'U';
    pub const CANCEL: u8 = b'X';
    pub const SYSTEM_EVENT: u8 = b'S';
    pub const ACCEPTED: u8 = b'A';
    pub const REPLACED: u8 = b'U';
    pub const CANCELED: u8 = b'C';
    pub const EXECUTED: u8 = b'E';
    pub const REJECTED: u8 = b'J';
    pub const CANCEL_REJECT: u8 = b'I';
}

/// Sizes without the appendage (the appendage length field included).
pub mod size {
    pub const ENTER: usize = 47;
    pub const REPLACE: usize = 40;
    pub const CANCEL: usize = 9;
    pub const SYSTEM_EVENT: usize = 10;
    pub const ACCEPTED: usize = 64;
    pub const REPLACED: usize = 68;
    pub const CANCELED: usize = 18;
    pub const EXECUTED: usize = 36;
    pub const REJECTED: usize = 29;
    pub const CANCEL_REJECT: usize = 13;
    /// The largest message we write.
    pub const MAX: usize = REPLACED;
}

/// Rejected reasons we use (the specification lists more).
pub mod reject {
    pub const INVALID_SIDE: u16 = 0x0009;
    pub const PROCESSING_ERROR: u16 = 0x000A;
    pub const OTHER: u16 = 0x000F;
    pub const INVALID_QUANTITY: u16 = 0x0013;
    pub const INVALID_SYMBOL: u16 = 0x0017;
    pub const INVALID_PRICE: u16 = 0x001D;
}

/// Order Canceled reasons we use.
pub mod cancel_reason {
    pub const IMMEDIATE_OR_CANCEL: u8 = b'I';
    pub const SUPERVISORY: u8 = b'S';
    pub const USER_REQUESTED: u8 = b'U';
}

/// Enter Order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enter {
    pub user_ref: u32,
    /// B buy, S sell, T sell short, E sell short exempt.
    pub side: u8,
    pub qty: u32,
    pub symbol: [u8; SYMBOL_LEN],
    /// 4 implied decimals.
    pub price: u64,
    /// '0' day, '3' immediate or cancel, ...
    pub tif: u8,
    pub display: u8,
    pub capacity: u8,
    pub iso: u8,
    pub cross: u8,
    pub cl_ord_id: [u8; CL_ORD_ID_LEN],
}

/// Replace Order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replace {
    pub orig_user_ref: u32,
    pub user_ref: u32,
    pub qty: u32,
    pub price: u64,
    pub tif: u8,
    pub display: u8,
    pub iso: u8,
    pub cl_ord_id: [u8; CL_ORD_ID_LEN],
}

/// What a firm sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inbound {
    Enter(Enter),
    Replace(Replace),
    /// Cancel down to `qty` shares (0: all).
    Cancel {
        user_ref: u32,
        qty: u32,
    },
}

/// Order Accepted and Order Replaced share most fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    pub ts: u64,
    pub user_ref: u32,
    pub side: u8,
    pub qty: u32,
    pub symbol: [u8; SYMBOL_LEN],
    pub price: u64,
    pub tif: u8,
    pub display: u8,
    pub order_ref: u64,
    pub capacity: u8,
    pub iso: u8,
    pub cross: u8,
    /// L live, D dead (accepted and at once canceled).
    pub state: u8,
    pub cl_ord_id: [u8; CL_ORD_ID_LEN],
}

/// What the venue sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbound {
    SystemEvent {
        ts: u64,
        code: u8,
    },
    Accepted(Accepted),
    Replaced {
        orig_user_ref: u32,
        order: Accepted,
    },
    /// `qty`: the shares taken off (incremental).
    Canceled {
        ts: u64,
        user_ref: u32,
        qty: u32,
        reason: u8,
    },
    /// `qty`: the shares executed this time (incremental).
    Executed {
        ts: u64,
        user_ref: u32,
        qty: u32,
        price: u64,
        liquidity: u8,
        match_number: u64,
    },
    Rejected {
        ts: u64,
        user_ref: u32,
        reason: u16,
        cl_ord_id: [u8; CL_ORD_ID_LEN],
    },
    CancelReject {
        ts: u64,
        user_ref: u32,
    },
}

/// Why bytes are not an OUCH message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OuchError {
    Empty,
    UnknownType(u8),
    /// Shorter than its type's fixed part.
    Short {
        kind: u8,
        len: usize,
    },
    /// Longer than its fixed part and no appendage says why, or an
    /// appendage whose elements do not fill it exactly.
    BadAppendage {
        kind: u8,
    },
}

impl fmt::Display for OuchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OuchError::Empty => write!(f, "an empty message"),
            OuchError::UnknownType(t) => write!(f, "unknown message type 0x{t:02x}"),
            OuchError::Short { kind, len } => write!(f, "message '{}' of {len} bytes: too short", char::from(*kind)),
            OuchError::BadAppendage { kind } => write!(f, "message '{}': a malformed appendage", char::from(*kind)),
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
fn arr<const N: usize>(b: &[u8], at: usize) -> [u8; N] {
    b[at..at + N].try_into().expect("N bytes")
}

/// Check a message's length against its fixed part, and its appendage.
/// `fixed`: the size with the appendage length field; `exact`: no
/// appendage in this message type.
fn check(b: &[u8], fixed: usize, appendage: bool) -> Result<(), OuchError> {
    let kind = b[0];
    if b.len() < fixed {
        return Err(OuchError::Short { kind, len: b.len() });
    }
    if !appendage {
        return if b.len() == fixed { Ok(()) } else { Err(OuchError::BadAppendage { kind }) };
    }
    let alen = usize::from(u16_at(b, fixed - 2));
    if b.len() != fixed + alen {
        return Err(OuchError::BadAppendage { kind });
    }
    // TagValue elements: a length byte (covering the tag and value), >= 1.
    let mut at = fixed;
    while at < b.len() {
        let n = usize::from(b[at]);
        if n == 0 || at + 1 + n > b.len() {
            return Err(OuchError::BadAppendage { kind });
        }
        at += 1 + n;
    }
    Ok(())
}

/// Decode a message from a firm.
pub fn parse_inbound(b: &[u8]) -> Result<Inbound, OuchError> {
    let kind = *b.first().ok_or(OuchError::Empty)?;
    match kind {
        kind::ENTER => {
            check(b, size::ENTER, true)?;
            Ok(Inbound::Enter(Enter {
                user_ref: u32_at(b, 1),
                side: b[5],
                qty: u32_at(b, 6),
                symbol: arr(b, 10),
                price: u64_at(b, 18),
                tif: b[26],
                display: b[27],
                capacity: b[28],
                iso: b[29],
                cross: b[30],
                cl_ord_id: arr(b, 31),
            }))
        }
        kind::REPLACE => {
            check(b, size::REPLACE, true)?;
            Ok(Inbound::Replace(Replace {
                orig_user_ref: u32_at(b, 1),
                user_ref: u32_at(b, 5),
                qty: u32_at(b, 9),
                price: u64_at(b, 13),
                tif: b[21],
                display: b[22],
                iso: b[23],
                cl_ord_id: arr(b, 24),
            }))
        }
        kind::CANCEL => {
            check(b, size::CANCEL, false)?;
            Ok(Inbound::Cancel { user_ref: u32_at(b, 1), qty: u32_at(b, 5) })
        }
        other => Err(OuchError::UnknownType(other)),
    }
}

/// Encode a message from a firm into `out`; the bytes written, or None if
/// `out` is too short.
pub fn encode_inbound(m: &Inbound, out: &mut [u8]) -> Option<usize> {
    let n = match m {
        Inbound::Enter(_) => size::ENTER,
        Inbound::Replace(_) => size::REPLACE,
        Inbound::Cancel { .. } => size::CANCEL,
    };
    let b = out.get_mut(..n)?;
    match m {
        Inbound::Enter(e) => {
            b[0] = kind::ENTER;
            b[1..5].copy_from_slice(&e.user_ref.to_be_bytes());
            b[5] = e.side;
            b[6..10].copy_from_slice(&e.qty.to_be_bytes());
            b[10..18].copy_from_slice(&e.symbol);
            b[18..26].copy_from_slice(&e.price.to_be_bytes());
            (b[26], b[27], b[28], b[29], b[30]) = (e.tif, e.display, e.capacity, e.iso, e.cross);
            b[31..45].copy_from_slice(&e.cl_ord_id);
            b[45..47].copy_from_slice(&[0, 0]);
        }
        Inbound::Replace(r) => {
            b[0] = kind::REPLACE;
            b[1..5].copy_from_slice(&r.orig_user_ref.to_be_bytes());
            b[5..9].copy_from_slice(&r.user_ref.to_be_bytes());
            b[9..13].copy_from_slice(&r.qty.to_be_bytes());
            b[13..21].copy_from_slice(&r.price.to_be_bytes());
            (b[21], b[22], b[23]) = (r.tif, r.display, r.iso);
            b[24..38].copy_from_slice(&r.cl_ord_id);
            b[38..40].copy_from_slice(&[0, 0]);
        }
        Inbound::Cancel { user_ref, qty } => {
            b[0] = kind::CANCEL;
            b[1..5].copy_from_slice(&user_ref.to_be_bytes());
            b[5..9].copy_from_slice(&qty.to_be_bytes());
        }
    }
    Some(n)
}

fn parse_accepted(b: &[u8], at: usize) -> Accepted {
    // `at`: the offset of Side (13 in Accepted, 17 in Replaced).
    Accepted {
        ts: u64_at(b, 1),
        user_ref: u32_at(b, at - 4),
        side: b[at],
        qty: u32_at(b, at + 1),
        symbol: arr(b, at + 5),
        price: u64_at(b, at + 13),
        tif: b[at + 21],
        display: b[at + 22],
        order_ref: u64_at(b, at + 23),
        capacity: b[at + 31],
        iso: b[at + 32],
        cross: b[at + 33],
        state: b[at + 34],
        cl_ord_id: arr(b, at + 35),
    }
}

fn put_accepted(b: &mut [u8], at: usize, a: &Accepted) {
    b[1..9].copy_from_slice(&a.ts.to_be_bytes());
    b[at - 4..at].copy_from_slice(&a.user_ref.to_be_bytes());
    b[at] = a.side;
    b[at + 1..at + 5].copy_from_slice(&a.qty.to_be_bytes());
    b[at + 5..at + 13].copy_from_slice(&a.symbol);
    b[at + 13..at + 21].copy_from_slice(&a.price.to_be_bytes());
    (b[at + 21], b[at + 22]) = (a.tif, a.display);
    b[at + 23..at + 31].copy_from_slice(&a.order_ref.to_be_bytes());
    (b[at + 31], b[at + 32], b[at + 33], b[at + 34]) = (a.capacity, a.iso, a.cross, a.state);
    b[at + 35..at + 49].copy_from_slice(&a.cl_ord_id);
    b[at + 49..at + 51].copy_from_slice(&[0, 0]);
}

/// Decode a message from the venue.
pub fn parse_outbound(b: &[u8]) -> Result<Outbound, OuchError> {
    let kind = *b.first().ok_or(OuchError::Empty)?;
    match kind {
        kind::SYSTEM_EVENT => {
            check(b, size::SYSTEM_EVENT, false)?;
            Ok(Outbound::SystemEvent { ts: u64_at(b, 1), code: b[9] })
        }
        kind::ACCEPTED => {
            check(b, size::ACCEPTED, true)?;
            Ok(Outbound::Accepted(parse_accepted(b, 13)))
        }
        kind::REPLACED => {
            check(b, size::REPLACED, true)?;
            Ok(Outbound::Replaced { orig_user_ref: u32_at(b, 9), order: parse_accepted(b, 17) })
        }
        kind::CANCELED => {
            check(b, size::CANCELED, false)?;
            Ok(Outbound::Canceled { ts: u64_at(b, 1), user_ref: u32_at(b, 9), qty: u32_at(b, 13), reason: b[17] })
        }
        kind::EXECUTED => {
            check(b, size::EXECUTED, true)?;
            Ok(Outbound::Executed {
                ts: u64_at(b, 1),
                user_ref: u32_at(b, 9),
                qty: u32_at(b, 13),
                price: u64_at(b, 17),
                liquidity: b[25],
                match_number: u64_at(b, 26),
            })
        }
        kind::REJECTED => {
            check(b, size::REJECTED, false)?;
            Ok(Outbound::Rejected {
                ts: u64_at(b, 1),
                user_ref: u32_at(b, 9),
                reason: u16_at(b, 13),
                cl_ord_id: arr(b, 15),
            })
        }
        kind::CANCEL_REJECT => {
            check(b, size::CANCEL_REJECT, false)?;
            Ok(Outbound::CancelReject { ts: u64_at(b, 1), user_ref: u32_at(b, 9) })
        }
        other => Err(OuchError::UnknownType(other)),
    }
}

/// Encode a message from the venue into `out`; the bytes written, or None
/// if `out` is too short.
pub fn encode_outbound(m: &Outbound, out: &mut [u8]) -> Option<usize> {
    let n = match m {
        Outbound::SystemEvent { .. } => size::SYSTEM_EVENT,
        Outbound::Accepted(_) => size::ACCEPTED,
        Outbound::Replaced { .. } => size::REPLACED,
        Outbound::Canceled { .. } => size::CANCELED,
        Outbound::Executed { .. } => size::EXECUTED,
        Outbound::Rejected { .. } => size::REJECTED,
        Outbound::CancelReject { .. } => size::CANCEL_REJECT,
    };
    let b = out.get_mut(..n)?;
    match m {
        Outbound::SystemEvent { ts, code } => {
            b[0] = kind::SYSTEM_EVENT;
            b[1..9].copy_from_slice(&ts.to_be_bytes());
            b[9] = *code;
        }
        Outbound::Accepted(a) => {
            b[0] = kind::ACCEPTED;
            put_accepted(b, 13, a);
        }
        Outbound::Replaced { orig_user_ref, order } => {
            b[0] = kind::REPLACED;
            put_accepted(b, 17, order);
            // After put_accepted: its user_ref sits at 13..17.
            b[9..13].copy_from_slice(&orig_user_ref.to_be_bytes());
        }
        Outbound::Canceled { ts, user_ref, qty, reason } => {
            b[0] = kind::CANCELED;
            b[1..9].copy_from_slice(&ts.to_be_bytes());
            b[9..13].copy_from_slice(&user_ref.to_be_bytes());
            b[13..17].copy_from_slice(&qty.to_be_bytes());
            b[17] = *reason;
        }
        Outbound::Executed { ts, user_ref, qty, price, liquidity, match_number } => {
            b[0] = kind::EXECUTED;
            b[1..9].copy_from_slice(&ts.to_be_bytes());
            b[9..13].copy_from_slice(&user_ref.to_be_bytes());
            b[13..17].copy_from_slice(&qty.to_be_bytes());
            b[17..25].copy_from_slice(&price.to_be_bytes());
            b[25] = *liquidity;
            b[26..34].copy_from_slice(&match_number.to_be_bytes());
            b[34..36].copy_from_slice(&[0, 0]);
        }
        Outbound::Rejected { ts, user_ref, reason, cl_ord_id } => {
            b[0] = kind::REJECTED;
            b[1..9].copy_from_slice(&ts.to_be_bytes());
            b[9..13].copy_from_slice(&user_ref.to_be_bytes());
            b[13..15].copy_from_slice(&reason.to_be_bytes());
            b[15..29].copy_from_slice(cl_ord_id);
        }
        Outbound::CancelReject { ts, user_ref } => {
            b[0] = kind::CANCEL_REJECT;
            b[1..9].copy_from_slice(&ts.to_be_bytes());
            b[9..13].copy_from_slice(&user_ref.to_be_bytes());
        }
    }
    Some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enter() -> Enter {
        Enter {
            user_ref: 1,
            side: b'B',
            qty: 100,
            symbol: *b"AAPL    ",
            price: 1_502_500,
            tif: b'0',
            display: b'Y',
            capacity: b'A',
            iso: b'N',
            cross: b'N',
            cl_ord_id: *b"ORD1          ",
        }
    }

    fn accepted() -> Accepted {
        Accepted {
            ts: 34_200_000_000_123,
            user_ref: 7,
            side: b'S',
            qty: 300,
            symbol: *b"MSFT    ",
            price: 4_000_100,
            tif: b'3',
            display: b'N',
            order_ref: 0x0102_0304_0506_0708,
            capacity: b'P',
            iso: b'Y',
            cross: b'O',
            state: b'L',
            cl_ord_id: *b"CLIENT-0000042",
        }
    }

    #[test]
    fn enter_order_is_laid_out_as_specified() {
        let mut b = [0u8; 64];
        let n = encode_inbound(&Inbound::Enter(enter()), &mut b).unwrap();
        assert_eq!(n, 47);
        assert_eq!(b[0], b'O');
        assert_eq!(&b[1..5], &[0, 0, 0, 1]);
        assert_eq!(b[5], b'B');
        assert_eq!(&b[6..10], &[0, 0, 0, 100]);
        assert_eq!(&b[10..18], b"AAPL    ");
        assert_eq!(&b[18..26], &1_502_500u64.to_be_bytes());
        assert_eq!(&b[26..31], b"0YANN");
        assert_eq!(&b[31..45], b"ORD1          ");
        assert_eq!(&b[45..47], &[0, 0], "no appendage");
        assert_eq!(parse_inbound(&b[..n]), Ok(Inbound::Enter(enter())));
    }

    #[test]
    fn every_message_round_trips_at_its_size() {
        let ins = [
            (Inbound::Enter(enter()), 47),
            (
                Inbound::Replace(Replace {
                    orig_user_ref: 1,
                    user_ref: 2,
                    qty: 50,
                    price: 1_500_000,
                    tif: b'0',
                    display: b'Y',
                    iso: b'N',
                    cl_ord_id: *b"ORD1-R        ",
                }),
                40,
            ),
            (Inbound::Cancel { user_ref: 9, qty: 0 }, 9),
        ];
        for (m, len) in ins {
            let mut b = [0u8; 128];
            assert_eq!(encode_inbound(&m, &mut b), Some(len));
            assert_eq!(parse_inbound(&b[..len]), Ok(m));
            assert_eq!(encode_inbound(&m, &mut b[..len - 1]), None);
        }
        let outs = [
            (Outbound::SystemEvent { ts: 5, code: b'S' }, 10),
            (Outbound::Accepted(accepted()), 64),
            (Outbound::Replaced { orig_user_ref: 6, order: accepted() }, 68),
            (Outbound::Canceled { ts: 1, user_ref: 7, qty: 100, reason: cancel_reason::USER_REQUESTED }, 18),
            (
                Outbound::Executed { ts: 2, user_ref: 7, qty: 25, price: 4_000_100, liquidity: b'A', match_number: 99 },
                36,
            ),
            (
                Outbound::Rejected { ts: 3, user_ref: 8, reason: reject::INVALID_PRICE, cl_ord_id: *b"X             " },
                29,
            ),
            (Outbound::CancelReject { ts: 4, user_ref: 7 }, 13),
        ];
        for (m, len) in outs {
            let mut b = [0u8; 128];
            assert_eq!(encode_outbound(&m, &mut b), Some(len), "{m:?}");
            assert_eq!(parse_outbound(&b[..len]), Ok(m));
        }
        // Replaced: OrigUserRefNum at 9, UserRefNum at 13, Side at 17.
        let mut b = [0u8; 128];
        encode_outbound(&Outbound::Replaced { orig_user_ref: 6, order: accepted() }, &mut b).unwrap();
        assert_eq!((&b[9..13], &b[13..17], b[17]), (&[0, 0, 0, 6][..], &[0, 0, 0, 7][..], b'S'));
        // Accepted: Order Reference Number at 36, Order State at 47, ClOrdID at 48.
        encode_outbound(&Outbound::Accepted(accepted()), &mut b).unwrap();
        assert_eq!(&b[36..44], &0x0102_0304_0506_0708u64.to_be_bytes());
        assert_eq!(b[47], b'L');
        assert_eq!(&b[48..62], b"CLIENT-0000042");
    }

    #[test]
    fn appendages_are_checked_and_skipped() {
        let mut b = [0u8; 64];
        let n = encode_inbound(&Inbound::Enter(enter()), &mut b).unwrap();
        // Firm "ABCD": length 5 (tag + 4), tag 2.
        b[45..47].copy_from_slice(&[0, 6]);
        b[n..n + 6].copy_from_slice(&[5, 2, b'A', b'B', b'C', b'D']);
        assert_eq!(parse_inbound(&b[..n + 6]), Ok(Inbound::Enter(enter())));
        assert_eq!(parse_inbound(&b[..n + 5]), Err(OuchError::BadAppendage { kind: b'O' }));
        b[n] = 9; // an element longer than the appendage
        assert_eq!(parse_inbound(&b[..n + 6]), Err(OuchError::BadAppendage { kind: b'O' }));
        b[n] = 0; // an empty element
        assert_eq!(parse_inbound(&b[..n + 6]), Err(OuchError::BadAppendage { kind: b'O' }));
        assert_eq!(parse_inbound(&b[..20]), Err(OuchError::Short { kind: b'O', len: 20 }));
        assert_eq!(parse_inbound(&[b'X'; 10]), Err(OuchError::BadAppendage { kind: b'X' }));
        assert_eq!(parse_inbound(&[]), Err(OuchError::Empty));
        assert_eq!(parse_outbound(b"?"), Err(OuchError::UnknownType(b'?')));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_inbound(&bytes);
            let _ = parse_outbound(&bytes);
        }

        #[test]
        fn typed_bytes_never_panic(kind in prop::sample::select(b"OUXSACEJI".to_vec()), rest in proptest::collection::vec(any::<u8>(), 0..90)) {
            let mut b = vec![kind];
            b.extend(rest);
            let _ = parse_inbound(&b);
            let _ = parse_outbound(&b);
        }
    }
}
