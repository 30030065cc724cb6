//! Log compaction (Kafka's `LogCleaner` / `Cleaner`): keeps the latest record
//! of every key in the cleaned part of a log.
//!
//! A pass over one log, in three steps so the log's lock is held only briefly:
//! 1. [`crate::Log::prepare_cleaning`] (under the lock) picks the cleanable
//!    range: whole non-active segments from the log start up to the first
//!    uncleanable offset (the active segment, the caller's bound — high
//!    watermark / last stable offset —, and `min.compaction.lag.ms`).
//! 2. [`CleaningTask::run`] (no lock: the segments it reads are immutable)
//!    builds the [`OffsetMap`] (key → last offset) over the dirty part, from
//!    the first dirty offset (`cleaner-offset-checkpoint`) on, as far as
//!    `log.cleaner.dedupe.buffer.size` allows; then rewrites groups of
//!    segments (each group at most `segment.bytes`) into `<base>.log.cleaned`
//!    files, keeping of each batch the records that survive.
//! 3. [`crate::Log::install_cleaned`] (under the lock) swaps each group in:
//!    the `.cleaned` file is renamed `<base>.<end>.swap` (the commit point:
//!    the name says which offsets it replaces), the replaced segments'
//!    files are deleted, and the swap file becomes `<base>.log`. Recovery on
//!    open deletes `.cleaned` files and completes `.swap` files, so a crash
//!    at any point leaves either the old or the new segments, never both
//!    and never neither.
//!
//! What survives (Kafka's rules): offsets never change; a surviving record
//! keeps its bytes, its batch keeps its base offset, last offset delta,
//! base timestamp, producer id / epoch and base sequence; a batch of an
//! idempotent producer that loses all its records is kept as an empty batch
//! when it is that producer's last batch in the cleaned range (so the
//! producer's last sequence survives); records without a key are dropped; a
//! tombstone (null value) is dropped once it is the latest record of its key
//! and its segment was last written more than `delete.retention.ms` ago (the
//! cleaned file keeps the newest modification time of the segments it
//! replaces, as Kafka does).
//!
//! Transactions (Kafka's `CleanedTransactionMetadata`): the cleanable range
//! ends at the last stable offset (the caller's bound), so every
//! transaction in it is decided. [`TxnTracker`] walks the batches with the
//! aborted-transaction index: a batch of an aborted transaction never enters
//! the offset map and is dropped (kept as an empty batch when it is its
//! producer's last); committed transactional records are deduplicated like
//! any other. A marker stays while any batch of its transaction was seen in
//! this pass (so an ABORT marker outlives its records by one pass, and a
//! read_committed reader never meets aborted records without their entry);
//! after that it goes once its segment is older than `delete.retention.ms`,
//! as a tombstone does, unless it is its producer's last batch (its epoch
//! fences zombies). Entries of the transaction index are kept: one whose
//! records are gone filters nothing.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::hash::Hasher;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::batch::{crc32c, BatchError, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::error::{Result, StorageError};
use crate::txn_index::{AbortedTxn, ControlType};

/// The first dirty offset of the log (Kafka keeps one such file per log
/// directory; Runnel keeps one per partition directory, written atomically).
pub const CLEANER_CHECKPOINT: &str = "cleaner-offset-checkpoint";
pub const CLEANED_SUFFIX: &str = ".log.cleaned";
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// Kafka's `OffsetMap` accounting: 16 bytes of key hash + 8 of offset per entry,
/// filled at most to a 0.9 load factor.
const BYTES_PER_ENTRY: u64 = 24;
const MAX_LOAD_FACTOR: f64 = 0.9;

/// Broker-wide cleaner settings (`log.cleaner.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CleanerConfig {
    /// `log.cleaner.dedupe.buffer.size` (Kafka default 128 MiB), shared by the cleaner threads.
    pub dedupe_buffer_size: u64,
    /// `log.cleaner.io.max.bytes.per.second` (Kafka default: unlimited): read + written bytes.
    pub io_max_bytes_per_second: f64,
}

impl Default for CleanerConfig {
    fn default() -> Self {
        CleanerConfig { dedupe_buffer_size: 134_217_728, io_max_bytes_per_second: f64::MAX }
    }
}

/// Key hash → offset of the key's latest record, bounded in entries.
pub struct OffsetMap {
    entries: HashMap<[u64; 2], i64>,
    max_entries: usize,
}

/// Two independent 64-bit SipHashes: a 128-bit key hash (Kafka uses MD5's 16 bytes).
fn key_hash(key: &[u8]) -> [u64; 2] {
    let mut out = [0u64; 2];
    for (seed, slot) in out.iter_mut().enumerate() {
        #[allow(deprecated)]
        let mut h = std::hash::SipHasher::new_with_keys(0x5275_6e6e_656c + seed as u64, 0x0063_6c65_616e_6572);
        h.write(key);
        *slot = h.finish();
    }
    out
}

impl OffsetMap {
    /// A map that fits in `buffer_bytes` by Kafka's accounting (at least one entry).
    /// Memory grows with the keys actually put, not with the bound.
    pub fn with_buffer(buffer_bytes: u64) -> OffsetMap {
        let max_entries = (((buffer_bytes / BYTES_PER_ENTRY) as f64) * MAX_LOAD_FACTOR) as usize;
        OffsetMap { entries: HashMap::new(), max_entries: max_entries.max(1) }
    }
    /// Records `offset` as the latest of `key`. False (and nothing changes) when the map is full.
    pub fn put(&mut self, key: &[u8], offset: i64) -> bool {
        let hash = key_hash(key);
        if let Some(slot) = self.entries.get_mut(&hash) {
            *slot = (*slot).max(offset);
            return true;
        }
        if self.entries.len() >= self.max_entries {
            return false;
        }
        self.entries.insert(hash, offset);
        true
    }
    pub fn get(&self, key: &[u8]) -> Option<i64> {
        self.entries.get(&key_hash(key)).copied()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    /// Entries that can still be added.
    pub fn room(&self) -> usize {
        self.max_entries.saturating_sub(self.entries.len())
    }
}

/// `log.cleaner.io.max.bytes.per.second`: sleeps so that the bytes counted
/// stay under the rate since the throttler started.
pub struct Throttler {
    bytes_per_second: f64,
    started: Instant,
    bytes: f64,
    /// Time spent sleeping (reported in the stats).
    pub throttled: Duration,
}

impl Throttler {
    pub fn new(bytes_per_second: f64) -> Throttler {
        Throttler { bytes_per_second, started: Instant::now(), bytes: 0.0, throttled: Duration::ZERO }
    }
    pub fn add(&mut self, bytes: usize) {
        if !(self.bytes_per_second.is_finite() && self.bytes_per_second > 0.0) || self.bytes_per_second >= f64::MAX / 2.0 {
            return;
        }
        self.bytes += bytes as f64;
        let due = Duration::from_secs_f64(self.bytes / self.bytes_per_second);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            let pause = due - elapsed;
            std::thread::sleep(pause);
            self.throttled += pause;
        }
    }
}

/// One record of a batch's (uncompressed) records area.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// The whole record: its length varint and body, verbatim.
    pub bytes: &'a [u8],
    pub offset_delta: i32,
    pub timestamp_delta: i64,
    pub key: Option<&'a [u8]>,
    pub value_is_null: bool,
}

fn read_varlong(buf: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &byte) in buf.iter().take(10).enumerate() {
        raw |= ((byte & 0x7f) as u64) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), i + 1));
        }
    }
    None
}

/// Walks the records of an uncompressed records area. The cleaner keeps
/// surviving records byte for byte, so it reads only their framing, offset
/// and timestamp deltas, key and value length (kafka-protocol's `Record`
/// would re-encode headers from a map, losing duplicate header keys).
pub fn parse_records(area: &[u8], expected: i32) -> Result<Vec<RecordView<'_>>, BatchError> {
    let corrupt = |i: usize, what: &str| BatchError::Corrupt(format!("record {i}: {what}"));
    let mut out = Vec::new();
    let mut rest = area;
    while !rest.is_empty() {
        let i = out.len();
        let (len, used) = read_varlong(rest).ok_or_else(|| corrupt(i, "bad length varint"))?;
        let len = usize::try_from(len).map_err(|_| corrupt(i, "negative length"))?;
        let end = used.checked_add(len).filter(|&e| e <= rest.len()).ok_or_else(|| corrupt(i, "length past the batch end"))?;
        let body = &rest[used..end];
        let mut pos = 1usize; // attributes
        let mut next = |what: &str| -> Result<i64, BatchError> {
            let (v, n) = read_varlong(body.get(pos..).unwrap_or(&[])).ok_or_else(|| corrupt(i, what))?;
            pos += n;
            Ok(v)
        };
        let timestamp_delta = next("bad timestamp delta")?;
        let offset_delta = next("bad offset delta")?;
        let key_len = next("bad key length")?;
        let key = if key_len < 0 {
            None
        } else {
            let k = body.get(pos..pos + key_len as usize).ok_or_else(|| corrupt(i, "key past the record end"))?;
            pos += key_len as usize;
            Some(k)
        };
        let (value_len, _) = read_varlong(body.get(pos..).unwrap_or(&[])).ok_or_else(|| corrupt(i, "bad value length"))?;
        out.push(RecordView {
            bytes: &rest[..end],
            offset_delta: i32::try_from(offset_delta).map_err(|_| corrupt(i, "offset delta out of range"))?,
            timestamp_delta,
            key,
            value_is_null: value_len < 0,
        });
        rest = &rest[end..];
    }
    if out.len() != expected.max(0) as usize {
        return Err(BatchError::Corrupt(format!("header says {expected} records, batch holds {}", out.len())));
    }
    Ok(out)
}

/// The records area of a batch, decompressed (kafka-protocol's codecs).
pub fn records_area(batch: &[u8], header: &BatchHeader) -> Result<Bytes, BatchError> {
    use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};
    let raw = batch.get(BATCH_HEADER_LEN..header.total_size()).ok_or_else(|| BatchError::Corrupt("batch shorter than its length".into()))?;
    let mut input = Bytes::copy_from_slice(raw);
    let take = |b: &mut Bytes| Ok(b.copy_to_bytes(b.remaining()));
    let codec = header.compression_codec();
    let out = match codec {
        0 => return Ok(input),
        1 => Gzip::decompress(&mut input, take),
        2 => Snappy::decompress(&mut input, take),
        3 => Lz4::decompress(&mut input, take),
        4 => Zstd::decompress(&mut input, take),
        other => return Err(BatchError::UnsupportedCompression(other)),
    };
    out.map_err(|e| BatchError::Corrupt(format!("decompressing a batch (codec {codec}): {e:#}")))
}

fn compress(codec: i16, data: &[u8]) -> Result<Vec<u8>, BatchError> {
    use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};
    let mut out = BytesMut::new();
    let fill = |b: &mut BytesMut| {
        b.put_slice(data);
        Ok(())
    };
    let done = match codec {
        0 => {
            out.put_slice(data);
            Ok(())
        }
        1 => Gzip::compress(&mut out, fill),
        2 => Snappy::compress(&mut out, fill),
        3 => Lz4::compress(&mut out, fill),
        4 => Zstd::compress(&mut out, fill),
        other => return Err(BatchError::UnsupportedCompression(other)),
    };
    done.map_err(|e| BatchError::Corrupt(format!("compressing a cleaned batch (codec {codec}): {e:#}")))?;
    Ok(out.to_vec())
}

/// Indexes (within each batch, as Kafka's `batchIndex`) of records without a
/// key, over validated batches: what a compacted topic refuses.
pub fn keyless_records(batches: &[u8], headers: &[BatchHeader]) -> Result<Vec<i32>, BatchError> {
    let mut found = Vec::new();
    let mut position = 0usize;
    for header in headers {
        let size = header.total_size();
        let batch = batches.get(position..position + size).ok_or_else(|| BatchError::Corrupt("batch past the request end".into()))?;
        position += size;
        let area = records_area(batch, header)?;
        for (index, record) in parse_records(&area, header.record_count)?.iter().enumerate() {
            if record.key.is_none() {
                found.push(index as i32);
            }
        }
    }
    Ok(found)
}

/// Writes the header fields a filtered batch changes, then its CRC.
fn finish_batch(batch: &mut [u8], record_count: i32, max_timestamp: Option<i64>) {
    let batch_length = (batch.len() - LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
    batch[57..61].copy_from_slice(&record_count.to_be_bytes());
    if let Some(ts) = max_timestamp {
        batch[35..43].copy_from_slice(&ts.to_be_bytes());
    }
    let crc = crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// A segment as the cleaner sees it: immutable while it stays in the log.
#[derive(Clone)]
pub struct SegmentSnapshot {
    pub base_offset: i64,
    /// Where the next segment starts (this one covers `[base_offset, end_offset)`).
    pub end_offset: i64,
    pub file: Arc<File>,
    pub size: u64,
    pub last_modified_ms: i64,
}

impl SegmentSnapshot {
    /// Calls `f` with every whole batch (header and bytes), in order.
    fn for_each_batch(&self, path: &Path, mut f: impl FnMut(&BatchHeader, &[u8]) -> Result<bool>) -> Result<()> {
        let mut position = 0u64;
        let mut header_buf = [0u8; BATCH_HEADER_LEN];
        let mut buf = Vec::new();
        while position + BATCH_HEADER_LEN as u64 <= self.size {
            self.file.read_exact_at(&mut header_buf, position).map_err(|e| StorageError::io(path, e))?;
            let header = BatchHeader::parse(&header_buf)?;
            let size = header.total_size();
            if size < BATCH_HEADER_LEN || position + size as u64 > self.size {
                return Err(StorageError::Corrupt { path: path.to_path_buf(), reason: format!("batch at {position} has length {}", header.batch_length) });
            }
            buf.resize(size, 0);
            self.file.read_exact_at(&mut buf, position).map_err(|e| StorageError::io(path, e))?;
            if !f(&header, &buf)? {
                return Ok(());
            }
            position += size as u64;
        }
        Ok(())
    }
}

/// What [`crate::Log::prepare_cleaning`] hands to the cleaner.
pub struct CleaningTask {
    pub dir: PathBuf,
    pub log_start_offset: i64,
    /// Start of the dirty section (records not yet deduplicated).
    pub first_dirty_offset: i64,
    /// End of the cleanable range (exclusive): every segment is wholly below it.
    pub first_uncleanable_offset: i64,
    pub segments: Vec<SegmentSnapshot>,
    pub segment_bytes: u64,
    pub delete_retention_ms: i64,
    /// The aborted transactions overlapping the segments (the transaction index).
    pub aborted: Vec<AbortedTxn>,
}

/// The transactions met while walking batches in offset order (Kafka's
/// `CleanedTransactionMetadata`): which batches belong to aborted
/// transactions, and which markers no batch of their transaction needs.
pub struct TxnTracker {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Producer id → a batch of its (aborted, open at this point) transaction was seen.
    ongoing_aborted: HashMap<i64, bool>,
    /// Producers with a batch of a committed (open at this point) transaction seen.
    ongoing_committed: HashSet<i64>,
}

impl TxnTracker {
    /// A walk that starts at offset `from`: transactions whose marker lies
    /// before it are over (and a later transaction of the same producer must
    /// not be taken for one of them).
    pub fn new(aborted: &[AbortedTxn], from: i64) -> TxnTracker {
        let mut pending: Vec<AbortedTxn> = aborted.iter().filter(|a| a.last_offset >= from).copied().collect();
        pending.sort_by_key(|a| (a.first_offset, a.last_offset));
        TxnTracker { pending: pending.into(), ongoing_aborted: HashMap::new(), ongoing_committed: HashSet::new() }
    }

    fn reach(&mut self, offset: i64) {
        while self.pending.front().is_some_and(|a| a.first_offset <= offset) {
            if let Some(txn) = self.pending.pop_front() {
                self.ongoing_aborted.entry(txn.producer_id).or_insert(false);
            }
        }
    }

    /// A data batch: true when it belongs to an aborted transaction.
    pub fn on_data_batch(&mut self, header: &BatchHeader) -> bool {
        self.reach(header.last_offset());
        if !header.is_transactional() {
            return false;
        }
        match self.ongoing_aborted.get_mut(&header.producer_id) {
            Some(seen) => {
                *seen = true;
                true
            }
            None => {
                self.ongoing_committed.insert(header.producer_id);
                false
            }
        }
    }

    /// A control batch: true when no batch of its transaction was seen since
    /// the previous marker, so the marker may go (after delete.retention.ms).
    pub fn on_control_batch(&mut self, header: &BatchHeader, batch: &[u8]) -> bool {
        self.reach(header.last_offset());
        if header.record_count == 0 {
            return true; // emptied by an earlier pass
        }
        match crate::txn_index::control_type(batch) {
            Some(ControlType::Abort) => !self.ongoing_aborted.remove(&header.producer_id).unwrap_or(false),
            Some(ControlType::Commit) => !self.ongoing_committed.remove(&header.producer_id),
            _ => false,
        }
    }
}

/// One group of segments rewritten into one `.cleaned` file.
#[derive(Debug)]
pub struct CleanedGroup {
    pub base_offset: i64,
    /// The replaced segments cover `[base_offset, end_offset)`.
    pub end_offset: i64,
    /// The replaced segments (base offset, size), to check they are still in the log.
    pub sources: Vec<(i64, u64)>,
    pub cleaned_path: PathBuf,
    pub bytes_written: u64,
}

/// What a cleaning pass did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CleanStats {
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_kept: u64,
    pub tombstones_removed: u64,
    /// Records of aborted transactions dropped.
    pub aborted_records_removed: u64,
    /// Transaction markers dropped (their transaction's records were gone).
    pub markers_removed: u64,
    pub segments_replaced: usize,
    /// The new first dirty offset (the end of what the offset map covered).
    pub cleaned_up_to: i64,
    pub throttled: Duration,
}

/// The result of [`CleaningTask::run`]: files written, not yet in the log.
#[derive(Debug)]
pub struct CleanedLog {
    pub groups: Vec<CleanedGroup>,
    pub map_end: i64,
    pub stats: CleanStats,
}

impl CleanedLog {
    /// Deletes the `.cleaned` files (a pass given up).
    pub fn discard(&self) {
        for group in &self.groups {
            let _ = std::fs::remove_file(&group.cleaned_path);
        }
    }
}

impl CleaningTask {
    fn path_of(&self, base: i64) -> PathBuf {
        self.dir.join(crate::segment::file_name(base, "log"))
    }

    /// Builds the offset map over the dirty section and writes the cleaned
    /// groups. Reads only the snapshot's segments (immutable while they are
    /// in the log); takes no lock. `now_ms` decides which tombstones expired.
    pub fn run(&self, config: &CleanerConfig, now_ms: i64, throttler: &mut Throttler) -> Result<Option<CleanedLog>> {
        let mut stats = CleanStats::default();
        let mut map = OffsetMap::with_buffer(config.dedupe_buffer_size);
        let map_from = self.first_dirty_offset.max(self.log_start_offset);
        let mut map_end = self.first_uncleanable_offset;
        let mut txns = TxnTracker::new(&self.aborted, map_from);
        'segments: for segment in self.segments.iter().filter(|s| s.end_offset > map_from) {
            let path = self.path_of(segment.base_offset);
            let mut stopped_at = None;
            segment.for_each_batch(&path, |header, batch| {
                throttler.add(batch.len());
                stats.bytes_read += batch.len() as u64;
                if header.last_offset() < map_from {
                    return Ok(true);
                }
                if header.is_control() {
                    txns.on_control_batch(header, batch);
                    return Ok(true);
                }
                if txns.on_data_batch(header) {
                    return Ok(true); // aborted: its keys supersede nothing
                }
                if map.room() < header.record_count.max(0) as usize {
                    stopped_at = Some(header.base_offset);
                    return Ok(false);
                }
                let area = records_area(batch, header)?;
                for record in parse_records(&area, header.record_count)? {
                    let offset = header.base_offset + record.offset_delta as i64;
                    if let (Some(key), true) = (record.key, offset >= map_from) {
                        map.put(key, offset);
                    }
                }
                Ok(true)
            })?;
            if let Some(at) = stopped_at {
                map_end = at;
                break 'segments;
            }
        }
        if map_end <= map_from {
            if map_from < self.first_uncleanable_offset && map.is_empty() {
                return Err(StorageError::Corrupt {
                    path: self.dir.clone(),
                    reason: format!(
                        "log.cleaner.dedupe.buffer.size ({} bytes) cannot hold the keys of one batch at offset {map_from}",
                        config.dedupe_buffer_size
                    ),
                });
            }
            return Ok(None);
        }
        // Segments holding anything below map_end are cleaned, grouped up to segment.bytes.
        let to_clean: Vec<&SegmentSnapshot> = self.segments.iter().filter(|s| s.base_offset < map_end).collect();
        let mut groups: Vec<Vec<&SegmentSnapshot>> = Vec::new();
        for segment in to_clean {
            let fits = groups.last().is_some_and(|g: &Vec<&SegmentSnapshot>| {
                let size: u64 = g.iter().map(|s| s.size).sum();
                size + segment.size <= self.segment_bytes && segment.end_offset - g[0].base_offset < i32::MAX as i64
            });
            match groups.last_mut() {
                Some(g) if fits => g.push(segment),
                _ => groups.push(vec![segment]),
            }
        }
        // Each producer's last batch in the cleaned range stays, even emptied.
        let mut last_batch_of_producer: HashMap<i64, i64> = HashMap::new();
        for segment in groups.iter().flatten() {
            segment.for_each_batch(&self.path_of(segment.base_offset), |header, _| {
                if header.has_producer_id() {
                    last_batch_of_producer.insert(header.producer_id, header.base_offset);
                }
                Ok(true)
            })?;
        }
        let mut cleaned = CleanedLog { groups: Vec::new(), map_end, stats: CleanStats::default() };
        for group in &groups {
            match self.clean_group(group, &map, map_end, &last_batch_of_producer, now_ms, throttler, &mut stats) {
                Ok(g) => cleaned.groups.push(g),
                Err(e) => {
                    cleaned.discard();
                    let _ = std::fs::remove_file(self.dir.join(format!("{}{CLEANED_SUFFIX}", file_stem(group[0].base_offset))));
                    return Err(e);
                }
            }
        }
        stats.segments_replaced = groups.iter().map(Vec::len).sum();
        stats.cleaned_up_to = map_end;
        stats.throttled = throttler.throttled;
        cleaned.stats = stats;
        Ok(Some(cleaned))
    }

    #[allow(clippy::too_many_arguments)]
    fn clean_group(
        &self,
        group: &[&SegmentSnapshot],
        map: &OffsetMap,
        map_end: i64,
        last_batch_of_producer: &HashMap<i64, i64>,
        now_ms: i64,
        throttler: &mut Throttler,
        stats: &mut CleanStats,
    ) -> Result<CleanedGroup> {
        let base = group[0].base_offset;
        let end = group[group.len() - 1].end_offset;
        let cleaned_path = self.dir.join(format!("{}{CLEANED_SUFFIX}", file_stem(base)));
        let mut out = std::io::BufWriter::new(File::create(&cleaned_path).map_err(|e| StorageError::io(&cleaned_path, e))?);
        let mut written = 0u64;
        let mut last_modified = 0i64;
        let mut txns = TxnTracker::new(&self.aborted, base);
        for segment in group {
            last_modified = last_modified.max(segment.last_modified_ms);
            let retain_tombstones = segment.last_modified_ms > now_ms.saturating_sub(self.delete_retention_ms);
            let path = self.path_of(segment.base_offset);
            segment.for_each_batch(&path, |header, batch| {
                let kept = self.filter_batch(header, batch, map, map_end, retain_tombstones, last_batch_of_producer, &mut txns, stats)?;
                if let Some(bytes) = kept {
                    out.write_all(&bytes).map_err(|e| StorageError::io(&cleaned_path, e))?;
                    throttler.add(bytes.len());
                    written += bytes.len() as u64;
                }
                Ok(true)
            })?;
        }
        let file = out.into_inner().map_err(|e| StorageError::io(&cleaned_path, e.into_error()))?;
        if last_modified > 0 {
            let when = std::time::UNIX_EPOCH + Duration::from_millis(last_modified as u64);
            file.set_modified(when).map_err(|e| StorageError::io(&cleaned_path, e))?;
        }
        file.sync_all().map_err(|e| StorageError::io(&cleaned_path, e))?;
        stats.bytes_written += written;
        Ok(CleanedGroup {
            base_offset: base,
            end_offset: end,
            sources: group.iter().map(|s| (s.base_offset, s.size)).collect(),
            cleaned_path,
            bytes_written: written,
        })
    }

    /// What of one batch survives: the batch itself (borrowed bytes copied),
    /// a filtered copy, an empty batch, or nothing.
    #[allow(clippy::too_many_arguments)]
    fn filter_batch(
        &self,
        header: &BatchHeader,
        batch: &[u8],
        map: &OffsetMap,
        map_end: i64,
        retain_tombstones: bool,
        last_batch_of_producer: &HashMap<i64, i64>,
        txns: &mut TxnTracker,
        stats: &mut CleanStats,
    ) -> Result<Option<Vec<u8>>> {
        let last_of_producer = header.has_producer_id() && last_batch_of_producer.get(&header.producer_id) == Some(&header.base_offset);
        // Every batch goes through the tracker, in offset order, whatever becomes of it.
        let (aborted, marker_unneeded) =
            if header.is_control() { (false, txns.on_control_batch(header, batch)) } else { (txns.on_data_batch(header), false) };
        if header.last_offset() < self.log_start_offset {
            return Ok(None);
        }
        if header.is_control() {
            if marker_unneeded && !retain_tombstones && !last_of_producer {
                stats.markers_removed += 1;
                return Ok(None);
            }
            return Ok(Some(batch.to_vec()));
        }
        if aborted {
            stats.records_read += header.record_count.max(0) as u64;
            stats.aborted_records_removed += header.record_count.max(0) as u64;
            return Ok(last_of_producer.then(|| empty_batch(batch)));
        }
        if header.base_offset >= map_end {
            return Ok(Some(batch.to_vec()));
        }
        let area = records_area(batch, header)?;
        let records = parse_records(&area, header.record_count)?;
        stats.records_read += records.len() as u64;
        let mut kept: Vec<&RecordView> = Vec::with_capacity(records.len());
        for record in &records {
            let offset = header.base_offset + record.offset_delta as i64;
            let keep = if offset < self.log_start_offset {
                false
            } else if offset >= map_end {
                true
            } else if let Some(key) = record.key {
                let superseded = map.get(key).is_some_and(|latest| offset < latest);
                // A tombstone goes only when it is the key's latest record (so
                // every earlier value is gone with it) and old enough.
                let expired_tombstone = record.value_is_null && !retain_tombstones;
                if !superseded && expired_tombstone {
                    stats.tombstones_removed += 1;
                }
                !superseded && !expired_tombstone
            } else {
                false // Kafka's cleaner drops records without a key
            };
            if keep {
                kept.push(record);
            }
        }
        stats.records_kept += kept.len() as u64;
        if kept.len() == records.len() {
            return Ok(Some(batch.to_vec()));
        }
        if kept.is_empty() {
            return Ok(last_of_producer.then(|| empty_batch(batch)));
        }
        let mut plain = Vec::with_capacity(area.len());
        for record in &kept {
            plain.extend_from_slice(record.bytes);
        }
        let body = compress(header.compression_codec(), &plain)?;
        let mut out = Vec::with_capacity(BATCH_HEADER_LEN + body.len());
        out.extend_from_slice(&batch[..BATCH_HEADER_LEN]);
        out.extend_from_slice(&body);
        // LogAppendTime batches carry the broker's time in the header: keep it.
        let max_timestamp = (!header.is_log_append_time())
            .then(|| kept.iter().map(|r| header.base_timestamp.saturating_add(r.timestamp_delta)).max().unwrap_or(header.max_timestamp));
        finish_batch(&mut out, kept.len() as i32, max_timestamp);
        Ok(Some(out))
    }
}

/// The batch's header with no records (it keeps its producer's last sequence
/// and epoch): nothing compressed, as Kafka's writeEmptyHeader.
fn empty_batch(batch: &[u8]) -> Vec<u8> {
    let mut empty = batch[..BATCH_HEADER_LEN].to_vec();
    let attributes = i16::from_be_bytes([empty[21], empty[22]]) & !0x07;
    empty[21..23].copy_from_slice(&attributes.to_be_bytes());
    finish_batch(&mut empty, 0, None);
    empty
}

pub(crate) fn file_stem(base: i64) -> String {
    format!("{base:020}")
}

/// The swap file name of a group: `<base>.<end>.swap`.
pub fn swap_name(base: i64, end: i64) -> String {
    format!("{}.{}{SWAP_SUFFIX}", file_stem(base), file_stem(end))
}

/// Parses `<base>.<end>.swap`.
pub(crate) fn parse_swap_name(name: &str) -> Option<(i64, i64)> {
    let stem = name.strip_suffix(SWAP_SUFFIX)?;
    let (base, end) = stem.split_once('.')?;
    Some((base.parse().ok()?, end.parse().ok()?))
}

pub(crate) fn read_cleaner_checkpoint(dir: &Path) -> Option<i64> {
    std::fs::read_to_string(dir.join(CLEANER_CHECKPOINT)).ok()?.trim().parse().ok()
}
