//! CreateAcls (key 30, v1-3): adds ACL bindings to the cluster metadata. As
//! Kafka: ALTER on the cluster is required (CLUSTER_AUTHORIZATION_FAILED on
//! every creation), SECURITY_DISABLED without an authorizer; the active
//! controller checks each binding (INVALID_REQUEST for an invalid one, Kafka's
//! `AclControlManager` rules) and commits the valid ones. The answer waits until
//! this broker's image has them, so they are enforced here once answered.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::acl::{operation, AclBinding};
use runnel_controller::{ControllerRequest, ControllerResponse};

use super::{Authz, Reply, RequestContext};
use crate::cluster::APPLY_WAIT;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: CreateAclsRequest) -> Reply<CreateAclsResponse> {
    let authz = Authz::new(broker, ctx);
    let refuse_all = |code: ResponseError, message: &str| {
        let results = req
            .creations
            .iter()
            .map(|_| AclCreationResult::default().with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(message.to_string()))))
            .collect();
        Reply::Now(CreateAclsResponse::default().with_results(results))
    };
    if !authz.cluster(operation::ALTER) {
        return refuse_all(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.");
    }
    if !authz.enabled() {
        return refuse_all(ResponseError::SecurityDisabled, "No Authorizer is configured.");
    }
    let bindings: Vec<AclBinding> = req
        .creations
        .iter()
        .map(|c| AclBinding {
            resource_type: c.resource_type,
            resource_name: c.resource_name.to_string(),
            pattern_type: c.resource_pattern_type,
            principal: c.principal.to_string(),
            host: c.host.to_string(),
            operation: c.operation,
            permission_type: c.permission_type,
        })
        .collect();
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let count = bindings.len();
        let results: Vec<(i16, Option<String>)> = match broker.cluster.submit(ControllerRequest::CreateAcls { bindings: bindings.clone() }).await {
            Ok(ControllerResponse::AclsCreated { results }) if results.len() == count => results,
            Ok(other) => {
                tracing::error!(answer = ?other, "CreateAcls: unexpected controller answer");
                vec![(ResponseError::UnknownServerError.code(), None); count]
            }
            Err(error) => vec![(error.code(), error.message.clone()); count],
        };
        let created: Vec<&AclBinding> = bindings.iter().zip(&results).filter(|(_, (code, _))| *code == 0).map(|(b, _)| b).collect();
        if !created.is_empty() {
            let applied = broker
                .cluster
                .wait_for_image(APPLY_WAIT, |image| {
                    created.iter().all(|binding| image.acls.values().any(|record| AclBinding::from_record(record) == **binding))
                })
                .await;
            if !applied {
                tracing::info!("CreateAcls: the ACLs are committed but not yet applied here");
            }
        }
        let results = results
            .into_iter()
            .map(|(code, message)| AclCreationResult::default().with_error_code(code).with_error_message(message.map(StrBytes::from_string)))
            .collect();
        CreateAclsResponse::default().with_results(results)
    }))
}
