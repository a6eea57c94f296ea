//! SoupBinTCP 3.0: the session layer under OUCH (Nasdaq's specification;
//! docs/VENUE.md). Codec only: checked views over untrusted bytes, encoding
//! into caller buffers; no allocation, no I/O, no panic on any input.
//!
//! ```text
//! offset size
//!      0    2 packet length, u16 big-endian: the bytes after this field
//!      2    1 packet type (an ASCII letter)
//!      3    n payload, n = length - 1
//! ```
//!
//! Numeric fields (sequence numbers) are ASCII digits in a fixed-width
//! field; we write them right-justified with leading spaces, and read them
//! with spaces on either side. Alpha fields are left-justified,
//! space-padded (the session id of Login Accepted is right-justified).

use std::fmt;

/// Bytes of the length field.
pub const LEN_BYTES: usize = 2;
/// The longest payload we accept (the specification sets no maximum; an
/// OUCH message is under 100 bytes plus its appendage). A longer packet is
/// a framing error: the stream cannot be trusted.
pub const MAX_PAYLOAD: usize = 1024;

pub const USERNAME_LEN: usize = 6;
pub const PASSWORD_LEN: usize = 10;
pub const SESSION_LEN: usize = 10;
pub const SEQ_LEN: usize = 20;

/// Packet type characters.
pub mod kind {
    pub const DEBUG: u8 = b'+';
    pub const LOGIN_ACCEPTED: u8 = b'A';
    pub const LOGIN_REJECTED: u8 = b'J';
    pub const SEQUENCED: u8 = b'S';
    pub const SERVER_HEARTBEAT: u8 = b'H';
    pub const END_OF_SESSION: u8 = b'Z';
    pub const LOGIN_REQUEST: u8 = b'L';
    pub const UNSEQUENCED: u8 = b'U';
    pub const CLIENT_HEARTBEAT: u8 = b'R';
    pub const LOGOUT_REQUEST: u8 = b'O';
}

/// Login Rejected reasons.
pub mod reject {
    /// Not authorized: the username and password do not match.
    pub const NOT_AUTHORIZED: u8 = b'A';
    /// The requested session is not available.
    pub const SESSION_UNAVAILABLE: u8 = b'S';
}

/// One packet, borrowing its payload from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Debug(&'a [u8]),
    LoginAccepted {
        session: [u8; SESSION_LEN],
        next_seq: u64,
    },
    LoginRejected(u8),
    /// One higher-level message; its sequence number is implicit (the
    /// Login Accepted number, plus one per Sequenced packet since).
    Sequenced(&'a [u8]),
    ServerHeartbeat,
    EndOfSession,
    LoginRequest {
        username: [u8; USERNAME_LEN],
        password: [u8; PASSWORD_LEN],
        session: [u8; SESSION_LEN],
        /// The next sequence number wanted; 0: from the next message on.
        seq: u64,
    },
    Unsequenced(&'a [u8]),
    ClientHeartbeat,
    LogoutRequest,
}

/// Why bytes are not a packet. All of them end the session: after a bad
/// length nothing that follows can be delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SoupError {
    /// Length 0 (no type byte) or over [`MAX_PAYLOAD`] + 1.
    BadLength(u16),
    UnknownType(u8),
    /// The payload's size does not fit the type.
    WrongSize {
        kind: u8,
        len: usize,
    },
    /// A numeric field that is not digits, or over 20 digits of u64.
    BadNumber,
}

impl fmt::Display for SoupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoupError::BadLength(n) => write!(f, "packet length {n} (1..={} allowed)", MAX_PAYLOAD + 1),
            SoupError::UnknownType(t) => write!(f, "unknown packet type 0x{t:02x}"),
            SoupError::WrongSize { kind, len } => {
                write!(f, "packet type '{}' with a {len}-byte payload", char::from(*kind))
            }
            SoupError::BadNumber => write!(f, "a sequence number field that is not a number"),
        }
    }
}

/// A right-justified (or left-justified) ASCII number, spaces around.
fn number(b: &[u8]) -> Result<u64, SoupError> {
    let s = b.trim_ascii();
    if s.is_empty() {
        // An all-blank field: 0 (as a blank requested sequence number reads).
        return Ok(0);
    }
    let mut v: u64 = 0;
    for &d in s {
        if !d.is_ascii_digit() {
            return Err(SoupError::BadNumber);
        }
        v = v.checked_mul(10).and_then(|v| v.checked_add(u64::from(d - b'0'))).ok_or(SoupError::BadNumber)?;
    }
    Ok(v)
}

fn exact(kind: u8, p: &[u8], n: usize) -> Result<(), SoupError> {
    if p.len() == n {
        Ok(())
    } else {
        Err(SoupError::WrongSize { kind, len: p.len() })
    }
}

/// The first packet of `buf`: `Ok(None)` if `buf` does not hold all of it
/// yet, else the packet and the bytes it took.
pub fn parse(buf: &[u8]) -> Result<Option<(Packet<'_>, usize)>, SoupError> {
    if buf.len() < LEN_BYTES {
        return Ok(None);
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]);
    if len == 0 || usize::from(len) > MAX_PAYLOAD + 1 {
        return Err(SoupError::BadLength(len));
    }
    let total = LEN_BYTES + usize::from(len);
    if buf.len() < total {
        return Ok(None);
    }
    let kind = buf[2];
    let p = &buf[3..total];
    let packet = match kind {
        kind::DEBUG => Packet::Debug(p),
        kind::LOGIN_ACCEPTED => {
            exact(kind, p, SESSION_LEN + SEQ_LEN)?;
            let mut session = [b' '; SESSION_LEN];
            session.copy_from_slice(&p[..SESSION_LEN]);
            Packet::LoginAccepted { session, next_seq: number(&p[SESSION_LEN..])? }
        }
        kind::LOGIN_REJECTED => {
            exact(kind, p, 1)?;
            Packet::LoginRejected(p[0])
        }
        kind::SEQUENCED => Packet::Sequenced(p),
        kind::UNSEQUENCED => Packet::Unsequenced(p),
        kind::LOGIN_REQUEST => {
            exact(kind, p, USERNAME_LEN + PASSWORD_LEN + SESSION_LEN + SEQ_LEN)?;
            let mut username = [b' '; USERNAME_LEN];
            let mut password = [b' '; PASSWORD_LEN];
            let mut session = [b' '; SESSION_LEN];
            username.copy_from_slice(&p[..6]);
            password.copy_from_slice(&p[6..16]);
            session.copy_from_slice(&p[16..26]);
            Packet::LoginRequest { username, password, session, seq: number(&p[26..46])? }
        }
        kind::SERVER_HEARTBEAT | kind::END_OF_SESSION | kind::CLIENT_HEARTBEAT | kind::LOGOUT_REQUEST => {
            exact(kind, p, 0)?;
            match kind {
                kind::SERVER_HEARTBEAT => Packet::ServerHeartbeat,
                kind::END_OF_SESSION => Packet::EndOfSession,
                kind::CLIENT_HEARTBEAT => Packet::ClientHeartbeat,
                _ => Packet::LogoutRequest,
            }
        }
        other => return Err(SoupError::UnknownType(other)),
    };
    Ok(Some((packet, total)))
}

/// `v` right-justified in `out`, spaces before (the form Wireshark's
/// dissector and the specification's Login Accepted use).
fn put_number(out: &mut [u8], mut v: u64) {
    out.fill(b' ');
    let mut i = out.len();
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
}

/// `s` left-justified in a field of `out.len()` bytes, spaces after
/// (longer input is cut).
pub fn put_alpha(out: &mut [u8], s: &[u8]) {
    out.fill(b' ');
    let n = s.len().min(out.len());
    out[..n].copy_from_slice(&s[..n]);
}

/// The payload size of `p`.
pub fn payload_len(p: &Packet<'_>) -> usize {
    match p {
        Packet::Debug(b) | Packet::Sequenced(b) | Packet::Unsequenced(b) => b.len(),
        Packet::LoginAccepted { .. } => SESSION_LEN + SEQ_LEN,
        Packet::LoginRejected(_) => 1,
        Packet::LoginRequest { .. } => USERNAME_LEN + PASSWORD_LEN + SESSION_LEN + SEQ_LEN,
        _ => 0,
    }
}

/// Write `p` into `out`; the bytes written, or None if `out` is too short
/// or the payload is over [`MAX_PAYLOAD`].
pub fn encode(p: &Packet<'_>, out: &mut [u8]) -> Option<usize> {
    let n = payload_len(p);
    let total = LEN_BYTES + 1 + n;
    if n > MAX_PAYLOAD || out.len() < total {
        return None;
    }
    out[..2].copy_from_slice(&((n + 1) as u16).to_be_bytes());
    let (kind, body) = out[2..total].split_at_mut(1);
    kind[0] = match p {
        Packet::Debug(b) => {
            body.copy_from_slice(b);
            kind::DEBUG
        }
        Packet::LoginAccepted { session, next_seq } => {
            // The session id is right-justified here, as the specification says.
            let s = session.trim_ascii();
            body[..SESSION_LEN].fill(b' ');
            body[SESSION_LEN - s.len()..SESSION_LEN].copy_from_slice(s);
            put_number(&mut body[SESSION_LEN..], *next_seq);
            kind::LOGIN_ACCEPTED
        }
        Packet::LoginRejected(r) => {
            body[0] = *r;
            kind::LOGIN_REJECTED
        }
        Packet::Sequenced(b) => {
            body.copy_from_slice(b);
            kind::SEQUENCED
        }
        Packet::ServerHeartbeat => kind::SERVER_HEARTBEAT,
        Packet::EndOfSession => kind::END_OF_SESSION,
        Packet::LoginRequest { username, password, session, seq } => {
            body[..6].copy_from_slice(username);
            body[6..16].copy_from_slice(password);
            body[16..26].copy_from_slice(session);
            put_number(&mut body[26..46], *seq);
            kind::LOGIN_REQUEST
        }
        Packet::Unsequenced(b) => {
            body.copy_from_slice(b);
            kind::UNSEQUENCED
        }
        Packet::ClientHeartbeat => kind::CLIENT_HEARTBEAT,
        Packet::LogoutRequest => kind::LOGOUT_REQUEST,
    };
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round(p: Packet<'_>) -> Vec<u8> {
        let mut b = [0u8; 2048];
        let n = encode(&p, &mut b).unwrap();
        let (q, used) = parse(&b[..n]).unwrap().unwrap();
        assert_eq!((q, used), (p, n));
        b[..n].to_vec()
    }

    #[test]
    fn every_packet_round_trips_with_the_specified_sizes() {
        let mut user = [b' '; 6];
        put_alpha(&mut user, b"gw1");
        let mut pass = [b' '; 10];
        put_alpha(&mut pass, b"secret");
        let login = round(Packet::LoginRequest { username: user, password: pass, session: [b' '; 10], seq: 1 });
        assert_eq!(login.len(), 49);
        assert_eq!(&login[..3], &[0x00, 0x2f, b'L']);
        assert_eq!(&login[3..9], b"gw1   ");
        assert_eq!(&login[29..49], b"                   1", "right-justified, leading spaces");
        let mut session = [b' '; 10];
        put_alpha(&mut session, b"S1");
        let acc = round(Packet::LoginAccepted { session: *b"        S1", next_seq: 4711 });
        assert_eq!(acc.len(), 33);
        assert_eq!(&acc[3..13], b"        S1");
        assert_eq!(&acc[13..33], b"                4711");
        // A left-justified session id reads back as given; it is written right-justified.
        let mut b = [0u8; 64];
        let n = encode(&Packet::LoginAccepted { session, next_seq: 1 }, &mut b).unwrap();
        assert_eq!(&b[3..13], b"        S1");
        assert_eq!(n, 33);
        assert_eq!(round(Packet::LoginRejected(reject::NOT_AUTHORIZED)), vec![0, 2, b'J', b'A']);
        for (p, t) in [
            (Packet::ServerHeartbeat, b'H'),
            (Packet::EndOfSession, b'Z'),
            (Packet::ClientHeartbeat, b'R'),
            (Packet::LogoutRequest, b'O'),
        ] {
            assert_eq!(round(p), vec![0, 1, t]);
        }
        assert_eq!(round(Packet::Sequenced(b"xyz")), b"\x00\x04Sxyz");
        assert_eq!(round(Packet::Unsequenced(b"")), b"\x00\x01U");
        round(Packet::Debug(b"hello"));
    }

    #[test]
    fn partial_input_waits_and_bad_input_is_named() {
        let mut b = [0u8; 64];
        let n = encode(&Packet::Sequenced(b"abcdef"), &mut b).unwrap();
        for cut in 0..n {
            assert_eq!(parse(&b[..cut]), Ok(None), "cut at {cut}");
        }
        assert_eq!(parse(&[0, 0, b'H']), Err(SoupError::BadLength(0)));
        assert_eq!(parse(&[0xff, 0xff]), Err(SoupError::BadLength(0xffff)));
        assert_eq!(parse(&[0, 1, b'?']), Err(SoupError::UnknownType(b'?')));
        assert_eq!(parse(&[0, 2, b'H', 0]), Err(SoupError::WrongSize { kind: b'H', len: 1 }));
        let mut acc = [0u8; 33];
        encode(&Packet::LoginAccepted { session: [b' '; 10], next_seq: 1 }, &mut acc).unwrap();
        acc[20] = b'x';
        assert_eq!(parse(&acc), Err(SoupError::BadNumber));
        acc[13..33].copy_from_slice(b"99999999999999999999");
        assert_eq!(parse(&acc), Err(SoupError::BadNumber), "over u64");
        acc[13..33].copy_from_slice(b"00000000000000000042");
        assert!(matches!(parse(&acc), Ok(Some((Packet::LoginAccepted { next_seq: 42, .. }, 33)))));
    }

    #[test]
    fn two_packets_in_one_read() {
        let mut b = [0u8; 64];
        let n = encode(&Packet::ServerHeartbeat, &mut b).unwrap();
        let m = encode(&Packet::Sequenced(b"q"), &mut b[n..]).unwrap();
        let (p, used) = parse(&b[..n + m]).unwrap().unwrap();
        assert_eq!((p, used), (Packet::ServerHeartbeat, 3));
        assert_eq!(parse(&b[used..n + m]).unwrap().unwrap().0, Packet::Sequenced(b"q"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn never_panics_and_never_overreads(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(Some((_, used))) = parse(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }
    }
}
