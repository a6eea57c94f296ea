//! What goes to the exchange a second time: after a login, every order not
//! yet accepted and not cancelled, and every cancel not yet answered (in
//! token order); and
//! the cancels of a closed session's orders (cancel on disconnect). Both
//! go out as the upstream buffer has room, from where they stopped: a long
//! list is never cut short by a full buffer.

use super::Orders;
use crate::transport::ConnId;
use crate::venue::ouch::{self, Inbound};

impl Orders {
    /// After a login: list what must be sent again, and start sending it.
    /// New orders are refused until the list is sent (they would overtake it).
    pub(super) fn resend_pending(&mut self, now: u64) {
        let t = &mut self.table;
        t.resend.clear();
        t.resend_at = 0;
        let orders = &t.orders;
        t.resend.extend(
            t.live
                .iter()
                .copied()
                .filter(|&k| orders.get(u64::from(k)).is_some_and(|o| !o.accepted || o.cancel.is_some())),
        );
        t.resend.sort_unstable();
        // Orders cancelled in flight are held, not entered again (below).
        t.held = 0;
        for &token in &t.resend {
            if let Some(o) = t.orders.get_mut(u64::from(token)) {
                o.held = !o.accepted && o.cancel.is_some();
                t.held += usize::from(o.held);
            }
        }
        if let Some(up) = self.up.as_ref() {
            t.floor = up.next_token();
        }
        t.replayed = false;
        // The cancels of closed sessions are among them now.
        t.cancels.clear();
        t.cancels_at = 0;
        self.pump(now);
    }

    /// An exchange message about `token` came: one about an order entered
    /// after the login is newer than the whole replay.
    pub(super) fn note_answer(&mut self, token: Option<u32>) {
        if self.table.held > 0 && token.is_some_and(|t| t >= self.table.floor) {
            self.table.replayed = true;
        }
    }

    /// After a login, once the venue's replay is over (an answer about an
    /// order entered after the login came: every message of the replay is
    /// older, so it came first), a held order still not accepted is one the
    /// venue never had: it ends here, the client told Reject (`killed` if
    /// the kill switch cancelled it, else `exchange_unavailable`) and a
    /// CancelReject for its own cancel; its credit is given back. A server
    /// heartbeat proves nothing (a venue heartbeats whenever it sent nothing
    /// for a second, in the middle of a replay the gateway is slow to read),
    /// so with no new order answered a held order stays held: its credit
    /// counted, its client waiting (the safe side).
    pub(super) fn settle_held(&mut self, now: u64) {
        if self.table.held == 0 || !self.table.replayed {
            return;
        }
        self.table.held = 0;
        self.scratch.clear();
        let orders = &self.table.orders;
        self.scratch.extend(
            self.table
                .live
                .iter()
                .copied()
                .filter(|&k| orders.get(u64::from(k)).is_some_and(|o| o.held && !o.accepted)),
        );
        for i in 0..self.scratch.len() {
            let token = self.scratch[i];
            let Some(o) = self.table.orders.get(u64::from(token)).copied() else { continue };
            self.counters.never_at_exchange += 1;
            self.order_never_sent(token, &o, now);
        }
        if !self.scratch.is_empty() {
            crate::log_info!(
                "orders: {} order(s) cancelled while the exchange session was down never reached the exchange: ended here",
                self.scratch.len()
            );
        }
    }

    /// A client session closed: cancel every order it still has at the
    /// exchange. Its orders stay in the table until the exchange answers,
    /// and the answers are counted (`reports_for_closed_sessions`).
    pub(super) fn cancel_on_disconnect(&mut self, conn: usize, gen: u64, now: u64) {
        self.counters.cancels_on_disconnect += self.cancel_all(conn, gen, now);
    }

    /// Cancel every order session (`conn`, `gen`) has at the exchange
    /// that has no cancel on its way; returns how many were queued.
    pub(super) fn cancel_all(&mut self, conn: usize, gen: u64, now: u64) -> u64 {
        let mut n = 0;
        let Some(c) = self.clients.get(conn, gen) else { return 0 };
        if c.open.is_empty() {
            return 0;
        }
        self.scratch.clear();
        self.scratch.extend(c.open.iter().map(|(_, o)| o.token));
        for i in 0..self.scratch.len() {
            let token = self.scratch[i];
            if let Some(o) = self.table.orders.get_mut(u64::from(token)) {
                if o.cancel.is_none() {
                    // The list holds every token at most once: it has room.
                    o.cancel = Some((0, 0));
                    self.table.cancels.push(token);
                    n += 1;
                }
            }
        }
        self.pump(now);
        n
    }

    /// The kill switch: a cancel for every working order of an account
    /// killed now or after kill epoch `seen` (its session there or not)
    /// that has none on its way; returns how many were queued.
    pub(super) fn sweep_killed(&mut self, seen: u64, now: u64) -> u64 {
        let t = &mut self.table;
        let start = t.cancels.len();
        let risk = &self.risk.risk;
        for i in 0..t.live.len() {
            let token = t.live[i];
            let Some(o) = t.orders.get_mut(u64::from(token)) else { continue };
            if o.cancel.is_none() && risk.killed_since(o.acct, seen) {
                // The list holds every token at most once: it has room.
                o.cancel = Some((0, 0));
                o.swept = true;
                t.cancels.push(token);
            }
        }
        let n = self.table.cancels.len() - start;
        for i in start..start + n {
            let token = self.table.cancels[i];
            self.journal_kill_cancel(token, crate::clock::realtime_ns());
        }
        self.pump(now);
        n as u64
    }

    /// Send what the lists hold, as far as the upstream buffer has room.
    pub(super) fn pump(&mut self, now: u64) {
        let Some(up) = self.up.as_mut() else { return };
        if !up.up() || (self.table.resend.is_empty() && self.table.cancels.is_empty()) {
            return;
        }
        let before = up.out.len();
        let t = &mut self.table;
        let cancel = |token| Inbound::Cancel { user_ref: token, qty: 0 };
        while t.resend_at < t.resend.len() && up.room(ouch::size::ENTER + ouch::size::CANCEL + 3) {
            let token = t.resend[t.resend_at];
            t.resend_at += 1;
            let Some(o) = t.orders.get_mut(u64::from(token)) else { continue };
            // An order cancelled while it was in flight (by its client, the
            // kill switch or its session's end) is never entered again: it
            // could trade before its Cancel. Only the Cancel goes; if the
            // exchange never had it, the order stays held, its credit too.
            if !o.accepted && !o.held && up.send(&Inbound::Enter(o.enter), now) {
                o.resent = true;
                self.counters.resent_after_login += 1;
            }
            if o.cancel.is_some() && up.send(&cancel(token), now) {
                self.counters.resent_after_login += 1;
            }
        }
        if t.resend_at == t.resend.len() {
            t.resend.clear();
            t.resend_at = 0;
        }
        while t.resend.is_empty() && t.cancels_at < t.cancels.len() && up.room(ouch::size::CANCEL) {
            let token = t.cancels[t.cancels_at];
            t.cancels_at += 1;
            if t.orders.get(u64::from(token)).is_some() {
                up.send(&cancel(token), now);
            }
        }
        if t.cancels_at == t.cancels.len() {
            t.cancels.clear();
            t.cancels_at = 0;
        }
        if let Some(c) = up.conn.filter(|_| up.out.len() != before) {
            self.requests.wake(c);
        }
    }

    /// Is anything left to send again?
    pub(super) fn pumping(&self) -> bool {
        !self.table.resend.is_empty() || !self.table.cancels.is_empty()
    }

    /// Wake the upstream connection when its buffer or the lists hold
    /// more (a wake of itself is for the next iteration, and waits while
    /// its output is blocked: no busy loop).
    pub(super) fn more_for_upstream(&mut self) {
        let pumping = self.pumping();
        if let Some(up) = self.up.as_ref() {
            if let Some(c) = up.conn.filter(|_| up.out.len() > 0 || pumping) {
                self.requests.wake(ConnId(c.0));
            }
        }
    }
}
