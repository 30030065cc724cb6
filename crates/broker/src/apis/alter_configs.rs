//! AlterConfigs (key 33): replaces the whole set of config overrides of a
//! topic, of a broker's dynamic configs (per broker, or the cluster-wide
//! default with resource name ""), or of a group's configs (KIP-848); configs
//! not named return to their defaults.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};
use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::dynamic_config::BrokerScope;
use crate::error::ApiError;
use crate::Broker;

/// The BROKER resource a name designates: "" is the cluster-wide default,
/// otherwise it must be this broker's node id (Kafka's messages).
pub fn broker_scope(broker: &Broker, name: &str) -> Result<BrokerScope, ApiError> {
    if name.is_empty() {
        return Ok(BrokerScope::ClusterDefault);
    }
    let id: i32 = name
        .parse()
        .map_err(|_| ApiError::new(ResponseError::InvalidRequest, format!("Node id must be an integer, but it is: {name}")))?;
    if id != broker.config.node_id {
        return Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("Unexpected broker id, expected {}, but received {name}", broker.config.node_id),
        ));
    }
    Ok(BrokerScope::ThisBroker)
}

/// Kafka's checks before any resource is changed: each resource at most once
/// in a request (else every copy fails), each config name at most once in a
/// resource. Returns the error of each resource that fails them, by position.
pub fn preprocess<'a>(resources: impl Iterator<Item = (i8, &'a str, Vec<&'a str>)>) -> Vec<Option<ApiError>> {
    let resources: Vec<_> = resources.collect();
    let mut seen: HashMap<(i8, &str), usize> = HashMap::new();
    for (resource_type, name, _) in &resources {
        *seen.entry((*resource_type, *name)).or_default() += 1;
    }
    resources
        .iter()
        .map(|(resource_type, name, keys)| {
            if seen[&(*resource_type, *name)] > 1 {
                return Some(ApiError::new(ResponseError::InvalidRequest, "Each resource must appear at most once."));
            }
            let mut unique = keys.clone();
            unique.sort_unstable();
            unique.dedup();
            (unique.len() != keys.len()).then(|| ApiError::new(ResponseError::InvalidRequest, "Error due to duplicate config keys"))
        })
        .collect()
}

/// Kafka's answer to a config name given without a value.
pub fn null_values_error(names: &[&str]) -> Result<(), ApiError> {
    if names.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(ResponseError::InvalidRequest, format!("Null value not supported for : {}", names.join(", "))))
}

/// Replaces the configs of one resource.
fn alter_resource(broker: &Broker, resource_type: i8, name: &str, configs: BTreeMap<String, String>, validate_only: bool) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => crate::cluster::set_topic_configs_blocking(broker, name, configs, validate_only),
        RESOURCE_BROKER => broker.replicas.set_broker_configs(broker_scope(broker, name)?, configs, validate_only),
        RESOURCE_GROUP => broker.replicas.set_group_configs(name, configs, validate_only),
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("Unknown resource type {other}"))),
    }
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: AlterConfigsRequest) -> Reply<AlterConfigsResponse> {
    let broker = broker.clone();
    let validate_only = req.validate_only;
    let authz = Authz::new(&broker, ctx);
    let responses = tokio::task::spawn_blocking(move || {
        let checks = preprocess(req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str(), r.configs.iter().map(|c| c.name.as_str()).collect())));
        req.resources
            .into_iter()
            .zip(checks)
            .map(|(r, check)| {
                let outcome = match check {
                    Some(e) => Err(e),
                    None if authz.config_resource(operation::ALTER_CONFIGS, r.resource_type, r.resource_name.as_str()).is_err() => {
                        authz.config_resource(operation::ALTER_CONFIGS, r.resource_type, r.resource_name.as_str())
                    }
                    None => {
                        let nulls: Vec<&str> = r.configs.iter().filter(|c| c.value.is_none()).map(|c| c.name.as_str()).collect();
                        null_values_error(&nulls).and_then(|()| {
                            let configs = r.configs.iter().filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string()))).collect();
                            alter_resource(&broker, r.resource_type, &r.resource_name, configs, validate_only)
                        })
                    }
                };
                // Kafka answers error_message null on success.
                let response = AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name)
                    .with_error_message(None);
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
