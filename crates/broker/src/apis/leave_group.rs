//! LeaveGroup (key 13): members leave (batched by id or instance id from v3)
//! and the rest rebalance.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: LeaveGroupRequest) -> Reply<LeaveGroupResponse> {
    if !Authz::new(broker, ctx).group(operation::READ, &req.group_id.0) {
        return Reply::Now(LeaveGroupResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code()));
    }
    if let Err(e) = broker.groups.check_coordinator(&req.group_id.0) {
        return Reply::Now(LeaveGroupResponse::default().with_error_code(e.code()));
    }
    if ctx.version < 3 {
        let result = broker.groups.leave(&req.group_id.0, &[(req.member_id.to_string(), None)]);
        let code = result.first().and_then(|r| r.err()).map(|e| e.code()).unwrap_or(0);
        return Reply::Now(LeaveGroupResponse::default().with_error_code(code));
    }
    let members: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| (m.member_id.to_string(), m.group_instance_id.as_ref().map(|s| s.to_string())))
        .collect();
    let results = broker.groups.leave(&req.group_id.0, &members);
    let responses = req
        .members
        .into_iter()
        .zip(results)
        .map(|(m, r)| {
            MemberResponse::default()
                .with_member_id(m.member_id)
                .with_group_instance_id(m.group_instance_id)
                .with_error_code(r.err().map(|e| e.code()).unwrap_or(0))
        })
        .collect();
    Reply::Now(LeaveGroupResponse::default().with_members(responses))
}
