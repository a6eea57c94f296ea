//! `tailgate report --plot` and `load --hgrm`'s neighbour `--plot` write
//! SVG: here a sample log made with the library goes through the binary's
//! `report --plot`, and headless Chromium (Debian's `chromium`, which
//! scripts/test.sh installs) renders the picture; the screenshot must show
//! a drawing, not a blank page.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{run_bounded, BIN};
use tailgate::sampler::store::Store;
use tailgate::sampler::{kind, Sample};

/// A directory of its own, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let d = std::env::temp_dir().join(format!("tg-plot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A sample log of 20,000 limit orders: most take 10-40 us, one in a
/// hundred waits 2 ms behind a stall.
fn sample_log(path: &std::path::Path) {
    let mut st = Store::create(Some(path), 1 << 16).unwrap();
    for i in 0..20_000u64 {
        let t = 1_000_000_000 + i * 100_000;
        let wait = if i % 100 == 7 { 2_000_000 } else { 5_000 + (i * 7919) % 30_000 };
        st.append(&Sample {
            trace_id: i,
            t_rx_frame: t - wait,
            t_delivered: t,
            t_parsed: t + 1_000,
            t_handled: t + 3_000,
            t_tx_queued: t + 5_000,
            t_tx_done: t + 6_000,
            prev_busy_ns: if wait > 1_000_000 { 2_100_000 } else { 2_000 },
            prev_msgs: 1,
            loop_iter: i,
            msg_type: kind::LIMIT,
            ..Sample::default()
        });
    }
    st.commit();
}

fn chromium() -> Option<&'static str> {
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"].into_iter().find(|p| std::path::Path::new(p).exists())
}

#[test]
fn report_plot_writes_an_svg_that_chromium_renders() {
    let dir = Dir::new();
    let log = dir.0.join("samples.log");
    sample_log(&log);
    let svg = dir.0.join("plot.svg");
    let mut c = Command::new(BIN);
    c.args(["report", "--log", log.to_str().unwrap(), "--plot", svg.to_str().unwrap()]);
    let out = run_bounded(c, Duration::from_secs(60));
    assert!(out.status.success(), "report: {}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.starts_with("<svg") && text.trim_end().ends_with("</svg>"));
    for stage in ["wait", "parse", "handler", "total", "99.9%", "loop_stall"] {
        assert!(text.contains(&format!(">{stage}<")), "no {stage} in the picture");
    }
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("TAILGATE_REQUIRE_LAB").is_none(),
            "chromium is not installed (scripts/test.sh installs it)"
        );
        eprintln!("skipped the rendering: no chromium (apt-get install chromium)");
        return;
    };
    let png = dir.0.join("plot.png");
    let profile = dir.0.join("profile");
    let mut c = Command::new(browser);
    c.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=900,700",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--screenshot={}", png.display()))
    .arg(format!("file://{}", svg.display()));
    let out = run_bounded(c, Duration::from_secs(120));
    assert!(png.exists(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0u8; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    assert_eq!((info.width, info.height), (900, 700));
    // A drawing: white mostly, dark text and axes, and the lines' colours.
    let white = pixels.iter().filter(|p| p[..3].iter().all(|&c| c > 240)).count();
    let dark = pixels.iter().filter(|p| p[..3].iter().all(|&c| c < 90)).count();
    let coloured = pixels.iter().filter(|p| p[..3].iter().max().unwrap() - p[..3].iter().min().unwrap() > 80).count();
    let n = pixels.len();
    assert!(white > n / 2, "mostly background: {white} of {n}");
    assert!(dark > 500, "text and axes: {dark} dark pixels");
    assert!(coloured > 500, "the distribution's lines: {coloured} coloured pixels");
}
