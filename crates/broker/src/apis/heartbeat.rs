//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: HeartbeatRequest) -> Reply<HeartbeatResponse> {
    if !Authz::new(broker, ctx).group(operation::READ, &req.group_id.0) {
        return Reply::Now(HeartbeatResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code()));
    }
    let code = match broker.groups.heartbeat(&req.group_id.0, &req.member_id, req.group_instance_id.as_deref(), req.generation_id) {
        Ok(()) => 0,
        Err(e) => e.code(),
    };
    Reply::Now(HeartbeatResponse::default().with_error_code(code))
}
