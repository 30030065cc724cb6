//! The coordinator's log: `__consumer_offsets` records of both kinds Kafka
//! writes there — committed offsets ([`super::offsets`]) and group metadata
//! ([`super::group_record`]) — appended as ordinary record batches and read
//! back in order on start. A null value is a tombstone.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordSet, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use runnel_storage::batch::{check_stored_batch, validate_batches, BATCH_HEADER_LEN};
use runnel_storage::{BatchHeader, ControlType};

use super::group_record::{self, GroupMetadata};
use super::offsets::{self, CommittedOffset, OffsetKey};
use crate::partition::Partition;

/// How long a write may wait for its fsync before the client is told to retry.
pub const DURABILITY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq)]
pub enum CoordinatorRecord {
    Offset(OffsetKey, Option<CommittedOffset>),
    Group(String, Option<GroupMetadata>),
    /// A transactional offset commit (TxnOffsetCommit) of a producer: it
    /// counts once that producer's COMMIT marker follows.
    TxnOffset(i64, OffsetKey, CommittedOffset),
    /// A transaction marker (control batch) of a producer.
    TxnMarker { producer_id: i64, commit: bool },
}

impl CoordinatorRecord {
    /// Key and value of a record written as a plain record (markers are
    /// control batches, written by the partition: None).
    fn encode(&self) -> Option<(Bytes, Option<Bytes>)> {
        match self {
            CoordinatorRecord::Offset(key, value) => Some((offsets::encode_key(key), value.as_ref().map(offsets::encode_value))),
            CoordinatorRecord::Group(group, value) => Some((group_record::encode_key(group), value.as_ref().map(group_record::encode_value))),
            CoordinatorRecord::TxnOffset(_, key, value) => Some((offsets::encode_key(key), Some(offsets::encode_value(value)))),
            CoordinatorRecord::TxnMarker { .. } => None,
        }
    }

    /// Decodes a record by its key version; None for kinds Runnel does not
    /// keep (or cannot parse: skipped, never fatal).
    fn decode(key: Bytes, value: Option<Bytes>) -> Option<CoordinatorRecord> {
        let version = key.clone().try_get_i16().ok()?;
        match version {
            0 | 1 => {
                let key = offsets::decode_key(key)?;
                match value {
                    None => Some(CoordinatorRecord::Offset(key, None)),
                    Some(v) => Some(CoordinatorRecord::Offset(key, Some(offsets::decode_value(v)?))),
                }
            }
            2 => {
                let group = group_record::decode_key(key)?;
                match value {
                    None => Some(CoordinatorRecord::Group(group, None)),
                    Some(v) => Some(CoordinatorRecord::Group(group, Some(group_record::decode_value(v)?))),
                }
            }
            _ => None,
        }
    }
}

/// Appends records as one batch; returns the last offset, to wait on with
/// [`Partition::wait_durable`]. Synchronous, so callers holding a lock keep
/// their records in order.
pub fn append(partition: &Partition, entries: &[CoordinatorRecord]) -> Result<i64, ResponseError> {
    append_as(partition, entries, None)
}

/// Appends a producer's transactional offset commits as one transactional
/// batch (its producer id and epoch, no sequence): a fenced producer's
/// epoch is refused by the partition (INVALID_PRODUCER_EPOCH).
pub fn append_transactional(partition: &Partition, producer_id: i64, producer_epoch: i16, commits: &[(OffsetKey, CommittedOffset)]) -> Result<i64, ResponseError> {
    let entries: Vec<CoordinatorRecord> = commits.iter().map(|(k, v)| CoordinatorRecord::TxnOffset(producer_id, k.clone(), v.clone())).collect();
    append_as(partition, &entries, Some((producer_id, producer_epoch)))
}

fn append_as(partition: &Partition, entries: &[CoordinatorRecord], producer: Option<(i64, i16)>) -> Result<i64, ResponseError> {
    let keyed: Vec<(Bytes, Option<Bytes>)> = entries.iter().filter_map(|entry| entry.encode()).collect();
    append_keyed(partition, keyed, producer)
}

/// Appends keyed records (an internal topic's key and value bytes) as one
/// batch, of `producer` (transactional) or of no producer; returns the last
/// offset. Shared by the group and the transaction coordinators.
pub fn append_keyed(partition: &Partition, keyed: Vec<(Bytes, Option<Bytes>)>, producer: Option<(i64, i16)>) -> Result<i64, ResponseError> {
    let now = crate::now_ms();
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let records: Vec<Record> = keyed
        .into_iter()
        .enumerate()
        .map(|(i, (key, value))| {
            Record {
                transactional: producer.is_some(),
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // The encoder keeps records in one batch while offset - sequence is constant;
                // a transactional batch has no sequence (base sequence -1).
                sequence: if producer.is_some() { i as i32 - 1 } else { i as i32 },
                timestamp: now,
                key: Some(key),
                value,
                headers: IndexMap::new(),
            }
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None })
        .map_err(|e| {
            tracing::error!(error = %e, "encoding coordinator records failed");
            ResponseError::UnknownServerError
        })?;
    let validated = validate_batches(&buf, usize::MAX).map_err(|e| {
        tracing::error!(error = %e, "coordinator batch failed validation");
        ResponseError::UnknownServerError
    })?;
    let info = partition.append(&mut buf, &validated.headers, now).map_err(|e| {
        if e.code != ResponseError::InvalidProducerEpoch {
            tracing::warn!(error = %e, "appending to the coordinator log failed");
        }
        e.code
    })?;
    Ok(info.last_offset)
}

/// Appends records and waits until they are durable.
pub async fn append_durably(partition: &Partition, entries: &[CoordinatorRecord]) -> Result<(), ResponseError> {
    let last_offset = append(partition, entries)?;
    partition.wait_durable(last_offset, DURABILITY_TIMEOUT).await.map_err(|_| ResponseError::CoordinatorNotAvailable)
}

/// The live records of a replayed log: the latest value of every key, in
/// the order of their last write, without tombstones.
pub fn latest_values(records: Vec<CoordinatorRecord>) -> Vec<CoordinatorRecord> {
    #[derive(PartialEq, Eq, Hash)]
    enum Key {
        Offset(OffsetKey),
        Group(String),
    }
    let mut latest: std::collections::HashMap<Key, (usize, CoordinatorRecord)> = std::collections::HashMap::new();
    for (position, record) in records.into_iter().enumerate() {
        let key = match &record {
            CoordinatorRecord::Offset(k, _) => Key::Offset(k.clone()),
            CoordinatorRecord::Group(g, _) => Key::Group(g.clone()),
            // Callers resolve transactions first (see `resolve_transactions`).
            CoordinatorRecord::TxnOffset(..) | CoordinatorRecord::TxnMarker { .. } => continue,
        };
        latest.insert(key, (position, record));
    }
    let mut live: Vec<(usize, CoordinatorRecord)> = latest
        .into_values()
        .filter(|(_, r)| matches!(r, CoordinatorRecord::Offset(_, Some(_)) | CoordinatorRecord::Group(_, Some(_))))
        .collect();
    live.sort_by_key(|(position, _)| *position);
    live.into_iter().map(|(_, r)| r).collect()
}

/// Replaces transactional offset commits by plain ones at their COMMIT
/// marker and drops aborted ones. None while a transaction is still open
/// (its commits would be lost by rewriting the log without them).
pub fn resolve_transactions(records: Vec<CoordinatorRecord>) -> Option<Vec<CoordinatorRecord>> {
    let mut open: std::collections::HashMap<i64, Vec<(OffsetKey, CommittedOffset)>> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(records.len());
    for record in records {
        match record {
            CoordinatorRecord::TxnOffset(producer_id, key, value) => open.entry(producer_id).or_default().push((key, value)),
            CoordinatorRecord::TxnMarker { producer_id, commit } => {
                let commits = open.remove(&producer_id).unwrap_or_default();
                if commit {
                    out.extend(commits.into_iter().map(|(k, v)| CoordinatorRecord::Offset(k, Some(v))));
                }
            }
            other => out.push(other),
        }
    }
    open.is_empty().then_some(out)
}

/// A partition's coordinator records in log order, as far as they could be read.
pub struct Replay {
    pub records: Vec<CoordinatorRecord>,
    /// Why reading stopped before the log end (broken framing, an I/O
    /// error): the records after that point are missing from `records`.
    pub incomplete: Option<String>,
}

/// Reads a coordinator's partition (`__consumer_offsets`, `__transaction_state`)
/// batch by batch, in log order, from its log start to its log end — not the
/// high watermark: a new leader's log is what its followers will hold (Kafka's
/// coordinator loader reads to the log end too). `visit` gets every intact
/// batch with its decoded records. A batch that fails its CRC or does not
/// decode is skipped with an ERROR (a verbatim copy is kept beside the log, see
/// `runnel_storage::quarantine`); reading goes on with the next batch as long
/// as the batch framing holds. Answers why reading stopped early, if it did.
pub fn for_each_batch(partition: &Partition, mut visit: impl FnMut(&BatchHeader, &Bytes, Vec<RecordSet>)) -> Option<String> {
    let mut offset = partition.offsets().log_start_offset;
    loop {
        let read = partition
            .read_plan_to(offset, 1 << 20, true, true)
            .and_then(|(plan, _)| Ok((partition.read_planned(&plan)?, partition.log_end_offset())));
        let (bytes, log_end) = match read {
            Ok(read) => read,
            Err(e) => return Some(format!("reading from offset {offset}: {e}")),
        };
        if bytes.is_empty() {
            return None;
        }
        let mut pos = 0usize;
        let mut next = offset;
        while pos < bytes.len() {
            let header = match BatchHeader::parse(&bytes[pos..]) {
                Ok(h) if h.total_size() >= BATCH_HEADER_LEN && pos + h.total_size() <= bytes.len() => h,
                _ => return Some(format!("the batch framing is broken after offset {next}")),
            };
            let batch = bytes.slice(pos..pos + header.total_size());
            pos += header.total_size();
            // By the batch headers, so that a batch the cleaner emptied is stepped over.
            next = next.max(header.next_offset());
            let decoded = check_stored_batch(&batch)
                .map_err(|e| e.to_string())
                .and_then(|_| RecordBatchDecoder::decode_all(&mut batch.clone()).map_err(|e| e.to_string()));
            match decoded {
                Ok(sets) => visit(&header, &batch, sets),
                Err(e) => skip_corrupt_batch(partition, &header, &batch, &e),
            }
        }
        if next <= offset || next >= log_end {
            return None;
        }
        offset = next;
    }
}

/// Reads every `__consumer_offsets` record of a partition, in log order (see
/// [`for_each_batch`] for what happens to a corrupt batch).
pub fn read_all(partition: &Partition) -> Replay {
    let mut records = Vec::new();
    let incomplete = for_each_batch(partition, |header, batch, sets| {
        if header.is_control() {
            match runnel_storage::txn_index::control_type(batch) {
                Some(marker @ (ControlType::Commit | ControlType::Abort)) => {
                    records.push(CoordinatorRecord::TxnMarker { producer_id: header.producer_id, commit: marker == ControlType::Commit })
                }
                _ => {}
            }
            return;
        }
        for set in sets {
            for record in set.records {
                let Some(key) = record.key else { continue };
                match CoordinatorRecord::decode(key, record.value) {
                    Some(CoordinatorRecord::Offset(key, Some(value))) if header.is_transactional() => {
                        records.push(CoordinatorRecord::TxnOffset(header.producer_id, key, value))
                    }
                    Some(entry) => records.push(entry),
                    None => tracing::warn!(offset = record.offset, "skipping an unreadable __consumer_offsets record"),
                }
            }
        }
    });
    Replay { records, incomplete }
}

/// Logs a corrupt batch of a coordinator's log and keeps a verbatim copy of it
/// beside the log (it stays in the log until compaction or retention drops it).
fn skip_corrupt_batch(partition: &Partition, header: &BatchHeader, batch: &[u8], error: &str) {
    let dir = partition.with_log(|log| log.dir().to_path_buf());
    let name = format!("skipped-batch-{:020}.quarantine", header.base_offset);
    let copy = match runnel_storage::quarantine::keep_copy(&dir, &name, batch) {
        Ok(path) => path.display().to_string(),
        Err(e) => format!("(no copy kept: {e})"),
    };
    tracing::error!(
        topic = %partition.topic, partition = partition.index, base_offset = header.base_offset,
        last_offset = header.last_offset(), bytes = batch.len(), error = %error, copy = %copy,
        "CORRUPT BATCH in the coordinator log: skipped; the state it held (offsets, groups, transactions) falls back to its earlier values"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(group: &str, partition: i32, value: Option<i64>) -> CoordinatorRecord {
        let key = OffsetKey { group: group.into(), topic: "t".into(), partition };
        CoordinatorRecord::Offset(
            key,
            value.map(|offset| CommittedOffset { offset, leader_epoch: -1, metadata: String::new(), commit_timestamp: 0 }),
        )
    }

    #[test]
    fn latest_values_keep_the_last_write_per_key_and_drop_tombstones() {
        let log = vec![offset("a", 0, Some(1)), offset("a", 1, Some(5)), offset("a", 0, Some(2)), offset("b", 0, Some(9)), offset("a", 1, None)];
        assert_eq!(latest_values(log), vec![offset("a", 0, Some(2)), offset("b", 0, Some(9))]);
    }
}
