//! The sample log: fixed-size binary records behind a header, kept as a
//! bounded ring in a memory-mapped file (`--sample-log FILE`) or in memory.
//! Written by the reporter thread only, never by the pinned loop.
//!
//! Layout (little-endian):
//!
//! ```text
//! offset  size  field
//!      0     8  magic "TGSAMPLE"
//!      8     4  version (3)
//!     12     4  record size (128)
//!     16     8  capacity (records)
//!     24     8  written: records ever appended; record i lives in slot i % capacity
//!     32     8  clock base: CLOCK_REALTIME - CLOCK_MONOTONIC at creation (ns),
//!               add it to a record's timestamps for wall-clock time
//!     40     8  dropped: records the loop's ring had to drop (full ring)
//!     48    16  reserved (0)
//!     64     -  capacity records of 128 bytes (see `Sample::to_bytes`)
//! ```
//!
//! `written` is updated after each batch, so a reader sees whole batches;
//! a reader racing the writer may see the oldest slot being overwritten,
//! which is why readers of a live file skip records that do not parse
//! sensibly (zero timestamps).

use std::fs::OpenOptions;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use memmap2::MmapMut;

use super::{Sample, RECORD_SIZE};

pub const MAGIC: &[u8; 8] = b"TGSAMPLE";
/// 2: `prev_iter_ns` added, `cause` u16, message counts u8. 3: `t_acked`
/// added after `loop_iter`, payload 24 bytes.
pub const VERSION: u32 = 3;
pub const HEADER_SIZE: usize = 64;
/// Default capacity of the sample log and of the in-memory window.
pub const DEFAULT_RECORDS: u64 = 1 << 18;
/// The largest sample log this tailgate writes: 2^26 records (8 GiB).
pub const MAX_RECORDS: u64 = 1 << 26;

/// Bytes of a sample log of `capacity` records; `None` if that overflows.
fn log_size(capacity: u64) -> Option<u64> {
    capacity.checked_mul(RECORD_SIZE as u64)?.checked_add(HEADER_SIZE as u64)
}

/// The header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub capacity: u64,
    pub written: u64,
    pub clock_base_ns: u64,
    /// Records the loop's ring dropped because it was full.
    pub dropped: u64,
}

impl Header {
    fn encode(&self) -> [u8; HEADER_SIZE] {
        let mut h = [0u8; HEADER_SIZE];
        h[0..8].copy_from_slice(MAGIC);
        h[8..12].copy_from_slice(&VERSION.to_le_bytes());
        h[12..16].copy_from_slice(&(RECORD_SIZE as u32).to_le_bytes());
        h[16..24].copy_from_slice(&self.capacity.to_le_bytes());
        h[24..32].copy_from_slice(&self.written.to_le_bytes());
        h[32..40].copy_from_slice(&self.clock_base_ns.to_le_bytes());
        h[40..48].copy_from_slice(&self.dropped.to_le_bytes());
        h
    }

    fn decode(b: &[u8]) -> Result<Header, String> {
        if b.len() < HEADER_SIZE {
            return Err(format!("{} bytes: shorter than the {HEADER_SIZE}-byte header", b.len()));
        }
        if &b[0..8] != MAGIC {
            return Err("not a tailgate sample log (bad magic)".into());
        }
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or_default());
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap_or_default());
        let version = u32_at(8);
        if version != VERSION {
            return Err(format!("sample log version {version}; this tailgate reads version {VERSION}"));
        }
        let rs = u32_at(12);
        if rs as usize != RECORD_SIZE {
            return Err(format!("record size {rs}; this tailgate reads {RECORD_SIZE}"));
        }
        Ok(Header { capacity: u64_at(16), written: u64_at(24), clock_base_ns: u64_at(32), dropped: u64_at(40) })
    }
}

/// A bounded ring of records in a mapping.
pub struct Store {
    map: MmapMut,
    header: Header,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store {{ {:?} }}", self.header)
    }
}

impl Store {
    /// A store of `capacity` records in `path` (created or overwritten; a
    /// file that exists and is not a sample log is refused), or in memory.
    pub fn create(path: Option<&Path>, capacity: u64) -> io::Result<Store> {
        if capacity == 0 || capacity > MAX_RECORDS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("sample log capacity {capacity}: must be 1..={MAX_RECORDS} records"),
            ));
        }
        let bytes = log_size(capacity).ok_or_else(|| io::Error::other("sample log size overflows"))?;
        let map = match path {
            None => MmapMut::map_anon(bytes as usize)?,
            Some(p) => {
                let mut magic = [0u8; 8];
                let len = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
                let ours = std::fs::File::open(p).and_then(|mut f| f.read_exact(&mut magic)).is_ok() && &magic == MAGIC;
                if len > 0 && !ours {
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!(
                            "--sample-log {}: exists and is not a tailgate sample log; not overwriting",
                            p.display()
                        ),
                    ));
                }
                // 0600, and never through a symbolic link: a record holds
                // the first bytes of a client's message.
                let f = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(p)
                    .map_err(|e| io::Error::new(e.kind(), format!("--sample-log {}: {e}", p.display())))?;
                f.set_len(bytes)?;
                // The file was just created and truncated by us; other
                // processes only read it, and tolerate torn records.
                crate::sys::map_file(&f)?
            }
        };
        let mut s = Store {
            map,
            header: Header { capacity, written: 0, clock_base_ns: crate::clock::realtime_offset_ns(), dropped: 0 },
        };
        s.commit();
        Ok(s)
    }

    pub fn header(&self) -> Header {
        self.header
    }

    /// Append one record (overwriting the oldest when full).
    pub fn append(&mut self, s: &Sample) {
        let slot = (self.header.written % self.header.capacity) as usize;
        let at = HEADER_SIZE + slot * RECORD_SIZE;
        self.map[at..at + RECORD_SIZE].copy_from_slice(&s.to_bytes());
        self.header.written += 1;
    }

    /// Record the loop ring's drop count (published at the next commit).
    pub fn set_dropped(&mut self, n: u64) {
        self.header.dropped = n;
    }

    /// Publish the header (after a batch of appends).
    pub fn commit(&mut self) {
        self.map[..HEADER_SIZE].copy_from_slice(&self.header.encode());
    }

    /// The records in order, oldest first, as a linear log (capacity =
    /// written = the number of records): what `/samples` serves.
    pub fn snapshot(&self) -> Vec<u8> {
        let n = self.header.written.min(self.header.capacity);
        let mut out = Vec::with_capacity(HEADER_SIZE + n as usize * RECORD_SIZE);
        out.extend_from_slice(&Header { capacity: n.max(1), written: n, ..self.header }.encode());
        let first = self.header.written - n;
        for i in first..self.header.written {
            let at = HEADER_SIZE + (i % self.header.capacity) as usize * RECORD_SIZE;
            out.extend_from_slice(&self.map[at..at + RECORD_SIZE]);
        }
        out
    }
}

/// Parse a sample log (file contents or a `/samples` body): the header and
/// the records, oldest first.
pub fn parse(b: &[u8]) -> Result<(Header, Vec<Sample>), String> {
    let h = Header::decode(b)?;
    if h.capacity == 0 {
        return Err("sample log capacity 0".into());
    }
    // The header is checked against the bytes really there before anything
    // is sized or indexed by it (a crafted capacity must not overflow).
    let have = b.len() as u64;
    match log_size(h.capacity) {
        None => return Err(format!("bad header: capacity {} records cannot fit in {have} bytes", h.capacity)),
        Some(need) if have < need => {
            return Err(format!("truncated: {have} bytes, the header says {need} ({} records)", h.capacity))
        }
        Some(_) => {}
    }
    let n = h.written.min(h.capacity);
    let first = h.written - n;
    let mut out = Vec::with_capacity(n as usize);
    for i in first..h.written {
        let at = HEADER_SIZE + (i % h.capacity) as usize * RECORD_SIZE;
        if let Some(s) = Sample::from_bytes(&b[at..at + RECORD_SIZE]) {
            if s.t_delivered != 0 || s.msg_type == super::kind::REPORTER || s.msg_type == super::kind::OFFCPU {
                out.push(s);
            }
        }
    }
    Ok((h, out))
}

/// Read a sample log file.
pub fn read(path: &Path) -> Result<(Header, Vec<Sample>), String> {
    let b = std::fs::read(path).map_err(|e| format!("--log {}: {e}", path.display()))?;
    parse(&b).map_err(|e| format!("--log {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(i: u64) -> Sample {
        Sample { trace_id: i, t_delivered: 1000 + i, ..Sample::default() }
    }

    #[test]
    fn file_ring_keeps_the_newest_in_order() {
        let dir = std::env::temp_dir().join(format!("tg-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.log");
        let mut st = Store::create(Some(&path), 4).unwrap();
        for i in 0..6 {
            st.append(&s(i));
        }
        st.commit();
        let (h, recs) = read(&path).unwrap();
        assert_eq!((h.capacity, h.written), (4, 6));
        assert_eq!(recs.iter().map(|r| r.trace_id).collect::<Vec<_>>(), vec![2, 3, 4, 5]);
        // The snapshot is the same records as a linear log.
        let (h2, recs2) = parse(&st.snapshot()).unwrap();
        assert_eq!((h2.capacity, h2.written), (4, 4));
        assert_eq!(recs2, recs);
        // A file that is not ours is not overwritten.
        let other = dir.join("b.txt");
        std::fs::write(&other, b"important").unwrap();
        let e = Store::create(Some(&other), 4).unwrap_err();
        assert!(e.to_string().contains("not a tailgate sample log"), "{e}");
        assert_eq!(std::fs::read(&other).unwrap(), b"important");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A header with these fields, then `body` bytes.
    fn crafted(capacity: u64, written: u64, body: usize) -> Vec<u8> {
        let mut b = Header { capacity, written, clock_base_ns: 0, dropped: 0 }.encode().to_vec();
        b.resize(HEADER_SIZE + body, 0xa5);
        b
    }

    #[test]
    fn a_crafted_capacity_is_an_error_not_a_panic() {
        for cap in [1u64 << 57, (1 << 57) + 1, u64::MAX, u64::MAX / 128, (u64::MAX - 64) / 128 + 1] {
            let e = parse(&crafted(cap, 3, 256)).unwrap_err();
            assert!(e.contains("bad header") || e.contains("truncated"), "{cap}: {e}");
        }
        // written far beyond capacity is fine: the ring keeps the newest.
        let (h, _) = parse(&crafted(2, u64::MAX, 256)).unwrap();
        assert_eq!(h.written, u64::MAX);
        assert!(Store::create(None, MAX_RECORDS + 1).unwrap_err().to_string().contains("capacity"));
        assert!(Store::create(None, u64::MAX).is_err());
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_on_arbitrary_bytes(b in proptest::collection::vec(proptest::num::u8::ANY, 0..1200)) {
            let _ = parse(&b);
        }

        #[test]
        fn parse_never_panics_on_a_valid_header_with_any_fields(
            cap in proptest::num::u64::ANY,
            written in proptest::num::u64::ANY,
            body in 0usize..2048,
        ) {
            match parse(&crafted(cap, written, body)) {
                Ok((h, recs)) => {
                    proptest::prop_assert!(h.capacity as usize * RECORD_SIZE <= body);
                    proptest::prop_assert!(recs.len() as u64 <= h.capacity);
                }
                Err(e) => proptest::prop_assert!(!e.is_empty()),
            }
        }
    }

    #[test]
    fn bad_logs_say_what_is_wrong() {
        assert!(parse(b"short").unwrap_err().contains("header"));
        let mut b = Store::create(None, 2).unwrap().snapshot();
        b[0] = b'X';
        assert!(parse(&b).unwrap_err().contains("magic"));
        let mut st = Store::create(None, 8).unwrap();
        st.append(&s(1));
        st.commit();
        let mut b = st.snapshot();
        b[8] = 9;
        assert!(parse(&b).unwrap_err().contains("version 9"));
        let b = st.snapshot();
        assert!(parse(&b[..b.len() - 1]).unwrap_err().contains("truncated"));
    }
}
