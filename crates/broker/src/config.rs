//! Broker configuration, with Kafka's broker config names and defaults.
//!
//! A config is built from `key=value` pairs (a `server.properties`-style file
//! and `--set` flags). Every value is kept so DescribeConfigs can report it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use runnel_storage::{LogConfig, TimestampType};

#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("broker config {name}={value:?}: {reason}")]
    Invalid { name: String, value: String, reason: String },
    #[error("reading config file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// Address the Kafka listener binds to (`listeners`, without the scheme).
    pub listen: String,
    /// Host and port clients are told to connect to (`advertised.listeners`).
    pub advertised_host: String,
    pub advertised_port: i32,
    /// `log.dirs` (Runnel uses one directory).
    pub data_dir: PathBuf,
    /// `auto.create.topics.enable` (Kafka default true).
    pub auto_create_topics: bool,
    /// `num.partitions` (Kafka default 1): partitions of auto-created topics
    /// and of CreateTopics requests that ask for the default (-1).
    pub num_partitions: i32,
    /// `default.replication.factor` (Kafka default 1).
    pub default_replication_factor: i16,
    /// `message.max.bytes` (Kafka default 1048588): default `max.message.bytes` of topics.
    pub message_max_bytes: usize,
    /// `socket.request.max.bytes` (Kafka default 104857600): largest request frame.
    pub socket_request_max_bytes: usize,
    /// `log.retention.check.interval.ms` (Kafka default 300000).
    pub retention_check_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms` (Kafka default 3000).
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// (Kafka's default is 50, spread over a cluster; one node needs 1).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.retention.minutes` (Kafka default 10080).
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms` (Kafka default 600000).
    pub offsets_retention_check_interval_ms: u64,
    /// `group.consumer.session.timeout.ms` / `group.consumer.heartbeat.interval.ms`:
    /// the consumer group protocol's (KIP-848) server-side timers.
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `max.incremental.fetch.session.cache.slots` (Kafka default 1000): fetch sessions kept (KIP-227).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// Defaults for every topic's log (`log.*` broker configs).
    pub log_defaults: LogConfig,
    /// Every key=value given explicitly, for DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let mut log_defaults = LogConfig::default();
        log_defaults.max_message_bytes = 1_048_588;
        BrokerConfig {
            node_id: 1,
            listen: "127.0.0.1:9092".into(),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            data_dir: PathBuf::from("runnel-data"),
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            retention_check_interval_ms: 300_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            offsets_topic_num_partitions: 1,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            max_incremental_fetch_session_cache_slots: 1_000,
            log_defaults,
            explicit: BTreeMap::new(),
        }
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> BrokerConfigError {
    BrokerConfigError::Invalid { name: name.into(), value: value.into(), reason: reason.into() }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, BrokerConfigError> {
    value.trim().parse::<T>().map_err(|_| invalid(name, value, "not a valid number"))
}

fn parse_bool(name: &str, value: &str) -> Result<bool, BrokerConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "expected true or false")),
    }
}

/// Splits `host:port`, accepting `[v6]:port`.
pub fn split_host_port(addr: &str) -> Option<(String, i32)> {
    let (host, port) = addr.rsplit_once(':')?;
    let port: i32 = port.parse().ok().filter(|p| (0..=65535).contains(p))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Some((host.to_string(), port))
}

/// Strips a `PLAINTEXT://`-style scheme, as found in Kafka's `listeners`.
fn strip_scheme(value: &str) -> &str {
    value.split_once("://").map(|(_, rest)| rest).unwrap_or(value)
}

impl BrokerConfig {
    /// Applies one Kafka broker config. Unknown names are kept (reported by
    /// DescribeConfigs) and logged, as Kafka does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), BrokerConfigError> {
        let v = value.trim();
        match name {
            "node.id" | "broker.id" => self.node_id = parse_num(name, v)?,
            "listeners" => {
                let addr = strip_scheme(v.split(',').next().unwrap_or(v));
                split_host_port(addr).ok_or_else(|| invalid(name, v, "expected HOST:PORT"))?;
                self.listen = addr.to_string();
            }
            "advertised.listeners" => {
                let addr = strip_scheme(v.split(',').next().unwrap_or(v));
                let (host, port) = split_host_port(addr).ok_or_else(|| invalid(name, v, "expected HOST:PORT"))?;
                self.advertised_host = host;
                self.advertised_port = port;
            }
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(v.split(',').next().unwrap_or(v)),
            "auto.create.topics.enable" => self.auto_create_topics = parse_bool(name, v)?,
            "num.partitions" => {
                let n: i32 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.num_partitions = n;
            }
            "default.replication.factor" => self.default_replication_factor = parse_num(name, v)?,
            "message.max.bytes" => {
                let n: usize = parse_num(name, v)?;
                self.message_max_bytes = n;
                self.log_defaults.max_message_bytes = n;
            }
            "socket.request.max.bytes" => self.socket_request_max_bytes = parse_num(name, v)?,
            "log.retention.check.interval.ms" => self.retention_check_interval_ms = parse_num(name, v)?,
            "group.initial.rebalance.delay.ms" => self.group_initial_rebalance_delay_ms = parse_num(name, v)?,
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms = parse_num(name, v)?,
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms = parse_num(name, v)?,
            "offsets.retention.minutes" => self.offsets_retention_minutes = parse_num(name, v)?,
            "offsets.retention.check.interval.ms" => self.offsets_retention_check_interval_ms = parse_num(name, v)?,
            "group.consumer.session.timeout.ms" => self.group_consumer_session_timeout_ms = parse_num(name, v)?,
            "group.consumer.heartbeat.interval.ms" => self.group_consumer_heartbeat_interval_ms = parse_num(name, v)?,
            "offsets.topic.num.partitions" => {
                let n: i32 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.offsets_topic_num_partitions = n;
            }
            "max.incremental.fetch.session.cache.slots" => self.max_incremental_fetch_session_cache_slots = parse_num(name, v)?,
            "log.segment.bytes" => self.log_defaults.segment_bytes = parse_num(name, v)?,
            "log.roll.ms" => self.log_defaults.segment_ms = parse_num(name, v)?,
            "log.roll.hours" => self.log_defaults.segment_ms = parse_num::<i64>(name, v)? * 3_600_000,
            "log.retention.ms" => self.log_defaults.retention_ms = parse_num(name, v)?,
            "log.retention.minutes" => self.log_defaults.retention_ms = parse_num::<i64>(name, v)? * 60_000,
            "log.retention.hours" => self.log_defaults.retention_ms = parse_num::<i64>(name, v)? * 3_600_000,
            "log.retention.bytes" => self.log_defaults.retention_bytes = parse_num(name, v)?,
            "log.index.interval.bytes" => self.log_defaults.index_interval_bytes = parse_num(name, v)?,
            "log.index.size.max.bytes" => self.log_defaults.segment_index_bytes = parse_num(name, v)?,
            "log.cleanup.policy" => self.log_defaults.cleanup_policy = v.to_string(),
            "log.preallocate" => self.log_defaults.preallocate = parse_bool(name, v)?,
            "min.insync.replicas" => self.log_defaults.min_insync_replicas = parse_num(name, v)?,
            "log.message.timestamp.type" => {
                self.log_defaults.timestamp_type = match v {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(name, v, "expected CreateTime or LogAppendTime")),
                }
            }
            _ => tracing::warn!(config = name, "unknown broker config; kept but not used"),
        }
        self.explicit.insert(name.to_string(), v.to_string());
        Ok(())
    }

    /// Reads a `server.properties`-style file: `key=value` lines, `#` comments.
    pub fn load_properties(&mut self, path: &std::path::Path) -> Result<(), BrokerConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| BrokerConfigError::File { path: path.to_path_buf(), source })?;
        for line in text.lines() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .or_else(|| line.split_once(':'))
                .ok_or_else(|| invalid(line, "", "expected key=value"))?;
            self.set(k.trim(), v.trim())?;
        }
        Ok(())
    }

    /// The broker configs reported by DescribeConfigs for the broker resource:
    /// (name, value, is it explicitly set, read-only).
    pub fn describe(&self) -> Vec<(String, String, bool)> {
        let l = &self.log_defaults;
        let ts = match l.timestamp_type {
            TimestampType::CreateTime => "CreateTime",
            TimestampType::LogAppendTime => "LogAppendTime",
        };
        let known: Vec<(&str, String)> = vec![
            ("advertised.listeners", format!("PLAINTEXT://{}:{}", self.advertised_host, self.advertised_port)),
            ("auto.create.topics.enable", self.auto_create_topics.to_string()),
            ("broker.id", self.node_id.to_string()),
            ("default.replication.factor", self.default_replication_factor.to_string()),
            ("group.consumer.heartbeat.interval.ms", self.group_consumer_heartbeat_interval_ms.to_string()),
            ("group.consumer.session.timeout.ms", self.group_consumer_session_timeout_ms.to_string()),
            ("group.initial.rebalance.delay.ms", self.group_initial_rebalance_delay_ms.to_string()),
            ("group.max.session.timeout.ms", self.group_max_session_timeout_ms.to_string()),
            ("group.min.session.timeout.ms", self.group_min_session_timeout_ms.to_string()),
            ("listeners", format!("PLAINTEXT://{}", self.listen)),
            ("log.cleanup.policy", l.cleanup_policy.clone()),
            ("log.dirs", self.data_dir.display().to_string()),
            ("log.index.interval.bytes", l.index_interval_bytes.to_string()),
            ("log.index.size.max.bytes", l.segment_index_bytes.to_string()),
            ("log.message.timestamp.type", ts.to_string()),
            ("log.preallocate", l.preallocate.to_string()),
            ("log.retention.bytes", l.retention_bytes.to_string()),
            ("log.retention.check.interval.ms", self.retention_check_interval_ms.to_string()),
            ("log.retention.ms", l.retention_ms.to_string()),
            ("log.roll.ms", l.segment_ms.to_string()),
            ("log.segment.bytes", l.segment_bytes.to_string()),
            ("max.incremental.fetch.session.cache.slots", self.max_incremental_fetch_session_cache_slots.to_string()),
            ("message.max.bytes", self.message_max_bytes.to_string()),
            ("min.insync.replicas", l.min_insync_replicas.to_string()),
            ("node.id", self.node_id.to_string()),
            ("num.partitions", self.num_partitions.to_string()),
            ("offsets.retention.check.interval.ms", self.offsets_retention_check_interval_ms.to_string()),
            ("offsets.retention.minutes", self.offsets_retention_minutes.to_string()),
            ("offsets.topic.num.partitions", self.offsets_topic_num_partitions.to_string()),
            ("socket.request.max.bytes", self.socket_request_max_bytes.to_string()),
        ];
        let mut out: BTreeMap<String, (String, bool)> = known
            .into_iter()
            .map(|(k, v)| (k.to_string(), (v, self.explicit.contains_key(k))))
            .collect();
        for (k, v) in &self.explicit {
            out.entry(k.clone()).or_insert_with(|| (v.clone(), true));
        }
        out.into_iter().map(|(k, (v, e))| (k, v, e)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_names_apply() {
        let mut c = BrokerConfig::default();
        c.set("auto.create.topics.enable", "false").unwrap();
        c.set("num.partitions", "6").unwrap();
        c.set("log.retention.hours", "2").unwrap();
        c.set("advertised.listeners", "PLAINTEXT://example:19092").unwrap();
        assert!(!c.auto_create_topics);
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.log_defaults.retention_ms, 7_200_000);
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("example", 19092));
        assert!(c.set("num.partitions", "zero").is_err());
        assert!(c.set("num.partitions", "0").is_err());
    }
}
