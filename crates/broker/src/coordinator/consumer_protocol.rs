//! The consumer protocol embedded in classic JoinGroup/SyncGroup bytes
//! (Kafka's `ConsumerProtocol`): a version (i16) followed by a
//! ConsumerProtocolSubscription or ConsumerProtocolAssignment. The group
//! coordinator reads them when a classic member lives in a consumer-protocol
//! group (KIP-848 online migration) and writes the assignment it hands out.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedTopic;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, Message, StrBytes};

use super::assignor::Assignment;
use super::consumer_group::TopicsView;

/// The version prefix, clamped to what we decode: newer versions only add
/// fields, so they are read as the highest known one (as Kafka does).
pub fn version_of(bytes: &[u8]) -> Result<i16, String> {
    let prefix = bytes.get(..2).ok_or_else(|| "the embedded consumer protocol has no version".to_string())?;
    let version = i16::from_be_bytes([prefix[0], prefix[1]]);
    if version < 0 {
        return Err(format!("the embedded consumer protocol has version {version}"));
    }
    Ok(version.min(ConsumerProtocolSubscription::VERSIONS.max))
}

/// What a classic member's JoinGroup metadata says, with topic ids resolved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subscription {
    pub topics: Vec<String>,
    /// Partitions the member still owns (cooperative clients; v1+), by topic id.
    pub owned: Assignment,
    pub rack_id: Option<String>,
}

pub fn decode_subscription(bytes: &[u8], topics: &TopicsView) -> Result<Subscription, String> {
    let version = version_of(bytes)?;
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    let decoded = ConsumerProtocolSubscription::decode(&mut body, version)
        .map_err(|e| format!("malformed consumer protocol subscription (v{version}): {e}"))?;
    let mut owned = Assignment::new();
    for tp in decoded.owned_partitions {
        // Partitions of a topic that no longer exists are owned by nobody.
        if let Some(info) = topics.get(tp.topic.0.as_str()) {
            owned.entry(info.id).or_default().extend(tp.partitions);
        }
    }
    Ok(Subscription {
        topics: decoded.topics.into_iter().map(|t| t.to_string()).collect(),
        owned,
        rack_id: decoded.rack_id.map(|r| r.to_string()),
    })
}

/// A classic group member's last assignment, by topic id. Empty bytes (a
/// member that joined but never synced) are an empty assignment. Custom
/// assignor user data would be lost in a conversion, so it is an error.
pub fn decode_assignment(bytes: &[u8], topics: &TopicsView) -> Result<Assignment, String> {
    let mut out = Assignment::new();
    if bytes.is_empty() {
        return Ok(out);
    }
    let version = version_of(bytes)?;
    let mut body = Bytes::copy_from_slice(&bytes[2..]);
    let decoded = ConsumerProtocolAssignment::decode(&mut body, version)
        .map_err(|e| format!("malformed consumer protocol assignment (v{version}): {e}"))?;
    if decoded.user_data.as_ref().is_some_and(|d| d.has_remaining()) {
        return Err("the assignment carries user data from a custom assignor, which would be lost".into());
    }
    for tp in decoded.assigned_partitions {
        if let Some(info) = topics.get(tp.topic.0.as_str()) {
            out.entry(info.id).or_default().extend(tp.partitions);
        }
    }
    Ok(out)
}

/// Encodes partitions (by topic id) as a classic member's SyncGroup
/// assignment, in the version of its subscription metadata.
pub fn encode_assignment(assignment: &Assignment, topics: &TopicsView, version: i16) -> Bytes {
    let names: std::collections::BTreeMap<_, _> = topics.iter().map(|(name, info)| (info.id, name.as_str())).collect();
    let assigned = assignment
        .iter()
        .filter(|(_, partitions)| !partitions.is_empty())
        .filter_map(|(id, partitions)| {
            let name = names.get(id)?;
            Some(
                AssignedTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partitions(partitions.iter().copied().collect()),
            )
        })
        .collect();
    let body = ConsumerProtocolAssignment::default().with_assigned_partitions(assigned);
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    if let Err(e) = body.encode(&mut buf, version) {
        // Every field we set exists in every version; log rather than panic.
        tracing::error!(error = %e, version, "encoding a consumer protocol assignment failed");
        return Bytes::new();
    }
    buf.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::assignor::TopicInfo;
    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedTopic;

    fn view() -> (TopicsView, uuid::Uuid) {
        let id = uuid::Uuid::new_v4();
        ([("t".to_string(), TopicInfo { id, partitions: 4 })].into(), id)
    }

    #[test]
    fn subscriptions_of_every_version_decode_and_newer_versions_read_as_the_highest_known() {
        let (topics, id) = view();
        for version in [0i16, 1, 3, 7] {
            let body = ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("t"), StrBytes::from_static_str("gone")])
                .with_owned_partitions(vec![OwnedTopic::default().with_topic(TopicName(StrBytes::from_static_str("t"))).with_partitions(vec![1, 3])])
                .with_rack_id(Some(StrBytes::from_static_str("r1")));
            let mut buf = BytesMut::new();
            buf.put_i16(version);
            body.encode(&mut buf, version.min(3)).unwrap();
            let decoded = decode_subscription(&buf, &topics).unwrap();
            assert_eq!(decoded.topics, vec!["t".to_string(), "gone".to_string()]);
            if version >= 1 {
                assert_eq!(decoded.owned[&id], [1, 3].into());
            } else {
                assert!(decoded.owned.is_empty(), "v0 has no owned partitions");
            }
            assert_eq!(decoded.rack_id.is_some(), version >= 3);
        }
        assert!(decode_subscription(&[0], &topics).is_err());
        assert!(decode_subscription(&[0, 0, 0, 0, 0, 9], &topics).is_err(), "a count without the topics");
        assert!(decode_subscription(&[0xff, 0xff], &topics).is_err());
    }

    #[test]
    fn assignments_round_trip_and_user_data_is_refused() {
        let (topics, id) = view();
        let assignment: Assignment = [(id, [0, 2].into())].into();
        for version in [0i16, 3] {
            let bytes = encode_assignment(&assignment, &topics, version);
            assert_eq!(&bytes[..2], &version.to_be_bytes());
            assert_eq!(decode_assignment(&bytes, &topics).unwrap(), assignment);
        }
        assert!(decode_assignment(&[], &topics).unwrap().is_empty());
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        ConsumerProtocolAssignment::default().with_user_data(Some(Bytes::from_static(b"sticky"))).encode(&mut buf, 0).unwrap();
        assert!(decode_assignment(&buf, &topics).is_err());
    }
}
