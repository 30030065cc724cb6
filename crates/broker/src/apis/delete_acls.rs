//! DeleteAcls (key 31, v1-3): removes every ACL binding each filter matches,
//! through the active controller; per filter the bindings it removed, as Kafka
//! answers. ALTER on the cluster is required (CLUSTER_AUTHORIZATION_FAILED on
//! every filter); SECURITY_DISABLED without an authorizer; INVALID_REQUEST for a
//! filter with an unknown element. The answer waits until this broker's image
//! no longer has the removed bindings.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::{DeleteAclsFilterResult, DeleteAclsMatchingAcl};
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::acl::{operation, AclBinding, AclBindingFilter};
use runnel_controller::controller::AclDeletion;
use runnel_controller::{ControllerRequest, ControllerResponse};

use super::{Authz, Reply, RequestContext};
use crate::cluster::APPLY_WAIT;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteAclsRequest) -> Reply<DeleteAclsResponse> {
    let authz = Authz::new(broker, ctx);
    let refuse_all = |code: ResponseError, message: &str| {
        let results = req
            .filters
            .iter()
            .map(|_| DeleteAclsFilterResult::default().with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(message.to_string()))))
            .collect();
        Reply::Now(DeleteAclsResponse::default().with_filter_results(results))
    };
    if !authz.cluster(operation::ALTER) {
        return refuse_all(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    if !authz.enabled() {
        return refuse_all(ResponseError::SecurityDisabled, "No Authorizer is configured.");
    }
    let filters: Vec<AclBindingFilter> = req
        .filters
        .iter()
        .map(|f| AclBindingFilter {
            resource_type: f.resource_type_filter,
            resource_name: f.resource_name_filter.as_ref().map(|s| s.to_string()),
            pattern_type: f.pattern_type_filter,
            principal: f.principal_filter.as_ref().map(|s| s.to_string()),
            host: f.host_filter.as_ref().map(|s| s.to_string()),
            operation: f.operation,
            permission_type: f.permission_type,
        })
        .collect();
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let count = filters.len();
        let failed = |code: i16, message: Option<String>| AclDeletion { error_code: code, error_message: message, deleted: Vec::new() };
        let results: Vec<AclDeletion> = match broker.cluster.submit(ControllerRequest::DeleteAcls { filters }).await {
            Ok(ControllerResponse::AclsDeleted { results }) if results.len() == count => results,
            Ok(other) => {
                tracing::error!(answer = ?other, "DeleteAcls: unexpected controller answer");
                (0..count).map(|_| failed(ResponseError::UnknownServerError.code(), None)).collect()
            }
            Err(error) => (0..count).map(|_| failed(error.code(), error.message.clone())).collect(),
        };
        let deleted: Vec<&AclBinding> = results.iter().flat_map(|r| &r.deleted).collect();
        if !deleted.is_empty() {
            let applied = broker
                .cluster
                .wait_for_image(APPLY_WAIT, |image| {
                    !image.acls.values().any(|record| deleted.contains(&&AclBinding::from_record(record)))
                })
                .await;
            if !applied {
                tracing::info!("DeleteAcls: the removals are committed but not yet applied here");
            }
        }
        let filter_results = results
            .into_iter()
            .map(|result| {
                DeleteAclsFilterResult::default()
                    .with_error_code(result.error_code)
                    .with_error_message(result.error_message.map(StrBytes::from_string))
                    .with_matching_acls(
                        result
                            .deleted
                            .into_iter()
                            .map(|b| {
                                DeleteAclsMatchingAcl::default()
                                    .with_resource_type(b.resource_type)
                                    .with_resource_name(StrBytes::from_string(b.resource_name))
                                    .with_pattern_type(b.pattern_type)
                                    .with_principal(StrBytes::from_string(b.principal))
                                    .with_host(StrBytes::from_string(b.host))
                                    .with_operation(b.operation)
                                    .with_permission_type(b.permission_type)
                            })
                            .collect(),
                    )
            })
            .collect();
        DeleteAclsResponse::default().with_filter_results(filter_results)
    }))
}
