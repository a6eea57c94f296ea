//! Socket states into events, for the shards ingress or egress touched;
//! closing sockets freed when their handshake ends or their linger runs out.

use smoltcp::socket::tcp::{self, State};

use super::guard::Release;
use super::{socket_flow, Link, Stack};
use crate::transport::{ConnId, Event};

impl<D: Link> Stack<D> {
    /// Turn socket states into events, for shards that changed.
    pub(super) fn scan(&mut self, events: &mut Vec<Event>) {
        while let Some(si) = self.to_scan.pop() {
            self.shards[si].scan = false;
            let mut dead = std::mem::take(&mut self.dead_scratch);
            let sh = &mut self.shards[si];
            for &id in &sh.conns {
                let Some(c) = self.conns.get_mut(id) else { continue };
                let s = sh.sockets.get::<tcp::Socket>(c.handle);
                let state = s.state();
                if !c.reported {
                    match state {
                        State::SynSent | State::SynReceived | State::Listen => continue,
                        State::Closed | State::TimeWait if !c.active_open => {
                            // Never completed: forget it quietly.
                            dead.push(id);
                            continue;
                        }
                        State::Closed => {
                            // Our SYN met a reset (or smoltcp gave up): a
                            // failed open, not a connection.
                            c.reported = true;
                            c.failed = true;
                            c.eof_reported = true;
                            events.push(Event::Readable(ConnId(id)));
                            continue;
                        }
                        _ => {
                            c.reported = true;
                            if let Some(flow) = socket_flow(s) {
                                c.flow = flow;
                            }
                            if c.active_open {
                                // Its guard record follows the socket from now.
                                self.guard.bind(c.flow, c.handle);
                                self.stats.connected += 1;
                                events.push(Event::Connected(ConnId(id)));
                            } else {
                                self.stats.accepted += 1;
                                events.push(Event::Accepted(ConnId(id)));
                            }
                        }
                    }
                }
                if s.can_recv() {
                    events.push(Event::Readable(ConnId(id)));
                } else if !s.may_recv() && !c.eof_reported {
                    c.eof_reported = true;
                    events.push(Event::Readable(ConnId(id)));
                }
                if c.want_write && (s.can_send() || !s.may_send()) {
                    c.want_write = false;
                    events.push(Event::Writable(ConnId(id)));
                }
            }
            for id in dead.drain(..) {
                let c = self.conns.remove(id);
                self.rec.forget(c.flow);
                let sh = &mut self.shards[si];
                let s = sh.sockets.remove(c.handle);
                sh.conns.retain(|&x| x != id);
                self.free_socket(s);
                self.local_ports.set(c.local_port, false);
                self.release(c.flow, Release::Gone);
            }
            self.dead_scratch = dead;
            // Its closing connections whose handshake ended.
            let mut i = 0;
            while i < self.closing.of(si).len() {
                let z = self.closing.of(si)[i];
                match self.done(si, &z, 0) {
                    Some(why) => {
                        self.closing.remove(si, z.handle);
                        self.free_zombie(si, z, why);
                    }
                    None => i += 1,
                }
            }
        }
        let now = self.now_ns;
        while let Some((si, z)) = self.closing.pop_due(now) {
            let why = self.done(si, &z, now).unwrap_or(Release::Abort);
            if why == Release::Abort {
                self.linger_expired += 1;
            }
            self.free_zombie(si, z, why);
        }
        self.guard.expire(now);
    }
}
