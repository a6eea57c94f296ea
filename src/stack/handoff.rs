//! Frames that landed on another loop's queue, handed to the loop that owns
//! them (one loop per NIC queue, share nothing).
//!
//! Each loop owns the connections whose SYN arrived on its queue (or that
//! it opened). The NIC's hash normally brings a flow's later frames to the
//! same queue, but not always: veth picks the receive queue from the
//! sender's own transmit queue, a sender may rehash a flow after a
//! retransmission timeout, and an outbound connection's replies land where
//! RSS puts them. A loop that receives a TCP segment it does not own
//! (no connection, no TIME-WAIT record, not a SYN for a listening port, not
//! an ACK carrying one of its own cookies) does not answer it: it copies the
//! frame into a single-producer ring to the next loop, which does the same
//! test. Loops form a ring (0 -> 1 -> ... -> n-1 -> 0), so a frame passes at
//! most n-1 handoffs; the loop that receives it after n-1 handoffs has heard
//! that every other loop declined it, and serves it as a single loop would
//! (a RST for a segment of no connection). ARP replies are copied on to
//! every loop, so each loop's neighbour cache learns the peer; ARP requests
//! are answered where they land.
//!
//! A handed-over frame keeps its arrival stamp, so the time it spent in the
//! ring shows in its message's receive stage. The rings are allocated at
//! start-up ([`HANDOFF_SLOTS`] frames each); a full ring drops the frame
//! and counts it (`handoff_dropped`), and TCP retransmits it.
//!
//! A loop that blocks (not `--spin`) sleeps in poll(2) on its socket and on
//! its [`Doorbell`], an eventfd: a loop that hands it a frame while it is
//! asleep writes the eventfd, so the frame waits for a wake-up, not for the
//! sleeper's 1 ms timer tick. A spinning loop never sets its bell, and the
//! producer then pays one atomic load per iteration that handed frames over.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::Arc;

use rustix::event::{eventfd, EventfdFlags};

use crate::ring::{ring_of, Consumer, Producer};
use crate::transport::Counters;

/// Largest frame a ring slot holds (1500-byte IP MTU + Ethernet header).
pub const HANDOFF_FRAME: usize = 1514;

/// Frames each loop's inbound ring holds.
pub const HANDOFF_SLOTS: usize = 4096;

/// One handed-over frame.
#[derive(Clone, Copy)]
pub struct Handed {
    /// Arrival stamp from the loop that received it (0: none).
    pub rx_ns: u64,
    pub len: u16,
    /// Handoffs so far (1 after the first).
    pub hops: u8,
    pub data: [u8; HANDOFF_FRAME],
}

impl Default for Handed {
    fn default() -> Handed {
        Handed { rx_ns: 0, len: 0, hops: 0, data: [0; HANDOFF_FRAME] }
    }
}

/// Counters of one loop's handoffs.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HandoffStats {
    /// Frames this loop did not own, passed to the next loop.
    pub forwarded: u64,
    /// Frames another loop passed to this one.
    pub received: u64,
    /// Frames the next loop's ring had no room for (dropped).
    pub dropped: u64,
    /// ARP replies copied on to the next loop.
    pub arp_shared: u64,
    /// Sleeps this loop's bell ended (a frame handed to it while it slept).
    pub wakeups: u64,
}

/// Wakes a blocked loop when another loop hands it a frame: an eventfd
/// written only while its owner says it is asleep.
#[derive(Debug)]
pub struct Doorbell {
    asleep: AtomicBool,
    fd: OwnedFd,
}

impl Doorbell {
    pub fn new() -> std::io::Result<Doorbell> {
        let fd = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        Ok(Doorbell { asleep: AtomicBool::new(false), fd })
    }

    /// The owner is about to sleep (true) or has woken (false). With
    /// [`Doorbell::ring`] this is Dekker's handshake: the owner sets the
    /// flag, then looks at its inbox; a producer publishes, then reads the
    /// flag; a SeqCst fence on each side between its store and its load
    /// means either the owner sees the frame or the producer sees it asleep
    /// and rings ([`announce`], [`should_ring`]; tests: a loom model of
    /// both halves). Without the owner's fence its inbox load (an Acquire)
    /// may be ordered before its store, and both sides miss (ARM shows it).
    pub fn set_asleep(&self, asleep: bool) {
        if asleep {
            announce(&self.asleep);
        } else {
            self.asleep.store(false, Ordering::SeqCst);
        }
    }

    /// Wake the owner if it is asleep (one write(2); none while it runs).
    pub fn ring(&self) {
        if should_ring(&self.asleep) {
            // A full counter (2^64-2 rings unread) still wakes the poll.
            let _ = rustix::io::write(&self.fd, &1u64.to_ne_bytes());
        }
    }

    /// Reset the eventfd after a wake-up it caused.
    pub fn clear(&self) {
        let mut b = [0u8; 8];
        let _ = rustix::io::read(&self.fd, &mut b);
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// What the handshake needs of its flag: std's `AtomicBool` here, loom's
/// in the model checked by the tests.
pub trait Flag {
    fn store_seqcst(&self, v: bool);
    fn load_seqcst(&self) -> bool;
    fn fence_seqcst();
}

impl Flag for AtomicBool {
    fn store_seqcst(&self, v: bool) {
        self.store(v, Ordering::SeqCst);
    }
    fn load_seqcst(&self) -> bool {
        self.load(Ordering::SeqCst)
    }
    fn fence_seqcst() {
        fence(Ordering::SeqCst);
    }
}

/// The sleeper's half: say "asleep", then (the caller) look at the inbox.
pub fn announce<F: Flag>(asleep: &F) {
    asleep.store_seqcst(true);
    // Pairs with the producer's fence in `should_ring`: the inbox load that
    // follows cannot be ordered before this store.
    F::fence_seqcst();
}

/// The producer's half, after publishing: is the owner asleep (ring it)?
pub fn should_ring<F: Flag>(asleep: &F) -> bool {
    // Pairs with the sleeper's fence in `announce`.
    F::fence_seqcst();
    asleep.load_seqcst()
}

/// One loop's ends of the handoff rings: its inbox, and the next loop's.
pub struct Handoff {
    /// This loop's index and the number of loops.
    pub index: usize,
    pub loops: usize,
    pub(super) inbox: Consumer<Handed>,
    pub(super) next: Producer<Handed>,
    pub(super) pushed: bool,
    /// This loop's bell (rung by the previous loop), and the next loop's.
    pub(super) bell: Arc<Doorbell>,
    pub(super) next_bell: Arc<Doorbell>,
    pub stats: HandoffStats,
}

impl std::fmt::Debug for Handoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handoff {{ loop {} of {}, {:?} }}", self.index, self.loops, self.stats)
    }
}

/// The handoff ends of `loops` loops wired in a ring, `slots` frames per
/// ring (a power of two): element `i` is loop `i`'s.
pub fn ring_of_loops(loops: usize, slots: usize) -> Result<Vec<Handoff>, String> {
    if !(2..=255).contains(&loops) {
        return Err(format!("{loops} loops: handoff rings need 2 to 255"));
    }
    // Ring i carries frames from loop i to loop i+1: loop i writes ring i
    // and reads ring i-1.
    let mut prods = Vec::with_capacity(loops);
    let mut cons = std::collections::VecDeque::with_capacity(loops);
    for _ in 0..loops {
        let (p, c) = ring_of::<Handed>(slots)?;
        prods.push(p);
        cons.push_back(c);
    }
    cons.rotate_right(1);
    let bells = (0..loops)
        .map(|i| Doorbell::new().map(Arc::new).map_err(|e| format!("loop {i}: handoff eventfd: {e}")))
        .collect::<Result<Vec<_>, _>>()?;
    let out = prods
        .into_iter()
        .zip(cons)
        .enumerate()
        .map(|(index, (next, inbox))| Handoff {
            index,
            loops,
            inbox,
            next,
            pushed: false,
            bell: bells[index].clone(),
            next_bell: bells[(index + 1) % loops].clone(),
            stats: HandoffStats::default(),
        })
        .collect();
    Ok(out)
}

impl Handoff {
    /// May a frame that has made `hops` handoffs be passed on again? (Not
    /// once every other loop has seen it.)
    #[inline]
    pub(super) fn may_pass(&self, hops: u8) -> bool {
        usize::from(hops) + 1 < self.loops
    }

    /// Copy `bytes` (arrived at `rx_ns`, `hops` handoffs so far) to the
    /// next loop's ring, counted as forwarded, or as an ARP reply shared
    /// (`copy`); false (counted as dropped) when the ring is full.
    pub(super) fn pass(&mut self, bytes: &[u8], rx_ns: u64, hops: u8, copy: bool) -> bool {
        let ok = self.next.push_with(|f| {
            let n = bytes.len().min(HANDOFF_FRAME);
            f.data[..n].copy_from_slice(&bytes[..n]);
            f.len = n as u16;
            f.hops = hops.saturating_add(1);
            f.rx_ns = rx_ns;
        });
        if ok {
            self.pushed = true;
            if copy {
                self.stats.arp_shared += 1;
            } else {
                self.stats.forwarded += 1;
            }
        } else {
            self.stats.dropped += 1;
        }
        ok
    }

    /// Make what this iteration passed on visible to the next loop.
    #[inline]
    pub(super) fn publish(&mut self) {
        if self.pushed {
            self.pushed = false;
            self.next.publish();
            self.next_bell.ring();
        }
    }

    /// Before the loop sleeps: say so to the previous loop, and false if a
    /// frame already waits (then do not sleep).
    pub(super) fn may_sleep(&self) -> bool {
        self.bell.set_asleep(true);
        if self.inbox.is_empty() {
            return true;
        }
        self.bell.set_asleep(false);
        false
    }

    /// After the sleep: `rang` when the bell woke it.
    pub(super) fn woke(&mut self, rang: bool) {
        self.bell.set_asleep(false);
        if rang {
            self.bell.clear();
            self.stats.wakeups += 1;
        }
    }

    /// The bell to sleep on.
    pub(super) fn bell(&self) -> BorrowedFd<'_> {
        self.bell.fd()
    }

    pub fn counters(&self, out: &mut Counters) {
        out.event("handoff_forwarded", self.stats.forwarded);
        out.event("handoff_received", self.stats.received);
        out.event("handoff_arp_shared", self.stats.arp_shared);
        out.event("handoff_wakeups", self.stats.wakeups);
        out.drop("handoff_dropped", self.stats.dropped);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: BorrowedFd<'_>) -> bool {
        let mut p = [rustix::event::PollFd::new(&fd, rustix::event::PollFlags::IN)];
        let zero = rustix::time::Timespec { tv_sec: 0, tv_nsec: 0 };
        rustix::event::poll(&mut p, Some(&zero)).unwrap() == 1
    }

    #[test]
    fn a_handoff_rings_the_next_loops_bell_only_while_it_sleeps() {
        let mut h = ring_of_loops(2, 8).unwrap();
        // Loop 1 runs: a frame handed to it writes nothing.
        assert!(h[0].pass(&[1], 0, 0, false));
        h[0].publish();
        assert!(!readable(h[1].bell()));
        // A frame waits: loop 1 must not sleep.
        assert!(!h[1].may_sleep());
        assert!(h[1].inbox.pop().is_some());
        // Loop 1 sleeps: the next handoff wakes it, and the wake-up clears.
        assert!(h[1].may_sleep());
        assert!(!readable(h[1].bell()));
        assert!(h[0].pass(&[2], 0, 0, false));
        h[0].publish();
        assert!(readable(h[1].bell()));
        h[1].woke(true);
        assert!(!readable(h[1].bell()));
        assert_eq!((h[1].stats.wakeups, h[0].stats.wakeups), (1, 0));
        // Loop 0's own bell was never rung.
        assert!(!readable(h[0].bell()));
    }

    #[test]
    fn loops_form_a_ring_and_a_frame_goes_to_the_next_loop() {
        let mut h = ring_of_loops(3, 8).unwrap();
        assert!(h[0].pass(&[1, 2, 3], 42, 0, false));
        h[0].publish();
        assert!(h[2].pass(&[9], 7, 1, false));
        h[2].publish();
        let got = h[1].inbox.pop_with(|f| (f.data[..usize::from(f.len)].to_vec(), f.rx_ns, f.hops));
        assert_eq!(got, Some((vec![1, 2, 3], 42, 1)));
        assert!(h[2].inbox.pop().is_none());
        let got = h[0].inbox.pop_with(|f| (f.data[..usize::from(f.len)].to_vec(), f.hops));
        assert_eq!(got, Some((vec![9], 2)));
        assert!(h[0].may_pass(1) && !h[0].may_pass(2), "3 loops: at most 2 handoffs");
    }

    /// The handshake under loom's model of the memory model: the sleeper
    /// announces, then loads the inbox's published index (Acquire, as the
    /// ring does); the producer publishes (Release), then asks whether to
    /// ring. In no interleaving or reordering do both miss.
    mod model {
        use super::super::{announce, should_ring, Flag};
        use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use loom::sync::Arc;

        impl Flag for AtomicBool {
            fn store_seqcst(&self, v: bool) {
                self.store(v, Ordering::SeqCst);
            }
            fn load_seqcst(&self) -> bool {
                self.load(Ordering::SeqCst)
            }
            fn fence_seqcst() {
                loom::sync::atomic::fence(Ordering::SeqCst);
            }
        }

        /// Run the handshake with the sleeper's half `sleeper`.
        fn check(sleeper: fn(&AtomicBool)) {
            loom::model(move || {
                let asleep = Arc::new(AtomicBool::new(false));
                let head = Arc::new(AtomicUsize::new(0));
                let (a, h) = (asleep.clone(), head.clone());
                let producer = loom::thread::spawn(move || {
                    h.store(1, Ordering::Release);
                    should_ring(&*a)
                });
                sleeper(&asleep);
                let sees_frame = head.load(Ordering::Acquire) == 1;
                let rings = producer.join().unwrap();
                assert!(sees_frame || rings, "a lost wake-up: the sleeper saw no frame and nobody rang");
            });
        }

        #[test]
        fn no_wake_up_is_lost() {
            check(announce);
        }

        /// Without the sleeper's fence (as before), loom finds the lost
        /// wake-up.
        #[test]
        #[should_panic(expected = "a lost wake-up")]
        fn without_the_sleepers_fence_a_wake_up_is_lost() {
            check(|f| f.store_seqcst(true));
        }
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        let mut h = ring_of_loops(2, 2).unwrap();
        assert!(h[0].pass(&[1], 0, 0, false) && h[0].pass(&[2], 0, 0, false));
        assert!(!h[0].pass(&[3], 0, 0, false));
        assert_eq!(h[0].stats.dropped, 1);
        assert!(ring_of_loops(1, 8).is_err() && ring_of_loops(2, 3).is_err());
    }
}
