//! What a FIX session is sent: every [`GatewayMsg`] the order path makes
//! for a session, written as FIX 4.4 (Logon, Heartbeat, Logout,
//! ExecutionReport, OrderCancelReject), numbered from its session's
//! sequence and, for application messages, kept in its store for
//! ResendRequests. The session layer's own messages (TestRequest,
//! ResendRequest, Reject, SequenceReset, BusinessMessageReject) are written
//! here too. See docs/FIX.md for the mapping.

use super::client::Client;
use super::fix_book::{FixBook, FixOrder};
use crate::app::OutBuf;
use crate::fix::{tag, value, Encoder};
use crate::proto::{msg_type, GatewayMsg, LogoutReason, RejectReason};

/// Room for the longest message written here.
pub const FIX_MSG_MAX: usize = 1024;
/// The longest ExecutionReport or OrderCancelReject (32-byte CompIDs,
/// 19-digit ids): well under this.
pub const FIX_REPORT_MAX: usize = 512;

/// The standard header and who it goes to.
pub struct Header {
    pub seq: u32,
    /// A resend: its OrigSendingTime (PossDupFlag Y).
    pub orig_ns: Option<u64>,
    /// SendingTime: the wall clock, read once per message by the caller.
    pub sent_ns: u64,
}

/// Start a message to `c`: MsgType, the CompIDs, MsgSeqNum, SendingTime.
pub fn begin<'a>(buf: &'a mut [u8], book: &FixBook, c: &Client, ty: &[u8], h: &Header) -> Encoder<'a> {
    let mut e = Encoder::new(buf, ty);
    e.bytes(tag::SENDER_COMP_ID, book.cfg.comp_id.as_bytes());
    // A peer that named no CompID yet (a Logout before its Logon) is UNKNOWN.
    let target = c.fix.comp.as_bytes();
    e.bytes(tag::TARGET_COMP_ID, if target.is_empty() { b"UNKNOWN" } else { target });
    e.uint(tag::MSG_SEQ_NUM, u64::from(h.seq));
    if h.orig_ns.is_some() {
        e.bytes(tag::POSS_DUP_FLAG, b"Y");
    }
    let mut ts = [0u8; value::TIMESTAMP_LEN];
    e.bytes(tag::SENDING_TIME, value::timestamp(h.sent_ns, &mut ts));
    if let Some(orig) = h.orig_ns {
        e.bytes(tag::ORIG_SENDING_TIME, value::timestamp(orig, &mut ts));
    }
    e
}

/// Put a finished message into `out` (when given and nothing waits before
/// it) or the session's outbox. False if it could not be queued (the
/// session is doomed, as for the binary protocol).
pub fn put(c: &mut Client, out: Option<&mut OutBuf>, msg: &[u8], now: u64) -> bool {
    let ok = match out {
        Some(o) if c.outbox.len() == 0 && o.spare() >= msg.len() => o.put(msg),
        _ => c.outbox.put(msg),
    };
    if ok {
        c.last_tx = now;
    } else {
        c.doomed = true;
    }
    ok
}

/// The next MsgSeqNum to `c` (its session's, or before it has one, the
/// connection's own, from 1).
fn take_seq(c: &mut Client, book: &mut FixBook) -> u32 {
    match c.fix.id.and_then(|i| book.ids.get_mut(i)) {
        Some(s) => {
            let q = s.store.seqs_mut();
            q.next_out = q.next_out.wrapping_add(1);
            s.store.seqs().next_out.wrapping_sub(1)
        }
        None => {
            c.out_seq = c.out_seq.wrapping_add(1);
            c.out_seq.wrapping_sub(1)
        }
    }
}

/// Send `msg` to FIX session `c` (see the module docs). False if it was
/// not sent (no room: the session is doomed).
pub fn emit(c: &mut Client, book: &mut FixBook, out: Option<&mut OutBuf>, msg: GatewayMsg, now: u64) -> bool {
    let mut buf = [0u8; FIX_MSG_MAX];
    match msg {
        GatewayMsg::LogonAck { .. } => {
            let seq = take_seq(c, book);
            let h = Header { seq, orig_ns: None, sent_ns: crate::clock::realtime_ns() };
            let mut e = begin(&mut buf, book, c, b"A", &h);
            e.uint(tag::ENCRYPT_METHOD, 0).uint(tag::HEART_BT_INT, c.fix.heartbeat_ms / 1000);
            if c.fix.reset {
                e.bytes(tag::RESET_SEQ_NUM_FLAG, b"Y");
            }
            send(c, out, e.finish(), now)
        }
        GatewayMsg::Heartbeat => admin(c, book, out, b"0", &[], now),
        GatewayMsg::Logout { reason } => {
            let text = match (reason, c.fix.refusal) {
                (LogoutReason::Refused, Some(r)) => refusal_text(r),
                (LogoutReason::Refused, None) => "logon refused",
                (LogoutReason::Normal, _) => "logout",
                (LogoutReason::SeqGap, _) => "sequence gap",
                (LogoutReason::IdleTimeout, _) => "heartbeat timeout",
                (LogoutReason::Shutdown, _) => "the gateway is shutting down",
                (LogoutReason::Killed, _) => "kill switch",
            };
            logout(c, book, out, text, now)
        }
        GatewayMsg::Reject { ref_type: msg_type::LOGON, reason, .. } => {
            // The Logout that follows says why.
            c.fix.refusal = Some(reason);
            true
        }
        _ => app(c, book, out, msg, now),
    }
}

fn send(c: &mut Client, out: Option<&mut OutBuf>, msg: Option<&[u8]>, now: u64) -> bool {
    match msg {
        Some(m) => put(c, out, m, now),
        None => false,
    }
}

/// A session-level message of type `ty` with `fields` (already encoded).
pub fn admin(c: &mut Client, book: &mut FixBook, out: Option<&mut OutBuf>, ty: &[u8], fields: &[u8], now: u64) -> bool {
    let mut buf = [0u8; FIX_MSG_MAX];
    let seq = take_seq(c, book);
    let mut e = begin(&mut buf, book, c, ty, &Header { seq, orig_ns: None, sent_ns: crate::clock::realtime_ns() });
    e.raw(fields);
    send(c, out, e.finish(), now)
}

/// A Logout with `text`.
pub fn logout(c: &mut Client, book: &mut FixBook, out: Option<&mut OutBuf>, text: &str, now: u64) -> bool {
    let mut f = [0u8; 160];
    let n = field(&mut f, tag::TEXT, text.as_bytes());
    admin(c, book, out, b"5", &f[..n], now)
}

/// `tag=value<SOH>` into `buf`; its length (0 if it does not fit).
pub fn field(buf: &mut [u8], tag: u32, value: &[u8]) -> usize {
    let mut d = [0u8; value::ID_LEN];
    let t = value::digits(u64::from(tag), &mut d);
    let n = t.len() + 1 + value.len() + 1;
    if n > buf.len() {
        return 0;
    }
    buf[..t.len()].copy_from_slice(t);
    let mut w = t.len();
    buf[w] = b'=';
    w += 1;
    buf[w..w + value.len()].copy_from_slice(value);
    w += value.len();
    buf[w] = crate::fix::SOH;
    w + 1
}

/// Why a logon was refused, as its Logout says. An unknown account and a
/// wrong password read the same, so that no stranger learns which exist.
fn refusal_text(r: RejectReason) -> &'static str {
    match r {
        RejectReason::PasswordRequired => "logon refused: a password (554) is required",
        RejectReason::NotAuthorized | RejectReason::BadAccount | RejectReason::BadPassword => {
            "logon refused: not authorized"
        }
        RejectReason::LogonThrottled => "logon refused: too many failed logons from this address, try later",
        RejectReason::LogonBusy => "logon refused: the gateway is busy, try again",
        RejectReason::TooManySessions => "logon refused: the account has all its sessions",
        _ => "logon refused",
    }
}

/// An application message: an ExecutionReport or an OrderCancelReject,
/// numbered, stored and sent (or, while a resend is under way or the
/// session is away, stored only: it goes out with the resend or is asked
/// for at the next logon).
fn app(c: &mut Client, book: &mut FixBook, out: Option<&mut OutBuf>, msg: GatewayMsg, now: u64) -> bool {
    let Some(i) = c.fix.id else { return false };
    let mut body = [0u8; FIX_MSG_MAX];
    let wall = crate::clock::realtime_ns();
    let Some((ty, n)) = app_body(book, i, c.fix.current, msg, &mut body, wall) else { return true };
    store_and_send(c, book, i, out, ty, &body[..n], now, wall)
}

/// Number, store and (unless a resend is under way) send an application
/// message of type `ty` whose body is `body` (an ExecutionReport's, or a
/// BusinessMessageReject's), for session `i` over `c`, made at `wall`.
#[allow(clippy::too_many_arguments)]
pub fn store_and_send(
    c: &mut Client,
    book: &mut FixBook,
    i: usize,
    out: Option<&mut OutBuf>,
    ty: u8,
    body: &[u8],
    now: u64,
    wall: u64,
) -> bool {
    let seq = number_and_store(book, i, ty, body, wall);
    if c.fix.resend_to.is_some() {
        c.fix.resend_to = Some(seq);
        return true;
    }
    let mut buf = [0u8; FIX_MSG_MAX];
    let mut e = begin(&mut buf, book, c, &[ty], &Header { seq, orig_ns: None, sent_ns: wall });
    e.raw(body);
    send(c, out, e.finish(), now)
}

/// A report for session `i`, away: numbered and stored for its next logon.
pub fn store_away(book: &mut FixBook, i: usize, msg: GatewayMsg) {
    let mut body = [0u8; FIX_MSG_MAX];
    let wall = crate::clock::realtime_ns();
    if let Some((ty, n)) = app_body(book, i, None, msg, &mut body, wall) {
        number_and_store(book, i, ty, &body[..n], wall);
        book.counters.stored_while_away += 1;
    }
}

/// Give an application message of session `i` its MsgSeqNum, and store it.
fn number_and_store(book: &mut FixBook, i: usize, ty: u8, body: &[u8], wall: u64) -> u32 {
    let s = &mut book.ids[i];
    let q = s.store.seqs_mut();
    let seq = q.next_out;
    q.next_out = q.next_out.wrapping_add(1);
    if !s.store.put(seq, ty, wall, body) {
        book.counters.store_failed += 1;
    }
    seq
}

/// The body of the application message `msg` becomes for session `i`, and
/// its MsgType; `None` if it becomes none. `current`: the order or cancel
/// being handled, for a refusal of one the session has no entry for.
fn app_body(
    book: &mut FixBook,
    i: usize,
    current: Option<super::client::FixCurrent>,
    msg: GatewayMsg,
    buf: &mut [u8],
    wall: u64,
) -> Option<(u8, usize)> {
    let local = book.local;
    let s = &mut book.ids[i];
    let exec_id = s.store.seqs().next_exec;
    let mut e = Encoder::fields(buf);
    let mut id = [0u8; value::ID_LEN];
    let ty = match msg {
        GatewayMsg::Ack { cl_ord_id, order_id, .. } => {
            let o = s.orders.get_mut(cl_ord_id)?;
            o.order_id = order_id;
            let o = *o;
            exec(&mut e, cl_ord_id, 0, &o, exec_id, b'0', b'0', o.qty, &mut id, wall);
            if local && o.market {
                s.orders.remove(cl_ord_id);
            }
            b'8'
        }
        GatewayMsg::Fill { cl_ord_id, price, qty, leaves, .. } => {
            let o = s.orders.get_mut(cl_ord_id)?;
            o.cum = o.cum.saturating_add(qty);
            o.value += i128::from(price) * i128::from(qty);
            let o = *o;
            let status = if leaves == 0 { b'2' } else { b'1' };
            exec(&mut e, cl_ord_id, 0, &o, exec_id, b'F', status, leaves, &mut id, wall);
            e.decimal(tag::LAST_PX, price, 4).uint(tag::LAST_QTY, u64::from(qty));
            // Done, unless a cancel is on its way: its refusal still needs the entry.
            if leaves == 0 && o.cancel_id == 0 {
                s.orders.remove(cl_ord_id);
            }
            b'8'
        }
        GatewayMsg::Canceled { cl_ord_id, .. } | GatewayMsg::CancelAck { cl_ord_id, .. } => {
            let o = s.orders.remove(cl_ord_id)?;
            exec(&mut e, o.cancel_id, cl_ord_id, &o, exec_id, b'4', b'4', 0, &mut id, wall);
            b'8'
        }
        GatewayMsg::CancelReject { cl_ord_id, .. } => {
            let o = s.orders.get_mut(cl_ord_id)?;
            let cancel_id = std::mem::take(&mut o.cancel_id);
            let o = *o;
            if o.cum >= o.qty {
                s.orders.remove(cl_ord_id);
            }
            cancel_reject(&mut e, cancel_id, cl_ord_id, &o, 0, "too late to cancel", &mut id);
            b'9'
        }
        GatewayMsg::Reject { ref_type: msg_type::NEW_ORDER, cl_ord_id, reason, .. } => {
            // The order's entry, or (a duplicate ClOrdID) the order being handled.
            let o = match current {
                Some(cur) if cur.cl_ord_id == cl_ord_id && !cur.inserted => cur.order,
                _ => s.orders.remove(cl_ord_id)?,
            };
            exec(&mut e, cl_ord_id, 0, &o, exec_id, b'8', b'8', 0, &mut id, wall);
            e.uint(tag::ORD_REJ_REASON, ord_rej_reason(reason)).bytes(tag::TEXT, reason.label().as_bytes());
            b'8'
        }
        GatewayMsg::Reject { ref_type: msg_type::CANCEL, cl_ord_id, reason, .. } => {
            let cur = current.filter(|c| c.orig_id == cl_ord_id)?;
            let o = match s.orders.get_mut(cl_ord_id) {
                Some(o) => {
                    if o.cancel_id == cur.cl_ord_id {
                        o.cancel_id = 0;
                    }
                    *o
                }
                None => cur.order,
            };
            let why = match reason {
                _ if !s.orders.contains_key(cl_ord_id) => 1,
                RejectReason::CancelPending => 3,
                _ => 99,
            };
            cancel_reject(&mut e, cur.cl_ord_id, cl_ord_id, &o, why, reason.label(), &mut id);
            b'9'
        }
        _ => return None,
    };
    if ty == b'8' {
        s.store.seqs_mut().next_exec += 1;
    }
    let n = e.written()?.len();
    Some((ty, n))
}

/// ExecutionReport fields: `clid` (and `orig`, when a cancel's) name the
/// order, `o` its figures.
#[allow(clippy::too_many_arguments)]
fn exec(
    e: &mut Encoder<'_>,
    clid: u64,
    orig: u64,
    o: &FixOrder,
    exec_id: u64,
    exec_type: u8,
    status: u8,
    leaves: u32,
    id: &mut [u8; value::ID_LEN],
    wall: u64,
) {
    order_id(e, o);
    // A cancel the client did not ask for (the kill switch, cancel on
    // disconnect) has no ClOrdID of its own: the order's.
    let (clid, orig) = if clid == 0 { (orig, 0) } else { (clid, orig) };
    e.bytes(tag::CL_ORD_ID, value::write_id(clid, id));
    if orig != 0 {
        e.bytes(tag::ORIG_CL_ORD_ID, value::write_id(orig, id));
    }
    e.uint(tag::EXEC_ID, exec_id)
        .bytes(tag::EXEC_TYPE, &[exec_type])
        .bytes(tag::ORD_STATUS, &[status])
        .bytes(tag::SIDE, if o.buy { b"1" } else { b"2" })
        .bytes(tag::SYMBOL, o.symbol.as_str().as_bytes())
        .uint(tag::ORDER_QTY, u64::from(o.qty))
        .uint(tag::LEAVES_QTY, u64::from(leaves))
        .uint(tag::CUM_QTY, u64::from(o.cum));
    let avg = if o.cum == 0 { 0 } else { o.value * 10_000 / i128::from(o.cum) };
    e.decimal(tag::AVG_PX, i64::try_from(avg).unwrap_or(i64::MAX), 8);
    let mut ts = [0u8; value::TIMESTAMP_LEN];
    e.bytes(tag::TRANSACT_TIME, value::timestamp(wall, &mut ts));
}

fn order_id(e: &mut Encoder<'_>, o: &FixOrder) {
    if o.order_id == 0 {
        e.bytes(tag::ORDER_ID, b"NONE");
    } else {
        e.uint(tag::ORDER_ID, o.order_id);
    }
}

/// OrderCancelReject fields.
fn cancel_reject(
    e: &mut Encoder<'_>,
    cancel_id: u64,
    orig: u64,
    o: &FixOrder,
    reason: u32,
    text: &str,
    id: &mut [u8; value::ID_LEN],
) {
    order_id(e, o);
    let clid = if cancel_id == 0 { orig } else { cancel_id };
    e.bytes(tag::CL_ORD_ID, value::write_id(clid, id));
    e.bytes(tag::ORIG_CL_ORD_ID, value::write_id(orig, id));
    let status: &[u8] = match (reason, o.order_id, o.cum) {
        (1, _, _) => b"8",
        _ if o.cum >= o.qty && o.qty > 0 => b"2",
        (_, 0, _) => b"A",
        (_, _, 0) => b"0",
        _ => b"1",
    };
    e.bytes(tag::ORD_STATUS, status)
        .bytes(tag::CXL_REJ_RESPONSE_TO, b"1")
        .uint(tag::CXL_REJ_REASON, u64::from(reason))
        .bytes(tag::TEXT, text.as_bytes());
}

/// OrdRejReason (103) for a refusal.
fn ord_rej_reason(r: RejectReason) -> u64 {
    use RejectReason::*;
    match r {
        Killed => 0,
        BadSymbol | RestrictedSymbol => 1,
        ExchangeUnavailable => 2,
        MaxQuantity | MaxNotional | CreditGross | CreditNet | TooManyOpenOrders | RateSession | RateAccount
        | PriceCollar => 3,
        DuplicateOrderId | DuplicateOrder => 6,
        _ => 99,
    }
}
