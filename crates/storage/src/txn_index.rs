//! Transactions in the log: Kafka's transaction index and control records.
//!
//! The transaction index (`<segment base>.txnindex`, Kafka's format) lists
//! every aborted transaction whose ABORT marker lies in that segment: a
//! read_committed fetch returns the ones overlapping what it read, so the
//! consumer can drop their records. Each entry is 34 bytes, big-endian:
//! version i16 (0), producer id i64, first offset i64, last offset i64 (the
//! marker), last stable offset i64 (when the marker was written).
//!
//! A control batch (attributes bit 5) holds one control record whose key is
//! version i16 + type i16 (0 = ABORT, 1 = COMMIT) and whose value is version
//! i16 + coordinator epoch i32.

use std::io::Write;
use std::path::Path;

use crate::batch::{BatchHeader, BATCH_HEADER_LEN};
use crate::error::{Result, StorageError};

pub const ENTRY_LEN: usize = 34;
const ENTRY_VERSION: i16 = 0;

/// One aborted transaction of one producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    /// Offset of the transaction's first record in this partition.
    pub first_offset: i64,
    /// Offset of its ABORT marker.
    pub last_offset: i64,
    pub last_stable_offset: i64,
}

impl AbortedTxn {
    pub fn encode(&self) -> [u8; ENTRY_LEN] {
        let mut out = [0u8; ENTRY_LEN];
        out[0..2].copy_from_slice(&ENTRY_VERSION.to_be_bytes());
        out[2..10].copy_from_slice(&self.producer_id.to_be_bytes());
        out[10..18].copy_from_slice(&self.first_offset.to_be_bytes());
        out[18..26].copy_from_slice(&self.last_offset.to_be_bytes());
        out[26..34].copy_from_slice(&self.last_stable_offset.to_be_bytes());
        out
    }

    pub fn decode(buf: &[u8]) -> Option<AbortedTxn> {
        let buf = buf.get(..ENTRY_LEN)?;
        let i64_at = |at: usize| i64::from_be_bytes(buf[at..at + 8].try_into().unwrap_or([0; 8]));
        if i16::from_be_bytes([buf[0], buf[1]]) != ENTRY_VERSION {
            return None;
        }
        Some(AbortedTxn { producer_id: i64_at(2), first_offset: i64_at(10), last_offset: i64_at(18), last_stable_offset: i64_at(26) })
    }
}

/// Reads a transaction index file; a missing file is empty. A torn final
/// entry (a crash mid-write) and entries of an unknown version are ignored:
/// the broker rebuilds the active segment's entries from its batches.
pub fn read_file(path: &Path) -> Result<Vec<AbortedTxn>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StorageError::io(path, e)),
    };
    Ok(bytes.chunks_exact(ENTRY_LEN).filter_map(AbortedTxn::decode).collect())
}

/// Appends one entry and makes it durable (aborts are rare; the entry must
/// outlive the segment becoming inactive, after which it is not rebuilt).
pub fn append_entry(path: &Path, entry: &AbortedTxn) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(|e| StorageError::io(path, e))?;
    file.write_all(&entry.encode()).map_err(|e| StorageError::io(path, e))?;
    file.sync_data().map_err(|e| StorageError::io(path, e))
}

/// Replaces a transaction index file with `entries` (none: the file goes).
pub fn rewrite(path: &Path, entries: &[AbortedTxn]) -> Result<()> {
    if entries.is_empty() {
        return match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StorageError::io(path, e)),
        };
    }
    let bytes: Vec<u8> = entries.iter().flat_map(|e| e.encode()).collect();
    crate::meta::write_atomically(path, &bytes)
}

/// What a control record marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlType {
    Abort,
    Commit,
    /// Another control record (e.g. KRaft's), not a transaction marker.
    Other(i16),
}

impl ControlType {
    pub fn code(self) -> i16 {
        match self {
            ControlType::Abort => 0,
            ControlType::Commit => 1,
            ControlType::Other(c) => c,
        }
    }
    pub fn from_code(code: i16) -> ControlType {
        match code {
            0 => ControlType::Abort,
            1 => ControlType::Commit,
            other => ControlType::Other(other),
        }
    }
}

/// The type of an (uncompressed) control batch's first record, from its key;
/// None when `batch` is not a readable control batch.
pub fn control_type(batch: &[u8]) -> Option<ControlType> {
    let header = BatchHeader::parse(batch).ok()?;
    if !header.is_control() || header.compression_codec() != 0 {
        return None;
    }
    let mut rest = batch.get(BATCH_HEADER_LEN..)?;
    let (_len, used) = crate::log::read_varlong(rest)?;
    rest = rest.get(used + 1..)?; // the record's attributes
    let (_ts_delta, used) = crate::log::read_varlong(rest)?;
    rest = rest.get(used..)?;
    let (_offset_delta, used) = crate::log::read_varlong(rest)?;
    rest = rest.get(used..)?;
    let (key_len, used) = crate::log::read_varlong(rest)?;
    let key = rest.get(used..used + usize::try_from(key_len).ok()?)?;
    if key.len() < 4 {
        return None;
    }
    Some(ControlType::from_code(i16::from_be_bytes([key[2], key[3]])))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_in_kafkas_34_bytes() {
        let entry = AbortedTxn { producer_id: 7, first_offset: 10, last_offset: 15, last_stable_offset: 10 };
        let bytes = entry.encode();
        assert_eq!(bytes.len(), 34);
        assert_eq!(&bytes[0..2], &[0, 0]);
        assert_eq!(AbortedTxn::decode(&bytes), Some(entry));
    }

    /// An uncompressed batch of `count` one-byte records (base offset 0).
    fn batch(count: i32) -> Vec<u8> {
        let mut records = Vec::new();
        for i in 0..count {
            // attributes, timestamp delta, offset delta (zig-zag), null key, 1-byte value, no headers
            let body = [0u8, 0, (i * 2) as u8, 1, 2, b'v', 0];
            records.push(body.len() as u8 * 2);
            records.extend_from_slice(&body);
        }
        let mut b = Vec::new();
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&((49 + records.len()) as i32).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.push(2);
        b.extend_from_slice(&0u32.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(count - 1).to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&0i64.to_be_bytes());
        b.extend_from_slice(&(-1i64).to_be_bytes());
        b.extend_from_slice(&(-1i16).to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes());
        b.extend_from_slice(&count.to_be_bytes());
        b.extend_from_slice(&records);
        let crc = crate::batch::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b
    }

    #[test]
    fn the_log_keeps_its_aborted_transactions_across_reopen_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::LogConfig { segment_bytes: 200, ..Default::default() };
        let mut log = crate::Log::open(dir.path(), config.clone()).unwrap();
        for _ in 0..10 {
            let mut b = batch(2);
            crate::batch::validate_batches(&b, usize::MAX).unwrap();
            log.append(&mut b, 0, 0).unwrap();
        }
        assert!(log.segment_count() > 1, "the test needs several segments");
        let early = AbortedTxn { producer_id: 1, first_offset: 0, last_offset: 3, last_stable_offset: 0 };
        let late = AbortedTxn { producer_id: 2, first_offset: 4, last_offset: 17, last_stable_offset: 4 };
        log.add_aborted_txn(early).unwrap();
        log.add_aborted_txn(late).unwrap();
        log.add_aborted_txn(late).unwrap(); // a rebuild adds it again: no duplicate
        assert_eq!(log.aborted_txns(0, 20), vec![early, late]);
        assert_eq!(log.aborted_txns(4, 20), vec![late], "an abort ending before the fetch offset is not returned");
        assert_eq!(log.aborted_txns(0, 4), vec![early], "a transaction starting at the upper bound is not returned");
        log.close().unwrap();
        drop(log);
        let mut log = crate::Log::open(dir.path(), config.clone()).unwrap();
        assert_eq!(log.aborted_txns(0, 20), vec![early, late]);
        log.truncate_to(10).unwrap();
        assert_eq!(log.aborted_txns(0, 20), vec![early], "the abort marker past the cut is gone");
        drop(log);
        let log = crate::Log::open(dir.path(), config).unwrap();
        assert_eq!(log.aborted_txns(0, 20), vec![early]);
    }

    #[test]
    fn the_scan_start_covers_the_oldest_open_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::LogConfig { segment_bytes: 200, ..Default::default() };
        let mut log = crate::Log::open(dir.path(), config).unwrap();
        for _ in 0..10 {
            let mut b = batch(2);
            log.append(&mut b, 0, 0).unwrap();
        }
        let active = log.active_segment_base();
        assert!(active > 2);
        assert_eq!(log.transaction_scan_start(), active, "no record: the active segment");
        log.set_transaction_scan_start(Some(2)).unwrap();
        assert_eq!(log.transaction_scan_start(), 2);
        log.set_transaction_scan_start(None).unwrap();
        assert_eq!(log.transaction_scan_start(), active);
        std::fs::write(dir.path().join("transaction-scan-start"), b"garbage").unwrap();
        assert_eq!(log.transaction_scan_start(), 0, "an unreadable record means the whole log");
    }

    #[test]
    fn torn_index_tails_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.txnindex");
        let entry = AbortedTxn { producer_id: 1, first_offset: 0, last_offset: 4, last_stable_offset: 0 };
        append_entry(&path, &entry).unwrap();
        std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(&[0, 0, 1]).unwrap();
        assert_eq!(read_file(&path).unwrap(), vec![entry]);
    }
}
