//! The stack behind the socket-level [`Transport`] API.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use smoltcp::socket::tcp::{self, RecvError, SendError, State};
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::closing::Zombie;
use super::frame::flow_key;
use super::guard::Release;
use super::{shard_of, AckWatch, Conn, Link, Stack};
use crate::transport::{signal, AckEvent, ConnId, Counters, Event, RxTrace, Transport, TransportStats, WaitMode};

impl<D: Link> Stack<D> {
    fn sock(&mut self, conn: ConnId) -> io::Result<&mut tcp::Socket<'static>> {
        let c = self.conns.get(conn.0).ok_or(io::ErrorKind::NotConnected)?;
        let (si, h) = (c.shard, c.handle);
        self.mark_egress(si);
        Ok(self.shards[si].sockets.get_mut::<tcp::Socket>(h))
    }

    fn want_write(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(conn.0) {
            c.want_write = true;
        }
    }
}

impl<D: Link> Transport for Stack<D> {
    fn name(&self) -> &'static str {
        "stack"
    }

    fn listen(&mut self, addr: SocketAddr) -> io::Result<()> {
        match addr.ip() {
            IpAddr::V4(ip) if ip == self.cfg.ip || ip.is_unspecified() => {}
            other => {
                return Err(io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("--ip {other}: the stack owns {} only", self.cfg.ip),
                ))
            }
        }
        let port = addr.port();
        if port == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "--port 0: the stack listens on a given port"));
        }
        // No socket listens: the front door answers SYNs with cookies.
        if !self.door.ports.contains(&port) {
            self.door.ports.push(port);
        }
        Ok(())
    }

    fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        let IpAddr::V4(ip) = addr.ip() else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "the stack speaks IPv4 only"));
        };
        if self.conns.len() >= self.cfg.max_conns {
            return Err(io::Error::other(format!("connection limit {} reached", self.cfg.max_conns)));
        }
        let (lo, hi) = self.cfg.local_ports;
        if hi == 0 {
            return Err(io::Error::other("this stack has no local port range: it makes no outbound connections"));
        }
        // One loop of several without an RSS table takes every n-th port of
        // the range, so two loops never open the same 4-tuple.
        let share = self.handoff.as_ref().map_or((1, 0), |h| (h.loops as u16, h.index as u16));
        let mine = move |p: u16| p % share.0 == share.1;
        let port = match &self.cfg.rss {
            Some(t) => {
                // From the port after the last one handed out, so ports spread.
                let start = self.local_ports.next_free(lo, hi).unwrap_or(lo);
                let held = &self.local_ports;
                t.rss().pick_port(t.queue, self.cfg.ip, (ip, addr.port()), (lo, hi), start, |p| held.is_held(p))
            }
            None => self.local_ports.next_free_where(lo, hi, mine),
        };
        let port = port.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::AddrNotAvailable,
                format!(
                    "connect to {addr}: every local port {lo}-{hi}{} is held by a live or closing connection",
                    if self.cfg.rss.is_some() || share.0 > 1 { " this loop may use" } else { "" }
                ),
            )
        })?;
        let shard = shard_of(u32::from(ip), addr.port(), port);
        let h = self.new_socket(shard);
        let remote = IpEndpoint::new(IpAddress::Ipv4(ip), addr.port());
        let sh = &mut self.shards[shard];
        if let Err(e) = sh.sockets.get_mut::<tcp::Socket>(h).connect(self.iface.context(), remote, port) {
            let s = sh.sockets.remove(h);
            self.free_socket(s);
            return Err(io::Error::other(format!("connect to {addr}: {e}")));
        }
        let id = self.conns.insert(Conn {
            shard,
            handle: h,
            reported: false,
            failed: false,
            active_open: true,
            eof_reported: false,
            want_write: false,
            flow: flow_key(u32::from(ip), addr.port(), port),
            local_port: port,
            ack: AckWatch::default(),
        });
        self.local_ports.set(port, true);
        self.shards[shard].conns.push(id);
        self.mark_egress(shard);
        self.mark_scan(shard);
        Ok(ConnId(id))
    }

    fn poll(&mut self, timeout: Option<Duration>, events: &mut Vec<Event>) -> io::Result<u64> {
        events.clear();
        events.append(&mut self.pending);
        self.service(events);
        if events.is_empty() && self.cfg.wait == WaitMode::Block && (self.to_egress.is_empty() || self.tx_full) {
            // Sleep until a frame arrives, the caller's timeout, a shard's
            // smoltcp timer, or 1 ms (loss recovery's timers, the idle work).
            let tick = Duration::from_millis(1);
            let tick =
                self.next_timer().map_or(tick, |at| tick.min(Duration::from_nanos(at.saturating_sub(self.now_ns))));
            let wait = timeout.map_or(tick, |t| t.min(tick));
            // With other loops: tell them this one sleeps (a frame they
            // hand it rings its bell), unless one already waits.
            if wait.as_millis() != 0 && self.handoff.as_ref().is_none_or(|h| h.may_sleep()) {
                let rang = self.dev.wait(wait, self.handoff.as_ref().map(|h| h.bell()));
                if let Some(h) = &mut self.handoff {
                    h.woke(rang);
                }
                if self.tracing {
                    self.loop_flags |= signal::SLEPT;
                }
                self.service(events);
            }
        }
        self.stats.count_poll(events);
        Ok(self.now_ns)
    }

    fn recv(&mut self, conn: ConnId, buf: &mut [u8]) -> io::Result<usize> {
        if self.conns.get(conn.0).is_some_and(|c| c.failed) {
            return Err(io::ErrorKind::ConnectionRefused.into());
        }
        let s = self.sock(conn)?;
        if matches!(s.state(), State::SynSent | State::SynReceived) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        match s.recv_slice(buf) {
            Ok(0) if !buf.is_empty() => {
                if s.may_recv() {
                    Err(io::ErrorKind::WouldBlock.into())
                } else if s.state() == State::Closed {
                    Err(io::ErrorKind::ConnectionReset.into())
                } else {
                    Ok(0)
                }
            }
            Ok(n) => {
                let drained = s.recv_queue() == 0;
                self.stats.bytes_in += n as u64;
                if self.tracing {
                    self.last_rx_trace = RxTrace::default();
                    if let Some(f) = self.conn_flow(conn.0).and_then(|k| self.flows.get_mut(&k)) {
                        self.last_rx_trace = RxTrace { arrival_ns: f.first_rx, flags: f.flags };
                        f.first_rx = if drained { 0 } else { f.last_rx };
                        f.flags = 0;
                    }
                }
                Ok(n)
            }
            Err(RecvError::Finished) => Ok(0),
            Err(RecvError::InvalidState) => {
                let active = self.conns.get(conn.0).is_some_and(|c| c.active_open && (!c.reported || c.failed));
                Err(if active { io::ErrorKind::ConnectionRefused } else { io::ErrorKind::ConnectionReset }.into())
            }
        }
    }

    fn send(&mut self, conn: ConnId, buf: &[u8]) -> io::Result<usize> {
        let s = self.sock(conn)?;
        let opening = matches!(s.state(), State::SynSent | State::SynReceived);
        match s.send_slice(buf) {
            Ok(0) if !buf.is_empty() || opening => {
                self.want_write(conn);
                Err(io::ErrorKind::WouldBlock.into())
            }
            Ok(n) => {
                self.stats.bytes_out += n as u64;
                if let Some(c) = self.conns.get_mut(conn.0) {
                    c.ack.sent += n as u64;
                }
                if n < buf.len() {
                    // A short write means the buffer is full: the caller
                    // waits for Writable, so it must come.
                    self.want_write(conn);
                }
                Ok(n)
            }
            Err(SendError::InvalidState) if opening => {
                self.want_write(conn);
                Err(io::ErrorKind::WouldBlock.into())
            }
            Err(SendError::InvalidState) => Err(io::ErrorKind::BrokenPipe.into()),
        }
    }

    fn shutdown_write(&mut self, conn: ConnId) -> io::Result<()> {
        self.sock(conn)?.close();
        Ok(())
    }

    fn stop_listening(&mut self) {
        // SYNs and unknown ACKs for the ports go to smoltcp now, which has
        // no socket for them and resets them.
        self.door.ports.clear();
    }

    fn closing(&self) -> usize {
        Stack::closing(self)
    }

    fn close(&mut self, conn: ConnId) {
        if self.tracing {
            if let Some(k) = self.conn_flow(conn.0) {
                self.flows.remove(&k);
            }
        }
        let Some(c) = self.conns.try_remove(conn.0) else { return };
        self.stats.closed += 1;
        self.mark_egress(c.shard);
        let sh = &mut self.shards[c.shard];
        sh.conns.retain(|&x| x != conn.0);
        let s = sh.sockets.get_mut::<tcp::Socket>(c.handle);
        let linger = self.now_ns + self.cfg.linger_ns;
        match s.state() {
            state @ (State::Closed | State::TimeWait) => {
                let s = sh.sockets.remove(c.handle);
                self.free_socket(s);
                self.local_ports.set(c.local_port, false);
                self.rec.forget(c.flow);
                self.release(c.flow, if state == State::TimeWait { Release::TimeWait } else { Release::Gone });
            }
            State::FinWait1 | State::FinWait2 | State::Closing | State::LastAck => {
                // Our FIN is out: let the handshake finish in the background.
                self.linger(c.shard, Zombie { handle: c.handle, deadline: linger, port: c.local_port, flow: c.flow });
            }
            _ => {
                // Closed without shutdown: reset, as the kernel does when a
                // socket with unread data is closed. The socket goes at once
                // and the guard sends the RST from its record (at the
                // sequence numbers on the wire), as at a linger's end: left
                // to smoltcp, the RST went only when it next dispatched the
                // socket, and the next scan freed the closed socket first.
                let s = sh.sockets.remove(c.handle);
                self.free_socket(s);
                self.local_ports.set(c.local_port, false);
                self.rec.forget(c.flow);
                self.release(c.flow, Release::Abort);
            }
        }
    }

    fn flush(&mut self, now_ns: u64) {
        // The loop flushes after servicing connections; their sends marked
        // their shards for egress.
        self.set_now(now_ns);
        self.egress();
        if self.tracing {
            let trouble = self.dev.tx_trouble();
            if trouble != self.tx_trouble {
                self.tx_trouble = trouble;
                self.loop_flags |= signal::KICK_WAIT;
            }
        }
    }

    fn set_tracing(&mut self, on: bool) {
        self.tracing = on;
        if !on {
            self.flows.clear();
        }
    }

    fn rx_trace(&mut self, _conn: ConnId) -> RxTrace {
        self.last_rx_trace
    }

    fn loop_flags(&mut self) -> u32 {
        std::mem::take(&mut self.loop_flags)
    }

    fn flush_transmits(&self) -> bool {
        true
    }

    fn tracks_acks(&self) -> bool {
        self.tracing && self.acks_on
    }

    fn set_ack_tracking(&mut self, on: bool) {
        self.acks_on = on;
    }

    fn watch_acks(&mut self, conn: ConnId, on: bool) {
        let Some(key) = self.conn_flow(conn.0) else { return };
        let retx = self.rec.retransmissions(key);
        let spurious = self.rec.spurious(key);
        let Some(c) = self.conns.get_mut(conn.0) else { return };
        let queued = self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle).send_queue() as u64;
        if on && !c.ack.on {
            c.ack.acked = c.ack.sent.saturating_sub(queued);
            c.ack.retx = retx;
            c.ack.spurious = spurious;
            // Off then on again before `acks` ran: still on the list.
            if !c.ack.listed {
                c.ack.listed = true;
                self.watched.push(conn.0);
            }
        }
        // Off: dropped from the list at the next `acks`.
        c.ack.on = on;
    }

    fn acks(&mut self, out: &mut Vec<AckEvent>) {
        // A retransmission found spurious (D-SACK) after the ACK that
        // answered it is reported without new bytes acknowledged; the
        // flows are looked up for it only when some flow found one.
        let total = self.rec.spurious_total();
        let any_spurious = total != self.spurious_seen;
        self.spurious_seen = total;
        let mut i = 0;
        while i < self.watched.len() {
            let id = self.watched[i];
            let Some(c) = self.conns.get_mut(id).filter(|c| c.ack.on && c.ack.listed) else {
                if let Some(c) = self.conns.get_mut(id) {
                    c.ack.listed = false;
                }
                self.watched.swap_remove(i);
                continue;
            };
            i += 1;
            // smoltcp drops acknowledged bytes from the send buffer as the
            // ACK is processed: what left it was acknowledged.
            let queued = self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle).send_queue() as u64;
            let acked = c.ack.sent.saturating_sub(queued);
            let spurious_now = if any_spurious { self.rec.spurious(c.flow) } else { c.ack.spurious };
            let spurious = spurious_now.wrapping_sub(c.ack.spurious);
            if acked <= c.ack.acked && spurious == 0 {
                continue;
            }
            c.ack.spurious = spurious_now;
            // Retransmissions are judged only against newly acknowledged
            // bytes: a spurious-only event leaves them to the next ACK.
            let mut retransmitted = false;
            if acked > c.ack.acked {
                c.ack.acked = acked;
                let retx = self.rec.retransmissions(c.flow);
                retransmitted = retx != c.ack.retx;
                c.ack.retx = retx;
            }
            let at = self.flows.get(&c.flow).map_or(0, |f| f.ack_at);
            out.push(AckEvent {
                conn: ConnId(id),
                acked: c.ack.acked,
                at_ns: if at != 0 && at <= self.now_ns { at } else { self.now_ns },
                retransmitted,
                spurious,
            });
        }
    }

    fn counters(&self) -> Counters {
        Stack::counters(self)
    }

    fn peer_addr(&self, conn: ConnId) -> Option<SocketAddr> {
        let c = self.conns.get(conn.0)?;
        let ep = self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle).remote_endpoint()?;
        let IpAddress::Ipv4(ip) = ep.addr;
        Some(SocketAddr::new(IpAddr::V4(ip), ep.port))
    }

    fn local_port(&self, conn: ConnId) -> Option<u16> {
        let c = self.conns.get(conn.0)?;
        Some(self.shards[c.shard].sockets.get::<tcp::Socket>(c.handle).local_endpoint()?.port)
    }

    fn stats(&self) -> TransportStats {
        self.stats
    }

    fn report(&self) -> Option<String> {
        Some(format!("stack: {}", self.counters().line()))
    }
}
