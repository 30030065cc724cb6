//! Idempotent producers: producer id allocation and per-partition sequence
//! checks, so a producer's retried batch is not written twice and a gap in
//! its sequence is refused.
//!
//! Per partition and producer id, the epoch and the last
//! [`MAX_CACHED_BATCHES`] batches (sequence range → offsets) are kept, as
//! Kafka does (a producer has at most 5 requests in flight). A batch whose
//! sequence range matches a cached one is a duplicate: it is answered with
//! the original offsets and not appended again.
//!
//! Transactions (KIP-98): a producer's first transactional batch on the
//! partition opens its transaction there (its offset is the transaction's
//! first offset); the COMMIT or ABORT marker the coordinator appends closes
//! it. The oldest open transaction bounds the last stable offset, and an
//! aborted one becomes an entry of the transaction index.

use std::collections::{HashMap, VecDeque};

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_storage::{AbortedTxn, BatchHeader, ControlType, MetaStore, StorageError};

use crate::error::ApiError;

/// Kafka keeps the last five batches per producer (max.in.flight.requests.per.connection ≤ 5).
pub const MAX_CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    /// Max timestamp of the producer's last batch (DescribeProducers).
    last_timestamp: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// First offset of its open transaction here (-1: none).
    pub current_txn_start_offset: i64,
}

/// What the sequence check decided for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not an idempotent batch, or the next expected one: append it.
    Append,
    /// Already written: answer with these offsets, append nothing.
    Duplicate(CachedBatch),
}

/// Sequence state of the producers writing to one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id → offset of its first transactional batch here.
    open_txns: HashMap<i64, i64>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX like Kafka's DefaultRecordBatch.
    let last = header.base_sequence as i64 + header.last_offset_delta as i64;
    if last > i32::MAX as i64 {
        (last - i32::MAX as i64 - 1) as i32
    } else {
        last as i32
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    /// Checks a batch against its producer's state (before appending).
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ApiError> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state predates a restart): accept its first sequence.
            return Ok(SequenceCheck::Append);
        };
        // Every batch of a known producer is fenced by its epoch: a zombie's
        // transactional offset commits and markers carry no sequence.
        if header.producer_epoch < entry.epoch {
            return Err(ApiError::new(
                ResponseError::InvalidProducerEpoch,
                format!("producer epoch {} is older than the current epoch {}", header.producer_epoch, entry.epoch),
            ));
        }
        if header.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(ApiError::new(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!("a new producer epoch must start at sequence 0, not {}", header.base_sequence),
                ));
            }
            return Ok(SequenceCheck::Append);
        }
        let last = last_sequence(header);
        if let Some(cached) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate(*cached));
        }
        let expected = entry.batches.back().map(|b| next_sequence(b.last_sequence)).unwrap_or(0);
        if header.base_sequence != expected {
            return Err(ApiError::new(
                ResponseError::OutOfOrderSequenceNumber,
                format!("expected sequence {expected}, got {}", header.base_sequence),
            ));
        }
        Ok(SequenceCheck::Append)
    }

    /// The producers with state here, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, entry)| ActiveProducer {
                producer_id: *id,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: entry.last_timestamp,
                current_txn_start_offset: self.open_txns.get(id).copied().unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Records an appended batch (offsets as assigned by the log).
    pub fn record(&mut self, header: &BatchHeader, first_offset: i64) {
        if header.has_producer_id() && header.is_transactional() && !header.is_control() {
            self.open_txns.entry(header.producer_id).or_insert(first_offset);
        }
        if !header.has_producer_id() || header.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = header.max_timestamp;
        entry.batches.push_back(CachedBatch {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            first_offset,
            last_offset: first_offset + header.last_offset_delta as i64,
        });
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }
}

impl ProducerStates {
    /// A COMMIT or ABORT marker of `header`'s producer was appended at
    /// `marker_offset`: its open transaction ends, and the marker's epoch
    /// (bumped when the coordinator fenced the producer) becomes current.
    /// Returns the transaction-index entry of an aborted transaction.
    pub fn complete_txn(&mut self, header: &BatchHeader, marker_offset: i64, marker: ControlType, last_stable_offset: i64) -> Option<AbortedTxn> {
        if !matches!(marker, ControlType::Abort | ControlType::Commit) {
            return None;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        let first_offset = self.open_txns.remove(&header.producer_id)?;
        (marker == ControlType::Abort).then_some(AbortedTxn {
            producer_id: header.producer_id,
            first_offset,
            last_offset: marker_offset,
            last_stable_offset,
        })
    }

    /// First offset of the oldest open transaction (bounds the last stable offset).
    pub fn first_open_offset(&self) -> Option<i64> {
        self.open_txns.values().min().copied()
    }

    /// Whether `producer_id` has an open transaction here.
    pub fn has_open_txn(&self, producer_id: i64) -> bool {
        self.open_txns.contains_key(&producer_id)
    }
}

/// Hands out producer ids, durably: ids are reserved in blocks whose end is
/// persisted before any id of the block is used, so ids never repeat across
/// restarts.
pub struct ProducerIdAllocator {
    state: Mutex<(i64, i64)>,
}

const ID_BLOCK: i64 = 1000;
const NEXT_BLOCK_KEY: &str = "producer.id.next.block";

impl ProducerIdAllocator {
    pub fn new() -> Self {
        ProducerIdAllocator { state: Mutex::new((0, 0)) }
    }

    pub fn allocate(&self, meta: &MetaStore) -> Result<i64, StorageError> {
        let mut state = self.state.lock();
        let (next, end) = *state;
        if next < end {
            state.0 += 1;
            return Ok(next);
        }
        let start = match meta.get_value(NEXT_BLOCK_KEY)? {
            Some(v) => v.parse::<i64>().unwrap_or(0).max(0),
            None => 0,
        };
        meta.put_value(NEXT_BLOCK_KEY, &(start + ID_BLOCK).to_string())?;
        *state = (start + 1, start + ID_BLOCK);
        Ok(start)
    }
}

impl Default for ProducerIdAllocator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut states = ProducerStates::default();
        let first = batch(7, 0, 0, 3);
        assert_eq!(states.check(&first).unwrap(), SequenceCheck::Append);
        states.record(&first, 100);
        let second = batch(7, 0, 3, 2);
        assert_eq!(states.check(&second).unwrap(), SequenceCheck::Append);
        states.record(&second, 103);
        match states.check(&first).unwrap() {
            SequenceCheck::Duplicate(c) => assert_eq!((c.first_offset, c.last_offset), (100, 102)),
            other => panic!("expected duplicate, got {other:?}"),
        }
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut states = ProducerStates::default();
        let first = batch(7, 1, 0, 1);
        states.record(&first, 0);
        let gap = batch(7, 1, 5, 1);
        assert_eq!(states.check(&gap).unwrap_err().code, ResponseError::OutOfOrderSequenceNumber);
        let zombie = batch(7, 0, 1, 1);
        assert_eq!(states.check(&zombie).unwrap_err().code, ResponseError::InvalidProducerEpoch);
        let bumped = batch(7, 2, 0, 1);
        assert_eq!(states.check(&bumped).unwrap(), SequenceCheck::Append);
        let bumped_bad = batch(7, 2, 4, 1);
        assert_eq!(states.check(&bumped_bad).unwrap_err().code, ResponseError::OutOfOrderSequenceNumber);
    }

    #[test]
    fn non_idempotent_batches_skip_checks() {
        let states = ProducerStates::default();
        assert_eq!(states.check(&batch(-1, -1, -1, 4)).unwrap(), SequenceCheck::Append);
    }

    fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader { attributes: 0x10, ..batch(producer_id, epoch, base_sequence, records) }
    }

    fn marker(producer_id: i64, epoch: i16) -> BatchHeader {
        BatchHeader { attributes: 0x30, ..batch(producer_id, epoch, -1, 1) }
    }

    #[test]
    fn markers_close_transactions_and_aborts_become_index_entries() {
        let mut states = ProducerStates::default();
        states.record(&txn_batch(1, 0, 0, 2), 10);
        states.record(&txn_batch(2, 0, 0, 1), 12);
        states.record(&txn_batch(1, 0, 2, 1), 13);
        assert_eq!(states.first_open_offset(), Some(10));
        assert_eq!(states.complete_txn(&marker(1, 0), 14, ControlType::Commit, 10), None);
        assert_eq!(states.first_open_offset(), Some(12));
        let aborted = states.complete_txn(&marker(2, 0), 15, ControlType::Abort, 12).expect("an index entry");
        assert_eq!((aborted.producer_id, aborted.first_offset, aborted.last_offset), (2, 12, 15));
        assert_eq!(states.first_open_offset(), None);
        // A marker for a producer without an open transaction leaves no entry.
        assert_eq!(states.complete_txn(&marker(2, 0), 16, ControlType::Abort, 16), None);
    }

    #[test]
    fn a_fencing_marker_bumps_the_epoch_so_the_zombie_is_refused() {
        let mut states = ProducerStates::default();
        states.record(&txn_batch(1, 0, 0, 1), 0);
        states.complete_txn(&marker(1, 1), 1, ControlType::Abort, 0);
        let zombie = txn_batch(1, 0, 1, 1);
        assert_eq!(states.check(&zombie).unwrap_err().code, ResponseError::InvalidProducerEpoch);
        // Marker-like batches without sequences are fenced by epoch too.
        assert_eq!(states.check(&marker(1, 0)).unwrap_err().code, ResponseError::InvalidProducerEpoch);
        assert_eq!(states.check(&txn_batch(1, 2, 0, 1)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        let near_end = batch(9, 0, i32::MAX - 1, 2);
        states.record(&near_end, 0);
        assert_eq!(states.check(&batch(9, 0, 0, 1)).unwrap(), SequenceCheck::Append);
    }
}
