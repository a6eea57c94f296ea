//! The latency histograms' bucket edges: 1 us doubling to 1.048576 s (the
//! ACK stage of a retransmitted reply runs to hundreds of milliseconds),
//! and exact edges around the SLA (`--sla-ms`) on a 1-2-5 series: the SLA
//! times 0.1, 0.2, 0.5, 1, 2 and 5. So `le="0.008"` exists for an 8 ms SLA
//! and the share of messages over it is exact, not interpolated.

/// Doubling edges from 1 us: 1 us ... 1.048576 s.
pub const DOUBLING: usize = 21;
/// Edges the SLA adds, at most.
pub const SLA_EDGES: usize = 6;
/// Edges at most (then +Inf): the histogram's fixed size.
pub const MAX: usize = DOUBLING + SLA_EDGES;
/// The SLA's 1-2-5 series, in tenths of the SLA.
const SLA_TENTHS: [u64; SLA_EDGES] = [1, 2, 5, 10, 20, 50];
/// The default SLA: 8 ms, as in the seed's alert.
pub const DEFAULT_SLA_MS: u64 = 8;

/// Sorted upper bounds in ns, each once; a value above the last is +Inf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    ns: Vec<u64>,
}

impl Bounds {
    /// The doubling edges and, with `sla_ns` > 0, the SLA's.
    pub fn new(sla_ns: u64) -> Bounds {
        let mut ns: Vec<u64> = (0..DOUBLING).map(|i| 1000u64 << i).collect();
        if sla_ns > 0 {
            ns.extend(SLA_TENTHS.iter().map(|t| sla_ns.saturating_mul(*t) / 10).filter(|&b| b > 0));
        }
        ns.sort_unstable();
        ns.dedup();
        Bounds { ns }
    }

    /// How many edges (not counting +Inf).
    pub fn len(&self) -> usize {
        self.ns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ns.is_empty()
    }

    /// The bucket of `ns`: the first edge it does not exceed, or
    /// [`Bounds::len`] (+Inf).
    #[inline]
    pub fn bucket_of(&self, ns: u64) -> usize {
        self.ns.partition_point(|&b| b < ns)
    }

    /// The edges in seconds, as Prometheus writes them (`ns / 1e9`, the
    /// double nearest each decimal: `0.008`, not `0.008000000000000002`),
    /// then +Inf.
    pub fn seconds(&self) -> Vec<f64> {
        let mut v: Vec<f64> = self.ns.iter().map(|&n| n as f64 / 1e9).collect();
        v.push(f64::INFINITY);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubling_edges_from_1us() {
        let b = Bounds::new(0);
        assert_eq!(b.len(), DOUBLING);
        assert_eq!(b.bucket_of(0), 0);
        assert_eq!(b.bucket_of(1000), 0);
        assert_eq!(b.bucket_of(1001), 1);
        assert_eq!(b.bucket_of(2000), 1);
        assert_eq!(b.bucket_of(2001), 2);
        assert_eq!(b.bucket_of(8_192_000), 13);
        assert_eq!(b.bucket_of(1_048_576_000), 20);
        assert_eq!(b.bucket_of(1_048_576_001), DOUBLING);
        assert_eq!(b.bucket_of(u64::MAX), DOUBLING);
    }

    #[test]
    fn the_sla_adds_exact_edges_on_a_1_2_5_series() {
        let b = Bounds::new(8_000_000);
        assert_eq!(b.len(), MAX);
        let s = b.seconds();
        for edge in [0.0008, 0.0016, 0.004, 0.008, 0.016, 0.04] {
            assert!(s.contains(&edge), "{edge} in {s:?}");
        }
        assert_eq!(format!("{}", s[b.bucket_of(8_000_000)]), "0.008");
        assert_eq!(s[b.bucket_of(8_000_001)], 0.008192, "just over the SLA: the next edge");
        assert!(s.windows(2).all(|w| w[0] < w[1]), "sorted, each once");
        // An SLA on doubling edges adds none of them twice (1.024, 0.512
        // and 2.048 ms are there already).
        assert_eq!(Bounds::new(1_024_000).len(), MAX - 3);
    }
}
