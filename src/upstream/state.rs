//! What an upstream session must remember across a gateway restart, kept
//! off the pinned loop.
//!
//! The loop publishes two numbers through atomics, which costs it a store
//! each: the next sequenced message it has not processed (what a login asks
//! the venue to replay from) and the next order token (OUCH's UserRefNum,
//! which must keep rising for the whole trading day). A keeper thread
//! writes them to `DIR/USERNAME.state` when they change (write to a
//! temporary file, fsync, rename), so a restarted gateway resumes from them.
//!
//! Tokens are reserved in blocks: the file holds the end of the block the
//! loop may use ([`TOKEN_BLOCK`]), written *before* the loop is allowed to
//! use it. After a crash, the new process starts above everything the old
//! one could have used, whatever it had not yet written. The keeper extends
//! the block when the loop has used half of it; a loop that outruns it
//! (millions of orders in 10 ms) refuses orders until it catches up.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Tokens reserved at once.
pub const TOKEN_BLOCK: u32 = 1 << 20;
/// How often the keeper looks.
pub const KEEP_EVERY: Duration = Duration::from_millis(10);

/// One session's numbers, shared by its loop and the keeper.
#[derive(Debug)]
pub struct SessionState {
    path: Option<PathBuf>,
    /// The next sequenced message to process (the loop stores).
    pub next_seq: AtomicU64,
    /// The next token to use (the loop stores).
    pub next_token: AtomicU32,
    /// Tokens below this may be used (the keeper stores, after writing it).
    pub token_limit: AtomicU32,
    /// What the file holds now.
    written: (AtomicU64, AtomicU32),
}

fn parse(text: &str, path: &Path) -> Result<(u64, u32), String> {
    let mut seq = None;
    let mut token = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line.split_once('=').ok_or_else(|| format!("{}: not key=value: {line:?}", path.display()))?;
        let (k, v) = (k.trim(), v.trim());
        let bad = |_| format!("{}: {k}: not a number: {v:?}", path.display());
        match k {
            "next_seq" => seq = Some(v.parse::<u64>().map_err(bad)?),
            "token_limit" => token = Some(v.parse::<u32>().map_err(bad)?),
            other => return Err(format!("{}: unknown key {other:?}", path.display())),
        }
    }
    match (seq, token) {
        (Some(s), Some(t)) if s >= 1 && t >= 1 => Ok((s, t)),
        _ => Err(format!("{}: needs next_seq and token_limit, both at least 1", path.display())),
    }
}

impl SessionState {
    /// Nothing remembered (tests, and sessions without a state directory).
    pub fn in_memory() -> Arc<SessionState> {
        Arc::new(SessionState {
            path: None,
            next_seq: AtomicU64::new(1),
            next_token: AtomicU32::new(1),
            token_limit: AtomicU32::new(u32::MAX),
            written: (AtomicU64::new(0), AtomicU32::new(0)),
        })
    }

    /// Load `DIR/USERNAME.state` (a new session starts at 1 when there is
    /// none), reserve the first block, and write it before returning.
    pub fn open(dir: &Path, username: &str) -> Result<Arc<SessionState>, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let path = dir.join(format!("{username}.state"));
        let (seq, first_token) = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (1, 1),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let limit = first_token.checked_add(TOKEN_BLOCK).ok_or_else(|| {
            format!("{}: the order tokens are used up (a new trading day needs a new file)", path.display())
        })?;
        let s = SessionState {
            path: Some(path),
            next_seq: AtomicU64::new(seq),
            next_token: AtomicU32::new(first_token),
            token_limit: AtomicU32::new(0),
            written: (AtomicU64::new(0), AtomicU32::new(0)),
        };
        s.write(seq, limit)?;
        s.token_limit.store(limit, Ordering::Release);
        Ok(Arc::new(s))
    }

    fn write(&self, seq: u64, limit: u32) -> Result<(), String> {
        let Some(path) = &self.path else { return Ok(()) };
        let tmp = path.with_extension("state.tmp");
        let body = format!(
            "# tailgate upstream session state: the next sequenced message to process, and the\n\
             # order tokens below token_limit may have been used.\nnext_seq = {seq}\ntoken_limit = {limit}\n"
        );
        // A new file, never through a link someone left at that name.
        let _ = std::fs::remove_file(&tmp);
        let mut f = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&tmp)
                .map_err(|e| format!("{}: {e}", tmp.display()))?
        };
        f.write_all(body.as_bytes()).and_then(|_| f.sync_all()).map_err(|e| format!("{}: {e}", tmp.display()))?;
        std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.written.0.store(seq, Ordering::Relaxed);
        self.written.1.store(limit, Ordering::Relaxed);
        Ok(())
    }

    /// Write what changed; extend the token block when half is used.
    pub fn keep(&self) -> Result<(), String> {
        if self.path.is_none() {
            return Ok(());
        }
        let seq = self.next_seq.load(Ordering::Relaxed);
        let next = self.next_token.load(Ordering::Relaxed);
        let mut limit = self.token_limit.load(Ordering::Relaxed);
        if limit.saturating_sub(next) < TOKEN_BLOCK / 2 {
            limit = limit.saturating_add(TOKEN_BLOCK / 2);
        }
        if seq != self.written.0.load(Ordering::Relaxed) || limit != self.written.1.load(Ordering::Relaxed) {
            self.write(seq, limit)?;
            self.token_limit.store(limit, Ordering::Release);
        }
        Ok(())
    }
}

/// Keep `states` until `stop`, then once more: the keeper thread's body.
/// An error is logged once and retried.
pub fn keeper(states: Vec<Arc<SessionState>>, stop: Arc<AtomicBool>) {
    let mut failing = false;
    loop {
        let last = stop.load(Ordering::Relaxed);
        for s in &states {
            match s.keep() {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    failing = true;
                    crate::log_warn!("upstream state: {e} (retrying)");
                }
                Err(_) => {}
            }
        }
        if last {
            return;
        }
        std::thread::sleep(KEEP_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_resumes_the_sequence_and_starts_above_every_reserved_token() {
        let dir = std::env::temp_dir().join(format!("tg-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let s = SessionState::open(&dir, "gw0").unwrap();
        assert_eq!(s.next_seq.load(Ordering::Relaxed), 1);
        assert_eq!(s.token_limit.load(Ordering::Relaxed), 1 + TOKEN_BLOCK);
        s.next_seq.store(42, Ordering::Relaxed);
        s.next_token.store(7, Ordering::Relaxed);
        s.keep().unwrap();
        // A crash here: tokens up to the limit may have been used.
        let again = SessionState::open(&dir, "gw0").unwrap();
        assert_eq!(again.next_seq.load(Ordering::Relaxed), 42);
        assert_eq!(again.next_token.load(Ordering::Relaxed), 1 + TOKEN_BLOCK);
        // Half the block used: the keeper extends it before the loop needs it.
        again.next_token.store(1 + TOKEN_BLOCK + TOKEN_BLOCK / 2 + 1, Ordering::Relaxed);
        again.keep().unwrap();
        assert_eq!(again.token_limit.load(Ordering::Relaxed), 1 + 2 * TOKEN_BLOCK + TOKEN_BLOCK / 2);
        std::fs::write(dir.join("bad.state"), "next_seq = x\n").unwrap();
        let e = SessionState::open(&dir, "bad").unwrap_err();
        assert!(e.contains("next_seq: not a number"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
