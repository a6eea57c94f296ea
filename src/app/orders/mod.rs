//! The order-entry gateway: client sessions, sequence numbers, validation,
//! and the order lifecycle.
//!
//! With an upstream ([`UpstreamConfig`]) each loop keeps one SoupBinTCP
//! session to the exchange: client orders go there as OUCH Enter Order
//! messages and the exchange's reports come back to the session that sent
//! each order (Ack, Fill, CancelAck, CancelReject, Canceled, Reject). With
//! none (`--upstream none`, a test mode) a valid limit order is acked here
//! and stays open until cancelled, and a valid market order is acked and is
//! done. See docs/PROTOCOL.md for the rules these files implement.
//!
//! ```text
//! mod.rs        configuration, counters, the App: which connection is which
//! session.rs    a client's messages: checks, Logon, NewOrder, Cancel
//! client.rs     a client session's state and its outbox
//! lifecycle.rs  the order table, and what each exchange report becomes
//! journal.rs    what goes to the audit journal
//! upstream.rs   the loop's session to the exchange
//! resend.rs     what goes to it again: after a login, and cancel on disconnect
//! risk.rs       accounts and risk on the loop: logons, the checks, credit, the kill switch
//! fix_book.rs   FIX sessions by SenderCompID: sequence numbers, sent messages, orders
//! fix_in.rs     a FIX connection's input: framing, the header, the session messages
//! fix_orders.rs FIX NewOrderSingle and OrderCancelRequest onto the order path
//! fix_out.rs    what a FIX session is sent: the order path's messages as FIX
//! fix_link.rs   binding a Logon to its FIX session, resends, heartbeats
//! summary.rs    the exit summary
//! ```

mod client;
mod fix_book;
mod fix_in;
mod fix_link;
mod fix_orders;
mod fix_out;
mod journal;
mod lifecycle;
mod resend;
mod risk;
mod session;
mod summary;
mod upstream;

use self::client::Clients;
pub use self::fix_book::{Comp, FixConfig, FixCounters, Restored};
use self::lifecycle::Table;
pub use self::lifecycle::{MARKET_PRICE, MAX_LIMIT_PRICE};
use self::upstream::{Upstream, CONNECT_TOKEN};
pub use self::upstream::{UpstreamConfig, UP_BUF_BYTES};
use super::{App, OutBuf, Requests, Verdict};
use crate::proto::{GatewayMsg, LogoutReason};
use crate::sampler::tracer::Tracer;
use crate::transport::ConnId;
use crate::upstream::soup_client::{Change, Why};

/// Worst-case reply bytes for one inbound message (Reject + Logout).
const MAX_REPLY: usize = 40 + 16;
/// Wakes the loop can take between two iterations.
const WAKES: usize = 4096;
/// How long the exchange's reports may wait for a session's full outbox
/// before that session is reset (it stopped reading).
const BLOCKED_NS: u64 = 200_000_000;

/// Gateway configuration, validated by the CLI.
#[derive(Debug, Clone, Copy)]
pub struct OrdersConfig {
    /// The gateway sends a Heartbeat when it has sent nothing for this long.
    pub heartbeat_ms: u32,
    /// A session that receives nothing for this long is logged out.
    pub idle_timeout_ms: u32,
    /// Open orders allowed per session (limit orders; with an upstream,
    /// every order until it is done).
    pub max_open_orders: usize,
    /// With an upstream: orders at the exchange per loop, over its sessions.
    pub max_live_orders: usize,
}

impl Default for OrdersConfig {
    fn default() -> Self {
        OrdersConfig { heartbeat_ms: 1000, idle_timeout_ms: 2000, max_open_orders: 10_000, max_live_orders: 65_536 }
    }
}

/// Counters, printed at exit and exported.
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
    pub rejects: crate::proto::ReasonCounts,
    pub framing_errors: u64,
    pub idle_timeouts: u64,
    pub seq_gaps: u64,
    /// Sessions sent a Logout (reason Shutdown) by a draining gateway.
    pub shutdown_logouts: u64,
    // The exchange leg.
    pub orders_sent: u64,
    pub cancels_sent: u64,
    pub fills: u64,
    pub cancel_rejects: u64,
    /// Orders the exchange ended without a Cancel (IOC remainders).
    pub exchange_canceled: u64,
    /// Orders and cancels refused because the upstream was down or full.
    pub upstream_refused: u64,
    pub upstream_logins: u64,
    pub upstream_downs: u64,
    /// Exchange messages that are not OUCH, or fit no order state, or name
    /// a token no order here has (after a gateway restart).
    pub upstream_malformed: u64,
    pub invalid_transitions: u64,
    pub unknown_tokens: u64,
    /// Reports for orders whose session had closed.
    pub reports_for_closed_sessions: u64,
    /// Orders and cancels sent again after a login.
    pub resent_after_login: u64,
    /// Sessions reset because they stopped reading their reports.
    pub slow_client_aborts: u64,
    /// Orders cancelled because their session closed.
    pub cancels_on_disconnect: u64,
    /// Logons refused (each reason is counted in `rejects`).
    pub logons_refused: u64,
    /// Cancels sent by the kill switch, orders it cancelled (the
    /// exchange's answers), and sessions it logged out.
    pub kill_cancels: u64,
    pub kill_canceled: u64,
    pub kill_logouts: u64,
    /// Kill cancels the exchange refused (the order works on; warned).
    pub kill_cancel_rejects: u64,
    /// Orders cancelled while the exchange session was down that it never
    /// had (ended at the next login's replay's end, not entered again).
    pub never_at_exchange: u64,
}

impl OrdersCounters {
    pub fn rejects_total(&self) -> u64 {
        self.rejects.iter().sum()
    }
}

/// A connection's role: a client session (with its generation), or the
/// loop's session to the exchange.
#[derive(Debug)]
pub struct Session {
    conn: ConnId,
    gen: u64,
    upstream: bool,
}

/// The gateway application.
#[derive(Debug)]
pub struct Orders {
    cfg: OrdersConfig,
    next_order_id: u64,
    pub counters: OrdersCounters,
    /// Status of the message being handled: 0, or the reject reason code.
    status: u8,
    clients: Clients,
    up: Option<Upstream>,
    table: Table,
    requests: Requests,
    /// The last callback's clock (for `on_close`, which has none).
    now: u64,
    /// A closing session's tokens (sized for one session's open orders).
    scratch: Vec<u32>,
    /// Sessions logged on now (a gauge for /metrics).
    logged_on_now: u64,
    /// The order the message being handled sent to the exchange.
    entered: Option<u32>,
    /// Accounts, limits and the kill switch (shared by every loop).
    risk: self::risk::LoopRisk,
    /// This loop's audit journal, if one is kept.
    journal: Option<crate::journal::writer::Writer>,
    /// The FIX sessions (with no FIX port, none).
    fix: fix_book::FixBook,
}

impl Orders {
    /// Local mode: orders are acknowledged here (a test mode).
    pub fn new(cfg: OrdersConfig) -> Self {
        Orders {
            cfg,
            next_order_id: 1,
            counters: OrdersCounters::default(),
            status: 0,
            clients: Clients::default(),
            up: None,
            table: Table::new(0),
            // Reports and answers given from outside a session's turn
            // (the verifier's, the kill switch's) wake it.
            requests: Requests::with_capacity(WAKES),
            now: 0,
            scratch: Vec::new(),
            logged_on_now: 0,
            entered: None,
            risk: self::risk::LoopRisk::new(std::sync::Arc::new(crate::risk::Risk::open()), None),
            journal: None,
            fix: fix_book::FixBook::new(FixConfig::default(), true),
        }
    }

    /// FIX sessions on `cfg.port` (see docs/FIX.md), kept in memory only
    /// (tests; serve makes its region itself, and says if it cannot).
    pub fn with_fix(self, cfg: FixConfig) -> Self {
        let r = crate::fix::slots::Region::anonymous(cfg.max_sessions, cfg.store_bytes)
            .expect("anonymous memory for the FIX sessions' slots");
        self.with_fix_region(cfg, r).0
    }

    /// FIX sessions on `cfg.port` in `region`'s slots (a file's: they
    /// outlast the process); what it held.
    pub fn with_fix_region(mut self, cfg: FixConfig, region: crate::fix::slots::Region) -> (Self, fix_book::Restored) {
        let (book, found) = fix_book::FixBook::with_region(cfg, self.up.is_none(), region, self.cfg.max_open_orders);
        self.fix = book;
        (self, found)
    }

    /// Orders go to the exchange through `up`.
    pub fn with_upstream(cfg: OrdersConfig, up: UpstreamConfig) -> Self {
        let mut o = Orders::new(cfg);
        o.table = Table::new(cfg.max_live_orders);
        o.requests = Requests::with_capacity(WAKES);
        o.scratch = Vec::with_capacity(cfg.max_open_orders);
        o.up = Some(Upstream::new(up));
        o.fix.local = false;
        o
    }

    /// Is the loop's exchange session logged in?
    pub fn upstream_up(&self) -> bool {
        self.up.as_ref().is_some_and(|u| u.up())
    }

    /// Orders at the exchange now.
    pub fn live_orders(&self) -> usize {
        self.table.orders.len()
    }

    fn upstream_input(
        &mut self,
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> (usize, Verdict) {
        let Some(mut up) = self.up.take() else { return (input.len(), Verdict::Abort) };
        let mut blocked = None;
        let state = &up.cfg.state;
        let (used, change) = up.client.on_input(input, now, |seq, m| {
            // Decoded once; it stays in the input if it must wait.
            let msg = match crate::venue::ouch::parse_outbound(m) {
                Ok(msg) => msg,
                Err(e) => {
                    state.next_seq.store(seq + 1, std::sync::atomic::Ordering::Relaxed);
                    self.malformed_report(m, e);
                    return true;
                }
            };
            // A report whose session cannot take it now waits, and so does
            // everything after it (the reports keep their order).
            if let Some(who) = self.cannot_report(&msg) {
                blocked = Some(who);
                return false;
            }
            state.next_seq.store(seq + 1, std::sync::atomic::Ordering::Relaxed);
            let traced = self.trace_answer(&msg, tr);
            self.journal_exchange(&msg, recv_ts);
            self.note_answer(lifecycle::token_of(&msg));
            self.on_exchange(msg, recv_ts, now);
            if let Some(status) = traced {
                tr.handled(status);
            }
            true
        });
        up.blocked = match (blocked, up.blocked) {
            (None, _) => None,
            (Some((c, g)), Some((bc, bg, since))) if (c, g) == (bc, bg) => Some((c, g, since)),
            (Some((c, g)), _) => Some((c, g, now)),
        };
        let verdict = match change {
            Change::None => Verdict::Continue,
            Change::Up { from, lost } => {
                self.counters.upstream_logins += 1;
                crate::log_info!(
                    "orders: upstream {} logged in as {}, replay from {from} (next to process {})",
                    up.cfg.addr,
                    up.cfg.username,
                    up.client.next_seq()
                );
                if lost > 0 {
                    crate::log_warn!(
                        "orders: upstream {}: the venue cannot replay the {lost} messages before {from}: \
                         their reports are lost (orders waiting on them stay as they are)",
                        up.cfg.addr
                    );
                }
                Verdict::Continue
            }
            Change::Down(why) => {
                self.counters.upstream_downs += 1;
                if matches!(why, Why::Protocol(_)) {
                    self.counters.upstream_malformed += 1;
                }
                crate::log_warn!("orders: upstream {}: {}: reconnecting", up.cfg.addr, describe(why));
                up.conn = None;
                up.out.clear();
                Verdict::Abort
            }
        };
        self.up = Some(up);
        if matches!(change, Change::Up { .. }) {
            self.resend_pending(now);
        }
        self.settle_held(now);
        if let Some(up) = self.up.as_mut() {
            up.flush(out);
        }
        self.more_for_upstream();
        (used, verdict)
    }

    /// A session's outbox was flushed: if the exchange's reports wait for
    /// it and it has room now, let them go on.
    fn unblock(&mut self, conn: usize, gen: u64) {
        let room = self.clients.get(conn, gen).is_some_and(|c| c.outbox.spare() >= c.report_room());
        if let Some(up) = self.up.as_mut() {
            if room && up.blocked.is_some_and(|(c, g, _)| (c, g) == (conn, gen)) {
                up.blocked = None;
                if let Some(u) = up.conn {
                    self.requests.wake(u);
                }
            }
        }
    }
}

fn describe(why: Why) -> String {
    match why {
        Why::Rejected(b'A') => "login rejected: not authorized (check the username and password)".into(),
        Why::Rejected(b'S') => "login rejected: session not available".into(),
        Why::Rejected(c) => format!("login rejected ({:?})", c as char),
        Why::EndOfSession => "end of session".into(),
        Why::Protocol(e) => format!("protocol error: {e:?}"),
        Why::Silent => "nothing heard within the timeout".into(),
        Why::BadSequence(n) => format!("login accepted with an unusable next sequence number {n}"),
    }
}

impl App for Orders {
    type Session = Session;
    const WANTS_RECV_TS: bool = true;
    /// The exchange's reports wait in the upstream connection's input while
    /// a session's outbox is full, and a session's input waits behind its
    /// outbox: both are woken when there is room.
    const HOLDS_INPUT: bool = true;
    /// A session's source address is checked against its account's.
    const WANTS_PEER: bool = true;

    fn name(&self) -> &'static str {
        "orders"
    }

    fn open(&mut self, conn: ConnId, now: u64) -> Session {
        self.open_from(conn, None, None, now)
    }

    fn open_from(&mut self, conn: ConnId, peer: Option<std::net::SocketAddr>, port: Option<u16>, now: u64) -> Session {
        self.now = now;
        self.counters.sessions += 1;
        // Its order map is sized when it logs on (see `room_for_orders`).
        let gen = self.clients.open(conn.0, now);
        let fix_port = self.fix.cfg.port;
        if let Some(c) = self.clients.get(conn.0, gen) {
            c.source = peer.map(|p| p.ip());
            c.fix.on = fix_port != 0 && port == Some(fix_port);
        }
        Session { conn, gen, upstream: false }
    }

    fn on_iteration(&mut self, now: u64) {
        self.risk_iteration(now);
    }

    fn open_outbound(&mut self, conn: ConnId, token: u64, now: u64) -> Session {
        self.now = now;
        match self.up.as_mut() {
            Some(up) if token == CONNECT_TOKEN => {
                up.conn = Some(conn);
                up.connecting = false;
                up.client.on_connected(&mut up.out, now);
                self.requests.wake(conn);
                Session { conn, gen: 0, upstream: true }
            }
            _ => self.open(conn, now),
        }
    }

    fn on_refused(&mut self, _token: u64, reason: &str) {
        if let Some(up) = self.up.as_mut() {
            up.lost(self.now);
            crate::log_warn!("orders: upstream {}: {reason}: retrying", up.cfg.addr);
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
        self.now = now;
        if s.upstream {
            return self.upstream_input(input, out, tr, recv_ts, now);
        }
        let r = if self.clients.peek(s.conn.0, s.gen).is_some_and(|c| c.fix.on) {
            self.fix_input(s.conn.0, s.gen, input, out, tr, recv_ts, now)
        } else {
            self.client_input(s.conn.0, s.gen, input, out, tr, recv_ts, now)
        };
        self.unblock(s.conn.0, s.gen);
        r
    }

    fn on_peer_fin(&mut self, s: &mut Session, _leftover: &[u8], _out: &mut OutBuf) -> Verdict {
        if s.upstream {
            let now = self.now;
            if let Some(up) = self.up.as_mut().filter(|u| u.conn == Some(s.conn) && !u.leaving) {
                // Down at once: no order goes into a connection the venue closed.
                self.counters.upstream_downs += 1;
                crate::log_warn!("orders: upstream {}: the venue closed the connection: reconnecting", up.cfg.addr);
                up.lost(now);
            }
        }
        Verdict::Close
    }

    fn on_tick(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) -> Verdict {
        self.now = now;
        if s.upstream {
            let Some(up) = self.up.as_mut() else { return Verdict::Abort };
            if up.conn != Some(s.conn) {
                return Verdict::Close;
            }
            if let Some(why) = up.client.on_tick(&mut up.out, now) {
                self.counters.upstream_downs += 1;
                crate::log_warn!("orders: upstream {}: {}: reconnecting", up.cfg.addr, describe(why));
                up.conn = None;
                up.blocked = None;
                up.out.clear();
                return Verdict::Abort;
            }
            if let Some((c, g, since)) = up.blocked.filter(|b| now.saturating_sub(b.2) >= BLOCKED_NS) {
                // The session stopped reading: it is reset, and the reports go on.
                up.blocked = None;
                crate::log_warn!(
                    "orders: conn#{c}: its reports have waited {} ms for room: the session is reset",
                    now.saturating_sub(since) / 1_000_000
                );
                if let Some(cl) = self.clients.get(c, g) {
                    cl.doomed = true;
                }
                self.requests.wake(ConnId(c));
                self.requests.wake(s.conn);
            }
            self.pump(now);
            if let Some(up) = self.up.as_mut() {
                up.flush(out);
            }
            self.more_for_upstream();
            return Verdict::Continue;
        }
        let ms = 1_000_000u64;
        let (conn, gen) = (s.conn.0, s.gen);
        let Some(c) = self.clients.get(conn, gen) else { return Verdict::Abort };
        if c.doomed {
            return self.doomed(conn, None);
        }
        c.flush_outbox(out);
        self.unblock(conn, gen);
        let Some(c) = self.clients.get(conn, gen) else { return Verdict::Abort };
        // Input held until its replies have room is not silence: the client
        // sends and does not read what it is sent. For an idle timeout it
        // may; past that it is a slow reader, reset like one whose reports
        // overflow (a logged-on session only: one that never logs on gets
        // nothing from holding).
        if c.held_since != 0 && c.logged_on && !c.closing {
            let held = now.saturating_sub(c.held_since);
            if held >= self.cfg.idle_timeout_ms as u64 * ms {
                return self.doomed(conn, Some(held / ms));
            }
            c.last_rx = c.last_rx.max(now);
            c.fix.test_sent = 0;
        }
        let last_rx = c.last_rx;
        if c.fix.on && c.logged_on && !c.closing {
            self.fix_pump(conn, gen, out, now);
            return self.fix_tick(conn, gen, out, now);
        }
        // A session whose Logon the verifier has not answered yet waits for
        // it (the queue is bounded, and answered in order): its idle time
        // starts again with the answer.
        if !c.pending && now.saturating_sub(last_rx) >= self.cfg.idle_timeout_ms as u64 * ms {
            self.counters.idle_timeouts += 1;
            crate::log_info!("orders: {}: idle for {} ms: logging out", s.conn, self.cfg.idle_timeout_ms);
            self.send(conn, gen, out, GatewayMsg::Logout { reason: LogoutReason::IdleTimeout }, now);
            // The heartbeat timeout ends the session now, not when its
            // connection is gone: its orders are cancelled at once.
            self.ended(conn, gen, now);
            return Verdict::Close;
        }
        if c.logged_on && now.saturating_sub(c.last_tx) >= self.cfg.heartbeat_ms as u64 * ms && out.spare() >= MAX_REPLY
        {
            self.counters.heartbeats_out += 1;
            self.send(conn, gen, out, GatewayMsg::Heartbeat, now);
        }
        Verdict::Continue
    }

    fn on_loop_tick(&mut self, now: u64) {
        self.now = now;
        let Some(up) = self.up.as_mut() else { return };
        if !up.leaving
            && up.conn.is_none()
            && !up.connecting
            && up.client.connect_due(now)
            && self.requests.connect(up.cfg.addr, CONNECT_TOKEN)
        {
            up.connecting = true;
            up.client.connecting();
        }
    }

    fn on_wake(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) -> Verdict {
        self.now = now;
        if s.upstream {
            self.pump(now);
            if let Some(up) = self.up.as_mut() {
                up.flush(out);
            }
            self.more_for_upstream();
            return Verdict::Continue;
        }
        if let Some(v) = self.closing_turn(s.conn.0, s.gen, out) {
            return v;
        }
        let Some(c) = self.clients.get(s.conn.0, s.gen) else { return Verdict::Abort };
        if c.doomed {
            return self.doomed(s.conn.0, None);
        }
        c.flush_outbox(out);
        if c.fix.on {
            self.fix_pump(s.conn.0, s.gen, out, now);
        }
        let Some(c) = self.clients.get(s.conn.0, s.gen) else { return Verdict::Abort };
        let more = c.outbox.len() > 0;
        self.unblock(s.conn.0, s.gen);
        if more {
            // The rest when its output has room again.
            self.requests.wake(s.conn);
        }
        Verdict::Continue
    }

    fn on_shutdown(&mut self, s: &mut Session, out: &mut OutBuf, now: u64) {
        if s.upstream {
            if let Some(up) = self.up.as_mut() {
                up.leaving = true;
                up.client.logout(&mut up.out, now);
                up.flush(out);
            }
            return;
        }
        // The server stops consuming input when the output lacks room for
        // the worst-case reply, so there is room for this one (behind what
        // the outbox holds, if that fits).
        let (conn, gen) = (s.conn.0, s.gen);
        let Some(c) = self.clients.get(conn, gen) else { return };
        c.flush_outbox(out);
        if c.logged_on && out.spare() >= MAX_REPLY {
            self.counters.shutdown_logouts += 1;
            self.send(conn, gen, out, GatewayMsg::Logout { reason: LogoutReason::Shutdown }, now);
        }
    }

    fn on_close(&mut self, s: Session, reason: &str) {
        if !s.upstream {
            // Cancel on disconnect: its orders are pulled from the exchange
            // (unless its account says otherwise).
            self.ended(s.conn.0, s.gen, self.now);
            self.session_closed(s.conn.0, s.gen);
            if self.clients.peek(s.conn.0, s.gen).is_some_and(|c| c.logged_on) {
                self.logged_on_now = self.logged_on_now.saturating_sub(1);
            }
            if let Some(i) = self.clients.peek(s.conn.0, s.gen).and_then(|c| c.fix.id) {
                self.fix.detach(i, self.now);
            }
            self.clients.close(s.conn.0);
            return;
        }
        let now = self.now;
        if let Some(up) = self.up.as_mut() {
            if up.conn == Some(s.conn) && up.leaving {
                crate::log_info!("orders: upstream {}: logged out", up.cfg.addr);
                up.conn = None;
            } else if up.conn == Some(s.conn) {
                self.counters.upstream_downs += 1;
                crate::log_warn!("orders: upstream {}: connection closed ({reason}): reconnecting", up.cfg.addr);
                up.lost(now);
            }
        }
    }

    fn holding_input(&self, s: &Session) -> bool {
        if s.upstream {
            self.up.as_ref().is_some_and(|u| u.blocked.is_some())
        } else {
            self.clients.peek(s.conn.0, s.gen).is_some_and(|c| c.outbox.len() > 0)
        }
    }

    fn requests(&mut self) -> Option<&mut Requests> {
        Some(&mut self.requests)
    }

    fn counters(&self) -> crate::app::AppCounters {
        let c = &self.counters;
        let accounts = &self.risk.risk.accounts.state;
        let killed = accounts.iter().filter(|a| a.killed.load(std::sync::atomic::Ordering::Relaxed)).count();
        crate::app::AppCounters {
            messages_in: c.messages_in,
            messages_out: c.messages_out,
            rejects: c.rejects,
            framing_errors: c.framing_errors,
            sessions: self.logged_on_now,
            upstream: match &self.up {
                None => crate::sampler::UpstreamState::None,
                Some(u) if u.up() => crate::sampler::UpstreamState::Up,
                Some(_) => crate::sampler::UpstreamState::Down,
            },
            killed_accounts: killed as u64,
            kill_all: u64::from(self.risk.risk.kill_all.load(std::sync::atomic::Ordering::Relaxed)),
        }
    }

    fn summary(&self) -> String {
        self.summary_text()
    }
}

#[cfg(test)]
mod fix_tests;
#[cfg(test)]
mod hold_tests;
#[cfg(test)]
mod tests;
