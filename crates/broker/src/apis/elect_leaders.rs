//! ElectLeaders (key 43): preferred (0) or unclean (1) leader election, decided
//! by the active controller (a `ControllerRequest::ElectLeaders` submit) and
//! answered once this broker's image shows the elected leaders.
//!
//! As Kafka's controller: per partition ELECTION_NOT_NEEDED (84) when the
//! preferred replica already leads (unclean: when there is a leader at all),
//! PREFERRED_LEADER_NOT_AVAILABLE (80) when it is fenced or out of the ISR,
//! ELIGIBLE_LEADERS_NOT_AVAILABLE (83) when no replica is live,
//! UNKNOWN_TOPIC_OR_PARTITION; null `topic_partitions` means every partition,
//! and then partitions that need no election are left out of the answer
//! (their topics stay, with no results). v0 has no election type: preferred.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::controller::ElectionType;
use runnel_controller::records::NO_LEADER;
use runnel_controller::{ControllerRequest, ControllerResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::cluster::APPLY_WAIT;
use crate::error::ApiError;
use crate::Broker;

const PREFERRED: i8 = 0;
const UNCLEAN: i8 = 1;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ElectLeadersRequest) -> Reply<ElectLeadersResponse> {
    let broker = broker.clone();
    let version = ctx.version;
    let cluster_alter = Authz::new(&broker, ctx).cluster(operation::ALTER);
    Reply::Later(Box::pin(async move { elect(&broker, version, req, cluster_alter).await }))
}

/// `cluster_alter`: the caller may ALTER the cluster (Kafka refuses every partition otherwise).
async fn elect(broker: &Broker, version: i16, req: ElectLeadersRequest, cluster_alter: bool) -> ElectLeadersResponse {
    let every_partition = req.topic_partitions.is_none();
    // (topic, partition) in request order; for "every partition", the topics
    // of the cluster metadata (internal topics kept by one broker are not in it).
    let requested: Vec<(String, i32)> = match &req.topic_partitions {
        Some(topics) => topics.iter().flat_map(|t| t.partitions.iter().map(|p| (t.topic.0.to_string(), *p))).collect(),
        None => {
            let image = broker.cluster.image();
            image.topics.values().flat_map(|t| t.partitions.keys().map(|p| (t.name.clone(), *p))).collect()
        }
    };
    let topic_order: Vec<String> = match &req.topic_partitions {
        Some(topics) => topics.iter().map(|t| t.topic.0.to_string()).collect(),
        None => broker.cluster.image().topics.values().map(|t| t.name.clone()).collect(),
    };
    if !cluster_alter {
        let error = ApiError::bare(ResponseError::ClusterAuthorizationFailed);
        return error_response(version, &topic_order, &requested, &error);
    }
    let election = match (version, req.election_type) {
        (0, _) | (_, PREFERRED) => ElectionType::Preferred,
        (_, UNCLEAN) => ElectionType::Unclean,
        (_, other) => {
            let error = ApiError::new(ResponseError::InvalidRequest, format!("Unknown election type {other}"));
            return error_response(version, &topic_order, &requested, &error);
        }
    };
    let outcome = broker.cluster.submit(ControllerRequest::ElectLeaders { election, partitions: requested.clone() }).await;
    let results = match outcome {
        Ok(ControllerResponse::LeadersElected { results }) => results,
        Ok(other) => {
            let error = ApiError::new(ResponseError::UnknownServerError, format!("the controller answered {other:?}"));
            return error_response(version, &topic_order, &requested, &error);
        }
        Err(error) => return error_response(version, &topic_order, &requested, &error),
    };
    // Answer once this broker applied the elections, so a client that refreshes
    // its metadata here next sees the new leaders.
    let elected: Vec<(String, i32)> = results.iter().filter(|(_, _, code)| *code == 0).map(|(t, p, _)| (t.clone(), *p)).collect();
    if !elected.is_empty() {
        let timeout = Duration::from_millis(u64::try_from(req.timeout_ms).unwrap_or(0)).clamp(Duration::from_millis(1), APPLY_WAIT);
        let applied = broker
            .cluster
            .wait_for_image(timeout, |image| {
                elected.iter().all(|(topic, partition)| {
                    image.topic_by_name(topic).and_then(|t| t.partitions.get(partition)).is_some_and(|p| {
                        p.leader != NO_LEADER && (election == ElectionType::Unclean || p.replicas.first() == Some(&p.leader))
                    })
                })
            })
            .await;
        if !applied {
            tracing::info!(partitions = elected.len(), "ElectLeaders: the elections are committed but not yet applied here");
        }
    }
    let image = broker.cluster.image();
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = topic_order.iter().map(|t| (t.clone(), Vec::new())).collect();
    for (topic, partition, code) in results {
        let error = ResponseError::try_from_code(code);
        if every_partition && error == Some(ResponseError::ElectionNotNeeded) {
            continue;
        }
        // Every error carries a message, as Kafka's; the unknown ones in its controller's words.
        let message = error.map(|e| {
            StrBytes::from_string(match (e, image.topic_by_name(&topic)) {
                (ResponseError::UnknownTopicOrPartition, None) => format!("No such topic as {topic}"),
                (ResponseError::UnknownTopicOrPartition, Some(_)) => format!("No such partition as {topic}-{partition}"),
                (other, _) => other.to_string(),
            })
        });
        by_topic.entry(topic).or_default().push(PartitionResult::default().with_partition_id(partition).with_error_code(code).with_error_message(message));
    }
    ElectLeadersResponse::default().with_replica_election_results(ordered(&topic_order, by_topic))
}

/// One result per topic, in the request's order (each topic once).
fn ordered(topic_order: &[String], mut by_topic: BTreeMap<String, Vec<PartitionResult>>) -> Vec<ReplicaElectionResult> {
    topic_order
        .iter()
        .filter_map(|topic| {
            by_topic.remove(topic).map(|partitions| {
                ReplicaElectionResult::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                    .with_partition_result(partitions)
            })
        })
        .collect()
}

/// Kafka's error answer: the error at the top (v1+) and on every partition asked for.
fn error_response(version: i16, topic_order: &[String], requested: &[(String, i32)], error: &ApiError) -> ElectLeadersResponse {
    let message = error.message.clone().map(StrBytes::from_string);
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for (topic, partition) in requested {
        by_topic.entry(topic.clone()).or_default().push(
            PartitionResult::default().with_partition_id(*partition).with_error_code(error.code()).with_error_message(message.clone()),
        );
    }
    let response = ElectLeadersResponse::default().with_replica_election_results(ordered(topic_order, by_topic));
    if version >= 1 {
        response.with_error_code(error.code())
    } else {
        response
    }
}
