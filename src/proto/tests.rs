//! The codec's tests: round trips, every reject reason it produces, and
//! random bytes.

use super::*;
use proptest::prelude::*;

fn order() -> NewOrder {
    NewOrder {
        cl_ord_id: 42,
        client_ts: 1_700_000_000_123_456_789,
        price: 10_050,
        qty: 300,
        side: Side::Sell,
        kind: OrderKind::Limit,
        symbol: Code8::new("ESZ6").unwrap(),
    }
}

fn client_frame(m: ClientMsg, seq: u32) -> Vec<u8> {
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = m.encode(seq, &mut buf).unwrap();
    buf[..n].to_vec()
}

fn decode_client(bytes: &[u8]) -> Result<ClientMsg, RejectReason> {
    match Frame::parse(bytes).unwrap() {
        Parsed::Frame(f) => ClientMsg::decode(&f),
        Parsed::Incomplete => panic!("incomplete"),
    }
}

#[test]
fn client_messages_round_trip() {
    let msgs = [
        ClientMsg::logon(Code8::new("ACC-1").unwrap()),
        ClientMsg::Heartbeat,
        ClientMsg::NewOrder(order()),
        ClientMsg::NewOrder(NewOrder { kind: OrderKind::Market, price: 0, side: Side::Buy, ..order() }),
        ClientMsg::Cancel { cl_ord_id: 7, client_ts: 99 },
        ClientMsg::Logout,
    ];
    for (i, m) in msgs.iter().enumerate() {
        let bytes = client_frame(*m, i as u32 + 1);
        let Parsed::Frame(f) = Frame::parse(&bytes).unwrap() else { panic!() };
        assert_eq!(f.seq(), i as u32 + 1);
        assert_eq!(f.len(), bytes.len());
        assert_eq!(ClientMsg::decode(&f), Ok(*m));
    }
}

#[test]
fn gateway_messages_round_trip() {
    let msgs = [
        GatewayMsg::LogonAck { heartbeat_ms: 1000, idle_timeout_ms: 5000 },
        GatewayMsg::Heartbeat,
        GatewayMsg::Ack { cl_ord_id: 1, client_ts: 2, gw_recv_ts: 3, gw_send_ts: 4, order_id: 5 },
        GatewayMsg::Reject {
            cl_ord_id: 1,
            client_ts: 2,
            gw_recv_ts: 3,
            ref_seq: 9,
            reason: RejectReason::BadPrice,
            ref_type: msg_type::NEW_ORDER,
            exchange_reason: 0x1d,
        },
        GatewayMsg::Fill {
            cl_ord_id: 1,
            client_ts: 2,
            gw_recv_ts: 3,
            gw_send_ts: 4,
            price: 10_050,
            qty: 7,
            leaves: 3,
            exec_id: 99,
        },
        GatewayMsg::CancelReject { cl_ord_id: 1, client_ts: 2, gw_recv_ts: 3, gw_send_ts: 4 },
        GatewayMsg::Canceled { cl_ord_id: 1, client_ts: 2, gw_recv_ts: 3, gw_send_ts: 4, qty: 5, reason: b'I' },
        GatewayMsg::CancelAck { cl_ord_id: 1, client_ts: 2, gw_recv_ts: 3, gw_send_ts: 4 },
        GatewayMsg::Logout { reason: LogoutReason::IdleTimeout },
    ];
    for m in msgs {
        let mut buf = [0u8; MAX_FRAME_LEN];
        let n = m.encode(77, &mut buf).unwrap();
        let Parsed::Frame(f) = Frame::parse(&buf[..n]).unwrap() else { panic!() };
        assert_eq!(f.seq(), 77);
        assert_eq!(GatewayMsg::decode(&f), Ok(m));
    }
}

#[test]
fn encode_into_short_buffer_fails_cleanly() {
    let mut buf = [0u8; 10];
    assert_eq!(ClientMsg::NewOrder(order()).encode(1, &mut buf), None);
}

#[test]
fn incomplete_and_framing_errors() {
    let bytes = client_frame(ClientMsg::NewOrder(order()), 1);
    for cut in 0..bytes.len() {
        assert!(matches!(Frame::parse(&bytes[..cut]), Ok(Parsed::Incomplete)), "cut {cut}");
    }
    assert_eq!(Frame::parse(&[3, 0, 1, 1]).unwrap_err(), FramingError::TooShort(3));
    assert_eq!(Frame::parse(&[0xff, 0xff]).unwrap_err(), FramingError::TooLong(0xffff));
    assert_eq!(
        Frame::parse(&[(MAX_FRAME_LEN + 1) as u8, 0]).unwrap_err(),
        FramingError::TooLong(MAX_FRAME_LEN as u16 + 1)
    );
}

/// Every reject reason that the codec itself can produce, one case each.
/// (SeqGap, NotLoggedOn, AlreadyLoggedOn, UnknownOrder, DuplicateOrderId
/// and TooManyOpenOrders are session state: tested in `app::orders`.)
#[test]
fn codec_reject_reasons() {
    let good = client_frame(ClientMsg::NewOrder(order()), 1);
    let with = |f: &dyn Fn(&mut Vec<u8>)| {
        let mut b = good.clone();
        f(&mut b);
        decode_client(&b)
    };
    assert_eq!(with(&|b| b[field::VERSION] = VERSION + 1), Err(RejectReason::BadVersion));
    assert_eq!(with(&|b| b[field::VERSION] = 0), Err(RejectReason::BadVersion));
    assert_eq!(with(&|b| b[field::TYPE] = 0x7f), Err(RejectReason::UnknownType));
    assert_eq!(with(&|b| b[field::TYPE] = msg_type::ACK), Err(RejectReason::UnknownType));
    assert_eq!(with(&|b| b[field::TYPE] = msg_type::CANCEL), Err(RejectReason::BadLength));
    assert_eq!(with(&|b| b[field::ORDER_SIDE] = 3), Err(RejectReason::BadSide));
    assert_eq!(with(&|b| b[field::ORDER_KIND] = 0), Err(RejectReason::BadOrderKind));
    assert_eq!(with(&|b| b[field::ORDER_QTY].fill(0)), Err(RejectReason::BadQuantity));
    assert_eq!(with(&|b| b[field::ORDER_PRICE].fill(0)), Err(RejectReason::BadPrice));
    assert_eq!(with(&|b| b[field::ORDER_PRICE].fill(0xff)), Err(RejectReason::BadPrice));
    assert_eq!(
        with(&|b| b[field::ORDER_KIND] = OrderKind::Market as u8),
        Err(RejectReason::BadPrice),
        "market order with a price"
    );
    assert_eq!(with(&|b| b[40] = b'e'), Err(RejectReason::BadSymbol));
    assert_eq!(with(&|b| b[field::ORDER_SYMBOL].fill(b' ')), Err(RejectReason::BadSymbol));
    assert_eq!(with(&|b| b[47] = b'X'), Err(RejectReason::BadSymbol), "gap inside symbol");
    assert_eq!(with(&|b| b[field::ORDER_RESERVED.start] = 1), Err(RejectReason::BadReserved));

    let logon = client_frame(ClientMsg::logon(Code8::new("A").unwrap()), 1);
    let mut bad = logon.clone();
    bad[field::LOGON_ACCOUNT.start] = 0;
    assert_eq!(decode_client(&bad), Err(RejectReason::BadAccount));
    let mut out = client_frame(ClientMsg::Logout, 2);
    out[field::LOGOUT_RESERVED.start] = 1;
    assert_eq!(decode_client(&out), Err(RejectReason::BadReserved));
}

#[test]
fn version_3_logon_carries_a_password_and_never_shows_it() {
    let account = Code8::new("ALPHA").unwrap();
    let password = Password::new("correct horse").unwrap();
    let m = ClientMsg::Logon { account, password };
    let b = client_frame(m, 1);
    assert_eq!(b.len(), 48);
    assert_eq!(decode_client(&b), Ok(m));
    assert!(!format!("{m:?}").contains("horse"), "Debug must not print the password");
    // Versions 1 and 2: a 16-byte Logon with no password.
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = ClientMsg::logon(account).encode_as(VERSION_2, 1, &mut buf).unwrap();
    assert_eq!(n, 16);
    assert_eq!(decode_client(&buf[..n]), Ok(ClientMsg::logon(account)));
    assert_eq!(m.encode_as(VERSION_2, 1, &mut buf), None, "a password cannot go in a version-2 Logon");
    // A 16-byte Logon in version 3 is the wrong length.
    let mut short = buf[..n].to_vec();
    short[field::VERSION] = VERSION;
    assert_eq!(decode_client(&short), Err(RejectReason::BadLength));
    // The field: printable ASCII, then zeros only.
    let mut bad = b.clone();
    bad[field::LOGON_PASSWORD.start] = 0x07;
    assert_eq!(decode_client(&bad), Err(RejectReason::BadPassword));
    let mut gap = b.clone();
    gap[field::LOGON_PASSWORD.end - 1] = b'x';
    assert_eq!(decode_client(&gap), Err(RejectReason::BadPassword), "bytes after the zero padding");
    let mut p = password;
    p.wipe();
    assert!(p.is_empty() && p.expose().is_empty());
    assert!(Password::new(&"x".repeat(PASSWORD_LEN + 1)).is_none());
}

#[test]
fn reject_reason_codes_are_stable_and_unique() {
    for (i, r) in RejectReason::ALL.iter().enumerate() {
        assert_eq!(*r as u8 as usize, i + 1);
        assert_eq!(RejectReason::from_u8(*r as u8), Some(*r));
    }
    assert_eq!(RejectReason::from_u8(0), None);
    assert_eq!(RejectReason::from_u8(200), None);
}

#[test]
fn reject_refs_recovers_ids() {
    let b = client_frame(ClientMsg::Cancel { cl_ord_id: 5, client_ts: 6 }, 1);
    let Parsed::Frame(f) = Frame::parse(&b).unwrap() else { panic!() };
    assert_eq!(reject_refs(&f), (5, 6));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]
    /// The decoder never panics and never claims more bytes than it was given,
    /// and walking a random stream frame by frame always terminates.
    #[test]
    fn decoder_total_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut rest: &[u8] = &bytes;
        loop {
            match Frame::parse(rest) {
                Ok(Parsed::Incomplete) | Err(_) => break,
                Ok(Parsed::Frame(f)) => {
                    prop_assert!(f.len() >= HEADER_LEN && f.len() <= rest.len());
                    let _ = ClientMsg::decode(&f);
                    let _ = GatewayMsg::decode(&f);
                    let _ = reject_refs(&f);
                    rest = &rest[f.len()..];
                }
            }
        }
    }

    /// Valid frames with one random byte changed decode to a message or a
    /// typed reject, never a panic.
    #[test]
    fn mutated_valid_frames(idx in 0usize..48, val in any::<u8>()) {
        let mut b = client_frame(ClientMsg::NewOrder(order()), 3);
        b[idx] = val;
        if let Ok(Parsed::Frame(f)) = Frame::parse(&b) {
            let _ = ClientMsg::decode(&f);
        }
    }
}
