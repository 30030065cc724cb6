//! Heartbeat (key 12): keeps a member's session alive; REBALANCE_IN_PROGRESS
//! tells it to rejoin.

use std::sync::Arc;

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: HeartbeatRequest) -> Reply<HeartbeatResponse> {
    let code = match broker.groups.heartbeat(&req.group_id.0, &req.member_id, req.group_instance_id.as_deref(), req.generation_id) {
        Ok(()) => 0,
        Err(e) => e.code(),
    };
    Reply::Now(HeartbeatResponse::default().with_error_code(code))
}
