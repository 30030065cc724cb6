//! DescribeConfigs (key 32): topic configs (every config Kafka defines, with
//! its effective value and where it comes from) and broker configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::config::{topic_config_defs, ConfigKind};

use super::{Reply, RequestContext};
use crate::Broker;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;

pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;

/// The broker config a topic config falls back to, as Kafka names it.
pub fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "cleanup.policy" => "log.cleanup.policy",
        "index.interval.bytes" => "log.index.interval.bytes",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.insync.replicas" => "min.insync.replicas",
        "preallocate" => "log.preallocate",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "segment.ms" => "log.roll.ms",
        _ => return None,
    })
}

/// The broker default a topic config falls back to, as Kafka lists it among
/// the synonyms. Kafka's `log.retention.ms` and `log.roll.ms` have no default
/// of their own: theirs is the hour-based synonym, so Kafka names that one.
fn default_synonym<'a>(topic_config: &'a str, broker_name: Option<&'static str>, default: &'a str) -> (&'a str, &'a str) {
    match topic_config {
        "retention.ms" => ("log.retention.hours", "168"),
        "segment.ms" => ("log.roll.hours", "168"),
        _ => (broker_name.unwrap_or(topic_config), default),
    }
}

/// Kafka's type of a broker config (UNKNOWN, 0, for one Runnel does not know).
fn broker_config_type(name: &str) -> i8 {
    let kind = match name {
        "auto.create.topics.enable" | "log.preallocate" => ConfigKind::Boolean,
        "advertised.listeners" | "listeners" | "log.dirs" | "log.message.timestamp.type" => ConfigKind::String,
        "log.cleanup.policy" => ConfigKind::List,
        "log.retention.bytes" | "log.retention.check.interval.ms" | "log.retention.ms" | "log.roll.ms" | "offsets.retention.check.interval.ms" => ConfigKind::Long,
        "broker.id"
        | "node.id"
        | "default.replication.factor"
        | "group.consumer.heartbeat.interval.ms"
        | "group.consumer.session.timeout.ms"
        | "group.initial.rebalance.delay.ms"
        | "group.max.session.timeout.ms"
        | "group.min.session.timeout.ms"
        | "log.index.interval.bytes"
        | "log.index.size.max.bytes"
        | "log.segment.bytes"
        | "log.retention.hours"
        | "log.retention.minutes"
        | "log.roll.hours"
        | "message.max.bytes"
        | "min.insync.replicas"
        | "num.partitions"
        | "offsets.retention.minutes"
        | "offsets.topic.num.partitions"
        | "socket.request.max.bytes" => ConfigKind::Int,
        _ => return 0,
    };
    kind_code(kind)
}

fn kind_code(kind: ConfigKind) -> i8 {
    match kind {
        ConfigKind::Boolean => 1,
        ConfigKind::String => 2,
        ConfigKind::Int => 3,
        ConfigKind::Short => 4,
        ConfigKind::Long => 5,
        ConfigKind::Double => 6,
        ConfigKind::List => 7,
        ConfigKind::Class => 8,
        ConfigKind::Password => 9,
    }
}

/// One topic's configs as DescribeConfigs (and CreateTopics v5+) report them.
pub fn topic_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[StrBytes]>,
    include_synonyms: bool,
    include_documentation: bool,
) -> Result<Vec<DescribeConfigsResourceResult>, String> {
    let effective = broker.config.log_defaults.with_overrides(overrides).map_err(|e| e.to_string())?;
    let explicit_broker = &broker.config.explicit;
    let results = topic_config_defs()
        .iter()
        .filter(|def| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == def.name)))
        .map(|def| {
            let value = effective.value_of(def.name).unwrap_or_else(|| def.default.to_string());
            let broker_name = broker_synonym(def.name);
            let broker_value = broker_name.and_then(|b| explicit_broker.get(b).map(|v| (b, v.clone())));
            let source = if overrides.contains_key(def.name) {
                SOURCE_DYNAMIC_TOPIC
            } else if broker_value.is_some() {
                SOURCE_STATIC_BROKER
            } else {
                SOURCE_DEFAULT
            };
            let mut synonyms = Vec::new();
            if include_synonyms {
                if let Some(v) = overrides.get(def.name) {
                    synonyms.push(synonym(def.name, v, SOURCE_DYNAMIC_TOPIC));
                }
                if let Some((name, v)) = &broker_value {
                    synonyms.push(synonym(name, v, SOURCE_STATIC_BROKER));
                }
                let (default_name, default_value) = default_synonym(def.name, broker_name, def.default);
                synonyms.push(synonym(default_name, default_value, SOURCE_DEFAULT));
            }
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(def.name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_config_source(source)
                .with_synonyms(synonyms)
                .with_config_type(kind_code(def.kind))
                .with_documentation(include_documentation.then(|| StrBytes::from_static_str(def.doc)))
        })
        .collect();
    Ok(results)
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default()
        .with_name(StrBytes::from_string(name.to_string()))
        .with_value(Some(StrBytes::from_string(value.to_string())))
        .with_source(source)
}

fn broker_configs(broker: &Broker, keys: Option<&[StrBytes]>, include_synonyms: bool) -> Vec<DescribeConfigsResourceResult> {
    broker
        .config
        .describe()
        .into_iter()
        .filter(|(name, _, _)| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == name)))
        .map(|(name, value, explicit)| {
            let source = if explicit { SOURCE_STATIC_BROKER } else { SOURCE_DEFAULT };
            let synonyms = if include_synonyms { vec![synonym(&name, &value, source)] } else { Vec::new() };
            let name_for_type = name.clone();
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_string(name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(true)
                .with_config_source(source)
                .with_config_type(broker_config_type(&name_for_type))
                .with_synonyms(synonyms)
        })
        .collect()
}

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: DescribeConfigsRequest) -> Reply<DescribeConfigsResponse> {
    let results = req
        .resources
        .into_iter()
        .map(|r| {
            // Kafka 4.3 answers error_message "" on success (the crate's default), checked by the conformance suite.
            let result = DescribeConfigsResult::default()
                .with_resource_type(r.resource_type)
                .with_resource_name(r.resource_name.clone());
            // Kafka answers every config for a null and for an empty key list alike.
            let keys = r.configuration_keys.as_deref().filter(|keys| !keys.is_empty());
            let error = |code: ResponseError, msg: String| result.clone().with_error_code(code.code()).with_error_message(Some(StrBytes::from_string(msg)));
            match r.resource_type {
                RESOURCE_TOPIC => match broker.replicas.topic(&r.resource_name) {
                    None => error(ResponseError::UnknownTopicOrPartition, format!("Topic '{}' does not exist.", r.resource_name)),
                    Some(topic) => match topic_configs(broker, &topic.config_overrides(), keys, req.include_synonyms, req.include_documentation) {
                        Ok(configs) => result.clone().with_configs(configs),
                        Err(e) => error(ResponseError::InvalidConfig, e),
                    },
                },
                RESOURCE_BROKER => {
                    let name = r.resource_name.as_str();
                    if name.is_empty() || name == broker.config.node_id.to_string() {
                        result.clone().with_configs(broker_configs(broker, keys, req.include_synonyms))
                    } else {
                        error(ResponseError::InvalidRequest, format!("Unexpected broker id, expected {} but received {name}", broker.config.node_id))
                    }
                }
                RESOURCE_BROKER_LOGGER => result.clone(),
                other => error(ResponseError::InvalidRequest, format!("Unsupported resource type {other}")),
            }
        })
        .collect();
    Reply::Now(DescribeConfigsResponse::default().with_results(results))
}
