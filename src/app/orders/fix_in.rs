//! A FIX connection's input: each whole message is framed and checked
//! (BodyLength, CheckSum, MsgType third, a tag once), its standard header
//! checked (MsgSeqNum, CompIDs, SendingTime), and then handled: the
//! session messages here, Logon through the same account check as the
//! binary protocol's, and NewOrderSingle and OrderCancelRequest through the
//! same order path (`fix_orders.rs`). What cannot be trusted ends the
//! session with a Logout that says why; a bad field gets a session-level
//! Reject naming it, and the session goes on. See docs/FIX.md.

use super::fix_out;
use super::session::Gate;
use super::{Orders, Verdict};
use crate::app::OutBuf;
use crate::fix::{self, session_reject as sr, tag, value, Msg};
use crate::proto::{Code8, GatewayMsg, LogoutReason, Password};
use crate::sampler::{kind, tracer::Tracer};

impl Orders {
    /// Consume whole FIX messages from a client's input (see `App::on_input`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn fix_input(
        &mut self,
        conn: usize,
        gen: u64,
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> (usize, Verdict) {
        let mut off = 0;
        loop {
            let whole = || matches!(fix::frame(&input[off..]), Ok(Some(_)));
            match self.input_gate(conn, gen, out, whole, now) {
                Gate::Go => {}
                Gate::Wait => return (off, Verdict::Continue),
                Gate::Stop(v) => return (off, v),
                Gate::Drop(v) => return (input.len(), v),
            }
            match fix::frame(&input[off..]) {
                Ok(None) => return (off, Verdict::Continue),
                Ok(Some(n)) => {
                    let v = self.fix_handle(conn, gen, &input[off..off + n], out, tr, recv_ts, now);
                    off += n;
                    if v != Verdict::Continue {
                        return (off, v);
                    }
                }
                Err(e) => {
                    self.counters.framing_errors += 1;
                    self.fix.counters.framing_errors += 1;
                    crate::log_warn!("orders: conn#{conn}: FIX framing error: {e}: logging out");
                    let mut text = [0u8; 120];
                    let t = describe(&mut text, "garbled message: ", &e);
                    return (input.len(), self.fix_end(conn, gen, out, t, now));
                }
            }
        }
    }

    /// End the session: a Logout saying `text`, then close.
    fn fix_end(&mut self, conn: usize, gen: u64, out: &mut OutBuf, text: &str, now: u64) -> Verdict {
        if let Some(c) = self.clients.get(conn, gen) {
            if c.fix.comp.as_bytes().is_empty() {
                c.fix.comp = unknown();
            }
            fix_out::logout(c, &mut self.fix, Some(out), text, now);
        }
        self.ended(conn, gen, now);
        Verdict::Close
    }

    /// A session-level Reject (3) of message `seq` of type `ty`, naming `tag`.
    pub(super) fn fix_reject(&mut self, conn: usize, gen: u64, out: &mut OutBuf, r: Refs<'_>, reason: u32, now: u64) {
        self.fix.counters.session_rejects += 1;
        let mut f = [0u8; 200];
        let mut n = fix_out::field(&mut f, tag::REF_SEQ_NUM, value::digits(u64::from(r.seq), &mut [0; 20]));
        if r.tag != 0 {
            n += fix_out::field(&mut f[n..], tag::REF_TAG_ID, value::digits(u64::from(r.tag), &mut [0; 20]));
        }
        if !r.ty.is_empty() && r.ty.len() <= 2 {
            n += fix_out::field(&mut f[n..], tag::REF_MSG_TYPE, r.ty);
        }
        n += fix_out::field(&mut f[n..], tag::SESSION_REJECT_REASON, value::digits(u64::from(reason), &mut [0; 20]));
        n += fix_out::field(&mut f[n..], tag::TEXT, r.text.as_bytes());
        if let Some(c) = self.clients.get(conn, gen) {
            fix_out::admin(c, &mut self.fix, Some(out), b"3", &f[..n], now);
        }
    }

    /// One whole message (see the module docs).
    #[allow(clippy::too_many_arguments)]
    fn fix_handle(
        &mut self,
        conn: usize,
        gen: u64,
        frame: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        recv_ts: u64,
        now: u64,
    ) -> Verdict {
        self.counters.messages_in += 1;
        self.fix.counters.messages_in += 1;
        let m = match Msg::parse(frame) {
            Ok(m) => m,
            Err(e) => {
                self.counters.framing_errors += 1;
                let mut text = [0u8; 120];
                let t = describe(&mut text, "malformed message: ", &e);
                return self.fix_end(conn, gen, out, t, now);
            }
        };
        let ty = m.msg_type();
        let k = match ty {
            b"A" => kind::LOGON,
            b"0" => kind::HEARTBEAT,
            b"D" if m.get(tag::ORD_TYPE) == Some(b"1") => kind::MARKET,
            b"D" => kind::LIMIT,
            b"F" => kind::CANCEL,
            b"5" => kind::LOGOUT,
            _ => kind::INVALID,
        };
        let id = m.get(tag::CL_ORD_ID).and_then(value::pack_id).unwrap_or(0);
        // A Logon's record keeps nothing of it: its password is in the middle.
        tr.parsed(k, id, if ty == b"A" { &[] } else { frame });
        self.status = 0;
        let t_in = tr.arrival();
        let v = self.fix_message(conn, gen, &m, out, recv_ts, now);
        tr.handled(self.status);
        if let Some(token) = self.entered.take() {
            if tr.enabled() {
                let sent = tr.now();
                if let Some(o) = self.table.orders.get_mut(u64::from(token)) {
                    (o.t_in, o.t_sent) = (t_in, sent);
                }
            }
        }
        v
    }

    fn fix_message(&mut self, conn: usize, gen: u64, m: &Msg<'_>, out: &mut OutBuf, recv_ts: u64, now: u64) -> Verdict {
        let ty = m.msg_type();
        let Some(seq) = m.get(tag::MSG_SEQ_NUM).and_then(value::uint).filter(|&s| s > 0) else {
            return self.fix_end(conn, gen, out, "MsgSeqNum (34) missing or not a number", now);
        };
        if seq > MAX_SEQ {
            return self.fix_end(conn, gen, out, "MsgSeqNum above 2^31", now);
        }
        let seq = seq as u32;
        let Some(c) = self.clients.get(conn, gen) else { return Verdict::Abort };
        if !c.logged_on && !c.pending {
            // Whom a Logout before the Logon's answer goes to.
            c.fix.comp = m.get(tag::SENDER_COMP_ID).and_then(super::fix_book::Comp::new).unwrap_or(unknown());
        }
        if c.pending {
            return self.fix_end(conn, gen, out, "a message before the Logon was answered", now);
        }
        if !c.logged_on {
            if ty != b"A" {
                return self.fix_end(conn, gen, out, "the first message must be a Logon", now);
            }
            return self.fix_logon(conn, gen, m, seq, out, recv_ts, now);
        }
        c.last_rx = now;
        c.fix.test_sent = 0;
        let comp = c.fix.comp;
        let Some(i) = c.fix.id else { return Verdict::Abort };
        let refs = Refs { seq, ty, tag: 0, text: "" };
        if m.get(tag::SENDER_COMP_ID) != Some(comp.as_bytes())
            || m.get(tag::TARGET_COMP_ID) != Some(self.fix.cfg.comp_id.as_bytes())
        {
            let wrong = if m.get(tag::SENDER_COMP_ID) != Some(comp.as_bytes()) {
                tag::SENDER_COMP_ID
            } else {
                tag::TARGET_COMP_ID
            };
            let r = Refs { tag: wrong, text: "CompID problem", ..refs };
            self.fix_reject(conn, gen, out, r, sr::COMP_ID_PROBLEM, now);
            return self.fix_end(conn, gen, out, "CompID problem", now);
        }
        let expected = self.fix.ids[i].store.seqs().next_in;
        let poss_dup = m.get(tag::POSS_DUP_FLAG) == Some(b"Y");
        let gap_fill = m.get(tag::GAP_FILL_FLAG) == Some(b"Y");
        if ty == b"4" && !gap_fill {
            // SequenceReset-Reset: MsgSeqNum is ignored.
            return self.fix_new_seq(conn, gen, m, refs, out, now);
        }
        if seq > expected {
            match ty {
                b"5" => return self.fix_end(conn, gen, out, "logout", now),
                b"2" => self.fix_resend_request(conn, gen, m, refs, out, now),
                _ => {}
            }
            self.fix_ask_resend(conn, gen, Some(out), expected, now);
            return Verdict::Continue;
        }
        if seq < expected {
            if poss_dup {
                return Verdict::Continue;
            }
            self.fix.counters.seq_too_low += 1;
            let mut text = [0u8; 80];
            let t = too_low(&mut text, expected, seq);
            return self.fix_end(conn, gen, out, t, now);
        }
        self.fix.ids[i].store.seqs_mut().next_in = expected + 1;
        if let Some(c) = self.clients.get(conn, gen) {
            c.fix.gap = false;
        }
        if m.get(tag::SENDING_TIME).is_none_or(|t| !value::is_timestamp(t)) {
            let r = Refs { tag: tag::SENDING_TIME, text: "SendingTime (52) missing or malformed", ..refs };
            self.fix_reject(conn, gen, out, r, sr::REQUIRED_TAG_MISSING, now);
            return Verdict::Continue;
        }
        if let Some(t) = m.repeated() {
            let r = Refs { tag: t, text: "tag appears more than once (no repeating groups are taken)", ..refs };
            self.fix_reject(conn, gen, out, r, sr::TAG_APPEARS_MORE_THAN_ONCE, now);
            return Verdict::Continue;
        }
        match ty {
            b"0" | b"3" => {}
            b"1" => match m.get(tag::TEST_REQ_ID) {
                Some(id) => {
                    let mut f = [0u8; 160];
                    let n = fix_out::field(&mut f, tag::TEST_REQ_ID, &id[..id.len().min(140)]);
                    if let Some(c) = self.clients.get(conn, gen) {
                        fix_out::admin(c, &mut self.fix, Some(out), b"0", &f[..n], now);
                    }
                }
                None => self.fix_missing(conn, gen, out, refs, tag::TEST_REQ_ID, now),
            },
            b"2" => self.fix_resend_request(conn, gen, m, refs, out, now),
            b"4" => return self.fix_new_seq(conn, gen, m, refs, out, now),
            b"5" => {
                if let Some(c) = self.clients.get(conn, gen) {
                    fix_out::logout(c, &mut self.fix, Some(out), "logout", now);
                }
                self.ended(conn, gen, now);
                return Verdict::Close;
            }
            b"A" => {
                let r = Refs { text: "already logged on", ..refs };
                self.fix_reject(conn, gen, out, r, sr::OTHER, now);
            }
            b"D" => self.fix_order(conn, gen, m, refs, out, recv_ts, now),
            b"F" => self.fix_cancel(conn, gen, m, refs, out, recv_ts, now),
            _ if ty.len() <= 2 && ty.iter().all(u8::is_ascii_alphanumeric) => {
                self.fix_business_reject(conn, gen, out, refs, now);
            }
            _ => {
                let r = Refs { tag: tag::MSG_TYPE, text: "invalid MsgType", ..refs };
                self.fix_reject(conn, gen, out, r, sr::INVALID_MSG_TYPE, now);
            }
        }
        Verdict::Continue
    }

    /// Required tag `t` is missing.
    pub(super) fn fix_missing(&mut self, conn: usize, gen: u64, out: &mut OutBuf, refs: Refs<'_>, t: u32, now: u64) {
        let r = Refs { tag: t, text: "required tag missing", ..refs };
        self.fix_reject(conn, gen, out, r, sr::REQUIRED_TAG_MISSING, now);
    }

    /// A message type this gateway does not take (BusinessMessageReject,
    /// reason 3: unsupported message type).
    fn fix_business_reject(&mut self, conn: usize, gen: u64, out: &mut OutBuf, r: Refs<'_>, now: u64) {
        self.fix.counters.business_rejects += 1;
        let mut f = [0u8; 120];
        let mut n = fix_out::field(&mut f, tag::REF_SEQ_NUM, value::digits(u64::from(r.seq), &mut [0; 20]));
        n += fix_out::field(&mut f[n..], tag::REF_MSG_TYPE, r.ty);
        n += fix_out::field(&mut f[n..], tag::BUSINESS_REJECT_REASON, b"3");
        n += fix_out::field(&mut f[n..], tag::TEXT, b"unsupported message type");
        if let Some(c) = self.clients.get(conn, gen) {
            let Some(i) = c.fix.id else { return };
            fix_out::store_and_send(c, &mut self.fix, i, Some(out), b'j', &f[..n], now, crate::clock::realtime_ns());
        }
    }

    /// SequenceReset: NewSeqNo (36) sets the next number expected; it may
    /// not go back.
    fn fix_new_seq(
        &mut self,
        conn: usize,
        gen: u64,
        m: &Msg<'_>,
        refs: Refs<'_>,
        out: &mut OutBuf,
        now: u64,
    ) -> Verdict {
        let Some(i) = self.clients.peek(conn, gen).and_then(|c| c.fix.id) else { return Verdict::Abort };
        match m.get(tag::NEW_SEQ_NO).and_then(value::uint) {
            None => self.fix_missing(conn, gen, out, refs, tag::NEW_SEQ_NO, now),
            Some(n) if n < u64::from(self.fix.ids[i].store.seqs().next_in) || n > MAX_SEQ => {
                let r = Refs { tag: tag::NEW_SEQ_NO, text: "NewSeqNo below the expected MsgSeqNum", ..refs };
                self.fix_reject(conn, gen, out, r, sr::VALUE_INCORRECT, now);
            }
            Some(n) => self.fix.ids[i].store.seqs_mut().next_in = n as u32,
        }
        Verdict::Continue
    }

    /// A ResendRequest: what was sent from BeginSeqNo (7) to EndSeqNo (16,
    /// 0 for all), as stored, paced by `fix_pump`.
    fn fix_resend_request(&mut self, conn: usize, gen: u64, m: &Msg<'_>, refs: Refs<'_>, out: &mut OutBuf, now: u64) {
        self.fix.counters.resend_requests_in += 1;
        let (Some(b), Some(e)) =
            (m.get(tag::BEGIN_SEQ_NO).and_then(value::uint), m.get(tag::END_SEQ_NO).and_then(value::uint))
        else {
            let t = if m.get(tag::BEGIN_SEQ_NO).is_none() { tag::BEGIN_SEQ_NO } else { tag::END_SEQ_NO };
            return self.fix_missing(conn, gen, out, refs, t, now);
        };
        let Some(c) = self.clients.get(conn, gen) else { return };
        let Some(i) = c.fix.id else { return };
        let s = &self.fix.ids[i];
        let last = u64::from(s.store.seqs().next_out.saturating_sub(1));
        let to = if e == 0 { last } else { e.min(last) };
        if b == 0 || b > to {
            return;
        }
        let begin = b as u32;
        let oldest = s.store.at_or_after(0).map_or(s.store.seqs().next_out, |m| m.seq);
        if s.store.evicted() > 0 && begin < oldest {
            self.fix.counters.resend_unavailable += u64::from(oldest - begin);
            crate::log_warn!(
                "orders: FIX session {}: asked for messages from {begin}; the store keeps them from {oldest}: \
                 those before are gap-filled (any report among them is lost to it)",
                c.fix.comp.as_str()
            );
        }
        c.fix.resend_next = begin;
        c.fix.resend_to = Some(to as u32);
        c.fix.resend_asked = to as u32;
        self.fix_pump(conn, gen, out, now);
    }

    /// A Logon: its header and fields checked, then the account check of
    /// the binary protocol (`risk.rs`); the answer binds the session
    /// (`fix_link.rs`).
    #[allow(clippy::too_many_arguments)]
    fn fix_logon(
        &mut self,
        conn: usize,
        gen: u64,
        m: &Msg<'_>,
        seq: u32,
        out: &mut OutBuf,
        recv_ts: u64,
        now: u64,
    ) -> Verdict {
        let ours = self.fix.cfg.comp_id;
        let Some(comp) = m.get(tag::SENDER_COMP_ID).and_then(super::fix_book::Comp::new) else {
            return self.fix_end(conn, gen, out, "SenderCompID (49) missing or not 1-32 printable characters", now);
        };
        if let Some(c) = self.clients.get(conn, gen) {
            c.fix.comp = comp;
        }
        if m.get(tag::TARGET_COMP_ID) != Some(ours.as_bytes()) {
            return self.fix_end(conn, gen, out, "TargetCompID (56) is not this gateway's", now);
        }
        if m.get(tag::ENCRYPT_METHOD) != Some(b"0") {
            return self.fix_end(conn, gen, out, "EncryptMethod (98) must be 0", now);
        }
        let hb = match m.get(tag::HEART_BT_INT).and_then(value::uint) {
            Some(0) => 30,
            Some(s @ 1..=3600) => s,
            _ => return self.fix_end(conn, gen, out, "HeartBtInt (108) missing or not 0-3600", now),
        };
        // The SenderCompID is the account: no account can log on as
        // another's FIX session (its sequence numbers, stored reports and
        // orders). Username, if given, must say the same.
        if m.get(tag::USERNAME).is_some_and(|u| u != comp.as_bytes()) {
            return self.refuse_fix_logon(conn, gen, out, now);
        }
        let Some(account) = std::str::from_utf8(comp.as_bytes()).ok().and_then(Code8::new) else {
            return self.refuse_fix_logon(conn, gen, out, now);
        };
        if m.get(tag::RESET_SEQ_NUM_FLAG) == Some(b"Y") && seq != 1 {
            return self.fix_end(conn, gen, out, "ResetSeqNumFlag (141=Y) with a MsgSeqNum other than 1", now);
        }
        let password = match m.get(tag::PASSWORD) {
            None => Password::NONE,
            Some(p) => match std::str::from_utf8(p).ok().and_then(Password::new) {
                Some(p) => p,
                None => return self.refuse_fix_logon(conn, gen, out, now),
            },
        };
        if let Some(c) = self.clients.get(conn, gen) {
            c.fix.heartbeat_ms = hb * 1000;
            c.fix.reset = m.get(tag::RESET_SEQ_NUM_FLAG) == Some(b"Y");
            c.fix.logon_seq = seq;
        }
        self.logon(conn, gen, seq, account, password, out, recv_ts, now)
    }

    /// An account name or password that cannot be one: refused as a
    /// wrong password is.
    fn refuse_fix_logon(&mut self, conn: usize, gen: u64, out: &mut OutBuf, now: u64) -> Verdict {
        self.counters.logons_refused += 1;
        self.counters.rejects[crate::proto::RejectReason::NotAuthorized as usize] += 1;
        if let Some(c) = self.clients.get(conn, gen) {
            c.fix.refusal = Some(crate::proto::RejectReason::NotAuthorized);
        }
        self.send(conn, gen, out, GatewayMsg::Logout { reason: LogoutReason::Refused }, now);
        Verdict::Close
    }
}

/// The highest MsgSeqNum taken (so that the next one never wraps).
const MAX_SEQ: u64 = crate::fix::store::MAX_SEQ as u64;

/// The TargetCompID of a Logout to a peer that named none usable.
fn unknown() -> super::fix_book::Comp {
    super::fix_book::Comp::new(b"UNKNOWN").unwrap_or_default()
}

/// What a session Reject refers to.
#[derive(Debug, Clone, Copy)]
pub(super) struct Refs<'a> {
    pub seq: u32,
    pub ty: &'a [u8],
    pub tag: u32,
    pub text: &'static str,
}

/// `prefix` and `e` as text in `buf`.
fn describe<'a>(buf: &'a mut [u8; 120], prefix: &'a str, e: &dyn std::fmt::Debug) -> &'a str {
    use std::io::Write;
    let mut w = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(w, "{prefix}{e:?}");
    let n = w.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or(prefix)
}

fn too_low(buf: &mut [u8; 80], expected: u32, got: u32) -> &str {
    use std::io::Write;
    let mut w = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(w, "MsgSeqNum too low, expecting {expected} but received {got}");
    let n = w.position() as usize;
    std::str::from_utf8(&buf[..n]).unwrap_or("MsgSeqNum too low")
}
