//! SyncGroup (key 14): the leader hands out assignments; followers get
//! theirs, waiting for the leader if they arrive first.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::group::{SyncOutcome, SyncResult};
use crate::Broker;

fn response(outcome: SyncOutcome) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(outcome.protocol_name.map(StrBytes::from_string))
        .with_assignment(outcome.assignment)
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: SyncGroupRequest) -> Reply<SyncGroupResponse> {
    if !Authz::new(broker, ctx).group(operation::READ, &req.group_id.0) {
        return Reply::Now(response(SyncOutcome {
            error: Some(ResponseError::GroupAuthorizationFailed),
            protocol_type: None,
            protocol_name: None,
            assignment: Default::default(),
        }));
    }
    let assignments = req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let expected = (req.protocol_type.clone(), req.protocol_name.clone());
    let check = move |outcome: SyncOutcome| {
        // v5: the client names the protocol it expects; a mismatch is INCONSISTENT_GROUP_PROTOCOL.
        let mismatch = |want: &Option<StrBytes>, have: &Option<String>| {
            want.as_ref().is_some_and(|w| have.as_deref().is_some_and(|h| h != w.as_str()))
        };
        if outcome.error.is_none() && (mismatch(&expected.0, &outcome.protocol_type) || mismatch(&expected.1, &outcome.protocol_name)) {
            // Kafka's error answer names no protocol.
            return response(SyncOutcome {
                error: Some(ResponseError::InconsistentGroupProtocol),
                protocol_type: None,
                protocol_name: None,
                assignment: Default::default(),
            });
        }
        response(outcome)
    };
    let instance_id = req.group_instance_id.as_ref().map(|s| s.as_str());
    match broker.groups.sync(&req.group_id.0, &req.member_id, instance_id, req.generation_id, assignments).await {
        SyncResult::Now(outcome) => Reply::Now(check(outcome)),
        SyncResult::Wait(rx) => Reply::Later(Box::pin(async move {
            let outcome = rx.await.unwrap_or(SyncOutcome {
                error: Some(ResponseError::RebalanceInProgress),
                protocol_type: None,
                protocol_name: None,
                assignment: Default::default(),
            });
            check(outcome)
        })),
    }
}
