//! Sparse offset index and time index of one segment, in memory and in
//! Kafka's file layouts (`.index`: relative offset u32 + position u32;
//! `.timeindex`: timestamp i64 + relative offset u32; both big-endian).
//!
//! Indexes are hints: a missing or inconsistent index file is rebuilt from
//! the log by scanning batch headers, so they are never trusted blindly.

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::meta::write_atomically;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OffsetIndex {
    /// (offset relative to the segment base, byte position), both increasing.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub fn push(&mut self, relative_offset: u32, position: u32) {
        if self.entries.last().is_none_or(|&(o, p)| relative_offset > o && position > p) {
            self.entries.push((relative_offset, position));
        }
    }

    /// Position of the last indexed batch starting at or before `relative_offset` (0 if none).
    pub fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Drops entries at or past `position` (after a truncation).
    pub fn truncate_to_position(&mut self, position: u32) {
        let keep = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(keep);
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * 8);
        for &(o, p) in &self.entries {
            buf.extend_from_slice(&o.to_be_bytes());
            buf.extend_from_slice(&p.to_be_bytes());
        }
        write_atomically(path, &buf)
    }

    /// Loads an index file; None if it is missing or not consistent with a
    /// log of `log_size` bytes (then the caller rebuilds it).
    pub fn load(path: &Path, log_size: u64) -> Result<Option<OffsetIndex>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        if bytes.len() % 8 != 0 {
            return Ok(None);
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(8) {
            let o = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let p = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if p as u64 >= log_size || index.entries.last().is_some_and(|&(lo, lp)| o <= lo || p <= lp) {
                return Ok(None);
            }
            index.entries.push((o, p));
        }
        Ok(Some(index))
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimeIndex {
    /// (largest timestamp so far, offset relative to the segment base of the batch that raised it).
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self.entries.last().is_none_or(|&(t, o)| timestamp > t && relative_offset > o) {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset from which a scan for the first batch with a timestamp
    /// >= `timestamp` can start: every batch before it is older.
    pub fn scan_start(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub fn truncate_to_offset(&mut self, relative_offset: u32) {
        let keep = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(keep);
    }

    pub fn write(&self, path: &Path) -> Result<()> {
        let mut buf = Vec::with_capacity(self.entries.len() * 12);
        for &(t, o) in &self.entries {
            buf.extend_from_slice(&t.to_be_bytes());
            buf.extend_from_slice(&o.to_be_bytes());
        }
        write_atomically(path, &buf)
    }

    pub fn load(path: &Path) -> Result<Option<TimeIndex>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(path, e)),
        };
        if bytes.len() % 12 != 0 {
            return Ok(None);
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&chunk[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if index.entries.last().is_some_and(|&(lt, lo)| t <= lt || o <= lo) {
                return Ok(None);
            }
            index.entries.push((t, o));
        }
        Ok(Some(index))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_finds_the_floor_entry() {
        let mut index = OffsetIndex::default();
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.lookup(5), 0);
        assert_eq!(index.lookup(10), 4096);
        assert_eq!(index.lookup(19), 4096);
        assert_eq!(index.lookup(1000), 8192);
        index.truncate_to_position(8192);
        assert_eq!(index.lookup(1000), 4096);
    }

    #[test]
    fn files_round_trip_and_inconsistent_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.index");
        let mut index = OffsetIndex::default();
        index.push(1, 100);
        index.push(2, 200);
        index.write(&path).unwrap();
        assert_eq!(OffsetIndex::load(&path, 1000).unwrap(), Some(index));
        assert_eq!(OffsetIndex::load(&path, 150).unwrap(), None, "entry past the log end");
        std::fs::write(&path, [0u8; 7]).unwrap();
        assert_eq!(OffsetIndex::load(&path, 1000).unwrap(), None);
        let tpath = dir.path().join("x.timeindex");
        let mut t = TimeIndex::default();
        t.push(100, 0);
        t.push(200, 5);
        t.write(&tpath).unwrap();
        let loaded = TimeIndex::load(&tpath).unwrap().unwrap();
        assert_eq!(loaded.scan_start(150), 0);
        assert_eq!(loaded.scan_start(250), 5);
    }
}
