//! Plain byte echo. After the peer's FIN it finishes echoing what it has,
//! then closes its side.

use super::{App, OutBuf, Verdict};
use crate::sampler::tracer::Tracer;
use crate::transport::ConnId;

#[derive(Debug, Default)]
pub struct Echo {
    pub bytes: u64,
    pub sessions: u64,
}

impl App for Echo {
    type Session = ();
    fn name(&self) -> &'static str {
        "echo"
    }
    fn open(&mut self, _conn: ConnId, _now: u64) {
        self.sessions += 1;
    }
    fn on_input(
        &mut self,
        _: &mut (),
        input: &[u8],
        out: &mut OutBuf,
        _: &mut Tracer,
        _: u64,
        _: u64,
    ) -> (usize, Verdict) {
        let n = input.len().min(out.spare());
        out.put(&input[..n]);
        self.bytes += n as u64;
        (n, Verdict::Continue)
    }
    fn on_peer_fin(&mut self, _: &mut (), leftover: &[u8], _out: &mut OutBuf) -> Verdict {
        // The server only reports FIN once every byte before it was consumed.
        debug_assert!(leftover.is_empty());
        Verdict::Close
    }
    fn on_tick(&mut self, _: &mut (), _: &mut OutBuf, _: u64) -> Verdict {
        Verdict::Continue
    }
    fn on_close(&mut self, _: (), _reason: &str) {}
    fn summary(&self) -> String {
        format!("echo: sessions={} bytes={}", self.sessions, self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_only_what_fits() {
        let mut e = Echo::default();
        let mut out = OutBuf::with_capacity(4);
        assert_eq!(e.on_input(&mut (), b"abcdef", &mut out, &mut Tracer::disabled(), 0, 0), (4, Verdict::Continue));
        assert_eq!(out.as_slice(), b"abcd");
        assert_eq!(e.on_input(&mut (), b"ef", &mut out, &mut Tracer::disabled(), 0, 0), (0, Verdict::Continue));
    }
}
