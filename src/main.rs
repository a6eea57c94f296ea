//! The `tailgate` command line: parse, then dispatch to the subcommand's
//! module under `src/cli/`.

mod cli;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use tailgate::{log_warn, runtime};

#[derive(Parser)]
#[command(name = "tailgate", version, about = "Kernel-bypass TCP stack and order gateway", long_about = None)]
struct Cli {
    /// More log lines (-v: connection events).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the gateway (or the echo / sockperf servers) on a backend.
    Serve(Box<cli::serve::ServeArgs>),
    /// Drive a gateway or echo server and report round-trip latency.
    Load(cli::load::LoadArgs),
    /// Attribute the slow tail of a gateway's samples to causes (docs/ATTRIBUTION.md).
    Report(cli::report::ReportArgs),
    /// A connection storm or a SYN flood against an echo server, from kernel TCP clients: how
    /// long until every client is served, and what it cost them in SYN retransmissions.
    Storm(cli::storm::StormArgs),
    /// The exchange simulator: an OUCH 5.0 venue over SoupBinTCP 3.0, with a book per symbol, a
    /// journal per account for replay, and faults on request (docs/VENUE.md).
    Exchange(cli::exchange::ExchangeArgs),
    /// Check that this host is ready for a pinned busy-poll gateway: OK / WARN / FAIL per item,
    /// with the fix (docs/TUNING.md). Exits 1 on any FAIL.
    Doctor(cli::doctor::DoctorArgs),
    /// Print the argon2id hash of a password (standard input's first line), for an account's
    /// `password_hash` in the config file (docs/CONFIG.md).
    HashPassword(cli::accounts::HashPasswordArgs),
    /// The admin interface of a running gateway: kill switch, exposure, limits (docs/ADMIN.md).
    Admin(cli::admin::AdminCmd),
    /// Print an audit journal (a `serve --journal` directory, or one segment): every order and
    /// cancel with its decision, every logon, every exchange message (docs/JOURNAL.md).
    Journal(cli::journal::JournalCmd),
}

fn main() -> ExitCode {
    // `serve --config FILE` is merged into the command line here, and
    // `serve --print-config` printed (cli/config.rs).
    let matches = match cli::config::parse_args(Cli::command(), std::env::args_os().collect()) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    tailgate::log::set_level(if cli.quiet { 0 } else { 1 + cli.verbose });
    // The event loops (serve, load) log through a queue, never blocking on stderr.
    if matches!(cli.cmd, Cmd::Serve(_) | Cmd::Load(_) | Cmd::Exchange(_)) {
        if let Err(e) = tailgate::log::start() {
            eprintln!("tailgate: warn: no log thread ({e}); logging writes stderr directly");
        }
    }
    if let Some(n) = runtime::raise_fd_limit() {
        if n < 4096 {
            log_warn!("open-file limit is {n}: raise it (ulimit -n) for more connections");
        }
    }
    let result = match cli.cmd {
        Cmd::Serve(a) => cli::serve::run(*a),
        Cmd::Load(a) => cli::load::run(a),
        Cmd::Report(a) => cli::report::run(a),
        Cmd::Doctor(a) => cli::doctor::run(a),
        Cmd::Storm(a) => cli::storm::run(a),
        Cmd::Exchange(a) => cli::exchange::run(a),
        Cmd::HashPassword(a) => cli::accounts::hash_password(a),
        Cmd::Admin(a) => cli::admin::run(a),
        Cmd::Journal(a) => cli::journal::run(a),
    };
    tailgate::log::flush();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("tailgate: error: {e}");
            ExitCode::FAILURE
        }
    }
}
