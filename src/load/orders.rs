//! The order workload: a Logon per connection, then a mix of limit orders,
//! market orders and cancels of resting orders; heartbeats keep quiet
//! sessions alive and a Logout ends each one.
//!
//! Every request's answer is matched to it by `cl_ord_id` (an Ack or Reject
//! answers a NewOrder, a CancelAck, CancelReject or Reject a Cancel): with
//! an exchange behind the gateway, a reject made by the gateway itself can
//! pass an answer still on its way from the exchange. The round trip is to
//! that answer; the round trip to an order's first Fill is kept apart, and
//! the order's end (its last Fill, CancelAck, Canceled or Reject) is
//! followed so that only live orders are cancelled.
//!
//! Prices: buys rest at 9,900-9,999 ticks and sells at 10,001-10,100, so
//! they do not meet; `cross` percent of limit orders are priced through the
//! other side (a buy at 10,100, a sell at 9,900) and take what rests there.
//! Market orders (a fifth of the orders) take liquidity as well.
//!
//! The same requests go out in the binary protocol or, with a FIX target
//! CompID, in FIX 4.4 (`fix_wire.rs`), whose answers are read back into
//! the binary protocol's: one workload checks both.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use hdrhistogram::Histogram;
use serde::Serialize;

use super::fix_wire::{self, CancelOf, Head, Reply};
use super::report::Percentiles;
use super::workload::{Replies, Workload};
use crate::proto::{self, msg_type, ClientMsg, Code8, Frame, GatewayMsg, NewOrder, OrderKind, Parsed, Side};

/// What the gateway's answers were, by kind (also in the `--json` report).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Lifecycle {
    pub acks: u64,
    pub fills: u64,
    /// Orders with at least one Fill.
    pub orders_filled: u64,
    pub cancel_acks: u64,
    /// Cancels that came too late (the order was filled first): answered, not failures.
    pub cancel_rejects: u64,
    /// Orders the exchange ended itself (an immediate-or-cancel remainder).
    pub canceled: u64,
    /// The same execution reported twice for one order (counted `unexpected` too).
    pub duplicate_fills: u64,
    /// Rejects by reason label.
    pub rejects: BTreeMap<String, u64>,
    /// Round trip from the send time of an order that takes liquidity
    /// (market, or priced through the book) to its first Fill.
    pub first_fill_us: Percentiles,
    #[serde(skip)]
    pub first_fill_hist: Option<Histogram<u64>>,
}

impl Lifecycle {
    /// Add another loop's.
    pub fn add(&mut self, o: &Lifecycle) {
        self.acks += o.acks;
        self.fills += o.fills;
        self.orders_filled += o.orders_filled;
        self.cancel_acks += o.cancel_acks;
        self.cancel_rejects += o.cancel_rejects;
        self.canceled += o.canceled;
        self.duplicate_fills += o.duplicate_fills;
        for (k, v) in &o.rejects {
            *self.rejects.entry(k.clone()).or_default() += v;
        }
        match (&mut self.first_fill_hist, &o.first_fill_hist) {
            (Some(a), Some(b)) => {
                let _ = a.add(b);
            }
            (None, Some(b)) => self.first_fill_hist = Some(b.clone()),
            _ => {}
        }
        if let Some(h) = &self.first_fill_hist {
            self.first_fill_us = Percentiles::from_hist(h);
        }
    }

    pub fn render(&self) -> String {
        let f = &self.first_fill_us;
        let mut rej = String::new();
        for (k, v) in &self.rejects {
            rej.push_str(&format!("  {k}={v}"));
        }
        format!(
            "answers: acks {}  fills {} (orders filled {}, duplicates {})  cancel_acks {}  cancel_rejects {}  canceled {}  rejects {}{rej}\n\
             first fill of a taker (us)  p50 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  ({} orders)",
            self.acks,
            self.fills,
            self.orders_filled,
            self.duplicate_fills,
            self.cancel_acks,
            self.cancel_rejects,
            self.canceled,
            self.rejects.values().sum::<u64>(),
            f.p50,
            f.p99,
            f.p999,
            f.max,
            f.samples
        )
    }
}

struct Conn {
    logged_on: bool,
    /// The gateway logged the session out for its shutdown.
    ended: bool,
    /// Outbound sequence.
    seq: u32,
    /// Next gateway sequence expected.
    rx_seq: u32,
    next_cl_ord_id: u64,
    /// Limit orders that may be resting, oldest first (ended ones are
    /// skipped when met: `live` says which are not, and each one's side).
    open_orders: VecDeque<u64>,
    live: HashMap<u64, Side>,
    filled: HashSet<u64>,
    /// Orders that take liquidity when they arrive (market, or priced
    /// through the book) and have no fill yet, with their send time: their
    /// first Fill is timed.
    takers: HashMap<u64, u64>,
    /// The exec ids of each live order's fills, to catch one delivered twice.
    execs: HashMap<u64, Vec<u64>>,
    /// Requests waiting for their answer: (cl_ord_id, is a cancel) -> send time.
    outstanding: HashMap<(u64, bool), u64>,
    rng: u64,
}

impl Conn {
    fn next_rand(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Append `m` for `account`: in FIX when `fix` names the gateway's
    /// CompID, else in the binary protocol.
    fn push(&mut self, m: ClientMsg, account: Code8, fix: Option<&str>, symbol: Code8, tx: &mut Vec<u8>) {
        let Some(target) = fix else {
            let mut b = [0u8; proto::MAX_FRAME_LEN];
            if let Some(n) = m.encode(self.seq, &mut b) {
                self.seq = self.seq.wrapping_add(1);
                tx.extend_from_slice(&b[..n]);
            }
            return;
        };
        // A FIX cancel has a ClOrdID of its own and names the order's side.
        let cancel = match m {
            ClientMsg::Cancel { cl_ord_id, .. } => {
                let cancel_id = self.next_cl_ord_id;
                self.next_cl_ord_id += 1;
                let side = self.live.get(&cl_ord_id).copied().unwrap_or(Side::Buy);
                Some(CancelOf { cancel_id, side, symbol })
            }
            _ => None,
        };
        let h = Head { seq: self.seq, sender: account.as_str(), target, wall_ns: crate::clock::realtime_ns() };
        if fix_wire::encode(&m, &h, cancel, tx) {
            self.seq = self.seq.wrapping_add(1);
        }
    }

    /// The order is done: no more cancels for it.
    fn ended(&mut self, id: u64) {
        self.live.remove(&id);
        self.filled.remove(&id);
        self.takers.remove(&id);
        self.execs.remove(&id);
    }
}

pub struct OrdersLoad {
    symbol: Code8,
    /// Percent of limit orders priced to cross.
    cross: u64,
    conns: Vec<Conn>,
    life: Lifecycle,
    fill_hist: Histogram<u64>,
    logon: super::LogonSpec,
    /// Orders acknowledged, by account (with `acked_log`).
    acked: Vec<(Code8, u64)>,
    /// Each connection's account.
    accounts: Vec<Code8>,
    /// FIX 4.4 to this TargetCompID; `None`: the binary protocol.
    fix: Option<String>,
}

impl Drop for OrdersLoad {
    /// The acknowledged orders, appended to `acked_log` in one write.
    fn drop(&mut self) {
        let Some(path) = &self.logon.acked_log else { return };
        let mut text = String::with_capacity(self.acked.len() * 20);
        for (a, id) in &self.acked {
            text.push_str(&format!("{} {id}\n", a.as_str()));
        }
        use std::io::Write;
        let r = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = r {
            crate::log_warn!("load: --acked-log {}: {e}", path.display());
        }
    }
}

impl OrdersLoad {
    pub fn new(cross_percent: u8) -> Self {
        OrdersLoad {
            symbol: Code8::new("TGATE").unwrap_or(Code8([b' '; 8])),
            cross: cross_percent.min(100) as u64,
            conns: Vec::new(),
            life: Lifecycle::default(),
            fill_hist: Histogram::new_with_bounds(1, super::HIST_MAX_NS, 3).expect("valid histogram bounds"),
            logon: super::LogonSpec::default(),
            acked: Vec::new(),
            accounts: Vec::new(),
            fix: None,
        }
    }

    /// Speak FIX 4.4 to a gateway whose CompID is `target`.
    pub fn with_fix(mut self, target: Option<String>) -> Self {
        self.fix = target;
        self
    }

    fn push(&mut self, ci: usize, m: ClientMsg, tx: &mut Vec<u8>) {
        let account = self.accounts[ci];
        self.conns[ci].push(m, account, self.fix.as_deref(), self.symbol, tx);
    }

    /// Log on as `spec` says.
    pub fn with_logon(mut self, spec: super::LogonSpec) -> Self {
        self.logon = spec;
        self
    }
}

impl Default for OrdersLoad {
    fn default() -> Self {
        OrdersLoad::new(0)
    }
}

impl Workload for OrdersLoad {
    fn open(&mut self, ci: usize, tx: &mut Vec<u8>) {
        while self.conns.len() <= ci {
            let i = self.conns.len() as u64;
            self.conns.push(Conn {
                logged_on: false,
                ended: false,
                seq: 1,
                rx_seq: 1,
                // Unique over the run: connection (over every loop) in the
                // high bits, so an account's sessions never share an id.
                next_cl_ord_id: ((self.logon.first as u64 + i) << 40) | 1,
                open_orders: VecDeque::new(),
                live: HashMap::new(),
                filled: HashSet::new(),
                takers: HashMap::new(),
                execs: HashMap::new(),
                outstanding: HashMap::with_capacity(1024),
                rng: 0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            });
        }
        let l = &self.logon;
        let i = l.first + ci;
        let account = match l.accounts.len() {
            0 => Code8::new(&format!("LG{}", i % 1_000_000)).unwrap_or(Code8(*b"LG      ")),
            n => l.accounts[i % n],
        };
        let password = l.password;
        if self.accounts.len() <= ci {
            self.accounts.resize(ci + 1, account);
        }
        self.accounts[ci] = account;
        self.push(ci, ClientMsg::Logon { account, password }, tx);
    }

    fn ready(&self, ci: usize) -> bool {
        self.conns.get(ci).is_some_and(|c| c.logged_on)
    }

    fn request(&mut self, ci: usize, ts: u64, tx: &mut Vec<u8>) {
        let symbol = self.symbol;
        let cross = self.cross;
        let c = &mut self.conns[ci];
        while c.open_orders.front().is_some_and(|id| !c.live.contains_key(id)) {
            c.open_orders.pop_front();
        }
        let r = c.next_rand() % 100;
        let cancel = !c.open_orders.is_empty() && (r >= 60 || c.open_orders.len() >= 1000);
        if cancel {
            let id = c.open_orders.pop_front().unwrap_or(0);
            c.outstanding.insert((id, true), ts);
            self.push(ci, ClientMsg::Cancel { cl_ord_id: id, client_ts: ts }, tx);
            return;
        }
        let id = c.next_cl_ord_id;
        c.next_cl_ord_id += 1;
        let market = r < 20;
        let side = if c.next_rand() & 1 == 0 { Side::Buy } else { Side::Sell };
        let crossing = c.next_rand() % 100 < cross;
        let price = match (market, crossing, side) {
            (true, _, _) => 0,
            (false, true, Side::Buy) => 10_100,
            (false, true, Side::Sell) => 9_900,
            (false, false, Side::Buy) => 9_900 + (c.next_rand() % 100) as i64,
            (false, false, Side::Sell) => 10_001 + (c.next_rand() % 100) as i64,
        };
        let o = NewOrder {
            cl_ord_id: id,
            client_ts: ts,
            price,
            qty: 1 + (c.next_rand() % 100) as u32,
            side,
            kind: if market { OrderKind::Market } else { OrderKind::Limit },
            symbol,
        };
        if !market {
            c.open_orders.push_back(id);
            c.live.insert(id, side);
        }
        if market || crossing {
            c.takers.insert(id, ts);
        }
        c.outstanding.insert((id, false), ts);
        self.push(ci, ClientMsg::NewOrder(o), tx);
    }

    fn heartbeat(&mut self, ci: usize, tx: &mut Vec<u8>) -> bool {
        self.push(ci, ClientMsg::Heartbeat, tx);
        true
    }

    fn goodbye(&mut self, ci: usize, tx: &mut Vec<u8>) -> bool {
        self.push(ci, ClientMsg::Logout, tx);
        true
    }

    fn replies(&mut self, ci: usize, buf: &[u8], seen: &mut Replies<'_>) -> Result<usize, String> {
        let c = &mut self.conns[ci];
        let life = &mut self.life;
        let mut off = 0;
        loop {
            let Some((len, seq, msg)) = next_reply(self.fix.is_some(), ci, &buf[off..], seen)? else {
                return Ok(off);
            };
            off += len;
            if seq != c.rx_seq {
                seen.out_of_sequence();
            }
            c.rx_seq = seq.wrapping_add(1);
            let Some(msg) = msg else { continue };
            // (key of the request it answers, rejected?)
            let answer = match msg {
                GatewayMsg::LogonAck { .. } => {
                    c.logged_on = true;
                    continue;
                }
                GatewayMsg::Heartbeat => continue,
                GatewayMsg::Logout { reason: proto::LogoutReason::Shutdown } => {
                    crate::log_info!(
                        "load: connection {ci}: gateway shutting down: logged out with {} requests unanswered",
                        c.outstanding.len()
                    );
                    seen.shutdown(c.outstanding.len());
                    c.outstanding.clear();
                    c.ended = true;
                    continue;
                }
                GatewayMsg::Logout { reason } => {
                    if reason != proto::LogoutReason::Normal {
                        crate::log_warn!("load: connection {ci}: gateway logged us out: {reason:?}");
                    }
                    // No heartbeat after it (one racing the gateway's FIN
                    // would turn its close into a reset).
                    c.logged_on = false;
                    continue;
                }
                GatewayMsg::Ack { cl_ord_id, .. } => {
                    life.acks += 1;
                    if self.logon.acked_log.is_some() {
                        self.acked.push((self.accounts[ci], cl_ord_id));
                    }
                    ((cl_ord_id, false), false)
                }
                GatewayMsg::CancelAck { cl_ord_id, .. } => {
                    life.cancel_acks += 1;
                    c.ended(cl_ord_id);
                    ((cl_ord_id, true), false)
                }
                GatewayMsg::CancelReject { cl_ord_id, .. } => {
                    life.cancel_rejects += 1;
                    ((cl_ord_id, true), false)
                }
                GatewayMsg::Reject { cl_ord_id, reason, ref_seq, ref_type, exchange_reason, .. } => {
                    crate::log_warn!(
                        "load: connection {ci}: rejected: {reason} (seq {ref_seq}, order {cl_ord_id}, exchange reason {exchange_reason})"
                    );
                    let cancel = ref_type == msg_type::CANCEL;
                    if cancel && reason == proto::RejectReason::UnknownOrder && !c.live.contains_key(&cl_ord_id) {
                        // The order ended (its last Fill) while the Cancel was on its way.
                        life.cancel_rejects += 1;
                        if let Some(ts) = c.outstanding.remove(&(cl_ord_id, true)) {
                            seen.answered(ts, false);
                        }
                        continue;
                    }
                    *life.rejects.entry(reason.label().to_string()).or_default() += 1;
                    if !cancel {
                        c.ended(cl_ord_id);
                    }
                    ((cl_ord_id, cancel), true)
                }
                GatewayMsg::Fill { cl_ord_id, leaves, exec_id, .. } => {
                    life.fills += 1;
                    let seen_ids = c.execs.entry(cl_ord_id).or_default();
                    if seen_ids.contains(&exec_id) {
                        life.duplicate_fills += 1;
                        seen.unexpected();
                    } else {
                        seen_ids.push(exec_id);
                    }
                    if c.filled.insert(cl_ord_id) {
                        life.orders_filled += 1;
                    }
                    if let Some(sent) = c.takers.remove(&cl_ord_id).filter(|_| seen.record) {
                        self.fill_hist.saturating_record(seen.now.saturating_sub(sent).max(1));
                    }
                    if leaves == 0 {
                        c.ended(cl_ord_id);
                    }
                    continue;
                }
                GatewayMsg::Canceled { cl_ord_id, .. } => {
                    life.canceled += 1;
                    c.ended(cl_ord_id);
                    continue;
                }
            };
            match c.outstanding.remove(&answer.0) {
                Some(ts) => seen.answered(ts, answer.1),
                None => seen.unexpected(),
            }
        }
    }

    fn outstanding(&self, ci: usize) -> usize {
        self.conns.get(ci).map_or(0, |c| c.outstanding.len())
    }

    fn ended(&self, ci: usize) -> bool {
        self.conns.get(ci).is_some_and(|c| c.ended)
    }

    fn max_reply(&self) -> usize {
        match self.fix {
            Some(_) => crate::fix::MAX_MESSAGE,
            None => proto::MAX_FRAME_LEN,
        }
    }

    fn lifecycle(&self) -> Option<Lifecycle> {
        let mut l = self.life.clone();
        l.first_fill_us = Percentiles::from_hist(&self.fill_hist);
        l.first_fill_hist = Some(self.fill_hist.clone());
        Some(l)
    }
}

/// The next whole answer at the front of `buf`: its length, its sequence
/// number and the answer (`None`: nothing to match, a TestRequest, or an
/// undecodable one, counted); `Ok(None)` until it is all there.
#[allow(clippy::type_complexity)]
fn next_reply(
    fix: bool,
    ci: usize,
    buf: &[u8],
    seen: &mut Replies<'_>,
) -> Result<Option<(usize, u32, Option<GatewayMsg>)>, String> {
    if fix {
        return Ok(fix_wire::decode(buf)?.map(|(len, seq, r)| {
            let msg = match r {
                Reply::Gw(m) => Some(m),
                // Our Heartbeat after a quiet second answers it in time.
                Reply::TestRequest => None,
                Reply::Refused(text) => {
                    crate::log_warn!("load: connection {ci}: the gateway refused a request: {text}");
                    seen.corrupted();
                    None
                }
            };
            (len, seq, msg)
        }));
    }
    let f = match Frame::parse(buf) {
        Ok(Parsed::Frame(f)) => f,
        Ok(Parsed::Incomplete) => return Ok(None),
        Err(e) => return Err(format!("gateway framing error: {e}")),
    };
    let msg = match GatewayMsg::decode(&f) {
        Ok(m) => Some(m),
        Err(e) => {
            crate::log_warn!("load: connection {ci}: undecodable gateway message: {e:?}");
            seen.corrupted();
            None
        }
    };
    Ok(Some((f.len(), f.seq(), msg)))
}
