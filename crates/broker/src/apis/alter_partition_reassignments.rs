//! AlterPartitionReassignments (key 45, KIP-455; v1 adds KIP-1107's
//! `allow_replication_factor_change`): each partition's target replicas, or
//! `null` to cancel its reassignment. Decided by the active controller (a
//! `ControllerRequest::AlterPartitionReassignments` submit) and answered once
//! this broker's image shows the change, so a client that asks
//! ListPartitionReassignments or Metadata here next sees it.
//!
//! As Kafka: per partition UNKNOWN_TOPIC_OR_PARTITION, INVALID_REPLICA_ASSIGNMENT
//! (empty, duplicates, unregistered brokers, all fenced), NO_REASSIGNMENT_IN_PROGRESS
//! (a cancel with none), INVALID_REPLICATION_FACTOR (v1 forbidding a change of size);
//! a failure of the whole request (the quorum did not answer) is the top-level
//! error and every partition's.

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::error::ResponseError;
use runnel_controller::controller::Reassignment;
use runnel_controller::{ControllerRequest, ControllerResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::cluster::APPLY_WAIT;
use crate::error::ApiError;
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: AlterPartitionReassignmentsRequest,
) -> Reply<AlterPartitionReassignmentsResponse> {
    if !Authz::new(broker, ctx).cluster(operation::ALTER) {
        return Reply::Now(error_response(ctx.version, &req, &ApiError::bare(ResponseError::ClusterAuthorizationFailed)));
    }
    let broker = broker.clone();
    let version = ctx.version;
    Reply::Later(Box::pin(async move { reassign(&broker, version, req).await }))
}

async fn reassign(broker: &Broker, version: i16, req: AlterPartitionReassignmentsRequest) -> AlterPartitionReassignmentsResponse {
    let reassignments: Vec<Reassignment> = req
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| Reassignment {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                target: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let request = ControllerRequest::AlterPartitionReassignments {
        reassignments: reassignments.clone(),
        allow_replication_factor_change: req.allow_replication_factor_change,
    };
    let results = match broker.cluster.submit(request).await {
        Ok(ControllerResponse::Reassigned { results }) => results,
        Ok(other) => {
            let error = ApiError::new(ResponseError::UnknownServerError, format!("the controller answered {other:?}"));
            return error_response(version, &req, &error);
        }
        Err(error) => return error_response(version, &req, &error),
    };
    // Answer once this broker applied what was accepted.
    let accepted: Vec<&Reassignment> =
        reassignments.iter().zip(&results).filter(|(_, (_, _, code, _))| *code == 0).map(|(r, _)| r).collect();
    if !accepted.is_empty() {
        let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0)).clamp(Duration::from_millis(1), APPLY_WAIT);
        let applied = broker
            .cluster
            .wait_for_image(timeout, |image| {
                accepted.iter().all(|r| {
                    image.topic_by_name(&r.topic).and_then(|t| t.partitions.get(&r.partition)).is_some_and(|p| match &r.target {
                        Some(target) => p.target_replicas() == *target,
                        None => !p.is_reassigning(),
                    })
                })
            })
            .await;
        if !applied {
            tracing::info!(partitions = accepted.len(), "AlterPartitionReassignments: committed but not yet applied here");
        }
    }
    let mut responses: Vec<ReassignableTopicResponse> = Vec::new();
    for topic in &req.topics {
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let (code, message) = results
                    .iter()
                    .find(|(t, partition, _, _)| *t == topic.name.0.as_str() && *partition == p.partition_index)
                    .map(|(_, _, code, message)| (*code, message.clone()))
                    .unwrap_or((ResponseError::UnknownServerError.code(), Some("no result from the controller".into())));
                ReassignablePartitionResponse::default()
                    .with_partition_index(p.partition_index)
                    .with_error_code(code)
                    .with_error_message(message.map(StrBytes::from_string))
            })
            .collect();
        responses.push(ReassignableTopicResponse::default().with_name(topic.name.clone()).with_partitions(partitions));
    }
    with_version_fields(version, &req, AlterPartitionReassignmentsResponse::default().with_responses(responses))
}

fn with_version_fields(
    version: i16,
    req: &AlterPartitionReassignmentsRequest,
    response: AlterPartitionReassignmentsResponse,
) -> AlterPartitionReassignmentsResponse {
    if version >= 1 {
        // KIP-1107: echoed, so a client sees the broker honoured it.
        response.with_allow_replication_factor_change(req.allow_replication_factor_change)
    } else {
        response
    }
}

/// The whole request failed: the error at the top and on every partition asked for.
fn error_response(version: i16, req: &AlterPartitionReassignmentsRequest, error: &ApiError) -> AlterPartitionReassignmentsResponse {
    let message = error.message.clone().map(StrBytes::from_string);
    let responses = req
        .topics
        .iter()
        .map(|t| {
            ReassignableTopicResponse::default().with_name(t.name.clone()).with_partitions(
                t.partitions
                    .iter()
                    .map(|p| {
                        ReassignablePartitionResponse::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(error.code())
                            .with_error_message(message.clone())
                    })
                    .collect(),
            )
        })
        .collect();
    let response = AlterPartitionReassignmentsResponse::default()
        .with_error_code(error.code())
        .with_error_message(message)
        .with_responses(responses);
    with_version_fields(version, req, response)
}
