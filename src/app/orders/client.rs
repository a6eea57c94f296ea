//! A client session's state, and how every message to it is sent: into the
//! connection's output when the session is being served, else into its
//! outbox (an exchange report read on the upstream connection), which the
//! loop is asked to flush ([`crate::app::Requests::wake`]). Output keeps its
//! order: while the outbox holds anything, new messages queue behind it.

use crate::app::OutBuf;
use crate::fixed_map::FixedMap;
use crate::proto::{self, GatewayMsg};
use crate::risk::checks::SessionRisk;

/// A session's open order: its OUCH token (0 in local mode), side, and
/// the notional it holds of its account's credit (released when it is done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    pub token: u32,
    pub buy: bool,
    pub notional: u64,
}

/// A FIX connection's session-layer state (docs/FIX.md); `on` is false
/// for the binary protocol's connections.
#[derive(Debug, Clone, Copy, Default)]
pub struct FixConn {
    /// It connected to the FIX port.
    pub on: bool,
    /// Its FIX session (in the loop's `FixBook`), once logged on.
    pub id: Option<usize>,
    /// The SenderCompID of its Logon.
    pub comp: super::fix_book::Comp,
    /// Its HeartBtInt (108), ms.
    pub heartbeat_ms: u64,
    /// Its Logon asked for a sequence reset (141=Y).
    pub reset: bool,
    /// Its Logon's MsgSeqNum.
    pub logon_seq: u32,
    /// A TestRequest was sent at this time (0: none outstanding).
    pub test_sent: u64,
    /// Our ResendRequest is outstanding: messages above the expected
    /// number are dropped until the gap is filled.
    pub gap: bool,
    /// A resend to it is under way: the next stored number to send, and
    /// the last one (new messages join the resend).
    pub resend_next: u32,
    pub resend_to: Option<u32>,
    /// The last number the client asked for: messages after it (new ones,
    /// queued behind the resend) go without PossDupFlag.
    pub resend_asked: u32,
    /// Why its Logon was refused (the Logout's Text).
    pub refusal: Option<crate::proto::RejectReason>,
    /// The order or cancel being handled (for a refusal's report).
    pub current: Option<FixCurrent>,
}

/// A FIX order or cancel being handled, for the report of its refusal.
#[derive(Debug, Clone, Copy)]
pub struct FixCurrent {
    /// The message's ClOrdID, and a cancel's OrigClOrdID (0 for an order).
    pub cl_ord_id: u64,
    pub orig_id: u64,
    pub order: super::fix_book::FixOrder,
    /// The order's entry was added to its session's map by this message.
    pub inserted: bool,
}

/// Bytes a session's outbox holds: 256 fills. A client that lets more
/// pile up (it stopped reading) is disconnected: see `Client::doomed`.
pub const OUTBOX_BYTES: usize = 16 * 1024;

/// One client session, kept by the application (indexed by connection id)
/// so that an exchange report can reach it from another connection.
#[derive(Debug)]
pub struct Client {
    /// Tells this session from an earlier one on the same connection id.
    pub gen: u64,
    pub logged_on: bool,
    /// Its Logon is with the verifier (see `risk::auth`).
    pub pending: bool,
    /// The Logon's sequence number and arrival (a refusal's `ref_seq` and
    /// `gw_recv_ts`).
    pub logon_seq: u32,
    pub logon_ts: u64,
    /// Its account, once logged on (`None`: no accounts are configured).
    pub account: Option<usize>,
    /// The account its Logon named (for the journal).
    pub name: crate::proto::Code8,
    /// It holds one of its account's sessions (given back at close).
    pub holds_session: bool,
    /// Its Logon was refused, or it was logged out by the kill switch: it
    /// closes once its outbox is flushed, and reads nothing more.
    pub closing: bool,
    /// The session has ended (see `Orders::ended`).
    pub over: bool,
    /// Where it connected from.
    pub source: Option<std::net::IpAddr>,
    /// Its order-rate cell and recent orders.
    pub risk: SessionRisk,
    /// The Logon's protocol version; every later frame must carry it.
    pub version: u8,
    /// Next sequence number expected from the client (first is 1).
    pub expect_seq: u32,
    /// Next sequence number the gateway sends (first is 1).
    pub out_seq: u32,
    /// Open orders by `cl_ord_id`. Sized for the session's limit when it
    /// logs on ([`Client::room_for_orders`]), kept for the connection's
    /// next sessions; never grows while the session trades.
    pub open: FixedMap<Open>,
    pub last_rx: u64,
    pub last_tx: u64,
    /// Since when its input has waited for its replies to have room (0:
    /// it does not): see `Orders::input_gate`.
    pub held_since: u64,
    pub outbox: OutBuf,
    /// Its outbox overflowed: a report could not be queued. The session is
    /// reset at its next turn (counted `slow_client_aborts`).
    pub doomed: bool,
    /// FIX state, for a FIX connection.
    pub fix: FixConn,
}

impl Default for Client {
    /// A session with no room for orders yet: a connection that never logs
    /// on costs no order map (32,768 slots for the default 10,000 orders).
    fn default() -> Client {
        Client {
            gen: 0,
            logged_on: false,
            pending: false,
            logon_seq: 0,
            logon_ts: 0,
            account: None,
            name: crate::proto::Code8([b' '; 8]),
            holds_session: false,
            closing: false,
            over: false,
            source: None,
            risk: SessionRisk::default(),
            version: proto::VERSION,
            expect_seq: 1,
            out_seq: 1,
            open: FixedMap::with_capacity(0),
            last_rx: 0,
            last_tx: 0,
            held_since: 0,
            outbox: OutBuf::with_capacity(OUTBOX_BYTES),
            doomed: false,
            fix: FixConn::default(),
        }
    }
}

impl Client {
    /// The session logged on: room for `max_open_orders` open orders (an
    /// allocation the first time a connection slot logs on, kept after).
    pub fn room_for_orders(&mut self, max_open_orders: usize) {
        if self.open.capacity() < max_open_orders {
            self.open = FixedMap::with_capacity(max_open_orders);
        }
    }

    /// Ready for a new session (keeps the allocations).
    pub fn reset(&mut self, gen: u64, now: u64) {
        self.gen = gen;
        self.logged_on = false;
        self.pending = false;
        self.logon_seq = 0;
        self.logon_ts = 0;
        self.account = None;
        self.name = crate::proto::Code8([b' '; 8]);
        self.holds_session = false;
        self.closing = false;
        self.over = false;
        self.source = None;
        self.risk.reset();
        self.version = proto::VERSION;
        self.expect_seq = 1;
        self.out_seq = 1;
        self.open.clear();
        self.last_rx = now;
        self.last_tx = now;
        self.held_since = 0;
        self.outbox.clear();
        self.doomed = false;
        self.fix = FixConn::default();
    }

    /// Send `msg`: into `out` when given and nothing is queued before it,
    /// else into the outbox. False when it could not be sent at all (no
    /// room in the outbox: the session is doomed; or a message version 1
    /// does not have).
    pub fn emit(&mut self, out: Option<&mut OutBuf>, msg: GatewayMsg, now: u64) -> bool {
        let mut buf = [0u8; proto::MAX_FRAME_LEN];
        let Some(n) = msg.encode_as(self.version, self.out_seq, &mut buf) else { return false };
        let put = match out {
            Some(o) if self.outbox.len() == 0 && o.spare() >= n => o.put(&buf[..n]),
            _ => self.outbox.put(&buf[..n]),
        };
        if put {
            self.out_seq = self.out_seq.wrapping_add(1);
            self.last_tx = now;
        } else {
            self.doomed = true;
        }
        put
    }

    /// Room its outbox must have for an exchange report to be queued: two
    /// of its protocol's longest reports.
    pub fn report_room(&self) -> usize {
        if self.fix.on {
            2 * super::fix_out::FIX_REPORT_MAX
        } else {
            2 * proto::MAX_FRAME_LEN
        }
    }

    /// Move what the outbox holds into `out`, as much as fits (it is a
    /// byte stream: a message may be split between two writes).
    pub fn flush_outbox(&mut self, out: &mut OutBuf) {
        self.outbox.move_into(out);
    }
}

/// The sessions of a loop, by connection id, with their allocations kept
/// for the next ones.
#[derive(Debug, Default)]
pub struct Clients {
    slots: Vec<Option<Client>>,
    spare: Vec<Client>,
    next_gen: u64,
}

impl Clients {
    /// A new session on connection `i`.
    pub fn open(&mut self, i: usize, now: u64) -> u64 {
        if self.slots.len() <= i {
            self.slots.resize_with(i + 1, || None);
        }
        self.next_gen += 1;
        let mut c = self.spare.pop().unwrap_or_default();
        c.reset(self.next_gen, now);
        let gen = c.gen;
        if let Some(old) = self.slots[i].replace(c) {
            self.spare.push(old);
        }
        gen
    }

    pub fn close(&mut self, i: usize) {
        if let Some(c) = self.slots.get_mut(i).and_then(|s| s.take()) {
            self.spare.push(c);
        }
    }

    /// Connection ids that may hold a session (`0..slots()`).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The session on connection `i`, whichever it is.
    pub fn at(&mut self, i: usize) -> Option<&mut Client> {
        self.slots.get_mut(i).and_then(|s| s.as_mut())
    }

    /// Session `gen` on connection `i`, to look at.
    pub fn peek(&self, i: usize, gen: u64) -> Option<&Client> {
        self.slots.get(i).and_then(|s| s.as_ref()).filter(|c| c.gen == gen)
    }

    /// Session `gen` on connection `i`, if it is still the one there.
    pub fn get(&mut self, i: usize, gen: u64) -> Option<&mut Client> {
        self.slots.get_mut(i).and_then(|s| s.as_mut()).filter(|c| c.gen == gen)
    }
}
