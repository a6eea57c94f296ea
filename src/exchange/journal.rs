//! One account's sequenced messages, numbered from 1: what a SoupBinTCP
//! server replays when a client logs in again asking for an earlier
//! number. Kept in memory and, with a file, appended to it as they are made
//! (length-prefixed records), so a restarted simulator numbers on from
//! where it stopped and still replays what it sent before.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

#[derive(Debug, Default)]
pub struct Journal {
    bytes: Vec<u8>,
    /// End of message i (0-based) in `bytes`.
    ends: Vec<usize>,
    file: Option<BufWriter<File>>,
}

impl Journal {
    /// A journal in memory only.
    pub fn new() -> Self {
        Journal::default()
    }

    /// A journal kept in `path`: what it holds is read back, and what is
    /// added is appended. A torn last record (the process died while
    /// writing it) is dropped and the file cut there.
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut j = Journal::new();
        let mut data = Vec::new();
        if let Ok(mut f) = File::open(path) {
            f.read_to_end(&mut data)?;
        }
        let mut at = 0;
        while at + 2 <= data.len() {
            let n = usize::from(u16::from_be_bytes([data[at], data[at + 1]]));
            if at + 2 + n > data.len() {
                break;
            }
            j.bytes.extend_from_slice(&data[at + 2..at + 2 + n]);
            j.ends.push(j.bytes.len());
            at += 2 + n;
        }
        let f = OpenOptions::new().create(true).write(true).truncate(false).open(path)?;
        f.set_len(at as u64)?;
        let mut f = BufWriter::new(f);
        use std::io::Seek;
        f.seek(io::SeekFrom::Start(at as u64))?;
        j.file = Some(f);
        Ok(j)
    }

    /// How many messages it holds; the next one is number `len() + 1`.
    pub fn len(&self) -> u64 {
        self.ends.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Message number `seq` (from 1).
    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// Add a message; its number.
    pub fn push(&mut self, msg: &[u8]) -> u64 {
        self.bytes.extend_from_slice(msg);
        self.ends.push(self.bytes.len());
        if let Some(f) = &mut self.file {
            // A failed write leaves the journal in memory whole; the file
            // then misses the tail, which `flush` reports.
            let _ = f.write_all(&(msg.len() as u16).to_be_bytes()).and_then(|_| f.write_all(msg));
        }
        self.len()
    }

    /// Push what was added to the file (once a loop iteration).
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_from_one_and_survives_a_restart_and_a_torn_record() {
        let path = std::env::temp_dir().join(format!("tg-journal-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        {
            let mut j = Journal::open(&path).unwrap();
            assert_eq!(j.push(b"one"), 1);
            assert_eq!(j.push(b"two!"), 2);
            j.flush().unwrap();
            assert_eq!(j.get(1), Some(&b"one"[..]));
            assert_eq!((j.get(0), j.get(3)), (None, None));
        }
        // A torn third record.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[0, 9, b'x']).unwrap();
        drop(f);
        let mut j = Journal::open(&path).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!(j.get(2), Some(&b"two!"[..]));
        assert_eq!(j.push(b"three"), 3);
        j.flush().unwrap();
        drop(j);
        let j = Journal::open(&path).unwrap();
        assert_eq!((j.len(), j.get(3)), (3, Some(&b"three"[..])));
        let _ = std::fs::remove_file(&path);
    }
}
