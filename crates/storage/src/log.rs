//! One partition's log: segments ordered by base offset, the log start and end
//! offsets, appends, reads, retention and recovery.
//!
//! Invariants:
//! - Offsets are dense and assigned only by [`Log::append`].
//! - Only the active (last) segment can have bytes that are not yet fsynced;
//!   a segment is fsynced before a new active segment is created.
//! - A read never returns part of a batch.
//! - The leader-epoch cache ([`crate::leader_epoch`]) covers exactly the
//!   batches in the log: appends extend it (before the bytes are written),
//!   truncations and log-start moves trim it, and opening the log trims it to
//!   the log end and adds what the active segment holds beyond it.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{assign_offsets, BatchHeader, BATCH_HEADER_LEN};
use crate::cleaner::{
    parse_swap_name, read_cleaner_checkpoint, swap_name, CleanStats, CleanedGroup, CleanedLog, CleanerConfig, CleaningTask,
    SegmentSnapshot, Throttler, CLEANED_SUFFIX, CLEANER_CHECKPOINT,
};
use crate::config::{LogConfig, TimestampType};
use crate::error::{Result, StorageError};
use crate::leader_epoch::LeaderEpochCache;
use crate::meta::write_atomically;
use crate::quarantine::Quarantined;
use crate::segment::{self, Segment, Walk};
use crate::txn_index::{self, AbortedTxn, ControlType};

const LOG_START_CHECKPOINT: &str = "log-start-offset";
const CLEAN_SHUTDOWN_MARKER: &str = ".clean-shutdown";
/// Extension of a segment's transaction index (Kafka's).
pub const TXN_INDEX: &str = "txnindex";
/// First offset of the oldest open transaction, or `none` (see [`Log::transaction_scan_start`]).
const TXN_SCAN_START: &str = "transaction-scan-start";

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
        let Some(file) = &self.file else { return Ok(Bytes::new()) };
        if self.len == 0 {
            return Ok(Bytes::new());
        }
        let mut buf = vec![0u8; self.len];
        file.read_exact_at(&mut buf, self.position)?;
        Ok(Bytes::from(buf))
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
        for file in &self.files {
            file.sync_data()?;
        }
        Ok(())
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
    segments: BTreeMap<i64, Segment>,
    log_start_offset: i64,
    synced_offset: i64,
    closed: bool,
    /// What recovery cut from this log when it was opened.
    quarantined: Vec<Quarantined>,
    /// First offset of every leader epoch in the log.
    epochs: LeaderEpochCache,
    /// Aborted transactions by marker offset (the segments' `.txnindex` files).
    aborted: Vec<AbortedTxn>,
}

/// Logs what recovery cut: a torn final write (routine after a crash) as a
/// warning, anything else (a CRC failure, broken framing, batches after the
/// bad one) as an error naming the bytes, the offsets and the quarantine file.
fn report_quarantine(dir: &Path, cut: &Quarantined) {
    let log = dir.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let file = cut.quarantine_file.display();
    if cut.torn_write_only {
        tracing::warn!(
            log, bytes = cut.bytes, first_lost_offset = cut.first_lost_offset, quarantine = %file,
            "recovery cut an incomplete final batch (a write interrupted by a crash, never acknowledged as durable); bytes kept in the quarantine file"
        );
        return;
    }
    let (salvageable, claimed_last) = (cut.intact.len(), cut.last_claimed_offset());
    tracing::error!(
        log, segment = %cut.segment.display(), position = cut.cut_at, bytes = cut.bytes,
        first_lost_offset = cut.first_lost_offset,
        last_claimed_offset = %claimed_last.map(|o| o.to_string()).unwrap_or_else(|| "unknown".into()),
        intact_batches_after_the_bad_one = salvageable, quarantine = %file,
        "CORRUPT LOG: recovery truncated the log at a batch that failed its check; offsets from first_lost_offset on are gone from the log, \
         and every cut byte was moved verbatim into the quarantine file (see ARCHITECTURE.md, 'Corruption and quarantine')"
    );
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Log {
    /// Opens the log in `dir` (creating it if absent) and recovers it: loads
    /// segments and their indexes, validates the active segment's batches
    /// (CRC) unless the last shutdown was clean, truncates a torn or corrupt
    /// tail, rebuilds any index that is missing or inconsistent.
    pub fn open(dir: &Path, config: LogConfig) -> Result<Log> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let marker = dir.join(CLEAN_SHUTDOWN_MARKER);
        let clean = marker.exists();
        recover_cleaner_files(dir)?;
        let mut bases = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
            let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if name.ends_with(".tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(stem) = name.strip_suffix(".log") {
                if let Ok(base) = stem.parse::<i64>() {
                    bases.push(base);
                }
            }
        }
        bases.sort_unstable();
        let now = now_ms();
        let mut segments = BTreeMap::new();
        let mut quarantined = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let is_active = i + 1 == bases.len();
            let (segment, cut) = Segment::open(dir, base, config.index_interval_bytes, is_active && !clean, now)?;
            if let Some(cut) = cut {
                report_quarantine(dir, &cut);
                quarantined.push(cut);
            }
            segments.insert(base, segment);
        }
        let checkpoint = read_checkpoint(&dir.join(LOG_START_CHECKPOINT))?;
        if segments.is_empty() {
            let base = checkpoint.unwrap_or(0).max(0);
            segments.insert(base, Segment::create(dir, base, now)?);
        }
        let first_base = segments.keys().next().copied().unwrap_or(0);
        let mut log = Log {
            dir: dir.to_path_buf(),
            config,
            segments,
            log_start_offset: first_base,
            synced_offset: 0,
            closed: false,
            quarantined,
            epochs: LeaderEpochCache::empty(dir),
            aborted: Vec::new(),
        };
        let mut end = log.log_end_offset();
        if let Some(start) = checkpoint.filter(|&start| start > end) {
            // Only an interrupted truncate_fully_and_start_at leaves the start past the end: finish it.
            tracing::warn!(log = %dir.display(), start, end, "finishing an interrupted full truncation");
            log.replace_segments_with_empty_one_at(start)?;
            let _ = std::fs::remove_file(dir.join(crate::leader_epoch::CHECKPOINT_FILE));
            end = start;
        }
        log.log_start_offset = checkpoint.unwrap_or(first_base).clamp(log.segments.keys().next().copied().unwrap_or(first_base), end);
        log.load_leader_epochs()?;
        log.load_transaction_index()?;
        // Whatever survived is made durable once, so durable_offset is truthful from here on.
        log.active().file.sync_data().map_err(|e| StorageError::io(log.active().log_path(), e))?;
        log.synced_offset = end;
        if clean {
            std::fs::remove_file(&marker).map_err(|e| StorageError::io(&marker, e))?;
        }
        Ok(log)
    }

    /// Loads the leader-epoch checkpoint, trims it to the log, and adds the
    /// epochs of batches it does not know yet. Without a checkpoint (a log
    /// written before epochs were tracked) or with an unreadable one, the
    /// cache is rebuilt from every batch header.
    fn load_leader_epochs(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        let (mut epochs, scan_from, mut changed) = match LeaderEpochCache::load(&self.dir) {
            Ok(Some(mut loaded)) => {
                // Entries past the log end are left by a crash between a truncation and its checkpoint.
                // An empty log keeps the entry at its start (DeleteRecords leaves the current epoch
                // starting at the new log start, as Kafka's truncateFromStart does).
                let keep_from = if end > self.log_start_offset { end } else { end + 1 };
                let trimmed = loaded.truncate_from_end_in_memory(keep_from);
                (loaded, self.active_segment_base(), trimmed)
            }
            Ok(None) => (LeaderEpochCache::empty(&self.dir), self.log_start_offset, false),
            Err(e) => {
                tracing::warn!(error = %e, "unreadable leader-epoch checkpoint; rebuilding it from the batch headers");
                (LeaderEpochCache::empty(&self.dir), self.log_start_offset, true)
            }
        };
        let log_start = self.log_start_offset;
        for_each_batch(self, scan_from, |h| {
            // Batches wholly below the log start (deleted records still in the
            // segment file) are not in the log: their epochs are not either.
            if h.last_offset() < log_start {
                return;
            }
            // Only newer epochs: a scan of part of the log must not contradict older entries.
            if epochs.latest_epoch().is_none_or(|latest| h.partition_leader_epoch > latest) {
                changed |= epochs.assign_in_memory(h.partition_leader_epoch, h.base_offset);
            }
        })?;
        changed |= epochs.truncate_from_start_in_memory(self.log_start_offset);
        if changed {
            epochs.flush()?;
        }
        self.epochs = epochs;
        Ok(())
    }

    /// Loads every segment's transaction index; entries past the log end
    /// (a recovery cut the tail) are dropped.
    fn load_transaction_index(&mut self) -> Result<()> {
        let end = self.log_end_offset();
        let mut aborted = Vec::new();
        for &base in self.segments.keys() {
            aborted.extend(txn_index::read_file(&self.dir.join(segment::file_name(base, TXN_INDEX)))?);
        }
        aborted.retain(|a| a.last_offset < end);
        aborted.sort_by_key(|a| a.last_offset);
        aborted.dedup();
        self.aborted = aborted;
        Ok(())
    }

    /// Records an aborted transaction (its ABORT marker is in the log) in the
    /// transaction index of the segment holding the marker. Idempotent: a
    /// rebuild after a restart may add an entry again.
    pub fn add_aborted_txn(&mut self, entry: AbortedTxn) -> Result<()> {
        if self.aborted.iter().rev().any(|a| a.last_offset == entry.last_offset && a.producer_id == entry.producer_id) {
            return Ok(());
        }
        let Some((&base, _)) = self.segments.range(..=entry.last_offset).next_back() else {
            return Ok(());
        };
        txn_index::append_entry(&self.dir.join(segment::file_name(base, TXN_INDEX)), &entry)?;
        let at = self.aborted.partition_point(|a| a.last_offset <= entry.last_offset);
        self.aborted.insert(at, entry);
        Ok(())
    }

    /// Aborted transactions overlapping `[from, upper)`: what a read_committed
    /// fetch of that range returns (Kafka's `collectAbortedTransactions`).
    pub fn aborted_txns(&self, from: i64, upper: i64) -> Vec<AbortedTxn> {
        let start = self.aborted.partition_point(|a| a.last_offset < from);
        self.aborted[start..].iter().filter(|a| a.first_offset < upper).copied().collect()
    }

    /// Where a rebuild of the producers' transaction state must start
    /// scanning: the active segment, or earlier when a transaction still
    /// open at the last [`Log::set_transaction_scan_start`] began before it.
    /// An unreadable record means the whole log is scanned.
    pub fn transaction_scan_start(&self) -> i64 {
        let active = self.active_segment_base();
        let path = self.dir.join(TXN_SCAN_START);
        let scan = match std::fs::read_to_string(&path) {
            Err(_) => active,
            Ok(text) => match text.trim() {
                "none" => active,
                value => value.parse::<i64>().map(|o| o.min(active)).unwrap_or(self.log_start_offset),
            },
        };
        scan.max(self.log_start_offset)
    }

    /// Persists the first offset of the oldest open transaction (None: no
    /// transaction is open), so a restart finds the start of every open
    /// transaction even when it lies before the active segment. Written on
    /// every change of the oldest open transaction, so it is replaced by a
    /// rename without fsync: it survives a crash of the process; after a
    /// power loss an older value (a longer scan) or none (the active segment
    /// only) may be read.
    pub fn set_transaction_scan_start(&self, first_open_offset: Option<i64>) -> Result<()> {
        let text = first_open_offset.map_or_else(|| "none".to_string(), |o| o.to_string());
        let path = self.dir.join(TXN_SCAN_START);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text.as_bytes()).map_err(|e| StorageError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))
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

    fn active(&self) -> &Segment {
        self.segments.values().next_back().expect("a log always has an active segment")
    }
    fn active_mut(&mut self) -> &mut Segment {
        self.segments.values_mut().next_back().expect("a log always has an active segment")
    }

    /// Fsyncs the active segment, writes its indexes, and starts a new one at the log end.
    fn roll(&mut self, now_ms: i64) -> Result<()> {
        let end = self.log_end_offset();
        {
            let active = self.active();
            active.file.sync_data().map_err(|e| StorageError::io(active.log_path(), e))?;
            active.write_indexes()?;
        }
        self.synced_offset = self.synced_offset.max(end);
        let segment = Segment::create(&self.dir, end, now_ms)?;
        self.segments.insert(end, segment);
        Ok(())
    }

    fn should_roll(&self, incoming: usize, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let max_index_entries = (self.config.segment_index_bytes / 8).max(1) as usize;
        // Kafka's maxSegmentMs: a compacted log also rolls by max.compaction.lag.ms,
        // so no record waits in the (never cleaned) active segment longer than that.
        let max_segment_ms = if self.config.is_compacted() {
            self.config.segment_ms.min(self.config.max_compaction_lag_ms)
        } else {
            self.config.segment_ms
        };
        active.size + incoming as u64 > self.config.segment_bytes
            || now_ms - active.created_ms >= max_segment_ms
            || active.index_entries() >= max_index_entries
            || active.size + incoming as u64 > u32::MAX as u64
    }

    /// Appends batches that [`crate::batch::validate_batches`] accepted.
    /// Assigns offsets in place from the log end offset, stamps LogAppendTime
    /// (`now_ms`) if the topic is so configured, rolls the active segment when
    /// `segment.bytes` / `segment.ms` say so, writes the bytes (page cache, not
    /// fsynced), and updates the indexes. All or nothing: on error nothing of
    /// the batches is visible.
    pub fn append(&mut self, batches: &mut [u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        if self.closed {
            return Err(StorageError::io(&self.dir, std::io::Error::other("log is closed")));
        }
        if batches.len() < BATCH_HEADER_LEN {
            return Err(crate::batch::BatchError::Corrupt("no batch to append".into()).into());
        }
        if self.should_roll(batches.len(), now_ms) {
            self.roll(now_ms)?;
        }
        let first_offset = self.log_end_offset();
        // Recorded before the write, as Kafka does: an entry without data is harmless, data without one is not.
        self.epochs.assign(leader_epoch, first_offset)?;
        let append_time = (self.config.timestamp_type == TimestampType::LogAppendTime).then_some(now_ms);
        let last_offset = assign_offsets(batches, first_offset, leader_epoch, append_time);
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(batches, interval, now_ms)?;
        Ok(AppendInfo {
            first_offset,
            last_offset,
            log_append_time: append_time.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
        })
    }

    /// Appends batches copied from the leader, keeping their offsets and
    /// leader epochs (a follower's append). Every batch must be whole and
    /// pass its CRC, the first must start at the log end and each next one
    /// where the previous ended; otherwise nothing is appended and the error
    /// says why. The leader-epoch cache learns every new epoch.
    pub fn append_as_follower(&mut self, batches: &[u8]) -> Result<AppendInfo> {
        if self.closed {
            return Err(StorageError::io(&self.dir, std::io::Error::other("log is closed")));
        }
        let end = self.log_end_offset();
        let mut headers = Vec::new();
        let mut pos = 0usize;
        let mut expected = end;
        while pos < batches.len() {
            let header = crate::batch::check_stored_batch(&batches[pos..]).map_err(|e| {
                crate::batch::BatchError::Corrupt(format!("replicated batch at byte {pos} (expected offset {expected}): {e}"))
            })?;
            // A compacted leader's batches leave gaps between them, never overlaps.
            if header.base_offset < expected || header.last_offset_delta < 0 {
                return Err(crate::batch::BatchError::Invalid(format!(
                    "replicated batch starts at offset {} (last offset delta {}) but the log expects at least {expected} (log end {end})",
                    header.base_offset, header.last_offset_delta
                ))
                .into());
            }
            expected = header.next_offset();
            pos += header.total_size();
            headers.push(header);
        }
        if headers.is_empty() {
            return Err(crate::batch::BatchError::Corrupt("no batch to append".into()).into());
        }
        for header in &headers {
            self.epochs.assign(header.partition_leader_epoch, header.base_offset)?;
        }
        let now = now_ms();
        if self.should_roll(batches.len(), now) {
            self.roll(now)?;
        }
        let interval = self.config.index_interval_bytes;
        self.active_mut().append(batches, interval, now)?;
        Ok(AppendInfo {
            first_offset: end,
            last_offset: self.log_end_offset() - 1,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
        })
    }

    /// The leader-epoch cache (read only; the log keeps it in step with its batches).
    pub fn leader_epochs(&self) -> &LeaderEpochCache {
        &self.epochs
    }

    /// Kafka's `endOffsetForEpoch`: the largest known epoch <= `epoch` and
    /// where it ends; `(-1, -1)` when unknown (see [`LeaderEpochCache::end_offset_for`]).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The latest leader epoch in the log, if any batch carries one.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// A new leader's epoch starts at the log end (Kafka assigns it when the
    /// replica becomes leader, before it writes), so OffsetForLeaderEpoch for
    /// the previous epoch answers exactly where it ended.
    pub fn assign_epoch_start(&mut self, epoch: i32) -> Result<()> {
        let end = self.log_end_offset();
        self.epochs.assign(epoch, end)?;
        Ok(())
    }

    /// First offset still in the log.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }
    /// Next offset to be assigned (= high watermark on a single node).
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }
    /// The offset up to which data is fsynced (exclusive).
    pub fn durable_offset(&self) -> i64 {
        self.synced_offset
    }

    /// Plans a read of whole batches starting with the batch that contains
    /// `offset`, stopping before `max_offset` (exclusive; pass the high
    /// watermark) and, after the first batch, before `max_bytes` would be
    /// exceeded. With `min_one_batch` the first batch is returned even when
    /// larger than `max_bytes` (KIP-74). A plan never spans segments.
    /// `offset == log_end_offset` gives an empty plan; outside
    /// `[log_start_offset, log_end_offset]` is `OffsetOutOfRange`.
    pub fn read_plan(&self, offset: i64, max_offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadPlan> {
        self.plan_read(offset, max_offset, max_bytes, min_one_batch, false)
    }

    /// [`Log::read_plan`] for a client's fetch: when `max_bytes` cuts a batch,
    /// its first bytes are included so the plan is exactly `max_bytes` long
    /// (Kafka's slicing; clients drop a partial trailing batch). Only for
    /// readers that do: never for a follower appending what it receives, nor
    /// for the broker's own replays.
    pub fn read_plan_filled(&self, offset: i64, max_offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<ReadPlan> {
        self.plan_read(offset, max_offset, max_bytes, min_one_batch, true)
    }

    fn plan_read(&self, offset: i64, max_offset: i64, max_bytes: usize, min_one_batch: bool, fill: bool) -> Result<ReadPlan> {
        let end = self.log_end_offset();
        if offset < self.log_start_offset || offset > end {
            return Err(StorageError::OffsetOutOfRange { offset, log_start: self.log_start_offset, log_end: end });
        }
        if offset == end || offset >= max_offset {
            return Ok(ReadPlan::empty());
        }
        // The segment holding `offset`, else the first one after it.
        let candidates = self
            .segments
            .range(..=offset)
            .next_back()
            .into_iter()
            .chain(self.segments.range(offset + 1..))
            .map(|(_, s)| s);
        for segment in candidates {
            if let Some((position, _)) = segment.locate(offset)? {
                let len = segment.span(position, max_offset, max_bytes, min_one_batch, fill)?;
                return Ok(ReadPlan { file: Some(segment.file.clone()), position, len });
            }
        }
        Ok(ReadPlan::empty())
    }

    /// The first offset whose record timestamp is >= `timestamp`, with that
    /// timestamp (ListOffsets by time). Exact per record in uncompressed
    /// batches; the batch's first offset in compressed ones (the client skips).
    pub fn offset_for_timestamp(&self, timestamp: i64) -> Result<Option<(i64, i64)>> {
        // As Kafka: the first record at or above the log start whose
        // timestamp is >= the target, with that record's own timestamp.
        for segment in self.segments.values() {
            let mut min_offset = self.log_start_offset;
            while let Some((position, header)) = segment.find_timestamp_from(timestamp, min_offset)? {
                if header.compression_codec() != 0 || header.is_log_append_time() {
                    // Every record of a LogAppendTime batch carries its max
                    // timestamp; a compressed batch is not decoded here.
                    return Ok(Some((header.base_offset.max(min_offset), header.max_timestamp)));
                }
                let bytes = segment.read_bytes(position, header.total_size())?;
                if let Some(found) = first_record_at_or_after(&bytes, &header, timestamp, min_offset) {
                    return Ok(Some(found));
                }
                min_offset = header.last_offset() + 1;
            }
        }
        Ok(None)
    }

    /// Offset and timestamp of the record with the largest timestamp
    /// (ListOffsets MAX_TIMESTAMP, -3). None for an empty log.
    pub fn max_timestamp_and_offset(&self) -> Result<Option<(i64, i64)>> {
        let best = self
            .segments
            .values()
            .filter(|s| !s.is_empty() && s.max_timestamp >= 0)
            .max_by_key(|s| (s.max_timestamp, std::cmp::Reverse(s.base_offset)));
        let Some(segment) = best else { return Ok(None) };
        // Find the batch, then the exact record where the batch is readable.
        if let Some((position, header)) = segment.find_timestamp(segment.max_timestamp)? {
            if header.compression_codec() == 0 && !header.is_log_append_time() {
                let bytes = segment.read_bytes(position, header.total_size())?;
                if let Some(found) = first_record_at_or_after(&bytes, &header, segment.max_timestamp, i64::MIN) {
                    return Ok(Some(found));
                }
            }
            // Kafka's offsetOfMaxTimestamp: a LogAppendTime batch's records all
            // carry the max timestamp, so the first of them is the answer.
            if header.is_log_append_time() {
                return Ok(Some((header.base_offset, header.max_timestamp)));
            }
            return Ok(Some((header.last_offset(), header.max_timestamp)));
        }
        Ok(Some((segment.offset_of_max_timestamp, segment.max_timestamp)))
    }

    /// Takes what must be fsynced for everything appended so far to be durable.
    /// None if all is already durable.
    pub fn sync_job(&mut self) -> Option<SyncJob> {
        let end = self.log_end_offset();
        if self.synced_offset >= end {
            return None;
        }
        Some(SyncJob { files: vec![self.active().file.clone()], up_to_offset: end })
    }
    /// Records that a [`SyncJob`] finished.
    pub fn mark_synced(&mut self, up_to_offset: i64) {
        self.synced_offset = self.synced_offset.max(up_to_offset.min(self.log_end_offset()));
    }
    /// fsyncs everything now (shutdown, tests).
    pub fn flush(&mut self) -> Result<()> {
        let active = self.active();
        active.file.sync_data().map_err(|e| StorageError::io(active.log_path(), e))?;
        self.synced_offset = self.log_end_offset();
        Ok(())
    }

    fn write_log_start_checkpoint(&self) -> Result<()> {
        write_atomically(&self.dir.join(LOG_START_CHECKPOINT), self.log_start_offset.to_string().as_bytes())
    }

    /// Deletes segments (never the active one) wholly below the log start offset.
    fn delete_segments_below_start(&mut self) -> Result<(usize, u64)> {
        let mut deleted = (0usize, 0u64);
        while self.segments.len() > 1 {
            let Some((&base, first)) = self.segments.iter().next() else { break };
            // A segment covers offsets up to the next one's base (compaction leaves gaps).
            if self.segment_end(base) > self.log_start_offset {
                break;
            }
            first.delete_files()?;
            deleted.0 += 1;
            deleted.1 += first.size;
            self.segments.remove(&base);
        }
        Ok(deleted)
    }

    /// DeleteRecords: moves the log start offset up to `offset` (clamped to
    /// the log end), deletes segments wholly below it, and persists the new
    /// start offset. Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        let target = offset.min(self.log_end_offset());
        if target > self.log_start_offset {
            self.log_start_offset = target;
            self.write_log_start_checkpoint()?;
            self.delete_segments_below_start()?;
            self.epochs.truncate_from_start(self.log_start_offset)?;
        }
        Ok(self.log_start_offset)
    }

    /// Deletes segments past `retention.ms` (by their largest timestamp) or
    /// beyond `retention.bytes`, oldest first, never the active segment
    /// unless it is itself expired (then it is rolled first, like Kafka).
    /// Only for `cleanup.policy` including `delete`: a compacted-only topic
    /// keeps its records (the latest value of every key must survive).
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<RetentionOutcome> {
        let mut outcome = RetentionOutcome { log_start_offset: self.log_start_offset, ..Default::default() };
        if !self.config.cleanup_policy.split(',').any(|p| p.trim() == "delete") {
            return Ok(outcome);
        }
        let retention_ms = self.config.retention_ms;
        if retention_ms >= 0 {
            let expired = |s: &Segment| !s.is_empty() && s.max_timestamp >= 0 && s.max_timestamp < now_ms - retention_ms;
            if self.segments.values().all(|s| expired(s) || s.is_empty()) && expired(self.active()) {
                self.roll(now_ms)?;
            }
            while self.segments.len() > 1 {
                let Some((&base, first)) = self.segments.iter().next() else { break };
                // A non-active segment that compaction emptied holds nothing to keep.
                if !expired(first) && !first.is_empty() {
                    break;
                }
                first.delete_files()?;
                outcome.segments_deleted += 1;
                outcome.bytes_deleted += first.size;
                let next = self.segment_end(base);
                self.segments.remove(&base);
                self.log_start_offset = self.log_start_offset.max(next);
            }
        }
        if self.config.retention_bytes >= 0 {
            let limit = self.config.retention_bytes as u64;
            let mut total = self.size_bytes();
            while self.segments.len() > 1 {
                let Some((&base, first)) = self.segments.iter().next() else { break };
                if total < limit + first.size {
                    break;
                }
                first.delete_files()?;
                outcome.segments_deleted += 1;
                outcome.bytes_deleted += first.size;
                total -= first.size;
                let next = self.segment_end(base);
                self.segments.remove(&base);
                self.log_start_offset = self.log_start_offset.max(next);
            }
        }
        if outcome.segments_deleted > 0 {
            self.write_log_start_checkpoint()?;
            self.epochs.truncate_from_start(self.log_start_offset)?;
        }
        outcome.log_start_offset = self.log_start_offset;
        Ok(outcome)
    }

    /// Removes everything at and above `offset` (a follower dropping a tail
    /// that diverged from its leader), cutting at the start of the batch
    /// that contains `offset`; returns the new log end offset. Crash-safe:
    /// segments are deleted from the last one down (a crash leaves a shorter
    /// log, never a gap), the cut is fsynced, then the leader-epoch cache is
    /// trimmed (a crash before that is repaired by [`Log::open`]). The caller
    /// rebuilds what it derives from the batches (idempotent-producer state).
    pub fn truncate_to(&mut self, offset: i64) -> Result<i64> {
        if offset >= self.log_end_offset() {
            // No record to drop, but an epoch may start at the log end: this
            // replica led briefly and appended nothing. Left in place, it stays
            // the follower's last fetched epoch and the leader answers the same
            // diverging epoch to every fetch (Kafka trims it here too).
            let end = self.log_end_offset();
            self.epochs.truncate_from_end(end)?;
            return Ok(end);
        }
        let offset = offset.max(self.log_start_offset);
        // Segments starting at or after `offset` go entirely, except the first (kept, emptied).
        let first_base = self.segments.keys().next().copied().unwrap_or(0);
        let doomed: Vec<i64> = self.segments.range(offset..).map(|(&b, _)| b).filter(|&b| b != first_base).rev().collect();
        for base in doomed {
            if let Some(segment) = self.segments.remove(&base) {
                segment.delete_files()?;
            }
        }
        let active = self.active_mut();
        if let Some((position, header)) = active.locate(offset)? {
            active.truncate_at(position, header.base_offset)?;
        }
        let active = self.active();
        active.file.sync_all().map_err(|e| StorageError::io(active.log_path(), e))?;
        crate::meta::sync_dir(&self.dir)?;
        let end = self.log_end_offset();
        self.synced_offset = self.synced_offset.min(end);
        if end < self.log_start_offset {
            // The cut batch straddled the log start (DeleteRecords inside a batch): the log start follows it down.
            self.log_start_offset = end;
            self.write_log_start_checkpoint()?;
        }
        self.epochs.truncate_from_end(end)?;
        if self.aborted.last().is_some_and(|a| a.last_offset >= end) {
            self.aborted.retain(|a| a.last_offset < end);
            let active = self.active_segment_base();
            let kept: Vec<AbortedTxn> = self.aborted.iter().filter(|a| a.last_offset >= active).copied().collect();
            txn_index::rewrite(&self.dir.join(segment::file_name(active, TXN_INDEX)), &kept)?;
        }
        Ok(end)
    }

    /// Empties the log and makes it start (and end) at `offset` (Kafka's
    /// `truncateFullyAndStartAt`): a follower whose leader no longer holds
    /// the follower's fetch position (retention or DeleteRecords moved the
    /// leader's log start past it), or a broker that stopped being a replica
    /// of the partition. The new start offset is written first and segments
    /// go newest first: a crash of a call that moved the start past the end
    /// is finished by [`Log::open`] (a checkpoint beyond the log end cannot
    /// arise otherwise); one that did not leaves a shorter log, which the
    /// caller empties again (the same condition holds after the restart).
    /// The caller rebuilds what it derives from the batches.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let offset = offset.max(0);
        self.log_start_offset = offset;
        self.write_log_start_checkpoint()?;
        self.replace_segments_with_empty_one_at(offset)?;
        self.synced_offset = offset;
        self.epochs = LeaderEpochCache::empty(&self.dir);
        self.epochs.flush()?;
        self.aborted.clear();
        Ok(())
    }

    /// Deletes every segment, newest first, and creates an empty one at `base`.
    fn replace_segments_with_empty_one_at(&mut self, base: i64) -> Result<()> {
        let bases: Vec<i64> = self.segments.keys().rev().copied().collect();
        for old in bases {
            if let Some(segment) = self.segments.remove(&old) {
                segment.delete_files()?;
            }
        }
        self.segments.insert(base, Segment::create(&self.dir, base, now_ms())?);
        crate::meta::sync_dir(&self.dir)
    }

    /// Where the segment at `base` ends: the next segment's base offset, or
    /// the log end for the active segment (compaction leaves gaps, so a
    /// segment's own next offset may fall short of it).
    fn segment_end(&self, base: i64) -> i64 {
        match self.segments.range(base + 1..).next() {
            Some((&next, _)) => next,
            None => self.log_end_offset(),
        }
    }

    /// The first dirty offset: the cleaner checkpoint, within the log.
    fn first_dirty_offset(&self) -> i64 {
        let checkpoint = read_cleaner_checkpoint(&self.dir).unwrap_or(self.log_start_offset);
        // Kafka resets a checkpoint outside the log (truncation, deleted records) to the log start.
        if checkpoint < self.log_start_offset || checkpoint > self.log_end_offset() {
            self.log_start_offset
        } else {
            checkpoint
        }
    }

    /// What the cleaner needs to choose this log (Kafka's `LogToClean` and
    /// `LogCleanerManager.cleanableOffsets`); None if the log is not
    /// compacted. `upper_bound` is the caller's first uncleanable offset
    /// (high watermark, last stable offset); the active segment and segments
    /// newer than `min.compaction.lag.ms` are never cleaned either.
    pub fn cleanable(&self, now_ms: i64, upper_bound: i64) -> Result<Option<Cleanable>> {
        if !self.config.is_compacted() {
            return Ok(None);
        }
        let first_dirty = self.first_dirty_offset();
        let min_lag = self.config.min_compaction_lag_ms;
        let mut first_uncleanable = self.active_segment_base().min(upper_bound);
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut earliest_dirty_timestamp: Option<i64> = None;
        for (&base, segment) in &self.segments {
            let end = self.segment_end(base);
            if base >= self.active_segment_base() {
                break;
            }
            // Kafka: a segment whose newest record is within min.compaction.lag.ms is not cleanable yet.
            let newest = if segment.max_timestamp >= 0 { segment.max_timestamp } else { segment.last_modified_ms };
            if min_lag > 0 && newest > now_ms - min_lag {
                first_uncleanable = first_uncleanable.min(base);
            }
            if end > first_uncleanable {
                break;
            }
            if end <= first_dirty {
                clean_bytes += segment.size;
            } else {
                dirty_bytes += segment.size;
                if earliest_dirty_timestamp.is_none() && !segment.is_empty() {
                    let header = segment.header_at(0)?;
                    earliest_dirty_timestamp = Some(header.base_timestamp);
                }
            }
        }
        let total = clean_bytes + dirty_bytes;
        let dirty_ratio = if total == 0 { 0.0 } else { dirty_bytes as f64 / total as f64 };
        // Kafka's max.compaction.lag.ms: a dirty record older than that is cleaned whatever the ratio.
        let max_lag = self.config.max_compaction_lag_ms;
        let overdue = dirty_bytes > 0 && earliest_dirty_timestamp.is_some_and(|ts| ts >= 0 && now_ms.saturating_sub(ts) > max_lag);
        Ok(Some(Cleanable { first_dirty_offset: first_dirty, first_uncleanable_offset: first_uncleanable, clean_bytes, dirty_bytes, dirty_ratio, overdue }))
    }

    /// Step 1 of a cleaning pass (see [`crate::cleaner`]): a snapshot of the
    /// cleanable segments. None when nothing is dirty.
    pub fn prepare_cleaning(&self, now_ms: i64, upper_bound: i64) -> Result<Option<CleaningTask>> {
        let Some(cleanable) = self.cleanable(now_ms, upper_bound)? else { return Ok(None) };
        if cleanable.dirty_bytes == 0 {
            return Ok(None);
        }
        let mut segments = Vec::new();
        for (&base, segment) in &self.segments {
            let end = self.segment_end(base);
            if end > cleanable.first_uncleanable_offset || base >= self.active_segment_base() {
                break;
            }
            segments.push(SegmentSnapshot {
                base_offset: base,
                end_offset: end,
                file: segment.file.clone(),
                size: segment.size,
                last_modified_ms: segment.last_modified_ms,
            });
        }
        Ok(Some(CleaningTask {
            dir: self.dir.clone(),
            log_start_offset: self.log_start_offset,
            first_dirty_offset: cleanable.first_dirty_offset,
            first_uncleanable_offset: segments.last().map(|s| s.end_offset).unwrap_or(cleanable.first_uncleanable_offset),
            segments,
            segment_bytes: self.config.segment_bytes,
            delete_retention_ms: self.config.delete_retention_ms,
            aborted: self.aborted_txns(self.log_start_offset, cleanable.first_uncleanable_offset),
        }))
    }

    /// Step 3 of a cleaning pass: swaps each cleaned group in (crash-safe,
    /// see [`crate::cleaner`]) and moves the cleaner checkpoint. A group
    /// whose segments changed meanwhile (retention, DeleteRecords, a
    /// follower's truncation) is discarded, and the checkpoint stays.
    pub fn install_cleaned(&mut self, cleaned: CleanedLog) -> Result<CleanStats> {
        let mut stats = cleaned.stats.clone();
        let mut all_installed = true;
        let mut groups = cleaned.groups.into_iter();
        while let Some(group) = groups.next() {
            let unchanged = group.sources.iter().all(|&(base, size)| self.segments.get(&base).is_some_and(|s| s.size == size))
                && self.segment_end(group.sources[group.sources.len() - 1].0) == group.end_offset
                && group.end_offset <= self.active_segment_base();
            if !unchanged {
                let _ = std::fs::remove_file(&group.cleaned_path);
                all_installed = false;
                continue;
            }
            if let Err(e) = self.swap_in(&group) {
                let _ = std::fs::remove_file(&group.cleaned_path);
                for rest in groups {
                    let _ = std::fs::remove_file(&rest.cleaned_path);
                }
                return Err(e);
            }
        }
        if all_installed {
            write_atomically(&self.dir.join(CLEANER_CHECKPOINT), cleaned.map_end.to_string().as_bytes())?;
        } else {
            stats.cleaned_up_to = self.first_dirty_offset();
        }
        Ok(stats)
    }

    /// Replaces the segments of `[group.base_offset, group.end_offset)` by the cleaned file.
    fn swap_in(&mut self, group: &CleanedGroup) -> Result<()> {
        // The group's aborted transactions go into the first segment's index
        // before the commit point (the others' index files go with their
        // segments); entries are never dropped: one whose records the cleaner
        // removed filters nothing.
        let merged: Vec<AbortedTxn> =
            self.aborted.iter().filter(|a| (group.base_offset..group.end_offset).contains(&a.last_offset)).copied().collect();
        if !merged.is_empty() {
            txn_index::rewrite(&self.dir.join(segment::file_name(group.base_offset, TXN_INDEX)), &merged)?;
        }
        let swap = self.dir.join(swap_name(group.base_offset, group.end_offset));
        std::fs::rename(&group.cleaned_path, &swap).map_err(|e| StorageError::io(&swap, e))?;
        crate::meta::sync_dir(&self.dir)?; // the commit point: recovery completes the swap from here on
        complete_swap(&self.dir, group.base_offset, group.end_offset)?;
        let doomed: Vec<i64> = self.segments.range(group.base_offset..group.end_offset).map(|(&b, _)| b).collect();
        for base in doomed {
            self.segments.remove(&base);
        }
        let (segment, cut) = Segment::open(&self.dir, group.base_offset, self.config.index_interval_bytes, false, now_ms())?;
        if let Some(cut) = cut {
            report_quarantine(&self.dir, &cut);
            self.quarantined.push(cut);
        }
        segment.write_indexes()?;
        self.segments.insert(group.base_offset, segment);
        Ok(())
    }

    /// A whole cleaning pass at once (tests, tools): prepare, run, install.
    pub fn clean(&mut self, config: &CleanerConfig, now_ms: i64, upper_bound: i64) -> Result<Option<CleanStats>> {
        let Some(task) = self.prepare_cleaning(now_ms, upper_bound)? else { return Ok(None) };
        let mut throttler = Throttler::new(config.io_max_bytes_per_second);
        let Some(cleaned) = task.run(config, now_ms, &mut throttler)? else { return Ok(None) };
        self.install_cleaned(cleaned).map(Some)
    }

    /// Base offset of the active segment (where recovery-time scans start).
    pub fn active_segment_base(&self) -> i64 {
        self.active().base_offset
    }

    /// What recovery cut from this log when it was opened (quarantined, not deleted).
    pub fn quarantined(&self) -> &[Quarantined] {
        &self.quarantined
    }

    /// Appends again, with new offsets at the log end, the CRC-valid batches
    /// that recovery found after a corrupt one and quarantined. Only for logs
    /// whose offsets mean nothing outside the broker (the coordinator's own
    /// topic): for a user topic, new offsets would silently change what
    /// consumers' committed offsets point to. Returns the batches appended.
    /// Each batch is taken at most once (the report is consumed).
    pub fn salvage_quarantined(&mut self, leader_epoch: i32, now_ms: i64) -> Result<usize> {
        let mut appended = 0;
        for cut in std::mem::take(&mut self.quarantined) {
            for intact in &cut.intact {
                let mut batch = cut.read_intact(intact)?;
                self.append(&mut batch, leader_epoch, now_ms)?;
                appended += 1;
            }
        }
        if appended > 0 {
            self.flush()?;
        }
        Ok(appended)
    }

    /// Bytes on disk across all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(|s| s.size).sum()
    }
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Flushes data and indexes and marks a clean shutdown; later appends fail.
    pub fn close(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.flush()?;
        self.active().write_indexes()?;
        write_atomically(&self.dir.join(CLEAN_SHUTDOWN_MARKER), b"")?;
        self.closed = true;
        Ok(())
    }
    /// Deletes the whole log from disk.
    pub fn delete(self) -> Result<()> {
        std::fs::remove_dir_all(&self.dir).map_err(|e| StorageError::io(&self.dir, e))
    }
}

/// What [`Log::cleanable`] found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cleanable {
    pub first_dirty_offset: i64,
    pub first_uncleanable_offset: i64,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// dirty bytes / (clean + dirty bytes) of the cleanable range.
    pub dirty_ratio: f64,
    /// A dirty record is older than `max.compaction.lag.ms`.
    pub overdue: bool,
}

/// Finishes what a cleaner left (on open): `.cleaned` files were never
/// committed and go; a `<base>.<end>.swap` file was, so the segments it
/// replaces go and it becomes `<base>.log`.
fn recover_cleaner_files(dir: &Path) -> Result<()> {
    let mut swaps = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
        if name.ends_with(CLEANED_SUFFIX) {
            std::fs::remove_file(&path).map_err(|e| StorageError::io(&path, e))?;
        } else if let Some((base, end)) = parse_swap_name(&name) {
            swaps.push((base, end));
        }
    }
    for (base, end) in swaps {
        tracing::info!(dir = %dir.display(), base, end, "completing a cleaner swap interrupted by a crash");
        complete_swap(dir, base, end)?;
    }
    Ok(())
}

/// Deletes the files of every segment in `[base, end)` (indexes first, so a
/// crash never leaves a log file beside another file's index), then renames
/// the swap file to `<base>.log`. Idempotent: recovery repeats it.
fn complete_swap(dir: &Path, base: i64, end: i64) -> Result<()> {
    let mut doomed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))? {
        let path = entry.map_err(|e| StorageError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some((stem, ext)) = name.split_once('.') else { continue };
        if !matches!(ext, "log" | "index" | "timeindex" | TXN_INDEX) {
            continue;
        }
        if let Ok(b) = stem.parse::<i64>() {
            // The first segment's transaction index already holds the group's entries.
            if (base..end).contains(&b) && !(ext == TXN_INDEX && b == base) {
                doomed.push((ext == "log", path));
            }
        }
    }
    doomed.sort_by_key(|(is_log, _)| *is_log);
    for (_, path) in doomed {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(StorageError::io(&path, e)),
        }
    }
    let swap = dir.join(swap_name(base, end));
    let target = dir.join(crate::segment::file_name(base, "log"));
    std::fs::rename(&swap, &target).map_err(|e| StorageError::io(&swap, e))?;
    crate::meta::sync_dir(dir)
}

fn read_checkpoint(path: &Path) -> Result<Option<i64>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse::<i64>().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(path, e)),
    }
}

/// Reads a zig-zag varint/varlong (at most 10 bytes): value and bytes used.
pub(crate) fn read_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().take(10).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// In an uncompressed batch, the first record whose timestamp is >= `target`:
/// walks the records' length, attributes, timestamp delta and offset delta.
fn first_record_at_or_after(batch: &[u8], header: &BatchHeader, target: i64, min_offset: i64) -> Option<(i64, i64)> {
    let mut rest = batch.get(BATCH_HEADER_LEN..header.total_size())?;
    while !rest.is_empty() {
        let (len, used) = read_varlong(rest)?;
        let len = usize::try_from(len).ok()?;
        let record = rest.get(used..used + len)?;
        let body = record.get(1..)?; // skip attributes
        let (ts_delta, used_ts) = read_varlong(body)?;
        let (offset_delta, _) = read_varlong(body.get(used_ts..)?)?;
        let ts = header.base_timestamp + ts_delta;
        let offset = header.base_offset + offset_delta;
        if ts >= target && offset >= min_offset {
            return Some((offset, ts));
        }
        rest = &rest[used + len..];
    }
    None
}

/// [`for_each_batch`], with the marker type of each control batch (read
/// from its first record; None for other batches or an unreadable one).
pub fn for_each_batch_with_control(log: &Log, from_offset: i64, mut f: impl FnMut(&BatchHeader, Option<ControlType>)) -> Result<()> {
    for segment in log.segments.values() {
        if segment.next_offset <= from_offset {
            continue;
        }
        segment.walk(0, |position, header| {
            if header.last_offset() >= from_offset {
                let control = if header.is_control() {
                    let len = header.total_size().min(256);
                    segment.read_bytes(position, len).ok().and_then(|bytes| txn_index::control_type(&bytes))
                } else {
                    None
                };
                f(header, control);
            }
            Walk::Continue
        })?;
    }
    Ok(())
}

/// Walks every batch header of a log (recovery of producer state, tools).
pub fn for_each_batch(log: &Log, from_offset: i64, mut f: impl FnMut(&BatchHeader)) -> Result<()> {
    for segment in log.segments.values() {
        if segment.next_offset <= from_offset {
            continue;
        }
        segment.walk(0, |_, header| {
            if header.last_offset() >= from_offset {
                f(header);
            }
            Walk::Continue
        })?;
    }
    Ok(())
}
