//! The order lifecycle with an exchange behind the gateway: each order's
//! token, its state, and what each exchange report becomes for the client
//! (the state table is in docs/PROTOCOL.md, "Order states").
//!
//! ```text
//! NewOrder --Enter--> PendingNew --Accepted--> Live --Executed (leaves 0)--> done (Fill)
//!                        |                      |----Executed----------> Live (Fill)
//!                        +--Rejected--> done    +----Canceled----------> done (CancelAck, or Canceled)
//! Cancel (PendingNew or Live) --Cancel Order--> cancel pending, answered by Canceled (CancelAck),
//!   by the last Executed (Fill, then CancelReject) or by Cancel Reject (CancelReject)
//! ```
//!
//! A report that fits no state (an Accepted twice, an execution before the
//! Accepted, a token the table does not hold) is counted and logged and
//! changes nothing.

use super::client::Open;
use super::Orders;
use crate::fixed_map::FixedMap;
use crate::proto::{msg_type, GatewayMsg, NewOrder, OrderKind, RejectReason, Side};
use crate::risk::checks::Reserved;
use crate::transport::ConnId;
use crate::venue::ouch::{self, cancel_reason, Enter, Inbound, Outbound};

/// OUCH's price for "no limit" (a market order), $214,748.3647: at or
/// above $200,000 the venue treats a price as a market order.
pub const MARKET_PRICE: u64 = 0x7FFF_FFFF;
/// Limit prices from here up cannot be sent as limits.
pub const MAX_LIMIT_PRICE: i64 = 2_000_000_000;

/// An order at the exchange, by its token.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    /// The session that sent it (connection id and generation).
    pub conn: usize,
    pub gen: u64,
    pub cl_ord_id: u64,
    pub client_ts: u64,
    /// The NewOrder's sequence number (a Reject's `ref_seq`).
    pub ref_seq: u32,
    /// Its account, side, and the price its open notional was counted at
    /// (`px` x `leaves` is what it holds of the account's credit).
    pub acct: Option<usize>,
    pub buy: bool,
    pub px: i64,
    /// The session's account name (for the journal).
    pub name: [u8; 8],
    pub leaves: u32,
    pub accepted: bool,
    pub order_id: u64,
    /// A Cancel is on its way: its `client_ts` and sequence number.
    pub cancel: Option<(u64, u32)>,
    /// That cancel is the kill switch's: the client is told `Canceled`
    /// (reason [`KILLED`]), and nothing if the exchange refuses it.
    pub swept: bool,
    /// What was entered, to enter it again after a reconnect.
    pub enter: Enter,
    /// Sampling: the order's arrival and when its Enter was queued (0: not
    /// sampled), and whether it was entered again after a reconnect.
    pub t_in: u64,
    pub t_sent: u64,
    pub resent: bool,
    /// Cancelled while its Enter was in flight and the exchange session
    /// down: not entered again at the login, and settled once the venue's
    /// replay is over (see `resend.rs`).
    pub held: bool,
    /// Its place in [`Table::live`].
    pub at: u32,
}

/// The loop's orders at the exchange, by token; sized once.
#[derive(Debug)]
pub struct Table {
    pub orders: FixedMap<Order>,
    /// Every token in `orders`, densely: what walks all the orders (the
    /// kill switch, a login's resend) visits the live ones only, not every
    /// slot of the map.
    pub live: Vec<u32>,
    /// Tokens to send again after a login, and how far that has gone
    /// (sized with the table; see `resend.rs`).
    pub resend: Vec<u32>,
    pub resend_at: usize,
    /// Tokens of closed sessions' orders to cancel, and how far that has gone.
    pub cancels: Vec<u32>,
    pub cancels_at: usize,
    /// Held orders (see [`Order::held`]) waiting for the replay's end: how
    /// many, the first token assigned after the login (an answer about one
    /// is newer than the whole replay), and whether such an answer came.
    pub held: usize,
    pub floor: u32,
    pub replayed: bool,
}

impl Table {
    pub fn new(cap: usize) -> Table {
        Table {
            orders: FixedMap::with_capacity(cap),
            live: Vec::with_capacity(cap),
            resend: Vec::with_capacity(cap),
            resend_at: 0,
            cancels: Vec::with_capacity(cap),
            cancels_at: 0,
            held: 0,
            floor: 0,
            replayed: false,
        }
    }

    /// Add `order` under `token` (the caller checked there is room).
    pub fn insert(&mut self, token: u32, mut order: Order) {
        order.at = self.live.len() as u32;
        if self.orders.insert(u64::from(token), order) {
            self.live.push(token);
        }
    }

    /// Take the order with `token` out.
    pub fn remove(&mut self, token: u32) -> Option<Order> {
        let o = self.orders.remove(u64::from(token))?;
        let at = o.at as usize;
        if self.live.get(at) == Some(&token) {
            self.live.swap_remove(at);
            if let Some(&moved) = self.live.get(at) {
                if let Some(m) = self.orders.get_mut(u64::from(moved)) {
                    m.at = at as u32;
                }
            }
        }
        Some(o)
    }
}

/// The OUCH Enter Order for a client's order.
pub fn enter_for(o: &NewOrder, token: u32) -> Enter {
    let mut cl_ord_id = [b' '; ouch::CL_ORD_ID_LEN];
    let mut digits = [0u8; 10];
    let mut n = token;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    cl_ord_id[..digits.len() - i].copy_from_slice(&digits[i..]);
    let market = o.kind == OrderKind::Market;
    Enter {
        user_ref: token,
        side: if o.side == Side::Buy { b'B' } else { b'S' },
        qty: o.qty,
        symbol: o.symbol.0,
        price: if market { MARKET_PRICE } else { o.price as u64 },
        tif: if market { b'3' } else { b'0' },
        display: b'Y',
        capacity: b'A',
        iso: b'N',
        cross: b'N',
        cl_ord_id,
    }
}

/// The `Canceled` reason of an order the kill switch cancelled.
pub const KILLED: u8 = b'K';

/// `px` x `qty`, saturated.
fn notional(px: i64, qty: u32) -> u64 {
    u64::try_from(i128::from(px) * i128::from(qty)).unwrap_or(u64::MAX)
}

/// The order a report is about (none for a System Event).
pub fn token_of(m: &Outbound) -> Option<u32> {
    match m {
        Outbound::SystemEvent { .. } => None,
        Outbound::Accepted(a) => Some(a.user_ref),
        Outbound::Replaced { order, .. } => Some(order.user_ref),
        Outbound::Canceled { user_ref, .. }
        | Outbound::Executed { user_ref, .. }
        | Outbound::Rejected { user_ref, .. }
        | Outbound::CancelReject { user_ref, .. } => Some(*user_ref),
    }
}

impl Orders {
    /// Sampling: the record of the exchange's answer to `m`'s order (an
    /// Accepted or a Rejected) carries the order's stamps; `Some(status)`
    /// when `m` is such an answer and its record was begun.
    pub(super) fn trace_answer(&mut self, msg: &Outbound, tr: &mut crate::sampler::tracer::Tracer) -> Option<u8> {
        if !tr.enabled() {
            return None;
        }
        let status = match msg {
            Outbound::Accepted(_) => 0,
            Outbound::Rejected { .. } => RejectReason::ExchangeRejected as u8,
            _ => return None,
        };
        let o = self.table.orders.get(u64::from(token_of(msg)?))?;
        if o.accepted {
            return None;
        }
        tr.parsed(crate::sampler::kind::EXCHANGE, o.cl_ord_id, &[]);
        let flags = if o.resent { crate::sampler::upstream_flag::RESENT } else { 0 };
        tr.upstream(crate::sampler::Upstream { order_in: o.t_in, sent: o.t_sent, flags });
        Some(status)
    }

    /// Can the report `m` be given to its session now? `Some((conn, gen))`:
    /// no, that session's outbox is too full (the upstream waits for it).
    pub(super) fn cannot_report(&mut self, msg: &Outbound) -> Option<(usize, u64)> {
        let token = token_of(msg)?;
        let o = self.table.orders.get(u64::from(token))?;
        let (conn, gen) = (o.conn, o.gen);
        let c = self.clients.get(conn, gen)?;
        // Room for the most one report makes: a Fill and a CancelReject.
        (!c.doomed && c.outbox.spare() < c.report_room()).then_some((conn, gen))
    }

    /// Send a client's order to the exchange. `Err`: refuse it with that reason.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn enter(
        &mut self,
        conn: usize,
        gen: u64,
        o: &NewOrder,
        acct: Option<usize>,
        res: Reserved,
        ref_seq: u32,
        now: u64,
    ) -> Result<(), RejectReason> {
        let Some(up) = self.up.as_mut() else { return Err(RejectReason::ExchangeUnavailable) };
        if o.kind == OrderKind::Limit && o.price >= MAX_LIMIT_PRICE {
            return Err(RejectReason::BadPrice);
        }
        if self.table.orders.len() >= self.table.orders.capacity() {
            return Err(RejectReason::TooManyOpenOrders);
        }
        // While orders are entered again after a login, a new one would
        // overtake them (its token is higher).
        if !up.up() || !up.room(ouch::size::ENTER) || !self.table.resend.is_empty() {
            self.counters.upstream_refused += 1;
            return Err(RejectReason::ExchangeUnavailable);
        }
        let Some(token) = up.token() else {
            self.counters.upstream_refused += 1;
            return Err(RejectReason::ExchangeUnavailable);
        };
        let enter = enter_for(o, token);
        if !up.send(&Inbound::Enter(enter), now) {
            self.counters.upstream_refused += 1;
            return Err(RejectReason::ExchangeUnavailable);
        }
        if let Some(c) = up.conn {
            self.requests.wake(c);
        }
        self.counters.orders_sent += 1;
        let order = Order {
            conn,
            gen,
            cl_ord_id: o.cl_ord_id,
            client_ts: o.client_ts,
            ref_seq,
            acct,
            name: self.clients.peek(conn, gen).map_or([b' '; 8], |c| c.name.0),
            buy: o.side == Side::Buy,
            px: if acct.is_some() && res.notional > 0 { res.px } else { 0 },
            leaves: o.qty,
            accepted: false,
            order_id: 0,
            cancel: None,
            swept: false,
            enter,
            t_in: 0,
            t_sent: 0,
            resent: false,
            held: false,
            at: 0,
        };
        self.table.insert(token, order);
        self.entered = Some(token);
        if let Some(c) = self.clients.get(conn, gen) {
            c.open.insert(o.cl_ord_id, Open { token, buy: o.side == Side::Buy, notional: res.notional });
        }
        Ok(())
    }

    /// Send a client's Cancel of the order with `token` to the exchange.
    pub(super) fn cancel(&mut self, token: u32, client_ts: u64, seq: u32, now: u64) -> Result<(), RejectReason> {
        let Some(order) = self.table.orders.get_mut(u64::from(token)) else { return Err(RejectReason::UnknownOrder) };
        if order.cancel.is_some() {
            return Err(RejectReason::CancelPending);
        }
        let Some(up) = self.up.as_mut() else { return Err(RejectReason::ExchangeUnavailable) };
        if !up.up() || !up.send(&Inbound::Cancel { user_ref: token, qty: 0 }, now) {
            self.counters.upstream_refused += 1;
            return Err(RejectReason::ExchangeUnavailable);
        }
        if let Some(c) = up.conn {
            self.requests.wake(c);
        }
        order.cancel = Some((client_ts, seq));
        self.counters.cancels_sent += 1;
        Ok(())
    }

    /// Send `msg` to session (`conn`, `gen`) from outside its turn, if it
    /// is still there (its outbox, and a wake).
    pub(super) fn report(&mut self, conn: usize, gen: u64, msg: GatewayMsg, now: u64) {
        let sent = match self.clients.peek(conn, gen).map(|c| c.fix.on) {
            Some(true) => self.fix_send(conn, gen, None, msg, now),
            Some(false) => self.clients.get(conn, gen).is_some_and(|c| c.emit(None, msg, now)),
            // A FIX session away keeps its reports for its next logon.
            None if self.fix_away(conn, gen, msg) => return,
            None => {
                self.counters.reports_for_closed_sessions += 1;
                return;
            }
        };
        if sent {
            self.counters.messages_out += 1;
        }
        self.requests.wake(ConnId(conn));
    }

    /// Orders of session `old` now belong to `new` (a FIX session logged on
    /// again): its reports go there, and its cancels find them.
    pub(super) fn adopt_orders(&mut self, old: (usize, u64), new: (usize, u64)) {
        for &token in &self.table.live {
            let Some(o) = self.table.orders.get_mut(u64::from(token)) else { continue };
            if (o.conn, o.gen) != old {
                continue;
            }
            (o.conn, o.gen) = new;
            let open = Open { token, buy: o.buy, notional: notional(o.px, o.leaves) };
            if let Some(c) = self.clients.get(new.0, new.1) {
                c.open.insert(o.cl_ord_id, open);
            }
        }
    }

    /// The order is done: out of the table and out of its session's open
    /// orders, and what is left of it gives its credit back.
    fn done(&mut self, token: u32) {
        if let Some(o) = self.table.remove(token) {
            self.finished(o.acct, o.buy, notional(o.px, o.leaves));
            if let Some(c) = self.clients.get(o.conn, o.gen) {
                c.open.remove(o.cl_ord_id);
            }
        }
    }

    fn invalid(&mut self, what: &str, token: u32) {
        self.counters.invalid_transitions += 1;
        crate::log_warn!("orders: exchange report that fits no order state: {what} for token {token}: ignored");
    }

    /// A sequenced message from the exchange that is not OUCH.
    pub(super) fn malformed_report(&mut self, m: &[u8], e: ouch::OuchError) {
        self.counters.upstream_malformed += 1;
        crate::log_warn!("orders: malformed message from the exchange ({} bytes): {e:?}: ignored", m.len());
    }

    /// One sequenced OUCH message from the exchange.
    pub(super) fn on_exchange(&mut self, msg: Outbound, recv_ts: u64, now: u64) {
        let Some(token) = token_of(&msg) else {
            if let Outbound::SystemEvent { code, .. } = msg {
                crate::log_info!("orders: exchange system event {:?}", code as char);
            }
            return;
        };
        let Some(o) = self.table.orders.get_mut(u64::from(token)).copied() else {
            self.counters.unknown_tokens += 1;
            crate::log_debug!("orders: exchange report for token {token}, which no order here has: ignored");
            return;
        };
        let ts = (recv_ts, recv_ts);
        match msg {
            Outbound::SystemEvent { .. } => {}
            Outbound::Accepted(a) => {
                if o.accepted {
                    return self.invalid("a second Order Accepted", token);
                }
                if let Some(e) = self.table.orders.get_mut(u64::from(token)) {
                    e.accepted = true;
                    e.order_id = a.order_ref;
                }
                self.counters.orders_acked += 1;
                let ack = GatewayMsg::Ack {
                    cl_ord_id: o.cl_ord_id,
                    client_ts: o.client_ts,
                    gw_recv_ts: ts.0,
                    gw_send_ts: ts.1,
                    order_id: a.order_ref,
                };
                self.report(o.conn, o.gen, ack, now);
            }
            Outbound::Replaced { .. } => self.invalid("an Order Replaced (the gateway sends no replace)", token),
            Outbound::Rejected { reason, .. } => {
                if o.accepted {
                    return self.invalid("an Order Rejected after its Accepted", token);
                }
                self.done(token);
                self.counters.rejects[RejectReason::ExchangeRejected as usize] += 1;
                let r = GatewayMsg::Reject {
                    cl_ord_id: o.cl_ord_id,
                    client_ts: o.client_ts,
                    gw_recv_ts: ts.0,
                    ref_seq: o.ref_seq,
                    reason: RejectReason::ExchangeRejected,
                    ref_type: msg_type::NEW_ORDER,
                    exchange_reason: reason,
                };
                self.report(o.conn, o.gen, r, now);
                if let Some((cts, _)) = o.cancel {
                    self.cancel_rejected(&o, cts, recv_ts, now);
                }
            }
            Outbound::Executed { qty, price, match_number, .. } => {
                if !o.accepted {
                    return self.invalid("an Order Executed before its Accepted", token);
                }
                if qty == 0 || qty > o.leaves {
                    return self.invalid("an Order Executed for more than the order's open quantity", token);
                }
                let leaves = o.leaves - qty;
                self.counters.fills += 1;
                self.filled(o.acct, o.buy, o.px, qty, price as i64, u64::from_le_bytes(o.enter.symbol));
                if let Some(e) = self.table.orders.get_mut(u64::from(token)) {
                    e.leaves = leaves;
                }
                let fill = GatewayMsg::Fill {
                    cl_ord_id: o.cl_ord_id,
                    client_ts: o.client_ts,
                    gw_recv_ts: ts.0,
                    gw_send_ts: ts.1,
                    price: price as i64,
                    qty,
                    leaves,
                    exec_id: match_number,
                };
                self.report(o.conn, o.gen, fill, now);
                if leaves == 0 {
                    self.done(token);
                    if let Some((cts, _)) = o.cancel {
                        // Filled before the cancel reached the exchange: it
                        // will not answer a cancel of an order it no longer has.
                        self.cancel_rejected(&o, cts, recv_ts, now);
                    }
                }
            }
            Outbound::Canceled { qty, reason, .. } => {
                if !o.accepted {
                    return self.invalid("an Order Canceled before its Accepted", token);
                }
                let leaves = o.leaves.saturating_sub(qty);
                if leaves > 0 {
                    // Canceled down, not out: the gateway never asks for that.
                    if let Some(e) = self.table.orders.get_mut(u64::from(token)) {
                        e.leaves = leaves;
                    }
                    self.release(o.acct, o.buy, notional(o.px, qty));
                    return self.invalid("an Order Canceled that leaves the order open", token);
                }
                self.done(token);
                let canceled = |reason| GatewayMsg::Canceled {
                    cl_ord_id: o.cl_ord_id,
                    client_ts: o.client_ts,
                    gw_recv_ts: ts.0,
                    gw_send_ts: ts.1,
                    qty,
                    reason,
                };
                let msg = match o.cancel {
                    Some(_) if o.swept => {
                        self.counters.kill_canceled += 1;
                        canceled(KILLED)
                    }
                    Some((cts, _)) if reason == cancel_reason::USER_REQUESTED => {
                        self.counters.cancels_acked += 1;
                        GatewayMsg::CancelAck {
                            cl_ord_id: o.cl_ord_id,
                            client_ts: cts,
                            gw_recv_ts: ts.0,
                            gw_send_ts: ts.1,
                        }
                    }
                    _ => {
                        self.counters.exchange_canceled += 1;
                        canceled(reason)
                    }
                };
                self.report(o.conn, o.gen, msg, now);
                if let (Some((cts, _)), true) = (o.cancel, reason != cancel_reason::USER_REQUESTED) {
                    self.cancel_rejected(&o, cts, recv_ts, now);
                }
            }
            Outbound::CancelReject { .. } => {
                let Some((cts, _)) = o.cancel else {
                    return self.invalid("a Cancel Reject with no cancel on its way", token);
                };
                if let Some(e) = self.table.orders.get_mut(u64::from(token)) {
                    e.cancel = None;
                    e.swept = false;
                }
                if o.swept {
                    // The exchange refused the kill's cancel: the order works on.
                    self.counters.kill_cancel_rejects += 1;
                    crate::log_warn!(
                        "orders: the exchange refused the kill switch's cancel of order {} (token {token}): it is still working",
                        o.cl_ord_id
                    );
                } else if self.risk_killed(o.acct) {
                    // The client's own cancel failed after the kill passed
                    // it by: the kill's cancel goes now.
                    self.counters.kill_cancels += self.sweep_killed(u64::MAX, now);
                }
                self.cancel_rejected(&o, cts, recv_ts, now);
            }
        }
    }

    /// Held order `o` (token `token`) never reached the exchange: it ends
    /// here (see `Orders::settle_held`).
    pub(super) fn order_never_sent(&mut self, token: u32, o: &Order, now: u64) {
        self.done(token);
        let reason = if o.swept { RejectReason::Killed } else { RejectReason::ExchangeUnavailable };
        self.counters.rejects[reason as usize] += 1;
        let r = GatewayMsg::Reject {
            cl_ord_id: o.cl_ord_id,
            client_ts: o.client_ts,
            gw_recv_ts: now,
            ref_seq: o.ref_seq,
            reason,
            ref_type: msg_type::NEW_ORDER,
            exchange_reason: 0,
        };
        self.report(o.conn, o.gen, r, now);
        if let Some((cts, _)) = o.cancel {
            self.cancel_rejected(o, cts, now, now);
        }
    }

    fn cancel_rejected(&mut self, o: &Order, cancel_ts: u64, recv_ts: u64, now: u64) {
        if o.swept {
            // The client asked for no cancel: it hears of the order's end
            // from the Fill or Reject itself.
            return;
        }
        self.counters.cancel_rejects += 1;
        let m = GatewayMsg::CancelReject {
            cl_ord_id: o.cl_ord_id,
            client_ts: cancel_ts,
            gw_recv_ts: recv_ts,
            gw_send_ts: recv_ts,
        };
        self.report(o.conn, o.gen, m, now);
    }
}
