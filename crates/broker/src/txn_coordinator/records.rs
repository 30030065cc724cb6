//! `__transaction_state` records in Kafka's formats (`TransactionLogKey` /
//! `TransactionLogValue`), each prefixed by its version as Kafka writes them.
//!
//! Key v0: transactional id (string). Value v0: producer id i64, producer
//! epoch i16, timeout ms i32, state i8, partitions (nullable array of topic
//! string + partition ids array), last update ms i64, start ms i64. Value v1
//! (flexible: compact strings and arrays, tagged fields — KIP-890's previous
//! and next producer ids and client transaction version) is read; v0 is
//! written. A null value is a tombstone (an expired transactional id).

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

pub fn encode_value(meta: &TxnMetadata) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_i16(0);
    buf.put_i64(meta.producer_id);
    buf.put_i16(meta.producer_epoch);
    buf.put_i32(meta.timeout_ms);
    buf.put_i8(meta.state.code());
    if meta.state == TxnState::Empty {
        buf.put_i32(-1);
    } else {
        let mut topics: Vec<(&str, Vec<i32>)> = Vec::new();
        for (topic, partition) in &meta.partitions {
            match topics.last_mut() {
                Some((t, ps)) if *t == topic.as_str() => ps.push(*partition),
                _ => topics.push((topic, vec![*partition])),
            }
        }
        buf.put_i32(topics.len() as i32);
        for (topic, partitions) in topics {
            put_string(&mut buf, topic);
            buf.put_i32(partitions.len() as i32);
            for p in partitions {
                buf.put_i32(p);
            }
        }
    }
    buf.put_i64(meta.last_update_ms);
    buf.put_i64(meta.start_ms);
    buf.freeze()
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
    Some(TxnMetadata { producer_id, producer_epoch, timeout_ms, state, partitions, last_update_ms, start_ms })
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
        };
        assert_eq!(decode_value(encode_value(&meta)), Some(meta.clone()));
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        let bytes = encode_value(&meta);
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
    }
}
