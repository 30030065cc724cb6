//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3),
//! earliest local (-4), latest tiered (-5), or the first offset at or after
//! a timestamp.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::error::ApiError;
use crate::partition::Partition;
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// The response's leader epoch exists from v4; older versions must leave it unset (-1) or the answer cannot be encoded.
const FIRST_VERSION_WITH_LEADER_EPOCH: i16 = 4;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ListOffsetsRequest) -> Reply<ListOffsetsResponse> {
    let has_leader_epoch = ctx.version >= FIRST_VERSION_WITH_LEADER_EPOCH;
    // read_committed (isolation level 1, v2+): offsets end at the last stable offset.
    let read_committed = req.isolation_level == 1;
    // A partition named twice is answered once, with INVALID_REQUEST (Kafka).
    let mut occurrences: HashMap<(StrBytes, i32), usize> = HashMap::new();
    for topic in &req.topics {
        for p in &topic.partitions {
            *occurrences.entry((topic.name.0.clone(), p.partition_index)).or_default() += 1;
        }
    }
    let mut answered_duplicates = HashSet::new();
    let authz = Authz::new(broker, ctx);
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.replicas.topic(&topic.name.0);
            let described = authz.topic(operation::DESCRIBE, &topic.name.0);
            let partitions = topic
                .partitions
                .into_iter()
                .filter_map(|p| {
                    let key = (topic.name.0.clone(), p.partition_index);
                    let duplicate = occurrences.get(&key).copied().unwrap_or(0) > 1;
                    if duplicate && !answered_duplicates.insert(key) {
                        return None;
                    }
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let partition = found.as_ref().and_then(|t| t.partition(p.partition_index));
                    let result = match partition {
                        _ if !described => Err(ApiError::bare(ResponseError::TopicAuthorizationFailed)),
                        _ if duplicate => Err(ApiError::bare(ResponseError::InvalidRequest)),
                        None => Err(ApiError::bare(ResponseError::UnknownTopicOrPartition)),
                        Some(partition) => lookup(&partition, p.timestamp, read_committed),
                    };
                    Some(match result {
                        Ok((offset, timestamp, epoch)) => response
                            .with_offset(offset)
                            .with_timestamp(timestamp)
                            .with_leader_epoch(if has_leader_epoch { epoch } else { -1 }),
                        Err(e) => response.with_error_code(e.code()).with_offset(-1).with_timestamp(-1).with_leader_epoch(-1),
                    })
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    Reply::Now(ListOffsetsResponse::default().with_topics(topics))
}

/// (offset, timestamp, leader epoch) for one partition and target timestamp.
/// Under read_committed the latest offset is the last stable offset, and a
/// timestamp found at or past it counts as not found (Kafka's rule).
fn lookup(partition: &Partition, timestamp: i64, read_committed: bool) -> Result<(i64, i64, i32), ApiError> {
    let epoch = partition.leader_epoch();
    let offsets = partition.offsets();
    let storage = |e: runnel_storage::StorageError| ApiError::from(&e);
    let fetchable_end = if read_committed { offsets.last_stable_offset } else { i64::MAX };
    match timestamp {
        LATEST if read_committed => Ok((offsets.last_stable_offset, -1, epoch)),
        LATEST => Ok((offsets.high_watermark, -1, epoch)),
        EARLIEST | EARLIEST_LOCAL => Ok((offsets.log_start_offset, -1, epoch)),
        LATEST_TIERED => Ok((-1, -1, -1)),
        MAX_TIMESTAMP => match partition.with_log(|log| log.max_timestamp_and_offset()).map_err(storage)? {
            Some((offset, ts)) => Ok((offset, ts, epoch)),
            None => Ok((-1, -1, -1)),
        },
        ts if ts >= 0 => match partition.with_log(|log| log.offset_for_timestamp(ts)).map_err(storage)? {
            Some((offset, _)) if offset >= fetchable_end => Ok((-1, -1, -1)),
            Some((offset, found_ts)) => Ok((offset.max(offsets.log_start_offset), found_ts, epoch)),
            // No record at or after the timestamp: Kafka answers offset -1.
            None => Ok((-1, -1, -1)),
        },
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("invalid target timestamp {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::Encodable;

    /// The reason for FIRST_VERSION_WITH_LEADER_EPOCH: kafka-protocol refuses
    /// a leader epoch below v4, so the handler must leave it unset there.
    #[test]
    fn leader_epoch_is_encodable_only_from_v4() {
        let with_epoch = ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
            .with_partitions(vec![ListOffsetsPartitionResponse::default().with_offset(3).with_timestamp(-1).with_leader_epoch(0)])]);
        for version in 1..FIRST_VERSION_WITH_LEADER_EPOCH {
            assert!(with_epoch.encode(&mut bytes::BytesMut::new(), version).is_err(), "v{version}");
        }
        for version in FIRST_VERSION_WITH_LEADER_EPOCH..=10 {
            assert!(with_epoch.encode(&mut bytes::BytesMut::new(), version).is_ok(), "v{version}");
        }
    }
}
