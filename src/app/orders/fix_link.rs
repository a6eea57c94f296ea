//! Where the order path meets a FIX session: every message for a FIX
//! connection goes through [`Orders::fix_send`] (a Logon's answer binds the
//! connection to its FIX session first), reports for a session away are
//! stored, a resend is paced by the connection's room, and the session's
//! heartbeats and TestRequests are timed here.

use super::fix_out::{self, Header, FIX_MSG_MAX};
use super::{Orders, Verdict};
use crate::app::OutBuf;
use crate::fix::{tag, value};
use crate::proto::GatewayMsg;
use crate::transport::ConnId;

impl Orders {
    /// Send `msg` to FIX connection (`conn`, `gen`); see the module docs.
    pub(super) fn fix_send(
        &mut self,
        conn: usize,
        gen: u64,
        mut out: Option<&mut OutBuf>,
        msg: GatewayMsg,
        now: u64,
    ) -> bool {
        if matches!(msg, GatewayMsg::LogonAck { .. }) && !self.fix_bind(conn, gen, out.as_deref_mut(), now) {
            return false;
        }
        let Some(c) = self.clients.get(conn, gen) else { return false };
        let sent = fix_out::emit(c, &mut self.fix, out.as_deref_mut(), msg, now);
        if matches!(msg, GatewayMsg::LogonAck { .. }) {
            self.fix_after_logon(conn, gen, out, now);
        }
        sent
    }

    /// The Logon was accepted: bind the connection to its FIX session
    /// (made the first time), apply ResetSeqNumFlag, and refuse a
    /// MsgSeqNum below the expected one, or a session logged on elsewhere.
    fn fix_bind(&mut self, conn: usize, gen: u64, out: Option<&mut OutBuf>, now: u64) -> bool {
        let max = self.cfg.max_open_orders;
        let Some(c) = self.clients.get(conn, gen) else { return false };
        let (comp, account) = (c.fix.comp, c.account);
        let why = match self.fix.find(comp, account, max) {
            Err(why) => why.to_string(),
            Ok(i) => {
                if c.fix.reset {
                    self.fix.reset(i);
                }
                let expected = self.fix.ids[i].store.seqs().next_in;
                if self.fix.ids[i].fresh_only && c.fix.logon_seq != 1 {
                    // No history here to fill a gap from 1 with: the
                    // client would resend old orders into a fresh session.
                    format!(
                        "no session state for {} here (a new session, or one reset after a host failure): \
                         log on with MsgSeqNum 1 or ResetSeqNumFlag=Y",
                        comp.as_str()
                    )
                } else if c.fix.logon_seq >= expected {
                    c.fix.id = Some(i);
                    self.fix.counters.logons += 1;
                    if let Some(old) = self.fix.bind(i, conn, gen, now) {
                        self.adopt_orders(old, (conn, gen));
                    }
                    return true;
                } else {
                    self.fix.counters.seq_too_low += 1;
                    format!("MsgSeqNum too low, expecting {expected} but received {}", c.fix.logon_seq)
                }
            }
        };
        crate::log_info!("orders: conn#{conn}: FIX logon of {} refused: {why}", comp.as_str());
        let Some(c) = self.clients.get(conn, gen) else { return false };
        fix_out::logout(c, &mut self.fix, out, &why, now);
        c.closing = true;
        self.requests.wake(ConnId(conn));
        false
    }

    /// After our Logon: a MsgSeqNum above the expected one asks for the
    /// gap (ResendRequest from the expected number, to infinity).
    fn fix_after_logon(&mut self, conn: usize, gen: u64, out: Option<&mut OutBuf>, now: u64) {
        let Some(c) = self.clients.get(conn, gen) else { return };
        let Some(i) = c.fix.id else { return };
        let expected = self.fix.ids[i].store.seqs().next_in;
        if c.fix.logon_seq == expected {
            self.fix.ids[i].store.seqs_mut().next_in = expected + 1;
            return;
        }
        self.fix_ask_resend(conn, gen, out, expected, now);
    }

    /// Send our ResendRequest from `from` (its first since the gap).
    pub(super) fn fix_ask_resend(&mut self, conn: usize, gen: u64, out: Option<&mut OutBuf>, from: u32, now: u64) {
        let Some(c) = self.clients.get(conn, gen) else { return };
        if c.fix.gap {
            return;
        }
        c.fix.gap = true;
        self.fix.counters.resend_requests_out += 1;
        let mut f = [0u8; 48];
        let mut n = fix_out::field(&mut f, tag::BEGIN_SEQ_NO, value::digits(u64::from(from), &mut [0; 20]));
        n += fix_out::field(&mut f[n..], tag::END_SEQ_NO, b"0");
        fix_out::admin(c, &mut self.fix, out, b"2", &f[..n], now);
    }

    /// A report for a FIX session whose connection (`conn`, `gen`) closed:
    /// stored for its next logon. False if no FIX session used it.
    pub(super) fn fix_away(&mut self, conn: usize, gen: u64, msg: GatewayMsg) -> bool {
        match self.fix.away(conn, gen) {
            Some(i) => {
                fix_out::store_away(&mut self.fix, i, msg);
                true
            }
            None => false,
        }
    }

    /// Send what a resend owes as far as `out` has room (stored messages
    /// with PossDupFlag and OrigSendingTime; a SequenceReset-GapFill over
    /// what is not stored: session messages, or what left the store). Asks
    /// for a wake while more is owed.
    pub(super) fn fix_pump(&mut self, conn: usize, gen: u64, out: &mut OutBuf, now: u64) {
        let Some(c) = self.clients.get(conn, gen) else { return };
        let Some(i) = c.fix.id else { return };
        while let Some(to) = c.fix.resend_to {
            if c.outbox.len() > 0 || out.spare() < FIX_MSG_MAX {
                self.requests.wake(ConnId(conn));
                return;
            }
            let next = c.fix.resend_next;
            if next > to {
                c.fix.resend_to = None;
                break;
            }
            let stored = self.fix.ids[i].store.at_or_after(next).filter(|m| m.seq <= to);
            let mut buf = [0u8; FIX_MSG_MAX];
            let wall = crate::clock::realtime_ns();
            if let Some(m) = stored.filter(|m| m.seq == next) {
                // Sent for the first time if it came after the request.
                let orig_ns = (next <= c.fix.resend_asked).then_some(m.sent_ns);
                let h = Header { seq: next, orig_ns, sent_ns: wall };
                let mut e = fix_out::begin(&mut buf, &self.fix, c, &[m.msg_type], &h);
                e.raw(m.body);
                if let Some(msg) = e.finish() {
                    fix_out::put(c, Some(out), msg, now);
                    self.fix.counters.resent += u64::from(orig_ns.is_some());
                    c.fix.resend_next = next + 1;
                    continue;
                }
            }
            // Not stored (or, kept from before a restart, too long to send
            // again): gap-filled.
            let upto = match stored {
                Some(m) if m.seq == next => next + 1,
                Some(m) => m.seq,
                None => to + 1,
            };
            let h = Header { seq: next, orig_ns: Some(wall), sent_ns: wall };
            let mut e = fix_out::begin(&mut buf, &self.fix, c, b"4", &h);
            e.bytes(tag::GAP_FILL_FLAG, b"Y").uint(tag::NEW_SEQ_NO, u64::from(upto));
            if let Some(msg) = e.finish() {
                fix_out::put(c, Some(out), msg, now);
            }
            self.fix.counters.gap_filled += u64::from(upto - next);
            c.fix.resend_next = upto;
        }
    }

    /// A logged-on FIX session's timers: a Heartbeat after HeartBtInt of
    /// silence from us, a TestRequest after HeartBtInt (and a fifth) of
    /// silence from the client, and a Logout if that goes unanswered for
    /// another HeartBtInt.
    pub(super) fn fix_tick(&mut self, conn: usize, gen: u64, out: &mut OutBuf, now: u64) -> Verdict {
        let ms = 1_000_000u64;
        let Some(c) = self.clients.get(conn, gen) else { return Verdict::Abort };
        let hb = c.fix.heartbeat_ms * ms;
        if c.fix.test_sent != 0 && now.saturating_sub(c.fix.test_sent) >= hb {
            self.counters.idle_timeouts += 1;
            crate::log_info!("orders: conn#{conn}: FIX session {} silent: logging out", c.fix.comp.as_str());
            fix_out::logout(c, &mut self.fix, Some(out), "heartbeat timeout", now);
            self.ended(conn, gen, now);
            return Verdict::Close;
        }
        if out.spare() < FIX_MSG_MAX {
            return Verdict::Continue;
        }
        if c.fix.test_sent == 0 && now.saturating_sub(c.last_rx) >= hb + hb / 5 {
            c.fix.test_sent = now;
            self.fix.counters.test_requests_out += 1;
            let mut f = [0u8; 40];
            let n = fix_out::field(&mut f, tag::TEST_REQ_ID, value::digits(now / ms, &mut [0; 20]));
            fix_out::admin(c, &mut self.fix, Some(out), b"1", &f[..n], now);
        } else if now.saturating_sub(c.last_tx) >= hb && c.fix.resend_to.is_none() {
            self.counters.heartbeats_out += 1;
            fix_out::admin(c, &mut self.fix, Some(out), b"0", &[], now);
        }
        Verdict::Continue
    }
}
