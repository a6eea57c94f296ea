//! `--pcap FILE`: a capture of the frames the user-space stack receives
//! and sends, which tcpdump on the interface cannot see (XDP redirects them
//! to the AF_XDP socket before the kernel's taps).
//!
//! The pinned loop copies each frame (up to the snap length) with its
//! timestamp into a bounded ring ([`crate::ring`], in place, no
//! allocation); a full ring drops the frame and counts it. A writer thread,
//! never on the loop's core, writes the ring to FILE in the pcap format
//! with nanosecond timestamps (magic `0xa1b23c4d`, link type Ethernet),
//! which tcpdump, tshark and Wireshark read. With a size limit the file
//! rotates: FILE becomes FILE.1 (FILE.1 becomes FILE.2, ...), keeping
//! `files` in all, as `tcpdump -C -W` does.
//!
//! Timestamps: a received frame carries the XDP program's arrival stamp
//! when it has one, else the loop's clock when the stack took it; a sent
//! frame, the loop's clock when it went on the TX ring. Both are
//! CLOCK_MONOTONIC, turned into wall-clock time with one offset taken at
//! start-up.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::ring::{ring_of, Consumer, Producer};

/// The largest frame the stack handles (a 1500-byte IP MTU).
pub const MAX_FRAME: usize = 1514;

/// Default ring: 8192 frames, 12.5 MiB.
pub const DEFAULT_RING: usize = 8192;

/// Nanosecond-resolution pcap.
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;

/// Where and how to capture.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub path: PathBuf,
    /// Bytes kept of each frame (at most [`MAX_FRAME`]).
    pub snaplen: usize,
    /// Rotate when a file would pass this many bytes (0: never).
    pub max_bytes: u64,
    /// Files kept when rotating, FILE included (at least 1).
    pub files: u32,
    /// Frames the ring holds (a power of two).
    pub ring: usize,
    /// The loop's core (the writer stays off it) and a core to pin the
    /// writer to instead.
    pub place: (Option<usize>, Option<usize>),
}

impl CaptureConfig {
    pub fn new(path: impl Into<PathBuf>) -> CaptureConfig {
        CaptureConfig {
            path: path.into(),
            snaplen: MAX_FRAME,
            max_bytes: 0,
            files: 2,
            ring: DEFAULT_RING,
            place: (None, None),
        }
    }
}

/// One captured frame in the ring.
#[derive(Clone, Copy)]
pub struct Frame {
    /// CLOCK_MONOTONIC ns.
    mono_ns: u64,
    /// The frame's length on the wire, and the bytes kept.
    orig_len: u32,
    cap_len: u16,
    data: [u8; MAX_FRAME],
}

impl Default for Frame {
    fn default() -> Frame {
        Frame { mono_ns: 0, orig_len: 0, cap_len: 0, data: [0; MAX_FRAME] }
    }
}

/// The loop's end: copies frames into the ring.
pub struct Tap {
    prod: Producer<Frame>,
    snaplen: usize,
    /// Frames captured, and dropped because the ring was full.
    pub captured: u64,
    pub dropped: u64,
}

impl Tap {
    /// Capture `bytes`, seen at `mono_ns`.
    #[inline]
    pub fn frame(&mut self, bytes: &[u8], mono_ns: u64) {
        let n = bytes.len().min(self.snaplen);
        let ok = self.prod.push_with(|f| {
            f.mono_ns = mono_ns;
            f.orig_len = bytes.len() as u32;
            f.cap_len = n as u16;
            f.data[..n].copy_from_slice(&bytes[..n]);
        });
        if ok {
            self.captured += 1;
        } else {
            self.dropped += 1;
        }
    }

    /// Make the captured frames visible to the writer (once per loop
    /// iteration).
    #[inline]
    pub fn publish(&mut self) {
        self.prod.publish();
    }
}

/// What the writer did.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub written: AtomicU64,
    pub bytes: AtomicU64,
    pub rotations: AtomicU64,
    pub write_errors: AtomicU64,
}

/// The writer thread; dropping it writes what is left in the ring and
/// closes the file.
pub struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub stats: Arc<WriterStats>,
    path: PathBuf,
}

/// Open FILE (an error names it) and start the writer; returns the loop's
/// [`Tap`] and the writer.
pub fn start(cfg: CaptureConfig) -> io::Result<(Tap, Writer)> {
    let snaplen = cfg.snaplen.clamp(64, MAX_FRAME);
    let (prod, cons) = ring_of::<Frame>(cfg.ring).map_err(io::Error::other)?;
    let out = PcapFile::create(&cfg.path, snaplen as u32)
        .map_err(|e| io::Error::new(e.kind(), format!("--pcap {}: {e}", cfg.path.display())))?;
    let stop = Arc::new(AtomicBool::new(false));
    let stats = Arc::new(WriterStats::default());
    let offset = crate::clock::realtime_offset_ns();
    let thread = {
        let (stop, stats, cfg) = (stop.clone(), stats.clone(), cfg.clone());
        std::thread::Builder::new().name("tg-pcap".into()).spawn(move || {
            crate::runtime::place_helper(cfg.place, "pcap writer");
            write_loop(cons, out, &cfg, snaplen as u32, offset, &stop, &stats)
        })?
    };
    let tap = Tap { prod, snaplen, captured: 0, dropped: 0 };
    Ok((tap, Writer { stop, thread: Some(thread), stats, path: cfg.path }))
}

impl Writer {
    /// Stop after writing what the ring holds; one log line.
    pub fn finish(&mut self) {
        let Some(t) = self.thread.take() else { return };
        self.stop.store(true, Ordering::Release);
        let _ = t.join();
        let s = &self.stats;
        crate::log_info!(
            "pcap: {} frames ({} bytes) written to {}{}{}",
            s.written.load(Ordering::Relaxed),
            s.bytes.load(Ordering::Relaxed),
            self.path.display(),
            match s.rotations.load(Ordering::Relaxed) {
                0 => String::new(),
                n => format!(", rotated {n} times"),
            },
            match s.write_errors.load(Ordering::Relaxed) {
                0 => String::new(),
                n => format!("; {n} write errors: the capture is incomplete"),
            }
        );
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.finish();
    }
}

fn write_loop(
    mut cons: Consumer<Frame>,
    mut out: PcapFile,
    cfg: &CaptureConfig,
    snaplen: u32,
    offset: u64,
    stop: &AtomicBool,
    stats: &WriterStats,
) {
    let mut failed = false;
    loop {
        // Read `stop` before draining: whatever was published before it was
        // set is written.
        let stopping = stop.load(Ordering::Acquire);
        let mut n = 0;
        while let Some(r) = cons.pop_with(|f| {
            if failed {
                return Ok(());
            }
            let len = 16 + u64::from(f.cap_len);
            if cfg.max_bytes > 0 && out.len + len > cfg.max_bytes && out.len > 24 {
                out.rotate(&cfg.path, cfg.files.max(1), snaplen)?;
                stats.rotations.fetch_add(1, Ordering::Relaxed);
            }
            let t = f.mono_ns.wrapping_add(offset);
            out.record(t, f.orig_len, &f.data[..usize::from(f.cap_len)])?;
            stats.written.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(len, Ordering::Relaxed);
            Ok::<(), io::Error>(())
        }) {
            n += 1;
            if let Err(e) = r {
                stats.write_errors.fetch_add(1, Ordering::Relaxed);
                if !failed {
                    crate::log_warn!("pcap: writing {}: {e}; capture stopped", cfg.path.display());
                }
                failed = true;
            }
        }
        if stopping {
            break;
        }
        if n == 0 {
            let _ = out.w.flush();
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    if let Err(e) = out.w.flush() {
        stats.write_errors.fetch_add(1, Ordering::Relaxed);
        crate::log_warn!("pcap: flushing {}: {e}", cfg.path.display());
    }
}

struct PcapFile {
    w: BufWriter<File>,
    /// Bytes in the current file.
    len: u64,
}

impl PcapFile {
    /// A new capture file, readable by its owner only (0600, also when the
    /// path existed with wider rights): it holds order payloads. A symbolic
    /// link at the path is refused (ELOOP), not followed: a gateway running
    /// as root must not truncate whatever file a link in a shared directory
    /// points to. The rights are set on the open file (fchmod).
    fn create(path: &Path, snaplen: u32) -> io::Result<PcapFile> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut w = BufWriter::with_capacity(1 << 20, f);
        let mut h = [0u8; 24];
        h[0..4].copy_from_slice(&PCAP_MAGIC_NS.to_le_bytes());
        h[4..6].copy_from_slice(&2u16.to_le_bytes());
        h[6..8].copy_from_slice(&4u16.to_le_bytes());
        h[16..20].copy_from_slice(&snaplen.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        w.write_all(&h)?;
        Ok(PcapFile { w, len: 24 })
    }

    fn record(&mut self, wall_ns: u64, orig_len: u32, data: &[u8]) -> io::Result<()> {
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((wall_ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&((wall_ns % 1_000_000_000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(data.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.w.write_all(&h)?;
        self.w.write_all(data)?;
        self.len += 16 + data.len() as u64;
        Ok(())
    }

    /// Close this file as FILE.1 (older ones move up, the oldest beyond
    /// `files` goes) and start FILE afresh.
    fn rotate(&mut self, path: &Path, files: u32, snaplen: u32) -> io::Result<()> {
        self.w.flush()?;
        let name = |i: u32| {
            let mut p = path.as_os_str().to_owned();
            p.push(format!(".{i}"));
            PathBuf::from(p)
        };
        if files <= 1 {
            std::fs::remove_file(path)?;
        } else {
            let _ = std::fs::remove_file(name(files - 1));
            for i in (1..files - 1).rev() {
                let _ = std::fs::rename(name(i), name(i + 1));
            }
            std::fs::rename(path, name(1))?;
        }
        *self = PcapFile::create(path, snaplen)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The records of a pcap file: (ns timestamp, orig len, data).
    pub fn read_pcap(path: &Path) -> (u32, Vec<(u64, u32, Vec<u8>)>) {
        let b = std::fs::read(path).unwrap();
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), PCAP_MAGIC_NS);
        assert_eq!(u32::from_le_bytes(b[20..24].try_into().unwrap()), LINKTYPE_ETHERNET);
        let snap = u32::from_le_bytes(b[16..20].try_into().unwrap());
        let (mut i, mut recs) = (24, Vec::new());
        while i < b.len() {
            let w = |o: usize| u32::from_le_bytes(b[i + o..i + o + 4].try_into().unwrap());
            let (sec, ns, incl, orig) = (w(0), w(4), w(8) as usize, w(12));
            recs.push((u64::from(sec) * 1_000_000_000 + u64::from(ns), orig, b[i + 16..i + 16 + incl].to_vec()));
            i += 16 + incl;
        }
        assert_eq!(i, b.len(), "a truncated record");
        (snap, recs)
    }

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("tg-pcap-{}-{name}", std::process::id()))
    }

    #[test]
    fn frames_come_back_whole_in_order_with_wall_clock_times() {
        let path = tmp("order.pcap");
        let (mut tap, mut w) = start(CaptureConfig { snaplen: 100, ..CaptureConfig::new(&path) }).unwrap();
        let now = crate::clock::mono_ns();
        for i in 0..1000u32 {
            let frame: Vec<u8> = (0..(60 + i % 200)).map(|b| (b ^ i) as u8).collect();
            tap.frame(&frame, now + u64::from(i) * 1000);
            tap.publish();
        }
        w.finish();
        let (snap, recs) = read_pcap(&path);
        std::fs::remove_file(&path).unwrap();
        assert_eq!((snap, recs.len(), tap.dropped), (100, 1000, 0));
        let wall = crate::clock::realtime_ns();
        for (i, (t, orig, data)) in recs.iter().enumerate() {
            let len = 60 + i as u32 % 200;
            assert_eq!(*orig, len);
            assert_eq!(data.len(), len.min(100) as usize, "cut at the snap length");
            assert!(data.iter().enumerate().all(|(b, &v)| v == (b as u32 ^ i as u32) as u8));
            assert!(wall.abs_diff(*t) < 10_000_000_000, "not wall-clock time: {t}");
            if i > 0 {
                assert_eq!(t - recs[i - 1].0, 1000, "ns resolution kept");
            }
        }
    }

    /// Captures hold order payloads: only their owner may read them, the
    /// rotated ones too, and a file that was there with wider rights is
    /// narrowed.
    #[test]
    fn capture_files_are_readable_by_their_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let path = tmp("mode.pcap");
        std::fs::write(&path, b"old").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cfg = CaptureConfig { max_bytes: 2_000, files: 2, ..CaptureConfig::new(&path) };
        let (mut tap, mut w) = start(cfg).unwrap();
        for _ in 0..20 {
            tap.frame(&[7u8; 500], 1);
            tap.publish();
            std::thread::sleep(Duration::from_millis(2));
        }
        w.finish();
        let rotated = path.with_extension("pcap.1");
        for p in [&path, &rotated] {
            let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}: {mode:o}", p.display());
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::remove_file(&rotated).unwrap();
        // A symbolic link is refused, and what it points to left alone.
        let target = tmp("target");
        std::fs::write(&target, b"keep").unwrap();
        let link = tmp("link.pcap");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = start(CaptureConfig::new(&link)).err().expect("a link is refused");
        assert!(e.to_string().contains("--pcap"), "{e}");
        assert_eq!(std::fs::read(&target).unwrap(), b"keep");
        std::fs::remove_file(&link).unwrap();
        std::fs::remove_file(&target).unwrap();
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        let path = tmp("full.pcap");
        let (mut tap, mut w) = start(CaptureConfig { ring: 4, ..CaptureConfig::new(&path) }).unwrap();
        // Not published: the writer sees nothing until the ring is full.
        // The first push that finds it full drops its frame and publishes
        // (so the writer drains it); from then on, how many fit again
        // depends on how fast the writer runs.
        for _ in 0..4 {
            tap.frame(&[1u8; 60], 1);
        }
        tap.frame(&[1u8; 60], 1);
        assert_eq!((tap.captured, tap.dropped), (4, 1), "the fifth found the ring full");
        for _ in 0..5 {
            tap.frame(&[1u8; 60], 1);
        }
        assert_eq!(tap.captured + tap.dropped, 10);
        assert!(tap.dropped >= 1);
        tap.publish();
        w.finish();
        // Every frame counted captured is in the file, and no other.
        assert_eq!(read_pcap(&path).1.len() as u64, tap.captured);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn rotation_keeps_the_newest_files_each_valid() {
        let path = tmp("rot.pcap");
        let cfg = CaptureConfig { max_bytes: 10_000, files: 3, ..CaptureConfig::new(&path) };
        let (mut tap, mut w) = start(cfg).unwrap();
        for i in 0..100u32 {
            let mut f = vec![0u8; 500];
            f[..4].copy_from_slice(&i.to_le_bytes());
            tap.frame(&f, 1);
            tap.publish();
            if i % 10 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        w.finish();
        assert!(w.stats.rotations.load(Ordering::Relaxed) >= 4);
        let mut seen = Vec::new();
        for p in [path.with_extension("pcap.2"), path.with_extension("pcap.1"), path.clone()] {
            let (_, recs) = read_pcap(&p);
            assert!(std::fs::metadata(&p).unwrap().len() <= 10_000);
            seen.extend(recs.iter().map(|r| u32::from_le_bytes(r.2[..4].try_into().unwrap())));
            std::fs::remove_file(&p).unwrap();
        }
        assert!(!path.with_extension("pcap.3").exists(), "only 3 files kept");
        // The newest frames, in order, ending with the last.
        assert!(seen.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
        assert_eq!(*seen.last().unwrap(), 99);
    }

    #[test]
    fn an_unwritable_file_is_named() {
        let e = start(CaptureConfig::new("/nonexistent-dir/x.pcap")).err().unwrap();
        assert!(e.to_string().contains("--pcap /nonexistent-dir/x.pcap"), "{e}");
    }
}
