//! The Raft log as files: `log` is append-only, one frame per entry
//! (length u32 BE, CRC-32C u32 BE of the payload, payload = the entry as JSON);
//! `vote.json` (fsynced, replaced atomically), `purged.json` (the last purged log id),
//! `committed.json` (a hint only: not fsynced, it may lag).
//!
//! An entry is acknowledged to openraft (the append callback) only after its bytes
//! are fsynced. On open, a torn or corrupt tail (a crash mid-append: never
//! acknowledged) is cut off with a warning; the entries before it are kept.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogId, RaftLogReader, StorageIOError, Vote};

use super::{crc32c, write_file_atomically, Entry, LogId, NodeId, StorageError, TypeConfig};

/// A frame larger than this is corruption, not an entry.
const MAX_ENTRY_BYTES: usize = 64 << 20;
const FRAME_HEADER: usize = 8;

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

type Entries = Arc<RwLock<BTreeMap<u64, Entry>>>;

pub struct LogStore {
    dir: PathBuf,
    file: Arc<Mutex<File>>,
    entries: Entries,
    /// File position of each entry's frame, for truncation.
    positions: BTreeMap<u64, u64>,
    end: u64,
    vote: Option<Vote<NodeId>>,
    last_purged: Option<LogId>,
    committed: Option<LogId>,
}

/// Reads entries for replication; shares the in-memory entries with the store.
#[derive(Clone)]
pub struct LogReader {
    entries: Entries,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io_err(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn read_entries(entries: &Entries) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, Entry>> {
    entries.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write_entries(entries: &Entries) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, Entry>> {
    entries.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn frame(entry: &Entry) -> std::io::Result<Vec<u8>> {
    let payload = serde_json::to_vec(entry).map_err(io_err)?;
    let mut out = Vec::with_capacity(FRAME_HEADER + payload.len());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(&crc32c(&payload).to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(out)
}

/// Decodes the frames of a log file up to the first torn or corrupt one;
/// returns the entries with their positions and the length of the intact prefix.
fn decode_frames(bytes: &[u8]) -> (Vec<(u64, Entry)>, u64, Option<String>) {
    let mut entries = Vec::new();
    let mut pos = 0usize;
    let mut previous_index: Option<u64> = None;
    let problem = loop {
        let rest = &bytes[pos..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < FRAME_HEADER {
            break Some(format!("torn frame header ({} bytes)", rest.len()));
        }
        let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_ENTRY_BYTES {
            break Some(format!("frame length {len} exceeds {MAX_ENTRY_BYTES}"));
        }
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            break Some(format!("torn frame: {len} bytes announced, {} present", rest.len() - FRAME_HEADER));
        };
        if crc32c(payload) != crc {
            break Some("CRC-32C mismatch".to_string());
        }
        let entry: Entry = match serde_json::from_slice(payload) {
            Ok(entry) => entry,
            Err(e) => break Some(format!("undecodable entry: {e}")),
        };
        let index = entry.get_log_id().index;
        if previous_index.is_some_and(|p| p + 1 != index) {
            break Some(format!("entry {index} does not follow {previous_index:?}"));
        }
        previous_index = Some(index);
        entries.push((pos as u64, entry));
        pos += FRAME_HEADER + len;
    };
    (entries, pos as u64, problem)
}

impl LogStore {
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let vote = read_json(&dir.join("vote.json"))?;
        let last_purged: Option<LogId> = read_json(&dir.join("purged.json"))?;
        // A lost or torn hint is harmless: openraft then re-commits from the snapshot.
        let committed = read_json(&dir.join("committed.json")).unwrap_or(None);
        let path = dir.join("log");
        let mut file = OpenOptions::new().create(true).read(true).append(true).open(&path)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        let (decoded, intact, problem) = decode_frames(&bytes);
        if let Some(problem) = problem {
            tracing::warn!(
                path = %path.display(),
                position = intact,
                cut_bytes = bytes.len() as u64 - intact,
                "metadata log: {problem}; cutting the log there (an append that was never acknowledged)"
            );
            file.set_len(intact)?;
            file.sync_all()?;
        }
        let mut entries = BTreeMap::new();
        let mut positions = BTreeMap::new();
        for (position, entry) in decoded {
            let index = entry.get_log_id().index;
            // Left over from a purge interrupted before the file was rewritten.
            if last_purged.is_some_and(|p: LogId| index <= p.index) {
                continue;
            }
            positions.insert(index, position);
            entries.insert(index, entry);
        }
        Ok(LogStore {
            dir: dir.to_path_buf(),
            file: Arc::new(Mutex::new(file)),
            entries: Arc::new(RwLock::new(entries)),
            positions,
            end: intact,
            vote,
            last_purged,
            committed,
        })
    }

    /// Rewrites the log file without the purged entries: the kept frames go to a new
    /// file, fsynced, renamed over the old one.
    fn rewrite_without_purged(&mut self) -> std::io::Result<()> {
        let first_kept = self.positions.values().next().copied().unwrap_or(self.end);
        if first_kept == 0 {
            return Ok(());
        }
        let path = self.dir.join("log");
        let mut bytes = Vec::new();
        File::open(&path)?.read_to_end(&mut bytes)?;
        let kept = bytes.get(first_kept as usize..self.end as usize).ok_or_else(|| io_err("metadata log shorter than its index"))?;
        write_file_atomically(&path, kept, true)?;
        *lock(&self.file) = OpenOptions::new().read(true).append(true).open(&path)?;
        for position in self.positions.values_mut() {
            *position -= first_kept;
        }
        self.end -= first_kept;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_entries(&self.entries).range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        Ok(read_entries(&self.entries).range(range).map(|(_, e)| e.clone()).collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last = read_entries(&self.entries).values().next_back().map(|e| *e.get_log_id());
        Ok(LogState { last_purged_log_id: self.last_purged, last_log_id: last.or(self.last_purged) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        LogReader { entries: self.entries.clone() }
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(vote).map_err(|e| StorageIOError::write_vote(&e))?;
        write_file_atomically(&self.dir.join("vote.json"), &bytes, true).map_err(|e| StorageIOError::write_vote(&e))?;
        self.vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        Ok(self.vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        self.committed = committed;
        let bytes = serde_json::to_vec(&committed).map_err(|e| StorageIOError::write(&e))?;
        // Not fsynced: a hint that may lag after a crash, which Raft tolerates.
        if let Err(e) = write_file_atomically(&self.dir.join("committed.json"), &bytes, false) {
            tracing::warn!(error = %e, "metadata log: could not save the committed log id");
        }
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<Entry> = entries.into_iter().collect();
        let mut bytes = Vec::new();
        let mut positions = Vec::with_capacity(entries.len());
        for entry in &entries {
            positions.push((entry.get_log_id().index, self.end + bytes.len() as u64));
            bytes.extend_from_slice(&frame(entry).map_err(|e| StorageIOError::write_logs(&e))?);
        }
        let file = self.file.clone();
        let written = bytes.len() as u64;
        // Write and fsync off the async threads; the callback (= "durable") only after both.
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            let mut file = lock(&file);
            file.write_all(&bytes)?;
            file.sync_data()
        })
        .await
        .unwrap_or_else(|join| Err(io_err(join)));
        if let Err(e) = result {
            tracing::error!(error = %e, "metadata log: append failed");
            let storage_error = StorageIOError::write_logs(&e);
            callback.log_io_completed(Err(e));
            return Err(storage_error.into());
        }
        self.end += written;
        self.positions.extend(positions);
        let mut map = write_entries(&self.entries);
        for entry in entries {
            map.insert(entry.get_log_id().index, entry);
        }
        drop(map);
        callback.log_io_completed(Ok(()));
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let Some(&position) = self.positions.get(&log_id.index) else {
            return Ok(());
        };
        {
            let file = lock(&self.file);
            file.set_len(position).and_then(|_| file.sync_data()).map_err(|e| StorageIOError::write_logs(&e))?;
        }
        self.end = position;
        self.positions.retain(|index, _| *index < log_id.index);
        write_entries(&self.entries).retain(|index, _| *index < log_id.index);
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let bytes = serde_json::to_vec(&log_id).map_err(|e| StorageIOError::write_logs(&e))?;
        write_file_atomically(&self.dir.join("purged.json"), &bytes, true).map_err(|e| StorageIOError::write_logs(&e))?;
        self.last_purged = Some(log_id);
        self.positions.retain(|index, _| *index > log_id.index);
        write_entries(&self.entries).retain(|index, _| *index > log_id.index);
        self.rewrite_without_purged().map_err(|e| StorageIOError::write_logs(&e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::{MetadataBatch, MetadataRecord};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(term: u64, index: u64) -> Entry {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Normal(MetadataBatch {
                records: vec![MetadataRecord::ClusterId { cluster_id: format!("c{index}") }],
            }),
        }
    }

    fn write_frames(dir: &Path, entries: &[Entry]) {
        let mut bytes = Vec::new();
        for e in entries {
            bytes.extend(frame(e).unwrap());
        }
        std::fs::write(dir.join("log"), bytes).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_the_intact_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        write_frames(dir.path(), &[entry(1, 1), entry(1, 2), entry(1, 3)]);
        let full = std::fs::metadata(dir.path().join("log")).unwrap().len();
        // A crash in the middle of the third frame.
        OpenOptions::new().write(true).open(dir.path().join("log")).unwrap().set_len(full - 5).unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(read_entries(&store.entries).keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(std::fs::metadata(dir.path().join("log")).unwrap().len(), store.end);
    }

    #[test]
    fn a_corrupt_frame_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        write_frames(dir.path(), &[entry(1, 1), entry(1, 2), entry(1, 3)]);
        let mut bytes = std::fs::read(dir.path().join("log")).unwrap();
        let second = frame(&entry(1, 1)).unwrap().len();
        bytes[second + FRAME_HEADER + 3] ^= 0x40; // a flipped bit in entry 2's payload
        std::fs::write(dir.path().join("log"), bytes).unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(read_entries(&store.entries).keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn a_forged_length_is_not_allocated() {
        let (entries, intact, problem) = decode_frames(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 1, 2]);
        assert!(entries.is_empty());
        assert_eq!(intact, 0);
        assert!(problem.unwrap().contains("exceeds"));
    }
}
