//! The gateway's accounts and risk, on the loop: a Logon sent to the
//! verifier and its answer, the pre-trade checks of each order, the credit
//! an order holds until it is done, and the kill switch's sweep.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::client::Open;
use super::Orders;
use crate::app::{OutBuf, Verdict};
use crate::proto::{msg_type, Code8, GatewayMsg, LogoutReason, NewOrder, Password, RejectReason};
use crate::risk::auth::{Answer, Port, Refusal, Request};
use crate::risk::checks::{self, Kill, Refs, Reserved};
use crate::risk::limits::View;
use crate::risk::Risk;
use crate::transport::ConnId;

/// Symbols whose last trade price a loop remembers beyond the configured ones.
const LEARNED_SYMBOLS: usize = 4096;

/// A loop's part of the accounts and risk.
#[derive(Debug)]
pub struct LoopRisk {
    pub risk: Arc<Risk>,
    pub view: View,
    pub refs: Refs,
    /// The verifier's port (`None`: no accounts, no passwords).
    pub port: Option<Port>,
    /// The kill epoch this loop has swept for.
    pub kill_seen: u64,
}

impl LoopRisk {
    pub fn new(risk: Arc<Risk>, port: Option<Port>) -> LoopRisk {
        let view = View::new(risk.limits.clone());
        let refs = Refs::new(&risk.prices, risk.prices.len() + LEARNED_SYMBOLS);
        let kill_seen = risk.kill_epoch.load(Ordering::Acquire);
        LoopRisk { risk, view, refs, port, kill_seen }
    }
}

impl Orders {
    /// Check logons against `risk`'s accounts (through `port`, this loop's
    /// end of the verifier, when accounts are configured) and orders against
    /// its limits.
    pub fn with_risk(mut self, risk: Arc<Risk>, port: Option<Port>) -> Self {
        self.risk = LoopRisk::new(risk, port);
        self
    }

    /// A Logon on a session that is not logged on. Without accounts it is
    /// accepted here; with them it goes to the verifier (or is refused at
    /// once: no password, or the verifier's queue is full).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn logon(
        &mut self,
        conn: usize,
        gen: u64,
        seq: u32,
        account: Code8,
        mut password: Password,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) -> Verdict {
        let source = self.clients.get(conn, gen).and_then(|c| {
            c.name = account;
            c.source
        });
        if !self.risk.risk.needs_passwords() {
            let max = self.cfg.max_open_orders;
            if let Some(c) = self.clients.get(conn, gen) {
                c.logged_on = true;
                c.last_rx = now;
                c.room_for_orders(max);
                self.logged_on_now += 1;
            }
            self.journal_logon(gen, account, source, 0, recv_ts);
            self.counters.logons += 1;
            crate::log_debug!("orders: conn#{conn}: logon account={} (no accounts configured)", account.as_str());
            let ack =
                GatewayMsg::LogonAck { heartbeat_ms: self.cfg.heartbeat_ms, idle_timeout_ms: self.cfg.idle_timeout_ms };
            self.send(conn, gen, out, ack, now);
            return Verdict::Continue;
        }
        let refused = if password.is_empty() {
            crate::log_info!("orders: conn#{conn}: a Logon for {:?} with no password: refused", account.as_str());
            Some(RejectReason::PasswordRequired)
        } else {
            let asked = match (self.risk.port.as_mut(), source) {
                (Some(p), Some(source)) => p.ask(&Request { conn: conn as u32, gen, account, source, password }),
                _ => false,
            };
            password.wipe();
            if asked {
                if let Some(c) = self.clients.get(conn, gen) {
                    c.pending = true;
                    c.logon_seq = seq;
                    c.logon_ts = recv_ts;
                }
                return Verdict::Continue;
            }
            Some(RejectReason::LogonBusy)
        };
        let reason = refused.unwrap_or(RejectReason::LogonBusy);
        self.journal_logon(gen, account, source, reason as u8, recv_ts);
        self.reject_ref(conn, gen, out, (0, 0, seq, msg_type::LOGON), reason, recv_ts, now);
        self.counters.logons_refused += 1;
        self.send(conn, gen, out, GatewayMsg::Logout { reason: LogoutReason::Refused }, now);
        Verdict::Close
    }

    /// Once per iteration: the verifier's answers, and a new kill.
    pub(super) fn risk_iteration(&mut self, now: u64) {
        // With no logon waiting, `answer` is one compare: the port stays put.
        while let Some(a) = self.risk.port.as_mut().and_then(|p| p.answer()) {
            self.logon_answer(a, now);
        }
        let epoch = self.risk.risk.kill_epoch.load(Ordering::Acquire);
        if epoch != self.risk.kill_seen {
            let seen = std::mem::replace(&mut self.risk.kill_seen, epoch);
            self.kill_sweep(seen, now);
        }
    }

    fn logon_answer(&mut self, a: Answer, now: u64) {
        let (conn, gen) = (a.conn as usize, a.gen);
        let Some(c) = self.clients.get(conn, gen) else { return };
        c.pending = false;
        c.last_rx = now;
        if c.held_since != 0 {
            // Held while the Logon was verified: its clock starts now too.
            c.held_since = now.max(1);
        }
        if c.over {
            // The session ended while its Logon was verified.
            return;
        }
        let (name, source) = (c.name, c.source);
        let reason = match a.verdict {
            Ok(i) => {
                let acct = &self.risk.risk.accounts;
                if acct.state[i].take_session(acct.list[i].max_sessions) {
                    c.room_for_orders(self.cfg.max_open_orders);
                    c.logged_on = true;
                    self.logged_on_now += 1;
                    c.account = Some(i);
                    c.holds_session = true;
                    self.counters.logons += 1;
                    crate::log_info!("orders: conn#{conn}: logon account={}", acct.name(i));
                    self.journal_logon(gen, name, source, 0, crate::clock::realtime_ns());
                    let ack = GatewayMsg::LogonAck {
                        heartbeat_ms: self.cfg.heartbeat_ms,
                        idle_timeout_ms: self.cfg.idle_timeout_ms,
                    };
                    self.report(conn, gen, ack, now);
                    return;
                }
                crate::log_warn!(
                    "orders: conn#{conn}: account {} already has its {} session(s): logon refused",
                    acct.name(i),
                    acct.list[i].max_sessions
                );
                RejectReason::TooManySessions
            }
            Err(Refusal::Throttled) => RejectReason::LogonThrottled,
            Err(_) => RejectReason::NotAuthorized,
        };
        self.counters.logons_refused += 1;
        self.counters.rejects[reason as usize] += 1;
        self.journal_logon(gen, name, source, reason as u8, crate::clock::realtime_ns());
        let Some(c) = self.clients.get(conn, gen) else { return };
        let (seq, ts) = (c.logon_seq, c.logon_ts);
        let r = GatewayMsg::Reject {
            cl_ord_id: 0,
            client_ts: 0,
            gw_recv_ts: ts,
            ref_seq: seq,
            reason,
            ref_type: msg_type::LOGON,
            exchange_reason: 0,
        };
        self.report(conn, gen, r, now);
        self.report(conn, gen, GatewayMsg::Logout { reason: LogoutReason::Refused }, now);
        if let Some(c) = self.clients.get(conn, gen) {
            c.closing = true;
        }
    }

    /// The pre-trade checks of `o` from session (`conn`, `gen`).
    pub(super) fn check_order(
        &mut self,
        conn: usize,
        gen: u64,
        o: &NewOrder,
        now: u64,
    ) -> Result<Reserved, RejectReason> {
        let r = &mut self.risk;
        r.view.refresh();
        let Some(c) = self.clients.get(conn, gen) else { return Err(RejectReason::NotLoggedOn) };
        let acct = c.account.and_then(|i| r.risk.accounts.state.get(i).map(|s| (i, &**s)));
        let kill = Kill { all: r.risk.kill_all.load(Ordering::Relaxed) };
        let res = checks::check(&r.view.snap, acct, kill, &r.refs, &mut c.risk, o, now);
        if let Some((_, st)) = acct {
            let n = if res.is_ok() { &st.accepted } else { &st.refused };
            n.fetch_add(1, Ordering::Relaxed);
        }
        res
    }

    /// Give back `notional` of account `acct`'s credit on its side.
    pub(super) fn release(&self, acct: Option<usize>, buy: bool, notional: u64) {
        if notional == 0 {
            return;
        }
        if let Some(st) = acct.and_then(|i| self.risk.risk.accounts.state.get(i)) {
            st.release(buy, notional);
        }
    }

    /// An order of account `acct` is done: `notional` (what was left of it)
    /// is given back, and it is no longer open.
    pub(super) fn finished(&self, acct: Option<usize>, buy: bool, notional: u64) {
        if let Some(st) = acct.and_then(|i| self.risk.risk.accounts.state.get(i)) {
            st.finished(buy, notional);
        }
    }

    /// A fill of `qty` at `price` of an order counted at `px`.
    pub(super) fn filled(&mut self, acct: Option<usize>, buy: bool, px: i64, qty: u32, price: i64, symbol: u64) {
        self.risk.refs.traded(symbol, price);
        if let Some(st) = acct.and_then(|i| self.risk.risk.accounts.state.get(i)) {
            let n = |p: i64| u64::try_from(i128::from(p) * i128::from(qty)).unwrap_or(u64::MAX);
            st.fill(buy, n(px), n(price));
        }
    }

    /// A local-mode order is done (cancelled, or its session closed).
    pub(super) fn local_done(&self, acct: Option<usize>, open: Open) {
        self.finished(acct, open.buy, open.notional);
    }

    /// The session is over (a Logout either way, a timeout, a refusal, or
    /// its connection closed; called again is harmless): its account's
    /// session is given back, and its working orders are cancelled at the
    /// exchange unless its account keeps them. A Logon answer that comes
    /// later is ignored.
    pub(super) fn ended(&mut self, conn: usize, gen: u64, now: u64) {
        let Some(c) = self.clients.get(conn, gen) else { return };
        c.over = true;
        let acct = c.account;
        if c.holds_session {
            c.holds_session = false;
            if let Some(st) = acct.and_then(|i| self.risk.risk.accounts.state.get(i)) {
                st.give_session();
            }
        }
        if self.up.is_some() && self.cancels_on_disconnect(acct) {
            self.cancel_on_disconnect(conn, gen, now);
        }
    }

    /// A session's connection closed (local mode): the credit its open
    /// orders held is given back.
    pub(super) fn session_closed(&mut self, conn: usize, gen: u64) {
        let local = self.up.is_none();
        let Some(c) = self.clients.get(conn, gen) else { return };
        let acct = c.account;
        if local && acct.is_some() {
            for (_, o) in c.open.iter() {
                if let Some(st) = acct.and_then(|i| self.risk.risk.accounts.state.get(i)) {
                    st.finished(o.buy, o.notional);
                }
            }
        }
    }

    /// Is account `acct` killed (or the whole gateway)?
    pub(super) fn risk_killed(&self, acct: Option<usize>) -> bool {
        self.risk.risk.killed(acct)
    }

    /// Does a session of account `acct` have its orders cancelled when it
    /// ends (by a Logout too: a session's orders never outlive it unless
    /// its account says so)?
    pub(super) fn cancels_on_disconnect(&self, acct: Option<usize>) -> bool {
        acct.and_then(|i| self.risk.risk.accounts.list.get(i)).is_none_or(|a| a.cancel_on_disconnect)
    }

    /// The kill switch moved: every session of a killed account has its
    /// working orders cancelled at the exchange, and is logged out if the
    /// kill said so.
    fn kill_sweep(&mut self, seen: u64, now: u64) {
        // Every working order of a killed account, its session there or
        // not, even if an enable came before this loop's turn.
        if self.up.is_some() {
            self.counters.kill_cancels += self.sweep_killed(seen, now);
        }
        for i in 0..self.clients.slots() {
            let Some(c) = self.clients.at(i) else { continue };
            if !c.logged_on || c.closing || !self.risk.risk.killed(c.account) {
                continue;
            }
            let gen = c.gen;
            if self.risk.risk.kill_logs_out(c.account) {
                self.counters.kill_logouts += 1;
                self.report(i, gen, GatewayMsg::Logout { reason: LogoutReason::Killed }, now);
                self.ended(i, gen, now);
                if let Some(c) = self.clients.get(i, gen) {
                    c.closing = true;
                }
            }
        }
    }

    /// A closing session's turn: flush, and close once its outbox is empty.
    pub(super) fn closing_turn(&mut self, conn: usize, gen: u64, out: &mut OutBuf) -> Option<Verdict> {
        let c = self.clients.get(conn, gen)?;
        if !c.closing {
            return None;
        }
        c.flush_outbox(out);
        if c.outbox.len() > 0 {
            self.requests.wake(ConnId(conn));
            return Some(Verdict::Continue);
        }
        Some(Verdict::Close)
    }
}
