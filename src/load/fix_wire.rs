//! The order workload's requests and the gateway's answers in FIX 4.4
//! (`tailgate load --protocol fix`): the same requests as the binary
//! protocol's, written as Logon (A), NewOrderSingle (D),
//! OrderCancelRequest (F), Heartbeat (0) and Logout (5), and the
//! gateway's ExecutionReports (8) and OrderCancelRejects (9) read back
//! into the binary protocol's answers, so that one workload
//! (`orders.rs`) drives and checks both.
//!
//! The client side of the session is the simplest a real one could be:
//! it logs on with ResetSeqNumFlag (141=Y), so every run starts both
//! sides at 1, and numbers and checks MsgSeqNum like any engine.

use crate::fix::{self, tag, value, Encoder, Msg};
use crate::proto::{msg_type, ClientMsg, Code8, GatewayMsg, LogoutReason, OrderKind, Password, RejectReason, Side};

/// The longest request written (a NewOrderSingle is about 165 bytes).
const MAX_REQUEST: usize = 512;

/// HeartBtInt (108) the load generator asks for: it sends a Heartbeat
/// itself after a second of silence, long before this.
const HEART_BT_INT: u64 = 30;

/// Who a request is from and to, and its number.
pub(super) struct Head<'a> {
    pub seq: u32,
    /// SenderCompID (49): the account.
    pub sender: &'a str,
    /// TargetCompID (56): the gateway's CompID.
    pub target: &'a str,
    /// SendingTime (52), wall clock ns.
    pub wall_ns: u64,
}

/// A cancel's own ClOrdID and the side of the order it cancels (FIX names
/// both; the binary Cancel names only the order).
#[derive(Clone, Copy)]
pub(super) struct CancelOf {
    pub cancel_id: u64,
    pub side: Side,
    pub symbol: Code8,
}

/// Append `m` as a FIX message to `tx`; false if it could not be written
/// (a field too long: a caller's mistake, counted by the caller).
pub(super) fn encode(m: &ClientMsg, h: &Head<'_>, cancel: Option<CancelOf>, tx: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; MAX_REQUEST];
    let ty: &[u8] = match m {
        ClientMsg::Logon { .. } => b"A",
        ClientMsg::Heartbeat => b"0",
        ClientMsg::NewOrder(_) => b"D",
        ClientMsg::Cancel { .. } => b"F",
        ClientMsg::Logout => b"5",
    };
    let mut e = Encoder::new(&mut buf, ty);
    let mut ts = [0u8; value::TIMESTAMP_LEN];
    let sending = value::timestamp(h.wall_ns, &mut ts);
    e.uint(tag::MSG_SEQ_NUM, u64::from(h.seq))
        .bytes(tag::SENDER_COMP_ID, h.sender.as_bytes())
        .bytes(tag::SENDING_TIME, sending)
        .bytes(tag::TARGET_COMP_ID, h.target.as_bytes());
    let mut id = [0u8; value::ID_LEN];
    match m {
        ClientMsg::Logon { password, .. } => {
            e.bytes(tag::ENCRYPT_METHOD, b"0")
                .uint(tag::HEART_BT_INT, HEART_BT_INT)
                .bytes(tag::RESET_SEQ_NUM_FLAG, b"Y");
            logon_credentials(&mut e, h.sender, password);
        }
        ClientMsg::Heartbeat | ClientMsg::Logout => {}
        ClientMsg::NewOrder(o) => {
            e.bytes(tag::CL_ORD_ID, value::digits(o.cl_ord_id, &mut id))
                .bytes(tag::SIDE, side(o.side))
                .bytes(tag::SYMBOL, o.symbol.as_str().as_bytes())
                .bytes(tag::TRANSACT_TIME, sending)
                .uint(tag::ORDER_QTY, u64::from(o.qty));
            if o.kind == OrderKind::Market {
                e.bytes(tag::ORD_TYPE, b"1");
            } else {
                e.bytes(tag::ORD_TYPE, b"2").decimal(tag::PRICE, o.price, 4);
            }
        }
        ClientMsg::Cancel { cl_ord_id, .. } => {
            let Some(c) = cancel else { return false };
            e.bytes(tag::ORIG_CL_ORD_ID, value::digits(*cl_ord_id, &mut id));
            e.bytes(tag::CL_ORD_ID, value::digits(c.cancel_id, &mut id))
                .bytes(tag::SIDE, side(c.side))
                .bytes(tag::SYMBOL, c.symbol.as_str().as_bytes())
                .bytes(tag::TRANSACT_TIME, sending);
        }
    }
    match e.finish() {
        Some(msg) => {
            tx.extend_from_slice(msg);
            true
        }
        None => false,
    }
}

fn logon_credentials(e: &mut Encoder<'_>, account: &str, password: &Password) {
    if !password.is_empty() {
        e.bytes(tag::USERNAME, account.as_bytes()).bytes(tag::PASSWORD, password.expose());
    }
}

fn side(s: Side) -> &'static [u8] {
    match s {
        Side::Buy => b"1",
        Side::Sell => b"2",
    }
}

/// One message from the gateway, read.
pub(super) enum Reply {
    /// An answer the binary protocol has too.
    Gw(GatewayMsg),
    /// A TestRequest (1): the next Heartbeat answers it.
    TestRequest,
    /// A session-level Reject (3) or BusinessMessageReject (j): a request
    /// of ours was wrong. Its Text.
    Refused(String),
}

/// The first whole message in `buf`: its length, MsgSeqNum and what it
/// says; `Ok(None)` until it is all there.
pub(super) fn decode(buf: &[u8]) -> Result<Option<(usize, u32, Reply)>, String> {
    let Some(len) = fix::frame(buf).map_err(|e| format!("FIX framing error: {e}"))? else {
        return Ok(None);
    };
    let m = Msg::parse(&buf[..len]).map_err(|e| format!("FIX message unreadable: {e:?}"))?;
    let seq = m.get(tag::MSG_SEQ_NUM).and_then(value::uint).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
    let reply = match m.msg_type() {
        b"A" => Reply::Gw(GatewayMsg::LogonAck { heartbeat_ms: 0, idle_timeout_ms: 0 }),
        b"0" => Reply::Gw(GatewayMsg::Heartbeat),
        b"1" => Reply::TestRequest,
        b"5" => {
            let text = m.get(tag::TEXT).unwrap_or_default();
            let shutdown = text.windows(13).any(|w| w == b"shutting down");
            if !shutdown && text != b"logout" {
                // Refused, timed out, killed: the gateway says why.
                crate::log_warn!("load: the gateway logged a FIX session out: {}", String::from_utf8_lossy(text));
            }
            let reason = if shutdown { LogoutReason::Shutdown } else { LogoutReason::Normal };
            Reply::Gw(GatewayMsg::Logout { reason })
        }
        b"3" | b"j" => Reply::Refused(text(&m)),
        b"8" => execution_report(&m)?,
        b"9" => cancel_reject(&m)?,
        other => return Err(format!("unexpected FIX MsgType {}", String::from_utf8_lossy(other))),
    };
    Ok(Some((len, seq, reply)))
}

fn text(m: &Msg<'_>) -> String {
    String::from_utf8_lossy(m.get(tag::TEXT).unwrap_or(b"(no Text)")).into_owned()
}

/// Our ClOrdIDs are numbers (written in decimal).
fn id(m: &Msg<'_>, t: u32) -> Result<u64, String> {
    m.get(t)
        .and_then(value::uint)
        .ok_or_else(|| format!("ExecutionReport or OrderCancelReject without a numeric tag {t}"))
}

fn num(m: &Msg<'_>, t: u32) -> u64 {
    m.get(t).and_then(value::uint).unwrap_or(0)
}

fn execution_report(m: &Msg<'_>) -> Result<Reply, String> {
    let cl_ord_id = id(m, tag::CL_ORD_ID)?;
    let order_id = num(m, tag::ORDER_ID);
    let msg = match m.get(tag::EXEC_TYPE) {
        Some(b"0") => GatewayMsg::Ack { cl_ord_id, client_ts: 0, gw_recv_ts: 0, gw_send_ts: 0, order_id },
        Some(b"F") => GatewayMsg::Fill {
            cl_ord_id,
            client_ts: 0,
            gw_recv_ts: 0,
            gw_send_ts: 0,
            price: m.get(tag::LAST_PX).and_then(|p| value::decimal(p, 4)).unwrap_or(0),
            qty: num(m, tag::LAST_QTY) as u32,
            leaves: num(m, tag::LEAVES_QTY) as u32,
            exec_id: num(m, tag::EXEC_ID),
        },
        // The answer to our cancel names the order in OrigClOrdID; a cancel
        // we did not ask for names it in ClOrdID alone.
        Some(b"4") => match m.get(tag::ORIG_CL_ORD_ID) {
            Some(_) => GatewayMsg::CancelAck {
                cl_ord_id: id(m, tag::ORIG_CL_ORD_ID)?,
                client_ts: 0,
                gw_recv_ts: 0,
                gw_send_ts: 0,
            },
            None => GatewayMsg::Canceled { cl_ord_id, client_ts: 0, gw_recv_ts: 0, gw_send_ts: 0, qty: 0, reason: 0 },
        },
        Some(b"8") => GatewayMsg::Reject {
            cl_ord_id,
            client_ts: 0,
            gw_recv_ts: 0,
            ref_seq: 0,
            reason: reason(m),
            ref_type: msg_type::NEW_ORDER,
            exchange_reason: 0,
        },
        other => {
            return Err(format!(
                "ExecutionReport with ExecType {}",
                String::from_utf8_lossy(other.unwrap_or(b"(none)"))
            ))
        }
    };
    Ok(Reply::Gw(msg))
}

/// The gateway writes its reason's label as Text (58).
fn reason(m: &Msg<'_>) -> RejectReason {
    let t = m.get(tag::TEXT).unwrap_or_default();
    RejectReason::ALL.iter().copied().find(|r| r.label().as_bytes() == t).unwrap_or(RejectReason::ExchangeRejected)
}

fn cancel_reject(m: &Msg<'_>) -> Result<Reply, String> {
    let cl_ord_id = id(m, tag::ORIG_CL_ORD_ID)?;
    let msg = match num(m, tag::CXL_REJ_REASON) {
        // Too late: the binary protocol's CancelReject.
        0 => GatewayMsg::CancelReject { cl_ord_id, client_ts: 0, gw_recv_ts: 0, gw_send_ts: 0 },
        // Refused by a check: the binary protocol's Reject of a Cancel,
        // with the reason the Text names.
        _ => GatewayMsg::Reject {
            cl_ord_id,
            client_ts: 0,
            gw_recv_ts: 0,
            ref_seq: 0,
            reason: reason(m),
            ref_type: msg_type::CANCEL,
            exchange_reason: 0,
        },
    };
    Ok(Reply::Gw(msg))
}
