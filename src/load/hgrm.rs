//! HdrHistogram's percentile-distribution text (`load --hgrm FILE`), the
//! format HdrHistogram's `outputPercentileDistribution` writes and its
//! plotter and wrk2's users read: one line per quantile step (five ticks
//! per half distance to 100 %), values in microseconds, then the mean,
//! standard deviation, maximum, total count and the histogram's buckets.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// Ticks per half distance, as HdrHistogram's default.
const TICKS: u32 = 5;

/// `h` (nanoseconds) as HdrHistogram's percentile distribution in
/// microseconds.
pub fn percentile_distribution(h: &Histogram<u64>) -> String {
    let us = |ns: f64| ns / 1000.0;
    let mut o = String::new();
    let _ = writeln!(o, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    for v in h.iter_quantiles(TICKS) {
        total += v.count_since_last_iteration();
        let q = v.quantile_iterated_to();
        let value = us(v.value_iterated_to() as f64);
        if q < 1.0 {
            let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
        } else {
            let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10}");
        }
    }
    let sub_buckets = 1u64 << (64 - (2 * 10u64.pow(u32::from(h.sigfig())) - 1).leading_zeros());
    let _ = writeln!(o, "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]", us(h.mean()), us(h.stdev()));
    let _ = writeln!(o, "#[Max     = {:12.3}, Total count    = {:12}]", us(h.max() as f64), h.len());
    let _ = writeln!(o, "#[Buckets = {:12}, SubBuckets     = {:12}]", h.buckets(), sub_buckets);
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_distribution_reads_as_hdrhistograms() {
        let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
        for i in 1..=10_000u64 {
            h.record(i * 1000).unwrap(); // 1 us .. 10 ms
        }
        let text = percentile_distribution(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].split_whitespace().eq(["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]));
        assert_eq!(lines[1], "");
        // Every data line: value, quantile, running count (and the ratio),
        // rising; the last reaches 100 % and the whole count.
        let data: Vec<Vec<f64>> = lines[2..]
            .iter()
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().map(|x| x.parse().unwrap()).collect())
            .collect();
        assert!(data.len() > 50, "{text}");
        assert!(data.windows(2).all(|w| w[0][0] <= w[1][0] && w[0][1] <= w[1][1] && w[0][2] <= w[1][2]));
        let last = data.last().unwrap();
        assert_eq!((last.len(), last[1], last[2]), (3, 1.0, 10_000.0));
        assert!((last[0] - 10_000.0).abs() < 10.0, "max ~10 ms in us: {}", last[0]);
        let p50 = data.iter().find(|d| d[1] >= 0.5).unwrap();
        assert!((p50[0] - 5_000.0).abs() < 10.0, "p50 ~5 ms: {}", p50[0]);
        assert!(text.contains("Total count    =        10000]"), "{text}");
        assert!(text.trim_end().ends_with("SubBuckets     =         2048]"), "{text}");
    }
}
