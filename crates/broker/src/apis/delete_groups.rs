//! DeleteGroups (key 42): deletes empty groups and their committed offsets.

use std::sync::Arc;

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: DeleteGroupsRequest) -> Reply<DeleteGroupsResponse> {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let mut results = Vec::with_capacity(req.groups_names.len());
        for group in req.groups_names {
            let code = match broker.groups.delete_group(&group.0).await {
                Ok(()) => 0,
                Err(e) => e.code(),
            };
            results.push(DeletableGroupResult::default().with_group_id(group).with_error_code(code));
        }
        DeleteGroupsResponse::default().with_results(results)
    }))
}
