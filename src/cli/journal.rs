//! `serve --journal DIR` (the audit journal's flags) and `tailgate journal
//! PATH`: print what a journal holds, as text or `--json` lines.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use clap::Args;
use tailgate::journal::writer::{self, JournalConfig, Keeper, Writer};
use tailgate::journal::{kind, reader};
use tailgate::log_info;

use super::config::JOURNAL;

#[derive(Args)]
pub(crate) struct JournalArgs {
    /// Keep the audit journal in this directory: every order and cancel with its risk decision,
    /// every logon, every exchange message, one 64-byte record each, per loop, in segment files
    /// mapped into memory (docs/JOURNAL.md). Orders are refused (journal_unavailable) rather than
    /// sent unrecorded.
    #[arg(long, value_name = "DIR", help_heading = JOURNAL)]
    pub(crate) journal: Option<PathBuf>,
    /// Size of each journal segment file in MiB (1 MiB holds 16,320 records). Each loop keeps
    /// two in memory: the one it writes and the next, ready.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096), help_heading = JOURNAL)]
    pub(crate) journal_segment_mb: u64,
    /// Write the journal to disk this often, in milliseconds (0: never; the kernel writes it back
    /// on its own). A process crash loses nothing either way; a power loss loses at most this much.
    /// Each sync's disk work can take the loop's core for a while (docs/JOURNAL.md).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(0..=60_000), help_heading = JOURNAL)]
    pub(crate) journal_sync_ms: u64,
}

/// The keeper and each loop's writer, handed out once per loop.
pub(crate) struct Journal {
    pub(crate) keeper: Option<Keeper>,
    writers: Mutex<Vec<Option<Writer>>>,
}

impl Journal {
    pub(crate) fn open(
        a: &JournalArgs,
        loops: usize,
        cores: Vec<usize>,
        pin: Option<usize>,
    ) -> Result<Journal, String> {
        let Some(dir) = &a.journal else { return Ok(Journal { keeper: None, writers: Mutex::new(Vec::new()) }) };
        writer::check_dir(dir)?;
        let cfg = JournalConfig {
            dir: dir.clone(),
            segment_bytes: (a.journal_segment_mb as usize) << 20,
            sync_ms: a.journal_sync_ms,
        };
        let (k, w) = writer::open(cfg, loops, cores, pin)?;
        log_info!(
            "journal in {} ({} MiB segments, fdatasync every {} ms)",
            dir.display(),
            a.journal_segment_mb,
            a.journal_sync_ms
        );
        Ok(Journal { keeper: Some(k), writers: Mutex::new(w.into_iter().map(Some).collect()) })
    }

    /// After the loops: a last sync of every segment.
    pub(crate) fn close(self) {
        drop(self.keeper);
    }

    /// Loop `i`'s writer (once).
    pub(crate) fn writer(&self, i: usize) -> Option<Writer> {
        self.writers.lock().ok()?.get_mut(i)?.take()
    }
}

#[derive(Args)]
pub(crate) struct JournalCmd {
    /// A journal directory (every segment in it) or one segment file.
    path: PathBuf,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(a: JournalCmd) -> Result<ExitCode, String> {
    let (recs, bad) = reader::read_all(&a.path)?;
    for b in &bad {
        eprintln!("tailgate: journal: skipped: {b}");
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    use std::io::Write;
    for r in &recs {
        let s = r.shown();
        let line = if a.json {
            serde_json::to_string(&s).map_err(|e| e.to_string())?
        } else {
            let mut t =
                format!("{} loop{} #{} {} {} session {}", s.ts_ns, s.loop_index, s.seq, s.kind, s.account, s.session);
            match r.kind {
                kind::ORDER => t.push_str(&format!(
                    " cl_ord_id={} {} {} {}@{} -> {}",
                    r.cl_ord_id,
                    s.side.unwrap_or_default(),
                    s.symbol.unwrap_or_default(),
                    r.qty,
                    r.price,
                    s.decision.unwrap_or_default()
                )),
                kind::CANCEL => {
                    t.push_str(&format!(" cl_ord_id={} -> {}", r.cl_ord_id, s.decision.unwrap_or_default()))
                }
                kind::LOGON => t.push_str(&format!(
                    " from {} -> {}",
                    std::net::Ipv4Addr::from(r.extra as u32),
                    s.decision.unwrap_or_default()
                )),
                kind::EXCHANGE => t.push_str(&format!(
                    " cl_ord_id={} {} qty={} price={} ref={}",
                    r.cl_ord_id,
                    s.exchange.unwrap_or_default(),
                    r.qty,
                    r.price,
                    r.extra
                )),
                _ => t.push_str(&format!(" cl_ord_id={} token={}", r.cl_ord_id, r.extra)),
            }
            t
        };
        if writeln!(out, "{line}").is_err() {
            break;
        }
    }
    Ok(ExitCode::SUCCESS)
}
