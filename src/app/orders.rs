//! The order-entry gateway: sessions, sequence numbers, validation, acks.
//!
//! There is no matching engine behind it: a valid limit order is acked and
//! stays open until cancelled; a valid market order is acked and is done.
//! The point is the path a message takes, and the replies a client relies on.
//! See docs/PROTOCOL.md for the rules this file implements.

use std::collections::HashSet;

use super::{App, OutBuf, Verdict};
use crate::proto::{self, reject_refs, ClientMsg, Frame, GatewayMsg, LogoutReason, OrderKind, Parsed, RejectReason};
use crate::sampler::{kind, tracer::Tracer};
use crate::transport::ConnId;

/// Worst-case reply bytes for one inbound message (Reject + Logout).
const MAX_REPLY: usize = 40 + 16;

/// Gateway configuration, validated by the CLI.
#[derive(Debug, Clone, Copy)]
pub struct OrdersConfig {
    /// The gateway sends a Heartbeat when it has sent nothing for this long.
    pub heartbeat_ms: u32,
    /// A session that receives nothing for this long is logged out.
    pub idle_timeout_ms: u32,
    /// Open (live limit) orders allowed per session.
    pub max_open_orders: usize,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig { heartbeat_ms: 1000, idle_timeout_ms: 5000, max_open_orders: 10_000 }
    }
}

/// Counters, printed at exit (and exported by the metrics work later).
#[derive(Debug, Default, Clone)]
pub struct OrdersCounters {
    pub sessions: u64,
    pub logons: u64,
    pub messages_in: u64,
    pub messages_out: u64,
    pub orders_acked: u64,
    pub cancels_acked: u64,
    pub heartbeats_out: u64,
    /// Indexed by reject reason code.
    pub rejects: [u64; 32],
    pub framing_errors: u64,
    pub idle_timeouts: u64,
    pub seq_gaps: u64,
    /// Sessions sent a Logout (reason Shutdown) by a draining gateway.
    pub shutdown_logouts: u64,
}

impl OrdersCounters {
    pub fn rejects_total(&self) -> u64 {
        self.rejects.iter().sum()
    }
}

/// Per-connection session state.
#[derive(Debug)]
pub struct Session {
    conn: ConnId,
    logged_on: bool,
    /// Next sequence number expected from the client (first is 1).
    expect_seq: u32,
    /// Next sequence number the gateway sends (first is 1).
    out_seq: u32,
    open: HashSet<u64>,
    last_rx: u64,
    last_tx: u64,
}

/// The gateway application.
#[derive(Debug)]
pub struct Orders {
    cfg: OrdersConfig,
    next_order_id: u64,
    pub counters: OrdersCounters,
    /// Status of the message being handled: 0, or the reject reason code.
    status: u8,
}

impl Orders {
    pub fn new(cfg: OrdersConfig) -> Self {
        Orders { cfg, next_order_id: 1, counters: OrdersCounters::default(), status: 0 }
    }

    fn emit(&mut self, s: &mut Session, out: &mut OutBuf, msg: GatewayMsg, now: u64) {
        let mut buf = [0u8; proto::MAX_FRAME_LEN];
        // Both cannot fail: every gateway message fits MAX_FRAME_LEN, and the
        // caller checked MAX_REPLY bytes of space.
        if let Some(n) = msg.encode(s.out_seq, &mut buf) {
            if out.put(&buf[..n]) {
                self.counters.messages_out += 1;
                s.out_seq = s.out_seq.wrapping_add(1);
                s.last_tx = now;
            }
        }
    }

    fn reject(
        &mut self,
        s: &mut Session,
        out: &mut OutBuf,
        f: &Frame<'_>,
        reason: RejectReason,
        recv_ts: u64,
        now: u64,
    ) {
        self.counters.rejects[reason as usize] += 1;
        self.status = reason as u8;
        let (cl_ord_id, client_ts) = reject_refs(f);
        let msg = GatewayMsg::Reject {
            cl_ord_id,
            client_ts,
            gw_recv_ts: recv_ts,
            ref_seq: f.seq(),
            reason,
            ref_type: f.msg_type(),
        };
        self.emit(s, out, msg, now);
    }

    /// Handle one well-framed message, traced as parsed (decoded) and
    /// handled (replies produced).
    fn handle(
        &mut self,
        s: &mut Session,
        f: &Frame<'_>,
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> Verdict {
        let decoded = ClientMsg::decode(f);
        let (k, id) = match &decoded {
            Ok(ClientMsg::Logon { .. }) => (kind::LOGON, 0),
            Ok(ClientMsg::Heartbeat) => (kind::HEARTBEAT, 0),
            Ok(ClientMsg::NewOrder(o)) if o.kind == OrderKind::Limit => (kind::LIMIT, o.cl_ord_id),
            Ok(ClientMsg::NewOrder(o)) => (kind::MARKET, o.cl_ord_id),
            Ok(ClientMsg::Cancel { cl_ord_id, .. }) => (kind::CANCEL, *cl_ord_id),
            Ok(ClientMsg::Logout) => (kind::LOGOUT, 0),
            Err(_) => (kind::INVALID, reject_refs(f).0),
        };
        tr.parsed(k, id, f.bytes());
        self.status = 0;
        let v = self.handle_decoded(s, f, decoded, out, recv_ts, now);
        tr.handled(self.status);
        v
    }

    fn handle_decoded(
        &mut self,
        s: &mut Session,
        f: &Frame<'_>,
        decoded: Result<ClientMsg, RejectReason>,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) -> Verdict {
        self.counters.messages_in += 1;
        s.last_rx = now;
        if f.seq() != s.expect_seq {
            self.counters.seq_gaps += 1;
            crate::log_info!(
                "orders: {}: sequence gap: expected {}, got {}: logging out",
                s.conn,
                s.expect_seq,
                f.seq()
            );
            self.reject(s, out, f, RejectReason::SeqGap, recv_ts, now);
            self.emit(s, out, GatewayMsg::Logout { reason: LogoutReason::SeqGap }, now);
            return Verdict::Close;
        }
        s.expect_seq = s.expect_seq.wrapping_add(1);
        let msg = match decoded {
            Ok(m) => m,
            Err(reason) => {
                self.reject(s, out, f, reason, recv_ts, now);
                return Verdict::Continue;
            }
        };
        if !s.logged_on && !matches!(msg, ClientMsg::Logon { .. }) {
            self.reject(s, out, f, RejectReason::NotLoggedOn, recv_ts, now);
            return Verdict::Continue;
        }
        match msg {
            ClientMsg::Logon { account } => {
                if s.logged_on {
                    self.reject(s, out, f, RejectReason::AlreadyLoggedOn, recv_ts, now);
                } else {
                    s.logged_on = true;
                    self.counters.logons += 1;
                    crate::log_debug!("orders: {}: logon account={}", s.conn, account.as_str());
                    let ack = GatewayMsg::LogonAck {
                        heartbeat_ms: self.cfg.heartbeat_ms,
                        idle_timeout_ms: self.cfg.idle_timeout_ms,
                    };
                    self.emit(s, out, ack, now);
                }
            }
            ClientMsg::Heartbeat => {}
            ClientMsg::NewOrder(o) => {
                if s.open.contains(&o.cl_ord_id) {
                    self.reject(s, out, f, RejectReason::DuplicateOrderId, recv_ts, now);
                } else if o.kind == OrderKind::Limit && s.open.len() >= self.cfg.max_open_orders {
                    self.reject(s, out, f, RejectReason::TooManyOpenOrders, recv_ts, now);
                } else {
                    if o.kind == OrderKind::Limit {
                        s.open.insert(o.cl_ord_id);
                    }
                    let order_id = self.next_order_id;
                    self.next_order_id += 1;
                    self.counters.orders_acked += 1;
                    let ack = GatewayMsg::Ack {
                        cl_ord_id: o.cl_ord_id,
                        client_ts: o.client_ts,
                        gw_recv_ts: recv_ts,
                        gw_send_ts: recv_ts,
                        order_id,
                    };
                    self.emit(s, out, ack, now);
                }
            }
            ClientMsg::Cancel { cl_ord_id, client_ts } => {
                if s.open.remove(&cl_ord_id) {
                    self.counters.cancels_acked += 1;
                    let ack = GatewayMsg::CancelAck { cl_ord_id, client_ts, gw_recv_ts: recv_ts, gw_send_ts: recv_ts };
                    self.emit(s, out, ack, now);
                } else {
                    self.reject(s, out, f, RejectReason::UnknownOrder, recv_ts, now);
                }
            }
            ClientMsg::Logout => {
                self.emit(s, out, GatewayMsg::Logout { reason: LogoutReason::Normal }, now);
                return Verdict::Close;
            }
        }
        Verdict::Continue
    }
}

impl App for Orders {
    type Session = Session;
    const WANTS_RECV_TS: bool = true;

    fn name(&self) -> &'static str {
        "orders"
    }

    fn open(&mut self, conn: ConnId, now: u64) -> Session {
        self.counters.sessions += 1;
        Session {
            conn,
            logged_on: false,
            expect_seq: 1,
            out_seq: 1,
            // Sized once, at accept, for the limit: the set never grows on
            // the hot path (an order beyond the limit is rejected first).
            // Only the control bytes are touched now; the slots' pages are
            // used as orders arrive.
            open: HashSet::with_capacity(self.cfg.max_open_orders),
            last_rx: now,
            last_tx: now,
        }
    }

    fn on_input(
        &mut self,
        s: &mut Session,
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> (usize, Verdict) {
        let mut off = 0;
        while out.spare() >= MAX_REPLY {
            match Frame::parse(&input[off..]) {
                Ok(Parsed::Incomplete) => break,
                Ok(Parsed::Frame(f)) => {
                    off += f.len();
                    let v = self.handle(s, &f, out, tr, recv_ts, now);
                    if v != Verdict::Continue {
                        return (off, v);
                    }
                }
                Err(e) => {
                    self.counters.framing_errors += 1;
                    crate::log_warn!("orders: {}: framing error: {e}: closing", s.conn);
                    return (off, Verdict::Abort);
                }
            }
        }
        (off, Verdict::Continue)
    }

    fn on_peer_fin(&mut self, _s: &mut Session, _leftover: &[u8], _out: &mut OutBuf) -> Verdict {
        Verdict::Close
    }

    fn on_tick(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) -> Verdict {
        let ms = 1_000_000u64;
        if now.saturating_sub(s.last_rx) >= self.cfg.idle_timeout_ms as u64 * ms {
            self.counters.idle_timeouts += 1;
            crate::log_info!("orders: {}: idle for {} ms: logging out", s.conn, self.cfg.idle_timeout_ms);
            if out.spare() >= MAX_REPLY {
                self.emit(s, out, GatewayMsg::Logout { reason: LogoutReason::IdleTimeout }, now);
            }
            return Verdict::Close;
        }
        if s.logged_on && now.saturating_sub(s.last_tx) >= self.cfg.heartbeat_ms as u64 * ms && out.spare() >= MAX_REPLY
        {
            self.counters.heartbeats_out += 1;
            self.emit(s, out, GatewayMsg::Heartbeat, now);
        }
        Verdict::Continue
    }

    fn on_shutdown(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) {
        // The server stops consuming input when the output lacks room for
        // the worst-case reply, so there is room for this one.
        if s.logged_on && out.spare() >= MAX_REPLY {
            self.counters.shutdown_logouts += 1;
            self.emit(s, out, GatewayMsg::Logout { reason: LogoutReason::Shutdown }, now);
        }
    }

    fn on_close(&mut self, _s: Session, _reason: &str) {}

    fn counters(&self) -> crate::app::AppCounters {
        let c = &self.counters;
        crate::app::AppCounters {
            messages_in: c.messages_in,
            messages_out: c.messages_out,
            rejects: c.rejects,
            framing_errors: c.framing_errors,
        }
    }

    fn summary(&self) -> String {
        let c = &self.counters;
        let mut rej = String::new();
        for r in RejectReason::ALL {
            let n = c.rejects[*r as usize];
            if n > 0 {
                rej.push_str(&format!(" reject_{}={n}", r.label()));
            }
        }
        format!(
            "orders: sessions={} logons={} messages_in={} orders_acked={} cancels_acked={} \
             heartbeats_out={} rejects={} framing_errors={} seq_gaps={} idle_timeouts={} shutdown_logouts={}{rej}",
            c.sessions,
            c.logons,
            c.messages_in,
            c.orders_acked,
            c.cancels_acked,
            c.heartbeats_out,
            c.rejects_total(),
            c.framing_errors,
            c.seq_gaps,
            c.idle_timeouts,
            c.shutdown_logouts
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{msg_type, Code8, NewOrder, Side};

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
            assert_eq!(self.send(ClientMsg::Logon { account: Code8::new("T1").unwrap() }), Verdict::Continue);
            assert!(matches!(self.replies()[..], [GatewayMsg::LogonAck { .. }]));
        }
    }

    fn limit(id: u64) -> ClientMsg {
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
    /// loop) past about 900 open orders while the limit was 10,000.
    #[test]
    fn open_orders_up_to_the_limit_never_reallocate() {
        let max = 3000;
        let mut c = Client::new(OrdersConfig { max_open_orders: max, ..Default::default() });
        c.out = OutBuf::with_capacity(1 << 20);
        let cap = c.s.open.capacity();
        assert!(cap >= max, "capacity {cap} < limit {max}");
        c.logon();
        for id in 1..=max as u64 + 5 {
            c.send(limit(id));
            let _ = c.replies();
        }
        assert_eq!(c.s.open.len(), max);
        assert_eq!(c.s.open.capacity(), cap, "the open-orders set reallocated");
    }

    #[test]
    fn session_reject_reasons() {
        let mut c = Client::new(OrdersConfig { max_open_orders: 1, ..Default::default() });
        c.send(limit(1));
        assert_eq!(reason_of(&c.replies()[0]), RejectReason::NotLoggedOn);
        c.logon();
        c.send(ClientMsg::Logon { account: Code8::new("T1").unwrap() });
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
        assert!(matches!(
            r[0],
            GatewayMsg::Reject { reason: RejectReason::BadSide, cl_ord_id: 3, client_ts: 1003, .. }
        ));
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
        let n = ClientMsg::Logon { account: Code8::new("X").unwrap() }.encode(1, &mut b).unwrap();
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
    fn logout_closes_after_reply() {
        let mut c = Client::new(OrdersConfig::default());
        c.logon();
        assert_eq!(c.send(ClientMsg::Logout), Verdict::Close);
        assert!(matches!(c.replies()[..], [GatewayMsg::Logout { reason: LogoutReason::Normal }]));
    }
}
