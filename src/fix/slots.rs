//! Where the FIX sessions' state lives: one mapped region with a slot per
//! session, made whole at start-up. A slot holds the session's SenderCompID,
//! its sequence numbers, its next ExecID and its message store (`store.rs`):
//! every change is a store into the region, no system call and no
//! allocation on the loop.
//!
//! The region is anonymous memory, or a file (`fix-sessions.tgfs` in
//! `--fix-state DIR`, by default the journal's directory) mapped shared:
//! then what a session had survives the process. A crash (`kill -9`) loses
//! nothing that was written, since the page cache keeps it. A message is
//! numbered and stored before it is sent, so after a restart no sequence
//! number is used twice, and one the client missed is resent from the
//! store. A host that went down (a power loss) may have written back only
//! part of it: the header says whether the file was closed cleanly and on
//! which boot it was opened, and a file left open by an earlier boot is
//! [`Region::stale`] (its sessions must start again from 1).
//!
//! The file's layout: a header page (magic, version, the gateway's CompID,
//! the slot count and each store's size, clean or not, the boot), then the
//! slots, each a page-aligned [`SlotHead`], its store's index ([`Entry`])
//! and its store's bytes. It is made with its blocks reserved (a store
//! never finds the disk full), mode 0600, never through a link; one made
//! with another CompID or other sizes is refused, never reinterpreted; a
//! lock keeps a second gateway out of it. Nothing else may write it while
//! the gateway runs.
//!
//! Unsafe code: a slot is raw memory of the mapping, read and written as
//! plain-data structs (`SlotHead`, `Entry`) and bytes. Each slot is one
//! disjoint range, handed out once, kept mapped by a shared handle.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use memmap2::MmapMut;

/// The file header's first bytes.
pub const MAGIC: &[u8; 8] = b"TGFIXS01";
const VERSION: u32 = 1;
const PAGE: usize = 4096;
/// The longest CompID kept.
pub const COMP_LEN: usize = 32;
/// Bytes kept for a slot's [`SlotHead`] (the index follows).
const HEAD: usize = 128;

/// A session's sequence numbers and next ExecID.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seqs {
    /// MsgSeqNum of the next message to the client.
    pub next_out: u32,
    /// MsgSeqNum expected next from the client.
    pub next_in: u32,
    /// ExecID (17) of the next ExecutionReport.
    pub next_exec: u64,
}

/// The message store's ring (see `store.rs`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct RingState {
    pub head: u64,
    pub count: u64,
    pub write: u64,
    pub evicted: u64,
}

/// One stored message's place in the store.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct Entry {
    pub seq: u32,
    pub at: u32,
    pub len: u32,
    /// A checksum of the body, the sequence number and the type.
    pub sum: u32,
    pub sent_ns: u64,
    pub msg_type: u8,
    pub _pad: [u8; 7],
}

/// Bytes of an [`Entry`].
const ENTRY: usize = std::mem::size_of::<Entry>();

/// The start of a slot.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SlotHead {
    /// 1 once a session has it.
    pub used: u32,
    pub comp_len: u32,
    pub comp: [u8; COMP_LEN],
    pub seqs: Seqs,
    pub ring: RingState,
}

const _: () = assert!(std::mem::size_of::<SlotHead>() <= HEAD);
const _: () = assert!(ENTRY == 32);

/// The file's header, as written at its start (little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileHead {
    version: u32,
    slots: u32,
    store_bytes: u64,
    entries: u64,
    comp_len: u32,
    comp: [u8; COMP_LEN],
}

/// Where the header keeps whether the file was closed cleanly (a u32, 1:
/// yes), and the boot it was last opened on (`BOOT_LEN` bytes).
const CLEAN_AT: u64 = 128;
const BOOT_AT: u64 = 132;
const BOOT_LEN: usize = 36;

/// This boot's identity (`/proc/sys/kernel/random/boot_id`).
fn boot_id() -> [u8; BOOT_LEN] {
    let mut b = [0u8; BOOT_LEN];
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let s = s.trim().as_bytes();
        let n = s.len().min(BOOT_LEN);
        b[..n].copy_from_slice(&s[..n]);
    }
    b
}

impl FileHead {
    const LEN: usize = 8 + 4 + 4 + 8 + 8 + 4 + COMP_LEN;

    fn write(&self, b: &mut [u8]) {
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.slots.to_le_bytes());
        b[16..24].copy_from_slice(&self.store_bytes.to_le_bytes());
        b[24..32].copy_from_slice(&self.entries.to_le_bytes());
        b[32..36].copy_from_slice(&self.comp_len.to_le_bytes());
        b[36..Self::LEN].copy_from_slice(&self.comp);
    }

    /// `None` if `b` does not start with the magic.
    fn read(b: &[u8]) -> Option<FileHead> {
        if b.len() < Self::LEN || &b[..8] != MAGIC {
            return None;
        }
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap_or_default());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap_or_default());
        let mut comp = [0; COMP_LEN];
        comp.copy_from_slice(&b[36..Self::LEN]);
        Some(FileHead {
            version: u32_at(8),
            slots: u32_at(12),
            store_bytes: u64_at(16),
            entries: u64_at(24),
            comp_len: u32_at(32),
            comp,
        })
    }
}

/// A store of `store_bytes`: how many messages its index holds, and the
/// slot's size.
pub fn geometry(store_bytes: usize) -> (usize, usize) {
    let entries = (store_bytes / 64).max(64);
    (entries, slot_size(entries, store_bytes))
}

fn slot_size(entries: usize, bytes: usize) -> usize {
    (HEAD + entries * ENTRY + bytes).div_ceil(PAGE) * PAGE
}

/// The first `comp_len` bytes of `comp`, bounded.
fn comp_of(comp: &[u8; COMP_LEN], len: u32) -> &[u8] {
    &comp[..(len as usize).min(COMP_LEN)]
}

/// The mapping, unmapped when its last slot is dropped. Only its base
/// pointer, taken once, is used.
struct Mapping {
    _map: MmapMut,
    _file: Option<File>,
}

/// One session's slot. Slots never overlap, and each is handed out once.
pub struct Slot {
    _map: Arc<Mapping>,
    base: NonNull<u8>,
    entries: usize,
    bytes: usize,
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot").field("head", self.head()).field("entries", &self.entries).finish()
    }
}

// SAFETY: a Slot is the only handle to its bytes of the mapping (which the
// Arc keeps mapped); moving it to another thread moves that ownership.
unsafe impl Send for Slot {}

impl Slot {
    /// Its head.
    pub fn head(&self) -> &SlotHead {
        // SAFETY: `base` is page-aligned, inside the mapping, and followed by
        // HEAD bytes this slot alone owns; all-zero bytes are a valid SlotHead.
        unsafe { &*self.base.as_ptr().cast::<SlotHead>() }
    }

    /// Its head, its index and its bytes, to change.
    pub fn parts(&mut self) -> (&mut SlotHead, &mut [Entry], &mut [u8]) {
        let p = self.base.as_ptr();
        // SAFETY: the three ranges are disjoint parts of this slot (see
        // `geometry`), aligned (a page, then HEAD = 128 bytes, then 32-byte
        // entries of 8-byte alignment), and any bytes are valid for each type.
        unsafe {
            (
                &mut *p.cast::<SlotHead>(),
                std::slice::from_raw_parts_mut(p.add(HEAD).cast::<Entry>(), self.entries),
                std::slice::from_raw_parts_mut(p.add(HEAD + self.entries * ENTRY), self.bytes),
            )
        }
    }

    /// Its index and bytes, to read.
    pub fn view(&self) -> (&[Entry], &[u8]) {
        let p = self.base.as_ptr();
        // SAFETY: as for `parts`, shared.
        unsafe {
            (
                std::slice::from_raw_parts(p.add(HEAD).cast::<Entry>(), self.entries),
                std::slice::from_raw_parts(p.add(HEAD + self.entries * ENTRY), self.bytes),
            )
        }
    }

    /// The SenderCompID of the session that has it (empty if none).
    pub fn comp(&self) -> &[u8] {
        let h = self.head();
        comp_of(&h.comp, h.comp_len)
    }

    /// Give it to session `comp`, from sequence number 1, its ExecIDs
    /// from `first_exec`.
    pub fn claim(&mut self, comp: &[u8], first_exec: u64) {
        let (h, _, _) = self.parts();
        let n = comp.len().min(COMP_LEN);
        h.comp = [0; COMP_LEN];
        h.comp[..n].copy_from_slice(&comp[..n]);
        h.comp_len = n as u32;
        h.seqs = Seqs { next_out: 1, next_in: 1, next_exec: first_exec };
        h.ring = RingState::default();
        h.used = 1;
    }
}

/// Every slot of a region, and the file behind it if any.
pub struct Region {
    pub slots: Vec<Slot>,
    /// A handle on the file, to write it to disk and [`Region::close_clean`] at the end.
    pub file: Option<File>,
    /// The file was left open by an earlier boot (the host went down with
    /// the gateway running): what it holds may be older than what was
    /// sent.
    pub stale: bool,
}

impl Region {
    /// `n` slots of `store_bytes` stores in anonymous memory (nothing
    /// lasts past the process). Pages are touched only when used.
    pub fn anonymous(n: usize, store_bytes: usize) -> std::io::Result<Region> {
        let (entries, size) = geometry(store_bytes);
        // Pages are touched as stores fill: no swap reserved for them all.
        let mut map = memmap2::MmapOptions::new().len((n * size).max(PAGE)).no_reserve_swap().map_anon()?;
        let base = map.as_mut_ptr();
        let slots = carve(Mapping { _map: map, _file: None }, base, n, entries, size, store_bytes);
        Ok(Region { slots, file: None, stale: false })
    }

    /// Mark the file closed cleanly (after the loops stopped and a last sync).
    pub fn close_clean(file: &File) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        file.write_at(&1u32.to_le_bytes(), CLEAN_AT)?;
        file.sync_data()
    }

    /// One slot in anonymous memory with room for `entries` messages and
    /// `bytes` of bodies (tests, and stores of other sizes).
    pub fn one(entries: usize, bytes: usize) -> std::io::Result<Slot> {
        let size = slot_size(entries, bytes);
        let mut map = MmapMut::map_anon(size)?;
        let base = map.as_mut_ptr();
        let mut slots = carve(Mapping { _map: map, _file: None }, base, 1, entries, size, bytes);
        slots.pop().ok_or_else(|| std::io::Error::other("no slot"))
    }

    /// The slots kept in the file at `path` for a gateway with CompID
    /// `comp`: made if absent; refused if made for another CompID, another
    /// slot count or store size, or held by another process.
    pub fn open(path: &Path, comp: &[u8], n: usize, store_bytes: usize) -> Result<Region, String> {
        let shown = path.display();
        let (entries, size) = geometry(store_bytes);
        let len = PAGE + n * size;
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            // Never through a link someone left at that name; ours alone to read.
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(path)
                .map_err(|e| format!("FIX session state {shown}: {e}"))?
        };
        let meta = file.metadata().map_err(|e| format!("FIX session state {shown}: {e}"))?;
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            // SAFETY: geteuid has no arguments and cannot fail.
            let me = unsafe { libc::geteuid() };
            if !meta.is_file() || meta.uid() != me || meta.permissions().mode() & 0o077 != 0 {
                return Err(format!(
                    "FIX session state {shown}: not a regular file of this user with mode 0600 \
                     (it holds every session's reports: chown and chmod 600 it, or move it away)"
                ));
            }
        }
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(format!(
                    "FIX session state {shown}: another process holds it (is another gateway running?)"
                ));
            }
            return Err(format!("FIX session state {shown}: cannot lock it: {e}"));
        }
        let had = meta.len();
        let want = FileHead {
            version: VERSION,
            slots: n as u32,
            store_bytes: store_bytes as u64,
            entries: entries as u64,
            comp_len: comp.len().min(COMP_LEN) as u32,
            comp: {
                let mut c = [0; COMP_LEN];
                c[..comp.len().min(COMP_LEN)].copy_from_slice(&comp[..comp.len().min(COMP_LEN)]);
                c
            },
        };
        if had == 0 {
            file.set_len(len as u64).map_err(|e| format!("FIX session state {shown}: {e}"))?;
        }
        if had == 0 || had == len as u64 {
            // Every block reserved now: a store into the mapping never
            // finds the disk full (which would be a SIGBUS on the loop).
            crate::sys::allocate(&file, len as u64)
                .map_err(|e| format!("FIX session state {shown}: fallocate: {e}"))?;
        } else {
            return Err(format!(
                "FIX session state {shown}: {had} bytes, not the {len} of {n} sessions with {store_bytes}-byte stores: \
                 it was made with another --fix-store-bytes; give that, or move the file away (every session then starts at 1)"
            ));
        }
        // The file is ours (locked above: no other gateway writes it).
        let mut map = crate::sys::map_file(&file).map_err(|e| format!("FIX session state {shown}: mmap: {e}"))?;
        // A file whose header never reached the disk (made just before a
        // power loss) is all zeros: made again.
        let blank = map[..PAGE].iter().all(|&b| b == 0);
        let mut stale = false;
        if had == 0 || blank {
            want.write(&mut map[..FileHead::LEN]);
        } else {
            let got = FileHead::read(&map).filter(|h| h.version == VERSION);
            let Some(got) = got else {
                return Err(format!("FIX session state {shown}: not a tailgate FIX session file (or another version)"));
            };
            if got.slots != want.slots || got.store_bytes != want.store_bytes || got.entries != want.entries {
                return Err(format!(
                    "FIX session state {shown}: made for {} sessions with {}-byte stores, not {n} with {store_bytes}: \
                     give that --fix-store-bytes, or move the file away (every session then starts at 1)",
                    got.slots, got.store_bytes
                ));
            }
            if comp_of(&got.comp, got.comp_len) != comp_of(&want.comp, want.comp_len) {
                return Err(format!(
                    "FIX session state {shown}: made for CompID {:?}, not {:?}: give that --fix-comp-id, or move the file away",
                    String::from_utf8_lossy(comp_of(&got.comp, got.comp_len)),
                    String::from_utf8_lossy(comp)
                ));
            }
            let clean =
                u32::from_le_bytes(map[CLEAN_AT as usize..CLEAN_AT as usize + 4].try_into().unwrap_or_default());
            let boot = &map[BOOT_AT as usize..BOOT_AT as usize + BOOT_LEN];
            stale = clean != 1 && boot != boot_id();
        }
        // Open on this boot, not closed cleanly until `close_clean`; on disk
        // before any session is touched.
        map[CLEAN_AT as usize..CLEAN_AT as usize + 4].copy_from_slice(&0u32.to_le_bytes());
        map[BOOT_AT as usize..BOOT_AT as usize + BOOT_LEN].copy_from_slice(&boot_id());
        map.flush_range(0, PAGE).map_err(|e| format!("FIX session state {shown}: {e}"))?;
        // SAFETY: the slots start a page in; the mapping is `len` long.
        let base = unsafe { map.as_mut_ptr().add(PAGE) };
        let sync = file.try_clone().map_err(|e| format!("FIX session state {shown}: {e}"))?;
        let slots = carve(Mapping { _map: map, _file: Some(file) }, base, n, entries, size, store_bytes);
        Ok(Region { slots, file: Some(sync), stale })
    }
}

fn carve(map: Mapping, base: *mut u8, n: usize, entries: usize, size: usize, bytes: usize) -> Vec<Slot> {
    let map = Arc::new(map);
    (0..n)
        .map(|i| Slot {
            _map: map.clone(),
            // SAFETY: slot i lies inside the mapping (n slots of `size` from `base`).
            base: NonNull::new(unsafe { base.add(i * size) }).expect("a mapping is not at address 0"),
            entries,
            bytes,
        })
        .collect()
}
