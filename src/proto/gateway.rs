//! Messages from the gateway to the client: encode (gateway) and decode
//! (client, the load generator).

use super::*;

/// A message from gateway to client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayMsg {
    LogonAck {
        heartbeat_ms: u32,
        idle_timeout_ms: u32,
    },
    Heartbeat,
    Ack {
        cl_ord_id: u64,
        client_ts: u64,
        gw_recv_ts: u64,
        gw_send_ts: u64,
        order_id: u64,
    },
    /// `exchange_reason`: the exchange's code when `reason` is
    /// `exchange_rejected` (version 2; 0 otherwise, and always in version 1).
    Reject {
        cl_ord_id: u64,
        client_ts: u64,
        gw_recv_ts: u64,
        ref_seq: u32,
        reason: RejectReason,
        ref_type: u8,
        exchange_reason: u16,
    },
    CancelAck {
        cl_ord_id: u64,
        client_ts: u64,
        gw_recv_ts: u64,
        gw_send_ts: u64,
    },
    Logout {
        reason: LogoutReason,
    },
    /// Version 2: an execution. `client_ts` is the order's; `gw_recv_ts`
    /// when the gateway read the exchange's report; `leaves` what is still
    /// open (0: the order is done); `exec_id` the exchange's match number.
    Fill {
        cl_ord_id: u64,
        client_ts: u64,
        gw_recv_ts: u64,
        gw_send_ts: u64,
        price: i64,
        qty: u32,
        leaves: u32,
        exec_id: u64,
    },
    /// Version 2: the Cancel came too late (the order was filled first).
    /// `client_ts` is the Cancel's.
    CancelReject {
        cl_ord_id: u64,
        client_ts: u64,
        gw_recv_ts: u64,
        gw_send_ts: u64,
    },
    /// Version 2: the exchange ended the order without a Cancel from the
    /// client (an immediate-or-cancel remainder, a supervisory cancel):
    /// `qty` taken off, the exchange's `reason` code. The order is done.
    Canceled {
        cl_ord_id: u64,
        client_ts: u64,
        gw_recv_ts: u64,
        gw_send_ts: u64,
        qty: u32,
        reason: u8,
    },
}

/// Why a gateway frame could not be decoded (client side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayDecodeError {
    /// Version, type or length wrong.
    Shape(RejectReason),
    /// Reject reason code unknown.
    BadRejectReason(u8),
    /// Logout reason code unknown.
    BadLogoutReason(u8),
}

impl GatewayMsg {
    pub fn msg_type(&self) -> u8 {
        match self {
            GatewayMsg::LogonAck { .. } => msg_type::LOGON_ACK,
            GatewayMsg::Heartbeat => msg_type::GW_HEARTBEAT,
            GatewayMsg::Ack { .. } => msg_type::ACK,
            GatewayMsg::Reject { .. } => msg_type::REJECT,
            GatewayMsg::CancelAck { .. } => msg_type::CANCEL_ACK,
            GatewayMsg::Logout { .. } => msg_type::GW_LOGOUT,
            GatewayMsg::Fill { .. } => msg_type::FILL,
            GatewayMsg::CancelReject { .. } => msg_type::CANCEL_REJECT,
            GatewayMsg::Canceled { .. } => msg_type::CANCELED,
        }
    }

    /// Decode a gateway frame (used by the load generator and tests).
    pub fn decode(f: &Frame<'_>) -> Result<GatewayMsg, GatewayDecodeError> {
        f.check_shape(false).map_err(GatewayDecodeError::Shape)?;
        let b = f.buf;
        Ok(match f.msg_type() {
            msg_type::LOGON_ACK => GatewayMsg::LogonAck {
                heartbeat_ms: u32_at(b, field::LOGON_ACK_HEARTBEAT_MS),
                idle_timeout_ms: u32_at(b, field::LOGON_ACK_IDLE_TIMEOUT_MS),
            },
            msg_type::GW_HEARTBEAT => GatewayMsg::Heartbeat,
            msg_type::ACK => GatewayMsg::Ack {
                cl_ord_id: u64_at(b, field::REPLY_CL_ORD_ID),
                client_ts: u64_at(b, field::REPLY_CLIENT_TS),
                gw_recv_ts: u64_at(b, field::REPLY_GW_RECV_TS),
                gw_send_ts: u64_at(b, field::REPLY_GW_SEND_TS),
                order_id: u64_at(b, field::ACK_ORDER_ID),
            },
            msg_type::REJECT => {
                let code = b[field::REJECT_REASON];
                GatewayMsg::Reject {
                    cl_ord_id: u64_at(b, field::REPLY_CL_ORD_ID),
                    client_ts: u64_at(b, field::REPLY_CLIENT_TS),
                    gw_recv_ts: u64_at(b, field::REPLY_GW_RECV_TS),
                    ref_seq: u32_at(b, field::REJECT_REF_SEQ),
                    reason: RejectReason::from_u8(code).ok_or(GatewayDecodeError::BadRejectReason(code))?,
                    ref_type: b[field::REJECT_REF_TYPE],
                    exchange_reason: if f.version() == VERSION_1 {
                        0
                    } else {
                        u16_at(b, field::REJECT_EXCHANGE_REASON)
                    },
                }
            }
            msg_type::FILL => GatewayMsg::Fill {
                cl_ord_id: u64_at(b, field::REPLY_CL_ORD_ID),
                client_ts: u64_at(b, field::REPLY_CLIENT_TS),
                gw_recv_ts: u64_at(b, field::REPLY_GW_RECV_TS),
                gw_send_ts: u64_at(b, field::REPLY_GW_SEND_TS),
                price: u64_at(b, field::FILL_PRICE) as i64,
                qty: u32_at(b, field::FILL_QTY),
                leaves: u32_at(b, field::FILL_LEAVES),
                exec_id: u64_at(b, field::FILL_EXEC_ID),
            },
            msg_type::CANCEL_REJECT => GatewayMsg::CancelReject {
                cl_ord_id: u64_at(b, field::REPLY_CL_ORD_ID),
                client_ts: u64_at(b, field::REPLY_CLIENT_TS),
                gw_recv_ts: u64_at(b, field::REPLY_GW_RECV_TS),
                gw_send_ts: u64_at(b, field::REPLY_GW_SEND_TS),
            },
            msg_type::CANCELED => GatewayMsg::Canceled {
                cl_ord_id: u64_at(b, field::REPLY_CL_ORD_ID),
                client_ts: u64_at(b, field::REPLY_CLIENT_TS),
                gw_recv_ts: u64_at(b, field::REPLY_GW_RECV_TS),
                gw_send_ts: u64_at(b, field::REPLY_GW_SEND_TS),
                qty: u32_at(b, field::CANCELED_QTY),
                reason: b[field::CANCELED_REASON],
            },
            msg_type::CANCEL_ACK => GatewayMsg::CancelAck {
                cl_ord_id: u64_at(b, field::REPLY_CL_ORD_ID),
                client_ts: u64_at(b, field::REPLY_CLIENT_TS),
                gw_recv_ts: u64_at(b, field::REPLY_GW_RECV_TS),
                gw_send_ts: u64_at(b, field::REPLY_GW_SEND_TS),
            },
            msg_type::GW_LOGOUT => {
                let code = b[field::LOGOUT_REASON];
                GatewayMsg::Logout {
                    reason: LogoutReason::from_u8(code).ok_or(GatewayDecodeError::BadLogoutReason(code))?,
                }
            }
            _ => return Err(GatewayDecodeError::Shape(RejectReason::UnknownType)),
        })
    }

    /// Encode (version 2) into `out`; returns the frame length, or `None`
    /// if `out` is too small.
    pub fn encode(&self, seq: u32, out: &mut [u8]) -> Option<usize> {
        self.encode_as(VERSION, seq, out)
    }

    /// Encode for a session of `version`: `None` for a message version 1
    /// does not have, or when `out` is too small.
    pub fn encode_as(&self, version: u8, seq: u32, out: &mut [u8]) -> Option<usize> {
        if version == VERSION_1 && msg_type::v2_only(self.msg_type()) {
            return None;
        }
        let b = header(out, self.msg_type(), seq, version)?;
        match *self {
            GatewayMsg::LogonAck { heartbeat_ms, idle_timeout_ms } => {
                b[field::LOGON_ACK_HEARTBEAT_MS].copy_from_slice(&heartbeat_ms.to_le_bytes());
                b[field::LOGON_ACK_IDLE_TIMEOUT_MS].copy_from_slice(&idle_timeout_ms.to_le_bytes());
            }
            GatewayMsg::Heartbeat => {}
            GatewayMsg::Ack { cl_ord_id, client_ts, gw_recv_ts, gw_send_ts, order_id } => {
                reply_fields(b, cl_ord_id, client_ts, gw_recv_ts);
                b[field::REPLY_GW_SEND_TS].copy_from_slice(&gw_send_ts.to_le_bytes());
                b[field::ACK_ORDER_ID].copy_from_slice(&order_id.to_le_bytes());
            }
            GatewayMsg::Reject { cl_ord_id, client_ts, gw_recv_ts, ref_seq, reason, ref_type, exchange_reason } => {
                reply_fields(b, cl_ord_id, client_ts, gw_recv_ts);
                b[field::REJECT_REF_SEQ].copy_from_slice(&ref_seq.to_le_bytes());
                b[field::REJECT_REASON] = reason as u8;
                b[field::REJECT_REF_TYPE] = ref_type;
                if version != VERSION_1 {
                    b[field::REJECT_EXCHANGE_REASON].copy_from_slice(&exchange_reason.to_le_bytes());
                }
            }
            GatewayMsg::Fill { cl_ord_id, client_ts, gw_recv_ts, gw_send_ts, price, qty, leaves, exec_id } => {
                reply_fields(b, cl_ord_id, client_ts, gw_recv_ts);
                b[field::REPLY_GW_SEND_TS].copy_from_slice(&gw_send_ts.to_le_bytes());
                b[field::FILL_PRICE].copy_from_slice(&price.to_le_bytes());
                b[field::FILL_QTY].copy_from_slice(&qty.to_le_bytes());
                b[field::FILL_LEAVES].copy_from_slice(&leaves.to_le_bytes());
                b[field::FILL_EXEC_ID].copy_from_slice(&exec_id.to_le_bytes());
            }
            GatewayMsg::CancelReject { cl_ord_id, client_ts, gw_recv_ts, gw_send_ts } => {
                reply_fields(b, cl_ord_id, client_ts, gw_recv_ts);
                b[field::REPLY_GW_SEND_TS].copy_from_slice(&gw_send_ts.to_le_bytes());
            }
            GatewayMsg::Canceled { cl_ord_id, client_ts, gw_recv_ts, gw_send_ts, qty, reason } => {
                reply_fields(b, cl_ord_id, client_ts, gw_recv_ts);
                b[field::REPLY_GW_SEND_TS].copy_from_slice(&gw_send_ts.to_le_bytes());
                b[field::CANCELED_QTY].copy_from_slice(&qty.to_le_bytes());
                b[field::CANCELED_REASON] = reason;
            }
            GatewayMsg::CancelAck { cl_ord_id, client_ts, gw_recv_ts, gw_send_ts } => {
                reply_fields(b, cl_ord_id, client_ts, gw_recv_ts);
                b[field::REPLY_GW_SEND_TS].copy_from_slice(&gw_send_ts.to_le_bytes());
            }
            GatewayMsg::Logout { reason } => b[field::LOGOUT_REASON] = reason as u8,
        }
        Some(b.len())
    }
}

fn reply_fields(b: &mut [u8], cl_ord_id: u64, client_ts: u64, gw_recv_ts: u64) {
    b[field::REPLY_CL_ORD_ID].copy_from_slice(&cl_ord_id.to_le_bytes());
    b[field::REPLY_CLIENT_TS].copy_from_slice(&client_ts.to_le_bytes());
    b[field::REPLY_GW_RECV_TS].copy_from_slice(&gw_recv_ts.to_le_bytes());
}
