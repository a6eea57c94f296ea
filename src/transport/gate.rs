//! Sources refused at the door: a table the logon verifier writes and the
//! loops read, so that a source whose failed logons put it in backoff or
//! banned it is refused when it connects, before the connection costs the
//! loop anything more (the xdp stack answers its SYN with a RST; the kernel
//! backend resets it as it is accepted).
//!
//! One writer (the verifier), any number of readers (the loops), no lock:
//! each slot is a small seqlock of atomics (a sequence number, odd while
//! the slot is written, around the source's key and its deadline). A reader
//! that sees a slot being written takes it as empty: at worst one more
//! connection reaches the verifier, which refuses it in turn. Slots are
//! found by a keyed hash of the source with a short linear probe; when the
//! probe is full the writer overwrites the entry that expires first, so a
//! flood from more sources than there are slots only sends the rest back
//! to the verifier's own throttle, never refuses a source that is not in
//! the table. The key is an IPv4 address or an IPv6 address's /64.

use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Slots in the table.
pub const SLOTS: usize = 4096;
const _: () = assert!(SLOTS.is_power_of_two());
/// Slots probed from a key's home slot.
const PROBE: usize = 8;

/// A source: an IPv4 address (or an IPv4-mapped one), or an IPv6
/// address's /64 (one host may own a whole /64). The logon throttle keys
/// on it too.
pub fn source_key(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v) => match v.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v) & (u128::MAX << 64)).into()),
        },
        v4 => v4,
    }
}

/// A source's slot key, with a tag that keeps IPv4 and IPv6 apart and is
/// never 0 (an empty slot).
fn key_of(a: IpAddr) -> (u64, u64) {
    match source_key(a) {
        IpAddr::V4(v) => (1, u64::from(u32::from(v))),
        IpAddr::V6(v) => (2, (u128::from(v) >> 64) as u64),
    }
}

#[derive(Debug, Default)]
struct Slot {
    /// Even: stable; odd: being written.
    seq: AtomicU64,
    /// The key's tag (0: empty, 1: IPv4, 2: IPv6 /64).
    tag: AtomicU64,
    key: AtomicU64,
    /// Refused until this monotonic time (ns, `clock::mono_ns`).
    until: AtomicU64,
}

impl Slot {
    /// The slot's (tag, key, until), if it was not being written.
    fn read(&self) -> Option<(u64, u64, u64)> {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let v =
            (self.tag.load(Ordering::Relaxed), self.key.load(Ordering::Relaxed), self.until.load(Ordering::Relaxed));
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == s1).then_some(v)
    }

    /// Write the slot (the one writer only).
    fn write(&self, tag: u64, key: u64, until: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.tag.store(tag, Ordering::Relaxed);
        self.key.store(key, Ordering::Relaxed);
        self.until.store(until, Ordering::Relaxed);
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }
}

/// The table (see the module's documentation).
#[derive(Debug)]
pub struct Gate {
    slots: Box<[Slot]>,
    /// The hash's key (SipHash, keyed from the OS's randomness per
    /// process), so that nobody outside can pick sources that share a
    /// probe; a keyed multiply alone spread some keys' runs of consecutive
    /// sources over a few home slots.
    keys: std::collections::hash_map::RandomState,
}

impl Gate {
    pub fn new() -> Gate {
        Gate {
            slots: (0..SLOTS).map(|_| Slot::default()).collect(),
            keys: std::collections::hash_map::RandomState::new(),
        }
    }

    fn home(&self, tag: u64, key: u64) -> usize {
        use std::hash::BuildHasher;
        (self.keys.hash_one((tag, key)) >> (64 - SLOTS.trailing_zeros())) as usize
    }

    /// Refuse `source` until `until_ns` (monotonic). The writer's side: call
    /// from one thread only.
    pub fn refuse(&self, source: IpAddr, until_ns: u64) {
        let (tag, key) = key_of(source);
        let home = self.home(tag, key);
        let mut victim = home;
        let mut earliest = u64::MAX;
        for i in 0..PROBE {
            let at = (home + i) % SLOTS;
            let (t, k, u) = self.slots[at].read().unwrap_or((0, 0, 0));
            if t == tag && k == key {
                victim = at;
                break;
            }
            if t == 0 {
                victim = at;
                earliest = 0;
            } else if u < earliest {
                victim = at;
                earliest = u;
            }
        }
        self.slots[victim].write(tag, key, until_ns);
    }

    /// Is `source` refused at `now_ns` (monotonic)? The readers' side: one
    /// to eight slot reads, no clock read, no lock.
    #[inline]
    pub fn refuses(&self, source: IpAddr, now_ns: u64) -> bool {
        let (tag, key) = key_of(source);
        let home = self.home(tag, key);
        (0..PROBE).any(
            |i| matches!(self.slots[(home + i) % SLOTS].read(), Some((t, k, u)) if t == tag && k == key && now_ns < u),
        )
    }
}

impl Default for Gate {
    fn default() -> Self {
        Gate::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    #[test]
    fn a_source_is_refused_until_its_deadline_and_no_other() {
        let g = Gate::new();
        assert!(!g.refuses(v4(9), 0));
        g.refuse(v4(9), 1_000);
        assert!(g.refuses(v4(9), 999));
        assert!(!g.refuses(v4(9), 1_000), "the deadline is exclusive");
        assert!(!g.refuses(v4(10), 0), "only the source itself");
        // A later write moves the deadline (backoff, then a ban).
        g.refuse(v4(9), 5_000);
        assert!(g.refuses(v4(9), 4_999));
        // IPv4-mapped IPv6 is the IPv4 address.
        assert!(g.refuses(IpAddr::V6(Ipv4Addr::new(198, 18, 0, 9).to_ipv6_mapped()), 1));
    }

    #[test]
    fn an_ipv6_source_is_its_slash_64_and_never_an_ipv4_one() {
        let g = Gate::new();
        let a: Ipv6Addr = "2001:db8:1:2::5".parse().unwrap();
        let same64: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other64: Ipv6Addr = "2001:db8:1:3::5".parse().unwrap();
        g.refuse(IpAddr::V6(a), 100);
        assert!(g.refuses(IpAddr::V6(same64), 0));
        assert!(!g.refuses(IpAddr::V6(other64), 0));
        // An IPv4 address whose bits equal the /64's low word is another key.
        let low = (u128::from(a) >> 64) as u32;
        assert!(!g.refuses(IpAddr::V4(Ipv4Addr::from(low)), 0));
    }

    #[test]
    fn more_sources_than_slots_evict_the_earliest_and_refuse_no_stranger() {
        let g = Gate::new();
        let n = SLOTS as u32 * 2;
        for i in 0..n {
            g.refuse(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 1_000 + u64::from(i));
        }
        // Every refusal is of a source written; the latest ones are kept
        // (the earliest deadlines went first).
        let kept = (0..n).filter(|&i| g.refuses(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 0)).count();
        assert!(kept > SLOTS / 2 && kept <= SLOTS, "kept {kept}");
        let late = (n - 64..n).filter(|&i| g.refuses(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 0)).count();
        assert_eq!(late, 64, "the latest written are all there");
        assert!(!(0..1000u32).any(|i| g.refuses(IpAddr::V4(Ipv4Addr::from(0x0b00_0000 + i)), 0)));
    }

    #[test]
    fn a_reader_on_another_thread_sees_whole_entries_only() {
        // The writer alternates two entries in one slot; every read is one
        // of them whole, never a mix of the two. The writer goes on until
        // the reader has made enough reads (a busy host may start it late),
        // for 10 s at most.
        use std::sync::atomic::AtomicBool;
        use std::sync::Arc;
        let slot = Arc::new(Slot::default());
        let (a, b) = ((1, 0xaaaa, u64::MAX), (2, 0x5555, 7));
        slot.write(a.0, a.1, a.2);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicU64::new(0));
        let reader = {
            let (slot, stop, seen) = (slot.clone(), stop.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut torn = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(v) = slot.read() {
                        seen.fetch_add(1, Ordering::Relaxed);
                        torn += u64::from(v != a && v != b);
                    }
                }
                torn
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let mut round = 0u64;
        while (round < 200_000 || seen.load(Ordering::Relaxed) < 100_000) && std::time::Instant::now() < deadline {
            let e = if round % 2 == 0 { b } else { a };
            slot.write(e.0, e.1, e.2);
            round += 1;
        }
        stop.store(true, Ordering::Relaxed);
        let torn = reader.join().unwrap();
        let seen = seen.load(Ordering::Relaxed);
        assert!(seen > 0, "the reader never read");
        assert_eq!(torn, 0, "{torn} torn reads of {seen}");
    }
}
