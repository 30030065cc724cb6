//! DescribeConfigs (key 32): topic configs (every config Kafka defines, with
//! its effective value and where it comes from) and broker configs.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::config::{topic_config_defs, ConfigKind};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::config::{is_supported_broker_config, BROKER_CONFIGS};
use crate::dynamic_config::{broker_config_synonyms, group_config_default, is_dynamic_broker_config, DynamicConfigSet, GROUP_CONFIGS};
use crate::replica_manager::validate_topic_name;
use crate::Broker;

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_BROKER_LOGGER: i8 = 8;
pub const RESOURCE_GROUP: i8 = 32;

pub const SOURCE_DYNAMIC_TOPIC: i8 = 1;
pub const SOURCE_DYNAMIC_BROKER: i8 = 2;
pub const SOURCE_DYNAMIC_DEFAULT_BROKER: i8 = 3;
pub const SOURCE_STATIC_BROKER: i8 = 4;
pub const SOURCE_DEFAULT: i8 = 5;
pub const SOURCE_GROUP: i8 = 8;

/// The broker config a topic config falls back to, as Kafka names it
/// (`ServerTopicConfigSynonyms.TOPIC_CONFIG_SYNONYMS`).
pub fn broker_synonym(topic_config: &str) -> Option<&'static str> {
    Some(match topic_config {
        "cleanup.policy" => "log.cleanup.policy",
        "compression.gzip.level" => "compression.gzip.level",
        "compression.lz4.level" => "compression.lz4.level",
        "compression.type" => "compression.type",
        "compression.zstd.level" => "compression.zstd.level",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "file.delete.delay.ms" => "log.segment.delete.delay.ms",
        "flush.messages" => "log.flush.interval.messages",
        "flush.ms" => "log.flush.interval.ms",
        "index.interval.bytes" => "log.index.interval.bytes",
        "local.retention.bytes" => "log.local.retention.bytes",
        "local.retention.ms" => "log.local.retention.ms",
        "max.compaction.lag.ms" => "log.cleaner.max.compaction.lag.ms",
        "max.message.bytes" => "message.max.bytes",
        "message.timestamp.after.max.ms" => "log.message.timestamp.after.max.ms",
        "message.timestamp.before.max.ms" => "log.message.timestamp.before.max.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "min.insync.replicas" => "min.insync.replicas",
        "preallocate" => "log.preallocate",
        "retention.bytes" => "log.retention.bytes",
        "retention.ms" => "log.retention.ms",
        "segment.bytes" => "log.segment.bytes",
        "segment.index.bytes" => "log.index.size.max.bytes",
        "segment.jitter.ms" => "log.roll.jitter.ms",
        "segment.ms" => "log.roll.ms",
        "unclean.leader.election.enable" => "unclean.leader.election.enable",
        _ => return None,
    })
}

/// Kafka's synonyms of a broker config, most specific first; the topic-only
/// ones Runnel does not implement included, so topic configs list them as Kafka does.
fn synonym_names(name: &str) -> Vec<&str> {
    match name {
        "log.roll.jitter.ms" | "log.roll.jitter.hours" => vec!["log.roll.jitter.ms", "log.roll.jitter.hours"],
        "log.flush.interval.ms" => vec!["log.flush.interval.ms", "log.flush.scheduler.interval.ms"],
        other => broker_config_synonyms(other),
    }
}

/// Broker configs whose Kafka default is null: the time-based synonym with the
/// coarser unit carries the default instead.
const NULL_DEFAULT_BROKER_CONFIGS: &[&str] =
    &["log.retention.ms", "log.retention.minutes", "log.roll.ms", "log.roll.jitter.ms", "log.flush.interval.ms", "advertised.listeners"];

/// Kafka's default of a broker config, as DescribeConfigs lists it in synonyms.
fn broker_default(name: &str) -> Option<String> {
    if NULL_DEFAULT_BROKER_CONFIGS.contains(&name) {
        return None;
    }
    if let Some(def) = BROKER_CONFIGS.iter().find(|d| d.name == name) {
        return (!def.default.starts_with('(')).then(|| def.default.to_string());
    }
    match name {
        "log.roll.jitter.hours" => Some("0".into()),
        "log.flush.scheduler.interval.ms" => Some(i64::MAX.to_string()),
        // A topic config's broker synonym that Runnel does not implement: its default is the topic's.
        _ => topic_config_defs().iter().find(|d| broker_synonym(d.name) == Some(name)).map(|d| d.default.to_string()),
    }
}

/// Where a broker config's value can come from, in Kafka's precedence order.
struct Tiers {
    dynamic: DynamicConfigSet,
    static_explicit: BTreeMap<String, String>,
}

impl Tiers {
    fn of(broker: &Broker) -> Tiers {
        let dynamic = broker.replicas.dynamic_configs();
        Tiers { dynamic: dynamic.snapshot(), static_explicit: dynamic.static_config().explicit.clone() }
    }

    fn lookup(&self, source: i8, name: &str) -> Option<String> {
        match source {
            SOURCE_DYNAMIC_BROKER => self.dynamic.broker.get(name).cloned(),
            SOURCE_DYNAMIC_DEFAULT_BROKER => self.dynamic.cluster_default.get(name).cloned(),
            SOURCE_STATIC_BROKER => self.static_explicit.get(name).cloned(),
            _ => broker_default(name),
        }
    }

    /// The value of `name` itself from the highest-precedence source that sets it.
    fn value(&self, name: &str) -> Option<String> {
        [SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_STATIC_BROKER, SOURCE_DEFAULT]
            .into_iter()
            .find_map(|source| self.lookup(source, name))
    }

    /// Kafka's `ConfigHelper.configSynonyms`: every synonym set in each source,
    /// sources in precedence order, from the first entry for `name` itself on.
    fn synonyms(&self, name: &str) -> Vec<DescribeConfigsSynonym> {
        let names = synonym_names(name);
        let mut all = Vec::new();
        for source in [SOURCE_DYNAMIC_BROKER, SOURCE_DYNAMIC_DEFAULT_BROKER, SOURCE_STATIC_BROKER, SOURCE_DEFAULT] {
            for n in &names {
                if let Some(value) = self.lookup(source, n) {
                    all.push(synonym(n, &value, source));
                }
            }
        }
        let first = all.iter().position(|s| s.name.as_str() == name).unwrap_or(all.len());
        all.split_off(first)
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
        | "group.consumer.max.heartbeat.interval.ms"
        | "group.consumer.max.session.timeout.ms"
        | "group.consumer.min.heartbeat.interval.ms"
        | "group.consumer.min.session.timeout.ms"
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
    let effective = broker.replicas.dynamic_configs().effective().log_defaults.with_overrides(overrides).map_err(|e| e.to_string())?;
    let tiers = Tiers::of(broker);
    let results = topic_config_defs()
        .iter()
        .filter(|def| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == def.name)))
        .map(|def| {
            let value = effective.value_of(def.name).unwrap_or_else(|| def.default.to_string());
            let mut synonyms = Vec::new();
            if let Some(v) = overrides.get(def.name) {
                synonyms.push(synonym(def.name, v, SOURCE_DYNAMIC_TOPIC));
            }
            if let Some(broker_name) = broker_synonym(def.name) {
                synonyms.extend(tiers.synonyms(broker_name));
            }
            let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.source);
            if !include_synonyms {
                synonyms.clear();
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

/// Broker configs whose value Kafka reports only where it is set (null otherwise).
const TIME_SYNONYMS: &[&str] = &["log.retention.hours", "log.retention.minutes", "log.retention.ms", "log.roll.hours", "log.roll.ms"];

/// The configs of this broker's BROKER resource: every config with its
/// effective value, and where it comes from.
fn broker_configs(broker: &Broker, keys: Option<&[StrBytes]>, include_synonyms: bool, include_documentation: bool) -> Vec<DescribeConfigsResourceResult> {
    let tiers = Tiers::of(broker);
    let mut values: BTreeMap<String, Option<String>> =
        broker.replicas.dynamic_configs().effective().describe().into_iter().map(|(name, value, _)| (name, Some(value))).collect();
    for name in tiers.dynamic.cluster_default.keys().chain(tiers.dynamic.broker.keys()) {
        values.entry(name.clone()).or_insert(None);
    }
    for name in TIME_SYNONYMS {
        values.insert(name.to_string(), None);
    }
    values
        .into_iter()
        .filter(|(name, _)| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == name)))
        .map(|(name, value)| {
            let mut synonyms = tiers.synonyms(&name);
            // Where Runnel has no value of its own to report, the highest-precedence value of `name` itself.
            let value = value.or_else(|| tiers.value(&name));
            let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.source);
            if !include_synonyms {
                synonyms.clear();
            }
            let read_only = !(is_dynamic_broker_config(&name) || tiers.dynamic.cluster_default.contains_key(&name) || tiers.dynamic.broker.contains_key(&name));
            let documentation = include_documentation
                .then(|| BROKER_CONFIGS.iter().find(|d| d.name == name).map(|d| StrBytes::from_static_str(d.doc)))
                .flatten();
            DescribeConfigsResourceResult::default()
                .with_config_type(broker_config_type(&name))
                .with_name(StrBytes::from_string(name))
                .with_value(value.map(StrBytes::from_string))
                .with_read_only(read_only)
                .with_config_source(source)
                .with_synonyms(synonyms)
                .with_documentation(documentation)
        })
        .collect()
}

/// The cluster-wide default BROKER resource (""): only the dynamic cluster defaults, as Kafka lists them.
fn cluster_default_configs(broker: &Broker, keys: Option<&[StrBytes]>, include_synonyms: bool, include_documentation: bool) -> Vec<DescribeConfigsResourceResult> {
    let tiers = Tiers::of(broker);
    tiers
        .dynamic
        .cluster_default
        .iter()
        .filter(|(name, _)| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == name.as_str())))
        .map(|(name, value)| {
            let synonyms: Vec<_> = tiers.synonyms(name).into_iter().filter(|s| s.source == SOURCE_DYNAMIC_DEFAULT_BROKER).collect();
            let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.source);
            let documentation = include_documentation
                .then(|| BROKER_CONFIGS.iter().find(|d| d.name == name).map(|d| StrBytes::from_static_str(d.doc)))
                .flatten();
            DescribeConfigsResourceResult::default()
                .with_config_type(broker_config_type(name))
                .with_name(StrBytes::from_string(name.clone()))
                .with_value(Some(StrBytes::from_string(value.clone())))
                .with_read_only(!is_dynamic_broker_config(name) && is_supported_broker_config(name))
                .with_config_source(source)
                .with_synonyms(if include_synonyms { synonyms } else { Vec::new() })
                .with_documentation(documentation)
        })
        .collect()
}

/// One group's configs (KIP-848): its own value, else the broker's.
pub fn group_configs(broker: &Broker, group_id: &str, keys: Option<&[StrBytes]>, include_synonyms: bool, include_documentation: bool) -> Vec<DescribeConfigsResourceResult> {
    let dynamic = broker.replicas.dynamic_configs();
    let own = dynamic.group_configs(group_id);
    let effective = dynamic.effective();
    let tiers = Tiers::of(broker);
    GROUP_CONFIGS
        .iter()
        .filter(|(name, _)| keys.is_none_or(|k| k.iter().any(|k| k.as_str() == *name)))
        .map(|(name, broker_name)| {
            let value = own.get(*name).cloned().or_else(|| group_config_default(&effective, name).map(|v| v.to_string())).unwrap_or_default();
            let mut synonyms = Vec::new();
            if let Some(v) = own.get(*name) {
                synonyms.push(synonym(name, v, SOURCE_GROUP));
            }
            synonyms.extend(tiers.synonyms(broker_name));
            let source = synonyms.first().map_or(SOURCE_DEFAULT, |s| s.source);
            if !include_synonyms {
                synonyms.clear();
            }
            let documentation = include_documentation
                .then(|| BROKER_CONFIGS.iter().find(|d| d.name == *broker_name).map(|d| StrBytes::from_static_str(d.doc)))
                .flatten();
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(false)
                .with_config_source(source)
                .with_config_type(kind_code(ConfigKind::Int))
                .with_synonyms(synonyms)
                .with_documentation(documentation)
        })
        .collect()
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DescribeConfigsRequest) -> Reply<DescribeConfigsResponse> {
    let (synonyms, documentation) = (req.include_synonyms, req.include_documentation);
    let authz = Authz::new(broker, ctx);
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
            let name = r.resource_name.as_str();
            if let Err(refusal) = authz.config_resource(operation::DESCRIBE_CONFIGS, r.resource_type, name) {
                return result.clone().with_error_code(refusal.code()).with_error_message(None);
            }
            match r.resource_type {
                RESOURCE_TOPIC => match (validate_topic_name(name), broker.replicas.topic(name)) {
                    (Err(e), _) => error(ResponseError::InvalidTopicException, e.message.unwrap_or_default()),
                    (Ok(()), None) => error(ResponseError::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")),
                    (Ok(()), Some(topic)) => match topic_configs(broker, &topic.config_overrides(), keys, synonyms, documentation) {
                        Ok(configs) => result.clone().with_configs(configs),
                        Err(e) => error(ResponseError::InvalidConfig, e),
                    },
                },
                RESOURCE_BROKER if name.is_empty() => result.clone().with_configs(cluster_default_configs(broker, keys, synonyms, documentation)),
                RESOURCE_BROKER => match name.parse::<i32>() {
                    Ok(id) if id == broker.config.node_id => result.clone().with_configs(broker_configs(broker, keys, synonyms, documentation)),
                    Ok(_) => error(
                        ResponseError::InvalidRequest,
                        format!("Unexpected broker id, expected {} or empty string, but received {name}", broker.config.node_id),
                    ),
                    Err(_) => error(ResponseError::InvalidRequest, format!("Broker id must be an integer, but it is: {name}")),
                },
                RESOURCE_BROKER_LOGGER => result.clone(),
                RESOURCE_GROUP if name.is_empty() => error(ResponseError::InvalidRequest, "Group name must not be empty".into()),
                RESOURCE_GROUP => result.clone().with_configs(group_configs(broker, name, keys, synonyms, documentation)),
                other => error(ResponseError::InvalidRequest, format!("Unsupported resource type {other}")),
            }
        })
        .collect();
    Reply::Now(DescribeConfigsResponse::default().with_results(results))
}
