//! `serve`'s upstream flags: where each loop's session to the exchange
//! goes, as whom, and where its numbers are kept (docs/VENUE.md).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use clap::Args;

use super::config::UPSTREAM;
use tailgate::app::orders::UpstreamConfig;
use tailgate::upstream::soup_client::SoupClientConfig;
use tailgate::upstream::state::{self, SessionState};
use tailgate::venue::soup;

#[derive(Args)]
pub(crate) struct UpstreamArgs {
    /// The exchange: each loop logs in to this OUCH 5.0 / SoupBinTCP 3.0 address from its own
    /// loop (one session per loop) and sends it the orders of the client sessions it serves.
    /// `none`: orders are acknowledged by the gateway itself (a test mode: nothing is traded).
    #[arg(long, value_name = "HOST:PORT|none", default_value = "none", help_heading = UPSTREAM)]
    pub(crate) upstream: String,
    /// The SoupBinTCP username of a loop's session (1-6 characters; repeatable: one per loop,
    /// in loop order).
    #[arg(long, value_name = "USER", help_heading = UPSTREAM)]
    pub(crate) upstream_user: Vec<String>,
    /// A file whose first line is the sessions' password (1-10 characters). Kept out of the
    /// command line, where any user of the host could read it.
    #[arg(long, value_name = "FILE", help_heading = UPSTREAM)]
    pub(crate) upstream_password_file: Option<PathBuf>,
    /// Where each session keeps the next sequence number it has not processed, and the order
    /// tokens it may have used (DIR/USER.state), so that a restarted gateway resumes the
    /// session from there. Required with --upstream.
    #[arg(long, value_name = "DIR", help_heading = UPSTREAM)]
    pub(crate) upstream_state: Option<PathBuf>,
    /// Orders at the exchange (not yet filled, cancelled or rejected) per loop, at most; an order
    /// beyond is rejected `too_many_open_orders`.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=10_000_000), help_heading = UPSTREAM)]
    pub(crate) max_live_orders: u64,
}

/// The sessions to run: one per loop.
pub(crate) struct UpstreamPlan {
    pub(crate) addr: SocketAddr,
    pub(crate) sessions: Vec<UpstreamConfig>,
    states: Vec<Arc<SessionState>>,
}

fn resolve(s: &str) -> Result<SocketAddr, String> {
    let addrs = s.to_socket_addrs().map_err(|e| format!("--upstream {s}: {e} (expected HOST:PORT or none)"))?;
    let mut v4 = addrs.filter(SocketAddr::is_ipv4);
    v4.next().ok_or_else(|| format!("--upstream {s}: no IPv4 address"))
}

fn password(path: &std::path::Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--upstream-password-file {}: {e}", path.display()))?;
    let pw = text.lines().next().unwrap_or_default().trim().to_string();
    if pw.is_empty() || pw.len() > soup::PASSWORD_LEN || !pw.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "--upstream-password-file {}: the first line must be 1-{} printable characters",
            path.display(),
            soup::PASSWORD_LEN
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path) {
            if m.permissions().mode() & 0o077 != 0 {
                tailgate::log_warn!(
                    "--upstream-password-file {}: readable by other users (chmod 600 it)",
                    path.display()
                );
            }
        }
    }
    Ok(pw)
}

impl UpstreamArgs {
    /// `None`: `--upstream none`.
    pub(crate) fn plan(&self) -> Result<Option<UpstreamPlan>, String> {
        if self.upstream == "none" {
            if !self.upstream_user.is_empty() || self.upstream_password_file.is_some() {
                return Err("--upstream-user and --upstream-password-file need --upstream HOST:PORT".into());
            }
            return Ok(None);
        }
        let addr = resolve(&self.upstream)?;
        if self.upstream_user.is_empty() {
            return Err("--upstream needs --upstream-user USER (one per loop)".into());
        }
        for u in &self.upstream_user {
            if u.is_empty() || u.len() > soup::USERNAME_LEN || !u.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(format!("--upstream-user {u:?}: 1-{} letters or digits", soup::USERNAME_LEN));
            }
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(u) = self.upstream_user.iter().find(|u| !seen.insert(u.to_ascii_lowercase())) {
            return Err(format!("--upstream-user {u}: given twice (each loop needs its own session)"));
        }
        let pw =
            password(self.upstream_password_file.as_deref().ok_or("--upstream needs --upstream-password-file FILE")?)?;
        let dir = self.upstream_state.as_deref().ok_or(
            "--upstream needs --upstream-state DIR (where each session keeps the next sequence number to process)",
        )?;
        let mut sessions = Vec::new();
        let mut states = Vec::new();
        for u in &self.upstream_user {
            let st = SessionState::open(dir, u).map_err(|e| format!("--upstream-state: {e}"))?;
            states.push(st.clone());
            sessions.push(UpstreamConfig { addr, soup: SoupClientConfig::new(u, &pw), username: u.clone(), state: st });
        }
        Ok(Some(UpstreamPlan { addr, sessions, states }))
    }
}

impl UpstreamPlan {
    /// Start the thread that writes the sessions' numbers; it writes a last
    /// time and ends when `stop` is set.
    pub(crate) fn keeper(&self, stop: Arc<AtomicBool>) -> Result<std::thread::JoinHandle<()>, String> {
        let states = self.states.clone();
        std::thread::Builder::new()
            .name("tg-upstate".into())
            .spawn(move || state::keeper(states, stop))
            .map_err(|e| format!("starting the upstream state thread: {e}"))
    }
}
