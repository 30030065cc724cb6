//! One partition's log: segments ordered by base offset, the log start and end
//! offsets, appends, reads, retention and recovery.
//!
//! Invariants:
//! - Offsets are dense and assigned only by [`Log::append`].
//! - Only the active (last) segment can have bytes that are not yet fsynced;
//!   a segment is fsynced before a new active segment is created.
//! - A read never returns part of a batch.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::config::LogConfig;
use crate::error::Result;

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The LogAppendTime stamped on the batches, or -1 under CreateTime.
    pub log_append_time: i64,
    pub log_start_offset: i64,
}

/// Bytes to read for a fetch, computed under the log's lock and executed
/// outside it ([`ReadPlan::read`]), so a slow read does not block appends.
/// Keeps the segment file open, so it stays readable even if retention
/// deletes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    pub file: Option<Arc<File>>,
    pub position: u64,
    pub len: usize,
}

impl ReadPlan {
    pub fn empty() -> ReadPlan {
        ReadPlan { file: None, position: 0, len: 0 }
    }
    /// Reads the planned bytes (whole batches).
    pub fn read(&self) -> std::io::Result<Bytes> {
        todo!("storage helper")
    }
}

/// Files with writes that are not yet durable, and the log end offset they
/// cover once synced. Run outside the log's lock, then report with
/// [`Log::mark_synced`].
#[derive(Debug)]
pub struct SyncJob {
    pub files: Vec<Arc<File>>,
    pub up_to_offset: i64,
}

impl SyncJob {
    /// fdatasync every file of the job.
    pub fn run(&self) -> std::io::Result<()> {
        todo!("storage helper")
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: i64,
}

pub struct Log {
    dir: PathBuf,
    config: LogConfig,
}

impl Log {
    /// Opens the log in `dir` (creating it if absent) and recovers it: loads
    /// segments and their indexes, validates the active segment's batches
    /// (CRC), truncates a torn or corrupt tail, rebuilds any index that is
    /// missing or inconsistent.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        let _ = (dir, config);
        todo!("storage helper")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
    pub fn config(&self) -> &LogConfig {
        &self.config
    }
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// Appends batches that [`crate::batch::validate_batches`] accepted.
    /// Assigns offsets in place from the log end offset, stamps LogAppendTime
    /// (`now_ms`) if the topic is so configured, rolls the active segment when
    /// `segment.bytes` / `segment.ms` say so, writes the bytes (page cache, not
    /// fsynced), and updates the indexes. All or nothing: on error nothing of
    /// the batches is visible.
    pub fn append(&mut self, batches: &mut [u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let _ = (batches, leader_epoch, now_ms);
        todo!("storage helper")
    }

    /// Appends batches that already carry their offsets (a replica copying
    /// from its leader, or tests). The first batch must start at the log end.
    pub fn append_with_offsets(&mut self, batches: &[u8]) -> Result<AppendInfo> {
        let _ = batches;
        todo!("storage helper")
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        todo!("storage helper")
    }
    /// Next offset to be assigned (= high watermark on a single node).
    pub fn log_end_offset(&self) -> i64 {
        todo!("storage helper")
    }
    /// The offset up to which data is fsynced (exclusive).
    pub fn durable_offset(&self) -> i64 {
        todo!("storage helper")
    }

    /// Plans a read of whole batches starting with the batch that contains
    /// `offset`, stopping before `max_offset` (exclusive; pass the high
    /// watermark) and, after the first batch, before `max_bytes` would be
    /// exceeded. With `min_one_batch` the first batch is returned even when
    /// larger than `max_bytes` (KIP-74). Batches never span segments in one
    /// plan: a read at the end of a segment returns that segment's tail only.
    /// `offset == log_end_offset` gives an empty plan; outside
    /// `[log_start_offset, log_end_offset]` is `OffsetOutOfRange`.
    pub fn read_plan(&self, offset: i64, max_offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadPlan> {
        let _ = (offset, max_offset, max_bytes, min_one_batch);
        todo!("storage helper")
    }

    /// The first offset whose batch's max timestamp is >= `timestamp`, with
    /// that batch's max timestamp (ListOffsets by time). None if no such batch.
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        let _ = timestamp;
        todo!("storage helper")
    }
    /// Offset and timestamp of the record with the largest timestamp
    /// (ListOffsets MAX_TIMESTAMP, -3). None for an empty log.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64)>> {
        todo!("storage helper")
    }

    /// Takes what must be fsynced for everything appended so far to be durable.
    /// None if all is already durable.
    pub fn sync_job(&mut self) -> Option<SyncJob> {
        todo!("storage helper")
    }
    /// Records that a [`SyncJob`] finished.
    pub fn mark_synced(&mut self, up_to_offset: i64) {
        let _ = up_to_offset;
        todo!("storage helper")
    }
    /// fsyncs everything now (shutdown, tests).
    pub fn flush(&mut self) -> Result<()> {
        todo!("storage helper")
    }

    /// DeleteRecords: moves the log start offset up to `offset` (clamped to
    /// the log end), deletes segments wholly below it, and persists the new
    /// start offset. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        let _ = offset;
        todo!("storage helper")
    }

    /// Deletes segments past `retention.ms` (by their largest timestamp) or
    /// beyond `retention.bytes`, oldest first, never the active segment
    /// unless it is itself expired (then it is rolled first, like Kafka).
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let _ = now_ms;
        todo!("storage helper")
    }

    /// Removes everything at and above `offset` (for a future follower).
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let _ = offset;
        todo!("storage helper")
    }

    /// Bytes on disk across all segments.
    pub fn size_bytes(&self) -> u64 {
        todo!("storage helper")
    }
    pub fn segment_count(&self) -> usize {
        todo!("storage helper")
    }

    /// Flushes data and indexes and marks a clean shutdown.
    pub fn close(self) -> Result<()> {
        todo!("storage helper")
    }
    /// Deletes the whole log from disk.
    pub fn delete(self) -> Result<()> {
        todo!("storage helper")
    }
}
