//! ConsumerGroupHeartbeat (key 68): the consumer group protocol (KIP-848).
//! One request joins, heartbeats, acknowledges revocations and leaves; the
//! answer carries the member's epoch and, when it changed, its assignment
//! (see [`crate::coordinator::consumer_group`]).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::assignor;
use crate::coordinator::consumer_group::{Heartbeat, TopicFilter};
use crate::Broker;

fn error(code: ResponseError, message: impl Into<String>) -> Reply<ConsumerGroupHeartbeatResponse> {
    let message: String = message.into();
    Reply::Now(
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(code.code())
            .with_error_message((!message.is_empty()).then(|| StrBytes::from_string(message))),
    )
}

/// The topics this heartbeat's principal may DESCRIBE, judged against the
/// ACLs current when the coordinator resolves the member's regex (Kafka 4.0,
/// KAFKA-18813: a regex subscription gets only the topics its member may see).
fn describable_topics(broker: &Arc<Broker>, ctx: &RequestContext) -> TopicFilter {
    let (authorizer, cluster) = (broker.authorizer.clone(), broker.cluster.clone());
    let (principal, host) = (ctx.principal.clone(), ctx.peer.ip());
    TopicFilter(Arc::new(move |topic: &str| {
        let who = crate::security::authorizer::Requester { principal: &principal, host };
        authorizer.authorize(&cluster.image(), who, operation::DESCRIBE, runnel_controller::acl::resource_type::TOPIC, topic)
    }))
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ConsumerGroupHeartbeatRequest) -> Reply<ConsumerGroupHeartbeatResponse> {
    if req.group_id.0.is_empty() {
        return error(ResponseError::InvalidRequest, "GroupId can't be empty.");
    }
    // Kafka: READ on the group, DESCRIBE on every subscribed topic named.
    let authz = Authz::new(broker, ctx);
    if !authz.group(operation::READ, &req.group_id.0) {
        return error(ResponseError::GroupAuthorizationFailed, "The group is not authorized.");
    }
    if let Some(names) = &req.subscribed_topic_names {
        let denied: Vec<&str> = names.iter().map(|n| n.0.as_str()).filter(|n| !authz.topic(operation::DESCRIBE, n)).collect();
        if !denied.is_empty() {
            return error(ResponseError::TopicAuthorizationFailed, format!("Topics not authorized: {}", denied.join(", ")));
        }
    }
    if req.instance_id.as_ref().is_some_and(|i| i.is_empty()) {
        return error(ResponseError::InvalidRequest, "InstanceId can't be empty.");
    }
    // KIP-1082: from v1 the client generates its member id, even to join.
    if (ctx.version >= 1 || req.member_epoch > 0 || req.member_epoch == -1) && req.member_id.is_empty() {
        return error(ResponseError::InvalidRequest, "MemberId can't be empty.");
    }
    if req.member_epoch == 0 && req.topic_partitions.as_ref().is_some_and(|t| !t.is_empty()) {
        return error(ResponseError::InvalidRequest, "TopicPartitions must be empty when (re-)joining.");
    }
    if let Some(pattern) = req.subscribed_topic_regex.as_ref().filter(|p| !p.is_empty()) {
        if regex::Regex::new(pattern).is_err() {
            return error(ResponseError::InvalidRegularExpression, format!("SubscribedTopicRegex {pattern} is not a valid regular expression."));
        }
    }
    if let Some(name) = &req.server_assignor {
        if !assignor::ASSIGNORS.contains(&name.as_str()) {
            let supported = assignor::ASSIGNORS.join(", ");
            return error(ResponseError::UnsupportedAssignor, format!("ServerAssignor {name} is not supported. Supported assignors: {supported}."));
        }
    }
    let heartbeat = Heartbeat {
        member_id: req.member_id.to_string(),
        member_epoch: req.member_epoch,
        instance_id: req.instance_id.as_ref().map(|s| s.to_string()),
        rack_id: req.rack_id.as_ref().map(|s| s.to_string()),
        rebalance_timeout_ms: req.rebalance_timeout_ms,
        subscribed_topic_names: req.subscribed_topic_names.as_ref().map(|names| names.iter().map(|n| n.0.to_string()).collect()),
        subscribed_topic_regex: req.subscribed_topic_regex.as_ref().map(|s| s.to_string()),
        server_assignor: req.server_assignor.as_ref().map(|s| s.to_string()),
        owned: req
            .topic_partitions
            .as_ref()
            .map(|tps| tps.iter().map(|tp| (tp.topic_id, tp.partitions.iter().copied().collect())).collect()),
        client_id: ctx.client_id().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        describable: broker.authorizer.enabled().then(|| describable_topics(broker, ctx)),
    };
    match broker.groups.consumer_heartbeat(&req.group_id.0, heartbeat) {
        Err((code, message)) => error(code, message),
        Ok(answer) => {
            let assignment = answer.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(topic_id, partitions)| TopicPartitions::default().with_topic_id(topic_id).with_partitions(partitions.into_iter().collect()))
                        .collect(),
                )
            });
            Reply::Now(
                ConsumerGroupHeartbeatResponse::default()
                    .with_member_id(Some(StrBytes::from_string(answer.member_id)))
                    .with_member_epoch(answer.member_epoch)
                    // A member that left is told no interval, as Kafka does.
                    .with_heartbeat_interval_ms(if req.member_epoch < 0 { 0 } else { broker.groups.consumer_heartbeat_interval_ms(&req.group_id.0) })
                    .with_assignment(assignment),
            )
        }
    }
}
