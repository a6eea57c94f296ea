//! The order workload: a Logon per connection, then a mix of limit orders,
//! market orders and cancels of resting orders; every reply is matched to
//! its request, in order, on its connection; heartbeats keep quiet sessions
//! alive and a Logout ends each one.

use std::collections::VecDeque;

use super::workload::{Replies, Workload};
use crate::proto::{self, ClientMsg, Code8, Frame, GatewayMsg, NewOrder, OrderKind, Parsed, Side};

/// What a reply must look like.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Ack or Reject for this cl_ord_id.
    Order(u64),
    /// CancelAck or Reject for this cl_ord_id.
    Cancel(u64),
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
    open_orders: VecDeque<u64>,
    outstanding: VecDeque<Expect>,
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

    fn push(&mut self, m: ClientMsg, tx: &mut Vec<u8>) {
        let mut b = [0u8; proto::MAX_FRAME_LEN];
        if let Some(n) = m.encode(self.seq, &mut b) {
            self.seq = self.seq.wrapping_add(1);
            tx.extend_from_slice(&b[..n]);
        }
    }
}

pub struct OrdersLoad {
    symbol: Code8,
    conns: Vec<Conn>,
}

impl Default for OrdersLoad {
    fn default() -> Self {
        OrdersLoad { symbol: Code8::new("TGATE").unwrap_or(Code8([b' '; 8])), conns: Vec::new() }
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
                next_cl_ord_id: 1,
                open_orders: VecDeque::new(),
                outstanding: VecDeque::with_capacity(1024),
                rng: 0x9e37_79b9_7f4a_7c15 ^ (i + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            });
        }
        let account = Code8::new(&format!("LG{}", ci % 1_000_000)).unwrap_or(Code8(*b"LG      "));
        self.conns[ci].push(ClientMsg::Logon { account }, tx);
    }

    fn ready(&self, ci: usize) -> bool {
        self.conns.get(ci).is_some_and(|c| c.logged_on)
    }

    fn request(&mut self, ci: usize, ts: u64, tx: &mut Vec<u8>) {
        let symbol = self.symbol;
        let c = &mut self.conns[ci];
        let r = c.next_rand() % 100;
        let cancel = !c.open_orders.is_empty() && (r >= 60 || c.open_orders.len() >= 1000);
        if cancel {
            let id = c.open_orders.pop_front().unwrap_or(0);
            c.push(ClientMsg::Cancel { cl_ord_id: id, client_ts: ts }, tx);
            c.outstanding.push_back(Expect::Cancel(id));
            return;
        }
        let id = c.next_cl_ord_id;
        c.next_cl_ord_id += 1;
        let market = r < 20;
        let side = if c.next_rand() & 1 == 0 { Side::Buy } else { Side::Sell };
        let o = NewOrder {
            cl_ord_id: id,
            client_ts: ts,
            price: if market { 0 } else { 10_000 + (c.next_rand() % 100) as i64 },
            qty: 1 + (c.next_rand() % 100) as u32,
            side,
            kind: if market { OrderKind::Market } else { OrderKind::Limit },
            symbol,
        };
        if !market {
            c.open_orders.push_back(id);
        }
        c.push(ClientMsg::NewOrder(o), tx);
        c.outstanding.push_back(Expect::Order(id));
    }

    fn heartbeat(&mut self, ci: usize, tx: &mut Vec<u8>) -> bool {
        self.conns[ci].push(ClientMsg::Heartbeat, tx);
        true
    }

    fn goodbye(&mut self, ci: usize, tx: &mut Vec<u8>) -> bool {
        self.conns[ci].push(ClientMsg::Logout, tx);
        true
    }

    fn replies(&mut self, ci: usize, buf: &[u8], seen: &mut Replies<'_>) -> Result<usize, String> {
        let c = &mut self.conns[ci];
        let mut off = 0;
        loop {
            let f = match Frame::parse(&buf[off..]) {
                Ok(Parsed::Frame(f)) => f,
                Ok(Parsed::Incomplete) => return Ok(off),
                Err(e) => return Err(format!("gateway framing error: {e}")),
            };
            off += f.len();
            if f.seq() != c.rx_seq {
                seen.out_of_sequence();
            }
            c.rx_seq = f.seq().wrapping_add(1);
            let msg = match GatewayMsg::decode(&f) {
                Ok(m) => m,
                Err(e) => {
                    crate::log_warn!("load: connection {ci}: undecodable gateway message: {e:?}");
                    seen.corrupted();
                    continue;
                }
            };
            let (id, ts, rejected) = match msg {
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
                    continue;
                }
                GatewayMsg::Ack { cl_ord_id, client_ts, .. } => (cl_ord_id, client_ts, false),
                GatewayMsg::CancelAck { cl_ord_id, client_ts, .. } => (cl_ord_id, client_ts, false),
                GatewayMsg::Reject { cl_ord_id, client_ts, reason, ref_seq, .. } => {
                    crate::log_warn!("load: connection {ci}: rejected: {reason} (seq {ref_seq}, order {cl_ord_id})");
                    (cl_ord_id, client_ts, true)
                }
            };
            let matches = match (c.outstanding.front(), msg) {
                (Some(Expect::Order(x)), GatewayMsg::Ack { .. }) => *x == id,
                (Some(Expect::Cancel(x)), GatewayMsg::CancelAck { .. }) => *x == id,
                (Some(Expect::Order(x) | Expect::Cancel(x)), GatewayMsg::Reject { .. }) => *x == id,
                _ => false,
            };
            if matches {
                c.outstanding.pop_front();
                seen.answered(ts, rejected);
            } else {
                seen.unexpected();
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
        proto::MAX_FRAME_LEN
    }
}
