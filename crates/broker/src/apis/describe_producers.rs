//! DescribeProducers (key 61): the idempotent producers a partition knows,
//! from the sequence state kept for deduplication (KIP-664). Runnel has no
//! transactions, so no producer has a coordinator epoch or an open
//! transaction (-1 for both, as Kafka reports a non-transactional producer).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{PartitionResponse, ProducerState, TopicResponse};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeProducersRequest) -> Reply<DescribeProducersResponse> {
    // Kafka: READ on each topic.
    let authz = Authz::new(broker, ctx);
    let topics = req
        .topics
        .into_iter()
        .map(|topic| {
            let found = broker.replicas.topic(&topic.name.0);
            let readable = authz.topic(operation::READ, &topic.name.0);
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let response = PartitionResponse::default().with_partition_index(index);
                    match found.as_ref().and_then(|t| t.partition(index)) {
                        _ if !readable => response.with_error_code(ResponseError::TopicAuthorizationFailed.code()),
                        // Kafka explains an unknown topic, not an unknown partition of a known one.
                        None if found.is_none() => response
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code())
                            .with_error_message(Some(StrBytes::from_static_str("This server does not host this topic-partition."))),
                        None => response.with_error_code(ResponseError::UnknownTopicOrPartition.code()),
                        Some(partition) => response.with_active_producers(
                            partition
                                .active_producers()
                                .into_iter()
                                .map(|p| {
                                    ProducerState::default()
                                        .with_producer_id(ProducerId(p.producer_id))
                                        .with_producer_epoch(p.epoch as i32)
                                        .with_last_sequence(p.last_sequence)
                                        .with_last_timestamp(p.last_timestamp)
                                        .with_coordinator_epoch(-1)
                                        .with_current_txn_start_offset(p.current_txn_start_offset)
                                })
                                .collect(),
                        ),
                    }
                })
                .collect();
            TopicResponse::default().with_name(topic.name).with_partitions(partitions)
        })
        .collect();
    Reply::Now(DescribeProducersResponse::default().with_topics(topics))
}
