//! Dynamic configs: broker configs changed at runtime by AlterConfigs /
//! IncrementalAlterConfigs (Kafka's `DynamicBrokerConfig`), per broker
//! (resource name = the node id) and cluster-wide (resource name ""), and
//! KIP-848 group configs (GROUP resource).
//!
//! Precedence, highest first, as in Kafka: the per-broker dynamic config,
//! the cluster-wide dynamic default, the static config (`--set`, `--config`),
//! the default. Everything is persisted as one value of the storage
//! `MetaStore` ([`DynamicConfigs::load`], [`DynamicConfigs::persist`]); that
//! pair is the only place to change when the configs move into the
//! replicated metadata log.

use std::collections::BTreeMap;
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use parking_lot::RwLock;
use runnel_storage::config::LogConfig;
use runnel_storage::{MetaStore, StorageError};

use crate::config::{is_supported_broker_config, BrokerConfig};
use crate::error::ApiError;

/// The MetaStore key holding every dynamic config (JSON of [`DynamicConfigSet`]).
const STORE_KEY: &str = "dynamic-configs";

/// Broker configs Kafka lets AlterConfigs change at runtime (its
/// `DynamicLogConfig` list) and Runnel applies: they are the defaults of
/// topic configs, so a topic without an override of its own follows them.
/// As in Kafka, only the millisecond form of a time is dynamic (not `log.retention.hours`).
pub const DYNAMIC_BROKER_CONFIGS: &[&str] = &[
    "log.cleanup.policy",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    // Kafka's LogCleaner reconfigurable; Runnel runs one cleaner whatever the value.
    "log.cleaner.threads",
    "log.message.timestamp.type",
    "log.preallocate",
    "log.retention.bytes",
    "log.retention.ms",
    "log.roll.ms",
    "log.segment.bytes",
    "message.max.bytes",
    "min.insync.replicas",
];

/// Is `name` a broker config that can be changed at runtime?
pub fn is_dynamic_broker_config(name: &str) -> bool {
    DYNAMIC_BROKER_CONFIGS.contains(&name)
}

/// Kafka's synonyms of a broker config, most specific first
/// (`DynamicBrokerConfig.brokerConfigSynonyms`).
pub fn broker_config_synonyms(name: &str) -> Vec<&str> {
    match name {
        "log.roll.ms" | "log.roll.hours" => vec!["log.roll.ms", "log.roll.hours"],
        "log.retention.ms" | "log.retention.minutes" | "log.retention.hours" => {
            vec!["log.retention.ms", "log.retention.minutes", "log.retention.hours"]
        }
        other => vec![other],
    }
}

/// The topic config a dynamic broker config is the default of, for validation.
fn topic_config_of(broker_config: &str) -> Option<&'static str> {
    Some(match broker_config {
        "log.cleanup.policy" => "cleanup.policy",
        "log.index.interval.bytes" => "index.interval.bytes",
        "log.index.size.max.bytes" => "segment.index.bytes",
        "log.message.timestamp.type" => "message.timestamp.type",
        "log.preallocate" => "preallocate",
        "log.retention.bytes" => "retention.bytes",
        "log.retention.ms" => "retention.ms",
        "log.roll.ms" => "segment.ms",
        "log.segment.bytes" => "segment.bytes",
        "message.max.bytes" => "max.message.bytes",
        "min.insync.replicas" => "min.insync.replicas",
        _ => return None,
    })
}

/// Which set of dynamic broker configs a BROKER resource names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerScope {
    /// Resource name "": the cluster-wide default.
    ClusterDefault,
    /// Resource name = this broker's node id.
    ThisBroker,
}

/// Every dynamic config, as persisted.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DynamicConfigSet {
    #[serde(default)]
    pub cluster_default: BTreeMap<String, String>,
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
    /// Group id -> its group configs (KIP-848).
    #[serde(default)]
    pub groups: BTreeMap<String, BTreeMap<String, String>>,
}

impl DynamicConfigSet {
    pub fn broker_scope(&self, scope: BrokerScope) -> &BTreeMap<String, String> {
        match scope {
            BrokerScope::ClusterDefault => &self.cluster_default,
            BrokerScope::ThisBroker => &self.broker,
        }
    }
}

/// Checks one dynamic broker config: a name Runnel knows but cannot change
/// at runtime is refused as Kafka refuses it; a name Runnel does not know is
/// kept (Kafka allows custom names); a value must be what the static config
/// and the topic config it is the default of accept.
pub fn validate_broker_config(name: &str, value: &str) -> Result<(), ApiError> {
    if !is_dynamic_broker_config(name) {
        if is_supported_broker_config(name) {
            return Err(ApiError::new(ResponseError::InvalidRequest, format!("Cannot update these configs dynamically: Set({name})")));
        }
        return Ok(());
    }
    let invalid = |reason: String| ApiError::new(ResponseError::InvalidRequest, format!("Invalid value {value} for configuration {name}: {reason}"));
    BrokerConfig::default().apply(name, value.trim()).map_err(|e| invalid(e.to_string()))?;
    if let Some(topic_config) = topic_config_of(name) {
        LogConfig::validate(topic_config, value).map_err(|e| invalid(e.reason))?;
    }
    Ok(())
}

/// The effective broker config: the static one with the dynamic configs on top.
fn effective_config(static_config: &BrokerConfig, set: &DynamicConfigSet) -> BrokerConfig {
    let mut config = static_config.clone();
    let mut merged = static_config.explicit.clone();
    for (name, value) in set.cluster_default.iter().chain(&set.broker) {
        merged.insert(name.clone(), value.clone());
        if is_dynamic_broker_config(name) {
            if let Err(e) = config.apply(name, value) {
                tracing::error!(config = name, value, error = %e, "dynamic broker config not applied");
            }
        }
    }
    // Kafka resolves the time-based synonyms over the merged configs: ms, then minutes, then hours.
    let first = |names: &[&'static str]| names.iter().find_map(|n| merged.get(*n).map(|v| (*n, v.clone())));
    if let Some((name, value)) = first(&["log.retention.ms", "log.retention.minutes", "log.retention.hours"]) {
        let _ = config.apply(name, &value);
    }
    if let Some((name, value)) = first(&["log.roll.ms", "log.roll.hours"]) {
        let _ = config.apply(name, &value);
    }
    config
}

/// The dynamic configs of this broker and the effective config they make.
pub struct DynamicConfigs {
    static_config: Arc<BrokerConfig>,
    state: RwLock<(DynamicConfigSet, Arc<BrokerConfig>)>,
}

impl DynamicConfigs {
    /// Loads the persisted dynamic configs; an invalid one is dropped with an
    /// ERROR (Kafka ignores invalid dynamic configs the same way).
    pub fn load(static_config: Arc<BrokerConfig>, meta: &MetaStore) -> Result<DynamicConfigs, StorageError> {
        let mut set: DynamicConfigSet = match meta.get_value(STORE_KEY)? {
            None => DynamicConfigSet::default(),
            Some(json) => serde_json::from_str(&json).map_err(|e| StorageError::Corrupt {
                path: format!("meta value {STORE_KEY}").into(),
                reason: e.to_string(),
            })?,
        };
        for (scope, map) in [("cluster-default", &mut set.cluster_default), ("broker", &mut set.broker)] {
            map.retain(|name, value| match validate_broker_config(name, value) {
                Ok(()) => true,
                Err(e) => {
                    tracing::error!(scope, config = %name, value = %value, error = %e, "invalid dynamic broker config ignored");
                    false
                }
            });
        }
        let effective = Arc::new(effective_config(&static_config, &set));
        Ok(DynamicConfigs { static_config, state: RwLock::new((set, effective)) })
    }

    fn persist(meta: &MetaStore, set: &DynamicConfigSet) -> Result<(), ApiError> {
        let json = serde_json::to_string(set).map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
        meta.put_value(STORE_KEY, &json).map_err(|e| ApiError::from(&e))
    }

    /// The static config alone (`--set`, `--config`, defaults).
    pub fn static_config(&self) -> &BrokerConfig {
        &self.static_config
    }

    /// The effective broker config (static + dynamic).
    pub fn effective(&self) -> Arc<BrokerConfig> {
        self.state.read().1.clone()
    }

    /// The current dynamic configs.
    pub fn snapshot(&self) -> DynamicConfigSet {
        self.state.read().0.clone()
    }

    /// Replaces the dynamic configs of one BROKER scope (validated first) and
    /// persists them; returns the new effective config. The caller serializes
    /// changes and applies the effective config to the logs.
    pub fn set_broker_configs(
        &self,
        meta: &MetaStore,
        scope: BrokerScope,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Option<Arc<BrokerConfig>>, ApiError> {
        for (name, value) in &configs {
            validate_broker_config(name, value)?;
        }
        if validate_only {
            return Ok(None);
        }
        let mut set = self.state.read().0.clone();
        match scope {
            BrokerScope::ClusterDefault => set.cluster_default = configs,
            BrokerScope::ThisBroker => set.broker = configs,
        }
        Self::persist(meta, &set)?;
        let effective = Arc::new(effective_config(&self.static_config, &set));
        *self.state.write() = (set, effective.clone());
        Ok(Some(effective))
    }

    /// One group's own configs (KIP-848), empty when it has none.
    pub fn group_configs(&self, group_id: &str) -> BTreeMap<String, String> {
        self.state.read().0.groups.get(group_id).cloned().unwrap_or_default()
    }

    /// Replaces one group's configs (validated first) and persists them.
    pub fn set_group_configs(
        &self,
        meta: &MetaStore,
        group_id: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        validate_group_configs(&self.effective(), &configs)?;
        if validate_only {
            return Ok(());
        }
        let mut set = self.state.read().0.clone();
        if configs.is_empty() {
            set.groups.remove(group_id);
        } else {
            set.groups.insert(group_id.to_string(), configs);
        }
        Self::persist(meta, &set)?;
        self.state.write().0 = set;
        Ok(())
    }

    /// A consumer-protocol group's session timeout: its own config, else the broker's.
    pub fn consumer_session_timeout_ms(&self, group_id: &str) -> i32 {
        self.group_value(group_id, "consumer.session.timeout.ms").unwrap_or_else(|| self.effective().group_consumer_session_timeout_ms)
    }

    /// A consumer-protocol group's heartbeat interval: its own config, else the broker's.
    pub fn consumer_heartbeat_interval_ms(&self, group_id: &str) -> i32 {
        self.group_value(group_id, "consumer.heartbeat.interval.ms")
            .unwrap_or_else(|| self.effective().group_consumer_heartbeat_interval_ms)
    }

    fn group_value(&self, group_id: &str, name: &str) -> Option<i32> {
        self.state.read().0.groups.get(group_id)?.get(name)?.parse().ok()
    }
}

/// The group configs Runnel supports (KIP-848 consumer groups; Kafka 4.3 also
/// has `share.*` and `streams.*` ones, for group types Runnel does not have),
/// each with the broker config it defaults to, in Kafka's order.
pub const GROUP_CONFIGS: &[(&str, &str)] =
    &[("consumer.session.timeout.ms", "group.consumer.session.timeout.ms"), ("consumer.heartbeat.interval.ms", "group.consumer.heartbeat.interval.ms")];

/// A group's effective value of a group config: its own, else the broker's.
pub fn group_config_default(broker: &BrokerConfig, name: &str) -> Option<i32> {
    match name {
        "consumer.heartbeat.interval.ms" => Some(broker.group_consumer_heartbeat_interval_ms),
        "consumer.session.timeout.ms" => Some(broker.group_consumer_session_timeout_ms),
        _ => None,
    }
}

/// Kafka's `GroupConfig.validate`: known names, integer values within the
/// broker's bounds, and a session timeout above the heartbeat interval.
pub fn validate_group_configs(broker: &BrokerConfig, configs: &BTreeMap<String, String>) -> Result<(), ApiError> {
    let invalid = |msg: String| Err(ApiError::new(ResponseError::InvalidConfig, msg));
    let mut values = BTreeMap::new();
    for (name, value) in configs {
        if group_config_default(broker, name).is_none() {
            if name.starts_with("share.") || name.starts_with("streams.") || name == "consumer.assignment.interval.ms" {
                return invalid(format!("Group config {name} is not supported by Runnel (no share or streams groups)"));
            }
            return invalid(format!("Unknown group config name: {name}"));
        }
        let Ok(v) = value.trim().parse::<i32>() else {
            return invalid(format!("Invalid value {value} for configuration {name}: Not a number of type INT"));
        };
        values.insert(name.as_str(), v);
    }
    let value = |name: &str| values.get(name).copied().or_else(|| group_config_default(broker, name)).unwrap_or(0);
    let heartbeat = value("consumer.heartbeat.interval.ms");
    let session = value("consumer.session.timeout.ms");
    if heartbeat < broker.group_consumer_min_heartbeat_interval_ms {
        return invalid("consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms".into());
    }
    if heartbeat > broker.group_consumer_max_heartbeat_interval_ms {
        return invalid("consumer.heartbeat.interval.ms must be less than or equal to group.consumer.max.heartbeat.interval.ms".into());
    }
    if session < broker.group_consumer_min_session_timeout_ms {
        return invalid("consumer.session.timeout.ms must be greater than or equal to group.consumer.min.session.timeout.ms".into());
    }
    if session > broker.group_consumer_max_session_timeout_ms {
        return invalid("consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms".into());
    }
    if session <= heartbeat {
        return invalid("consumer.session.timeout.ms must be greater than consumer.heartbeat.interval.ms".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn precedence_is_broker_then_cluster_default_then_static() {
        let mut static_config = BrokerConfig::default();
        static_config.set("message.max.bytes", "1000").unwrap();
        static_config.set("log.retention.hours", "1").unwrap();
        let dynamic = DynamicConfigSet {
            cluster_default: set(&[("message.max.bytes", "2000"), ("log.retention.ms", "5000")]),
            broker: set(&[("message.max.bytes", "3000")]),
            groups: BTreeMap::new(),
        };
        let effective = effective_config(&static_config, &dynamic);
        assert_eq!(effective.log_defaults.max_message_bytes, 3000);
        // log.retention.ms wins over log.retention.hours wherever each is set.
        assert_eq!(effective.log_defaults.retention_ms, 5000);
        let mut static_ms = BrokerConfig::default();
        static_ms.set("log.retention.ms", "7000").unwrap();
        assert_eq!(effective_config(&static_ms, &DynamicConfigSet::default()).log_defaults.retention_ms, 7000);
        assert!(validate_broker_config("log.retention.hours", "1").is_err(), "only the ms form is dynamic");
    }

    #[test]
    fn broker_config_validation() {
        assert!(validate_broker_config("log.retention.ms", "3600000").is_ok());
        assert!(validate_broker_config("log.cleaner.io.buffer.size", "1").is_ok(), "custom and unimplemented names are kept");
        for (name, value) in [("log.retention.ms", "soon"), ("log.cleanup.policy", "bogus"), ("log.segment.bytes", "10"), ("log.dirs", "/x")] {
            let e = validate_broker_config(name, value).unwrap_err();
            assert_eq!(e.code(), ResponseError::InvalidRequest.code(), "{name}={value}");
        }
    }

    #[test]
    fn group_config_validation() {
        let broker = BrokerConfig::default();
        assert!(validate_group_configs(&broker, &set(&[("consumer.session.timeout.ms", "50000")])).is_ok());
        for bad in [
            set(&[("consumer.session.timeout.ms", "1")]),
            set(&[("consumer.session.timeout.ms", "x")]),
            set(&[("consumer.heartbeat.interval.ms", "100")]),
            set(&[("no.such", "1")]),
            set(&[("share.session.timeout.ms", "50000")]),
        ] {
            let e = validate_group_configs(&broker, &bad).unwrap_err();
            assert_eq!(e.code(), ResponseError::InvalidConfig.code(), "{bad:?}");
        }
    }
}
