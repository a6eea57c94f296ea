//! Ingress: frames off the link, each looked at before smoltcp sees it
//! (validity, ownership among loops, the guard's verdict, the front door),
//! then given to its shard's smoltcp.

use smoltcp::socket::tcp::{self, State};

use super::door::SynOpts;
use super::frame::{self, flow_key, tcp_flags, FrameKey, Other};
use super::guard::{Reply, Verdict};
use super::tap::Tap;
use super::{shard_of, signal, Link, Stack, INGRESS_BUDGET};

/// A socket's receive position as far as it moves during ingress: the
/// bytes in its receive queue, and whether the peer's FIN is in.
fn rcv_mark(s: &tcp::Socket) -> (usize, bool) {
    (s.recv_queue(), matches!(s.state(), State::CloseWait | State::LastAck | State::Closing | State::TimeWait))
}

impl<D: Link> Stack<D> {
    /// Ingress only: up to `INGRESS_BUDGET` frames off the link, each to
    /// its shard. Egress waits for `flush`, after the application has
    /// answered, so a reply carries the ACK for the request instead of
    /// following a pure ACK in a second frame and a second kick.
    pub(super) fn ingress(&mut self) -> usize {
        self.dev.begin_ingress();
        let now = self.now;
        self.iface.poll_maintenance(now);
        let mut n = 0;
        // Frames other loops passed over first: they have waited longest.
        // At most half the budget, so a busy inbox cannot starve this
        // loop's own ring (which drops when it is not drained).
        while n < INGRESS_BUDGET / 2 {
            let Some(h) = self.handoff.as_mut() else { break };
            let dev = &mut self.dev;
            let Some((rx_ns, hops)) = h
                .inbox
                .pop_with(|f| (dev.stage_copy(&f.data[..usize::from(f.len)]), f.rx_ns, f.hops))
                .and_then(|(staged, rx_ns, hops)| staged.then_some((rx_ns, hops)))
            else {
                break;
            };
            h.stats.received += 1;
            n += 1;
            self.ingress_staged(rx_ns, hops);
        }
        while n < INGRESS_BUDGET {
            let Some(rx_ns) = self.dev.stage().map(|(_, rx_ns)| rx_ns) else { break };
            n += 1;
            self.ingress_staged(rx_ns, 0);
        }
        if let Some(h) = &mut self.handoff {
            h.publish();
        }
        self.dev.end_ingress();
        if self.tracing && n > 0 && self.dev.rx_starved() {
            self.loop_flags |= signal::FILL_RING_STARVED;
        }
        n
    }

    /// The staged frame, which arrived at `rx_ns` and has been passed
    /// between loops `hops` times: to its shard's smoltcp, answered by the
    /// front door or the guard, dropped, or passed to the next loop.
    fn ingress_staged(&mut self, rx_ns: u64, hops: u8) {
        let now = self.now;
        let Some(bytes) = self.dev.staged_mut() else { return };
        let key = FrameKey { rx_ns, ..frame::classify(bytes) };
        if !key.valid {
            self.rx_invalid += 1;
            self.dev.unstage();
            return;
        }
        let mut peer_mac = [0u8; 6];
        if key.tuple.is_some() {
            peer_mac.copy_from_slice(&bytes[6..12]);
        }
        let arp_reply = if key.tuple.is_none() { frame::arp_reply_sender(bytes) } else { None };
        if self.handoff.as_ref().is_some_and(|h| h.may_pass(hops)) {
            if arp_reply.is_some() {
                // Every loop learns the neighbour; this one too, below.
                self.pass_on(rx_ns, hops, true);
            } else if !self.owns(&key) {
                self.pass_on(rx_ns, hops, false);
                self.dev.unstage();
                return;
            }
        }
        match key.other {
            // Echo replies at a bounded rate; no UDP socket, so no port
            // unreachable (nor anything else) for UDP.
            Other::EchoRequest if !self.limits.echo.take(self.now_ns) => {
                self.limits.echo_limited += 1;
                self.dev.unstage();
                return;
            }
            Other::Udp => {
                self.limits.udp_dropped += 1;
                self.dev.unstage();
                return;
            }
            _ => {}
        }
        let mut verdict = self.guard.on_ingress(&key, self.now_ns);
        let (known, mut off) = self.guard.last_ingress();
        let mut sock = self.guard.last_socket();
        let mut opened = false;
        match key.tuple {
            Some((_, _, lp)) if verdict == Verdict::Pass && !known && self.door.listening(lp) => {
                let f = key.flags;
                if key.syn {
                    verdict = if self.refuse() || self.gated(key.tuple) {
                        let ack = key.seq.wrapping_add(1 + u32::from(key.payload));
                        Verdict::Answer(Reply::Rst { seq: 0, ack })
                    } else {
                        self.door_syn(&key, SynOpts::of_syn(key.mss, key.wscale, key.sack_ok))
                    };
                } else if f & tcp_flags::ACK != 0 && f & (tcp_flags::SYN | tcp_flags::RST) == 0 {
                    match self.door_ack(&key, peer_mac) {
                        Ok((o, h)) => (off, sock, opened) = (o, Some(h), true),
                        Err(v) => verdict = v,
                    }
                }
            }
            _ => {}
        }
        // A segment of no connection that is answered with a RST (by the
        // door: a refusal or a bad cookie; by smoltcp: anything else) is
        // answered at a bounded rate; a scan or a flood gets silence past it.
        let rst = matches!(verdict, Verdict::Pass | Verdict::Answer(Reply::Rst { .. }));
        let unasked = rst && !known && !opened && key.flags & tcp_flags::RST == 0;
        if let Some((src, ..)) = key.tuple.filter(|_| unasked) {
            if !self.limits.rst.take(src, self.now_ns) {
                self.limits.rst_limited += 1;
                verdict = Verdict::Drop;
            }
        }
        match verdict {
            Verdict::Pass => {}
            Verdict::Drop => {
                self.dev.unstage();
                return;
            }
            Verdict::Answer(reply) => {
                self.dev.unstage();
                if let Some((ip, rp, lp)) = key.tuple {
                    self.send_reply(flow_key(ip, rp, lp), peer_mac, reply);
                }
                return;
            }
        }
        // Recovery and tracing learn only from what smoltcp will accept: a
        // forged segment with a guessed sequence number steers nothing.
        if self.guard.acceptable() {
            self.rec.on_ingress(&key, if rx_ns != 0 { rx_ns } else { self.now_ns });
            // Only connections are traced: a scan of closed ports (or a
            // flood of unknown ACKs) makes no entry.
            if self.tracing && (known || opened) {
                self.track(&key);
            }
        }
        let shard = key.tuple.map(|(ip, rp, lp)| shard_of(ip, rp, lp)).unwrap_or(0);
        if off != 0 {
            // A cookie connection: smoltcp's numbers, not the wire's.
            if let Some(b) = self.dev.staged_mut() {
                frame::shift_tcp(b, 0, off);
            }
        }
        // What smoltcp accepts of the segment moves the guard's RCV.NXT:
        // in-order bytes join the socket's receive queue (nothing reads it
        // during ingress), and an in-order FIN moves the state on.
        let sockets = &mut self.shards[shard].sockets;
        let before = sock.map(|h| rcv_mark(sockets.get::<tcp::Socket>(h)));
        let mut tap =
            Tap { dev: &mut self.dev, rec: &mut self.rec, guard: &mut self.guard, now: self.now_ns, refused: false };
        let _ = self.iface.poll_ingress_single(now, &mut tap, sockets);
        if let (Some(h), Some((q0, f0)), Some((ip, rp, lp))) = (sock, before, key.tuple) {
            let (q1, f1) = rcv_mark(sockets.get::<tcp::Socket>(h));
            let moved = q1.saturating_sub(q0) + usize::from(f1 && !f0);
            self.guard.accepted(flow_key(ip, rp, lp), moved as u32);
        }
        self.dev.unstage();
        self.mark_scan(shard);
        self.mark_egress(shard);
        if let Some(neighbour) = arp_reply {
            // A neighbour learned: whatever waited for it goes now, not at
            // its shard's smoltcp timer.
            self.mark_waiting_for(neighbour);
        }
    }

    /// Is segment `k` this loop's to serve (one loop of several)? Its
    /// flow's connection or TIME-WAIT record is here; or it opens one here:
    /// a SYN for a listening port (a connection belongs to the loop its SYN
    /// reached), or an ACK carrying a cookie this loop made (each loop has
    /// its own cookie key). Anything else is another loop's, or nobody's.
    fn owns(&self, k: &FrameKey) -> bool {
        let Some((ip, rp, lp)) = k.tuple else { return true };
        let flow = flow_key(ip, rp, lp);
        if self.guard.knows(flow) {
            return true;
        }
        if !self.door.listening(lp) {
            return false;
        }
        if k.syn {
            return true;
        }
        let f = k.flags;
        f & tcp_flags::ACK != 0
            && f & (tcp_flags::SYN | tcp_flags::RST) == 0
            && self.door.cookies.check(flow, k.seq.wrapping_sub(1), k.ack.wrapping_sub(1), self.now_ns).is_some()
    }

    /// Copy the staged frame to the next loop (`copy`: an ARP reply this
    /// loop also takes; otherwise a frame it does not own).
    fn pass_on(&mut self, rx_ns: u64, hops: u8, copy: bool) {
        if let (Some(h), Some(bytes)) = (self.handoff.as_mut(), self.dev.staged_mut()) {
            h.pass(bytes, rx_ns, hops, copy);
        }
    }

    /// Tracing: note one frame's flow state before smoltcp sees it.
    fn track(&mut self, key: &FrameKey) {
        let Some((ip, rp, lp)) = key.tuple else { return };
        if self.flows.len() > 2 * self.cfg.max_conns + 1024 {
            // Entries of connections gone (closed without `close`, reset):
            // only those go; live connections keep their state.
            let guard = &self.guard;
            self.flows.retain(|k, _| guard.is_live(*k));
        }
        let ts = if key.rx_ns != 0 { key.rx_ns } else { self.now_ns };
        self.flows.entry(flow_key(ip, rp, lp)).or_default().segment(
            key.seq,
            key.ack,
            key.payload,
            key.window,
            key.flags,
            ts,
        );
    }
}
