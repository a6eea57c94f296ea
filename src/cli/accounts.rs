//! The accounts and limits of `serve --config FILE` (its `[[accounts]]`,
//! `[limits]` and `[prices]` tables), and `tailgate hash-password`.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::Args;
use tailgate::risk::auth::{self, Port, Verifier};
use tailgate::risk::Risk;
use tailgate::{log_info, log_warn};

/// The gateway's accounts and limits: from the config file, or none.
pub(crate) fn load(config: Option<&Path>) -> Result<Risk, String> {
    let Some(path) = config else { return Ok(Risk::open()) };
    let text = std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    let cfg = tailgate::risk::config::parse(&text, &path.display().to_string())?;
    for w in &cfg.warnings {
        log_warn!("{w}");
    }
    Ok(Risk::new(cfg))
}

/// The verifier and each loop's port, handed out once per loop.
pub(crate) struct Auth {
    pub(crate) verifier: Option<Verifier>,
    ports: Mutex<Vec<Option<Port>>>,
}

impl Auth {
    /// Start the verifier when `risk` has accounts, for `loops` loops.
    pub(crate) fn start(risk: &Arc<Risk>, loops: usize, cores: Vec<usize>, pin: Option<usize>) -> Result<Auth, String> {
        if !risk.needs_passwords() {
            return Ok(Auth { verifier: None, ports: Mutex::new(Vec::new()) });
        }
        let (v, ports) = auth::start(risk.clone(), loops, cores, pin)?;
        log_info!(
            "accounts: {} configured; logons are verified off the loops (argon2id), {} waiting per loop at most",
            risk.accounts.list.len(),
            auth::QUEUE
        );
        Ok(Auth { verifier: Some(v), ports: Mutex::new(ports.into_iter().map(Some).collect()) })
    }

    /// Loop `i`'s port (once).
    pub(crate) fn port(&self, i: usize) -> Option<Port> {
        self.ports.lock().ok()?.get_mut(i)?.take()
    }
}

#[derive(Args)]
pub(crate) struct HashPasswordArgs {
    /// Read the password from this file's first line (default: standard input's first line).
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// `tailgate hash-password`: print the argon2id hash of a password, for an
/// account's `password_hash`.
pub(crate) fn hash_password(a: HashPasswordArgs) -> Result<ExitCode, String> {
    let mut line = String::new();
    match &a.password_file {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("--password-file {}: {e}", p.display()))?;
            line = text.lines().next().unwrap_or_default().to_string();
        }
        None => {
            std::io::stdin().lock().read_line(&mut line).map_err(|e| format!("reading standard input: {e}"))?;
        }
    }
    let pw = line.trim_end_matches(['\n', '\r']);
    if tailgate::proto::Password::new(pw).is_none_or(|p| p.is_empty()) {
        return Err(format!(
            "the password must be 1 to {} printable ASCII characters (the Logon's field)",
            tailgate::proto::PASSWORD_LEN
        ));
    }
    println!("{}", auth::hash_password(pw.as_bytes())?);
    Ok(ExitCode::SUCCESS)
}

/// One line per account for the exit log: sessions, exposure, checks.
pub(crate) fn exposure_lines(risk: &Risk) -> Vec<String> {
    use std::sync::atomic::Ordering::Relaxed;
    let a = &risk.accounts;
    (0..a.list.len())
        .map(|i| {
            let s = &a.state[i];
            format!(
                "account {}: sessions={} killed={} open_notional={} open_buy={} open_sell={} net={} accepted={} refused={}",
                a.name(i),
                s.sessions.load(Relaxed),
                s.killed.load(Relaxed),
                s.gross(),
                s.open_buy.load(Relaxed),
                s.open_sell.load(Relaxed),
                s.net.load(Relaxed),
                s.accepted.load(Relaxed),
                s.refused.load(Relaxed)
            )
        })
        .collect()
}
