//! DeleteRecords (key 21): moves partitions' log start offsets forward
//! (-1 = up to the high watermark); whole segments below it are deleted.
//! Only the leader takes it; followers follow the leader's log start from
//! their fetch answers (see `replica_fetcher`).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{DeleteRecordsPartitionResult, DeleteRecordsTopicResult};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteRecordsRequest) -> Reply<DeleteRecordsResponse> {
    let broker = broker.clone();
    let authz = Authz::new(&broker, ctx);
    let topics = tokio::task::spawn_blocking(move || {
        req.topics
            .into_iter()
            .map(|t| {
                let topic = broker.replicas.topic(&t.name.0);
                let deletable = authz.topic(operation::DELETE, &t.name.0);
                let partitions = t
                    .partitions
                    .into_iter()
                    .map(|p| {
                        let result = DeleteRecordsPartitionResult::default().with_partition_index(p.partition_index);
                        let outcome = match topic.as_ref().and_then(|t| t.partition(p.partition_index)) {
                            _ if !deletable => Err(ApiError::bare(ResponseError::TopicAuthorizationFailed)),
                            None => Err(ApiError::bare(ResponseError::UnknownTopicOrPartition)),
                            Some(_) if topic.as_ref().is_some_and(|t| t.internal) => Err(ApiError::new(
                                ResponseError::InvalidTopicException,
                                format!("Cannot delete records of internal topic {}", t.name.0),
                            )),
                            Some(partition) if !partition.is_leader() => Err(ApiError::new(
                                ResponseError::NotLeaderOrFollower,
                                format!("this broker does not lead {}-{}", t.name.0, p.partition_index),
                            )),
                            Some(partition) => partition.with_log(|log| {
                                // Never past what every in-sync replica has (Kafka: the high watermark).
                                let high_watermark = partition.high_watermark().min(log.log_end_offset());
                                let target = if p.offset == -1 { high_watermark } else { p.offset };
                                if target < 0 || target > high_watermark {
                                    return Err(ApiError::new(ResponseError::OffsetOutOfRange, format!("offset {target} is above the high watermark {high_watermark}")));
                                }
                                log.delete_records_before(target).map_err(|e| ApiError::from(&e))
                            }),
                        };
                        match outcome {
                            Ok(low) => result.with_low_watermark(low),
                            Err(e) => result.with_low_watermark(-1).with_error_code(e.code()),
                        }
                    })
                    .collect();
                DeleteRecordsTopicResult::default().with_name(t.name).with_partitions(partitions)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Reply::Now(DeleteRecordsResponse::default().with_topics(topics))
}
