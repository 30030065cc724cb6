//! ListGroups (key 16): every group, filtered by state (v4+) and type (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ListGroupsRequest) -> Reply<ListGroupsResponse> {
    // Kafka: DESCRIBE on the cluster lists every group, else only those the caller may DESCRIBE.
    let authz = Authz::new(broker, ctx);
    let every_group = authz.cluster(operation::DESCRIBE);
    let groups = broker
        .groups
        .list()
        .into_iter()
        .filter(|g| every_group || authz.group(operation::DESCRIBE, &g.id))
        .filter(|g| req.states_filter.is_empty() || req.states_filter.iter().any(|s| s.eq_ignore_ascii_case(g.state)))
        .filter(|g| req.types_filter.is_empty() || req.types_filter.iter().any(|t| t.eq_ignore_ascii_case(g.group_type)))
        .map(|g| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(g.id)))
                .with_protocol_type(StrBytes::from_string(g.protocol_type))
                .with_group_state(StrBytes::from_static_str(g.state))
                .with_group_type(StrBytes::from_static_str(g.group_type))
        })
        .collect();
    Reply::Now(ListGroupsResponse::default().with_groups(groups))
}
