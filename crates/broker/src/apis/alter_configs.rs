//! AlterConfigs (key 33): replaces a topic's whole set of config overrides
//! (configs not named are reset to their defaults). Broker configs are
//! static in Runnel and cannot be altered at runtime.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

/// Applies a config change to one resource: topics through `change_topic`;
/// broker configs are static in Runnel, so changing them is refused.
pub fn alter_resource(resource_type: i8, change_topic: impl FnOnce() -> Result<(), ApiError>) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => change_topic(),
        RESOURCE_BROKER => Err(ApiError::new(
            ResponseError::InvalidRequest,
            "Runnel's broker configs are static: set them with --set or --config and restart",
        )),
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("Unsupported resource type {other}"))),
    }
}

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: AlterConfigsRequest) -> Reply<AlterConfigsResponse> {
    let broker = broker.clone();
    let validate_only = req.validate_only;
    let responses = tokio::task::spawn_blocking(move || {
        req.resources
            .into_iter()
            .map(|r| {
                let outcome = alter_resource(r.resource_type, || {
                    let mut configs = BTreeMap::new();
                    for c in &r.configs {
                        if let Some(v) = &c.value {
                            configs.insert(c.name.to_string(), v.to_string());
                        }
                    }
                    broker.replicas.set_topic_configs(&r.resource_name, configs, validate_only)
                });
                let response = AlterConfigsResourceResponse::default().with_resource_type(r.resource_type).with_resource_name(r.resource_name);
                match outcome {
                    Ok(()) => response,
                    Err(e) => response.with_error_code(e.code()).with_error_message(e.message.map(StrBytes::from_string)),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Reply::Now(AlterConfigsResponse::default().with_responses(responses))
}
