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
    /// The gateway has no history it can trust for it (a new session, or
    /// one whose state a host crash may have left stale): its logon must
    /// start at 1 (MsgSeqNum 1, or ResetSeqNumFlag), so that the client
    /// never resends orders from before into a fresh session.
    pub fresh_only: bool,
    /// When it last logged on or off (monotonic ns): the longest unused
    /// one gives its slot up when none is free.
    pub last_used: u64,
}

impl Identity {
    /// Session `comp` in `store`, of `account`, with room for `max_orders`
    /// orders: not logged on, and with no history the gateway trusts yet.
    fn new(comp: Comp, store: Store, account: Option<usize>, max_orders: usize) -> Identity {
        Identity {
            comp,
            store,
            orders: FixedMap::with_capacity(max_orders),
            live: None,
            last: None,
            account,
            restored: false,
            fresh_only: true,
            last_used: 0,
        }
    }
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
    /// Slots given from the longest unused session to a new one.
    pub slots_reclaimed: u64,
    /// Messages sent that could not be stored (a resend gap-fills them).
    pub store_failed: u64,
}

/// What a region held at start-up.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Restored {
    /// Sessions found.
    pub sessions: usize,
    /// Of those, sessions whose store a torn write left unreadable:
    /// emptied, their sequence numbers kept.
    pub emptied: usize,
    /// Of those, sessions whose state may be stale (a host crash, or
    /// numbers out of range): they start again from 1, and their next
    /// logon must too.
    pub stale: usize,
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
}

/// The first ExecID of a session made now: the wall clock in µs, so that
/// ExecIDs stay unique across a state file moved away, or none kept.
fn first_exec() -> u64 {
    crate::clock::realtime_ns() / 1000
}

impl FixBook {
    /// No FIX sessions (no slots).
    pub fn new(cfg: FixConfig, local: bool) -> FixBook {
        FixBook { cfg, ids: Vec::new(), counters: FixCounters::default(), local, free: Vec::new() }
    }

    /// Sessions in `region`'s slots: those it holds already (kept from
    /// before a restart, each with room for `max_orders` orders) and room
    /// for new ones. What it found: see [`Restored`].
    pub fn with_region(cfg: FixConfig, local: bool, region: Region, max_orders: usize) -> (FixBook, Restored) {
        let mut b = FixBook::new(cfg, local);
        b.ids.reserve_exact(region.slots.len());
        let mut found = Restored::default();
        for slot in region.slots.into_iter().rev() {
            let comp = (slot.head().used == 1).then(|| Comp::new(slot.comp())).flatten();
            let Some(comp) = comp else {
                b.free.push(slot);
                continue;
            };
            let mut store = Store::from_slot(slot);
            let q = store.seqs_mut();
            q.next_exec = q.next_exec.max(first_exec());
            // A host crash may have left it older than what was sent: it
            // starts again from 1, as a new session would.
            let stale = region.stale || !store.seqs_sane();
            if stale {
                let q = store.seqs_mut();
                (q.next_in, q.next_out) = (1, 1);
                store.clear();
                found.stale += 1;
            } else if !store.check() {
                found.emptied += 1;
            }
            found.sessions += 1;
            b.ids.push(Identity { restored: true, fresh_only: stale, ..Identity::new(comp, store, None, max_orders) });
        }
        (b, found)
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
            None => match self.free.pop() {
                Some(slot) => {
                    let mut store = Store::from_slot(slot);
                    store.claim(comp.as_bytes(), first_exec());
                    self.ids.push(Identity::new(comp, store, account, max_orders));
                    self.ids.len() - 1
                }
                None => {
                    let i = self.reclaim().ok_or("too many FIX sessions on this loop")?;
                    crate::log_info!(
                        "orders: FIX session {} gives its slot to {} (the longest unused, no working orders)",
                        self.ids[i].comp.as_str(),
                        comp.as_str()
                    );
                    let s = &mut self.ids[i];
                    s.store.claim(comp.as_bytes(), first_exec());
                    (s.comp, s.account, s.last, s.restored, s.fresh_only) = (comp, account, None, false, true);
                    self.counters.slots_reclaimed += 1;
                    i
                }
            },
        };
        if self.ids[i].live.is_some() {
            return Err("this SenderCompID is logged on already");
        }
        Ok(i)
    }

    /// The session not logged on, with no working orders, unused the
    /// longest: its slot goes to a new session.
    fn reclaim(&self) -> Option<usize> {
        (0..self.ids.len())
            .filter(|&i| self.ids[i].live.is_none() && self.ids[i].orders.is_empty())
            .min_by_key(|&i| self.ids[i].last_used)
    }

    /// Session `i` is logged on over (`conn`, `gen`) at `now`; the
    /// connection it used before, if another.
    pub fn bind(&mut self, i: usize, conn: usize, gen: u64, now: u64) -> Option<(usize, u64)> {
        let s = &mut self.ids[i];
        s.live = Some((conn, gen));
        s.fresh_only = false;
        s.last_used = now;
        s.last.replace((conn, gen)).filter(|&p| p != (conn, gen))
    }

    /// Its connection closed: the session waits for its next logon. In
    /// local mode its orders ended with the connection.
    pub fn detach(&mut self, i: usize, now: u64) {
        let local = self.local;
        if let Some(s) = self.ids.get_mut(i) {
            s.live = None;
            s.last_used = now;
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
