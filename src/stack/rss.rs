//! Receive-side scaling, computed: the Toeplitz hash a NIC uses to spread
//! flows over its receive queues, and the queue its indirection table then
//! picks. With the device's key and table (`ethtool -x`), a loop that opens
//! a connection can choose a local port whose replies the NIC delivers to
//! its own queue (as Seastar and F-Stack do), so flows stay with the loop
//! that owns them (issue: one loop per NIC queue).
//!
//! The hash input for TCP over IPv4 is, in network byte order, the source
//! address, the destination address, the source port and the destination
//! port of the packet *as received*.

use std::net::Ipv4Addr;

/// The Toeplitz hash of `input` under `key`: for every set bit of the
/// input, XOR in the 32 key bits that start at that bit's position. The
/// key must be at least 4 bytes longer than the input (40 bytes covers
/// IPv6 with ports); missing key bits count as zero.
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let bit = |i: usize| key.get(i / 8).map_or(0, |b| (b >> (7 - i % 8)) & 1);
    // The 32-bit window of the key at bit 0, then slid one bit per input bit.
    let mut window: u32 = (0..32).fold(0, |w, i| (w << 1) | u32::from(bit(i)));
    let mut hash = 0u32;
    for (n, byte) in input.iter().enumerate() {
        for b in 0..8 {
            if byte & (0x80 >> b) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from(bit(n * 8 + b + 32));
        }
    }
    hash
}

/// The hash of a TCP/IPv4 packet from `src` to `dst`.
pub fn hash_v4_tcp(key: &[u8], src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> u32 {
    let mut input = [0u8; 12];
    input[0..4].copy_from_slice(&src.0.octets());
    input[4..8].copy_from_slice(&dst.0.octets());
    input[8..10].copy_from_slice(&src.1.to_be_bytes());
    input[10..12].copy_from_slice(&dst.1.to_be_bytes());
    toeplitz(key, &input)
}

/// The receive queue the indirection table gives a hash (the hash's low
/// bits index the table, as the kernel's ethtool table is laid out).
pub fn queue_of(hash: u32, indirection: &[u32]) -> Option<u32> {
    if indirection.is_empty() {
        return None;
    }
    indirection.get(hash as usize % indirection.len()).copied()
}

/// A device's RSS table, owned, and the queue this stack's loop serves:
/// outbound connections then take local ports whose replies RSS brings to
/// that queue ([`Rss::pick_port`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssTable {
    pub key: Vec<u8>,
    pub indirection: Vec<u32>,
    pub queue: u32,
}

impl RssTable {
    pub fn rss(&self) -> Rss<'_> {
        Rss { key: &self.key, indirection: &self.indirection }
    }
}

/// A device's RSS configuration: its hash key and indirection table.
#[derive(Debug, Clone, Copy)]
pub struct Rss<'a> {
    pub key: &'a [u8],
    pub indirection: &'a [u32],
}

impl Rss<'_> {
    /// The queue a TCP/IPv4 packet from `src` to `dst` is received on.
    pub fn queue(&self, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16)) -> Option<u32> {
        queue_of(hash_v4_tcp(self.key, src, dst), self.indirection)
    }

    /// A local port in `ports` (inclusive) for a connection from `local`
    /// to `remote` whose replies arrive on `queue`, trying the ports from
    /// `start` on (wrapping) and skipping those `taken` says are in use.
    pub fn pick_port(
        &self,
        queue: u32,
        local: Ipv4Addr,
        remote: (Ipv4Addr, u16),
        (lo, hi): (u16, u16),
        start: u16,
        taken: impl Fn(u16) -> bool,
    ) -> Option<u16> {
        if lo > hi {
            return None;
        }
        let n = u32::from(hi - lo) + 1;
        let first = u32::from(start.clamp(lo, hi) - lo);
        (0..n)
            .map(|i| lo + ((first + i) % n) as u16)
            .find(|&p| !taken(p) && self.queue(remote, (local, p)) == Some(queue))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key Microsoft publishes with its RSS verification data
    /// ("Verifying the RSS Hash Calculation").
    const KEY: [u8; 40] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0, 0xd0, 0xca,
        0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b,
        0xbe, 0xac, 0x01, 0xfa,
    ];

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn the_published_ipv4_verification_vectors_hold() {
        // (destination, source, IPv4 only, IPv4 with TCP)
        let cases = [
            (("161.142.100.80", 1766), ("66.9.149.187", 2794), 0x323e_8fc2, 0x51cc_c178),
            (("65.69.140.83", 4739), ("199.92.111.2", 14230), 0xd718_262a, 0xc626_b0ea),
            (("12.22.207.184", 38024), ("24.19.198.95", 12898), 0xd2d0_a5de, 0x5c2b_394a),
            (("209.142.163.6", 2217), ("38.27.205.30", 48228), 0x8298_9176, 0xafc7_327f),
            (("202.188.127.2", 1303), ("153.39.163.191", 44251), 0x5d18_09c5, 0x10e8_28a2),
        ];
        for ((dip, dport), (sip, sport), v4, v4_tcp) in cases {
            let mut addrs = [0u8; 8];
            addrs[..4].copy_from_slice(&ip(sip).octets());
            addrs[4..].copy_from_slice(&ip(dip).octets());
            assert_eq!(toeplitz(&KEY, &addrs), v4, "{sip} -> {dip}");
            assert_eq!(hash_v4_tcp(&KEY, (ip(sip), sport), (ip(dip), dport)), v4_tcp, "{sip}:{sport} -> {dip}:{dport}");
        }
    }

    #[test]
    fn picked_ports_bring_the_replies_to_the_chosen_queue() {
        // Two queues, the table the kernel fills by default: 0, 1, 0, 1, ...
        let indirection: Vec<u32> = (0..128).map(|i| i % 2).collect();
        let rss = Rss { key: &KEY, indirection: &indirection };
        let (local, remote) = (ip("198.18.0.3"), (ip("198.18.0.1"), 7777));
        for queue in 0..2 {
            let mut seen = 0;
            let mut start = 40_000;
            for _ in 0..50 {
                let p = rss.pick_port(queue, local, remote, (40_000, 40_999), start, |_| false).expect("a port");
                // The reply, remote -> local:p, lands on `queue`.
                assert_eq!(queue_of(hash_v4_tcp(&KEY, remote, (local, p)), &indirection), Some(queue));
                seen += 1;
                start = p + 1;
            }
            assert_eq!(seen, 50);
        }
        // Taken ports are skipped; a range with none for the queue says so.
        let p = rss.pick_port(1, local, remote, (40_000, 40_999), 40_000, |_| false).unwrap();
        let q = rss.pick_port(1, local, remote, (40_000, 40_999), 40_000, |x| x == p).unwrap();
        assert_ne!(p, q);
        let one_queue = Rss { key: &KEY, indirection: &[0; 128] };
        assert_eq!(one_queue.pick_port(1, local, remote, (40_000, 40_999), 40_000, |_| false), None);
        assert_eq!(queue_of(7, &[]), None);
    }
}
