//! The admin audit log: one JSON line per admin request, allowed or not
//! (the time it came, peer, method, route, query, status, answer),
//! appended and fsynced before the request is answered (a refused one,
//! 401, is written but not synced: a flood of them costs no fsync each). The file is created 0600, and
//! a symbolic link in its place is refused.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::Call;

/// The audit log (admin thread only).
pub struct Audit {
    file: Option<Mutex<File>>,
}

impl Audit {
    /// Append to `path`.
    pub fn open(path: &Path) -> Result<Audit, String> {
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| format!("--admin-audit {}: {e}", path.display()))?;
        Ok(Audit { file: Some(Mutex::new(f)) })
    }

    /// Log lines only (tests).
    pub fn none() -> Audit {
        Audit { file: None }
    }

    /// Append request `c`, which came at `ts` (ns since the epoch).
    pub fn record(&self, c: &Call<'_>, ts: u64, status: u16, answer: &Value) {
        let line = json!({
            "ts_ns": ts,
            "peer": c.peer.to_string(),
            "method": c.method,
            "path": c.path,
            "query": c.query,
            "status": status,
            "answer": answer,
        });
        if status == 401 {
            crate::log_warn!("admin: {} {} from {}: 401 (no valid token)", c.method, c.path, c.peer);
        }
        let Some(f) = &self.file else { return };
        let mut f = f.lock().unwrap_or_else(|e| e.into_inner());
        // A refused request is written and not synced: a stranger's flood
        // of them does not queue the operator's kill behind fsyncs.
        let r = writeln!(f, "{line}").and_then(|_| if status == 401 { Ok(()) } else { f.sync_data() });
        if let Err(e) = r {
            crate::log_warn!("admin: cannot append to the audit log: {e}");
        }
    }
}
