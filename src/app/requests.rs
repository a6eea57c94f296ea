//! What an application asks of its loop besides replies: connections to
//! open, and connections to wake (see [`crate::app::App::requests`]).
//!
//! The queue is bounded and allocated once, when the application is made;
//! the loop takes its contents every iteration without allocating.

use std::net::SocketAddr;

use crate::transport::ConnId;

/// A connection asked for: where to, and the application's token for it
/// (given back with its events: [`crate::app::App::open_outbound`] and
/// [`crate::app::App::on_refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Connect {
    pub addr: SocketAddr,
    pub token: u64,
}

/// The application's requests to its loop.
#[derive(Debug)]
pub struct Requests {
    pub(crate) connects: Vec<Connect>,
    pub(crate) wakes: Vec<ConnId>,
}

impl Requests {
    /// Room for `n` connects and `n` wakes between two loop iterations.
    pub fn with_capacity(n: usize) -> Self {
        Requests { connects: Vec::with_capacity(n), wakes: Vec::with_capacity(n) }
    }

    /// Ask the loop to open a TCP connection to `addr`. False (nothing
    /// queued) when the queue is full: ask again later.
    pub fn connect(&mut self, addr: SocketAddr, token: u64) -> bool {
        if self.connects.len() == self.connects.capacity() {
            return false;
        }
        self.connects.push(Connect { addr, token });
        true
    }

    /// Ask the loop to call [`crate::app::App::on_wake`] for `conn` (to
    /// write what another connection gave the application), and to offer
    /// its unconsumed input again. False when the queue is full.
    pub fn wake(&mut self, conn: ConnId) -> bool {
        if self.wakes.len() == self.wakes.capacity() {
            return false;
        }
        // A wake asked twice is harmless (the loop marks the connection
        // once); the last few are looked at, so a burst for one connection
        // takes one entry, without a scan of the whole queue per wake.
        if !self.wakes.iter().rev().take(8).any(|&c| c == conn) {
            self.wakes.push(conn);
        }
        true
    }

    pub fn is_empty(&self) -> bool {
        self.connects.is_empty() && self.wakes.is_empty()
    }

    /// An empty queue of the same capacity (the loop's side of the swap).
    pub(crate) fn twin(&self) -> Self {
        Requests {
            connects: Vec::with_capacity(self.connects.capacity()),
            wakes: Vec::with_capacity(self.wakes.capacity()),
        }
    }
}
