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

/// Bytes of a refused request's method, path and query kept in its record.
pub const REFUSED_KEEP: usize = 256;

/// `s`, cut to at most `keep` bytes on a character boundary, with "..."
/// after a cut.
fn cut(s: &str, keep: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= keep {
        return s.into();
    }
    let mut end = keep;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end]).into()
}

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

    /// Append request `c`, which came at `ts` (ns since the epoch). A
    /// refused request's path and query are cut to [`REFUSED_KEEP`] bytes
    /// (marked): a stranger's long URIs do not fill the disk the journal
    /// may share.
    pub fn record(&self, c: &Call<'_>, ts: u64, status: u16, answer: &Value) {
        let keep = if status == 401 { REFUSED_KEEP } else { usize::MAX };
        let line = json!({
            "ts_ns": ts,
            "peer": c.peer.to_string(),
            "method": cut(c.method, keep),
            "path": cut(c.path, keep),
            "query": cut(c.query, keep),
            "status": status,
            "answer": answer,
        });
        if status == 401 {
            crate::log_warn!("admin: {} {} from {}: 401 (no valid token)", cut(c.method, 64), cut(c.path, 64), c.peer);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_requests_long_uri_is_cut_and_an_allowed_one_kept() {
        let path = std::env::temp_dir().join(format!("tailgate-audit-test-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let a = Audit::open(&path).unwrap();
        let long = "q".repeat(60_000);
        let peer = "127.0.0.1:5000".parse().unwrap();
        let c = Call { method: "GET", path: "/accounts/é", query: &long, authorization: None, peer };
        a.record(&c, 1, 401, &Value::Null);
        a.record(&c, 2, 200, &Value::Null);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let refused: Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(refused["query"].as_str().unwrap(), format!("{}...", "q".repeat(REFUSED_KEEP)));
        assert_eq!(refused["path"], "/accounts/é");
        assert!(lines[0].len() < 1024, "{} bytes", lines[0].len());
        let allowed: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(allowed["query"].as_str().unwrap().len(), 60_000);
        // A cut never splits a character.
        assert_eq!(cut("aé", 2), "a...");
    }
}
