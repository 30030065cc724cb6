//! JoinGroup (key 11): joins a member to a group; answered when the
//! rebalance completes (see [`crate::coordinator::group`]).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::group::{JoinOutcome, JoinRequest, JoinResult};
use crate::coordinator::join_response;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: JoinGroupRequest) -> Reply<JoinGroupResponse> {
    let member_id = req.member_id.to_string();
    let error = |code| Reply::Now(join_response(JoinOutcome::error(code, member_id.clone())));
    if !Authz::new(broker, ctx).group(operation::READ, &req.group_id.0) {
        return error(ResponseError::GroupAuthorizationFailed);
    }
    if req.group_id.0.is_empty() {
        return error(ResponseError::InvalidGroupId);
    }
    if !broker.groups.session_timeout_in_range(req.session_timeout_ms) {
        return error(ResponseError::InvalidSessionTimeout);
    }
    // Before v1 there was no separate rebalance timeout: it equals the session timeout.
    let rebalance_timeout_ms = if ctx.version >= 1 { req.rebalance_timeout_ms } else { req.session_timeout_ms };
    let join = JoinRequest {
        member_id: member_id.clone(),
        instance_id: req.group_instance_id.as_ref().map(|s| s.to_string()),
        client_id: ctx.client_id().to_string(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout: Duration::from_millis(req.session_timeout_ms.max(0) as u64),
        rebalance_timeout: Duration::from_millis(rebalance_timeout_ms.max(0) as u64),
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: ctx.version >= 4,
        supports_skip_assignment: ctx.version >= 9,
    };
    match broker.groups.join(&req.group_id.0, join) {
        JoinResult::Now(outcome) => Reply::Now(join_response(outcome)),
        JoinResult::Wait(rx) => Reply::Later(Box::pin(async move {
            let outcome = rx.await.unwrap_or_else(|_| JoinOutcome::error(ResponseError::UnknownMemberId, member_id));
            join_response(outcome)
        })),
    }
}
