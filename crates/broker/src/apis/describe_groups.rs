//! DescribeGroups (key 15): state, protocol and members with their metadata
//! and assignments.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;
use crate::security::authorizer::{GROUP, GROUP_OPERATIONS};

use super::{Authz, authorized_operations, Reply, RequestContext};
use crate::coordinator::group::GroupState;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeGroupsRequest) -> Reply<DescribeGroupsResponse> {
    let include_operations = req.include_authorized_operations;
    let authz = Authz::new(broker, ctx);
    let groups = req
        .groups
        .into_iter()
        .map(|group_id| {
            if !authz.group(operation::DESCRIBE, &group_id.0) {
                return DescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                    .with_group_state(StrBytes::from_static_str(""));
            }
            let operations = if include_operations {
                authz.operations(GROUP, &group_id.0, GROUP_OPERATIONS, authorized_operations::GROUP)
            } else {
                authorized_operations::OMITTED
            };
            let described = DescribedGroup::default().with_group_id(group_id.clone()).with_authorized_operations(operations);
            if let Err(e) = broker.groups.check_coordinator(&group_id.0) {
                return described.with_error_code(e.code()).with_group_state(StrBytes::from_static_str(""));
            }
            broker.groups.describe(&group_id.0, |group| match group {
                None if ctx.version >= 6 => described
                    .with_error_code(ResponseError::GroupIdNotFound.code())
                    .with_error_message(Some(StrBytes::from_string(format!("Group {} not found.", group_id.0))))
                    .with_group_state(StrBytes::from_static_str("Dead")),
                None => described.with_group_state(StrBytes::from_static_str("Dead")),
                Some(g) => {
                    // As Kafka: the protocol and each member's metadata are
                    // shown only once the group is Stable; its assignment always
                    // (empty while a rebalance completes).
                    let stable = g.state == GroupState::Stable;
                    let protocol = if stable { g.protocol_name.clone().unwrap_or_default() } else { String::new() };
                    let members = g
                        .members
                        .values()
                        .map(|m| {
                            let member = DescribedGroupMember::default()
                                .with_member_id(StrBytes::from_string(m.id.clone()))
                                .with_group_instance_id(m.instance_id.clone().map(StrBytes::from_string))
                                .with_client_id(StrBytes::from_string(m.client_id.clone()))
                                .with_client_host(StrBytes::from_string(m.client_host.clone()))
                                .with_member_assignment(m.assignment.clone());
                            if stable {
                                member.with_member_metadata(m.metadata_for(&protocol))
                            } else {
                                member
                            }
                        })
                        .collect();
                    described
                        .with_group_state(StrBytes::from_static_str(g.state.kafka_name()))
                        .with_protocol_type(StrBytes::from_string(g.protocol_type.clone().unwrap_or_default()))
                        .with_protocol_data(StrBytes::from_string(protocol))
                        .with_members(members)
                }
            })
        })
        .collect();
    Reply::Now(DescribeGroupsResponse::default().with_groups(groups))
}
