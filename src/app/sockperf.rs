//! Echo for sockperf's TCP ping-pong, so the unmodified `sockperf` client
//! measures tailgate.
//!
//! sockperf frames every message with a 14-byte big-endian header:
//! u64 sequence, u16 flags, u32 length (whole message, header included).
//! The client sets flag bit 0x0001 ("from client"); the server clears it and
//! sends the message back unchanged otherwise.

use super::{App, OutBuf, Verdict};
use crate::sampler::{kind, tracer::Tracer};
use crate::transport::ConnId;

pub const HEADER_LEN: usize = 14;
const FLAGS_LO: usize = 9;
const LEN: std::ops::Range<usize> = 10..14;
const CLIENT_FLAG: u8 = 0x01;

#[derive(Debug)]
pub struct Sockperf {
    /// Largest message accepted; longer ones close the connection.
    pub max_msg: usize,
    pub messages: u64,
    pub bad_length: u64,
    pub sessions: u64,
}

impl Sockperf {
    pub fn new(max_msg: usize) -> Self {
        Sockperf { max_msg, messages: 0, bad_length: 0, sessions: 0 }
    }

    /// For connections with these buffers: a message must fit the receive
    /// buffer to be read whole and the send buffer to be echoed whole, so
    /// the largest is the smaller of the two (a larger one would wait for
    /// send space forever).
    pub fn for_buffers(rx_buf: usize, tx_buf: usize) -> Self {
        Self::new(rx_buf.min(tx_buf))
    }
}

impl App for Sockperf {
    type Session = ();
    fn name(&self) -> &'static str {
        "sockperf"
    }
    fn open(&mut self, _conn: ConnId, _now: u64) {
        self.sessions += 1;
    }
    fn on_input(
        &mut self,
        _: &mut (),
        input: &[u8],
        out: &mut OutBuf,
        tr: &mut Tracer,
        _: u64,
        _: u64,
    ) -> (usize, Verdict) {
        let mut off = 0;
        while input.len() - off >= HEADER_LEN {
            let m = &input[off..];
            let mut l = [0u8; 4];
            l.copy_from_slice(&m[LEN]);
            let len = u32::from_be_bytes(l) as usize;
            if !(HEADER_LEN..=self.max_msg).contains(&len) {
                self.bad_length += 1;
                crate::log_warn!("sockperf: message length {len} outside {HEADER_LEN}..={}: closing", self.max_msg);
                return (off, Verdict::Abort);
            }
            if m.len() < len || out.spare() < len {
                break;
            }
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&m[..8]);
            tr.parsed(kind::PING, u64::from_be_bytes(seq), &m[..len]);
            let start = out.len();
            out.put(&m[..len]);
            // Clear the client flag in place in the reply.
            out.patch(start + FLAGS_LO, m[FLAGS_LO] & !CLIENT_FLAG);
            self.messages += 1;
            tr.handled(0);
            off += len;
        }
        (off, Verdict::Continue)
    }
    fn on_peer_fin(&mut self, _: &mut (), _leftover: &[u8], _out: &mut OutBuf) -> Verdict {
        Verdict::Close
    }
    fn on_tick(&mut self, _: &mut (), _: &mut OutBuf, _: u64) -> Verdict {
        Verdict::Continue
    }
    fn on_close(&mut self, _: (), _reason: &str) {}
    fn summary(&self) -> String {
        format!("sockperf: sessions={} messages={} bad_length={}", self.sessions, self.messages, self.bad_length)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, flags: u16, len: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&flags.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
        v.resize(len.max(14) as usize, 0xab);
        v
    }

    #[test]
    fn clears_client_flag_and_echoes_whole_messages() {
        let mut s = Sockperf::new(65536);
        let mut out = OutBuf::with_capacity(1024);
        let mut input = msg(7, 0x0003, 64);
        input.extend_from_slice(&msg(8, 0x0001, 14));
        input.extend_from_slice(&msg(9, 0x0001, 64)[..20]); // partial
        let (n, v) = s.on_input(&mut (), &input, &mut out, &mut Tracer::disabled(), 0, 0);
        assert_eq!((n, v), (78, Verdict::Continue));
        assert_eq!(&out.as_slice()[..64], &msg(7, 0x0002, 64)[..]);
        assert_eq!(&out.as_slice()[64..], &msg(8, 0x0000, 14)[..]);
        assert_eq!(s.messages, 2);
    }

    /// Regression: with --tx-buf < size <= --rx-buf a message waited for
    /// send space that could never come; now it is refused at once.
    #[test]
    fn a_message_larger_than_the_send_buffer_is_refused_not_stalled() {
        let mut s = Sockperf::for_buffers(8192, 2048);
        assert_eq!(s.max_msg, 2048);
        let mut out = OutBuf::with_capacity(2048);
        let input = msg(1, 0x0001, 4096);
        let (n, v) = s.on_input(&mut (), &input, &mut out, &mut Tracer::disabled(), 0, 0);
        assert_eq!((n, v, s.bad_length), (0, Verdict::Abort, 1));
        // The largest message that fits both is echoed.
        let mut s = Sockperf::for_buffers(8192, 2048);
        let input = msg(2, 0x0001, 2048);
        let (n, v) = s.on_input(&mut (), &input, &mut out, &mut Tracer::disabled(), 0, 0);
        assert_eq!((n, v, out.len()), (2048, Verdict::Continue, 2048));
    }

    #[test]
    fn bad_length_aborts() {
        let mut s = Sockperf::new(1024);
        let mut out = OutBuf::with_capacity(4096);
        assert_eq!(
            s.on_input(&mut (), &msg(1, 1, 13)[..14], &mut out, &mut Tracer::disabled(), 0, 0).1,
            Verdict::Abort
        );
        assert_eq!(
            s.on_input(&mut (), &msg(1, 1, 2000)[..14], &mut out, &mut Tracer::disabled(), 0, 0).1,
            Verdict::Abort
        );
        assert_eq!(s.bad_length, 2);
    }

    #[test]
    fn waits_for_output_space() {
        let mut s = Sockperf::new(1024);
        let mut out = OutBuf::with_capacity(50);
        assert_eq!(
            s.on_input(&mut (), &msg(1, 1, 64), &mut out, &mut Tracer::disabled(), 0, 0),
            (0, Verdict::Continue)
        );
    }
}
