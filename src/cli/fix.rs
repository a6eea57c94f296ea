//! serve's FIX flags (`--fix-port` and the rest), and where the FIX
//! sessions' state is kept: a file in `--fix-state DIR` (default: the
//! `--journal` directory) that outlasts the process, written to disk when
//! the gateway stops, or memory when neither is given.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use clap::Args;
use tailgate::app::orders::{Comp, FixConfig};
use tailgate::fix::slots::Region;
use tailgate::{log_info, log_warn};

use super::config::LISTEN;

/// The file in the state directory.
pub(crate) const STATE_FILE: &str = "fix-sessions.tgfs";

#[derive(Args)]
pub(crate) struct FixArgs {
    /// Also take FIX 4.4 sessions on this port (--app orders; docs/FIX.md), beside the binary
    /// protocol on --port.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..), help_heading = LISTEN)]
    pub(crate) fix_port: Option<u16>,
    /// The gateway's FIX CompID: a client's TargetCompID (56) must name it.
    #[arg(long, default_value = "TAILGATE", value_parser = parse_comp_id, help_heading = LISTEN)]
    pub(crate) fix_comp_id: String,
    /// Bytes of sent application messages each FIX session keeps for its ResendRequests
    /// (older ones are gap-filled, and counted).
    #[arg(long, default_value_t = 1 << 20, value_parser = clap::value_parser!(u64).range(4096..=64 << 20),
          help_heading = LISTEN)]
    pub(crate) fix_store_bytes: u64,
    /// Keep the FIX sessions' sequence numbers, next ExecIDs and sent messages in
    /// DIR/fix-sessions.tgfs, so that a restarted gateway resumes each session where it was
    /// (docs/FIX.md). Default: the --journal directory; with neither, they live in memory and
    /// every session starts again at 1 after a restart.
    #[arg(long, value_name = "DIR", help_heading = LISTEN)]
    pub(crate) fix_state: Option<PathBuf>,
}

fn parse_comp_id(s: &str) -> Result<String, String> {
    match Comp::new(s.as_bytes()) {
        Some(_) => Ok(s.to_string()),
        None => Err("a CompID is 1-32 printable ASCII characters, no spaces".into()),
    }
}

impl FixArgs {
    /// The FIX listener's settings on `port`.
    pub(crate) fn config(&self, port: u16) -> FixConfig {
        FixConfig {
            port,
            comp_id: Comp::new(self.fix_comp_id.as_bytes()).unwrap_or_default(),
            store_bytes: self.fix_store_bytes as usize,
            ..Default::default()
        }
    }

    /// The flags agree with the rest of serve's: the order gateway, a port of
    /// its own, one loop.
    pub(crate) fn check(&self, orders: bool, port: u16, loops: usize) -> Result<(), String> {
        match self.fix_port {
            None if self.fix_state.is_some() => Err("--fix-state: give --fix-port too".into()),
            None => Ok(()),
            Some(_) if !orders => Err("--fix-port: FIX sessions are for --app orders".into()),
            Some(f) if f == port => Err(format!("--fix-port {f}: the binary protocol has that port (--port)")),
            // A FIX session's state is its loop's; a reconnect may land on another.
            Some(_) if loops > 1 => Err("--fix-port: FIX sessions need a single loop for now (one --core)".into()),
            Some(_) => Ok(()),
        }
    }

    /// The sessions' region: the state file's (made if absent, its sessions
    /// resumed) when a directory is given, else anonymous memory.
    ///
    /// No sync while the gateway runs: the page cache keeps what the loop
    /// stores through a process crash, and a host crash makes the file
    /// stale whatever was synced (its sessions start again at 1). A
    /// periodic `fdatasync` bought nothing and stalled the loop's stores
    /// for milliseconds (docs/BENCHMARKS.md, FIX).
    pub(crate) fn open(&self, journal: Option<&Path>) -> Result<FixState, String> {
        let none = FixState { region: Mutex::new(None), file: None };
        if self.fix_port.is_none() {
            return Ok(none);
        }
        let cfg = self.config(0);
        let Some(dir) = self.fix_state.as_deref().or(journal) else {
            log_warn!(
                "FIX sessions' sequence numbers are kept in memory only: after a restart every session starts at 1 \
                 (give --fix-state DIR or --journal DIR to keep them)"
            );
            let r = Region::anonymous(cfg.max_sessions, cfg.store_bytes)
                .map_err(|e| format!("--fix-port: memory for the FIX sessions' state: {e}"))?;
            return Ok(FixState { region: Mutex::new(Some(r)), file: None });
        };
        std::fs::create_dir_all(dir).map_err(|e| format!("--fix-state {}: {e}", dir.display()))?;
        let path = dir.join(STATE_FILE);
        let mut region = Region::open(&path, self.fix_comp_id.as_bytes(), cfg.max_sessions, cfg.store_bytes)?;
        log_info!("FIX sessions kept in {} (written to disk when the gateway stops)", path.display());
        if region.stale {
            log_warn!(
                "FIX session state {}: left open by an earlier boot (the host went down with the gateway running): \
                 it may be older than what was sent, so every session starts again at 1 and must log on with \
                 MsgSeqNum 1 or ResetSeqNumFlag=Y",
                path.display()
            );
        }
        // The loop needs only the slots; the file is for the end.
        let file = region.file.take();
        Ok(FixState { region: Mutex::new(Some(region)), file })
    }
}

/// The start-up log of what the state held.
pub(crate) fn log_restored(found: &tailgate::app::orders::Restored) {
    if found.sessions > 0 {
        log_info!("FIX: {} sessions resumed from before the restart", found.sessions);
    }
    if found.emptied > 0 {
        log_warn!(
            "FIX: {} sessions' stores were torn (a power loss?): emptied (a ResendRequest is gap-filled), their \
             sequence numbers kept",
            found.emptied
        );
    }
    if found.stale > 0 {
        log_warn!("FIX: {} sessions start again at 1 (their state may be stale)", found.stale);
    }
}

/// The region the loop takes, and a handle on the file (to write it to
/// disk and mark it closed cleanly at the end).
pub(crate) struct FixState {
    region: Mutex<Option<Region>>,
    file: Option<std::fs::File>,
}

impl FixState {
    /// The sessions' region (once).
    pub(crate) fn take(&self) -> Option<Region> {
        self.region.lock().ok()?.take()
    }

    /// After the loops: the file written to disk and marked closed cleanly.
    pub(crate) fn close(self) {
        if let Some(f) = self.file {
            if let Err(e) = f.sync_data().and_then(|_| Region::close_clean(&f)) {
                log_warn!("FIX session state: writing it to disk: {e}");
            }
        }
    }
}
