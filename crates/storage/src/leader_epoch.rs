//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`):
//! for every leader epoch that wrote to the log, the first offset it wrote.
//! Followers use it through OffsetForLeaderEpoch (KIP-101, KIP-279) and the
//! Fetch answer's diverging epoch (KIP-320, KIP-595) to find where their log
//! parted from the leader's; consumers use it to detect log truncation.
//!
//! Persisted as Kafka's `leader-epoch-checkpoint` file, written atomically
//! (temp file, fsync, rename, fsync of the directory) on every change:
//!
//! ```text
//! 0            version
//! 2            number of entries
//! 0 0          epoch start_offset
//! 3 120
//! ```
//!
//! Entries are strictly increasing in both epoch and start offset.

use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::meta::write_atomically;

pub const CHECKPOINT_FILE: &str = "leader-epoch-checkpoint";
const CHECKPOINT_VERSION: i32 = 0;
/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
pub const UNDEFINED_EPOCH: i32 = -1;
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: i64,
}

pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    /// An empty cache persisted at `<dir>/leader-epoch-checkpoint` (nothing is written yet).
    pub fn empty(dir: &Path) -> LeaderEpochCache {
        LeaderEpochCache { path: dir.join(CHECKPOINT_FILE), entries: Vec::new() }
    }

    /// Loads the checkpoint in `dir`. `Ok(None)` when there is no file (a log
    /// written before leader epochs were tracked): the caller rebuilds the
    /// cache from the batch headers.
    pub fn load(dir: &Path) -> Result<Option<LeaderEpochCache>> {
        let path = dir.join(CHECKPOINT_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        let entries = parse_checkpoint(&text).map_err(|reason| StorageError::Corrupt { path: path.clone(), reason })?;
        Ok(Some(LeaderEpochCache { path, entries }))
    }

    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` wrote its first batch at `start_offset`, and
    /// persists the change. Negative epochs (batches from clients of old
    /// message formats, or not stamped by a leader) are not tracked. An
    /// entry that is not newer than the latest in both epoch and offset
    /// removes the entries it contradicts, as Kafka does after a truncation.
    /// Returns whether anything changed.
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> Result<bool> {
        if !self.assign_in_memory(epoch, start_offset) {
            return Ok(false);
        }
        self.flush()?;
        Ok(true)
    }

    /// [`LeaderEpochCache::assign`] without persisting (rebuilds flush once at the end).
    pub fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        if epoch < 0 || start_offset < 0 {
            return false;
        }
        let needed = match self.entries.last() {
            None => true,
            Some(latest) => epoch != latest.epoch || start_offset < latest.start_offset,
        };
        if !needed {
            return false;
        }
        let removed = self.remove_from_end(|e| e.epoch >= epoch || e.start_offset >= start_offset);
        if removed.len() > 1 || removed.first().is_some_and(|r| r.start_offset != start_offset) {
            tracing::warn!(
                checkpoint = %self.path.display(), epoch, start_offset, ?removed,
                "a new leader epoch entry replaced entries it contradicts"
            );
        }
        self.entries.push(EpochEntry { epoch, start_offset });
        true
    }

    fn remove_from_end(&mut self, doomed: impl Fn(&EpochEntry) -> bool) -> Vec<EpochEntry> {
        let keep = self.entries.iter().rposition(|e| !doomed(e)).map(|i| i + 1).unwrap_or(0);
        self.entries.split_off(keep)
    }

    /// Kafka's `LeaderEpochFileCache.endOffsetFor`: the largest epoch <=
    /// `requested` that this log knows, and the offset where the next epoch
    /// starts (or `log_end_offset` for the latest epoch). `(-1, -1)` when
    /// `requested` is undefined or newer than every known epoch. A requested
    /// epoch older than every known one answers `(requested, start of the
    /// first known epoch)`: that data is gone, the follower copies from there.
    pub fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let Some(higher) = self.entries.iter().find(|e| e.epoch > requested) else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match self.entries.iter().rev().find(|e| e.epoch <= requested) {
            None => (requested, higher.start_offset),
            Some(floor) => (floor.epoch, higher.start_offset),
        }
    }

    /// The epoch of the batch holding `offset`: the latest entry starting at or before it.
    pub fn epoch_for_offset(&self, offset: i64) -> Option<i32> {
        self.entries.iter().rev().find(|e| e.start_offset <= offset).map(|e| e.epoch)
    }

    /// Forgets entries starting at or after `end_offset` (the log was cut there).
    pub fn truncate_from_end(&mut self, end_offset: i64) -> Result<()> {
        if self.truncate_from_end_in_memory(end_offset) {
            self.flush()?;
        }
        Ok(())
    }

    pub fn truncate_from_end_in_memory(&mut self, end_offset: i64) -> bool {
        if end_offset < 0 || !self.entries.last().is_some_and(|e| e.start_offset >= end_offset) {
            return false;
        }
        self.remove_from_end(|e| e.start_offset >= end_offset);
        true
    }

    /// The log now starts at `start_offset`: entries wholly before it go, and
    /// the entry covering it now starts there (Kafka's `truncateFromStart`).
    pub fn truncate_from_start(&mut self, start_offset: i64) -> Result<()> {
        if self.truncate_from_start_in_memory(start_offset) {
            self.flush()?;
        }
        Ok(())
    }

    pub fn truncate_from_start_in_memory(&mut self, start_offset: i64) -> bool {
        let Some(covering) = self.entries.iter().rposition(|e| e.start_offset <= start_offset) else { return false };
        if covering == 0 && self.entries[0].start_offset == start_offset {
            return false;
        }
        self.entries.drain(..covering);
        self.entries[0].start_offset = start_offset;
        true
    }

    /// Writes the checkpoint file atomically.
    pub fn flush(&self) -> Result<()> {
        write_atomically(&self.path, render_checkpoint(&self.entries).as_bytes())
    }
}

fn render_checkpoint(entries: &[EpochEntry]) -> String {
    let mut out = format!("{CHECKPOINT_VERSION}\n{}\n", entries.len());
    for e in entries {
        out.push_str(&format!("{} {}\n", e.epoch, e.start_offset));
    }
    out
}

fn parse_checkpoint(text: &str) -> std::result::Result<Vec<EpochEntry>, String> {
    let mut lines = text.lines();
    let version: i32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("the first line is not a version number")?;
    if version != CHECKPOINT_VERSION {
        return Err(format!("unknown checkpoint version {version}"));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or("the second line is not an entry count")?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for (i, line) in lines.by_ref().take(count).enumerate() {
        let mut fields = line.split_whitespace();
        let epoch = fields.next().and_then(|f| f.parse::<i32>().ok());
        let start = fields.next().and_then(|f| f.parse::<i64>().ok());
        let (Some(epoch), Some(start_offset), None) = (epoch, start, fields.next()) else {
            return Err(format!("entry {i} is not 'epoch start_offset': {line:?}"));
        };
        if epoch < 0 || start_offset < 0 {
            return Err(format!("entry {i} has a negative epoch or offset: {line:?}"));
        }
        if entries.last().is_some_and(|last| last.epoch >= epoch || last.start_offset > start_offset) {
            return Err(format!("entry {i} ({line:?}) does not follow the previous one"));
        }
        entries.push(EpochEntry { epoch, start_offset });
    }
    if entries.len() != count {
        return Err(format!("the header says {count} entries but the file holds {}", entries.len()));
    }
    if lines.any(|l| !l.trim().is_empty()) {
        return Err("lines after the last entry".into());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
        let mut c = LeaderEpochCache::empty(Path::new("/nonexistent"));
        for &(epoch, start) in entries {
            assert!(c.assign_in_memory(epoch, start));
        }
        c
    }

    #[test]
    fn end_offset_for_follows_kafka() {
        // Epochs 1 at 0, 3 at 10, 5 at 20; log end 30.
        let c = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(UNDEFINED_EPOCH, 30), (-1, -1));
        assert_eq!(c.end_offset_for(5, 30), (5, 30), "the latest epoch ends at the log end");
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(c.end_offset_for(4, 30), (3, 20), "an unknown epoch in between: the floor epoch, the next start");
        assert_eq!(c.end_offset_for(1, 30), (1, 10));
        assert_eq!(c.end_offset_for(0, 30), (0, 0), "older than all known: the first known start");
        assert_eq!(c.end_offset_for(6, 30), (-1, -1), "newer than all known");
        assert_eq!(LeaderEpochCache::empty(Path::new("/x")).end_offset_for(0, 5), (-1, -1));
    }

    #[test]
    fn assign_keeps_entries_monotonic() {
        let mut c = cache(&[(0, 0), (2, 10)]);
        assert!(!c.assign_in_memory(2, 15), "same epoch later: nothing new");
        assert!(!c.assign_in_memory(-1, 20), "negative epochs are not tracked");
        assert!(c.assign_in_memory(3, 12));
        // A lower start offset for a newer epoch (after a truncation) drops what it contradicts.
        assert!(c.assign_in_memory(4, 5));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 0, start_offset: 0 }, EpochEntry { epoch: 4, start_offset: 5 }]);
    }

    #[test]
    fn truncations_from_both_ends() {
        let mut c = cache(&[(0, 0), (2, 10), (3, 20)]);
        assert!(c.truncate_from_end_in_memory(15));
        assert_eq!(c.latest(), Some(EpochEntry { epoch: 2, start_offset: 10 }));
        assert!(!c.truncate_from_end_in_memory(15), "nothing left at or past 15");
        assert!(c.truncate_from_start_in_memory(12));
        assert_eq!(c.entries(), &[EpochEntry { epoch: 2, start_offset: 12 }]);
        assert!(!c.truncate_from_start_in_memory(12));
        assert!(!c.truncate_from_start_in_memory(3), "a start before every entry changes nothing");
        assert_eq!(c.epoch_for_offset(11), None);
        assert_eq!(c.epoch_for_offset(40), Some(2));
    }

    #[test]
    fn checkpoint_round_trips_in_kafkas_format_and_bad_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(LeaderEpochCache::load(dir.path()).unwrap().is_none());
        let mut c = LeaderEpochCache::empty(dir.path());
        c.assign(0, 0).unwrap();
        c.assign(7, 42).unwrap();
        let text = std::fs::read_to_string(dir.path().join(CHECKPOINT_FILE)).unwrap();
        assert_eq!(text, "0\n2\n0 0\n7 42\n");
        let loaded = LeaderEpochCache::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded.entries(), c.entries());
        for bad in ["", "1\n0\n", "0\n2\n0 0\n", "0\n1\n0\n", "0\n2\n3 5\n2 9\n", "0\n1\n0 0\n1 1\n", "0\n1\n-1 0\n"] {
            std::fs::write(dir.path().join(CHECKPOINT_FILE), bad).unwrap();
            assert!(
                matches!(LeaderEpochCache::load(dir.path()), Err(StorageError::Corrupt { .. })),
                "{bad:?} must be refused"
            );
        }
    }
}
