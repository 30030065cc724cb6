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
    /// `message.timestamp.before.max.ms` (default unlimited): how far in the
    /// past a CreateTime record may be.
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms` (default 1 h): how far in the future.
    pub timestamp_after_max_ms: i64,
    /// `cleanup.policy` (default "delete"): time/size retention applies only
    /// with "delete", the cleaner ([`crate::cleaner`]) only with "compact".
    pub cleanup_policy: String,
    /// `delete.retention.ms` (default 1 day): how long a tombstone stays after its segment was last written.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio` (default 0.5).
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms` (default 0).
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms` (default unlimited).
    pub max_compaction_lag_ms: i64,
    /// `min.insync.replicas` (default 1).
    pub min_insync_replicas: i32,
    /// `file.delete.delay.ms` (default 60000).
    pub file_delete_delay_ms: i64,
    /// `preallocate` (default false).
    pub preallocate: bool,
    /// Every other topic config set on the topic, by Kafka name (kept and reported).
    pub other: BTreeMap<String, String>,
}

impl LogConfig {
    /// `cleanup.policy` includes `compact`: the cleaner keeps the latest record per key.
    pub fn is_compacted(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p.trim() == "compact")
    }
    /// `cleanup.policy` includes `delete`: time and size retention apply.
    pub fn has_delete_policy(&self) -> bool {
        self.cleanup_policy.split(',').any(|p| p.trim() == "delete")
    }
}

/// One entry of the topic config catalogue: its Kafka name, default as Kafka
/// prints it, type, and a one-line description.
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
        LogConfig {
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_index_bytes: 10_485_760,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            timestamp_before_max_ms: i64::MAX,
            timestamp_after_max_ms: 3_600_000,
            cleanup_policy: "delete".into(),
            delete_retention_ms: 86_400_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_insync_replicas: 1,
            file_delete_delay_ms: 60_000,
            preallocate: false,
            other: BTreeMap::new(),
        }
    }
}

use ConfigKind::{Boolean, Double, Int, List, Long, Short};

/// Kafka 4.x topic configs, in name order, with Kafka's defaults.
static TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef { name: "cleanup.policy", default: "delete", kind: List, doc: "How old segments are cleaned up: delete, compact, or both." },
    ConfigDef { name: "compression.gzip.level", default: "-1", kind: Int, doc: "Compression level when compression.type is gzip." },
    ConfigDef { name: "compression.lz4.level", default: "9", kind: Int, doc: "Compression level when compression.type is lz4." },
    ConfigDef { name: "compression.type", default: "producer", kind: ConfigKind::String, doc: "Final compression of the topic's data; producer keeps the producer's codec." },
    ConfigDef { name: "compression.zstd.level", default: "3", kind: Int, doc: "Compression level when compression.type is zstd." },
    ConfigDef { name: "delete.retention.ms", default: "86400000", kind: Long, doc: "How long delete tombstones are kept on compacted topics." },
    ConfigDef { name: "file.delete.delay.ms", default: "60000", kind: Long, doc: "Delay before a deleted segment file is removed from disk." },
    ConfigDef { name: "flush.messages", default: "9223372036854775807", kind: Long, doc: "Records between forced fsyncs (acks=all is always fsynced)." },
    ConfigDef { name: "flush.ms", default: "9223372036854775807", kind: Long, doc: "Milliseconds between forced fsyncs (acks=all is always fsynced)." },
    ConfigDef { name: "follower.replication.throttled.replicas", default: "", kind: List, doc: "Replicas whose follower replication is throttled." },
    ConfigDef { name: "index.interval.bytes", default: "4096", kind: Int, doc: "Log bytes between entries of the sparse offset index." },
    ConfigDef { name: "leader.replication.throttled.replicas", default: "", kind: List, doc: "Replicas whose leader-side replication is throttled." },
    ConfigDef { name: "local.retention.bytes", default: "-2", kind: Long, doc: "Local retention by size with tiered storage (-2: use retention.bytes)." },
    ConfigDef { name: "local.retention.ms", default: "-2", kind: Long, doc: "Local retention by time with tiered storage (-2: use retention.ms)." },
    ConfigDef { name: "max.compaction.lag.ms", default: "9223372036854775807", kind: Long, doc: "Longest time a record stays ineligible for compaction." },
    ConfigDef { name: "max.message.bytes", default: "1048588", kind: Int, doc: "Largest record batch the topic accepts." },
    ConfigDef { name: "message.timestamp.after.max.ms", default: "3600000", kind: Long, doc: "How far in the future a record timestamp may be." },
    ConfigDef { name: "message.timestamp.before.max.ms", default: "9223372036854775807", kind: Long, doc: "How far in the past a record timestamp may be." },
    ConfigDef { name: "message.timestamp.type", default: "CreateTime", kind: ConfigKind::String, doc: "CreateTime keeps the producer's timestamps; LogAppendTime stamps the broker's." },
    ConfigDef { name: "min.cleanable.dirty.ratio", default: "0.5", kind: Double, doc: "Dirty ratio at which a compacted log is cleaned." },
    ConfigDef { name: "min.compaction.lag.ms", default: "0", kind: Long, doc: "Shortest time a record stays uncompacted." },
    ConfigDef { name: "min.insync.replicas", default: "1", kind: Int, doc: "Replicas that must hold a write for acks=all to succeed." },
    ConfigDef { name: "preallocate", default: "false", kind: Boolean, doc: "Preallocate segment files." },
    ConfigDef { name: "remote.log.copy.disable", default: "false", kind: Boolean, doc: "Stop copying segments to tiered storage." },
    ConfigDef { name: "remote.log.delete.on.disable", default: "false", kind: Boolean, doc: "Delete tiered data when tiered storage is disabled." },
    ConfigDef { name: "remote.storage.enable", default: "false", kind: Boolean, doc: "Tiered storage for this topic (not supported by Runnel)." },
    ConfigDef { name: "retention.bytes", default: "-1", kind: Long, doc: "Largest size a partition grows to before old segments are deleted (-1: no limit)." },
    ConfigDef { name: "retention.ms", default: "604800000", kind: Long, doc: "How long records are kept before their segment is deleted (-1: forever)." },
    ConfigDef { name: "segment.bytes", default: "1073741824", kind: Int, doc: "Size at which a new segment file is started." },
    ConfigDef { name: "segment.index.bytes", default: "10485760", kind: Int, doc: "Largest size of a segment's offset index." },
    ConfigDef { name: "segment.jitter.ms", default: "0", kind: Long, doc: "Random jitter subtracted from segment.ms." },
    ConfigDef { name: "segment.ms", default: "604800000", kind: Long, doc: "Age at which a new segment file is started." },
    ConfigDef { name: "unclean.leader.election.enable", default: "false", kind: Boolean, doc: "Let an out-of-sync replica become leader." },
];

/// Every topic config Kafka 4.x defines, in name order.
pub fn topic_config_defs() -> &'static [ConfigDef] {
    TOPIC_CONFIGS
}

fn err(name: &str, value: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError { name: name.into(), value: value.into(), reason: reason.into() }
}

fn long_in(name: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v: i64 = value.trim().parse().map_err(|_| err(name, value, "not a valid integer"))?;
    if v < min {
        return Err(err(name, value, format!("must be at least {min}")));
    }
    Ok(v)
}

fn int_in(name: &str, value: &str, min: i64) -> Result<i64, ConfigError> {
    let v = long_in(name, value, min)?;
    if v > i32::MAX as i64 {
        return Err(err(name, value, "must fit in a 32-bit integer"));
    }
    Ok(v)
}

impl LogConfig {
    /// Validates one topic config name/value pair without applying it.
    pub fn validate(name: &str, value: &str) -> Result<(), ConfigError> {
        let def = TOPIC_CONFIGS
            .iter()
            .find(|d| d.name == name)
            .ok_or_else(|| err(name, value, "unknown topic config"))?;
        let v = value.trim();
        match name {
            "cleanup.policy" => {
                // Kafka 4.x accepts the empty list (e.g. SUBTRACT of the last
                // policy): neither deletion nor compaction, the log is kept.
                let parts: Vec<&str> = v.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
                if parts.iter().any(|p| *p != "delete" && *p != "compact") {
                    return Err(err(name, value, "expected delete, compact, or compact,delete"));
                }
            }
            "compression.type" => {
                if !["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"].contains(&v) {
                    return Err(err(name, value, "expected producer, uncompressed, gzip, snappy, lz4 or zstd"));
                }
            }
            "message.timestamp.type" => {
                if v != "CreateTime" && v != "LogAppendTime" {
                    return Err(err(name, value, "expected CreateTime or LogAppendTime"));
                }
            }
            "segment.bytes" => {
                int_in(name, v, 14)?;
            }
            "max.message.bytes" | "index.interval.bytes" | "segment.index.bytes" => {
                int_in(name, v, if name == "segment.index.bytes" { 4 } else { 0 })?;
            }
            "min.insync.replicas" => {
                int_in(name, v, 1)?;
            }
            "retention.ms" | "retention.bytes" => {
                long_in(name, v, -1)?;
            }
            "local.retention.ms" | "local.retention.bytes" => {
                long_in(name, v, -2)?;
            }
            "segment.ms" | "flush.messages" | "flush.ms" | "max.compaction.lag.ms" => {
                long_in(name, v, 1)?;
            }
            _ => match def.kind {
                Boolean => {
                    if v != "true" && v != "false" {
                        return Err(err(name, value, "expected true or false"));
                    }
                }
                Long | Int | Short => {
                    long_in(name, v, if name.starts_with("compression.") { i64::MIN } else { 0 })?;
                }
                Double => {
                    let d: f64 = v.parse().map_err(|_| err(name, value, "not a number"))?;
                    if !(0.0..=1.0).contains(&d) {
                        return Err(err(name, value, "must be between 0 and 1"));
                    }
                }
                _ => {}
            },
        }
        if name == "remote.storage.enable" && v == "true" {
            return Err(err(name, value, "tiered storage is not supported"));
        }
        Ok(())
    }

    /// Applies topic-level overrides (Kafka config names) on top of `self`.
    /// Unknown names and bad values are errors; names Kafka knows but Runnel
    /// does not act on are accepted and kept (they are reported by DescribeConfigs).
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, ConfigError> {
        let mut c = self.clone();
        for (name, value) in overrides {
            Self::validate(name, value)?;
            let v = value.trim();
            let parse = |min| long_in(name, v, min);
            match name.as_str() {
                "segment.bytes" => c.segment_bytes = parse(14)? as u64,
                "segment.ms" => c.segment_ms = parse(1)?,
                "retention.ms" => c.retention_ms = parse(-1)?,
                "retention.bytes" => c.retention_bytes = parse(-1)?,
                "segment.index.bytes" => c.segment_index_bytes = parse(4)? as u64,
                "index.interval.bytes" => c.index_interval_bytes = parse(0)? as u64,
                "max.message.bytes" => c.max_message_bytes = parse(0)? as usize,
                "message.timestamp.type" => {
                    c.timestamp_type =
                        if v == "LogAppendTime" { TimestampType::LogAppendTime } else { TimestampType::CreateTime }
                }
                "message.timestamp.before.max.ms" => c.timestamp_before_max_ms = parse(0)?,
                "message.timestamp.after.max.ms" => c.timestamp_after_max_ms = parse(0)?,
                "cleanup.policy" => c.cleanup_policy = v.to_string(),
                "delete.retention.ms" => c.delete_retention_ms = parse(0)?,
                "min.compaction.lag.ms" => c.min_compaction_lag_ms = parse(0)?,
                "max.compaction.lag.ms" => c.max_compaction_lag_ms = parse(1)?,
                "min.cleanable.dirty.ratio" => {
                    c.min_cleanable_dirty_ratio = v.parse().map_err(|_| err(name, value, "not a number"))?
                }
                "min.insync.replicas" => c.min_insync_replicas = parse(1)? as i32,
                "file.delete.delay.ms" => c.file_delete_delay_ms = parse(0)?,
                "preallocate" => c.preallocate = v == "true",
                _ => {
                    c.other.insert(name.clone(), v.to_string());
                }
            }
        }
        Ok(c)
    }

    /// The value of a topic config in this effective config, as Kafka prints it.
    pub fn value_of(&self, name: &str) -> Option<String> {
        let v = match name {
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.index.bytes" => self.segment_index_bytes.to_string(),
            "index.interval.bytes" => self.index_interval_bytes.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".into(),
                TimestampType::LogAppendTime => "LogAppendTime".into(),
            },
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "cleanup.policy" => self.cleanup_policy.clone(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "min.compaction.lag.ms" => self.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.max_compaction_lag_ms.to_string(),
            "min.cleanable.dirty.ratio" => self.min_cleanable_dirty_ratio.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "file.delete.delay.ms" => self.file_delete_delay_ms.to_string(),
            "preallocate" => self.preallocate.to_string(),
            other => match self.other.get(other) {
                Some(v) => v.clone(),
                None => TOPIC_CONFIGS.iter().find(|d| d.name == other)?.default.to_string(),
            },
        };
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_catalogue() {
        let c = LogConfig::default();
        for def in topic_config_defs() {
            assert_eq!(c.value_of(def.name).as_deref(), Some(def.default), "{}", def.name);
        }
    }

    #[test]
    fn overrides_apply_and_bad_values_are_refused() {
        let mut o = BTreeMap::new();
        o.insert("retention.ms".to_string(), "1000".to_string());
        o.insert("cleanup.policy".to_string(), "compact,delete".to_string());
        o.insert("message.timestamp.type".to_string(), "LogAppendTime".to_string());
        o.insert("delete.retention.ms".to_string(), "5".to_string());
        let c = LogConfig::default().with_overrides(&o).unwrap();
        assert_eq!(c.retention_ms, 1000);
        assert_eq!(c.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(c.value_of("delete.retention.ms").as_deref(), Some("5"));
        for (k, v) in [("retention.ms", "soon"), ("cleanup.policy", "shred"), ("no.such.config", "1"), ("segment.bytes", "1")] {
            let mut bad = BTreeMap::new();
            bad.insert(k.to_string(), v.to_string());
            assert!(LogConfig::default().with_overrides(&bad).is_err(), "{k}={v}");
        }
    }
}
