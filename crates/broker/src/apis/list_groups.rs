//! ListGroups (key 16): every group, filtered by state (v4+) and type (v5+).

use std::sync::Arc;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: ListGroupsRequest) -> Reply<ListGroupsResponse> {
    let groups = broker
        .groups
        .list()
        .into_iter()
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
