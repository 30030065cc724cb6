//! DescribeTransactions (key 65): the coordinator's state of transactional ids.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeTransactionsRequest) -> Reply<DescribeTransactionsResponse> {
    // Kafka: DESCRIBE on each transactional id.
    let authz = Authz::new(broker, ctx);
    let states = req
        .transactional_ids
        .into_iter()
        .map(|id| {
            let state = TransactionState::default().with_transactional_id(id.clone());
            if id.0.is_empty() {
                return state.with_error_code(ResponseError::InvalidRequest.code()).with_transaction_state(StrBytes::from_static_str(""));
            }
            if !authz.transactional_id(operation::DESCRIBE, &id.0) {
                let code = ResponseError::TransactionalIdAuthorizationFailed.code();
                return state.with_error_code(code).with_transaction_state(StrBytes::from_static_str(""));
            }
            if let Err(e) = broker.txns.check_coordinator(&id.0) {
                return state.with_error_code(e.code()).with_transaction_state(StrBytes::from_static_str(""));
            }
            match broker.txns.describe(&id.0) {
                None => state.with_error_code(ResponseError::TransactionalIdNotFound.code()).with_transaction_state(StrBytes::from_static_str("")),
                Some(meta) => {
                    let mut topics: Vec<TopicData> = Vec::new();
                    for (topic, partition) in &meta.partitions {
                        match topics.last_mut() {
                            Some(t) if t.topic.0.as_str() == topic => t.partitions.push(*partition),
                            _ => topics.push(TopicData::default().with_topic(TopicName(StrBytes::from_string(topic.clone()))).with_partitions(vec![*partition])),
                        }
                    }
                    state
                        .with_transaction_state(StrBytes::from_static_str(meta.state.name()))
                        .with_transaction_timeout_ms(meta.timeout_ms)
                        .with_transaction_start_time_ms(meta.start_ms)
                        .with_producer_id(ProducerId(meta.producer_id))
                        .with_producer_epoch(meta.producer_epoch)
                        .with_topics(topics)
                }
            }
        })
        .collect();
    Reply::Now(DescribeTransactionsResponse::default().with_transaction_states(states))
}
