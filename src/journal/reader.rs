//! Reading the journal back: a segment file, or every segment in a
//! directory (in the order their names sort: start, loop, number).

use std::path::{Path, PathBuf};

use super::{Record, HEADER, MAGIC, RECORD};

/// The records of one segment file, up to the first empty or torn slot.
pub fn read_segment(path: &Path) -> Result<Vec<Record>, String> {
    let b = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if b.len() < HEADER || &b[..8] != MAGIC {
        return Err(format!("{}: not a tailgate journal segment", path.display()));
    }
    let rec = u32::from_le_bytes([b[8], b[9], b[10], b[11]]) as usize;
    if rec != RECORD {
        return Err(format!("{}: records of {rec} bytes (this version reads {RECORD})", path.display()));
    }
    let mut first = [0u8; 8];
    first.copy_from_slice(&b[32..40]);
    let first = u64::from_le_bytes(first);
    let mut out = Vec::new();
    for (i, chunk) in b[HEADER..].chunks_exact(RECORD).enumerate() {
        let slot: &[u8; RECORD] = chunk.try_into().map_err(|_| "a short record")?;
        match Record::decode(slot) {
            Some(r) => out.push(Record { seq: first + i as u64, ..r }),
            None => break,
        }
    }
    Ok(out)
}

/// The segment files of `path` (itself, if it is a file).
pub fn segments(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut v: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("{}: {e}", path.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "tgj"))
        .collect();
    v.sort();
    Ok(v)
}

/// Every record under `path`, each segment's in order, segments by name.
/// A segment that cannot be read (a crash left it without its header, or
/// it is not a journal's) is skipped and named in the second list.
pub fn read_all(path: &Path) -> Result<(Vec<Record>, Vec<String>), String> {
    let (mut out, mut bad) = (Vec::new(), Vec::new());
    for s in segments(path)? {
        match read_segment(&s) {
            Ok(r) => out.extend(r),
            Err(e) => bad.push(e),
        }
    }
    Ok((out, bad))
}

#[cfg(test)]
mod tests {
    use super::super::writer::{open, JournalConfig};
    use super::super::{kind, Record};
    use super::*;

    #[test]
    fn written_records_read_back_across_segments() {
        let dir = std::env::temp_dir().join(format!("tg-journal-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // Room for 4 records a segment: 10 records take three segments.
        let cfg = JournalConfig { dir: dir.clone(), segment_bytes: HEADER + 4 * RECORD, sync_ms: 1 };
        let (keeper, mut w) = open(cfg, 1, vec![], None).unwrap();
        let mut written = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while written < 10 && std::time::Instant::now() < deadline {
            let mut r = Record { kind: kind::ORDER, cl_ord_id: written + 1, qty: 5, ..Record::default() };
            if w[0].append(&mut r) {
                written += 1;
            } else {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        }
        assert_eq!(written, 10);
        drop(keeper);
        std::fs::write(dir.join("0-loop9-000000.tgj"), [0u8; 100]).unwrap();
        let (recs, bad) = read_all(&dir).unwrap();
        assert_eq!(bad.len(), 1, "a torn segment is skipped and named");
        assert_eq!(recs.iter().map(|r| r.cl_ord_id).collect::<Vec<_>>(), (1..=10).collect::<Vec<_>>());
        assert_eq!(recs.iter().map(|r| r.seq).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
        assert!(segments(&dir).unwrap().len() >= 4);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
