//! AddPartitionsToTxn (key 24): partitions join a producer's transaction.
//! v0-3 come from clients (one transaction); v4+ from brokers, batched, and
//! with `verify_only` a partition leader asks whether a produce's partition
//! is in the open transaction (KIP-890).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName, TransactionalId};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

/// The answer for one transaction: an error per partition.
fn topic_results(partitions: &[(String, i32)], error_of: impl Fn(usize) -> Option<ResponseError>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut out: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for (i, (topic, index)) in partitions.iter().enumerate() {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(*index)
            .with_partition_error_code(error_of(i).map_or(0, |e| e.code()));
        match out.last_mut() {
            Some(t) if t.name.0.as_str() == topic => t.results_by_partition.push(result),
            _ => out.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(StrBytes::from_string(topic.clone())))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    out
}

fn flatten(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics.iter().flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), *p))).collect()
}

/// One transaction's partitions added (or verified): per-partition errors.
async fn add_one(broker: &Broker, version: i16, transactional_id: &str, producer_id: i64, producer_epoch: i16, verify_only: bool, partitions: Vec<(String, i32)>) -> Vec<AddPartitionsToTxnTopicResult> {
    // Any unknown partition fails the whole request: the others were not attempted (Kafka).
    let unknown: Vec<bool> = partitions.iter().map(|(t, p)| broker.replicas.topic(t).and_then(|t| t.partition(*p)).is_none()).collect();
    if unknown.iter().any(|u| *u) {
        return topic_results(&partitions, |i| Some(if unknown[i] { ResponseError::UnknownTopicOrPartition } else { ResponseError::OperationNotAttempted }));
    }
    if let Err(e) = broker.txns.check_coordinator(transactional_id) {
        return topic_results(&partitions, |_| Some(e));
    }
    if verify_only {
        return match broker.txns.verify_partitions(transactional_id, producer_id, producer_epoch, &partitions) {
            Ok(errors) => topic_results(&partitions, |i| errors[i]),
            Err(e) => topic_results(&partitions, |_| Some(e)),
        };
    }
    // A broker adding a transactions v2 produce's partition (v5, not verify-only) speaks for a v2 client.
    let client_transaction_version = if version >= 5 && broker.config.transaction_version >= 2 { 2 } else { 0 };
    let error = match broker.txns.add_partitions(transactional_id, producer_id, producer_epoch, &partitions, client_transaction_version).await {
        Ok(()) => None,
        // Clients before v2 know only INVALID_PRODUCER_EPOCH (Kafka's mapping).
        Err(ResponseError::ProducerFenced) if version < 2 => Some(ResponseError::InvalidProducerEpoch),
        Err(e) => Some(e),
    };
    topic_results(&partitions, |_| error)
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: AddPartitionsToTxnRequest) -> Reply<AddPartitionsToTxnResponse> {
    let version = ctx.version;
    let authz = Authz::new(broker, ctx);
    // Kafka: v4+ come from brokers and need CLUSTER_ACTION; a client (v0-3)
    // needs WRITE on its transactional id and on each topic.
    if version >= 4 && !authz.cluster(operation::CLUSTER_ACTION) {
        return Reply::Now(AddPartitionsToTxnResponse::default().with_error_code(ResponseError::ClusterAuthorizationFailed.code()));
    }
    if version < 4 {
        let partitions = flatten(&req.v3_and_below_topics);
        let refusal = if !authz.transactional_id(operation::WRITE, &req.v3_and_below_transactional_id.0) {
            Some(topic_results(&partitions, |_| Some(ResponseError::TransactionalIdAuthorizationFailed)))
        } else {
            let denied: Vec<bool> = partitions.iter().map(|(topic, _)| !authz.topic(operation::WRITE, topic)).collect();
            denied.iter().any(|d| *d).then(|| {
                topic_results(&partitions, |i| Some(if denied[i] { ResponseError::TopicAuthorizationFailed } else { ResponseError::OperationNotAttempted }))
            })
        };
        if let Some(results) = refusal {
            return Reply::Now(AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results));
        }
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        if version < 4 {
            let partitions = flatten(&req.v3_and_below_topics);
            let results = add_one(
                &broker,
                version,
                &req.v3_and_below_transactional_id.0,
                req.v3_and_below_producer_id.0,
                req.v3_and_below_producer_epoch,
                false,
                partitions,
            )
            .await;
            return AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results);
        }
        // A partition leader batches the transactions of many producers: they are
        // independent, so one waiting for its state write does not hold up the others.
        let results = futures::future::join_all(req.transactions.into_iter().map(|txn| {
            let broker = &broker;
            async move {
                let partitions = flatten(&txn.topics);
                let topic_results =
                    add_one(broker, version, &txn.transactional_id.0, txn.producer_id.0, txn.producer_epoch, txn.verify_only, partitions).await;
                AddPartitionsToTxnResult::default().with_transactional_id(TransactionalId(txn.transactional_id.0.clone())).with_topic_results(topic_results)
            }
        }))
        .await;
        AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
    }))
}
