//! Fetch (key 1): whole record batches served from the stored bytes.
//!
//! Long polling: when fewer than `min_bytes` are available the request waits
//! up to `max_wait_ms`, woken by any append to one of its partitions (a watch
//! on the high watermark), not by a sleep loop. `max_bytes` bounds the
//! response and `partition_max_bytes` each partition, except that the first
//! batch of the first non-empty partition is always returned whole so a
//! consumer can make progress (KIP-74). No fetch sessions are created
//! (session id 0), which tells clients to send full fetches.
//!
//! Records are not read here: each partition gets a read plan (file,
//! position, length) and a placeholder in the response, and the network
//! layer sends the planned bytes from the page cache ([`crate::frame`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use runnel_storage::{ReadPlan, StorageError};
use tokio::time::Instant;
use uuid::Uuid;

use super::{Reply, RequestContext};
use crate::frame::placeholder;
use crate::partition::Partition;
use crate::Broker;

/// Kafka's read_committed isolation level.
const READ_COMMITTED: i8 = 1;

struct Target {
    partition_index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    partition: Result<Arc<Partition>, ResponseError>,
}

struct TopicTarget {
    name: TopicName,
    id: Uuid,
    partitions: Vec<Target>,
}

/// A fetch response whose record placeholders stand for `regions`, in order.
pub struct FetchReply {
    pub response: FetchResponse,
    pub regions: Vec<ReadPlan>,
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FetchRequest) -> Reply<FetchReply> {
    let by_id = ctx.version >= 13;
    let topics: Vec<TopicTarget> = req
        .topics
        .into_iter()
        .map(|t| {
            let topic = if by_id { broker.replicas.topic_by_id(&t.topic_id) } else { broker.replicas.topic(&t.topic.0) };
            let missing = if by_id { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
            let partitions = t
                .partitions
                .into_iter()
                .map(|p| Target {
                    partition_index: p.partition,
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                    partition: match &topic {
                        None => Err(missing),
                        Some(topic) => topic.partition(p.partition).ok_or(ResponseError::UnknownTopicOrPartition),
                    },
                })
                .collect();
            TopicTarget { name: t.topic, id: t.topic_id, partitions }
        })
        .collect();
    let max_bytes = if ctx.version >= 3 { req.max_bytes.max(0) as usize } else { usize::MAX };
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let read_committed = req.isolation_level == READ_COMMITTED;

    Reply::Later(Box::pin(async move {
        let deadline = Instant::now() + max_wait;
        loop {
            // Subscribe before reading so an append between the read and the wait is not missed.
            let mut watchers: Vec<_> = topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .filter_map(|p| p.partition.as_ref().ok().map(|p| p.watch_high_watermark()))
                .collect();
            for w in &mut watchers {
                w.borrow_and_update();
            }
            let (reply, bytes, has_error) = read_all(&topics, max_bytes, read_committed);
            let done = bytes >= min_bytes
                || has_error
                || watchers.is_empty()
                || Instant::now() >= deadline;
            if done {
                return reply;
            }
            let any_append = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = any_append => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        }
    }))
}

/// Plans a read of every partition once. Returns the reply, the record bytes
/// in it, and whether any partition carried an error (which ends a long poll).
fn read_all(topics: &[TopicTarget], max_bytes: usize, read_committed: bool) -> (FetchReply, usize, bool) {
    let mut regions = Vec::new();
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut has_error = false;
    let mut responses = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for target in &topic.partitions {
            let data = PartitionData::default()
                .with_partition_index(target.partition_index)
                .with_preferred_read_replica(BrokerId(-1))
                .with_aborted_transactions(if read_committed { Some(Vec::new()) } else { None });
            let partition = match &target.partition {
                Ok(p) => p,
                Err(code) => {
                    has_error = true;
                    partitions.push(
                        data.with_error_code(code.code())
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            };
            let limit = target.partition_max_bytes.min(remaining);
            let min_one_batch = total == 0;
            match partition.read_plan(target.fetch_offset, limit, min_one_batch).and_then(|(plan, offsets)| {
                let records = match placeholder(plan.len) {
                    Some(placeholder) if plan.file.is_some() => {
                        regions.push(plan);
                        placeholder
                    }
                    // Nothing to send, or one batch too large to splice: read it.
                    _ => partition.read_planned(&plan)?,
                };
                Ok((records, offsets))
            }) {
                Ok((records, offsets)) => {
                    total += records.len();
                    remaining = remaining.saturating_sub(records.len());
                    partitions.push(
                        data.with_high_watermark(offsets.high_watermark)
                            .with_last_stable_offset(offsets.high_watermark)
                            .with_log_start_offset(offsets.log_start_offset)
                            .with_records(Some(records)),
                    );
                }
                Err(e) => {
                    has_error = true;
                    let code = match &e {
                        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                        other => {
                            tracing::error!(topic = %topic.name.0, partition = target.partition_index, error = %other, "fetch read failed");
                            ResponseError::KafkaStorageError
                        }
                    };
                    let offsets = partition.offsets();
                    partitions.push(
                        data.with_error_code(code.code())
                            .with_high_watermark(offsets.high_watermark)
                            .with_last_stable_offset(offsets.high_watermark)
                            .with_log_start_offset(offsets.log_start_offset)
                            .with_records(Some(Bytes::new())),
                    );
                }
            }
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.name.clone())
                .with_topic_id(topic.id)
                .with_partitions(partitions),
        );
    }
    (FetchReply { response: FetchResponse::default().with_responses(responses), regions }, total, has_error)
}
