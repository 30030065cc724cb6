//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on top
//! of the current config overrides of a topic, of a broker's dynamic configs
//! (per broker or the cluster-wide default ""), or of a group (KIP-848).

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_request::{AlterConfigsResource, AlterableConfig};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::config::{topic_config_defs, ConfigKind};

use super::alter_configs::{broker_scope, null_values_error, preprocess};
use super::describe_configs::{RESOURCE_BROKER, RESOURCE_GROUP, RESOURCE_TOPIC};
use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Applies one operation to a set of overrides; `current` supplies the
/// effective value for APPEND/SUBTRACT when the resource has no override yet.
pub fn apply_op(
    overrides: &mut BTreeMap<String, String>,
    name: &str,
    op: i8,
    value: Option<&str>,
    is_list: bool,
    current: impl Fn(&str) -> Option<String>,
) -> Result<(), ApiError> {
    let invalid = |msg: String| Err(ApiError::new(ResponseError::InvalidConfig, msg));
    match op {
        OP_SET => match value {
            Some(v) => {
                overrides.insert(name.to_string(), v.to_string());
            }
            None => return invalid(format!("Null value not supported for {name}")),
        },
        OP_DELETE => {
            overrides.remove(name);
        }
        OP_APPEND | OP_SUBTRACT => {
            if !is_list {
                return invalid(format!("Config {name} is not a list: APPEND and SUBTRACT apply to list configs only"));
            }
            let base = overrides.get(name).cloned().or_else(|| current(name)).unwrap_or_default();
            let mut items: Vec<String> = base.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            let given: Vec<String> = value.unwrap_or("").split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            if op == OP_APPEND {
                for g in given {
                    if !items.contains(&g) {
                        items.push(g);
                    }
                }
            } else {
                items.retain(|i| !given.contains(i));
            }
            overrides.insert(name.to_string(), items.join(","));
        }
        other => return Err(ApiError::new(ResponseError::InvalidRequest, format!("Unknown config operation {other}"))),
    }
    Ok(())
}

/// The overrides of one resource after the request's operations.
fn apply_ops(
    mut overrides: BTreeMap<String, String>,
    configs: &[AlterableConfig],
    is_list: impl Fn(&str) -> bool,
    current: impl Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, ApiError> {
    for c in configs {
        apply_op(&mut overrides, &c.name, c.config_operation, c.value.as_deref(), is_list(&c.name), &current)?;
    }
    Ok(overrides)
}

fn alter_resource(broker: &Broker, r: &AlterConfigsResource, validate_only: bool) -> Result<(), ApiError> {
    let nulls: Vec<&str> = r.configs.iter().filter(|c| c.config_operation != OP_DELETE && c.value.is_none()).map(|c| c.name.as_str()).collect();
    null_values_error(&nulls)?;
    let name = r.resource_name.as_str();
    match r.resource_type {
        RESOURCE_TOPIC => {
            let topic = broker
                .replicas
                .topic(name)
                .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")))?;
            let effective = broker.replicas.effective_log_config(&topic);
            let is_list = |n: &str| topic_config_defs().iter().any(|d| d.name == n && d.kind == ConfigKind::List);
            let current = |n: &str| effective.as_ref().ok().and_then(|e| e.value_of(n));
            let overrides = apply_ops(topic.config_overrides(), &r.configs, is_list, current)?;
            crate::cluster::set_topic_configs_blocking(broker, name, overrides, validate_only)
        }
        RESOURCE_BROKER => {
            let scope = broker_scope(broker, name)?;
            let dynamic = broker.replicas.dynamic_configs();
            let current_configs = dynamic.snapshot().broker_scope(scope).clone();
            let defaults = dynamic.static_config().describe();
            let current = |n: &str| defaults.iter().find(|(k, _, _)| k == n).map(|(_, v, _)| v.clone());
            let configs = apply_ops(current_configs, &r.configs, |n| n == "log.cleanup.policy", current)?;
            broker.replicas.set_broker_configs(scope, configs, validate_only)
        }
        RESOURCE_GROUP => {
            let configs = apply_ops(broker.replicas.dynamic_configs().group_configs(name), &r.configs, |_| false, |_| None)?;
            broker.replicas.set_group_configs(name, configs, validate_only)
        }
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("Unknown resource type {other}"))),
    }
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: IncrementalAlterConfigsRequest) -> Reply<IncrementalAlterConfigsResponse> {
    let broker = broker.clone();
    let validate_only = req.validate_only;
    let authz = Authz::new(&broker, ctx);
    let responses = tokio::task::spawn_blocking(move || {
        let checks = preprocess(req.resources.iter().map(|r| (r.resource_type, r.resource_name.as_str(), r.configs.iter().map(|c| c.name.as_str()).collect())));
        req.resources
            .iter()
            .zip(checks)
            .map(|(r, check)| {
                let outcome = match check {
                    Some(e) => Err(e),
                    None if authz.config_resource(operation::ALTER_CONFIGS, r.resource_type, r.resource_name.as_str()).is_err() => {
                        authz.config_resource(operation::ALTER_CONFIGS, r.resource_type, r.resource_name.as_str())
                    }
                    None => alter_resource(&broker, r, validate_only),
                };
                // Kafka answers error_message null on success.
                let response = AlterConfigsResourceResponse::default()
                    .with_resource_type(r.resource_type)
                    .with_resource_name(r.resource_name.clone())
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
    Reply::Now(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_delete_append_subtract() {
        let mut o = BTreeMap::new();
        apply_op(&mut o, "retention.ms", OP_SET, Some("1000"), false, |_| None).unwrap();
        assert_eq!(o.get("retention.ms").map(String::as_str), Some("1000"));
        apply_op(&mut o, "cleanup.policy", OP_APPEND, Some("compact"), true, |_| Some("delete".into())).unwrap();
        assert_eq!(o.get("cleanup.policy").map(String::as_str), Some("delete,compact"));
        apply_op(&mut o, "cleanup.policy", OP_SUBTRACT, Some("delete"), true, |_| None).unwrap();
        assert_eq!(o.get("cleanup.policy").map(String::as_str), Some("compact"));
        apply_op(&mut o, "retention.ms", OP_DELETE, None, false, |_| None).unwrap();
        assert!(!o.contains_key("retention.ms"));
        assert!(apply_op(&mut o, "retention.ms", OP_APPEND, Some("5"), false, |_| None).is_err());
    }
}
