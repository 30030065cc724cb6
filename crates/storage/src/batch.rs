//! Kafka record batches (magic v2): header parsing, validation, and the
//! in-place edits the log makes when it appends (offsets, LogAppendTime).
//!
//! Layout of a batch header (all big-endian), as in Kafka's `DefaultRecordBatch`:
//!
//! ```text
//!  0 baseOffset i64        8 batchLength i32       12 partitionLeaderEpoch i32
//! 16 magic i8             17 crc u32 (CRC-32C of bytes 21..end)
//! 21 attributes i16       23 lastOffsetDelta i32  27 baseTimestamp i64
//! 35 maxTimestamp i64     43 producerId i64       51 producerEpoch i16
//! 53 baseSequence i32     57 recordCount i32      61 records...
//! ```
//!
//! Only the fields outside the CRC (base offset, leader epoch) can be changed
//! without recomputing it; LogAppendTime changes attributes and max timestamp,
//! so it recomputes the CRC.

use bytes::Buf;

pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before `batchLength` counts: baseOffset + batchLength itself.
pub const LOG_OVERHEAD: usize = 12;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
const MAX_TIMESTAMP_OFFSET: usize = 35;
const LEADER_EPOCH_OFFSET: usize = 12;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a batch was refused. Each maps onto one Kafka error code in the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Bytes that do not frame as batches, or whose CRC does not match: CORRUPT_MESSAGE.
    #[error("corrupt record batch: {0}")]
    Corrupt(String),
    /// A batch larger than `max.message.bytes`: MESSAGE_TOO_LARGE.
    #[error("record batch of {size} bytes exceeds max.message.bytes {max}")]
    TooLarge { size: usize, max: usize },
    /// Well-framed but not acceptable (old magic, bad offsets, empty): INVALID_RECORD.
    #[error("invalid record batch: {0}")]
    Invalid(String),
    /// Compression codec id outside 0..=4: UNSUPPORTED_COMPRESSION_TYPE.
    #[error("unsupported compression codec {0}")]
    UnsupportedCompression(i16),
}

/// The parsed fixed-size header of one record batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Parses a header from the first [`BATCH_HEADER_LEN`] bytes of `buf`.
    /// Checks only that enough bytes are there; see [`validate_batches`] for the rest.
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Corrupt(format!(
                "{} bytes is shorter than a batch header ({BATCH_HEADER_LEN})",
                buf.len()
            )));
        }
        let mut b = &buf[..BATCH_HEADER_LEN];
        Ok(BatchHeader {
            base_offset: b.get_i64(),
            batch_length: b.get_i32(),
            partition_leader_epoch: b.get_i32(),
            magic: b.get_i8(),
            crc: b.get_u32(),
            attributes: b.get_i16(),
            last_offset_delta: b.get_i32(),
            base_timestamp: b.get_i64(),
            max_timestamp: b.get_i64(),
            producer_id: b.get_i64(),
            producer_epoch: b.get_i16(),
            base_sequence: b.get_i32(),
            record_count: b.get_i32(),
        })
    }

    /// Size of the whole batch on disk, header included.
    pub fn total_size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }
    pub fn last_offset(&self) -> i64 {
        self.base_offset + self.last_offset_delta as i64
    }
    pub fn next_offset(&self) -> i64 {
        self.last_offset() + 1
    }
    pub fn compression_codec(&self) -> i16 {
        self.attributes & COMPRESSION_MASK
    }
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_BIT != 0
    }
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// What [`validate_batches`] found in a run of batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ValidatedBatches {
    pub headers: Vec<BatchHeader>,
    /// Sum of `last_offset_delta + 1` over all batches: how many offsets the append takes.
    pub offset_count: i64,
    pub max_timestamp: i64,
}

/// CRC-32C as Kafka computes it for magic v2 (over attributes..end).
pub fn crc32c(data: &[u8]) -> u32 {
    crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, data) as u32
}

/// Walks `buf` as a run of record batches from a producer and checks each:
/// framing, magic 2, CRC-32C, size against `max_batch_bytes`, codec, offsets
/// (base offset 0, `lastOffsetDelta == recordCount - 1`), and for uncompressed
/// batches that exactly `recordCount` records fill the batch.
///
/// Nothing is allocated from a length found in `buf` (the header list grows one
/// entry per batch actually present).
pub fn validate_batches(buf: &[u8], max_batch_bytes: usize) -> Result<ValidatedBatches, BatchError> {
    if buf.is_empty() {
        return Err(BatchError::Invalid("no record batches".into()));
    }
    let mut out = ValidatedBatches { max_timestamp: -1, ..Default::default() };
    let mut pos = 0usize;
    while pos < buf.len() {
        let rest = &buf[pos..];
        // Error codes follow Kafka: a request without one whole batch is an
        // INVALID_RECORD, a magic from the future a CORRUPT_MESSAGE, an old
        // magic an INVALID_RECORD.
        if rest.len() < LOG_OVERHEAD + 5 {
            if pos == 0 {
                return Err(BatchError::Invalid(format!("{} bytes hold no complete record batch", rest.len())));
            }
            return Err(BatchError::Corrupt(format!("{} trailing bytes after the last batch", rest.len())));
        }
        let batch_length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let magic = rest[16] as i8;
        if magic > 2 {
            return Err(BatchError::Corrupt(format!("record batch magic {magic} is unknown; only magic v2 is accepted")));
        }
        if magic != 2 {
            return Err(BatchError::Invalid(format!("record batch magic {magic}; only magic v2 is accepted")));
        }
        if batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::Corrupt(format!("batch length {batch_length} is below the header size")));
        }
        let size = LOG_OVERHEAD + batch_length as usize;
        if size > max_batch_bytes {
            return Err(BatchError::TooLarge { size, max: max_batch_bytes });
        }
        if size > rest.len() {
            return Err(BatchError::Invalid(format!(
                "batch claims {size} bytes but only {} remain",
                rest.len()
            )));
        }
        let batch = &rest[..size];
        let header = BatchHeader::parse(batch)?;
        let computed = crc32c(&batch[ATTRIBUTES_OFFSET..]);
        if computed != header.crc {
            return Err(BatchError::Corrupt(format!(
                "CRC mismatch: stored {:#010x}, computed {computed:#010x}",
                header.crc
            )));
        }
        let codec = header.compression_codec();
        if codec > 4 {
            return Err(BatchError::UnsupportedCompression(codec));
        }
        if header.base_offset != 0 {
            return Err(BatchError::Invalid(format!(
                "a producer's batch must have base offset 0, not {}",
                header.base_offset
            )));
        }
        if header.record_count <= 0 {
            return Err(BatchError::Invalid(format!("record count {} (a batch holds at least one record)", header.record_count)));
        }
        if header.last_offset_delta != header.record_count - 1 {
            return Err(BatchError::Invalid(format!(
                "record count {} does not match last offset delta {}",
                header.record_count, header.last_offset_delta
            )));
        }
        if codec == 0 {
            check_uncompressed_record_count(&batch[BATCH_HEADER_LEN..], header.record_count)?;
        }
        out.offset_count += header.last_offset_delta as i64 + 1;
        out.max_timestamp = out.max_timestamp.max(header.max_timestamp);
        out.headers.push(header);
        pos += size;
    }
    Ok(out)
}

/// Each record starts with its length as a zig-zag varint; walking the lengths
/// proves the batch holds exactly `expected` records without decoding them.
fn check_uncompressed_record_count(mut records: &[u8], expected: i32) -> Result<(), BatchError> {
    let mut seen: i32 = 0;
    while !records.is_empty() {
        let (len, used) = read_varint(records)
            .ok_or_else(|| BatchError::Corrupt(format!("bad record length varint in record {seen}")))?;
        if len <= 0 || (len as usize) > records.len() - used {
            return Err(BatchError::Corrupt(format!("record {seen} has impossible length {len}")));
        }
        records = &records[used + len as usize..];
        seen += 1;
        if seen > expected {
            break;
        }
    }
    if seen != expected {
        return Err(BatchError::Invalid(format!("header says {expected} records, batch holds {seen}")));
    }
    Ok(())
}

/// Reads a zig-zag encoded varint (at most 5 bytes); returns the value and bytes used.
fn read_varint(buf: &[u8]) -> Option<(i32, usize)> {
    let mut raw: u32 = 0;
    for (i, &byte) in buf.iter().take(5).enumerate() {
        raw |= ((byte & 0x7f) as u32) << (7 * i);
        if byte & 0x80 == 0 {
            let value = ((raw >> 1) as i32) ^ -((raw & 1) as i32);
            return Some((value, i + 1));
        }
    }
    None
}

/// Rewrites the headers of already-validated batches for append at `first_offset`:
/// base offsets, the partition leader epoch, and, when `log_append_time` is
/// given, the timestamp type and max timestamp (recomputing the CRC).
/// Returns the last offset assigned.
pub fn assign_offsets(buf: &mut [u8], first_offset: i64, leader_epoch: i32, log_append_time: Option<i64>) -> i64 {
    let mut pos = 0usize;
    let mut next = first_offset;
    while pos + BATCH_HEADER_LEN <= buf.len() {
        let batch_length = i32::from_be_bytes([buf[pos + 8], buf[pos + 9], buf[pos + 10], buf[pos + 11]]);
        let size = LOG_OVERHEAD + batch_length.max(0) as usize;
        let end = (pos + size).min(buf.len());
        let batch = &mut buf[pos..end];
        batch[0..8].copy_from_slice(&next.to_be_bytes());
        batch[LEADER_EPOCH_OFFSET..LEADER_EPOCH_OFFSET + 4].copy_from_slice(&leader_epoch.to_be_bytes());
        if let Some(ts) = log_append_time {
            let attributes = i16::from_be_bytes([batch[ATTRIBUTES_OFFSET], batch[ATTRIBUTES_OFFSET + 1]]) | TIMESTAMP_TYPE_BIT;
            batch[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
            batch[MAX_TIMESTAMP_OFFSET..MAX_TIMESTAMP_OFFSET + 8].copy_from_slice(&ts.to_be_bytes());
            let crc = crc32c(&batch[ATTRIBUTES_OFFSET..]);
            batch[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        }
        let last_offset_delta = i32::from_be_bytes([batch[23], batch[24], batch[25], batch[26]]);
        next += last_offset_delta as i64 + 1;
        pos += size;
    }
    next - 1
}

/// Checks one stored batch (recovery): framing and CRC only, not producer rules.
pub fn check_stored_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != 2 {
        return Err(BatchError::Corrupt(format!("stored batch magic {}", header.magic)));
    }
    if header.batch_length < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 || header.total_size() > batch.len() {
        return Err(BatchError::Corrupt(format!("stored batch length {} does not fit", header.batch_length)));
    }
    let computed = crc32c(&batch[ATTRIBUTES_OFFSET..header.total_size()]);
    if computed != header.crc {
        return Err(BatchError::Corrupt(format!("stored batch CRC mismatch at base offset {}", header.base_offset)));
    }
    Ok(header)
}
