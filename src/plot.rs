//! Pictures of latency as SVG text (`report --plot`, `load --plot`): the
//! percentile distribution as HdrHistogram's plotter draws it (the x axis
//! is 1/(1-p) on a log scale, labelled 0%, 90%, 99%, 99.9%, 99.99%,
//! 99.999%; the y axis latency on a log scale), one line per series, and
//! beneath it a bar per cause of the tail. Plain SVG 1.1, no dependency, no
//! script: any browser or image viewer shows it.

use std::fmt::Write as _;

/// One line: (quantile in [0, 1), value in microseconds), x rising.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// The x axis ends at 99.999 % (five nines).
const MAX_NINES: f64 = 5.0;
/// Steps along the x axis, in nines.
const STEP: f64 = 0.05;

impl Series {
    /// The quantiles from 0 to as many nines as `count` values resolve (at
    /// most five), in steps of [`STEP`] nines, each with `value_at(q)`.
    fn stepped(name: &str, count: u64, value_at: impl Fn(f64) -> f64) -> Series {
        let mut points = Vec::new();
        if count > 0 {
            let nines = (count as f64).log10().min(MAX_NINES);
            let mut x = 0.0;
            while x <= nines + 1e-9 {
                let q = 1.0 - 10f64.powf(-x);
                points.push((q, value_at(q)));
                x += STEP;
            }
        }
        Series { name: name.to_string(), points }
    }

    /// From values in nanoseconds, sorted ascending.
    pub fn from_sorted_ns(name: &str, sorted: &[u64]) -> Series {
        Series::stepped(name, sorted.len() as u64, |q| {
            let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            sorted[i] as f64 / 1000.0
        })
    }

    /// From an HdrHistogram of nanoseconds.
    pub fn from_hist_ns(name: &str, h: &hdrhistogram::Histogram<u64>) -> Series {
        Series::stepped(name, h.len(), |q| h.value_at_quantile(q) as f64 / 1000.0)
    }
}

const W: f64 = 900.0;
const PLOT_H: f64 = 420.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 190.0;
const TOP: f64 = 50.0;
const BAR_H: f64 = 22.0;
const COLORS: [&str; 10] =
    ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn nines(q: f64) -> f64 {
    -(1.0 - q).max(1e-12).log10()
}

fn label_us(us: f64) -> String {
    match us {
        v if v >= 1_000_000.0 => format!("{} s", v / 1_000_000.0),
        v if v >= 1000.0 => format!("{} ms", v / 1000.0),
        v if v >= 1.0 => format!("{v} us"),
        v => format!("{} ns", v * 1000.0),
    }
}

/// The picture: `title`, the percentile distribution of `series`, and a
/// bar per `(cause, count)` of the tail (none: no bars).
pub fn svg(title: &str, series: &[Series], causes: &[(String, usize)]) -> String {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1)).filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi > 0.0 { (lo, hi) } else { (1.0, 10.0) };
    let (y0, y1) = (lo.log10().floor(), hi.log10().ceil().max(lo.log10().floor() + 1.0));
    let x1 = series.iter().flat_map(|s| s.points.last()).map(|p| nines(p.0)).fold(1.0f64, f64::max).ceil();
    let pw = W - LEFT - RIGHT;
    let px = |q: f64| LEFT + nines(q) / x1 * pw;
    let py = |v: f64| TOP + PLOT_H - (v.max(lo).log10() - y0) / (y1 - y0) * PLOT_H;
    let bars_h = if causes.is_empty() { 0.0 } else { 50.0 + BAR_H * causes.len() as f64 };
    let h = TOP + PLOT_H + 60.0 + bars_h;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = writeln!(o, r#"<text x="{LEFT}" y="28" font-size="16" font-weight="bold">{}</text>"#, esc(title));
    // Axes and grid: nines across, decades up.
    for k in 0..=(x1 as usize) {
        let x = LEFT + k as f64 / x1 * pw;
        let label = ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%"].get(k).copied().unwrap_or("");
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + PLOT_H,
            TOP + PLOT_H + 18.0
        );
    }
    for d in (y0 as i32)..=(y1 as i32) {
        let y = py(10f64.powi(d));
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            label_us(10f64.powi(d))
        );
    }
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{TOP}" width="{pw:.1}" height="{PLOT_H}" fill="none" stroke="#333"/><text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"##,
        LEFT + pw / 2.0,
        TOP + PLOT_H + 38.0
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle">latency</text>"#,
        TOP + PLOT_H / 2.0
    );
    for (i, s) in series.iter().enumerate() {
        let c = COLORS[i % COLORS.len()];
        // A value of 0 (no time in the stage) has no place on a log axis.
        let pts: Vec<String> =
            s.points.iter().filter(|p| p.1 > 0.0).map(|&(q, v)| format!("{:.1},{:.1}", px(q), py(v))).collect();
        if !pts.is_empty() {
            let _ = writeln!(o, r#"<polyline fill="none" stroke="{c}" stroke-width="2" points="{}"/>"#, pts.join(" "));
        }
        let ly = TOP + 10.0 + 18.0 * i as f64;
        let lx = LEFT + pw + 14.0;
        let _ = writeln!(
            o,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{c}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 20.0,
            lx + 26.0,
            ly + 4.0,
            esc(&s.name)
        );
    }
    if !causes.is_empty() {
        let top = TOP + PLOT_H + 70.0;
        let total: usize = causes.iter().map(|c| c.1).sum();
        let most = causes.iter().map(|c| c.1).max().unwrap_or(1).max(1) as f64;
        let _ = writeln!(
            o,
            r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">The tail's causes ({total} messages)</text>"#,
            top - 12.0
        );
        for (i, (name, n)) in causes.iter().enumerate() {
            let y = top + BAR_H * i as f64;
            let bw = *n as f64 / most * (pw - 160.0);
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text><rect x="{:.1}" y="{:.1}" width="{bw:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{n} ({:.0}%)</text>"#,
                LEFT + 150.0,
                y + 15.0,
                esc(name),
                LEFT + 156.0,
                y + 3.0,
                BAR_H - 6.0,
                COLORS[i % COLORS.len()],
                LEFT + 160.0 + bw,
                y + 15.0,
                100.0 * *n as f64 / total.max(1) as f64
            );
        }
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_distribution_goes_as_far_as_its_count_and_the_picture_is_svg() {
        let sorted: Vec<u64> = (1..=10_000u64).map(|i| i * 1000).collect();
        let s = Series::from_sorted_ns("total <all>", &sorted);
        assert_eq!(s.points[0], (0.0, 1.0));
        let (q, v) = *s.points.last().unwrap();
        assert!((nines(q) - 4.0).abs() < 1e-6 && v == 9_999.0, "the 9,999th of 10,000: {q} {v}");
        assert!(s.points.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
        let p99 = s.points.iter().find(|p| p.0 >= 0.99 - 1e-9).unwrap();
        assert_eq!(p99.1, 9_900.0);
        let text = svg("p & q", &[s], &[("loop_stall".into(), 30), ("none".into(), 10)]);
        assert!(text.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(text.trim_end().ends_with("</svg>"));
        assert!(text.contains("p &amp; q") && text.contains("total &lt;all&gt;"), "escaped");
        for label in ["0%", "90%", "99%", "99.9%", "99.99%", "1 us", "10 ms", "loop_stall", "30 (75%)"] {
            assert!(text.contains(&format!(">{label}<")), "no {label}: {text}");
        }
        assert_eq!(text.matches("<polyline").count(), 1);
    }

    #[test]
    fn nothing_to_draw_is_still_a_picture() {
        let text = svg("empty", &[Series::from_sorted_ns("none", &[])], &[]);
        assert!(text.contains("<svg") && text.contains("</svg>") && !text.contains("<polyline"));
    }
}
