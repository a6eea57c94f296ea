//! Rate limits on what the stack sends unasked: a token bucket for ICMP
//! echo replies, and buckets by source address for RSTs to segments of no
//! connection. They take the time as a parameter and never allocate after
//! start-up. (Challenge ACKs are limited per
//! connection, by the guard: a shared budget would be a side channel.)

/// ICMP echo requests a stack answers per second by default (and the XDP
/// program redirects per CPU): enough for an operator's ping, too few to
/// make the gateway a reflector.
pub const ECHO_PER_SEC_DEFAULT: u32 = 100;

/// RSTs a stack sends per second at most to one source address (one of
/// 1024 buckets, by a keyed hash of the address) for segments of no
/// connection (scans, stale peers, bad cookies); the rest are dropped.
pub const RST_PER_SEC_DEFAULT: u32 = 100;

/// Buckets of RSTs by source address.
pub const RST_BUCKETS: usize = 1024;

/// A token bucket: `per_sec` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    per_sec: u64,
    burst: u64,
    /// Saved credit in nanoseconds: a token costs `1e9 / per_sec` ns.
    credit_ns: u64,
    last_ns: u64,
}

impl Bucket {
    /// `per_sec` tokens a second (0: none ever), `burst` at most at once.
    pub fn new(per_sec: u32, burst: u32) -> Bucket {
        let (per_sec, burst) = (u64::from(per_sec), u64::from(burst.max(1)));
        let cost = 1_000_000_000u64.checked_div(per_sec).unwrap_or(0);
        Bucket { per_sec, burst, credit_ns: cost * burst, last_ns: 0 }
    }

    /// Take one token at `now` (ns); false when the bucket is empty.
    pub fn take(&mut self, now: u64) -> bool {
        if self.per_sec == 0 {
            return false;
        }
        let cost = (1_000_000_000 / self.per_sec).max(1);
        let cap = cost * self.burst;
        let elapsed = now.saturating_sub(self.last_ns);
        self.last_ns = self.last_ns.max(now);
        self.credit_ns = self.credit_ns.saturating_add(elapsed).min(cap);
        if self.credit_ns < cost {
            return false;
        }
        self.credit_ns -= cost;
        true
    }
}

/// Token buckets by source address: a keyed hash (SipHash, the stack's
/// secret) of the address picks one of [`RST_BUCKETS`]. One shared bucket
/// would be a side channel: whoever keeps it nearly empty learns, from
/// whether its own probe still draws an answer, whether a probe it spoofed
/// from a client's address drew one (no answer when that 4-tuple is a live
/// connection), which gives away connections (as the challenge-ACK budget
/// did, CVE-2016-5696); and a flood from one source would silence the
/// answers every other source is owed. Past its own bucket, a source gets
/// silence; the others are untouched.
#[derive(Debug)]
pub struct BySource {
    buckets: Vec<Bucket>,
    key: (u64, u64),
}

impl BySource {
    pub fn new(per_sec: u32, burst: u32, key: (u64, u64)) -> BySource {
        BySource { buckets: vec![Bucket::new(per_sec, burst); RST_BUCKETS], key }
    }

    /// Take one token of source `src`'s bucket at `now`.
    pub fn take(&mut self, src: u32, now: u64) -> bool {
        use std::hash::Hasher;
        let mut h = siphasher::sip::SipHasher13::new_with_keys(self.key.0, self.key.1);
        h.write_u32(src);
        let i = (h.finish() as usize) & (RST_BUCKETS - 1);
        self.buckets[i].take(now)
    }
}

/// The stack's limits on what it answers unasked, and what they cost the
/// senders.
#[derive(Debug)]
pub struct Limits {
    /// ICMP echo replies.
    pub echo: Bucket,
    /// RSTs to segments of no connection, by source address.
    pub rst: BySource,
    pub echo_limited: u64,
    /// UDP datagrams (the stack has no UDP socket and answers none).
    pub udp_dropped: u64,
    pub rst_limited: u64,
}

impl Limits {
    /// `echo_per_sec` echo replies a second, and `rst_per_sec` RSTs a
    /// second to each source, each with a fifth of a second's worth saved
    /// up at most; `key` (secret) keys the sources' buckets.
    pub fn new(echo_per_sec: u32, rst_per_sec: u32, key: (u64, u64)) -> Limits {
        let burst = |r: u32| (r / 5).max(1);
        Limits {
            echo: Bucket::new(echo_per_sec, burst(echo_per_sec)),
            rst: BySource::new(rst_per_sec, burst(rst_per_sec), key),
            echo_limited: 0,
            udp_dropped: 0,
            rst_limited: 0,
        }
    }

    pub fn counters(&self, out: &mut crate::transport::Counters) {
        out.drop("icmp_echo_limited", self.echo_limited);
        out.drop("udp_dropped", self.udp_dropped);
        out.drop("rst_limited", self.rst_limited);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn a_bucket_gives_its_burst_then_its_rate() {
        let mut b = Bucket::new(1000, 50);
        let t0 = 5 * SEC;
        // Full at the start: the burst at once.
        assert_eq!((0..200).filter(|_| b.take(t0)).count(), 50);
        // Then 1000 a second: 100 in 100 ms, asked 10 000 times.
        let got = (0..10_000u64).filter(|i| b.take(t0 + i * 10_000)).count();
        assert!((99..=101).contains(&got), "{got}");
        // Idle for a minute: never more than the burst saved.
        assert_eq!((0..200).filter(|_| b.take(t0 + 60 * SEC)).count(), 50);
        let mut none = Bucket::new(0, 10);
        assert!(!none.take(t0));
    }
}
