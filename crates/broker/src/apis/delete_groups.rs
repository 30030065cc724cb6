//! DeleteGroups (key 42): deletes empty groups and their committed offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteGroupsRequest) -> Reply<DeleteGroupsResponse> {
    let broker = broker.clone();
    let authz = Authz::new(&broker, ctx);
    Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for group in req.groups_names {
            if !authz.group(operation::DELETE, &group.0) {
                let code = kafka_protocol::error::ResponseError::GroupAuthorizationFailed.code();
                results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(code));
                continue;
            }
            let code = match broker.groups.delete_group(&group.0).await {
                Ok(()) => 0,
                Err(e) => e.code(),
            };
            results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(code));
        }
        DeleteGroupsResponse::default().with_results(results)
    }))
}
