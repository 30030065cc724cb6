//! DescribeTopicPartitions (key 75, KIP-966): topics with their partitions,
//! paged by a partition budget and a cursor. The Java admin client's
//! `describeTopics` uses it instead of Metadata when the broker advertises it.
//!
//! Semantics follow Kafka 4.x: the named topics (or every topic when none is
//! named) are described in name order from the cursor on; the answer stops
//! once `response_partition_limit` partitions are in it and then carries the
//! cursor to resume from. Unknown named topics answer an error; when listing
//! every topic there are none. Leader, replicas, ISR and offline replicas come
//! from the applied cluster image (as Metadata); the eligible-leader lists are
//! empty (no ELR yet).

use std::collections::BTreeSet;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, authorized_operations, Reply, RequestContext};
use crate::security::authorizer::{TOPIC, TOPIC_OPERATIONS};
use crate::replica_manager::{validate_topic_name, Topic};
use crate::Broker;

/// Kafka's `max.request.partition.size.limit` default: the most partitions
/// one answer carries, whatever the client asks.
const MAX_PARTITIONS_PER_RESPONSE: i32 = 2000;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeTopicPartitionsRequest) -> Reply<DescribeTopicPartitionsResponse> {
    Reply::Now(describe(broker, &Authz::new(broker, ctx), req))
}

/// Kafka: topics the caller may not DESCRIBE are left out of a full listing
/// and answered TOPIC_AUTHORIZATION_FAILED when named.
fn describe(broker: &Broker, authz: &Authz, req: DescribeTopicPartitionsRequest) -> DescribeTopicPartitionsResponse {
    let list_all = req.topics.is_empty();
    let cursor = req.cursor.as_ref().map(|c| (c.topic_name.0.to_string(), c.partition_index));
    let cursor_topic = cursor.as_ref().map(|(name, _)| name.as_str()).unwrap_or("");
    // Names are compared as Kafka's Java strings are; both orders agree on
    // the ASCII that topic names may contain.
    let names: BTreeSet<String> = if list_all {
        broker
            .replicas
            .topics()
            .iter()
            .map(|t| t.name.to_string())
            .filter(|n| n.as_str() >= cursor_topic && authz.topic(operation::DESCRIBE, n))
            .collect()
    } else {
        req.topics.iter().map(|t| t.name.0.to_string()).filter(|n| n.as_str() >= cursor_topic).collect()
    };
    if let Some((topic, partition)) = &cursor {
        if !list_all && !names.contains(topic) {
            return invalid_request(&req, format!("the topic list must contain the cursor topic {topic}"));
        }
        if *partition < 0 {
            return invalid_request(&req, format!("the cursor partition {partition} of topic {topic} is negative"));
        }
    }

    let mut remaining = req.response_partition_limit.min(MAX_PARTITIONS_PER_RESPONSE).max(1);
    let mut response = DescribeTopicPartitionsResponse::default();
    for name in names {
        if remaining == 0 {
            // Every partition of the previous topic fit: resume at this one.
            response.next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(0));
            break;
        }
        if !list_all && !authz.topic(operation::DESCRIBE, &name) {
            response.topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                    .with_name(Some(topic_name(&name)))
                    .with_is_internal(is_internal_name(&name))
                    .with_topic_authorized_operations(authorized_operations::OMITTED),
            );
            continue;
        }
        let Some(topic) = broker.replicas.topic(&name) else {
            if !list_all {
                let error = if validate_topic_name(&name).is_ok() { ResponseError::UnknownTopicOrPartition } else { ResponseError::InvalidTopicException };
                response.topics.push(
                    DescribeTopicPartitionsResponseTopic::default()
                        .with_error_code(error.code())
                        .with_name(Some(topic_name(&name)))
                        .with_is_internal(is_internal_name(&name))
                        .with_topic_authorized_operations(authorized_operations::TOPIC),
                );
            }
            continue;
        };
        let start = match &cursor {
            Some((cursor_topic, partition)) if *cursor_topic == name => *partition,
            _ => 0,
        };
        let (described, next_partition) = describe_partitions(broker, &topic, start, remaining);
        remaining -= described.len() as i32;
        response.topics.push(
            DescribeTopicPartitionsResponseTopic::default()
                .with_name(Some(topic_name(&name)))
                .with_topic_id(topic.id)
                .with_is_internal(topic.internal)
                .with_partitions(described)
                .with_topic_authorized_operations(authz.operations(TOPIC, &name, TOPIC_OPERATIONS, authorized_operations::TOPIC)),
        );
        if let Some(next) = next_partition {
            response.next_cursor = Some(Cursor::default().with_topic_name(topic_name(&name)).with_partition_index(next));
            break;
        }
    }
    response
}

/// Up to `budget` partitions of `topic` from index `start`, and the index to
/// resume from when some are left.
fn describe_partitions(broker: &Broker, topic: &Topic, start: i32, budget: i32) -> (Vec<DescribeTopicPartitionsResponsePartition>, Option<i32>) {
    let mut partitions = topic.partitions();
    partitions.sort_by_key(|p| p.index);
    let count = i32::try_from(partitions.len()).unwrap_or(i32::MAX);
    let end = count.min(start.saturating_add(budget));
    let described = partitions
        .iter()
        .filter(|p| p.index >= start && p.index < end)
        .map(|p| {
            // From the applied cluster image, as Metadata (during a reassignment: the union of old and new replicas).
            let view = broker.cluster.partition_view(topic, p);
            let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(view.leader))
                .with_leader_epoch(view.leader_epoch)
                .with_replica_nodes(ids(&view.replicas))
                .with_isr_nodes(ids(&view.isr))
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
                .with_offline_replicas(ids(&view.offline))
        })
        .collect();
    (described, (end < count).then_some(end))
}

/// Kafka answers a malformed request with the error on every named topic.
fn invalid_request(req: &DescribeTopicPartitionsRequest, reason: String) -> DescribeTopicPartitionsResponse {
    tracing::debug!(%reason, "invalid DescribeTopicPartitions request");
    let topics = req
        .topics
        .iter()
        .map(|t| {
            DescribeTopicPartitionsResponseTopic::default()
                .with_error_code(ResponseError::InvalidRequest.code())
                .with_name(Some(t.name.clone()))
                .with_topic_authorized_operations(authorized_operations::OMITTED)
        })
        .collect();
    DescribeTopicPartitionsResponse::default().with_topics(topics)
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// Kafka's `Topic.isInternal`: the broker's own topics, by name.
fn is_internal_name(name: &str) -> bool {
    matches!(name, "__consumer_offsets" | "__transaction_state" | "__share_group_state")
}
