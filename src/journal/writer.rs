//! Writing the journal: the loop's [`Writer`] stores records into a mapped
//! segment; the [`Keeper`] thread makes the next segment ready (created,
//! its blocks reserved, mapped with every page in), syncs the
//! segments in use every `sync_ms`, and unmaps the full ones the loops
//! hand back. The two talk through bounded channels that the loop only
//! ever `try_`s: the loop never blocks and never makes a system call to
//! journal (the first store into each page takes a minor fault: the
//! kernel's dirty tracking of a shared mapping).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use memmap2::MmapMut;

use super::{Record, HEADER, MAGIC, RECORD};

/// `--journal DIR` and its settings.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// Bytes per segment file (a multiple of the record size).
    pub segment_bytes: usize,
    /// fdatasync each segment in use this often (0: never).
    pub sync_ms: u64,
}

/// One mapped segment file.
#[derive(Debug)]
pub struct Segment {
    map: MmapMut,
    file: Arc<File>,
    id: u64,
}

/// Counters a loop's writer shares with the exit line and /metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub records: AtomicU64,
    /// Records not written: no segment was ready.
    pub lost: AtomicU64,
    pub segments: AtomicU64,
    /// The segment being written and how far (bytes): the keeper syncs
    /// the pages before that one.
    pub seg: AtomicU64,
    pub pos: AtomicU64,
}

/// A loop's end of the journal.
#[derive(Debug)]
pub struct Writer {
    loop_index: u8,
    seg: Option<Segment>,
    pos: usize,
    seq: u64,
    ready: Receiver<Segment>,
    full: SyncSender<Segment>,
    pub stats: Arc<WriterStats>,
    written: u64,
}

impl Writer {
    /// Append `r` (its loop and sequence number are filled in). False: no
    /// segment is ready (the keeper fell behind); counted `lost`.
    #[inline]
    pub fn append(&mut self, r: &mut Record) -> bool {
        if !self.ready() {
            self.stats.lost.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(seg) = self.seg.as_mut() else { return false };
        r.loop_index = self.loop_index;
        let slot: &mut [u8; RECORD] = match (&mut seg.map[self.pos..self.pos + RECORD]).try_into() {
            Ok(s) => s,
            Err(_) => return false,
        };
        r.encode(slot);
        self.pos += RECORD;
        self.stats.pos.store(self.pos as u64, Ordering::Relaxed);
        self.seq += 1;
        self.written += 1;
        if self.written & 63 == 0 {
            self.stats.records.store(self.written, Ordering::Relaxed);
        }
        true
    }

    /// Is a segment there for the next record (or ready to take)?
    #[inline]
    pub fn ready(&mut self) -> bool {
        if self.seg.as_ref().is_none_or(|s| self.pos + RECORD > s.map.len()) {
            self.rotate();
        }
        self.seg.is_some()
    }

    fn rotate(&mut self) {
        if let Some(old) = self.seg.take() {
            // The keeper unmaps it (off the loop); if its queue is full the
            // mapping is dropped here.
            let _ = self.full.try_send(old);
        }
        if let Ok(mut s) = self.ready.try_recv() {
            // The number of its first record, for the reader.
            s.map[32..40].copy_from_slice(&self.seq.to_le_bytes());
            self.stats.pos.store(HEADER as u64, Ordering::Relaxed);
            self.stats.seg.store(s.id, Ordering::Release);
            self.seg = Some(s);
            self.pos = HEADER;
            self.stats.segments.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Publish the record count (at exit).
    pub fn publish(&self) {
        self.stats.records.store(self.written, Ordering::Relaxed);
    }
}

/// The keeper thread's handle: at drop it syncs every segment and stops.
#[derive(Debug)]
pub struct Keeper {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Vec<Arc<WriterStats>>,
}

impl Drop for Keeper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Maker {
    cfg: JournalConfig,
    start: u64,
    next_id: u64,
}

impl Maker {
    /// A new segment for loop `l`: created (never over an existing file),
    /// sized, mapped with every page in, its header written.
    fn make(&mut self, l: usize) -> Result<Segment, String> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let id = self.next_id;
        self.next_id += 1;
        let path = self.cfg.dir.join(format!("{}-loop{l:03}-{id:06}.tgj", self.start));
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| format!("journal {}: {e}", path.display()))?;
        // Every block reserved now and the header written and synced: the
        // loop's stores later find their blocks (no SIGBUS when the disk
        // fills: a full disk fails here), and no zeros are written (that
        // doubled the journal's disk traffic and its writeback disturbed
        // the loop).
        let mut header = [0u8; HEADER];
        header[..8].copy_from_slice(MAGIC);
        header[8..12].copy_from_slice(&(RECORD as u32).to_le_bytes());
        header[12..16].copy_from_slice(&(l as u32).to_le_bytes());
        header[16..24].copy_from_slice(&self.start.to_le_bytes());
        header[24..32].copy_from_slice(&id.to_le_bytes());
        let written = crate::sys::allocate(&f, self.cfg.segment_bytes as u64)
            .and_then(|_| f.write_all(&header))
            .and_then(|_| f.sync_data());
        if let Err(e) = written {
            let _ = std::fs::remove_file(&path);
            return Err(format!("journal {}: {e}", path.display()));
        }
        let map = crate::sys::map_file_populated(&f).map_err(|e| format!("journal {}: mmap: {e}", path.display()))?;
        Ok(Segment { map, file: Arc::new(f), id })
    }
}

/// Open the journal in `cfg.dir` for `loops` loops: each loop's writer
/// with its first segment, and the keeper thread (on `pin`, else off the
/// loops' `cores`).
pub fn open(
    cfg: JournalConfig,
    loops: usize,
    cores: Vec<usize>,
    pin: Option<usize>,
) -> Result<(Keeper, Vec<Writer>), String> {
    if cfg.segment_bytes < HEADER + RECORD || cfg.segment_bytes % RECORD != 0 {
        return Err(format!("journal: a segment of {} bytes holds no record", cfg.segment_bytes));
    }
    std::fs::create_dir_all(&cfg.dir).map_err(|e| format!("--journal {}: {e}", cfg.dir.display()))?;
    let start = crate::clock::realtime_ns() / 1_000_000;
    let mut maker = Maker { cfg: cfg.clone(), start, next_id: 0 };
    let mut writers = Vec::with_capacity(loops);
    let mut ends = Vec::with_capacity(loops);
    let mut in_use = Vec::new();
    for l in 0..loops {
        let first = maker.make(l)?;
        in_use.push((first.id, first.file.clone()));
        let (ready_tx, ready_rx) = sync_channel(1);
        // Room for every full segment the keeper has not unmapped yet: one
        // dropped here instead would be unmapped on the loop.
        let (full_tx, full_rx) = sync_channel(16);
        let stats = Arc::new(WriterStats::default());
        stats.segments.store(1, Ordering::Relaxed);
        stats.seg.store(first.id, Ordering::Relaxed);
        stats.pos.store(HEADER as u64, Ordering::Relaxed);
        writers.push(Writer {
            loop_index: l as u8,
            seg: Some(first),
            pos: HEADER,
            seq: 0,
            ready: ready_rx,
            full: full_tx,
            stats: stats.clone(),
            written: 0,
        });
        ends.push((ready_tx, full_rx, None::<Segment>, stats, 0u64));
    }
    let stats = ends.iter().map(|e| e.3.clone()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let st = stop.clone();
    let thread = std::thread::Builder::new()
        .name("tg-journal".into())
        .spawn(move || {
            crate::runtime::place_helper_off(&cores, pin, "journal");
            keep(&mut maker, ends, in_use, &st);
        })
        .map_err(|e| format!("starting the journal keeper: {e}"))?;
    Ok((Keeper { stop, thread: Some(thread), stats }, writers))
}

/// A loop's end at the keeper: the ready and full queues, a segment made
/// and not yet queued, the loop's counters, and how many segments were
/// queued for it (beyond the first).
type End = (SyncSender<Segment>, Receiver<Segment>, Option<Segment>, Arc<WriterStats>, u64);

fn keep(maker: &mut Maker, mut ends: Vec<End>, mut in_use: Vec<(u64, Arc<File>)>, stop: &AtomicBool) {
    let sync = Duration::from_millis(maker.cfg.sync_ms);
    let mut last_sync = Instant::now();
    let mut warned = false;
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        for (l, (ready, full, spare, stats, queued)) in ends.iter_mut().enumerate() {
            // One segment waits for each loop, no more: a new one is made
            // once the loop took the last (its count of segments moved).
            let taken = stats.segments.load(Ordering::Relaxed).saturating_sub(1);
            if spare.is_none() && !stopping && *queued <= taken {
                match maker.make(l) {
                    Ok(s) => *spare = Some(s),
                    Err(e) => {
                        if !warned {
                            crate::log_warn!(
                                "{e}: the loop's orders are refused (journal_unavailable) once its segment is full"
                            );
                            warned = true;
                        }
                    }
                }
            }
            if let Some(s) = spare.take() {
                let (id, file) = (s.id, s.file.clone());
                match ready.try_send(s) {
                    Ok(()) => {
                        in_use.push((id, file));
                        *queued += 1;
                    }
                    Err(std::sync::mpsc::TrySendError::Full(s))
                    | Err(std::sync::mpsc::TrySendError::Disconnected(s)) => *spare = Some(s),
                }
            }
            while let Ok(s) = full.try_recv() {
                let _ = s.file.sync_data();
                in_use.retain(|(id, _)| *id != s.id);
                drop(s);
            }
        }
        if stopping {
            for (_, f) in &in_use {
                let _ = f.sync_data();
            }
        } else if !sync.is_zero() && last_sync.elapsed() >= sync {
            // Each loop's segment up to the page it is writing: that page
            // is left alone (a store into a page under writeback waits).
            for (_, _, _, stats, _) in ends.iter() {
                let id = stats.seg.load(Ordering::Acquire);
                let upto = stats.pos.load(Ordering::Relaxed) & !4095;
                if let Some((_, f)) = in_use.iter().find(|(i, _)| *i == id) {
                    let _ = crate::sys::sync_range(f, upto);
                }
            }
            last_sync = Instant::now();
        }
        if stopping {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Where a journal lives, checked (the CLI's `--journal DIR`).
pub fn check_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() && !dir.is_dir() {
        return Err(format!("--journal {}: not a directory", dir.display()));
    }
    Ok(())
}
