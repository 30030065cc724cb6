//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3),
//! earliest local (-4), latest tiered (-5), or the first offset at or after
//! a timestamp.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{Reply, RequestContext};
use crate::error::ApiError;
use crate::partition::Partition;
use crate::Broker;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ListOffsetsRequest) -> Reply<ListOffsetsResponse> {
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.replicas.topic(&topic.name.0);
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
                    let partition = found.as_ref().and_then(|t| t.partition(p.partition_index));
                    let result = match partition {
                        None => Err(ApiError::bare(ResponseError::UnknownTopicOrPartition)),
                        Some(partition) => lookup(&partition, p.timestamp),
                    };
                    match result {
                        Ok((offset, timestamp, epoch)) => {
                            // leader_epoch exists from v4; setting it earlier makes the response unencodable.
                            response.with_offset(offset).with_timestamp(timestamp).with_leader_epoch(if ctx.version >= 4 { epoch } else { -1 })
                        }
                        Err(e) => response.with_error_code(e.code()).with_offset(-1).with_timestamp(-1).with_leader_epoch(-1),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    Reply::Now(ListOffsetsResponse::default().with_topics(topics))
}

/// (offset, timestamp, leader epoch) for one partition and target timestamp.
fn lookup(partition: &Partition, timestamp: i64) -> Result<(i64, i64, i32), ApiError> {
    let epoch = partition.leader_epoch();
    let offsets = partition.offsets();
    let storage = |e: runnel_storage::StorageError| ApiError::from(&e);
    match timestamp {
        LATEST => Ok((offsets.high_watermark, -1, epoch)),
        EARLIEST | EARLIEST_LOCAL => Ok((offsets.log_start_offset, -1, epoch)),
        LATEST_TIERED => Ok((-1, -1, -1)),
        MAX_TIMESTAMP => match partition.with_log(|log| log.max_timestamp_and_offset()).map_err(storage)? {
            Some((offset, ts)) => Ok((offset, ts, epoch)),
            None => Ok((-1, -1, -1)),
        },
        ts if ts >= 0 => match partition.with_log(|log| log.offset_for_timestamp(ts)).map_err(storage)? {
            Some((offset, found_ts)) => Ok((offset.max(offsets.log_start_offset), found_ts, epoch)),
            // No record at or after the timestamp: Kafka answers offset -1.
            None => Ok((-1, -1, -1)),
        },
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("invalid target timestamp {other}"))),
    }
}
