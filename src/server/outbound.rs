//! Connections the application opens ([`crate::app::Requests`]): asked
//! for, opening (bounded in number and in time), then served as accepted
//! ones; and the wakes one connection's callback asks for another.

use std::io;

use super::Server;
use crate::app::{App, Connect};
use crate::transport::{would_block, ConnId, Transport};

/// An outbound connection still opening.
pub(super) struct Pending {
    id: ConnId,
    token: u64,
    deadline: u64,
}

/// Why a connection did not open, in words that need no formatting.
fn why(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused",
        io::ErrorKind::ConnectionReset => "connection reset while opening",
        io::ErrorKind::TimedOut => "connect timed out",
        io::ErrorKind::AddrNotAvailable => "no local port free",
        io::ErrorKind::HostUnreachable | io::ErrorKind::NetworkUnreachable => "no route to the host",
        io::ErrorKind::InvalidInput => "address not supported by the backend",
        _ => "connect failed",
    }
}

impl<T: Transport, A: App> Server<T, A> {
    /// Carry out what the application asked for since the last time.
    pub(super) fn take_requests(&mut self, now: u64) {
        let Some(mut mine) = self.requests.take() else { return };
        match self.app.requests() {
            Some(r) if !r.is_empty() => std::mem::swap(r, &mut mine),
            _ => {
                self.requests = Some(mine);
                return;
            }
        }
        for i in 0..mine.connects.len() {
            self.start_connect(mine.connects[i], now);
        }
        for i in 0..mine.wakes.len() {
            let id = mine.wakes[i];
            let servicing = self.servicing == Some(id);
            let room = self.woken.len() < self.woken.capacity();
            if let Some(c) = self.slot(id) {
                c.woken = true;
                if !c.queued && !servicing && room {
                    // Serviced later in this iteration (see `run_once`).
                    c.queued = true;
                    self.woken.push(id);
                } else {
                    // Being serviced (it asked for itself), or past this
                    // iteration's share: the next iteration.
                    self.enqueue(id);
                }
            }
        }
        mine.connects.clear();
        mine.wakes.clear();
        self.requests = Some(mine);
    }

    fn start_connect(&mut self, c: Connect, now: u64) {
        self.stats.connects += 1;
        if self.shutting_down {
            self.stats.connect_failed += 1;
            self.app.on_refused(c.token, "the loop is shutting down");
            return;
        }
        if self.connecting.len() == self.connecting.capacity() {
            self.stats.connect_failed += 1;
            self.app.on_refused(c.token, "too many connections opening at once");
            return;
        }
        match self.transport.connect(c.addr) {
            Ok(id) => {
                if self.opening.len() <= id.0 {
                    // Grows to the peak connection id only (the transport's --max-conns).
                    self.opening.resize(id.0 + 1, false);
                }
                self.opening[id.0] = true;
                self.connecting.push(Pending { id, token: c.token, deadline: now + self.cfg.connect_ns });
            }
            Err(e) => {
                self.stats.connect_failed += 1;
                crate::log_debug!("connect to {}: {e}", c.addr);
                self.app.on_refused(c.token, why(&e));
            }
        }
    }

    /// O(1): every Readable event asks.
    pub(super) fn is_connecting(&self, id: ConnId) -> bool {
        self.opening.get(id.0).copied().unwrap_or(false)
    }

    /// Connected: an outbound connection the application asked for gets
    /// its session; one opened on the transport directly, the app's `open`.
    pub(super) fn connected(&mut self, id: ConnId, now: u64) {
        let pending = if self.is_connecting(id) { self.connecting.iter().position(|p| p.id == id) } else { None };
        match pending {
            Some(i) => {
                let p = self.connecting.swap_remove(i);
                self.opening[id.0] = false;
                let session = self.app.open_outbound(id, p.token, now);
                self.open_with(id, session, now);
            }
            None => self.open(id, now),
        }
    }

    /// Readable before Connected: the open may have failed.
    pub(super) fn check_connect(&mut self, id: ConnId) {
        match self.transport.recv(id, &mut []) {
            Err(e) if !would_block(&e) => {
                if let Some(i) = self.connecting.iter().position(|p| p.id == id) {
                    self.fail(i, why(&e));
                }
            }
            _ => {}
        }
    }

    fn fail(&mut self, i: usize, reason: &'static str) {
        let p = self.connecting.swap_remove(i);
        self.opening[p.id.0] = false;
        self.transport.close(p.id);
        self.stats.connect_failed += 1;
        self.app.on_refused(p.token, reason);
    }

    /// Connections that did not open within `connect_ns`.
    pub(super) fn expire_connecting(&mut self, now: u64) {
        let mut i = self.connecting.len();
        while i > 0 {
            i -= 1;
            if now >= self.connecting[i].deadline {
                self.fail(i, "no answer within the connect timeout");
            }
        }
    }

    pub(super) fn fail_connecting(&mut self, reason: &'static str) {
        while !self.connecting.is_empty() {
            self.fail(self.connecting.len() - 1, reason);
        }
    }
}
