//! The tailgate order-entry protocol (versions 1 to 3): codec only, no I/O.
//!
//! Layout and semantics are specified in `docs/PROTOCOL.md`; this module is
//! the single implementation of that document. Every frame starts with an
//! 8-byte header:
//!
//! ```text
//! offset size field
//!      0    2 len      u16 LE, whole frame including this header
//!      2    1 version  u8, VERSION
//!      3    1 type     u8, message type
//!      4    4 seq      u32 LE, the sender's per-session sequence number
//! ```
//!
//! Parsing is done through checked views in the style of smoltcp's `wire`
//! module: [`Frame::parse`] only ever looks at the bytes it was given,
//! never panics on any input, and reports one of two kinds of failure:
//!
//! * [`FramingError`]: the length prefix cannot be trusted, so the stream
//!   cannot be resynchronised; the connection must be closed.
//! * [`RejectReason`]: the frame is delimited correctly but its content is
//!   wrong; the gateway answers with a typed `Reject` and carries on.
//!
//! Encoding writes into caller-provided buffers and never allocates.
//! Frames and shared types are here; the client's messages are in
//! `client.rs`, the gateway's in `gateway.rs`.

mod client;
mod gateway;

use std::fmt;

pub use self::client::{ClientMsg, NewOrder};

pub use self::gateway::{GatewayDecodeError, GatewayMsg};

/// Protocol version carried in every header: 3 adds the Logon's password
/// (a 48-byte Logon); every other message is as in version 2.
pub const VERSION: u8 = 3;
/// Version 2 adds what an exchange leg needs (Fill, CancelReject,
/// Canceled, the exchange's reject reason). Its Logon has no password.
pub const VERSION_2: u8 = 2;
/// The first version: no fills (a gateway with an upstream refuses it).
pub const VERSION_1: u8 = 1;
/// Longest password a version-3 Logon carries.
pub const PASSWORD_LEN: usize = 32;
/// Size of the common header.
pub const HEADER_LEN: usize = 8;
/// Largest frame either side may send. Anything longer is a framing error.
pub const MAX_FRAME_LEN: usize = 64;

/// Byte offsets of every field, named once.
pub mod field {
    use std::ops::Range;
    pub const LEN: Range<usize> = 0..2;
    pub const VERSION: usize = 2;
    pub const TYPE: usize = 3;
    pub const SEQ: Range<usize> = 4..8;

    // Logon (client).
    pub const LOGON_ACCOUNT: Range<usize> = 8..16;
    /// Version 3: the password, printable ASCII, zero padded.
    pub const LOGON_PASSWORD: Range<usize> = 16..48;
    // LogonAck (gateway).
    pub const LOGON_ACK_HEARTBEAT_MS: Range<usize> = 8..12;
    pub const LOGON_ACK_IDLE_TIMEOUT_MS: Range<usize> = 12..16;
    // NewOrder (client).
    pub const ORDER_CL_ORD_ID: Range<usize> = 8..16;
    pub const ORDER_CLIENT_TS: Range<usize> = 16..24;
    pub const ORDER_PRICE: Range<usize> = 24..32;
    pub const ORDER_QTY: Range<usize> = 32..36;
    pub const ORDER_SIDE: usize = 36;
    pub const ORDER_KIND: usize = 37;
    pub const ORDER_RESERVED: Range<usize> = 38..40;
    pub const ORDER_SYMBOL: Range<usize> = 40..48;
    // Cancel (client).
    pub const CANCEL_CL_ORD_ID: Range<usize> = 8..16;
    pub const CANCEL_CLIENT_TS: Range<usize> = 16..24;
    // Logout (both directions).
    pub const LOGOUT_REASON: usize = 8;
    pub const LOGOUT_RESERVED: Range<usize> = 9..16;
    // Ack / CancelAck / Reject (gateway) share their first fields.
    pub const REPLY_CL_ORD_ID: Range<usize> = 8..16;
    pub const REPLY_CLIENT_TS: Range<usize> = 16..24;
    pub const REPLY_GW_RECV_TS: Range<usize> = 24..32;
    pub const REPLY_GW_SEND_TS: Range<usize> = 32..40;
    pub const ACK_ORDER_ID: Range<usize> = 40..48;
    pub const REJECT_REF_SEQ: Range<usize> = 32..36;
    pub const REJECT_REASON: usize = 36;
    pub const REJECT_REF_TYPE: usize = 37;
    /// Version 2; reserved (zero) in version 1.
    pub const REJECT_EXCHANGE_REASON: Range<usize> = 38..40;
    // Fill (gateway, version 2).
    pub const FILL_PRICE: Range<usize> = 40..48;
    pub const FILL_QTY: Range<usize> = 48..52;
    pub const FILL_LEAVES: Range<usize> = 52..56;
    pub const FILL_EXEC_ID: Range<usize> = 56..64;
    // Canceled (gateway, version 2).
    pub const CANCELED_QTY: Range<usize> = 40..44;
    pub const CANCELED_REASON: usize = 44;
    pub const CANCELED_RESERVED: Range<usize> = 45..48;
}

/// Message type codes. Client messages are below 0x80, gateway messages above.
pub mod msg_type {
    pub const LOGON: u8 = 0x01;
    pub const HEARTBEAT: u8 = 0x02;
    pub const NEW_ORDER: u8 = 0x03;
    pub const CANCEL: u8 = 0x04;
    pub const LOGOUT: u8 = 0x05;

    pub const LOGON_ACK: u8 = 0x81;
    pub const GW_HEARTBEAT: u8 = 0x82;
    pub const ACK: u8 = 0x83;
    pub const REJECT: u8 = 0x84;
    pub const CANCEL_ACK: u8 = 0x85;
    pub const GW_LOGOUT: u8 = 0x86;
    // Version 2.
    pub const FILL: u8 = 0x87;
    pub const CANCEL_REJECT: u8 = 0x88;
    pub const CANCELED: u8 = 0x89;

    /// Types that exist only from version 2 on.
    pub const fn v2_only(ty: u8) -> bool {
        matches!(ty, FILL | CANCEL_REJECT | CANCELED)
    }
}

/// Exact frame length of every message type in `version` (all layouts are
/// fixed; only the Logon's differs between versions).
pub const fn frame_len(ty: u8, version: u8) -> Option<usize> {
    use msg_type::*;
    match ty {
        LOGON if version >= VERSION => Some(48),
        LOGON => Some(16),
        HEARTBEAT | GW_HEARTBEAT => Some(8),
        NEW_ORDER => Some(48),
        CANCEL => Some(24),
        LOGOUT | GW_LOGOUT => Some(16),
        LOGON_ACK => Some(16),
        ACK => Some(48),
        REJECT => Some(40),
        CANCEL_ACK => Some(40),
        FILL => Some(64),
        CANCEL_REJECT => Some(40),
        CANCELED => Some(48),
        _ => None,
    }
}

/// The length prefix cannot be trusted: the connection must be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingError {
    /// `len` is smaller than the header.
    TooShort(u16),
    /// `len` is larger than [`MAX_FRAME_LEN`].
    TooLong(u16),
}

impl fmt::Display for FramingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FramingError::TooShort(n) => {
                write!(f, "frame length {n} is shorter than the {HEADER_LEN}-byte header")
            }
            FramingError::TooLong(n) => {
                write!(f, "frame length {n} exceeds the maximum of {MAX_FRAME_LEN}")
            }
        }
    }
}

impl std::error::Error for FramingError {}

macro_rules! reasons {
    ($( $(#[$m:meta])* $name:ident = $code:expr, $label:expr; )*) => {
        /// Why a well-framed message was refused. Carried in `Reject`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum RejectReason { $( $(#[$m])* $name = $code, )* }

        impl RejectReason {
            /// Every reason, in code order.
            pub const ALL: &'static [RejectReason] = &[ $( RejectReason::$name, )* ];
            /// Decode a reason code.
            pub fn from_u8(v: u8) -> Option<Self> {
                match v { $( $code => Some(RejectReason::$name), )* _ => None }
            }
            /// Stable snake_case label used in logs, metrics and JSON.
            pub fn label(self) -> &'static str {
                match self { $( RejectReason::$name => $label, )* }
            }
        }
    };
}

reasons! {
    /// The type byte names no client message.
    UnknownType = 1, "unknown_type";
    /// `len` does not match the fixed layout of the type.
    BadLength = 2, "bad_length";
    /// The version byte is not [`VERSION`].
    BadVersion = 3, "bad_version";
    /// The sequence number is not the next expected one. Followed by Logout.
    SeqGap = 4, "seq_gap";
    /// A message other than Logon before Logon.
    NotLoggedOn = 5, "not_logged_on";
    /// A second Logon on the same session.
    AlreadyLoggedOn = 6, "already_logged_on";
    /// Side is neither 1 (buy) nor 2 (sell).
    BadSide = 7, "bad_side";
    /// Order kind is neither 1 (limit) nor 2 (market).
    BadOrderKind = 8, "bad_order_kind";
    /// Quantity is zero.
    BadQuantity = 9, "bad_quantity";
    /// Limit price not positive, or market order with a non-zero price.
    BadPrice = 10, "bad_price";
    /// Symbol is not upper-case ASCII letters/digits, left-aligned, space padded.
    BadSymbol = 11, "bad_symbol";
    /// Cancel of an order that is not open on this session.
    UnknownOrder = 12, "unknown_order";
    /// NewOrder reusing the id of an order still open on this session.
    DuplicateOrderId = 13, "duplicate_order_id";
    /// The session already has the configured maximum of open orders.
    TooManyOpenOrders = 14, "too_many_open_orders";
    /// Account is not printable ASCII, left-aligned, space padded, non-empty.
    BadAccount = 15, "bad_account";
    /// A reserved field is not zero.
    BadReserved = 16, "bad_reserved";
    /// The exchange rejected the order; its reason code is in `exchange_reason`.
    ExchangeRejected = 17, "exchange_rejected";
    /// The session to the exchange is down (or cannot take the order now).
    ExchangeUnavailable = 18, "exchange_unavailable";
    /// A Cancel of an order whose cancel is already on its way.
    CancelPending = 19, "cancel_pending";
    /// A Logon without a password (version 1 or 2, or an empty one) where
    /// accounts need passwords. Followed by Logout.
    PasswordRequired = 20, "password_required";
    /// An unknown account, a wrong password or a source address the
    /// account may not use: one reason on the wire, so that no stranger
    /// learns which accounts exist (the gateway's log and counters say
    /// which). Followed by Logout.
    NotAuthorized = 21, "not_authorized";
    /// Too many failed logons from this source address lately: try later.
    /// Followed by Logout.
    LogonThrottled = 22, "logon_throttled";
    /// The gateway cannot verify a logon now (its queue is full): try
    /// again. Followed by Logout.
    LogonBusy = 23, "logon_busy";
    /// The account has as many sessions as it may. Followed by Logout.
    TooManySessions = 24, "too_many_sessions";
    /// The kill switch is on for the account, or for the whole gateway.
    Killed = 25, "killed";
    /// Quantity above the account's maximum per order.
    MaxQuantity = 26, "max_quantity";
    /// Price x quantity above the account's maximum per order.
    MaxNotional = 27, "max_notional";
    /// Limit price outside the collar around the symbol's reference price.
    PriceCollar = 28, "price_collar";
    /// No reference price for the symbol, and the check needs one (a
    /// market order, or `require_reference`).
    NoReferencePrice = 29, "no_reference_price";
    /// The account's gross open notional would exceed its limit.
    CreditGross = 30, "credit_gross";
    /// The account's net position would exceed its limit.
    CreditNet = 31, "credit_net";
    /// The session sends orders faster than its limit.
    RateSession = 32, "rate_session";
    /// The account's sessions together send orders faster than its limit.
    RateAccount = 33, "rate_account";
    /// The same side, symbol, quantity and price as an order of the session
    /// within the duplicate window.
    DuplicateOrder = 34, "duplicate_order";
    /// The symbol is restricted.
    RestrictedSymbol = 35, "restricted_symbol";
    /// Market orders are not allowed for the account.
    MarketNotAllowed = 36, "market_not_allowed";
    /// The Logon's password field is not printable ASCII followed by zeros.
    BadPassword = 37, "bad_password";
    /// The audit journal cannot take the order (its next segment is not
    /// ready): refused rather than sent unrecorded.
    JournalUnavailable = 38, "journal_unavailable";
}

/// Room for every reject reason's counter, indexed by code.
pub const REASONS: usize = 64;

/// A counter per reject reason, indexed by code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReasonCounts(pub [u64; REASONS]);

impl Default for ReasonCounts {
    fn default() -> Self {
        ReasonCounts([0; REASONS])
    }
}

impl std::ops::Deref for ReasonCounts {
    type Target = [u64; REASONS];
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for ReasonCounts {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Why a session ended. Carried in `Logout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LogoutReason {
    /// The client asked to log out.
    Normal = 0,
    /// Sequence gap on the client's stream.
    SeqGap = 1,
    /// No message from the client within the idle timeout.
    IdleTimeout = 2,
    /// The gateway is shutting down.
    Shutdown = 3,
    /// The kill switch logged the session out (version 3).
    Killed = 4,
    /// The Logon was refused (version 3; the Reject before it says why).
    Refused = 5,
}

impl LogoutReason {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(LogoutReason::Normal),
            1 => Some(LogoutReason::SeqGap),
            2 => Some(LogoutReason::IdleTimeout),
            3 => Some(LogoutReason::Shutdown),
            4 => Some(LogoutReason::Killed),
            5 => Some(LogoutReason::Refused),
            _ => None,
        }
    }
}

/// Order side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Side {
    Buy = 1,
    Sell = 2,
}

/// Order kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OrderKind {
    Limit = 1,
    Market = 2,
}

/// An 8-byte space-padded ASCII identifier (symbol or account).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Code8(pub [u8; 8]);

impl Code8 {
    /// Build from a string of 1..=8 bytes; pads with spaces.
    pub fn new(s: &str) -> Option<Self> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 8 {
            return None;
        }
        let mut out = [b' '; 8];
        out[..b.len()].copy_from_slice(b);
        Some(Code8(out))
    }

    /// Left-aligned, space padded, non-empty, with `ok` holding for every used byte.
    fn check(&self, ok: impl Fn(u8) -> bool) -> bool {
        let used = self.0.iter().position(|&c| c == b' ').unwrap_or(8);
        used > 0 && self.0[..used].iter().all(|&c| ok(c)) && self.0[used..].iter().all(|&c| c == b' ')
    }

    fn valid_symbol(&self) -> bool {
        self.check(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    }

    fn valid_account(&self) -> bool {
        self.check(|c| c.is_ascii_graphic())
    }

    /// The used part as text (lossy only for invalid codes, which never pass parsing).
    pub fn as_str(&self) -> &str {
        let used = self.0.iter().position(|&c| c == b' ').unwrap_or(8);
        std::str::from_utf8(&self.0[..used]).unwrap_or("?")
    }
}

/// A Logon's password: printable ASCII, at most [`PASSWORD_LEN`] bytes.
/// It never prints (its `Debug` says how long it is, nothing more), and
/// [`Password::wipe`] clears it once it was checked.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Password {
    bytes: [u8; PASSWORD_LEN],
    len: u8,
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Password(<{} bytes, not shown>)", self.len)
    }
}

impl Password {
    /// No password (the Logon of versions 1 and 2).
    pub const NONE: Password = Password { bytes: [0; PASSWORD_LEN], len: 0 };

    /// From text: `None` if longer than [`PASSWORD_LEN`] or not printable ASCII.
    pub fn new(s: &str) -> Option<Password> {
        let b = s.as_bytes();
        if b.len() > PASSWORD_LEN || !b.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
            return None;
        }
        let mut p = Password::NONE;
        p.bytes[..b.len()].copy_from_slice(b);
        p.len = b.len() as u8;
        Some(p)
    }

    /// The wire field: printable ASCII then zeros. `None`: not that shape.
    fn from_field(f: &[u8]) -> Option<Password> {
        let len = f.iter().position(|&c| c == 0).unwrap_or(f.len());
        if !f[..len].iter().all(|c| c.is_ascii_graphic() || *c == b' ') || f[len..].iter().any(|&c| c != 0) {
            return None;
        }
        let mut p = Password::NONE;
        p.bytes[..len].copy_from_slice(&f[..len]);
        p.len = len as u8;
        Some(p)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The password's bytes (to verify it; never to log).
    pub fn expose(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// Overwrite it with zeros.
    pub fn wipe(&mut self) {
        // `black_box` keeps the stores from being removed as dead.
        for b in self.bytes.iter_mut() {
            *std::hint::black_box(b) = 0;
        }
        self.len = 0;
    }
}

/// A checked view of one complete frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    buf: &'a [u8],
}

/// Result of looking for a frame at the start of a buffer.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// More bytes are needed.
    Incomplete,
    /// One frame; its length is `frame.len()`.
    Frame(Frame<'a>),
}

#[inline]
fn u16_at(b: &[u8], r: std::ops::Range<usize>) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[r]);
    u16::from_le_bytes(a)
}
#[inline]
fn u32_at(b: &[u8], r: std::ops::Range<usize>) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[r]);
    u32::from_le_bytes(a)
}
#[inline]
fn u64_at(b: &[u8], r: std::ops::Range<usize>) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[r]);
    u64::from_le_bytes(a)
}
#[inline]
fn code_at(b: &[u8], r: std::ops::Range<usize>) -> Code8 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[r]);
    Code8(a)
}

impl<'a> Frame<'a> {
    /// Find the frame at the start of `buf`. Never reads past `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<Parsed<'a>, FramingError> {
        if buf.len() < 2 {
            return Ok(Parsed::Incomplete);
        }
        let len = u16_at(buf, field::LEN);
        if (len as usize) < HEADER_LEN {
            return Err(FramingError::TooShort(len));
        }
        if len as usize > MAX_FRAME_LEN {
            return Err(FramingError::TooLong(len));
        }
        if buf.len() < len as usize {
            return Ok(Parsed::Incomplete);
        }
        Ok(Parsed::Frame(Frame { buf: &buf[..len as usize] }))
    }

    /// Whole frame length, header included.
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> usize {
        self.buf.len()
    }
    pub fn version(&self) -> u8 {
        self.buf[field::VERSION]
    }
    pub fn msg_type(&self) -> u8 {
        self.buf[field::TYPE]
    }
    pub fn seq(&self) -> u32 {
        u32_at(self.buf, field::SEQ)
    }
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// Check version, type and exact length; the first failure wins.
    fn check_shape(&self, client_side: bool) -> Result<(), RejectReason> {
        let v = self.version();
        if !(VERSION_1..=VERSION).contains(&v) {
            return Err(RejectReason::BadVersion);
        }
        let ty = self.msg_type();
        if v == VERSION_1 && msg_type::v2_only(ty) {
            return Err(RejectReason::UnknownType);
        }
        if (ty < 0x80) != client_side {
            return Err(RejectReason::UnknownType);
        }
        match frame_len(ty, v) {
            None => Err(RejectReason::UnknownType),
            Some(n) if n != self.len() => Err(RejectReason::BadLength),
            Some(_) => Ok(()),
        }
    }
}

/// Write a zeroed frame of type `ty` with its header; returns the frame slice.
fn header(out: &mut [u8], ty: u8, seq: u32, version: u8) -> Option<&mut [u8]> {
    let len = frame_len(ty, version)?;
    let b = out.get_mut(..len)?;
    b.fill(0);
    b[field::LEN].copy_from_slice(&(len as u16).to_le_bytes());
    b[field::VERSION] = version;
    b[field::TYPE] = ty;
    b[field::SEQ].copy_from_slice(&seq.to_le_bytes());
    Some(b)
}

/// Best-effort extraction of `(cl_ord_id, client_ts)` from a frame that failed
/// validation, so that a Reject can still carry them back to the client.
pub fn reject_refs(f: &Frame<'_>) -> (u64, u64) {
    let b = f.bytes();
    match f.msg_type() {
        msg_type::NEW_ORDER | msg_type::CANCEL if b.len() >= 24 => (u64_at(b, 8..16), u64_at(b, 16..24)),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests;
