//! TxnOffsetCommit (key 28): a transactional producer commits a group's
//! offsets inside its transaction (consume-transform-produce). They are
//! written to `__consumer_offsets` as the producer's transactional batch and
//! become visible only when its COMMIT marker follows (KIP-98, KIP-447).
//! v5 comes from a transactions v2 client, which sends no AddOffsetsToTxn:
//! the group's `__consumer_offsets` partition joins the transaction here
//! (KIP-890), through the transaction coordinator on this or another broker.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::add_partitions_to_txn_manager::{add_or_verify, TxnCheck};
use crate::coordinator::offsets::{CommittedOffset, OffsetKey};
use crate::coordinator::{OFFSETS_TOPIC, OFFSET_METADATA_MAX_BYTES};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: TxnOffsetCommitRequest) -> Reply<TxnOffsetCommitResponse> {
    let broker = broker.clone();
    let version = ctx.version;
    // Kafka: WRITE on the transactional id, READ on the group, READ on each topic.
    let authz = Authz::new(&broker, ctx);
    let denied = if !authz.transactional_id(operation::WRITE, &req.transactional_id.0) {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !authz.group(operation::READ, &req.group_id.0) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    Reply::Later(Box::pin(async move {
        let group_id = req.group_id.0.to_string();
        // v3+ (KIP-447) name the member: a stale generation is refused as in OffsetCommit.
        let group_error = if version >= 3 && req.generation_id >= 0 {
            broker.groups.validate_commit(&group_id, &req.member_id, req.group_instance_id.as_deref(), req.generation_id, 8, true).err()
        } else {
            broker.groups.check_coordinator(&group_id).err()
        };
        let group_error = match group_error {
            _ if denied.is_some() => denied,
            None if version >= 5 && broker.config.transaction_version >= 2 => add_offsets_partition(&broker, &req, &group_id).await.err(),
            other => other,
        };
        let now = crate::now_ms();
        let mut errors: Vec<Vec<Option<ResponseError>>> = Vec::with_capacity(req.topics.len());
        let mut commits = Vec::new();
        for topic in &req.topics {
            let exists = broker.replicas.topic(&topic.name.0).is_some();
            let readable = authz.topic(operation::READ, &topic.name.0);
            let mut topic_errors = Vec::with_capacity(topic.partitions.len());
            for p in &topic.partitions {
                let metadata = p.committed_metadata.as_deref().unwrap_or("");
                let error = if let Some(e) = group_error {
                    Some(e)
                } else if !readable {
                    Some(ResponseError::TopicAuthorizationFailed)
                } else if !exists {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else if metadata.len() > OFFSET_METADATA_MAX_BYTES {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let key = OffsetKey { group: group_id.clone(), topic: topic.name.0.to_string(), partition: p.partition_index };
                    let value = CommittedOffset { offset: p.committed_offset, leader_epoch: p.committed_leader_epoch, metadata: metadata.to_string(), commit_timestamp: now };
                    commits.push((key, value));
                    None
                };
                topic_errors.push(error);
            }
            errors.push(topic_errors);
        }
        let written = broker.groups.commit_txn_offsets(&group_id, req.producer_id.0, req.producer_epoch, commits).await;
        let topics = req
            .topics
            .iter()
            .zip(errors)
            .map(|(topic, topic_errors)| {
                let partitions = topic
                    .partitions
                    .iter()
                    .zip(topic_errors)
                    .map(|(p, error)| {
                        let error = error.or(written.err());
                        TxnOffsetCommitResponsePartition::default().with_partition_index(p.partition_index).with_error_code(error.map_or(0, |e| e.code()))
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default().with_name(topic.name.clone()).with_partitions(partitions)
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    }))
}

/// Transactions v2: the group's offsets partition joins the producer's
/// transaction (what AddOffsetsToTxn does for a v1 client).
async fn add_offsets_partition(broker: &Broker, req: &TxnOffsetCommitRequest, group_id: &str) -> Result<(), ResponseError> {
    let index = broker.groups.offsets_partition_index(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
    let check = TxnCheck {
        transactional_id: req.transactional_id.0.to_string(),
        producer_id: req.producer_id.0,
        producer_epoch: req.producer_epoch,
        partitions: vec![(OFFSETS_TOPIC.to_string(), index)],
    };
    match add_or_verify(broker, true, check).await.into_iter().next().flatten() {
        None => Ok(()),
        // A transaction coordinator on another broker not reached: Kafka answers
        // COORDINATOR_LOAD_IN_PROGRESS, which clients retry without a lookup.
        Some(ResponseError::NetworkException) => Err(ResponseError::CoordinatorLoadInProgress),
        Some(e) => Err(e),
    }
}
