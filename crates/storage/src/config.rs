//! Topic-level configuration with Kafka's names and defaults (the subset of
//! Kafka's `LogConfig` that Runnel honours, plus the names clients expect to see).

use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config {name}={value:?}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub value: String,
    pub reason: String,
}

/// The effective configuration of one partition log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes` (Kafka default 1 GiB).
    pub segment_bytes: u64,
    /// `segment.ms` (default 7 days).
    pub segment_ms: i64,
    /// `retention.ms` (default 7 days; -1 = unlimited).
    pub retention_ms: i64,
    /// `retention.bytes` (default -1 = unlimited).
    pub retention_bytes: i64,
    /// `segment.index.bytes` (default 10 MiB): caps the offset index size.
    pub segment_index_bytes: u64,
    /// `index.interval.bytes` (default 4096): bytes between sparse index entries.
    pub index_interval_bytes: u64,
    /// `max.message.bytes` (default 1048588): largest batch accepted.
    pub max_message_bytes: usize,
    /// `message.timestamp.type` (default CreateTime).
    pub timestamp_type: TimestampType,
    /// `cleanup.policy` (default "delete"); "compact" is stored and reported.
    pub cleanup_policy: String,
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: i32,
    /// `file.delete.delay.ms` (default 60000).
    pub file_delete_delay_ms: i64,
    /// `preallocate` (default false).
    pub preallocate: bool,
}

/// One entry of the topic config catalogue: its Kafka name, default as Kafka
/// prints it, and whether the value is sensitive / read-only.
#[derive(Debug, Clone)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub kind: ConfigKind,
    pub doc: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigKind {
    Boolean,
    String,
    Int,
    Short,
    Long,
    Double,
    List,
    Class,
    Password,
}

impl Default for LogConfig {
    fn default() -> Self {
        todo!("storage helper")
    }
}

impl LogConfig {
    /// Applies topic-level overrides (Kafka config names) on top of `self`.
    /// Unknown names and bad values are errors; names Kafka knows but Runnel
    /// does not act on are accepted and kept (they are reported by DescribeConfigs).
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, ConfigError> {
        let _ = overrides;
        todo!("storage helper")
    }

    /// Validates one topic config name/value pair without applying it.
    pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
        let _ = (name, value);
        todo!("storage helper")
    }

    /// The value of a topic config in this effective config, as Kafka prints it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        let _ = name;
        todo!("storage helper")
    }
}

/// Every topic config Kafka 4.x defines, in name order.
pub fn topic_config_defs() -> &'static [ConfigDef] {
    todo!("storage helper")
}
