//! `serve`'s admin flags (`--admin ADDR`, `--admin-token-file`,
//! `--admin-audit`), and `tailgate admin`: the client of that endpoint
//! (docs/ADMIN.md).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use tailgate::admin::{self, audit::Audit, Admin, AdminServer};
use tailgate::risk::Risk;
use tailgate::{log_info, log_warn};

use super::config::ADMIN;

#[derive(Args)]
pub(crate) struct AdminArgs {
    /// Serve the admin interface (kill switch, exposure, limits) on this address; keep it on
    /// loopback. Needs --admin-token-file and --admin-audit.
    #[arg(long, value_name = "ADDR", help_heading = ADMIN)]
    pub(crate) admin: Option<SocketAddr>,
    /// The admin token: this file's first line (at least 16 characters; the file readable only by
    /// its owner). Requests without `Authorization: Bearer TOKEN` get 401.
    #[arg(long, value_name = "FILE", help_heading = ADMIN)]
    pub(crate) admin_token_file: Option<PathBuf>,
    /// Append every admin request (allowed or not) to this file, one JSON line each, fsynced
    /// before the answer.
    #[arg(long, value_name = "FILE", help_heading = ADMIN)]
    pub(crate) admin_audit: Option<PathBuf>,
}

/// The token in `path`'s first line.
pub(crate) fn token(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let t = text.lines().next().unwrap_or_default().trim();
    if t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "{flag} {}: the first line must be a token of 16 or more printable characters",
            path.display()
        ));
    }
    Ok(t.as_bytes().to_vec())
}

impl AdminArgs {
    /// Start the endpoint, if asked for.
    pub(crate) fn start(
        &self,
        risk: &Arc<Risk>,
        cores: Vec<usize>,
        pin: Option<usize>,
    ) -> Result<Option<AdminServer>, String> {
        let Some(addr) = self.admin else {
            if self.admin_token_file.is_some() || self.admin_audit.is_some() {
                return Err("--admin-token-file and --admin-audit go with --admin ADDR".into());
            }
            return Ok(None);
        };
        let tf = self
            .admin_token_file
            .as_ref()
            .ok_or("--admin needs --admin-token-file (every request must carry the token)")?;
        let audit =
            self.admin_audit.as_ref().ok_or("--admin needs --admin-audit FILE (every admin action is audited)")?;
        let t = token(tf, "--admin-token-file")?;
        {
            use std::os::unix::fs::PermissionsExt;
            if std::fs::metadata(tf).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
                return Err(format!("--admin-token-file {}: readable by other users: chmod 600 it", tf.display()));
            }
        }
        if !addr.ip().is_loopback() {
            log_warn!("--admin {addr}: not a loopback address: the kill switch is reachable from the network (token still needed)");
        }
        let server = admin::start(Admin::new(risk.clone(), t, Audit::open(audit)?), addr, cores, pin)?;
        log_info!("admin on http://{} (token from {}, audit to {})", server.addr, tf.display(), audit.display());
        Ok(Some(server))
    }
}

#[derive(Args)]
pub(crate) struct AdminCmd {
    /// The gateway's --admin address.
    #[arg(long, default_value = "127.0.0.1:9180")]
    addr: SocketAddr,
    /// The admin token's file (its first line).
    #[arg(long, value_name = "FILE")]
    token_file: PathBuf,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Every account: sessions, exposure, kill state.
    Accounts,
    /// One account's exposure, open orders and effective limits.
    Show { account: String },
    /// Block an account's new orders (or every account's, with --all) and cancel its working
    /// orders at the exchange.
    Kill {
        account: Option<String>,
        #[arg(long)]
        all: bool,
        /// Log the sessions out too.
        #[arg(long)]
        logout: bool,
    },
    /// Lift a kill (of an account, or of the whole gateway with --all).
    Enable {
        account: Option<String>,
        #[arg(long)]
        all: bool,
    },
    /// Change limits: KEY=VALUE ... (VALUE `default` clears), of an account or, with --defaults,
    /// the defaults.
    Set {
        account: Option<String>,
        #[arg(long)]
        defaults: bool,
        #[arg(required = true)]
        changes: Vec<String>,
    },
    /// The effective limits of an account (or the defaults).
    Limits { account: Option<String> },
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn target(account: &Option<String>, all: bool) -> Result<String, String> {
    match (account, all) {
        (Some(a), false) => Ok(format!("account={}", enc(a))),
        (None, true) => Ok("all".into()),
        _ => Err("name an account, or give --all".into()),
    }
}

/// One request; the status and body.
fn request(addr: SocketAddr, token: &[u8], method: &str, target: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| format!("--addr {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        String::from_utf8_lossy(token)
    );
    s.write_all(head.as_bytes()).map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).map_err(|e| format!("--addr {addr}: reading the answer: {e}"))?;
    let split = resp.windows(4).position(|w| w == b"\r\n\r\n").ok_or("not an HTTP answer")?;
    let head = String::from_utf8_lossy(&resp[..split]);
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or("not an HTTP answer")?;
    Ok((status, String::from_utf8_lossy(&resp[split + 4..]).trim_end().to_string()))
}

pub(crate) fn run(a: AdminCmd) -> Result<ExitCode, String> {
    let t = token(&a.token_file, "--token-file")?;
    let (method, tgt) = match &a.action {
        Action::Accounts => ("GET", "/accounts".to_string()),
        Action::Show { account } => ("GET", format!("/accounts/{}", enc(account))),
        Action::Kill { account, all, logout } => {
            let mut q = target(account, *all)?;
            if *logout {
                q.push_str("&logout=1");
            }
            ("POST", format!("/kill?{q}"))
        }
        Action::Enable { account, all } => ("POST", format!("/enable?{}", target(account, *all)?)),
        Action::Set { account, defaults, changes } => {
            let mut q: Vec<String> = match (account, defaults) {
                (Some(a), false) => vec![format!("account={}", enc(a))],
                (None, true) => vec![],
                _ => return Err("name an account, or give --defaults".into()),
            };
            for c in changes {
                let (k, v) = c.split_once('=').ok_or_else(|| format!("{c:?}: expected KEY=VALUE"))?;
                q.push(format!("{}={}", enc(k), enc(v)));
            }
            ("POST", format!("/limits?{}", q.join("&")))
        }
        Action::Limits { account } => match account {
            Some(acct) => ("GET", format!("/limits?account={}", enc(acct))),
            None => ("GET", "/limits".to_string()),
        },
    };
    let (status, body) = request(a.addr, &t, method, &tgt)?;
    println!("{body}");
    if status == 200 {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("tailgate: admin: {method} {tgt}: HTTP {status}");
        Ok(ExitCode::FAILURE)
    }
}
