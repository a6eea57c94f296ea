//! Sockets: made once and reused (never freed, so memory follows the peak
//! of connections), given a closing connection's linger, and released to
//! the guard when they go.

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::{tcp, AnySocket};

use super::closing::Zombie;
use super::guard::Release;
use super::{Link, Stack};

impl<D: Link> Stack<D> {
    /// A TCP socket with its buffers, Nagle and delayed ACK off: a spare
    /// one if there is one (`listen` and `connect` reset it), else a new
    /// one.
    pub(super) fn make_socket(&mut self) -> tcp::Socket<'static> {
        if let Some(s) = self.spare.pop() {
            return s;
        }
        self.sockets_made += 1;
        // SAFETY: the buffers go into this socket, which lives in the
        // stack's socket sets or spare list, fields dropped before the
        // arena (the stack's last field); no socket leaves the stack.
        #[allow(unsafe_code)]
        let taken = unsafe { self.buffers.take() };
        let mut s = match taken {
            Ok((rx, tx)) => tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx)),
            // No address space for another chunk: the heap's buffers.
            Err(_) => tcp::Socket::new(
                tcp::SocketBuffer::new(vec![0u8; self.cfg.sock_rx_buf]),
                tcp::SocketBuffer::new(vec![0u8; self.cfg.sock_tx_buf]),
            ),
        };
        s.set_nagle_enabled(false);
        s.set_ack_delay(None);
        s
    }

    /// A socket leaves the stack: kept as a spare for the next connection.
    pub(super) fn free_socket(&mut self, s: smoltcp::socket::Socket<'static>) {
        let smoltcp::socket::Socket::Tcp(mut s) = s else { return };
        if s.is_open() {
            // Out of every set: nothing is sent for it.
            s.abort();
        }
        self.spare.push(s);
    }

    /// A closed connection finishes its close handshake in the background
    /// (until its linger deadline). At most `max_conns` do at once: past
    /// that, the one closest to its deadline is reset now (counted,
    /// `closing_evicted`), so peers that never answer a FIN cannot make
    /// the stack hold sockets without bound.
    pub(super) fn linger(&mut self, si: usize, z: Zombie) {
        if self.closing.is_full() {
            if let Some((s, old)) = self.closing.pop_due(u64::MAX) {
                self.closing_evicted += 1;
                let why = self.done(s, &old, u64::MAX).unwrap_or(Release::Abort);
                self.free_zombie(s, old, why);
            }
        }
        self.mark_scan(si);
        self.closing.push(si, z);
    }

    /// Is closing connection `z` of shard `si` done at `now`: its
    /// handshake finished (TIME-WAIT, or closed), or its linger is over?
    pub(super) fn done(&self, si: usize, z: &Zombie, now: u64) -> Option<Release> {
        match self.shards[si].sockets.get::<tcp::Socket>(z.handle).state() {
            tcp::State::TimeWait => Some(Release::TimeWait),
            tcp::State::Closed => Some(Release::Gone),
            _ if now >= z.deadline => Some(Release::Abort),
            _ => None,
        }
    }

    /// Closing connection `z` of shard `si` is done (`why`): its socket is
    /// freed, its port and flow state let go, and the guard answers for the
    /// 4-tuple.
    pub(super) fn free_zombie(&mut self, si: usize, z: Zombie, why: Release) {
        let s = self.shards[si].sockets.remove(z.handle);
        self.free_socket(s);
        self.local_ports.set(z.port, false);
        self.rec.forget(z.flow);
        self.release(z.flow, why);
    }

    pub(super) fn new_socket(&mut self, shard: usize) -> SocketHandle {
        let s = self.make_socket();
        self.shard_add(shard, s)
    }

    /// Put `s` into shard `si`'s set. The set's storage grows by a slot (an
    /// eighth at larger sizes) when it is full, never by doubling: the
    /// 1024 shards mostly hold one or two sockets, and a Vec's first
    /// growth alone would give each four slots of about 900 bytes.
    pub(super) fn shard_add<T: AnySocket<'static>>(&mut self, si: usize, s: T) -> SocketHandle {
        let sh = &mut self.shards[si];
        // smoltcp fills a hole first, and pushes only when there is none.
        if sh.sockets.iter().count() == sh.slots {
            if sh.slots == sh.cap {
                let cap = sh.slots + 1 + sh.slots / 8;
                let mut grown = SocketSet::new(Vec::with_capacity(cap));
                // No hole: added in order, each socket keeps its handle. (Its
                // neighbour state goes back to ready: a socket waiting on ARP
                // tries again at the shard's next egress, within the neighbour
                // cache's own rate limit.)
                let handles: Vec<SocketHandle> = sh.sockets.iter().map(|(h, _)| h).collect();
                for h in handles {
                    let moved = grown.add(sh.sockets.remove(h));
                    debug_assert_eq!(moved, h);
                }
                sh.sockets = grown;
                self.socket_slots += (cap - sh.cap) as u64;
                sh.cap = cap;
            }
            sh.slots += 1;
        }
        sh.sockets.add(s)
    }

    /// The socket of flow `key` is being freed: the guard keeps TIME-WAIT
    /// or sends what is owed (final ACK, RST of an abort).
    pub(super) fn release(&mut self, key: u64, why: Release) {
        if key == 0 {
            return;
        }
        if let Some((reply, mac)) = self.guard.released(key, why, self.now_ns) {
            self.send_reply(key, mac, reply);
        }
    }
}
