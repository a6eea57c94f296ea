//! `tailgate report`: attribute the slow tail of a gateway's samples
//! (docs/ATTRIBUTION.md).

use std::process::ExitCode;

use clap::Args;

use tailgate::sampler::attribution::{self, Options};
use tailgate::sampler::endpoint::http_get;
use tailgate::sampler::store;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["live", "log"])))]
pub(crate) struct ReportArgs {
    /// A running gateway's --metrics address: read its recent samples over HTTP.
    #[arg(long, value_name = "ADDR")]
    pub(crate) live: Option<String>,
    /// A sample log written with --sample-log.
    #[arg(long, value_name = "FILE")]
    pub(crate) log: Option<std::path::PathBuf>,
    /// The tail is every message at least this slow (microseconds in the gateway).
    /// Default: the p99.9 of the samples.
    #[arg(long, value_name = "US")]
    pub(crate) threshold_us: Option<f64>,
    /// A stage or loop interval counts towards a cause from this long (microseconds).
    #[arg(long, default_value_t = 20.0, value_name = "US")]
    pub(crate) significant_us: f64,
    /// Print the report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// List every tail message with its cause, stages and flags.
    #[arg(long)]
    pub(crate) messages: bool,
    /// Draw the latency percentile distribution of each stage (HdrHistogram style, on a log
    /// axis of 90%, 99%, 99.9%, 99.99%) and the tail's causes into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    pub(crate) plot: Option<std::path::PathBuf>,
}

fn us_to_ns(v: f64, flag: &str) -> Result<u64, String> {
    if !(v.is_finite() && (0.0..=1e9).contains(&v)) {
        return Err(format!("{flag} {v}: must be between 0 and 1e9 microseconds"));
    }
    Ok((v * 1000.0) as u64)
}

pub(crate) fn run(a: ReportArgs) -> Result<ExitCode, String> {
    let (header, samples) = match (&a.live, &a.log) {
        (Some(addr), _) => {
            let body = http_get(addr, "/samples")?;
            store::parse(&body).map_err(|e| format!("--live {addr}: {e}"))?
        }
        (None, Some(path)) => store::read(path)?,
        (None, None) => return Err("give --live ADDR or --log FILE".into()),
    };
    let opts = Options {
        threshold_ns: a.threshold_us.map(|t| us_to_ns(t, "--threshold-us")).transpose()?,
        significant_ns: us_to_ns(a.significant_us, "--significant-us")?,
        messages: a.messages,
    };
    let r = attribution::analyse(&samples, header.dropped, opts);
    if let Some(path) = &a.plot {
        std::fs::write(path, attribution::plot(&samples, &r)).map_err(|e| format!("--plot {}: {e}", path.display()))?;
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).map_err(|e| format!("--json: {e}"))?);
    } else {
        print!("{}", r.render());
    }
    Ok(ExitCode::SUCCESS)
}
