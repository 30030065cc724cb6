//! One segment: `<base-offset>.log` plus its `.index` and `.timeindex`.
//!
//! The log file is a run of record batches exactly as stored by
//! [`crate::Log::append`]. Appends go to the end with positioned writes;
//! reads are positioned reads, so readers never disturb the writer.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::{check_stored_batch, BatchHeader, BATCH_HEADER_LEN};
use crate::error::{Result, StorageError};
use crate::index::{OffsetIndex, TimeIndex};
use crate::quarantine::{quarantine_region, Quarantined};

/// Bytes read at a time while walking batch headers.
const SCAN_WINDOW: usize = 64 * 1024;

pub fn file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

pub struct Segment {
    pub base_offset: i64,
    pub file: Arc<File>,
    dir: PathBuf,
    /// Valid bytes in the log file.
    pub size: u64,
    /// Offset after the last batch (== base offset when empty).
    pub next_offset: i64,
    /// Largest batch max-timestamp in the segment (-1 when empty).
    pub max_timestamp: i64,
    /// Last offset of the batch holding `max_timestamp`.
    pub offset_of_max_timestamp: i64,
    /// When the segment got its first batch (for `segment.ms`), or was opened.
    pub created_ms: i64,
    /// When the segment was last written (its file's mtime on open): the
    /// cleaner's tombstone clock (`delete.retention.ms`).
    pub last_modified_ms: i64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    last_time_indexed: i64,
    bytes_since_index: u64,
}

/// Control flow of a header walk.
pub enum Walk {
    Continue,
    Stop,
}

impl Segment {
    fn paths(dir: &Path, base_offset: i64) -> (PathBuf, PathBuf, PathBuf) {
        (
            dir.join(file_name(base_offset, "log")),
            dir.join(file_name(base_offset, "index")),
            dir.join(file_name(base_offset, "timeindex")),
        )
    }

    fn empty(dir: &Path, base_offset: i64, file: File, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file: Arc::new(file),
            dir: dir.to_path_buf(),
            size: 0,
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            created_ms: now_ms,
            last_modified_ms: now_ms,
            offset_index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            last_time_indexed: -1,
            bytes_since_index: 0,
        }
    }

    pub fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        let (log_path, _, _) = Self::paths(dir, base_offset);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&log_path)
            .map_err(|e| StorageError::io(&log_path, e))?;
        crate::meta::sync_dir(dir)?;
        Ok(Self::empty(dir, base_offset, file, now_ms))
    }

    /// Opens an existing segment. With `validate`, every batch's CRC is
    /// checked and a torn or corrupt tail is cut away; otherwise index
    /// files are used when consistent and only the headers after the last
    /// index entry are walked. Cut bytes are first moved into a quarantine
    /// file (see [`crate::quarantine`]); if that fails, so does the open, and
    /// nothing is truncated. Returns the segment and what was quarantined.
    pub fn open(
        dir: &Path,
        base_offset: i64,
        index_interval: u64,
        validate: bool,
        now_ms: i64,
    ) -> Result<(Segment, Option<Quarantined>)> {
        let (log_path, index_path, time_path) = Self::paths(dir, base_offset);
        let file = OpenOptions::new().read(true).write(true).open(&log_path).map_err(|e| StorageError::io(&log_path, e))?;
        let file_size = file.metadata().map_err(|e| StorageError::io(&log_path, e))?.len();
        let mut segment = Self::empty(dir, base_offset, file, now_ms);
        segment.size = file_size;
        let mut start = 0u64;
        if !validate {
            if let (Some(index), Some(time)) = (OffsetIndex::load(&index_path, file_size)?, TimeIndex::load(&time_path)?) {
                if let Some((_, position)) = index.last() {
                    start = position as u64;
                }
                segment.last_time_indexed = time.last().map(|(ts, _)| ts).unwrap_or(-1);
                segment.offset_index = index;
                segment.time_index = time;
            }
        }
        // Walk (and with `validate`, check) batches from `start`, rebuilding what the index lacks.
        let mut pos = start;
        let mut expected_offset: Option<i64> = None;
        let mut truncate_at: Option<u64> = None;
        let mut buf = Vec::new();
        while pos < file_size {
            if file_size - pos < BATCH_HEADER_LEN as u64 {
                truncate_at = Some(pos);
                break;
            }
            let header = match segment.header_at(pos) {
                Ok(h) => h,
                Err(_) => {
                    truncate_at = Some(pos);
                    break;
                }
            };
            let size = header.total_size() as u64;
            // Compared as i32: a negative length must not pass as a huge usize (fuzz: segment_recovery).
            let bad_shape = header.magic != 2
                || header.batch_length < (BATCH_HEADER_LEN - crate::batch::LOG_OVERHEAD) as i32
                || pos + size > file_size
                || header.base_offset < base_offset
                // The batch's offsets must ascend and fit an i64: a negative delta once made the
                // log end fall below the segment's base, and `Log::open` panicked (fuzz: segment_recovery).
                || header.last_offset_delta < 0
                || header.base_offset.checked_add(header.last_offset_delta as i64 + 1).is_none()
                // Compaction leaves gaps between batches, never overlaps.
                || expected_offset.is_some_and(|e| header.base_offset < e);
            if bad_shape {
                truncate_at = Some(pos);
                break;
            }
            if validate {
                buf.resize(size as usize, 0);
                let ok = segment.file.read_exact_at(&mut buf, pos).is_ok() && check_stored_batch(&buf).is_ok();
                if !ok {
                    truncate_at = Some(pos);
                    break;
                }
            }
            segment.note_batch(&header, pos, index_interval);
            expected_offset = Some(header.next_offset());
            pos += size;
        }
        let mut quarantined = None;
        if let Some(at) = truncate_at {
            let first_lost_offset = expected_offset.unwrap_or(segment.next_offset);
            let cut = quarantine_region(&segment.file, &log_path, at, file_size, first_lost_offset, now_ms)?;
            segment.file.set_len(at).map_err(|e| StorageError::io(&log_path, e))?;
            segment.file.sync_all().map_err(|e| StorageError::io(&log_path, e))?;
            segment.size = at;
            segment.offset_index.truncate_to_position(at as u32);
            quarantined = Some(cut);
        }
        // The walk started mid-segment when indexes were trusted: recover the segment's
        // max timestamp from the time index for what came before.
        if start > 0 {
            if let Some((ts, rel)) = segment.time_index.last() {
                if ts > segment.max_timestamp {
                    segment.max_timestamp = ts;
                    segment.offset_of_max_timestamp = base_offset + rel as i64;
                }
            }
        }
        if let Ok(meta) = std::fs::metadata(&log_path) {
            if let Ok(modified) = meta.modified() {
                if let Ok(age) = modified.duration_since(std::time::UNIX_EPOCH) {
                    segment.created_ms = segment.created_ms.min(age.as_millis() as i64);
                    segment.last_modified_ms = age.as_millis() as i64;
                }
            }
        }
        Ok((segment, quarantined))
    }

    /// Updates in-memory state for a batch stored at `position`.
    fn note_batch(&mut self, header: &BatchHeader, position: u64, index_interval: u64) {
        if self.bytes_since_index >= index_interval || position == 0 {
            let rel = (header.base_offset - self.base_offset) as u32;
            self.offset_index.push(rel, position as u32);
            if self.max_timestamp.max(header.max_timestamp) > self.last_time_indexed {
                let ts = self.max_timestamp.max(header.max_timestamp);
                self.time_index.push(ts, rel);
                self.last_time_indexed = ts;
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_size() as u64;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.offset_of_max_timestamp = header.last_offset();
        }
        self.next_offset = header.next_offset();
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    pub fn index_entries(&self) -> usize {
        self.offset_index.len()
    }

    /// Appends batches (offsets already assigned). On a failed write the file
    /// is cut back so nothing partial stays.
    pub fn append(&mut self, data: &[u8], index_interval: u64, now_ms: i64) -> Result<()> {
        let start = self.size;
        if let Err(e) = self.file.write_all_at(data, start) {
            let _ = self.file.set_len(start);
            return Err(StorageError::io(self.log_path(), e));
        }
        if self.size == 0 {
            self.created_ms = now_ms;
        }
        self.last_modified_ms = now_ms;
        let mut pos = 0usize;
        while pos + BATCH_HEADER_LEN <= data.len() {
            let Ok(header) = BatchHeader::parse(&data[pos..]) else { break };
            self.note_batch(&header, start + pos as u64, index_interval);
            pos += header.total_size();
        }
        self.size = start + data.len() as u64;
        Ok(())
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join(file_name(self.base_offset, "log"))
    }

    pub fn header_at(&self, position: u64) -> Result<BatchHeader> {
        let mut buf = [0u8; BATCH_HEADER_LEN];
        self.file.read_exact_at(&mut buf, position).map_err(|e| StorageError::io(self.log_path(), e))?;
        BatchHeader::parse(&buf).map_err(StorageError::from)
    }

    /// Walks batch headers from `position` to the end, reading in windows.
    pub fn walk(&self, mut position: u64, mut f: impl FnMut(u64, &BatchHeader) -> Walk) -> Result<()> {
        let mut window = vec![0u8; SCAN_WINDOW.min(self.size.saturating_sub(position) as usize).max(BATCH_HEADER_LEN)];
        while position + BATCH_HEADER_LEN as u64 <= self.size {
            let len = ((self.size - position) as usize).min(window.len());
            self.file
                .read_exact_at(&mut window[..len], position)
                .map_err(|e| StorageError::io(self.log_path(), e))?;
            let mut local = 0usize;
            while local + BATCH_HEADER_LEN <= len {
                let header = BatchHeader::parse(&window[local..len])?;
                let size = header.total_size();
                if size < BATCH_HEADER_LEN {
                    return Err(StorageError::Corrupt {
                        path: self.log_path(),
                        reason: format!("batch at {} has length {}", position + local as u64, header.batch_length),
                    });
                }
                if let Walk::Stop = f(position + local as u64, &header) {
                    return Ok(());
                }
                local += size;
            }
            if local == 0 {
                break;
            }
            position += local as u64;
        }
        Ok(())
    }

    /// Position of the batch that contains `offset` (or the first batch after
    /// it); None if the segment holds nothing at or after `offset`.
    pub fn locate(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let rel = (offset - self.base_offset).clamp(0, u32::MAX as i64) as u32;
        let start = self.offset_index.lookup(rel) as u64;
        self.first_batch_from(start, |header| header.last_offset() >= offset)
    }

    /// The first batch at or after `position` that satisfies `wanted`.
    fn first_batch_from(&self, position: u64, wanted: impl Fn(&BatchHeader) -> bool) -> Result<Option<(u64, BatchHeader)>> {
        let mut found = None;
        self.walk(position, |pos, header| {
            if wanted(header) {
                found = Some((pos, *header));
                Walk::Stop
            } else {
                Walk::Continue
            }
        })?;
        Ok(found)
    }

    /// Whole batches from `position`: stops before `max_offset` and, after
    /// the first batch (or from the first, without `min_one_batch`), before
    /// `max_bytes` would be exceeded. With `fill`, a batch cut by `max_bytes`
    /// contributes its first bytes, so the span is exactly `max_bytes` (as
    /// Kafka slices its log: the client drops the partial batch and fetches
    /// it next, and a one-partition reader moves up to a whole `max_bytes`
    /// per round trip instead of whatever whole batches fit). Returns the
    /// byte length.
    pub fn span(&self, position: u64, max_offset: i64, max_bytes: usize, min_one_batch: bool, fill: bool) -> Result<usize> {
        let mut len = 0usize;
        self.walk(position, |_, header| {
            let size = header.total_size();
            if header.base_offset >= max_offset {
                return Walk::Stop;
            }
            if len + size > max_bytes && !(len == 0 && min_one_batch) {
                if fill {
                    // The walk only yields batches wholly in the file, so
                    // these bytes exist; the batch is below `max_offset`.
                    // A first batch larger than `max_bytes` (KIP-74) is the
                    // whole answer, as Kafka's max(limit, first batch).
                    len = len.max(max_bytes);
                }
                return Walk::Stop;
            }
            len += size;
            Walk::Continue
        })?;
        Ok(len)
    }

    /// First batch whose max timestamp is >= `timestamp`: (its position and header).
    pub fn find_timestamp(&self, timestamp: i64) -> Result<Option<(u64, BatchHeader)>> {
        if self.max_timestamp < timestamp {
            return Ok(None);
        }
        let rel = self.time_index.scan_start(timestamp);
        let start = self.offset_index.lookup(rel) as u64;
        self.first_batch_from(start, |header| header.max_timestamp >= timestamp)
    }

    /// First batch whose max timestamp is >= `timestamp` and which holds an
    /// offset >= `min_offset` (records below the log start do not count).
    pub fn find_timestamp_from(&self, timestamp: i64, min_offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if self.max_timestamp < timestamp || self.next_offset <= min_offset {
            return Ok(None);
        }
        let rel = self.time_index.scan_start(timestamp);
        let start = self.offset_index.lookup(rel) as u64;
        self.first_batch_from(start, |header| header.max_timestamp >= timestamp && header.last_offset() >= min_offset)
    }

    pub fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, position).map_err(|e| StorageError::io(self.log_path(), e))?;
        Ok(buf)
    }

    /// Cuts the segment at `position` (a batch boundary), forgetting later batches.
    pub fn truncate_at(&mut self, position: u64, next_offset: i64) -> Result<()> {
        self.file.set_len(position).map_err(|e| StorageError::io(self.log_path(), e))?;
        self.size = position;
        self.next_offset = next_offset;
        self.offset_index.truncate_to_position(position as u32);
        self.time_index.truncate_to_offset((next_offset - self.base_offset).max(0) as u32);
        self.last_time_indexed = self.time_index.last().map(|(ts, _)| ts).unwrap_or(-1);
        self.bytes_since_index = 0;
        // Recompute the max timestamp from what is left.
        self.max_timestamp = -1;
        self.offset_of_max_timestamp = -1;
        let mut max = (-1i64, -1i64);
        self.walk(0, |_, h| {
            if h.max_timestamp > max.0 {
                max = (h.max_timestamp, h.last_offset());
            }
            Walk::Continue
        })?;
        (self.max_timestamp, self.offset_of_max_timestamp) = max;
        Ok(())
    }

    pub fn write_indexes(&self) -> Result<()> {
        let (_, index_path, time_path) = Self::paths(&self.dir, self.base_offset);
        self.offset_index.write(&index_path)?;
        self.time_index.write(&time_path)
    }

    pub fn delete_files(&self) -> Result<()> {
        let (log, index, time) = Self::paths(&self.dir, self.base_offset);
        let txn_index = self.dir.join(file_name(self.base_offset, crate::log::TXN_INDEX));
        for path in [log, index, time, txn_index] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(path, e)),
            }
        }
        Ok(())
    }
}
