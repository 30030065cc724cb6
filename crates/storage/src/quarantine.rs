//! Quarantine: bytes that recovery cuts from a log are moved, verbatim, into a
//! file beside the segment instead of being deleted, so an operator can
//! inspect them and re-produce what is intact. The broker never deletes a
//! quarantine file (deleting the topic removes its directory, and them with it).
//!
//! File format: `<segment>.log.quarantine-<unix-ms>` holds the cut bytes
//! exactly as they were in the segment, from the first byte that failed
//! recovery to the old end of the file: a run of Kafka record batches (magic
//! v2), the first of which is corrupt or torn. [`scan_intact_batches`] finds
//! the batches in it whose CRC-32C still matches.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::batch::{check_stored_batch, BatchHeader, BATCH_HEADER_LEN, LOG_OVERHEAD};
use crate::error::{Result, StorageError};

/// Larger cut regions are still quarantined, but not scanned for intact batches
/// (the scan reads the region into memory).
const MAX_SCAN_BYTES: u64 = 256 << 20;

/// A CRC-valid batch found in a quarantined region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IntactBatch {
    /// Byte position in the quarantine file.
    pub position: u64,
    pub header: BatchHeader,
}

/// What recovery cut from a segment and where it went.
#[derive(Debug, Clone)]
pub struct Quarantined {
    pub segment: PathBuf,
    pub quarantine_file: PathBuf,
    /// Position in the segment where the cut starts (the new segment size).
    pub cut_at: u64,
    pub bytes: u64,
    /// The offset the first cut batch should have had: the log end after the cut.
    pub first_lost_offset: i64,
    /// CRC-valid batches after the bad one. Their base offsets are what their
    /// headers claim: the base offset is not covered by the CRC.
    pub intact: Vec<IntactBatch>,
    /// Only an incomplete final batch was cut: what a crash mid-write leaves.
    pub torn_write_only: bool,
}

impl Quarantined {
    /// The last offset claimed by the cut batches (from unverified headers), if any was readable.
    pub fn last_claimed_offset(&self) -> Option<i64> {
        self.intact.last().map(|b| b.header.last_offset())
    }

    /// Reads one intact batch back from the quarantine file, checking its CRC again.
    pub fn read_intact(&self, batch: &IntactBatch) -> Result<Vec<u8>> {
        let file = File::open(&self.quarantine_file).map_err(|e| StorageError::io(&self.quarantine_file, e))?;
        let mut buf = vec![0u8; batch.header.total_size()];
        file.read_exact_at(&mut buf, batch.position).map_err(|e| StorageError::io(&self.quarantine_file, e))?;
        check_stored_batch(&buf).map_err(|e| StorageError::Corrupt { path: self.quarantine_file.clone(), reason: e.to_string() })?;
        Ok(buf)
    }
}

/// Copies `segment_file[from..to]` into a new quarantine file beside `segment_path`
/// and makes it durable (file and directory). Does not truncate the segment:
/// the caller does, only after this succeeded, so no byte is ever lost.
pub fn quarantine_region(
    segment_file: &File,
    segment_path: &Path,
    from: u64,
    to: u64,
    first_lost_offset: i64,
    now_ms: i64,
) -> Result<Quarantined> {
    let quarantine_file = free_name(segment_path, now_ms);
    let mut out = OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&quarantine_file)
        .map_err(|e| StorageError::io(&quarantine_file, e))?;
    let mut buf = vec![0u8; (1 << 20).min((to - from) as usize)];
    let mut pos = from;
    let mut scan = Vec::new();
    let scan_wanted = to - from <= MAX_SCAN_BYTES;
    while pos < to {
        let len = ((to - pos) as usize).min(buf.len());
        segment_file.read_exact_at(&mut buf[..len], pos).map_err(|e| StorageError::io(segment_path, e))?;
        out.write_all(&buf[..len]).map_err(|e| StorageError::io(&quarantine_file, e))?;
        if scan_wanted {
            scan.extend_from_slice(&buf[..len]);
        }
        pos += len as u64;
    }
    out.sync_all().map_err(|e| StorageError::io(&quarantine_file, e))?;
    if let Some(dir) = segment_path.parent() {
        crate::meta::sync_dir(dir)?;
    }
    let torn_write_only = is_torn_write(&scan, to - from);
    Ok(Quarantined {
        segment: segment_path.to_path_buf(),
        quarantine_file,
        cut_at: from,
        bytes: to - from,
        first_lost_offset,
        intact: if scan_wanted { scan_intact_batches(&scan) } else { Vec::new() },
        torn_write_only,
    })
}

/// A region that is one batch whose header claims more bytes than were written
/// (or not even a whole header): the normal leftover of a crash mid-append.
fn is_torn_write(region: &[u8], len: u64) -> bool {
    if (region.len() as u64) < len {
        return false; // not scanned: too large to be one torn batch worth calling routine
    }
    if region.len() < BATCH_HEADER_LEN {
        return true;
    }
    match BatchHeader::parse(region) {
        Ok(h) => h.magic == 2 && h.batch_length >= (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 && h.total_size() > region.len(),
        Err(_) => false,
    }
}

fn free_name(segment_path: &Path, now_ms: i64) -> PathBuf {
    let name = segment_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let mut candidate = segment_path.with_file_name(format!("{name}.quarantine-{now_ms}"));
    let mut n = 1;
    while candidate.exists() {
        candidate = segment_path.with_file_name(format!("{name}.quarantine-{now_ms}-{n}"));
        n += 1;
    }
    candidate
}

/// The CRC-valid batches in `region` (whose first batch failed recovery).
/// Follows the framing (length fields) while it leads from one valid batch to
/// the next; where it does not, resynchronises by trying every later byte
/// position as a batch start (magic 2, a length that fits, a matching CRC-32C:
/// a false match is a 1 in 2^32 chance per candidate).
pub fn scan_intact_batches(region: &[u8]) -> Vec<IntactBatch> {
    let mut found = Vec::new();
    // Where the bad first batch says it ends, if its header is at all plausible.
    let mut pos = match BatchHeader::parse(region) {
        Ok(h) if h.batch_length >= (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 && h.total_size() <= region.len() => h.total_size(),
        _ => 1,
    };
    while pos + BATCH_HEADER_LEN <= region.len() {
        match check_stored_batch(&region[pos..]) {
            Ok(header) => {
                found.push(IntactBatch { position: pos as u64, header });
                pos += header.total_size();
            }
            // Resync: try the next byte (never one inside a batch found intact, as those are skipped whole).
            Err(_) => pos += 1,
        }
    }
    found
}

/// Keeps a verbatim copy of a batch that a reader had to skip (it stays in
/// the log, but compaction or retention may later remove it). One file per
/// (directory, name); an existing copy is left as it is.
pub fn keep_copy(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf> {
    let path = dir.join(name);
    if path.exists() {
        return Ok(path);
    }
    let mut file = OpenOptions::new().create_new(true).write(true).open(&path).map_err(|e| StorageError::io(&path, e))?;
    file.write_all(bytes).map_err(|e| StorageError::io(&path, e))?;
    file.sync_all().map_err(|e| StorageError::io(&path, e))?;
    crate::meta::sync_dir(dir)?;
    Ok(path)
}
