//! FindCoordinator (key 10). Batched keys from v4.
//!
//! A group's coordinator is the leader of its `__consumer_offsets` partition
//! (`java_string_hash(group) % partitions`), from the applied cluster metadata;
//! the first group key creates the topic through the controller, as Kafka does.
//! A transactional id's coordinator is, likewise, the leader of its
//! `__transaction_state` partition; the first transaction key creates that topic.
//! COORDINATOR_NOT_AVAILABLE when creating fails or the partition has no live leader.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::{partition_for, OFFSETS_TOPIC};
use crate::txn_coordinator::TRANSACTION_STATE_TOPIC;
use crate::Broker;

const GROUP_KEY_TYPE: i8 = 0;
const TRANSACTION_KEY_TYPE: i8 = 1;
/// KIP-932 share groups: not served (Kafka with share groups off answers
/// INVALID_REQUEST with an empty message).
const SHARE_KEY_TYPE: i8 = 2;

/// (node id, host, port) of a key's coordinator: the live leader of the key's
/// partition of `internal_topic` (`__consumer_offsets` or `__transaction_state`),
/// on the listener the client came in on.
fn coordinator_of(broker: &Broker, listener: &str, internal_topic: &str, key: &str) -> Result<(i32, StrBytes, i32), (ResponseError, Option<&'static str>)> {
    let not_available = (ResponseError::CoordinatorNotAvailable, None);
    if !broker.cluster.in_session() {
        // Cut off from the controller: another broker may lead the partition by now.
        return Err((ResponseError::CoordinatorNotAvailable, Some("this broker's session with the controller lapsed; its metadata may be stale")));
    }
    let image = broker.cluster.image();
    let topic = image.topic_by_name(internal_topic).ok_or(not_available)?;
    // Both coordinators map a key alike (Java's String.hashCode modulo the partition count).
    let index = partition_for(key, topic.partitions.len());
    let leader = topic.partitions.get(&index).map(|p| p.leader).ok_or(not_available)?;
    if leader == broker.config.node_id {
        let (host, port) = super::metadata::own_address(broker, listener);
        return Ok((leader, StrBytes::from_string(host), port));
    }
    // Its address on the listener the client came in on, as Kafka answers.
    let endpoint = image
        .unfenced_brokers()
        .find(|b| b.node_id == leader)
        .and_then(|b| crate::cluster::endpoint_on(&b.endpoints, listener))
        .ok_or(not_available)?;
    Ok((leader, StrBytes::from_string(endpoint.host.clone()), i32::from(endpoint.port)))
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FindCoordinatorRequest) -> Reply<FindCoordinatorResponse> {
    let broker = broker.clone();
    let version = ctx.version;
    let listener = ctx.listener.clone();
    let authz = Authz::new(&broker, ctx);
    Reply::Later(Box::pin(async move { answer(&broker, &authz, version, &listener, req).await }))
}

async fn answer(broker: &Arc<Broker>, authz: &Authz, version: i16, listener: &str, req: FindCoordinatorRequest) -> FindCoordinatorResponse {
    if req.key_type == GROUP_KEY_TYPE && broker.cluster.image().topic_by_name(OFFSETS_TOPIC).is_none() {
        // The first FindCoordinator for a group creates the topic; errors are answered per key below.
        let _ = broker.groups.ensure_topic().await;
    }
    if req.key_type == TRANSACTION_KEY_TYPE && broker.cluster.image().topic_by_name(TRANSACTION_STATE_TOPIC).is_none() {
        let _ = broker.txns.ensure_topic().await;
    }
    // Kafka serves any key, the empty group id included (it hashes to a
    // partition like any other): the id is checked by the group APIs.
    let answer = |key: &str| -> Result<(i32, StrBytes, i32), (ResponseError, Option<&'static str>)> {
        match req.key_type {
            // Kafka: DESCRIBE on the group or transactional id.
            GROUP_KEY_TYPE if !authz.group(operation::DESCRIBE, key) => Err((ResponseError::GroupAuthorizationFailed, None)),
            TRANSACTION_KEY_TYPE if !authz.transactional_id(operation::DESCRIBE, key) => {
                Err((ResponseError::TransactionalIdAuthorizationFailed, None))
            }
            GROUP_KEY_TYPE => coordinator_of(broker, listener, OFFSETS_TOPIC, key),
            TRANSACTION_KEY_TYPE => coordinator_of(broker, listener, TRANSACTION_STATE_TOPIC, key),
            SHARE_KEY_TYPE => Err((ResponseError::InvalidRequest, None)),
            _ => Err((ResponseError::InvalidRequest, Some("unknown coordinator key type"))),
        }
    };
    if version >= 4 {
        let coordinators = req
            .coordinator_keys
            .iter()
            .map(|key| {
                let c = Coordinator::default().with_key(key.clone());
                match answer(key) {
                    Ok((node, host, port)) => c.with_node_id(BrokerId(node)).with_host(host).with_port(port),
                    Err((code, msg)) => c
                        .with_node_id(BrokerId(-1))
                        .with_port(-1)
                        .with_error_code(code.code())
                        .with_error_message(Some(StrBytes::from_static_str(msg.unwrap_or("")))),
                }
            })
            .collect();
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match answer(&req.key) {
        // v1-3 carry the error's name on success too: Kafka sends "NONE".
        Ok((node, host, port)) => {
            response.with_node_id(BrokerId(node)).with_host(host).with_port(port).with_error_message(Some(StrBytes::from_static_str("NONE")))
        }
        Err((code, msg)) => response
            .with_node_id(BrokerId(-1))
            .with_port(-1)
            .with_error_code(code.code())
            .with_error_message(Some(StrBytes::from_static_str(msg.unwrap_or("")))),
    }
}
