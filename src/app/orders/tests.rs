//! The gateway's session rules, in local mode.

use super::*;
use crate::proto::{self, msg_type, ClientMsg, Code8, Frame, NewOrder, OrderKind, Parsed, RejectReason, Side};

struct Client {
    seq: u32,
    app: Orders,
    s: Session,
    out: OutBuf,
    rx_seq: u32,
}

impl Client {
    fn new(cfg: OrdersConfig) -> Self {
        let mut app = Orders::new(cfg);
        let s = app.open(ConnId(0), 0);
        Client { seq: 1, app, s, out: OutBuf::with_capacity(4096), rx_seq: 1 }
    }
    fn send_raw(&mut self, bytes: &[u8]) -> (usize, Verdict) {
        self.app.on_input(&mut self.s, bytes, &mut self.out, &mut Tracer::disabled(), 11, 0)
    }
    fn send(&mut self, m: ClientMsg) -> Verdict {
        let mut b = [0u8; 64];
        let n = m.encode(self.seq, &mut b).unwrap();
        self.seq += 1;
        let (used, v) = self.send_raw(&b[..n]);
        assert_eq!(used, n);
        v
    }
    /// Drain replies, checking the gateway's sequence numbers.
    fn replies(&mut self) -> Vec<GatewayMsg> {
        let mut v = Vec::new();
        let bytes = self.out.as_slice().to_vec();
        let mut off = 0;
        while let Ok(Parsed::Frame(f)) = Frame::parse(&bytes[off..]) {
            assert_eq!(f.seq(), self.rx_seq, "gateway sequence");
            self.rx_seq += 1;
            v.push(GatewayMsg::decode(&f).unwrap());
            off += f.len();
        }
        assert_eq!(off, bytes.len());
        self.out.clear();
        v
    }
    fn logon(&mut self) {
        assert_eq!(self.send(ClientMsg::logon(Code8::new("T1").unwrap())), Verdict::Continue);
        assert!(matches!(self.replies()[..], [GatewayMsg::LogonAck { .. }]));
    }
}

/// A limit order (shared with the other test modules).
pub(super) fn limit(id: u64) -> ClientMsg {
    ClientMsg::NewOrder(NewOrder {
        cl_ord_id: id,
        client_ts: 1000 + id,
        price: 100,
        qty: 1,
        side: Side::Buy,
        kind: OrderKind::Limit,
        symbol: Code8::new("ABC").unwrap(),
    })
}

/// Every gateway message in `bytes`, in order.
fn decode_all(bytes: &[u8]) -> Vec<GatewayMsg> {
    let mut v = Vec::new();
    let mut off = 0;
    while let Ok(Parsed::Frame(f)) = Frame::parse(&bytes[off..]) {
        v.push(GatewayMsg::decode(&f).unwrap());
        off += f.len();
    }
    v
}

fn reason_of(m: &GatewayMsg) -> RejectReason {
    match m {
        GatewayMsg::Reject { reason, .. } => *reason,
        other => panic!("expected reject, got {other:?}"),
    }
}

#[test]
fn order_ack_echoes_client_timestamp() {
    let mut c = Client::new(OrdersConfig::default());
    c.logon();
    c.send(limit(5));
    match c.replies()[..] {
        [GatewayMsg::Ack { cl_ord_id: 5, client_ts: 1005, gw_recv_ts: 11, gw_send_ts, order_id: 1 }] => {
            assert!(gw_send_ts > 0)
        }
        ref other => panic!("{other:?}"),
    }
    c.send(ClientMsg::Cancel { cl_ord_id: 5, client_ts: 77 });
    assert!(matches!(c.replies()[..], [GatewayMsg::CancelAck { cl_ord_id: 5, client_ts: 77, .. }]));
    assert_eq!(c.app.counters.orders_acked, 1);
    assert_eq!(c.app.counters.cancels_acked, 1);
}

/// Regression: the set was sized for 1024 and grew (reallocating on the
/// loop) past about 900 open orders while the limit was 10,000. It is
/// sized at the Logon: a connection that never logs on has none.
#[test]
fn open_orders_up_to_the_limit_never_reallocate() {
    let max = 3000;
    let mut c = Client::new(OrdersConfig { max_open_orders: max, ..Default::default() });
    c.out = OutBuf::with_capacity(1 << 20);
    assert_eq!(c.app.clients.get(0, c.s.gen).unwrap().open.capacity(), 0, "no order map before the Logon");
    c.logon();
    let cap = c.app.clients.get(0, c.s.gen).unwrap().open.capacity();
    assert!(cap >= max, "capacity {cap} < limit {max}");
    for id in 1..=max as u64 + 5 {
        c.send(limit(id));
        let _ = c.replies();
    }
    assert_eq!(c.app.clients.get(0, c.s.gen).unwrap().open.len(), max);
    assert_eq!(c.app.clients.get(0, c.s.gen).unwrap().open.capacity(), cap, "the open-orders set reallocated");
}

#[test]
fn session_reject_reasons() {
    let mut c = Client::new(OrdersConfig { max_open_orders: 1, ..Default::default() });
    c.send(limit(1));
    assert_eq!(reason_of(&c.replies()[0]), RejectReason::NotLoggedOn);
    c.logon();
    c.send(ClientMsg::logon(Code8::new("T1").unwrap()));
    assert_eq!(reason_of(&c.replies()[0]), RejectReason::AlreadyLoggedOn);
    c.send(limit(1));
    assert!(matches!(c.replies()[0], GatewayMsg::Ack { .. }));
    c.send(limit(1));
    assert_eq!(reason_of(&c.replies()[0]), RejectReason::DuplicateOrderId);
    c.send(limit(2));
    assert_eq!(reason_of(&c.replies()[0]), RejectReason::TooManyOpenOrders);
    c.send(ClientMsg::Cancel { cl_ord_id: 9, client_ts: 0 });
    let r = c.replies();
    assert_eq!(reason_of(&r[0]), RejectReason::UnknownOrder);
    assert!(matches!(r[0], GatewayMsg::Reject { cl_ord_id: 9, ref_type: msg_type::CANCEL, .. }));
    assert_eq!(c.app.counters.rejects_total(), 5);
    assert_eq!(c.app.counters.rejects[RejectReason::DuplicateOrderId as usize], 1);
}

#[test]
fn codec_reject_keeps_session_and_sequence() {
    let mut c = Client::new(OrdersConfig::default());
    c.logon();
    let mut b = [0u8; 64];
    let n = limit(3).encode(c.seq, &mut b).unwrap();
    c.seq += 1;
    b[proto::field::ORDER_SIDE] = 9;
    assert_eq!(c.send_raw(&b[..n]), (n, Verdict::Continue));
    let r = c.replies();
    assert!(matches!(r[0], GatewayMsg::Reject { reason: RejectReason::BadSide, cl_ord_id: 3, client_ts: 1003, .. }));
    assert_eq!(c.send(limit(4)), Verdict::Continue);
    assert!(matches!(c.replies()[0], GatewayMsg::Ack { cl_ord_id: 4, .. }));
}

#[test]
fn sequence_gap_rejects_and_logs_out() {
    let mut c = Client::new(OrdersConfig::default());
    c.logon();
    c.seq += 1; // skip one
    assert_eq!(c.send(limit(1)), Verdict::Close);
    let r = c.replies();
    assert_eq!(reason_of(&r[0]), RejectReason::SeqGap);
    assert!(matches!(r[0], GatewayMsg::Reject { ref_seq: 3, .. }));
    assert!(matches!(r[1], GatewayMsg::Logout { reason: LogoutReason::SeqGap }));
    assert_eq!(c.app.counters.seq_gaps, 1);
}

#[test]
fn framing_error_aborts() {
    let mut c = Client::new(OrdersConfig::default());
    c.logon();
    assert_eq!(c.send_raw(&[0xff, 0xff, 1, 2, 3]), (0, Verdict::Abort));
    assert_eq!(c.app.counters.framing_errors, 1);
}

#[test]
fn partial_frames_wait_for_more() {
    let mut c = Client::new(OrdersConfig::default());
    let mut b = [0u8; 64];
    let n = ClientMsg::logon(Code8::new("X").unwrap()).encode(1, &mut b).unwrap();
    assert_eq!(c.send_raw(&b[..n - 1]), (0, Verdict::Continue));
    assert_eq!(c.send_raw(&b[..n]), (n, Verdict::Continue));
}

#[test]
fn backpressure_stops_consuming() {
    let mut c = Client::new(OrdersConfig::default());
    c.out = OutBuf::with_capacity(MAX_REPLY - 1);
    let mut b = [0u8; 64];
    let n = ClientMsg::Heartbeat.encode(1, &mut b).unwrap();
    assert_eq!(c.send_raw(&b[..n]), (0, Verdict::Continue));
}

#[test]
fn heartbeat_and_idle_timeout() {
    let cfg = OrdersConfig { heartbeat_ms: 100, idle_timeout_ms: 300, ..Default::default() };
    let mut c = Client::new(cfg);
    c.logon();
    let ms = 1_000_000;
    assert_eq!(c.app.on_tick(&mut c.s, &mut c.out, 50 * ms), Verdict::Continue);
    assert!(c.replies().is_empty());
    assert_eq!(c.app.on_tick(&mut c.s, &mut c.out, 150 * ms), Verdict::Continue);
    assert!(matches!(c.replies()[..], [GatewayMsg::Heartbeat]));
    assert_eq!(c.app.on_tick(&mut c.s, &mut c.out, 400 * ms), Verdict::Close);
    assert!(matches!(c.replies()[..], [GatewayMsg::Logout { reason: LogoutReason::IdleTimeout }]));
    assert_eq!(c.app.counters.idle_timeouts, 1);
}

#[test]
fn a_session_that_never_logs_on_is_logged_out_at_the_idle_timeout_whatever_it_sends() {
    let cfg = OrdersConfig { heartbeat_ms: 100, idle_timeout_ms: 300, ..Default::default() };
    let mut c = Client::new(cfg);
    let ms = 1_000_000;
    // Heartbeats every 100 ms, each refused not_logged_on: they keep no
    // connection slot alive.
    for (i, t) in [100u64, 200].iter().enumerate() {
        let mut b = [0u8; 64];
        let n = ClientMsg::Heartbeat.encode(i as u32 + 1, &mut b).unwrap();
        let (used, v) = c.app.on_input(&mut c.s, &b[..n], &mut c.out, &mut Tracer::disabled(), 11, t * ms);
        assert_eq!((used, v), (n, Verdict::Continue));
        assert_eq!(reason_of(&c.replies()[0]), RejectReason::NotLoggedOn);
        assert_eq!(c.app.on_tick(&mut c.s, &mut c.out, t * ms + ms), Verdict::Continue);
    }
    assert_eq!(c.app.on_tick(&mut c.s, &mut c.out, 300 * ms), Verdict::Close);
    assert!(matches!(c.replies()[..], [GatewayMsg::Logout { reason: LogoutReason::IdleTimeout }]));
    assert_eq!(c.app.counters.idle_timeouts, 1);
}

#[test]
fn a_malformed_logons_sample_keeps_no_password_byte() {
    let mut c = Client::new(OrdersConfig::default());
    let password = proto::Password::new("hunter2hunter2").unwrap();
    let mut b = [0u8; 64];
    let n = ClientMsg::Logon { account: Code8::new("A").unwrap(), password }.encode(1, &mut b).unwrap();
    b[n - 1] = b'x'; // a byte after the zero padding: bad_password
    let (mut tr, consumer) = Tracer::new(
        &crate::sampler::policy::SamplingConfig::default(),
        crate::sampler::inject::InjectConfig::default(),
        0,
    )
    .unwrap();
    let mut consumer = consumer.unwrap();
    tr.begin_iteration(1, 1, true, 0);
    tr.begin_input(0, crate::sampler::tracer::RxTrace { arrival_ns: 1, flags: 0 });
    c.app.on_input(&mut c.s, &b[..n], &mut c.out, &mut tr, 11, 0);
    tr.end_input(0, 0);
    tr.end_iteration((2, 3), 4, 0);
    assert_eq!(reason_of(&c.replies()[0]), RejectReason::BadPassword);
    let s = consumer.pop().expect("the Logon was sampled");
    assert_eq!(s.payload_len, 16, "{:?}", &s.payload[..]);
    assert!(!s.payload.windows(4).any(|w| w == b"hunt"), "{:?}", &s.payload[..]);
}

#[test]
fn logout_closes_after_reply() {
    let mut c = Client::new(OrdersConfig::default());
    c.logon();
    assert_eq!(c.send(ClientMsg::Logout), Verdict::Close);
    assert!(matches!(c.replies()[..], [GatewayMsg::Logout { reason: LogoutReason::Normal }]));
}

mod upstream_helpers {
    pub(super) use super::*;
    pub use crate::upstream::soup_client::SoupClientConfig;
    pub use crate::upstream::state::SessionState;
    pub use crate::venue::ouch::{self, Outbound};
    pub use crate::venue::soup::{self, Packet};

    pub fn gateway() -> (Orders, Session, Session) {
        let up = UpstreamConfig {
            addr: "198.18.0.3:26400".parse().unwrap(),
            soup: SoupClientConfig::new("gw0", "pw"),
            username: "gw0".into(),
            state: SessionState::in_memory(),
        };
        let mut app = Orders::with_upstream(OrdersConfig::default(), up);
        app.on_loop_tick(0);
        let r = app.requests().unwrap();
        assert_eq!(r.connects.len(), 1, "the loop is asked to connect");
        let ups = app.open_outbound(ConnId(9), CONNECT_TOKEN, 0);
        let client = app.open(ConnId(1), 0);
        (app, ups, client)
    }

    pub fn pkt(p: Packet<'_>) -> Vec<u8> {
        let mut b = [0u8; 256];
        let n = soup::encode(&p, &mut b).unwrap();
        b[..n].to_vec()
    }

    pub fn seq(m: &Outbound) -> Vec<u8> {
        let mut b = [0u8; 128];
        let n = ouch::encode_outbound(m, &mut b).unwrap();
        pkt(Packet::Sequenced(&b[..n]))
    }

    pub fn accepted(token: u32, qty: u32) -> ouch::Accepted {
        ouch::Accepted {
            ts: 1,
            user_ref: token,
            side: b'B',
            qty,
            symbol: *b"ABC     ",
            price: 100,
            tif: b'0',
            display: b'Y',
            order_ref: u64::from(token) + 100,
            capacity: b'A',
            iso: b'N',
            cross: b'N',
            state: b'L',
            cl_ord_id: [b' '; 14],
        }
    }
}

mod upstream {
    use super::upstream_helpers::*;

    #[test]
    fn malformed_and_out_of_state_reports_are_counted_and_change_nothing() {
        let (mut app, mut ups, _client) = gateway();
        let mut out = OutBuf::with_capacity(4096);
        let mut input = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
        input.extend(pkt(Packet::Sequenced(b"Zgarbage")));
        input.extend(pkt(Packet::Sequenced(b"")));
        input.extend(seq(&Outbound::Executed {
            ts: 1,
            user_ref: 77,
            qty: 1,
            price: 1,
            liquidity: b'A',
            match_number: 1,
        }));
        input.extend(seq(&Outbound::CancelReject { ts: 1, user_ref: 78 }));
        let mut used = 0;
        while used < input.len() {
            let (n, v) = app.on_input(&mut ups, &input[used..], &mut out, &mut Tracer::disabled(), 0, 1);
            assert_eq!(v, Verdict::Continue);
            assert!(n > 0);
            used += n;
        }
        let c = &app.counters;
        assert_eq!((c.upstream_malformed, c.unknown_tokens, c.invalid_transitions), (2, 2, 0));
        assert!(app.upstream_up(), "the session survives them");
        assert_eq!(app.up.as_ref().unwrap().client.next_seq(), 5, "each was processed once");
    }

    #[test]
    fn a_version_1_logon_is_refused_when_fills_must_reach_the_client() {
        let (mut app, _ups, mut s) = gateway();
        let mut out = OutBuf::with_capacity(4096);
        let mut b = [0u8; 64];
        let n = ClientMsg::logon(Code8::new("T1").unwrap()).encode_as(crate::proto::VERSION_1, 1, &mut b).unwrap();
        app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
        let Ok(Parsed::Frame(f)) = Frame::parse(out.as_slice()) else { panic!("a reply") };
        assert_eq!(f.version(), crate::proto::VERSION_1, "answered in the client's version");
        assert!(matches!(GatewayMsg::decode(&f), Ok(GatewayMsg::Reject { reason: RejectReason::BadVersion, .. })));
    }

    #[test]
    fn an_order_while_the_exchange_is_down_is_rejected_at_once() {
        let (mut app, _ups, mut s) = gateway();
        let mut out = OutBuf::with_capacity(4096);
        let mut b = [0u8; 64];
        for (seqn, m) in (1..).zip([ClientMsg::logon(Code8::new("T1").unwrap()), limit(1)]) {
            let n = m.encode(seqn, &mut b).unwrap();
            app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
        }
        let bytes = out.as_slice().to_vec();
        let Ok(Parsed::Frame(f)) = Frame::parse(&bytes) else { panic!() };
        let Ok(Parsed::Frame(g)) = Frame::parse(&bytes[f.len()..]) else { panic!("a second reply") };
        assert!(matches!(
            GatewayMsg::decode(&g),
            Ok(GatewayMsg::Reject { reason: RejectReason::ExchangeUnavailable, cl_ord_id: 1, .. })
        ));
        assert_eq!(app.live_orders(), 0, "nothing queued");
    }
}

mod reports {
    use super::upstream_helpers::*;
    use crate::venue::ouch::Outbound;
    use crate::venue::soup::Packet;

    /// A burst of reports larger than a session's outbox waits in the
    /// upstream input until the session has room: none is lost, none
    /// reordered, and the session is not reset.
    #[test]
    fn a_burst_of_fills_waits_for_the_sessions_room() {
        let (mut app, mut ups, mut s) = gateway();
        let mut out = OutBuf::with_capacity(1 << 20);
        let mut b = [0u8; 64];
        let login = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
        let (n, _) = app.on_input(&mut ups, &login, &mut out, &mut Tracer::disabled(), 0, 1);
        assert_eq!(n, login.len());
        let big = match limit(1) {
            ClientMsg::NewOrder(o) => ClientMsg::NewOrder(NewOrder { qty: 1000, ..o }),
            _ => unreachable!(),
        };
        for (seqn, m) in (1..).zip([ClientMsg::logon(Code8::new("T1").unwrap()), big]) {
            let n = m.encode(seqn, &mut b).unwrap();
            app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
        }
        out.clear();
        let token = 1;
        let mut input = seq(&Outbound::Accepted(accepted(token, 1000)));
        for i in 0..600u64 {
            input.extend(seq(&Outbound::Executed {
                ts: 1,
                user_ref: token,
                qty: 1,
                price: 100,
                liquidity: b'A',
                match_number: i + 1,
            }));
        }
        let (mut at, mut fills, mut rounds) = (0, 0u64, 0);
        let mut upout = OutBuf::with_capacity(1 << 20);
        while at < input.len() {
            rounds += 1;
            assert!(rounds < 100, "no progress");
            let (n, v) = app.on_input(&mut ups, &input[at..], &mut upout, &mut Tracer::disabled(), 0, 2);
            assert_eq!(v, Verdict::Continue);
            at += n;
            // The client reads: its outbox moves into its connection.
            let mut cout = OutBuf::with_capacity(1 << 20);
            assert_eq!(app.on_wake(&mut s, &mut cout, 3), Verdict::Continue);
            let bytes = cout.as_slice();
            let mut off = 0;
            while let Ok(Parsed::Frame(f)) = Frame::parse(&bytes[off..]) {
                if let Ok(GatewayMsg::Fill { exec_id, leaves, .. }) = GatewayMsg::decode(&f) {
                    fills += 1;
                    assert_eq!(exec_id, fills, "in order");
                    assert_eq!(leaves as u64, 1000 - fills);
                }
                off += f.len();
            }
        }
        assert!(rounds > 2, "the burst did not fit at once ({rounds} rounds)");
        assert_eq!(fills, 600);
        assert_eq!(app.counters.slow_client_aborts, 0);
    }

    /// A session that closes with orders at the exchange has them cancelled.
    #[test]
    fn a_closing_session_cancels_its_orders_at_the_exchange() {
        let (mut app, mut ups, mut s) = gateway();
        let mut out = OutBuf::with_capacity(1 << 16);
        let login = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
        app.on_input(&mut ups, &login, &mut out, &mut Tracer::disabled(), 0, 1);
        let mut b = [0u8; 64];
        for (seqn, m) in (1..).zip([ClientMsg::logon(Code8::new("T1").unwrap()), limit(1), limit(2)]) {
            let n = m.encode(seqn, &mut b).unwrap();
            app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
        }
        let accept = [seq(&Outbound::Accepted(accepted(1, 1))), seq(&Outbound::Accepted(accepted(2, 1)))].concat();
        app.on_input(&mut ups, &accept, &mut out, &mut Tracer::disabled(), 0, 2);
        let mut upout = OutBuf::with_capacity(1 << 16);
        app.on_wake(&mut ups, &mut upout, 3);
        let before = upout.len();
        app.on_close(s, "test");
        assert_eq!(app.counters.cancels_on_disconnect, 2);
        let mut upout2 = OutBuf::with_capacity(1 << 16);
        app.on_wake(&mut ups, &mut upout2, 4);
        // Two Cancel Order messages (SoupBinTCP header 3 + OUCH 9 bytes each).
        assert_eq!(upout2.len(), 2 * (3 + 9), "before {before}");
        assert!(upout2.as_slice().chunks(12).all(|p| p[2] == b'U' && p[3] == b'X'));
        let canceled =
            [1u32, 2].map(|t| seq(&Outbound::Canceled { ts: 1, user_ref: t, qty: 1, reason: b'U' })).concat();
        app.on_input(&mut ups, &canceled, &mut out, &mut Tracer::disabled(), 0, 5);
        assert_eq!(app.live_orders(), 0);
        assert_eq!(app.counters.reports_for_closed_sessions, 2);
    }
}

/// An order whose Enter was in flight when the exchange session dropped,
/// and whose cancel came meanwhile (its session closed; the same for the
/// kill switch or the client's own cancel), is not entered again at the
/// next login: only its Cancel goes. An order nobody cancelled is.
#[test]
fn an_order_cancelled_while_the_exchange_was_down_is_not_entered_again() {
    use upstream_helpers::*;
    let (mut app, mut ups, mut s) = gateway();
    let mut out = OutBuf::with_capacity(1 << 16);
    let login = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
    app.on_input(&mut ups, &login, &mut out, &mut Tracer::disabled(), 0, 1);
    let mut b = [0u8; 64];
    for (seqn, m) in (1..).zip([ClientMsg::logon(Code8::new("T1").unwrap()), limit(1)]) {
        let n = m.encode(seqn, &mut b).unwrap();
        app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
    }
    // A second session's order, which nobody cancels.
    let mut s2 = app.open(ConnId(2), 1);
    for (seqn, m) in (1..).zip([ClientMsg::logon(Code8::new("T2").unwrap()), limit(7)]) {
        let n = m.encode(seqn, &mut b).unwrap();
        app.on_input(&mut s2, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
    }
    // Down before either is accepted; the first session closes meanwhile.
    app.on_close(ups, "test");
    app.on_close(s, "test");
    assert_eq!(app.counters.cancels_on_disconnect, 1);
    let ms = 1_000_000;
    app.requests().unwrap().connects.clear();
    app.on_loop_tick(10_000 * ms);
    let mut ups = app.open_outbound(ConnId(9), CONNECT_TOKEN, 10_000 * ms);
    let mut upout = OutBuf::with_capacity(1 << 16);
    app.on_wake(&mut ups, &mut upout, 10_000 * ms);
    upout.clear();
    let login = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
    app.on_input(&mut ups, &login, &mut upout, &mut Tracer::disabled(), 0, 10_001 * ms);
    app.on_wake(&mut ups, &mut upout, 10_002 * ms);
    // Unsequenced data packets: [len hi, len lo, 'U', OUCH type, ...].
    let mut types = Vec::new();
    let bytes = upout.as_slice();
    let mut off = 0;
    while off + 4 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[off], bytes[off + 1]]));
        if bytes[off + 2] == b'U' {
            types.push(bytes[off + 3]);
        }
        off += 2 + len;
    }
    // In token order: the first order's Cancel, the second's Enter.
    assert_eq!(types, [b'X', b'O'], "the cancelled order only cancelled, the other entered again: {types:?}");
    // A server heartbeat does not end the replay (a venue heartbeats
    // whenever it sent nothing for a second, mid-replay too): the held
    // order stays held, and so does its credit.
    assert_eq!(app.live_orders(), 2);
    app.on_input(&mut ups, &pkt(Packet::ServerHeartbeat), &mut upout, &mut Tracer::disabled(), 0, 10_003 * ms);
    assert_eq!(app.counters.never_at_exchange, 0);
    assert_eq!(app.live_orders(), 2);
    // The re-entered order's answer is no proof either (it may be the replay's).
    app.on_input(
        &mut ups,
        &seq(&Outbound::Accepted(accepted(2, 1))),
        &mut upout,
        &mut Tracer::disabled(),
        0,
        10_004 * ms,
    );
    assert_eq!(app.counters.never_at_exchange, 0);
    let mut out2 = OutBuf::with_capacity(1 << 16);
    app.on_wake(&mut s2, &mut out2, 10_005 * ms);
    let got = decode_all(out2.as_slice());
    assert!(got.iter().any(|m| matches!(m, GatewayMsg::Ack { cl_ord_id: 7, .. })), "{got:?}");
}

/// A session still there whose order was cancelled in flight hears how it
/// ended: Reject `exchange_unavailable` for the order, CancelReject for its
/// cancel, once an answer about an order entered after the login shows the
/// replay is over.
#[test]
fn a_held_order_the_venue_never_had_is_rejected_and_its_cancel_refused() {
    use upstream_helpers::*;
    let (mut app, mut ups, mut s) = gateway();
    let mut out = OutBuf::with_capacity(1 << 16);
    let mut up0 = OutBuf::with_capacity(1 << 16);
    let login = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
    app.on_input(&mut ups, &login, &mut up0, &mut Tracer::disabled(), 0, 1);
    let mut b = [0u8; 64];
    for (seqn, m) in (1..).zip([ClientMsg::logon(Code8::new("T1").unwrap()), limit(1)]) {
        let n = m.encode(seqn, &mut b).unwrap();
        app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
    }
    let n = ClientMsg::Cancel { cl_ord_id: 1, client_ts: 5 }.encode(3, &mut b).unwrap();
    app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 1);
    app.on_close(ups, "test");
    let ms = 1_000_000;
    app.requests().unwrap().connects.clear();
    app.on_loop_tick(10_000 * ms);
    let mut ups = app.open_outbound(ConnId(9), CONNECT_TOKEN, 10_000 * ms);
    let mut upout = OutBuf::with_capacity(1 << 16);
    app.on_input(&mut ups, &login, &mut upout, &mut Tracer::disabled(), 0, 10_001 * ms);
    // A new order after the login, and the venue's answer to it.
    let n = limit(2).encode(4, &mut b).unwrap();
    app.on_input(&mut s, &b[..n], &mut out, &mut Tracer::disabled(), 0, 10_002 * ms);
    assert_eq!(app.counters.never_at_exchange, 0, "not before the replay is known to be over");
    app.on_input(
        &mut ups,
        &seq(&Outbound::Accepted(accepted(2, 1))),
        &mut upout,
        &mut Tracer::disabled(),
        0,
        10_003 * ms,
    );
    assert_eq!(app.counters.never_at_exchange, 1);
    let mut cout = OutBuf::with_capacity(1 << 16);
    app.on_wake(&mut s, &mut cout, 10_004 * ms);
    let got = decode_all(&[out.as_slice(), cout.as_slice()].concat());
    assert!(
        got.iter()
            .any(|m| matches!(m, GatewayMsg::Reject { cl_ord_id: 1, reason: RejectReason::ExchangeUnavailable, .. })),
        "{got:?}"
    );
    assert!(got.iter().any(|m| matches!(m, GatewayMsg::CancelReject { cl_ord_id: 1, .. })), "{got:?}");
    assert_eq!(app.live_orders(), 1, "only the new order is live");
}

/// Every exchange message is journaled: one about a token this run does
/// not know (replayed from before a restart) with the token and no session,
/// and a System Event with its code.
#[test]
fn every_exchange_message_is_journaled_known_or_not() {
    use crate::journal::{kind, reader, writer};
    use upstream_helpers::*;
    let dir = std::env::temp_dir().join(format!("tailgate-orders-journal-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg = writer::JournalConfig { dir: dir.clone(), segment_bytes: 64 * 1024, sync_ms: 0 };
    let (keeper, mut writers) = writer::open(cfg, 1, vec![], None).unwrap();
    let (app, mut ups, _s) = gateway();
    let mut app = app.with_journal(writers.remove(0));
    let mut out = OutBuf::with_capacity(1 << 16);
    let mut input = pkt(Packet::LoginAccepted { session: *b"         1", next_seq: 1 });
    input.extend(seq(&Outbound::Executed { ts: 1, user_ref: 77, qty: 3, price: 5, liquidity: b'A', match_number: 9 }));
    input.extend(seq(&Outbound::SystemEvent { ts: 1, code: b'S' }));
    let mut used = 0;
    while used < input.len() {
        used += app.on_input(&mut ups, &input[used..], &mut out, &mut Tracer::disabled(), 0, 1).0;
    }
    drop(app);
    drop(keeper);
    let (records, _) = reader::read_all(&dir).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let ex: Vec<_> = records.iter().filter(|r| r.kind == kind::EXCHANGE).collect();
    assert_eq!(ex.len(), 2, "{records:?}");
    assert_eq!((ex[0].side, ex[0].qty, ex[0].extra, ex[0].session, ex[0].cl_ord_id), (b'E', 3, 77, 0, 0));
    assert_eq!((ex[1].side, ex[1].price), (b'S', i64::from(b'S')));
}

/// The table's dense list of live tokens follows every insert and remove,
/// whatever the order (the kill switch and a login's resend walk it).
#[test]
fn the_tables_live_list_follows_inserts_and_removes() {
    use super::lifecycle::{enter_for, Order, Table};
    let o = NewOrder {
        cl_ord_id: 1,
        client_ts: 0,
        price: 100,
        qty: 1,
        side: Side::Buy,
        kind: OrderKind::Limit,
        symbol: Code8::new("ABC").unwrap(),
    };
    let order = |token: u32| Order {
        conn: 0,
        gen: 1,
        cl_ord_id: u64::from(token),
        client_ts: 0,
        ref_seq: 1,
        acct: None,
        buy: true,
        px: 0,
        name: [b' '; 8],
        leaves: 1,
        accepted: false,
        order_id: 0,
        cancel: None,
        swept: false,
        enter: enter_for(&o, token),
        t_in: 0,
        t_sent: 0,
        resent: false,
        held: false,
        at: 0,
    };
    let mut t = Table::new(64);
    for token in 1..=10 {
        t.insert(token, order(token));
    }
    for token in [3, 10, 1, 7] {
        assert_eq!(t.remove(token).map(|o| o.cl_ord_id), Some(u64::from(token)));
        assert!(t.remove(token).is_none());
    }
    let mut live = t.live.clone();
    live.sort_unstable();
    assert_eq!(live, vec![2, 4, 5, 6, 8, 9]);
    for (i, &token) in t.live.iter().enumerate() {
        assert_eq!(t.orders.get(u64::from(token)).unwrap().at as usize, i, "token {token}'s place");
    }
}
