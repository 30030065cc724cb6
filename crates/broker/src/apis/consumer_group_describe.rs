//! ConsumerGroupDescribe (key 69): groups of the consumer group protocol —
//! epochs, assignor, and each member's current and target assignment.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{Assignment, DescribedGroup, Member, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;
use crate::security::authorizer::{GROUP, GROUP_OPERATIONS};

use super::{Authz, authorized_operations, Reply, RequestContext};
use crate::coordinator::assignor;
use crate::coordinator::consumer_group::ConsumerMember;
use crate::Broker;

fn assignment(broker: &Broker, partitions: &assignor::Assignment) -> Assignment {
    Assignment::default().with_topic_partitions(
        partitions
            .iter()
            .map(|(topic_id, ps)| {
                TopicPartitions::default()
                    .with_topic_id(*topic_id)
                    .with_topic_name(TopicName(StrBytes::from_string(broker.groups.topic_name(topic_id).unwrap_or_default())))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    )
}

/// A member's partitions: assigned, and those it has yet to revoke.
fn owned_partitions(member: &ConsumerMember) -> assignor::Assignment {
    let mut owned = member.assigned.clone();
    for (topic, partitions) in &member.pending_revocation {
        owned.entry(*topic).or_default().extend(partitions.iter().copied());
    }
    owned
}

/// Kafka's message for a group whose assignments name a topic the caller may not describe.
const TOPICS_NOT_DESCRIBABLE: &str = "The group has described topic(s) that the client is not authorized to describe.";

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ConsumerGroupDescribeRequest) -> Reply<ConsumerGroupDescribeResponse> {
    let include_operations = req.include_authorized_operations;
    let authz = Authz::new(broker, ctx);
    let groups = req
        .group_ids
        .into_iter()
        .map(|group_id| {
            if !authz.group(operation::DESCRIBE, &group_id.0) {
                return DescribedGroup::default().with_group_id(group_id).with_error_code(ResponseError::GroupAuthorizationFailed.code());
            }
            let operations = if include_operations {
                authz.operations(GROUP, &group_id.0, GROUP_OPERATIONS, authorized_operations::GROUP)
            } else {
                authorized_operations::OMITTED
            };
            let described = DescribedGroup::default().with_group_id(group_id.clone()).with_authorized_operations(operations);
            if let Err(e) = broker.groups.check_coordinator(&group_id.0) {
                return described.with_error_code(e.code());
            }
            broker.groups.describe_consumer_group(&group_id.0, |group| match group {
                None => described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    // Kafka leaves the state empty here.
                    .with_error_message(Some(StrBytes::from_string(format!("Group {} not found.", group_id.0)))),
                Some(g) => {
                    let empty = assignor::Assignment::new();
                    let members = g
                        .members
                        .values()
                        .map(|m| {
                            Member::default()
                                .with_member_id(StrBytes::from_string(m.id.clone()))
                                .with_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                                .with_rack_id(m.rack_id.clone().map(StrBytes::from_string))
                                .with_member_epoch(m.epoch)
                                .with_client_id(StrBytes::from_string(m.client_id.clone()))
                                .with_client_host(StrBytes::from_string(m.client_host.clone()))
                                .with_subscribed_topic_names(
                                    m.subscribed_topic_names.iter().map(|n| TopicName(StrBytes::from_string(n.clone()))).collect(),
                                )
                                // Kafka reports "" for a member without a regex.
                                .with_subscribed_topic_regex(Some(StrBytes::from_string(m.subscribed_topic_regex.clone().unwrap_or_default())))
                                // As Kafka: what it still must revoke is still its own.
                                .with_assignment(assignment(broker, &owned_partitions(m)))
                                .with_target_assignment(assignment(broker, g.target.get(&m.id).unwrap_or(&empty)))
                                // 0: a classic member (online migration), 1: a consumer-protocol member.
                                .with_member_type(if m.classic.is_some() { 0 } else { 1 })
                        })
                        .collect::<Vec<Member>>();
                    // Kafka 4.0 (KAFKA-18813): a group whose members' assignments or targets name a topic
                    // the caller may not DESCRIBE is answered as an error alone, without its members.
                    let hidden = authz.enabled()
                        && members.iter().flat_map(|m| m.assignment.topic_partitions.iter().chain(&m.target_assignment.topic_partitions)).any(|tp| !tp.topic_name.0.is_empty() && !authz.topic(operation::DESCRIBE, &tp.topic_name.0));
                    if hidden {
                        return DescribedGroup::default()
                            .with_group_id(group_id.clone())
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
                            .with_error_message(Some(StrBytes::from_static_str(TOPICS_NOT_DESCRIBABLE)));
                    }
                    described
                        .with_group_state(StrBytes::from_static_str(g.state_name()))
                        .with_group_epoch(g.group_epoch)
                        .with_assignment_epoch(g.assignment_epoch)
                        .with_assignor_name(StrBytes::from_string(g.assignor_name.clone()))
                        .with_members(members)
                }
            })
        })
        .collect();
    Reply::Now(ConsumerGroupDescribeResponse::default().with_groups(groups))
}
