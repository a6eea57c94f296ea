//! One round of work on one connection: flush, close, read, hand the input
//! to the application, and the peer's FIN.

use std::io;

use super::{Conn, Server, State, LINGER_NS};
use crate::app::{App, Verdict};
use crate::sampler::cause;
use crate::sampler::tracer::RxTrace;
use crate::transport::{would_block, ConnId, Transport};

impl<T: Transport, A: App> Server<T, A> {
    pub(super) fn step(&mut self, id: ConnId, now: u64) -> Step {
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        let mut progress = false;

        // 1. Flush output.
        match send_queued(&mut self.transport, id, c) {
            Ok(n) => progress |= n > 0,
            Err(e) => {
                self.stats.io_errors += 1;
                let reason = format!("send failed: {e}");
                self.finish(id, &reason, true);
                return Step::Gone;
            }
        }

        // 2. Closing: FIN once the output is gone, then drain. Half-closed
        // (CloseWrite): FIN once the output is gone, and read on.
        if c.close_write && !c.write_shut && c.state == State::Open && c.tx.len() == 0 {
            let _ = self.transport.shutdown_write(id);
            c.write_shut = true;
            progress = true;
        }
        if c.write_shut && c.fin_told && c.state == State::Open {
            // Both directions are done.
            self.finish(id, "closed", false);
            return Step::Gone;
        }
        if matches!(c.state, State::Flushing { .. }) && c.tx.len() == 0 {
            let _ = self.transport.shutdown_write(id);
            if c.peer_fin {
                self.finish(id, "closed", false);
                return Step::Gone;
            }
            c.state = State::Draining { deadline: now + LINGER_NS };
            progress = true;
        }

        // 2b. Woken by the application (output for it from another
        // connection), once its output may be sent.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        if c.woken && (c.state != State::Open || !c.tx_blocked) {
            c.woken = false;
            if c.state == State::Open {
                let before = c.tx.len();
                let v = self.app.on_wake(&mut c.session, &mut c.tx, now);
                progress |= c.tx.len() != before || v != Verdict::Continue;
                if apply(c, v, now + self.cfg.flush_ns) {
                    self.finish(id, "aborted by the application", true);
                    return Step::Gone;
                }
            }
        }

        // 3. Read.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        let want_read = c.readable
            && !c.peer_fin
            && match c.state {
                State::Open => c.rx_len < c.rx.len(),
                State::Flushing { .. } => false,
                State::Draining { .. } => true,
            };
        if want_read {
            let draining = matches!(c.state, State::Draining { .. });
            let buf = if draining { &mut c.rx[..] } else { &mut c.rx[c.rx_len..] };
            let buf_len = buf.len();
            match self.transport.recv(id, buf) {
                Ok(0) => {
                    c.peer_fin = true;
                    c.readable = false;
                    progress = true;
                    if draining {
                        self.finish(id, "closed", false);
                        return Step::Gone;
                    }
                }
                Ok(n) => {
                    // A short read drained the socket: the transport reports
                    // Readable again when more arrives (see transport docs), so
                    // skip the recv that would only return WouldBlock.
                    if n < buf_len {
                        c.readable = false;
                    }
                    if !draining {
                        if self.tracer.enabled() {
                            let rt = self.transport.rx_trace(id);
                            if c.rx_len == 0 || c.rx_arrival == 0 {
                                c.rx_arrival = rt.arrival_ns;
                            }
                            c.rx_flags |= rt.flags;
                        }
                        c.rx_len += n;
                    }
                    progress = true;
                }
                Err(e) if would_block(&e) => c.readable = false,
                Err(e) => {
                    self.stats.io_errors += 1;
                    let reason = format!("recv failed: {e}");
                    self.finish(id, &reason, true);
                    return Step::Gone;
                }
            }
        }

        // 4. Hand input to the application.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        // Did the application take everything it could? (It may stop early
        // when its output is full; then the input waits for Writable.)
        let mut stalled_input = false;
        if c.state == State::Open && c.rx_len > 0 {
            // The iteration's clock as wall time: no clock read per input.
            let recv_ts = if A::WANTS_RECV_TS { now.wrapping_add(self.wall_offset) } else { 0 };
            self.tracer.begin_input(id.0 as u32, RxTrace { arrival_ns: c.rx_arrival, flags: c.rx_flags });
            let out_before = c.sent + c.tx.len() as u64;
            let (used, v) =
                self.app.on_input(&mut c.session, &c.rx[..c.rx_len], &mut c.tx, &mut self.tracer, recv_ts, now);
            if used > 0 {
                c.rx.copy_within(used..c.rx_len, 0);
                c.rx_len -= used;
                progress = true;
                if c.rx_len == 0 {
                    c.rx_arrival = 0;
                }
                c.rx_flags = 0;
            }
            // Replies go out at once, before more input is read; an error is
            // left for step 1 of the next round to handle.
            let attempted = c.tx.len() > 0 && !c.tx_blocked;
            let _ = send_queued(&mut self.transport, id, c);
            let out = c.sent + c.tx.len() as u64;
            let reply_end = if out != out_before { out } else { 0 };
            self.tracer.end_input(if attempted && c.tx_blocked { cause::TX_FULL } else { 0 }, reply_end);
            // An application may hold input back until another connection
            // takes what it has (App::HOLDS_INPUT): it wakes this one then.
            // Its FIN waits behind that input.
            let waits = A::HOLDS_INPUT && self.app.holding_input(&c.session);
            stalled_input = c.rx_len > 0 && (used > 0 || c.tx.len() > 0 || waits);
            progress |= v != Verdict::Continue;
            if apply(c, v, now + self.cfg.flush_ns) {
                self.finish(id, "protocol error", true);
                return Step::Gone;
            }
            if c.state == State::Open && c.rx_len == c.rx.len() && used == 0 && c.tx.len() == 0 && !waits {
                // The application cannot use a full buffer with an empty
                // output: it would never make progress.
                self.finish(id, "input buffer full with no complete message", true);
                return Step::Gone;
            }
        }

        // 5. Peer FIN, once the application has taken all the input before
        // it that it can: what is left then (a partial message) is passed to
        // `on_peer_fin`. Input waiting on a full output is not left behind.
        let Some(c) = self.conns.get_mut(id.0).and_then(|c| c.as_mut()) else {
            return Step::Gone;
        };
        if c.peer_fin && !c.fin_told && c.state == State::Open && !stalled_input {
            c.fin_told = true;
            let v = self.app.on_peer_fin(&mut c.session, &c.rx[..c.rx_len], &mut c.tx);
            if v == Verdict::Abort {
                self.finish(id, "peer closed", true);
                return Step::Gone;
            }
            // Continue keeps it half-closed, open for output.
            apply(c, v, now + self.cfg.flush_ns);
            progress = true;
        }

        if progress {
            Step::Progress
        } else {
            Step::Idle
        }
    }
}

/// Hand `c`'s queued output to the transport, unless it is waiting for
/// Writable. Returns the bytes sent; a short write or WouldBlock marks the
/// connection blocked until the transport reports Writable.
pub(super) fn send_queued<T: Transport, S>(t: &mut T, id: ConnId, c: &mut Conn<S>) -> io::Result<usize> {
    if c.tx.len() == 0 || c.tx_blocked {
        return Ok(0);
    }
    match t.send(id, c.tx.as_slice()) {
        Ok(n) => {
            c.tx.consume(n);
            c.sent += n as u64;
            c.tx_blocked = c.tx.len() > 0;
            Ok(n)
        }
        Err(e) if would_block(&e) => {
            c.tx_blocked = true;
            Ok(0)
        }
        Err(e) => Err(e),
    }
}

pub(super) enum Step {
    Progress,
    Idle,
    Gone,
}

/// Carry out an application's verdict on an open connection: true when it
/// must be reset at once (Abort). `flush_deadline`: how long a Close may
/// take to send what is queued.
pub(super) fn apply<S>(c: &mut Conn<S>, v: Verdict, flush_deadline: u64) -> bool {
    match v {
        Verdict::Continue => {}
        Verdict::Close => c.state = State::Flushing { deadline: flush_deadline },
        Verdict::CloseWrite => c.close_write = true,
        Verdict::Abort => return true,
    }
    false
}
