//! DescribeAcls (key 29, v1-3): the ACL bindings of this broker's cluster
//! metadata image that match the filter, grouped by resource pattern, as Kafka
//! answers. DESCRIBE on the cluster is required (CLUSTER_AUTHORIZATION_FAILED);
//! SECURITY_DISABLED without an authorizer; INVALID_REQUEST for a filter with an
//! unknown (or UNKNOWN) element.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_acls_response::{AclDescription, DescribeAclsResource};
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::acl::{operation, AclBinding, AclBindingFilter};

use super::{Authz, Reply, RequestContext};
use crate::Broker;

fn refused(code: ResponseError, message: String) -> Reply<DescribeAclsResponse> {
    Reply::Now(DescribeAclsResponse::default().with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(message))))
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeAclsRequest) -> Reply<DescribeAclsResponse> {
    let authz = Authz::new(broker, ctx);
    if !authz.cluster(operation::DESCRIBE) {
        return refused(ResponseError::ClusterAuthorizationFailed, "Cluster authorization failed.".into());
    }
    if !authz.enabled() {
        return refused(ResponseError::SecurityDisabled, "No Authorizer is configured.".into());
    }
    let filter = AclBindingFilter {
        resource_type: req.resource_type_filter,
        resource_name: req.resource_name_filter.as_ref().map(|s| s.to_string()),
        pattern_type: req.pattern_type_filter,
        principal: req.principal_filter.as_ref().map(|s| s.to_string()),
        host: req.host_filter.as_ref().map(|s| s.to_string()),
        operation: req.operation,
        permission_type: req.permission_type,
    };
    if let Some(element) = filter.unknown_element() {
        return refused(ResponseError::InvalidRequest, format!("The filter has an unknown {element}."));
    }
    let image = broker.cluster.image();
    // (resource type, name, pattern type) → its matching entries.
    let mut by_resource: BTreeMap<(i8, String, i8), Vec<AclBinding>> = BTreeMap::new();
    for binding in image.acls.values().map(AclBinding::from_record).filter(|b| filter.matches(b)) {
        by_resource.entry((binding.resource_type, binding.resource_name.clone(), binding.pattern_type)).or_default().push(binding);
    }
    let resources = by_resource
        .into_iter()
        .map(|((resource_type, name, pattern_type), bindings)| {
            DescribeAclsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(StrBytes::from_string(name))
                .with_pattern_type(pattern_type)
                .with_acls(
                    bindings
                        .into_iter()
                        .map(|b| {
                            AclDescription::default()
                                .with_principal(StrBytes::from_string(b.principal))
                                .with_host(StrBytes::from_string(b.host))
                                .with_operation(b.operation)
                                .with_permission_type(b.permission_type)
                        })
                        .collect(),
                )
        })
        .collect();
    Reply::Now(DescribeAclsResponse::default().with_resources(resources))
}
