//! Group metadata as `__consumer_offsets` records, in Kafka's formats: key
//! version 2 (the group id) and value version 3 (protocol, generation,
//! leader, state timestamp, and each member with its subscription and
//! assignment). Persisting it lets a restarted broker keep stable groups
//! stable: members resume heartbeating without a rebalance.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::offsets::{get_string, put_string};

const GROUP_METADATA_KEY_VERSION: i16 = 2;
const GROUP_METADATA_VALUE_VERSION: i16 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadata {
    /// Empty when the group has none (an empty group).
    pub protocol_type: String,
    pub generation: i32,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub current_state_timestamp: i64,
    pub members: Vec<MemberMetadata>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadata {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    pub subscription: Bytes,
    pub assignment: Bytes,
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn get_nullable_string(buf: &mut Bytes) -> Option<Option<String>> {
    if buf.remaining() < 2 {
        return None;
    }
    if i16::from_be_bytes([buf[0], buf[1]]) < 0 {
        buf.advance(2);
        return Some(None);
    }
    get_string(buf).map(Some)
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(b.len() as i32);
    buf.put_slice(b);
}

fn get_bytes(buf: &mut Bytes) -> Option<Bytes> {
    let len = buf.try_get_i32().ok()?;
    if len < 0 {
        return Some(Bytes::new());
    }
    let len = len as usize;
    (buf.remaining() >= len).then(|| buf.split_to(len))
}

pub fn encode_key(group: &str) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_KEY_VERSION);
    put_string(&mut buf, group);
    buf.freeze()
}

pub fn decode_key(mut buf: Bytes) -> Option<String> {
    if buf.try_get_i16().ok()? != GROUP_METADATA_KEY_VERSION {
        return None;
    }
    get_string(&mut buf)
}

pub fn encode_value(value: &GroupMetadata) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(GROUP_METADATA_VALUE_VERSION);
    put_string(&mut buf, &value.protocol_type);
    buf.put_i32(value.generation);
    put_nullable_string(&mut buf, value.protocol_name.as_deref());
    put_nullable_string(&mut buf, value.leader.as_deref());
    buf.put_i64(value.current_state_timestamp);
    buf.put_i32(value.members.len() as i32);
    for m in &value.members {
        put_string(&mut buf, &m.member_id);
        put_nullable_string(&mut buf, m.instance_id.as_deref());
        put_string(&mut buf, &m.client_id);
        put_string(&mut buf, &m.client_host);
        buf.put_i32(m.rebalance_timeout_ms);
        buf.put_i32(m.session_timeout_ms);
        put_bytes(&mut buf, &m.subscription);
        put_bytes(&mut buf, &m.assignment);
    }
    buf.freeze()
}

/// Decodes value versions 0–3 (the non-flexible ones); None when malformed.
pub fn decode_value(mut buf: Bytes) -> Option<GroupMetadata> {
    let version = buf.try_get_i16().ok()?;
    if !(0..=3).contains(&version) {
        return None;
    }
    let protocol_type = get_string(&mut buf)?;
    let generation = buf.try_get_i32().ok()?;
    let protocol_name = get_nullable_string(&mut buf)?;
    let leader = get_nullable_string(&mut buf)?;
    let current_state_timestamp = if version >= 2 { buf.try_get_i64().ok()? } else { -1 };
    let count = buf.try_get_i32().ok()?.max(0) as usize;
    // Every member takes at least 20 bytes: bound the count by what is there.
    let mut members = Vec::with_capacity(count.min(buf.remaining() / 20));
    for _ in 0..count {
        let member_id = get_string(&mut buf)?;
        let instance_id = if version >= 3 { get_nullable_string(&mut buf)? } else { None };
        let client_id = get_string(&mut buf)?;
        let client_host = get_string(&mut buf)?;
        let rebalance_timeout_ms = if version >= 1 { buf.try_get_i32().ok()? } else { -1 };
        let session_timeout_ms = buf.try_get_i32().ok()?;
        let rebalance_timeout_ms = if rebalance_timeout_ms < 0 { session_timeout_ms } else { rebalance_timeout_ms };
        let subscription = get_bytes(&mut buf)?;
        let assignment = get_bytes(&mut buf)?;
        members.push(MemberMetadata {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms,
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Some(GroupMetadata { protocol_type, generation, protocol_name, leader, current_state_timestamp, members })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_metadata_round_trips_and_truncation_is_refused() {
        let value = GroupMetadata {
            protocol_type: "consumer".into(),
            generation: 7,
            protocol_name: Some("range".into()),
            leader: Some("m-1".into()),
            current_state_timestamp: 1234,
            members: vec![MemberMetadata {
                member_id: "m-1".into(),
                instance_id: Some("i-1".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                rebalance_timeout_ms: 300_000,
                session_timeout_ms: 45_000,
                subscription: Bytes::from_static(b"sub"),
                assignment: Bytes::from_static(b"asg"),
            }],
        };
        let encoded = encode_value(&value);
        assert_eq!(decode_value(encoded.clone()), Some(value));
        assert_eq!(decode_value(encoded.slice(..encoded.len() - 1)), None);
        assert_eq!(decode_key(encode_key("g")), Some("g".to_string()));
        let mut forged = BytesMut::new();
        forged.put_i16(3);
        put_string(&mut forged, "consumer");
        forged.put_i32(1);
        forged.put_i16(-1);
        forged.put_i16(-1);
        forged.put_i64(0);
        forged.put_i32(i32::MAX);
        assert_eq!(decode_value(forged.freeze()), None, "a forged member count allocates nothing and fails");
    }
}
