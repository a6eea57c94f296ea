//! A client session's messages: sequence, version and content checks,
//! Logon, and NewOrder and Cancel, either acknowledged here (local mode) or
//! sent on to the exchange (see `lifecycle.rs`).

use super::client::Open;
use super::{Orders, MAX_REPLY};
use crate::app::{OutBuf, Verdict};
use crate::proto::{
    msg_type, reject_refs, ClientMsg, Frame, GatewayMsg, LogoutReason, NewOrder, OrderKind, RejectReason, Side,
    VERSION_1,
};
use crate::risk::checks::Reserved;
use crate::sampler::{kind, tracer::Tracer};

/// What a client's input may do next ([`Orders::input_gate`]).
pub(super) enum Gate {
    /// Read the next message.
    Go,
    /// Not now: replies wait for room (the input stays).
    Wait,
    /// Stop with this verdict, the input kept.
    Stop(Verdict),
    /// Stop with this verdict, the input dropped (a closing session).
    Drop(Verdict),
}

impl Orders {
    /// Send `msg` on session (`conn`, `gen`) while it is served (`out` is its output).
    pub(super) fn send(&mut self, conn: usize, gen: u64, out: &mut OutBuf, msg: GatewayMsg, now: u64) {
        if self.clients.peek(conn, gen).is_some_and(|c| c.fix.on) {
            if self.fix_send(conn, gen, Some(out), msg, now) {
                self.counters.messages_out += 1;
            }
        } else if let Some(c) = self.clients.get(conn, gen) {
            if c.emit(Some(out), msg, now) {
                self.counters.messages_out += 1;
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn reject(
        &mut self,
        conn: usize,
        gen: u64,
        out: &mut OutBuf,
        f: &Frame<'_>,
        reason: RejectReason,
        recv_ts: u64,
        now: u64,
    ) {
        let (cl_ord_id, client_ts) = reject_refs(f);
        self.reject_ref(conn, gen, out, (cl_ord_id, client_ts, f.seq(), f.msg_type()), reason, recv_ts, now);
    }

    /// Refuse a message: `refs` are its `cl_ord_id`, `client_ts`, sequence
    /// number and type.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn reject_ref(
        &mut self,
        conn: usize,
        gen: u64,
        out: &mut OutBuf,
        refs: (u64, u64, u32, u8),
        reason: RejectReason,
        recv_ts: u64,
        now: u64,
    ) {
        self.counters.rejects[reason as usize] += 1;
        self.status = reason as u8;
        let (cl_ord_id, client_ts, ref_seq, ref_type) = refs;
        let msg = GatewayMsg::Reject {
            cl_ord_id,
            client_ts,
            gw_recv_ts: recv_ts,
            ref_seq,
            reason,
            ref_type,
            exchange_reason: 0,
        };
        self.send(conn, gen, out, msg, now);
    }

    /// Before a client's next message, either protocol: a doomed session
    /// is reset, a closing one (refused, killed) reads nothing more, what
    /// its outbox holds (and a FIX resend owes) goes into `out` first, and
    /// a message is read only when its replies will have room. `whole`: is a
    /// whole message waiting? A Wait then holds it: `held_since` notes since
    /// when the client has read nothing of what it is owed (a drain into
    /// `out`, which has room only as the client reads, starts it again).
    pub(super) fn input_gate(
        &mut self,
        conn: usize,
        gen: u64,
        out: &mut OutBuf,
        whole: impl FnOnce() -> bool,
        now: u64,
    ) -> Gate {
        let Some(c) = self.clients.get(conn, gen) else { return Gate::Stop(Verdict::Abort) };
        if c.doomed {
            return Gate::Stop(self.doomed(conn, None));
        }
        if c.closing {
            return Gate::Drop(self.closing_turn(conn, gen, out).unwrap_or(Verdict::Close));
        }
        let before = out.len();
        c.flush_outbox(out);
        let fix = c.fix.on;
        if fix {
            self.fix_pump(conn, gen, out, now);
        }
        let Some(c) = self.clients.get(conn, gen) else { return Gate::Stop(Verdict::Abort) };
        let room = if fix { 2 * super::fix_out::FIX_MSG_MAX } else { MAX_REPLY };
        if c.outbox.len() > 0 || c.fix.resend_to.is_some() || out.spare() < room {
            if (c.held_since == 0 || out.len() > before) && whole() {
                c.held_since = now.max(1);
            }
            Gate::Wait
        } else {
            c.held_since = 0;
            Gate::Go
        }
    }

    /// Consume whole frames from a client's input (see `App::on_input`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn client_input(
        &mut self,
        conn: usize,
        gen: u64,
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> (usize, Verdict) {
        let mut off = 0;
        loop {
            let whole = || matches!(Frame::parse(&input[off..]), Ok(crate::proto::Parsed::Frame(_)));
            match self.input_gate(conn, gen, out, whole, now) {
                Gate::Go => {}
                Gate::Wait => return (off, Verdict::Continue),
                Gate::Stop(v) => return (off, v),
                Gate::Drop(v) => return (input.len(), v),
            }
            match Frame::parse(&input[off..]) {
                Ok(crate::proto::Parsed::Incomplete) => return (off, Verdict::Continue),
                Ok(crate::proto::Parsed::Frame(f)) => {
                    off += f.len();
                    let v = self.handle(conn, gen, &f, out, tr, recv_ts, now);
                    if v != Verdict::Continue {
                        return (off, v);
                    }
                }
                Err(e) => {
                    self.counters.framing_errors += 1;
                    crate::log_warn!("orders: conn#{conn}: framing error: {e}: closing");
                    return (off, Verdict::Abort);
                }
            }
        }
    }

    /// A slow reader is reset (counted `slow_client_aborts`): its outbox
    /// overflowed (`held_ms` None: it cannot be given what it is owed), or
    /// its input has waited `held_ms` for it to read its replies.
    pub(super) fn doomed(&mut self, conn: usize, held_ms: Option<u64>) -> Verdict {
        self.counters.slow_client_aborts += 1;
        match held_ms {
            None => crate::log_warn!(
                "orders: conn#{conn}: the client stopped reading and its reports overflowed: reset (reports were lost for it)"
            ),
            Some(ms) => {
                crate::log_warn!("orders: conn#{conn}: its input has waited {ms} ms for it to read its replies: reset")
            }
        }
        Verdict::Abort
    }

    /// Handle one well-framed message, traced as parsed (decoded) and
    /// handled (replies produced).
    #[allow(clippy::too_many_arguments)]
    fn handle(
        &mut self,
        conn: usize,
        gen: u64,
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
        // A Logon's record keeps its header and account, never its password:
        // judged by its type byte, so a malformed Logon keeps none either.
        let payload = if f.msg_type() == msg_type::LOGON { &f.bytes()[..f.len().min(16)] } else { f.bytes() };
        tr.parsed(k, id, payload);
        self.status = 0;
        let t_in = tr.arrival();
        let v = self.handle_decoded(conn, gen, f, decoded, out, recv_ts, now);
        tr.handled(self.status);
        if let Some(token) = self.entered.take() {
            // The order's stamps, for the record of the exchange's answer.
            if tr.enabled() {
                let sent = tr.now();
                if let Some(o) = self.table.orders.get_mut(u64::from(token)) {
                    (o.t_in, o.t_sent) = (t_in, sent);
                }
            }
        }
        v
    }

    #[allow(clippy::too_many_arguments)]
    fn handle_decoded(
        &mut self,
        conn: usize,
        gen: u64,
        f: &Frame<'_>,
        decoded: Result<ClientMsg, RejectReason>,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) -> Verdict {
        self.counters.messages_in += 1;
        let Some(c) = self.clients.get(conn, gen) else { return Verdict::Abort };
        // Only a logged-on session's traffic keeps it alive: one that never
        // logs on is logged out at the idle timeout from its accept, however
        // much it sends (else heartbeats alone could hold every connection
        // slot without a password).
        if c.logged_on {
            c.last_rx = now;
        }
        if !c.logged_on && !c.pending && (VERSION_1..=crate::proto::VERSION).contains(&f.version()) {
            // Replies before the Logon is accepted speak the client's version.
            c.version = f.version();
        }
        if f.seq() != c.expect_seq {
            self.counters.seq_gaps += 1;
            crate::log_info!(
                "orders: conn#{conn}: sequence gap: expected {}, got {}: logging out",
                c.expect_seq,
                f.seq()
            );
            self.reject(conn, gen, out, f, RejectReason::SeqGap, recv_ts, now);
            self.send(conn, gen, out, GatewayMsg::Logout { reason: LogoutReason::SeqGap }, now);
            self.ended(conn, gen, now);
            return Verdict::Close;
        }
        c.expect_seq = c.expect_seq.wrapping_add(1);
        let (logged_on, version) = (c.logged_on, c.version);
        let msg = match decoded {
            Ok(_) if logged_on && f.version() != version => {
                self.reject(conn, gen, out, f, RejectReason::BadVersion, recv_ts, now);
                return Verdict::Continue;
            }
            Ok(m) => m,
            Err(reason) => {
                self.reject(conn, gen, out, f, reason, recv_ts, now);
                return Verdict::Continue;
            }
        };
        let pending = self.clients.get(conn, gen).is_some_and(|c| c.pending);
        if !logged_on && !matches!(msg, ClientMsg::Logon { .. }) {
            self.reject(conn, gen, out, f, RejectReason::NotLoggedOn, recv_ts, now);
            return Verdict::Continue;
        }
        match msg {
            ClientMsg::Logon { account, password } => {
                if logged_on || pending {
                    self.reject(conn, gen, out, f, RejectReason::AlreadyLoggedOn, recv_ts, now);
                } else if self.up.is_some() && version == VERSION_1 {
                    // Version 1 has no Fill: its orders' executions could not reach it.
                    crate::log_info!("orders: conn#{conn}: a version-1 Logon, and fills need version 2: refused");
                    self.reject(conn, gen, out, f, RejectReason::BadVersion, recv_ts, now);
                } else {
                    return self.logon(conn, gen, f.seq(), account, password, out, recv_ts, now);
                }
            }
            ClientMsg::Heartbeat => {}
            ClientMsg::NewOrder(o) => {
                if let Some(reason) = self.place_order(conn, gen, &o, f.seq(), out, recv_ts, now) {
                    self.reject(conn, gen, out, f, reason, recv_ts, now);
                }
            }
            ClientMsg::Cancel { cl_ord_id, client_ts } => {
                if let Some(reason) = self.cancel_order(conn, gen, cl_ord_id, client_ts, f.seq(), out, recv_ts, now) {
                    self.reject(conn, gen, out, f, reason, recv_ts, now);
                }
            }
            ClientMsg::Logout => {
                self.send(conn, gen, out, GatewayMsg::Logout { reason: LogoutReason::Normal }, now);
                self.ended(conn, gen, now);
                return Verdict::Close;
            }
        }
        Verdict::Continue
    }

    /// A NewOrder from session (`conn`, `gen`), either protocol: checked,
    /// then sent to the exchange or acknowledged here, and journaled. The
    /// refusal, if any (the caller tells the client).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn place_order(
        &mut self,
        conn: usize,
        gen: u64,
        o: &NewOrder,
        seq: u32,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) -> Option<RejectReason> {
        let max = self.cfg.max_open_orders;
        let upstream = self.up.is_some();
        let c = self.clients.get(conn, gen)?;
        let counts = upstream || o.kind == OrderKind::Limit;
        let acct = c.account;
        let buy = o.side == Side::Buy;
        let refused = if c.open.contains_key(o.cl_ord_id) {
            Some(RejectReason::DuplicateOrderId)
        } else if counts && c.open.len() >= max {
            Some(RejectReason::TooManyOpenOrders)
        } else if !self.journal_ready() {
            Some(RejectReason::JournalUnavailable)
        } else {
            match self.check_order(conn, gen, o, now) {
                Err(r) => Some(r),
                Ok(res) if upstream => {
                    let r = self.enter(conn, gen, o, acct, res, seq, now).err();
                    if r.is_some() {
                        self.finished(acct, buy, res.notional);
                    }
                    r
                }
                Ok(res) => {
                    self.local_ack(conn, gen, out, o, acct, res, recv_ts, now);
                    None
                }
            }
        };
        let token = if refused.is_none() { self.entered.unwrap_or(0) } else { 0 };
        self.journal_order(conn, gen, o, refused.map_or(0, |r| r as u8), token, recv_ts);
        refused
    }

    /// A Cancel of `cl_ord_id` from session (`conn`, `gen`), either
    /// protocol; its refusal, if any.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn cancel_order(
        &mut self,
        conn: usize,
        gen: u64,
        cl_ord_id: u64,
        client_ts: u64,
        seq: u32,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) -> Option<RejectReason> {
        let upstream = self.up.is_some();
        let c = self.clients.get(conn, gen)?;
        let acct = c.account;
        let refused = match c.open.get(cl_ord_id).copied() {
            None => Some(RejectReason::UnknownOrder),
            Some(open) if upstream => self.cancel(open.token, client_ts, seq, now).err(),
            Some(open) => {
                c.open.remove(cl_ord_id);
                self.local_done(acct, open);
                self.counters.cancels_acked += 1;
                let ack = GatewayMsg::CancelAck { cl_ord_id, client_ts, gw_recv_ts: recv_ts, gw_send_ts: recv_ts };
                self.send(conn, gen, out, ack, now);
                None
            }
        };
        self.journal_cancel(conn, gen, cl_ord_id, refused.map_or(0, |r| r as u8), recv_ts);
        refused
    }

    /// Local mode: the order is acknowledged here; a limit order stays
    /// open (holding its credit) until cancelled, a market order is done.
    #[allow(clippy::too_many_arguments)]
    fn local_ack(
        &mut self,
        conn: usize,
        gen: u64,
        out: &mut OutBuf,
        o: &NewOrder,
        acct: Option<usize>,
        res: Reserved,
        recv_ts: u64,
        now: u64,
    ) {
        let buy = o.side == Side::Buy;
        if let Some(c) = self.clients.get(conn, gen) {
            if o.kind == OrderKind::Limit {
                c.open.insert(o.cl_ord_id, Open { token: 0, buy, notional: res.notional });
            } else {
                self.finished(acct, buy, res.notional);
            }
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
        self.send(conn, gen, out, ack, now);
    }
}
