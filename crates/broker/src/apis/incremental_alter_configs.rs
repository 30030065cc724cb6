//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT on top
//! of a topic's current config overrides.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::config::{topic_config_defs, ConfigKind};

use super::alter_configs::alter_resource;
use super::{Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// Applies one operation to a set of overrides; `current` supplies the
/// effective value for APPEND/SUBTRACT when the topic has no override yet.
pub fn apply_op(
    overrides: &mut BTreeMap<String, String>,
    name: &str,
    op: i8,
    value: Option<&str>,
    current: impl Fn(&str) -> Option<String>,
) -> Result<(), ApiError> {
    let is_list = topic_config_defs().iter().any(|d| d.name == name && d.kind == ConfigKind::List);
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

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: IncrementalAlterConfigsRequest) -> Reply<IncrementalAlterConfigsResponse> {
    let broker = broker.clone();
    let validate_only = req.validate_only;
    let responses = tokio::task::spawn_blocking(move || {
        req.resources
            .into_iter()
            .map(|r| {
                let outcome = alter_resource(r.resource_type, || {
                    let topic = broker.replicas.topic(&r.resource_name).ok_or_else(|| {
                        ApiError::new(ResponseError::UnknownTopicOrPartition, format!("Topic '{}' does not exist.", r.resource_name))
                    })?;
                    let mut overrides = topic.config_overrides();
                    let effective = broker.replicas.effective_log_config(&topic);
                    for c in &r.configs {
                        let current = |n: &str| effective.as_ref().ok().and_then(|e| e.value_of(n));
                        apply_op(&mut overrides, &c.name, c.config_operation, c.value.as_deref(), current)?;
                    }
                    broker.replicas.set_topic_configs(&r.resource_name, overrides, validate_only)
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
    Reply::Now(IncrementalAlterConfigsResponse::default().with_responses(responses))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_delete_append_subtract() {
        let mut o = BTreeMap::new();
        apply_op(&mut o, "retention.ms", OP_SET, Some("1000"), |_| None).unwrap();
        assert_eq!(o.get("retention.ms").map(String::as_str), Some("1000"));
        apply_op(&mut o, "cleanup.policy", OP_APPEND, Some("compact"), |_| Some("delete".into())).unwrap();
        assert_eq!(o.get("cleanup.policy").map(String::as_str), Some("delete,compact"));
        apply_op(&mut o, "cleanup.policy", OP_SUBTRACT, Some("delete"), |_| None).unwrap();
        assert_eq!(o.get("cleanup.policy").map(String::as_str), Some("compact"));
        apply_op(&mut o, "retention.ms", OP_DELETE, None, |_| None).unwrap();
        assert!(!o.contains_key("retention.ms"));
        assert!(apply_op(&mut o, "retention.ms", OP_APPEND, Some("5"), |_| None).is_err());
    }
}
