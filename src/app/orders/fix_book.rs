//! The FIX sessions of a loop, by the client's SenderCompID: their sequence
//! numbers, the application messages they were sent (for ResendRequests)
//! and their orders' figures (for ExecutionReports). A FIX session outlives
//! its connection: what is reported to it while it is away is numbered and
//! stored, and it asks for it again when it logs on (docs/FIX.md).
//!
//! Each session's sequence numbers, next ExecID and store live in a slot
//! of a region made at start-up (`fix::slots`): a file under the journal's
//! directory makes them outlast the process. Its orders' figures do not
//! (the gateway's orders end with it).

use crate::fix::slots::{Region, Slot};
use crate::fix::store::Store;
use crate::fixed_map::FixedMap;
use crate::proto::Code8;

/// Longest CompID taken.
pub const COMP_LEN: usize = 32;

/// A CompID: 1-32 printable characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Comp {
    b: [u8; COMP_LEN],
    len: u8,
}

impl Comp {
    pub fn new(v: &[u8]) -> Option<Comp> {
        if v.is_empty() || v.len() > COMP_LEN || !v.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        let mut b = [0; COMP_LEN];
        b[..v.len()].copy_from_slice(v);
        Some(Comp { b, len: v.len() as u8 })
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.b[..usize::from(self.len)]
    }

    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("?")
    }
}

/// The FIX listener's settings.
#[derive(Debug, Clone, Copy)]
pub struct FixConfig {
    /// The port FIX sessions connect to (the binary protocol keeps its own).
    pub port: u16,
    /// The gateway's CompID: a client's TargetCompID (56) must be this.
    pub comp_id: Comp,
    /// Bytes of sent application messages kept per FIX session for resends.
    pub store_bytes: usize,
    /// FIX sessions (SenderCompIDs) a loop keeps.
    pub max_sessions: usize,
}

impl Default for FixConfig {
    fn default() -> Self {
        FixConfig {
            port: 0,
            comp_id: Comp::new(b"TAILGATE").unwrap_or_default(),
            store_bytes: 1 << 20,
            max_sessions: 64,
        }
    }
}

/// What a FIX session's ExecutionReports need to know of one of its orders.
#[derive(Debug, Clone, Copy)]
pub struct FixOrder {
    pub symbol: Code8,
    pub buy: bool,
    pub market: bool,
    pub qty: u32,
    pub cum: u32,
    /// Sum of price x quantity of its executions, ticks (AvgPx).
    pub value: i128,
    /// OrderID (37), once acknowledged (0: not yet).
    pub order_id: u64,
    /// The ClOrdID of its OrderCancelRequest on its way (0: none).
    pub cancel_id: u64,
}

/// One FIX session. See the module docs.
#[derive(Debug)]
pub struct Identity {
    pub comp: Comp,
    /// Its messages, and with them its sequence numbers and next ExecID.
    pub store: Store,
    pub orders: FixedMap<FixOrder>,
    /// The connection it is logged on over, if any.
    pub live: Option<(usize, u64)>,
    /// The connection it last used (reports for its orders name it).
    pub last: Option<(usize, u64)>,
    /// The account it belongs to (the first logon's): no other account
    /// may log on as it, and read its reports.
    pub account: Option<usize>,
    /// Kept from before a restart, not logged on since: its account is
    /// the next logon's (whose name is its SenderCompID).
    pub restored: bool,
}

/// Counters of the FIX sessions.
#[derive(Debug, Default, Clone, Copy)]
pub struct FixCounters {
    pub logons: u64,
    pub messages_in: u64,
    pub session_rejects: u64,
    pub business_rejects: u64,
    pub resend_requests_in: u64,
    pub resent: u64,
    pub gap_filled: u64,
    /// Messages asked for that had left the store (gap-filled: lost to the client).
    pub resend_unavailable: u64,
    pub resend_requests_out: u64,
    pub seq_too_low: u64,
    pub test_requests_out: u64,
    pub framing_errors: u64,
    /// Reports to a session away, stored for its next logon.
    pub stored_while_away: u64,
}

/// The FIX sessions of a loop.
#[derive(Debug)]
pub struct FixBook {
    pub cfg: FixConfig,
    pub ids: Vec<Identity>,
    pub counters: FixCounters,
    /// Without an upstream, a market order is done at its Ack.
    pub local: bool,
    /// Slots no session has yet.
    free: Vec<Slot>,
    /// The sessions outlast the process (a file keeps them).
    pub lasting: bool,
}

impl FixBook {
    /// No FIX sessions (no slots).
    pub fn new(cfg: FixConfig, local: bool) -> FixBook {
        FixBook { cfg, ids: Vec::new(), counters: FixCounters::default(), local, free: Vec::new(), lasting: false }
    }

    /// Sessions in `region`'s slots: those it holds already (kept from
    /// before a restart, each with room for `max_orders` orders) and room
    /// for new ones. Sessions whose store a torn write left unreadable
    /// keep their sequence numbers with an empty store: their count is
    /// returned beside the sessions found.
    pub fn with_region(cfg: FixConfig, local: bool, region: Region, max_orders: usize) -> (FixBook, usize, usize) {
        let lasting = region.file.is_some();
        let mut b = FixBook::new(cfg, local);
        b.lasting = lasting;
        b.ids.reserve_exact(region.slots.len());
        let mut emptied = 0;
        for slot in region.slots.into_iter().rev() {
            let comp = (slot.head().used == 1).then(|| Comp::new(slot.comp())).flatten();
            let Some(comp) = comp else {
                b.free.push(slot);
                continue;
            };
            let mut store = Store::from_slot(slot);
            if !store.check() {
                emptied += 1;
            }
            b.ids.push(Identity {
                comp,
                store,
                orders: FixedMap::with_capacity(max_orders),
                live: None,
                last: None,
                account: None,
                restored: true,
            });
        }
        let found = b.ids.len();
        (b, found, emptied)
    }

    /// The session named `comp`, for a logon by `account`: made the first
    /// time (room for `max_orders`), refused if it belongs to another
    /// account, is logged on already, or the loop has its maximum of
    /// sessions. [`FixBook::bind`] gives it the connection.
    pub fn find(&mut self, comp: Comp, account: Option<usize>, max_orders: usize) -> Result<usize, &'static str> {
        let i = match self.ids.iter().position(|s| s.comp == comp) {
            Some(i) if self.ids[i].restored => {
                let s = &mut self.ids[i];
                s.account = account;
                s.restored = false;
                i
            }
            Some(i) if self.ids[i].account != account => return Err("this SenderCompID belongs to another account"),
            Some(i) => i,
            None => {
                let Some(slot) = self.free.pop() else { return Err("too many FIX sessions on this loop") };
                let mut store = Store::from_slot(slot);
                store.claim(comp.as_bytes());
                self.ids.push(Identity {
                    comp,
                    store,
                    orders: FixedMap::with_capacity(max_orders),
                    live: None,
                    last: None,
                    account,
                    restored: false,
                });
                self.ids.len() - 1
            }
        };
        if self.ids[i].live.is_some() {
            return Err("this SenderCompID is logged on already");
        }
        Ok(i)
    }

    /// Session `i` is logged on over (`conn`, `gen`); the connection it
    /// used before, if another.
    pub fn bind(&mut self, i: usize, conn: usize, gen: u64) -> Option<(usize, u64)> {
        let s = &mut self.ids[i];
        s.live = Some((conn, gen));
        s.last.replace((conn, gen)).filter(|&p| p != (conn, gen))
    }

    /// Its connection closed: the session waits for its next logon. In
    /// local mode its orders ended with the connection.
    pub fn detach(&mut self, i: usize) {
        let local = self.local;
        if let Some(s) = self.ids.get_mut(i) {
            s.live = None;
            if local {
                s.orders.clear();
            }
        }
    }

    /// The session whose orders name connection (`conn`, `gen`), away now.
    pub fn away(&self, conn: usize, gen: u64) -> Option<usize> {
        self.ids.iter().position(|s| s.live.is_none() && s.last == Some((conn, gen)))
    }

    /// Start again from MsgSeqNum 1 both ways (ResetSeqNumFlag).
    pub fn reset(&mut self, i: usize) {
        if let Some(s) = self.ids.get_mut(i) {
            let q = s.store.seqs_mut();
            q.next_out = 1;
            q.next_in = 1;
            s.store.clear();
        }
    }
}
