//! The audit journal: every inbound order and cancel with the gateway's
//! decision (accepted, or refused with its reason), every logon, and every
//! exchange message, one 64-byte record each, per loop.
//!
//! ```text
//! mod.rs     the record and its checksum
//! writer.rs  the loop's side (a store into a mapped segment) and the
//!            helper thread that prepares segments and syncs them
//! reader.rs  reading segments back (`tailgate journal`)
//! ```
//!
//! **Where it is written.** Each loop writes its records into a segment
//! file mapped shared (`DIR/<start>-loop<NNN>-<seq>.tgj`): a record is a
//! 64-byte store into the page cache, no system call on the loop. The
//! keeper reserves a segment's blocks and maps it with every page in
//! before the loop gets it; what is left is a minor fault at the first
//! store into each page (the kernel's dirty tracking), one per 64 records.
//! A record is written before the message it records has any effect
//! outside the gateway: an order's record before it is sent to the
//! exchange, so before any Ack can reach the client.
//!
//! **Crash safety.** What is in the page cache survives the process: after
//! `kill -9`, every record written is in the file. A power loss keeps what
//! was synced: the keeper writes each segment to disk up to the page being
//! filled every `--journal-sync-ms` (default 1000 ms; 0: never, leave it
//! to the kernel's writeback). A record cut short by the crash fails its
//! checksum, and the reader stops there.
//!
//! **Admin actions** are in the admin audit log (`--admin-audit`, JSON
//! lines, each fsynced before it is answered).

pub mod reader;
pub mod writer;

use serde::Serialize;

use crate::proto::{Code8, RejectReason};

/// Bytes per record.
pub const RECORD: usize = 64;
/// Bytes of a segment's header (one page): magic, record size, loop,
/// start, segment number, and the number of its first record.
pub const HEADER: usize = 4096;
/// The header's first bytes.
pub const MAGIC: &[u8; 8] = b"TGJRNL01";

/// What a record is.
pub mod kind {
    /// A NewOrder and the decision: `reason` 0 (accepted: sent to the
    /// exchange, or acked in local mode) or the reject reason.
    pub const ORDER: u8 = 1;
    /// A Cancel and the decision.
    pub const CANCEL: u8 = 2;
    /// A Logon and its outcome (`reason` 0: logged on); `extra` the source
    /// IPv4 address.
    pub const LOGON: u8 = 3;
    /// An exchange message about an order: `side` holds its OUCH type
    /// (`A` accepted, `E` executed, `C` canceled, `J` rejected, `I` cancel
    /// reject), `qty`/`price` the executed or canceled quantity and price,
    /// `extra` the order reference or match number.
    pub const EXCHANGE: u8 = 4;
    /// A kill-switch cancel sent for an order.
    pub const KILL_CANCEL: u8 = 5;
}

/// One record, as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Record {
    pub kind: u8,
    pub loop_index: u8,
    pub reason: u8,
    /// `1` buy, `2` sell (orders); the OUCH type (exchange messages).
    pub side: u8,
    pub qty: u32,
    /// Wall clock, ns since the epoch.
    pub ts: u64,
    pub cl_ord_id: u64,
    pub price: i64,
    pub symbol: [u8; 8],
    pub account: [u8; 8],
    /// The OUCH token (orders), the exchange's order reference or match
    /// number (exchange messages), the source address (logons).
    pub extra: u64,
    /// The session it is about (its number in its loop: with the loop,
    /// unique in the run; 0 for none).
    pub session: u32,
    /// The record's number in its loop's journal (not stored: the reader
    /// counts it from the segment header's first number).
    pub seq: u64,
}

/// A cheap checksum of a record's first 60 bytes (it catches a record cut
/// short by a crash, not tampering).
fn checksum(b: &[u8; RECORD]) -> u32 {
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for w in b[..56].chunks_exact(8) {
        let v = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        h = (h ^ v).wrapping_mul(0xbf58_476d_1ce4_e5b9).rotate_left(31);
    }
    let tail = u32::from_le_bytes([b[56], b[57], b[58], b[59]]) as u64;
    h = (h ^ tail).wrapping_mul(0x94d0_49bb_1331_11eb);
    // Never zero: an all-zero slot is never a valid record.
    ((h >> 32) as u32) | 1
}

impl Record {
    /// Into `b`, checksum last.
    #[inline]
    pub fn encode(&self, b: &mut [u8; RECORD]) {
        b[0] = self.kind;
        b[1] = self.loop_index;
        b[2] = self.reason;
        b[3] = self.side;
        b[4..8].copy_from_slice(&self.qty.to_le_bytes());
        b[8..16].copy_from_slice(&self.ts.to_le_bytes());
        b[16..24].copy_from_slice(&self.cl_ord_id.to_le_bytes());
        b[24..32].copy_from_slice(&self.price.to_le_bytes());
        b[32..40].copy_from_slice(&self.symbol);
        b[40..48].copy_from_slice(&self.account);
        b[48..56].copy_from_slice(&self.extra.to_le_bytes());
        b[56..60].copy_from_slice(&self.session.to_le_bytes());
        let c = checksum(b);
        b[60..64].copy_from_slice(&c.to_le_bytes());
    }

    /// `None`: an empty slot, or one whose checksum fails (the end).
    pub fn decode(b: &[u8; RECORD]) -> Option<Record> {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if b[0] == 0 || u32_at(60) != checksum(b) {
            return None;
        }
        let mut symbol = [0u8; 8];
        symbol.copy_from_slice(&b[32..40]);
        let mut account = [0u8; 8];
        account.copy_from_slice(&b[40..48]);
        Some(Record {
            kind: b[0],
            loop_index: b[1],
            reason: b[2],
            side: b[3],
            qty: u32_at(4),
            ts: u64_at(8),
            cl_ord_id: u64_at(16),
            price: u64_at(24) as i64,
            symbol,
            account,
            extra: u64_at(48),
            session: u32_at(56),
            seq: 0,
        })
    }
}

/// A record as `tailgate journal --json` prints it.
#[derive(Debug, Serialize)]
pub struct Shown {
    pub seq: u64,
    pub ts_ns: u64,
    pub loop_index: u8,
    pub session: u32,
    pub kind: &'static str,
    pub account: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cl_ord_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub side: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qty: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<i64>,
    /// `accepted`, or the reject reason's label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extra: Option<u64>,
}

fn text(b: &[u8; 8]) -> String {
    Code8(*b).as_str().to_string()
}

impl Record {
    pub fn shown(&self) -> Shown {
        let decision = || {
            Some(match self.reason {
                0 => "accepted".to_string(),
                r => RejectReason::from_u8(r).map_or_else(|| format!("reason {r}"), |r| r.label().to_string()),
            })
        };
        let side = || Some(if self.side == 1 { "buy" } else { "sell" }.to_string());
        let base = Shown {
            seq: self.seq,
            ts_ns: self.ts,
            loop_index: self.loop_index,
            session: self.session,
            kind: "?",
            account: text(&self.account),
            cl_ord_id: Some(self.cl_ord_id),
            side: None,
            symbol: None,
            qty: None,
            price: None,
            decision: None,
            exchange: None,
            extra: None,
        };
        match self.kind {
            kind::ORDER => Shown {
                kind: "order",
                side: side(),
                symbol: Some(text(&self.symbol)),
                qty: Some(self.qty),
                price: Some(self.price),
                decision: decision(),
                extra: (self.extra != 0).then_some(self.extra),
                ..base
            },
            kind::CANCEL => Shown { kind: "cancel", decision: decision(), ..base },
            kind::LOGON => {
                Shown { kind: "logon", cl_ord_id: None, decision: decision(), extra: Some(self.extra), ..base }
            }
            kind::EXCHANGE => Shown {
                kind: "exchange",
                exchange: Some((self.side as char).to_string()),
                qty: Some(self.qty),
                price: Some(self.price),
                extra: Some(self.extra),
                ..base
            },
            kind::KILL_CANCEL => Shown { kind: "kill_cancel", extra: Some(self.extra), ..base },
            _ => base,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_a_torn_one_is_the_end() {
        let r = Record {
            kind: kind::ORDER,
            loop_index: 1,
            reason: 0,
            side: 1,
            qty: 300,
            ts: 1_700_000_000_000_000_000,
            cl_ord_id: 42,
            price: 10_050,
            symbol: *b"TGATE   ",
            account: *b"ALPHA   ",
            extra: 7,
            session: 9,
            seq: 0,
        };
        let mut b = [0u8; RECORD];
        r.encode(&mut b);
        assert_eq!(Record::decode(&b), Some(r));
        for i in 0..RECORD {
            let mut t = b;
            t[i] ^= 0x40;
            assert_eq!(Record::decode(&t), None, "byte {i} changed");
        }
        let mut torn = [0u8; RECORD];
        torn[..40].copy_from_slice(&b[..40]);
        assert_eq!(Record::decode(&torn), None);
        assert_eq!(Record::decode(&[0u8; RECORD]), None);
        assert_eq!(r.shown().decision.as_deref(), Some("accepted"));
        let rej = Record { reason: RejectReason::Killed as u8, ..r };
        assert_eq!(rej.shown().decision.as_deref(), Some("killed"));
    }
}
