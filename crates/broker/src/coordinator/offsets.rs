//! Committed offsets as records of `__consumer_offsets`, in Kafka's formats:
//! key version 1 (group, topic, partition) and value version 3 (offset,
//! leader epoch, metadata, commit timestamp); a null value is a tombstone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OffsetKey {
    pub group: String,
    pub topic: String,
    pub partition: i32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp: i64,
}

pub(crate) fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(s.len().min(i16::MAX as usize) as i16);
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

pub(crate) fn get_string(buf: &mut Bytes) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = buf.get_i16();
    if len < 0 {
        return Some(String::new());
    }
    let len = len as usize;
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

pub fn encode_key(key: &OffsetKey) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_COMMIT_KEY_VERSION);
    put_string(&mut buf, &key.group);
    put_string(&mut buf, &key.topic);
    buf.put_i32(key.partition);
    buf.freeze()
}

pub fn encode_value(value: &CommittedOffset) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(OFFSET_COMMIT_VALUE_VERSION);
    buf.put_i64(value.offset);
    buf.put_i32(value.leader_epoch);
    put_string(&mut buf, &value.metadata);
    buf.put_i64(value.commit_timestamp);
    buf.freeze()
}

/// Decodes an offset-commit key; None for other record kinds (e.g. group metadata, key version 2).
pub fn decode_key(mut buf: Bytes) -> Option<OffsetKey> {
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if version != 0 && version != 1 {
        return None;
    }
    let group = get_string(&mut buf)?;
    let topic = get_string(&mut buf)?;
    if buf.remaining() < 4 {
        return None;
    }
    Some(OffsetKey { group, topic, partition: buf.get_i32() })
}

pub fn decode_value(mut buf: Bytes) -> Option<CommittedOffset> {
    if buf.remaining() < 10 {
        return None;
    }
    let version = buf.get_i16();
    let offset = buf.get_i64();
    let leader_epoch = if version >= 3 {
        if buf.remaining() < 4 {
            return None;
        }
        buf.get_i32()
    } else {
        -1
    };
    let metadata = get_string(&mut buf)?;
    let commit_timestamp = if buf.remaining() >= 8 { buf.get_i64() } else { -1 };
    Some(CommittedOffset { offset, leader_epoch, metadata, commit_timestamp })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_and_value_round_trip() {
        let key = OffsetKey { group: "g".into(), topic: "t".into(), partition: 3 };
        let value = CommittedOffset { offset: 42, leader_epoch: 7, metadata: "m".into(), commit_timestamp: 99 };
        assert_eq!(decode_key(encode_key(&key)), Some(key));
        assert_eq!(decode_value(encode_value(&value)), Some(value));
        assert_eq!(decode_key(Bytes::from_static(&[0, 2, 0, 1, b'g'])), None, "group metadata keys are skipped");
    }
}
