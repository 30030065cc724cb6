//! `__transaction_state` records in Kafka's formats (`TransactionLogKey` /
//! `TransactionLogValue`), each prefixed by its version as Kafka writes them.
//!
//! Key v0: transactional id (string). Value v0: producer id i64, producer
//! epoch i16, timeout ms i32, state i8, partitions (nullable array of topic
//! string + partition ids array), last update ms i64, start ms i64. Value v1
//! (flexible: compact strings and arrays, tagged fields — KIP-890's previous
//! (tag 0) and next (tag 1) producer ids and client transaction version (tag
//! 2)) is written when `transaction.version` ≥ 1, as Kafka does; both are
//! read. A null value is a tombstone (an expired transactional id).

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Kafka's `TransactionState` (the code is the record's state byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    Dead,
    PrepareEpochFence,
}

impl TxnState {
    pub fn code(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<TxnState> {
        Some(match code {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// The name DescribeTransactions / ListTransactions use (Kafka's).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..=7).filter_map(TxnState::from_code).find(|s| s.name() == name)
    }
}

/// One transactional id's state, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<(String, i32)>,
    pub last_update_ms: i64,
    /// When the current transaction started (-1: none).
    pub start_ms: i64,
    /// The producer id before the last one (-1: none): a TV2 EndTxn retried
    /// after its epoch overflowed into a new producer id names it.
    pub previous_producer_id: i64,
    /// The producer id a TV2 commit/abort whose epoch overflowed moves to
    /// once complete (-1: none).
    pub next_producer_id: i64,
    /// The transaction version of the client's last transition (KIP-890):
    /// 2 bumps the epoch at every EndTxn.
    pub client_transaction_version: i16,
}

impl TxnMetadata {
    /// A new transactional id's state before its first InitProducerId completes.
    pub fn new(producer_id: i64, timeout_ms: i32, now_ms: i64) -> TxnMetadata {
        TxnMetadata {
            producer_id,
            producer_epoch: 0,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            last_update_ms: now_ms,
            start_ms: -1,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        }
    }
}

pub fn encode_key(transactional_id: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(4 + transactional_id.len());
    buf.put_i16(0);
    put_string(&mut buf, transactional_id);
    buf.freeze()
}

pub fn decode_key(mut key: Bytes) -> Option<String> {
    if key.try_get_i16().ok()? != 0 {
        return None;
    }
    get_string(&mut key)
}

/// A value in Kafka's v0 form, or v1 (flexible, with KIP-890's tagged fields).
pub fn encode_value(meta: &TxnMetadata, flexible: bool) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(if flexible { 1 } else { 0 });
    buf.put_i64(meta.producer_id);
    buf.put_i16(meta.producer_epoch);
    buf.put_i32(meta.timeout_ms);
    buf.put_i8(meta.state.code());
    if meta.state == TxnState::Empty {
        if flexible {
            put_unsigned_varint(&mut buf, 0);
        } else {
            buf.put_i32(-1);
        }
    } else {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (topic, partition) in &meta.partitions {
            match topics.last_mut() {
                Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
                _ => topics.push((topic, vec![*partition])),
            }
        }
        put_array_len(&mut buf, topics.len(), flexible);
        for (topic, partitions) in topics {
            if flexible {
                put_unsigned_varint(&mut buf, topic.len() as u64 + 1);
                buf.put_slice(topic.as_bytes());
            } else {
                put_string(&mut buf, topic);
            }
            put_array_len(&mut buf, partitions.len(), flexible);
            for p in partitions {
                buf.put_i32(p);
            }
            if flexible {
                put_unsigned_varint(&mut buf, 0);
            }
        }
    }
    buf.put_i64(meta.last_update_ms);
    buf.put_i64(meta.start_ms);
    if flexible {
        // Tagged fields at their defaults are left out, as Kafka's generated code does.
        let mut tagged: Vec<(u64, Vec<u8>)> = Vec::new();
        if meta.previous_producer_id != -1 {
            tagged.push((0, meta.previous_producer_id.to_be_bytes().to_vec()));
        }
        if meta.next_producer_id != -1 {
            tagged.push((1, meta.next_producer_id.to_be_bytes().to_vec()));
        }
        if meta.client_transaction_version != 0 {
            tagged.push((2, meta.client_transaction_version.to_be_bytes().to_vec()));
        }
        put_unsigned_varint(&mut buf, tagged.len() as u64);
        for (tag, bytes) in tagged {
            put_unsigned_varint(&mut buf, tag);
            put_unsigned_varint(&mut buf, bytes.len() as u64);
            buf.put_slice(&bytes);
        }
    }
    buf.freeze()
}

fn put_unsigned_varint(buf: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        buf.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

/// An array's length in the v0 form (i32) or the compact one (varint of length + 1).
fn put_array_len(buf: &mut BytesMut, len: usize, flexible: bool) {
    if flexible {
        put_unsigned_varint(buf, len as u64 + 1);
    } else {
        buf.put_i32(len as i32);
    }
}

pub fn decode_value(mut value: Bytes) -> Option<TxnMetadata> {
    let version = value.try_get_i16().ok()?;
    let flexible = match version {
        0 => false,
        1 => true,
        _ => return None,
    };
    let producer_id = value.try_get_i64().ok()?;
    let producer_epoch = value.try_get_i16().ok()?;
    let timeout_ms = value.try_get_i32().ok()?;
    let state = TxnState::from_code(value.try_get_i8().ok()?)?;
    let mut partitions = BTreeSet::new();
    let topics = get_array_len(&mut value, flexible)?;
    for _ in 0..topics.unwrap_or(0) {
        let topic = if flexible { get_compact_string(&mut value)? } else { get_string(&mut value)? };
        let count = get_array_len(&mut value, flexible)?.unwrap_or(0);
        for _ in 0..count {
            partitions.insert((topic.clone(), value.try_get_i32().ok()?));
        }
        if flexible {
            skip_tagged_fields(&mut value)?;
        }
    }
    let last_update_ms = value.try_get_i64().ok()?;
    let start_ms = value.try_get_i64().ok()?;
    let mut meta = TxnMetadata { partitions, state, last_update_ms, start_ms, ..TxnMetadata::new(producer_id, timeout_ms, last_update_ms) };
    meta.producer_epoch = producer_epoch;
    if flexible {
        read_tagged_fields(&mut value, &mut meta)?;
    }
    Some(meta)
}

/// The value's KIP-890 tagged fields; unknown tags are skipped.
fn read_tagged_fields(buf: &mut Bytes, meta: &mut TxnMetadata) -> Option<()> {
    // A v1 value without its tagged-field count (written by no Kafka) reads as none.
    if !buf.has_remaining() {
        return Some(());
    }
    let count = get_unsigned_varint(buf)?;
    for _ in 0..count {
        let tag = get_unsigned_varint(buf)?;
        let size = usize::try_from(get_unsigned_varint(buf)?).ok()?;
        if buf.remaining() < size {
            return None;
        }
        let mut field = buf.split_to(size);
        match tag {
            0 => meta.previous_producer_id = field.try_get_i64().ok()?,
            1 => meta.next_producer_id = field.try_get_i64().ok()?,
            2 => meta.client_transaction_version = field.try_get_i16().ok()?,
            _ => {}
        }
    }
    Some(())
}

fn put_string(buf: &mut BytesMut, s: &str) {
    let len = s.len().min(i16::MAX as usize);
    buf.put_i16(len as i16);
    buf.put_slice(&s.as_bytes()[..len]);
}

fn get_string(buf: &mut Bytes) -> Option<String> {
    let len = usize::try_from(buf.try_get_i16().ok()?).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

fn get_unsigned_varint(buf: &mut Bytes) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = buf.try_get_u8().ok()?;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn get_compact_string(buf: &mut Bytes) -> Option<String> {
    let len = usize::try_from(get_unsigned_varint(buf)?.checked_sub(1)?).ok()?;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

/// An array's length (None: a null array), in the v0 or the compact form.
fn get_array_len(buf: &mut Bytes, flexible: bool) -> Option<Option<usize>> {
    if flexible {
        let raw = get_unsigned_varint(buf)?;
        return Some(raw.checked_sub(1).map(|n| n as usize));
    }
    let n = buf.try_get_i32().ok()?;
    Some(usize::try_from(n).ok())
}

fn skip_tagged_fields(buf: &mut Bytes) -> Option<()> {
    let count = get_unsigned_varint(buf)?;
    for _ in 0..count {
        get_unsigned_varint(buf)?;
        let size = usize::try_from(get_unsigned_varint(buf)?).ok()?;
        if buf.remaining() < size {
            return None;
        }
        buf.advance(size);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_and_empty_writes_null_partitions() {
        let mut meta = TxnMetadata {
            producer_id: 1000,
            producer_epoch: 3,
            timeout_ms: 60_000,
            state: TxnState::Ongoing,
            partitions: [("a".to_string(), 0), ("a".to_string(), 2), ("b".to_string(), 1)].into_iter().collect(),
            last_update_ms: 5,
            start_ms: 4,
            previous_producer_id: -1,
            next_producer_id: -1,
            client_transaction_version: 0,
        };
        assert_eq!(decode_value(encode_value(&meta, false)), Some(meta.clone()));
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        let bytes = encode_value(&meta, false);
        // version, producer id, epoch, timeout, state, then a null array (-1).
        assert_eq!(&bytes[17..21], &(-1i32).to_be_bytes());
        assert_eq!(decode_value(bytes), Some(meta));
        assert_eq!(decode_key(encode_key("my-txn")), Some("my-txn".to_string()));
    }

    #[test]
    fn flexible_v1_values_are_read() {
        // v1 as Kafka 4 writes it: compact arrays/strings and tagged fields.
        let mut buf = BytesMut::new();
        buf.put_i16(1);
        buf.put_i64(7);
        buf.put_i16(2);
        buf.put_i32(30_000);
        buf.put_i8(TxnState::Ongoing.code());
        buf.put_u8(2); // one topic
        buf.put_u8(2); // "t"
        buf.put_slice(b"t");
        buf.put_u8(2); // one partition
        buf.put_i32(5);
        buf.put_u8(0); // the topic's tagged fields
        buf.put_i64(9);
        buf.put_i64(8);
        let meta = decode_value(buf.freeze()).expect("decodes");
        assert_eq!((meta.producer_id, meta.producer_epoch, meta.state), (7, 2, TxnState::Ongoing));
        assert!(meta.partitions.contains(&("t".to_string(), 5)));
        assert_eq!((meta.last_update_ms, meta.start_ms), (9, 8));
        assert_eq!((meta.previous_producer_id, meta.next_producer_id, meta.client_transaction_version), (-1, -1, 0));
    }

    #[test]
    fn flexible_v1_values_round_trip_with_kip_890_tagged_fields() {
        let meta = TxnMetadata {
            producer_id: 1001,
            producer_epoch: 0,
            timeout_ms: 60_000,
            state: TxnState::PrepareCommit,
            partitions: [("orders".to_string(), 0), ("orders".to_string(), 3)].into_iter().collect(),
            last_update_ms: 15,
            start_ms: 14,
            previous_producer_id: 1000,
            next_producer_id: 1002,
            client_transaction_version: 2,
        };
        let bytes = encode_value(&meta, true);
        assert_eq!(&bytes[..2], &1i16.to_be_bytes(), "written as v1");
        // Tagged fields come last: 3 of them, tag 2 (2 bytes) = client transaction version 2.
        assert_eq!(&bytes[bytes.len() - 4..], &[2, 2, 0, 2]);
        assert_eq!(decode_value(bytes), Some(meta.clone()));
        let empty = TxnMetadata { state: TxnState::Empty, partitions: BTreeSet::new(), previous_producer_id: -1, next_producer_id: -1, client_transaction_version: 0, ..meta };
        let bytes = encode_value(&empty, true);
        assert_eq!(*bytes.last().expect("non-empty"), 0, "no tagged fields at their defaults");
        assert_eq!(decode_value(bytes), Some(empty));
    }
}
