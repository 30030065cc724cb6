//! OffsetForLeaderEpoch (key 23, v2-4 as in Kafka 4): for each partition,
//! the largest leader epoch <= the requested one that the log knows and the
//! offset where it ends (Kafka's `Partition.lastOffsetForLeaderEpoch`).
//! Followers use it to find where their log diverged from the leader's
//! (KIP-101, KIP-279); consumers to detect a truncated log after a leader
//! change (KIP-320).
//!
//! `current_leader_epoch` (-1: not given) fences stale callers:
//! FENCED_LEADER_EPOCH when it is older than this replica's epoch,
//! UNKNOWN_LEADER_EPOCH when newer. Requests from a broker or a consumer
//! (replica id other than -2, Kafka's debugging id) must reach the leader.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{EpochEndOffset, OffsetForLeaderTopicResult};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

/// Kafka's `DEBUGGING_REPLICA_ID`: a tool that may read any replica.
const DEBUGGING_REPLICA_ID: i32 = -2;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: OffsetForLeaderEpochRequest) -> Reply<OffsetForLeaderEpochResponse> {
    let require_leader = req.replica_id.0 != DEBUGGING_REPLICA_ID;
    // Kafka: a follower needs CLUSTER_ACTION (refused on every partition), a consumer DESCRIBE on each topic.
    let authz = Authz::new(broker, ctx);
    let from_follower = req.replica_id.0 >= 0;
    let cluster_denied = from_follower && !authz.cluster(operation::CLUSTER_ACTION);
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.replicas.topic(&topic.topic.0);
            let denied = if cluster_denied {
                Some(ResponseError::ClusterAuthorizationFailed)
            } else if !from_follower && !authz.topic(operation::DESCRIBE, &topic.topic.0) {
                Some(ResponseError::TopicAuthorizationFailed)
            } else {
                None
            };
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| {
                    let answer = EpochEndOffset::default().with_partition(p.partition).with_leader_epoch(-1).with_end_offset(-1);
                    if let Some(error) = denied {
                        return answer.with_error_code(error.code());
                    }
                    let Some(partition) = found.as_ref().and_then(|t| t.partition(p.partition)) else {
                        return answer.with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    };
                    if let Err(error) = partition.check_current_leader_epoch(p.current_leader_epoch) {
                        return answer.with_error_code(error.code());
                    }
                    if require_leader && !partition.is_leader() {
                        return answer.with_error_code(ResponseError::NotLeaderOrFollower.code());
                    }
                    let (epoch, end_offset) = partition.end_offset_for_epoch(p.leader_epoch);
                    answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                })
                .collect();
            OffsetForLeaderTopicResult::default().with_topic(topic.topic).with_partitions(partitions)
        })
        .collect();
    Reply::Now(OffsetForLeaderEpochResponse::default().with_topics(topics))
}
