//! OffsetCommit (key 8): checks membership and generation, then records the
//! offsets durably in `__consumer_offsets` before answering.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::offsets::{CommittedOffset, OffsetKey};
use crate::coordinator::OFFSET_METADATA_MAX_BYTES;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: OffsetCommitRequest) -> Reply<OffsetCommitResponse> {
    let group_id = req.group_id.0.to_string();
    // Kafka accepts commits for the empty group id (backward compatibility).
    // Kafka: READ on the group (every partition refused without it), then READ on each topic.
    let authz = Authz::new(broker, ctx);
    let group_error = if !authz.group(operation::READ, &group_id) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        broker.groups.validate_commit(&group_id, &req.member_id, req.group_instance_id.as_deref(), req.generation_id_or_member_epoch, ctx.version, false).err()
    };
    let now = crate::now_ms();
    let mut commits = Vec::new();
    // (topic index, partition index, error) for the response skeleton.
    let mut topics = Vec::with_capacity(req.topics.len());
    for topic in &req.topics {
        let known = broker.replicas.topic(&topic.name.0);
        let topic_readable = authz.topic(operation::READ, &topic.name.0);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let metadata = p.committed_metadata.as_ref().map(|m| m.to_string()).unwrap_or_default();
            let error = if let Some(e) = group_error {
                Some(e)
            } else if !topic_readable {
                Some(ResponseError::TopicAuthorizationFailed)
            } else if known.as_ref().and_then(|t| t.partition(p.partition_index)).is_none() {
                Some(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                Some(ResponseError::OffsetMetadataTooLarge)
            } else {
                commits.push((
                    OffsetKey { group: group_id.clone(), topic: topic.name.0.to_string(), partition: p.partition_index },
                    CommittedOffset {
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp: now,
                    },
                ));
                None
            };
            partitions.push((p.partition_index, error));
        }
        topics.push((topic.name.clone(), partitions));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let stored = broker.groups.store_offsets(&group_id, commits).await;
        let topics = topics
            .into_iter()
            .map(|(name, partitions)| {
                OffsetCommitResponseTopic::default().with_name(name).with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, error)| {
                            let error = error.or(stored.err());
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(error.map(|e| e.code()).unwrap_or(0))
                        })
                        .collect(),
                )
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }))
}
