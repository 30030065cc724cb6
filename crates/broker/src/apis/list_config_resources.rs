//! ListConfigResources (key 74, KIP-1142; v0 was ListClientMetricsResources):
//! the resources that have configs. v0 lists client-metrics subscriptions
//! only (Runnel has none); v1 lists the requested resource types, every
//! supported type when none is named.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_config_resources_response::ConfigResource;
use kafka_protocol::messages::{ListConfigResourcesRequest, ListConfigResourcesResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_GROUP, RESOURCE_TOPIC};
use super::{Reply, RequestContext};
use crate::Broker;

/// CLIENT_METRICS (KIP-714): a type Kafka lists; Runnel has no subscriptions.
const RESOURCE_CLIENT_METRICS: i8 = 16;

/// The resource types v1 lists, in Kafka's order.
const SUPPORTED_TYPES: &[i8] = &[RESOURCE_TOPIC, RESOURCE_BROKER, RESOURCE_BROKER_LOGGER, RESOURCE_CLIENT_METRICS, RESOURCE_GROUP];

fn resource(resource_type: i8, name: String) -> ConfigResource {
    ConfigResource::default().with_resource_type(resource_type).with_resource_name(StrBytes::from_string(name))
}

/// The resources of one type that have configs.
fn resources_of(broker: &Broker, resource_type: i8) -> Vec<ConfigResource> {
    match resource_type {
        RESOURCE_TOPIC => broker.replicas.topics().iter().map(|t| resource(RESOURCE_TOPIC, t.name.to_string())).collect(),
        RESOURCE_BROKER | RESOURCE_BROKER_LOGGER => vec![resource(resource_type, broker.config.node_id.to_string())],
        RESOURCE_GROUP => broker.replicas.dynamic_configs().snapshot().groups.into_keys().map(|g| resource(RESOURCE_GROUP, g)).collect(),
        _ => Vec::new(),
    }
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ListConfigResourcesRequest) -> Reply<ListConfigResourcesResponse> {
    let response = ListConfigResourcesResponse::default();
    if ctx.version == 0 {
        return Reply::Now(response);
    }
    if let Some(unsupported) = req.resource_types.iter().find(|t| !SUPPORTED_TYPES.contains(t)) {
        tracing::debug!(resource_type = unsupported, "ListConfigResources of an unsupported resource type");
        return Reply::Now(response.with_error_code(ResponseError::UnsupportedVersion.code()));
    }
    let types = if req.resource_types.is_empty() { SUPPORTED_TYPES.to_vec() } else { req.resource_types.clone() };
    let resources = types.into_iter().flat_map(|t| resources_of(broker, t)).collect();
    Reply::Now(response.with_config_resources(resources))
}
