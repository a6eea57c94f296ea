//! Messages from the client to the gateway: encode (client, the load
//! generator) and decode (gateway).

use super::*;

/// A message from client to gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMsg {
    /// `password` is empty in versions 1 and 2 (their Logon has none).
    Logon {
        account: Code8,
        password: Password,
    },
    Heartbeat,
    NewOrder(NewOrder),
    Cancel {
        cl_ord_id: u64,
        client_ts: u64,
    },
    Logout,
}

/// The body of a NewOrder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    pub cl_ord_id: u64,
    pub client_ts: u64,
    /// Price in ticks; zero for market orders.
    pub price: i64,
    pub qty: u32,
    pub side: Side,
    pub kind: OrderKind,
    pub symbol: Code8,
}

impl NewOrder {
    /// The symbol as one integer (its 8 bytes, little-endian).
    #[inline]
    pub fn symbol_code(&self) -> u64 {
        u64::from_le_bytes(self.symbol.0)
    }
}

impl ClientMsg {
    /// Decode a client frame's content. The sequence number is not checked
    /// here; that is session state (see `app::orders`).
    pub fn decode(f: &Frame<'_>) -> Result<ClientMsg, RejectReason> {
        f.check_shape(true)?;
        let b = f.buf;
        Ok(match f.msg_type() {
            msg_type::LOGON => {
                let account = code_at(b, field::LOGON_ACCOUNT);
                if !account.valid_account() {
                    return Err(RejectReason::BadAccount);
                }
                let password = if f.version() >= VERSION {
                    Password::from_field(&b[field::LOGON_PASSWORD]).ok_or(RejectReason::BadPassword)?
                } else {
                    Password::NONE
                };
                ClientMsg::Logon { account, password }
            }
            msg_type::HEARTBEAT => ClientMsg::Heartbeat,
            msg_type::NEW_ORDER => {
                let side = match b[field::ORDER_SIDE] {
                    1 => Side::Buy,
                    2 => Side::Sell,
                    _ => return Err(RejectReason::BadSide),
                };
                let kind = match b[field::ORDER_KIND] {
                    1 => OrderKind::Limit,
                    2 => OrderKind::Market,
                    _ => return Err(RejectReason::BadOrderKind),
                };
                if u16_at(b, field::ORDER_RESERVED) != 0 {
                    return Err(RejectReason::BadReserved);
                }
                let qty = u32_at(b, field::ORDER_QTY);
                if qty == 0 {
                    return Err(RejectReason::BadQuantity);
                }
                let price = u64_at(b, field::ORDER_PRICE) as i64;
                let price_ok = match kind {
                    OrderKind::Limit => price > 0,
                    OrderKind::Market => price == 0,
                };
                if !price_ok {
                    return Err(RejectReason::BadPrice);
                }
                let symbol = code_at(b, field::ORDER_SYMBOL);
                if !symbol.valid_symbol() {
                    return Err(RejectReason::BadSymbol);
                }
                ClientMsg::NewOrder(NewOrder {
                    cl_ord_id: u64_at(b, field::ORDER_CL_ORD_ID),
                    client_ts: u64_at(b, field::ORDER_CLIENT_TS),
                    price,
                    qty,
                    side,
                    kind,
                    symbol,
                })
            }
            msg_type::CANCEL => ClientMsg::Cancel {
                cl_ord_id: u64_at(b, field::CANCEL_CL_ORD_ID),
                client_ts: u64_at(b, field::CANCEL_CLIENT_TS),
            },
            msg_type::LOGOUT => {
                if b[field::LOGOUT_RESERVED].iter().any(|&x| x != 0) {
                    return Err(RejectReason::BadReserved);
                }
                ClientMsg::Logout
            }
            _ => return Err(RejectReason::UnknownType),
        })
    }

    /// Message type code.
    pub fn msg_type(&self) -> u8 {
        match self {
            ClientMsg::Logon { .. } => msg_type::LOGON,
            ClientMsg::Heartbeat => msg_type::HEARTBEAT,
            ClientMsg::NewOrder(_) => msg_type::NEW_ORDER,
            ClientMsg::Cancel { .. } => msg_type::CANCEL,
            ClientMsg::Logout => msg_type::LOGOUT,
        }
    }

    /// A Logon without a password.
    pub fn logon(account: Code8) -> ClientMsg {
        ClientMsg::Logon { account, password: Password::NONE }
    }

    /// Encode (version 3) into `out`; returns the frame length, or `None`
    /// if `out` is too small.
    pub fn encode(&self, seq: u32, out: &mut [u8]) -> Option<usize> {
        self.encode_as(VERSION, seq, out)
    }

    /// Encode with `version` in the header (every client message but the
    /// Logon has the same layout in every version; a Logon with a password
    /// cannot be encoded before version 3).
    pub fn encode_as(&self, version: u8, seq: u32, out: &mut [u8]) -> Option<usize> {
        let ty = self.msg_type();
        if let ClientMsg::Logon { password, .. } = self {
            if version < VERSION && !password.is_empty() {
                return None;
            }
        }
        let b = header(out, ty, seq, version)?;
        match *self {
            ClientMsg::Logon { account, password } => {
                b[field::LOGON_ACCOUNT].copy_from_slice(&account.0);
                if version >= VERSION {
                    b[field::LOGON_PASSWORD][..password.expose().len()].copy_from_slice(password.expose());
                }
            }
            ClientMsg::Heartbeat => {}
            ClientMsg::NewOrder(o) => {
                b[field::ORDER_CL_ORD_ID].copy_from_slice(&o.cl_ord_id.to_le_bytes());
                b[field::ORDER_CLIENT_TS].copy_from_slice(&o.client_ts.to_le_bytes());
                b[field::ORDER_PRICE].copy_from_slice(&o.price.to_le_bytes());
                b[field::ORDER_QTY].copy_from_slice(&o.qty.to_le_bytes());
                b[field::ORDER_SIDE] = o.side as u8;
                b[field::ORDER_KIND] = o.kind as u8;
                b[field::ORDER_SYMBOL].copy_from_slice(&o.symbol.0);
            }
            ClientMsg::Cancel { cl_ord_id, client_ts } => {
                b[field::CANCEL_CL_ORD_ID].copy_from_slice(&cl_ord_id.to_le_bytes());
                b[field::CANCEL_CLIENT_TS].copy_from_slice(&client_ts.to_le_bytes());
            }
            ClientMsg::Logout => b[field::LOGOUT_REASON] = LogoutReason::Normal as u8,
        }
        Some(b.len())
    }
}
