//! `tailgate doctor`: host readiness checks (docs/TUNING.md).

use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub(crate) struct DoctorArgs {
    /// The gateway's interface.
    #[arg(long)]
    pub(crate) iface: String,
    /// The core the gateway's loop will be pinned to, or a list (0,1 or 2-3): one per --queue,
    /// in the same order; each is checked (isolated, free of IRQs, governor).
    #[arg(long, value_parser = super::parse_list)]
    pub(crate) core: super::List,
    /// The NIC queue the AF_XDP socket will bind, or a list, one per --core: the queue count is
    /// checked against it, and each queue's IRQs against the loops' cores.
    #[arg(long, default_value = "0", value_parser = super::parse_list)]
    pub(crate) queue: super::List,
    /// Also bind an AF_XDP socket to the queue for a moment, to find out zero-copy, need_wakeup and
    /// the busy-poll options for real (on some NICs this reconfigures the queue: not on a live one).
    #[arg(long)]
    pub(crate) probe: bool,
    /// Print the findings as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

pub(crate) fn run(a: DoctorArgs) -> Result<ExitCode, String> {
    let opts = tailgate::doctor::Options {
        iface: a.iface,
        cores: a.core.0,
        queues: a.queue.0.iter().map(|&q| q as u32).collect(),
        probe: a.probe,
    };
    let v = tailgate::doctor::run(&opts);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&v).map_err(|e| format!("--json: {e}"))?);
    } else {
        print!("{}", tailgate::doctor::render(&v));
    }
    let fail = v.iter().any(|x| x.status == tailgate::doctor::Status::Fail);
    Ok(if fail { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}
