//! What the gateway's loop writes to the audit journal (`crate::journal`):
//! each NewOrder and Cancel with its decision, each Logon's outcome, and
//! each exchange message about an order. A record is written before what
//! it records leaves the process (the loop's output is flushed after its
//! callbacks), so an acknowledged order is always in the journal.

use super::lifecycle::token_of;
use super::Orders;
use crate::journal::writer::Writer;
use crate::journal::{kind, Record};
use crate::proto::{Code8, NewOrder};
use crate::venue::ouch::Outbound;

impl Orders {
    /// Journal this loop's records with `w`.
    pub fn with_journal(mut self, w: Writer) -> Self {
        self.journal = Some(w);
        self
    }

    /// Can the journal take an order now? (No journal: yes.)
    #[inline]
    pub(super) fn journal_ready(&mut self) -> bool {
        self.journal.as_mut().is_none_or(|j| j.ready())
    }

    fn name_of(&self, conn: usize, gen: u64) -> [u8; 8] {
        self.clients.peek(conn, gen).map_or([b' '; 8], |c| c.name.0)
    }

    #[inline]
    fn write(&mut self, mut r: Record) {
        if let Some(j) = self.journal.as_mut() {
            j.append(&mut r);
        }
    }

    /// A NewOrder and its decision (0: accepted); `token` its OUCH token.
    pub(super) fn journal_order(&mut self, conn: usize, gen: u64, o: &NewOrder, reason: u8, token: u32, ts: u64) {
        if self.journal.is_none() {
            return;
        }
        let account = self.name_of(conn, gen);
        self.write(Record {
            kind: kind::ORDER,
            reason,
            side: o.side as u8,
            qty: o.qty,
            ts,
            cl_ord_id: o.cl_ord_id,
            price: o.price,
            symbol: o.symbol.0,
            account,
            extra: u64::from(token),
            session: gen as u32,
            ..Record::default()
        });
    }

    /// A Cancel and its decision.
    pub(super) fn journal_cancel(&mut self, conn: usize, gen: u64, cl_ord_id: u64, reason: u8, ts: u64) {
        if self.journal.is_none() {
            return;
        }
        let account = self.name_of(conn, gen);
        self.write(Record {
            kind: kind::CANCEL,
            reason,
            ts,
            cl_ord_id,
            account,
            session: gen as u32,
            ..Record::default()
        });
    }

    /// A Logon's outcome (0: logged on).
    pub(super) fn journal_logon(
        &mut self,
        gen: u64,
        name: Code8,
        source: Option<std::net::IpAddr>,
        reason: u8,
        ts: u64,
    ) {
        if self.journal.is_none() {
            return;
        }
        let extra = match source {
            Some(std::net::IpAddr::V4(v)) => u64::from(u32::from(v)),
            _ => 0,
        };
        self.write(Record {
            kind: kind::LOGON,
            reason,
            ts,
            account: name.0,
            extra,
            session: gen as u32,
            ..Record::default()
        });
    }

    /// An exchange message: every one, about one of this loop's orders or
    /// not (a report replayed from before a restart names a token this run
    /// does not know: its record has no session, no `cl_ord_id` and the
    /// token in `extra`; a System Event has neither).
    pub(super) fn journal_exchange(&mut self, msg: &Outbound, ts: u64) {
        if self.journal.is_none() {
            return;
        }
        let (ty, qty, price, extra) = match *msg {
            Outbound::Accepted(a) => (b'A', a.qty, a.price as i64, a.order_ref),
            Outbound::Executed { qty, price, match_number, .. } => (b'E', qty, price as i64, match_number),
            Outbound::Canceled { qty, reason, .. } => (b'C', qty, i64::from(reason), 0),
            Outbound::Rejected { reason, .. } => (b'J', 0, i64::from(reason), 0),
            Outbound::CancelReject { .. } => (b'I', 0, 0, 0),
            Outbound::Replaced { .. } => (b'U', 0, 0, 0),
            Outbound::SystemEvent { code, .. } => (b'S', 0, i64::from(code), 0),
        };
        let token = token_of(msg);
        let known = token.and_then(|t| self.table.orders.get(u64::from(t)));
        let (cl_ord_id, account, symbol, session, extra) = match known {
            Some(o) => (o.cl_ord_id, o.name, o.enter.symbol, o.gen as u32, extra),
            None => (0, [b' '; 8], [b' '; 8], 0, token.map_or(0, u64::from)),
        };
        self.write(Record {
            kind: kind::EXCHANGE,
            side: ty,
            qty,
            ts,
            cl_ord_id,
            price,
            symbol,
            account,
            extra,
            session,
            ..Record::default()
        });
    }

    /// The kill switch sent a cancel for the order with `token`.
    pub(super) fn journal_kill_cancel(&mut self, token: u32, ts: u64) {
        if self.journal.is_none() {
            return;
        }
        let Some(o) = self.table.orders.get(u64::from(token)) else { return };
        let (cl_ord_id, account, session) = (o.cl_ord_id, o.name, o.gen as u32);
        self.write(Record {
            kind: kind::KILL_CANCEL,
            ts,
            cl_ord_id,
            account,
            extra: u64::from(token),
            session,
            ..Record::default()
        });
    }

    /// At exit: the journal's counters for the summary.
    pub(super) fn journal_line(&self) -> Option<String> {
        let j = self.journal.as_ref()?;
        j.publish();
        let s = &j.stats;
        let r = std::sync::atomic::Ordering::Relaxed;
        Some(format!("journal: records={} lost={} segments={}", s.records.load(r), s.lost.load(r), s.segments.load(r)))
    }
}
