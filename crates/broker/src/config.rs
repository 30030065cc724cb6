//! Broker configuration, with Kafka's broker config names and defaults.
//!
//! A config is built from `key=value` pairs (a `server.properties`-style file
//! and `--set` flags). Every value is kept so DescribeConfigs can report it.
//! [`BROKER_CONFIGS`] is the one table of supported keys; `docs/configuration.md`
//! is generated from it ([`reference_markdown`]) and a test keeps the two equal.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use runnel_storage::{LogConfig, TimestampType};

#[derive(Debug, thiserror::Error)]
pub enum BrokerConfigError {
    #[error("broker config {name}={value:?}: {reason}")]
    Invalid { name: String, value: String, reason: String },
    #[error("reading config file {path}: {source}")]
    File { path: PathBuf, source: std::io::Error },
    #[error("{path}:{line}: {error}")]
    FileLine { path: PathBuf, line: usize, error: Box<BrokerConfigError> },
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`.
    pub node_id: i32,
    /// `listeners`: where the broker listens, Kafka's `NAME://HOST:PORT` list.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners` as given; unset means "derived from `listeners`".
    pub advertised_listeners: Option<Vec<Listener>>,
    /// `listener.security.protocol.map`: listener name -> security protocol.
    pub listener_security_protocols: BTreeMap<String, String>,
    /// `controller.listener.names`: listeners of the metadata quorum's Raft
    /// traffic, not for clients (a quorum of one uses none).
    pub controller_listener_names: Vec<String>,
    /// `process.roles` (default `broker,controller`: a combined node, the only kind yet).
    pub process_roles: Vec<String>,
    /// `controller.quorum.voters`: node id → host:port of its controller listener.
    /// Empty: this node alone is the metadata quorum (no controller listener).
    pub controller_quorum_voters: BTreeMap<i32, String>,
    /// `controller.quorum.election.timeout.ms`: a voter that hears nothing from the quorum
    /// leader for a random time between this and twice this starts an election.
    pub controller_quorum_election_timeout_ms: u64,
    /// `controller.quorum.bootstrap.servers` (KIP-853 dynamic quorums; refused at start yet).
    pub controller_quorum_bootstrap_servers: Vec<String>,
    /// `broker.rack`.
    pub broker_rack: Option<String>,
    /// `broker.session.timeout.ms` (Kafka default 9000): a broker whose heartbeats stop this long is fenced.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms` (Kafka default 2000).
    pub broker_heartbeat_interval_ms: u64,
    /// `replica.lag.time.max.ms` (Kafka default 30000): a follower not caught up this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `unclean.leader.election.enable` (Kafka default false).
    pub unclean_leader_election_enable: bool,
    /// `auto.leader.rebalance.enable` (Kafka default true) and
    /// `leader.imbalance.check.interval.seconds` (Kafka default 300).
    pub auto_leader_rebalance_enable: bool,
    pub leader_imbalance_check_interval_seconds: u64,
    /// `inter.broker.listener.name`; unset: the `PLAINTEXT` listener, else the first client listener.
    pub inter_broker_listener_name: Option<String>,
    /// `security.inter.broker.protocol`: Kafka's older way to name the
    /// inter-broker listener (the one named after the protocol).
    pub security_inter_broker_protocol: Option<String>,
    /// Every client listener's advertised address, resolved by
    /// [`BrokerConfig::resolve_advertised`] at start (Metadata answers each
    /// client with the brokers' addresses on the listener it connected to).
    pub advertised: Vec<Listener>,
    /// Host and port of the inter-broker listener's advertised address (the
    /// broker's own address where no listener is in question), set with `advertised`.
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
    /// `quota.window.num` (Kafka default 11): samples of a client's byte rate.
    pub quota_window_num: usize,
    /// `quota.window.size.seconds` (Kafka default 1): the length of each sample.
    pub quota_window_size_seconds: u64,
    /// `log.retention.check.interval.ms` (Kafka default 300000).
    pub retention_check_interval_ms: u64,
    /// `group.initial.rebalance.delay.ms` (Kafka default 3000).
    pub group_initial_rebalance_delay_ms: u64,
    /// `group.min.session.timeout.ms` / `group.max.session.timeout.ms`.
    pub group_min_session_timeout_ms: i32,
    pub group_max_session_timeout_ms: i32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets`
    /// (Kafka's default, 50: the groups' coordinators spread over a cluster).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.replication.factor` (Kafka default 3): replicas of each
    /// `__consumer_offsets` partition, capped at the number of quorum voters
    /// (every node is a broker), so one node needs no setting.
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes` (Kafka default 10080).
    pub offsets_retention_minutes: i64,
    /// `offsets.retention.check.interval.ms` (Kafka default 600000).
    pub offsets_retention_check_interval_ms: u64,
    /// `transaction.state.log.num.partitions` (Kafka default 50): partitions of `__transaction_state`.
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (Kafka default 3): replicas of each
    /// `__transaction_state` partition, capped at the number of quorum voters.
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.state.log.min.isr` (Kafka default 2): `min.insync.replicas` of
    /// `__transaction_state`, capped at its replication factor.
    pub transaction_state_log_min_isr: i32,
    /// `transaction.max.timeout.ms` (Kafka default 900000): the largest timeout a producer may ask for.
    pub transaction_max_timeout_ms: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (Kafka default 10000).
    pub transaction_abort_timed_out_cleanup_interval_ms: u64,
    /// `transaction.version`, the finalized KIP-890 feature level (0-2, default 2,
    /// Kafka 4's for a new cluster; Kafka sets it with `kafka-features`): 2 lets
    /// clients speak transactions v2.
    pub transaction_version: i16,
    /// `transaction.partition.verification.enable` (Kafka default true): a
    /// transactions v1 produce to a partition not in its transaction is refused.
    pub transaction_partition_verification_enable: bool,
    /// `group.consumer.session.timeout.ms` / `group.consumer.heartbeat.interval.ms`:
    /// the consumer group protocol's (KIP-848) server-side timers.
    pub group_consumer_session_timeout_ms: i32,
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.{min,max}.{session.timeout,heartbeat.interval}.ms`: the
    /// bounds of a group's own `consumer.session.timeout.ms` / `consumer.heartbeat.interval.ms` (KIP-848 group configs).
    pub group_consumer_min_session_timeout_ms: i32,
    pub group_consumer_max_session_timeout_ms: i32,
    pub group_consumer_min_heartbeat_interval_ms: i32,
    pub group_consumer_max_heartbeat_interval_ms: i32,
    /// `group.consumer.migration.policy`: online conversion between classic and consumer-protocol groups.
    pub group_consumer_migration_policy: crate::coordinator::consumer_group::MigrationPolicy,
    /// `connection.failed.authentication.delay.ms` (Kafka default 100): a failed SASL
    /// authentication is answered (and its connection closed) this much later.
    pub connection_failed_authentication_delay_ms: u64,
    /// Connection limits (Kafka's `ConnectionQuotas`), see [`ConnectionLimitsConfig`].
    pub connection_limits: ConnectionLimitsConfig,
    /// `max.incremental.fetch.session.cache.slots` (Kafka default 1000): fetch sessions kept (KIP-227).
    pub max_incremental_fetch_session_cache_slots: usize,
    /// `log.cleaner.*`: the log cleaner (compaction) of every compacted topic.
    pub log_cleaner: LogCleanerConfig,
    /// Defaults for every topic's log (`log.*` broker configs).
    pub log_defaults: LogConfig,
    /// `authorizer.class.name`: empty (no authorizer: every request is allowed) or
    /// Kafka's StandardAuthorizer (or its older AclAuthorizer name), which checks the cluster's ACLs.
    pub authorizer_class_name: String,
    /// `super.users`: principals (`User:admin`) the authorizer always allows.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found` (Kafka default false): a resource without any ACL is open to all.
    pub allow_everyone_if_no_acl_found: bool,
    /// Every key=value given explicitly, for DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
    /// Listener security settings (`ssl.*`, `sasl.*`, `listener.name.<name>.…`), kept
    /// apart from `explicit` so that no key, password or JAAS config is ever
    /// reported by DescribeConfigs; read with [`BrokerConfig::listener_setting`].
    pub security: BTreeMap<String, String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        let mut log_defaults = LogConfig::default();
        log_defaults.max_message_bytes = 1_048_588;
        BrokerConfig {
            node_id: 1,
            listeners: vec![Listener { name: "PLAINTEXT".into(), host: "127.0.0.1".into(), port: 9092 }],
            advertised_listeners: None,
            listener_security_protocols: default_security_protocol_map(),
            controller_listener_names: Vec::new(),
            process_roles: vec!["broker".into(), "controller".into()],
            controller_quorum_voters: BTreeMap::new(),
            controller_quorum_election_timeout_ms: 800,
            controller_quorum_bootstrap_servers: Vec::new(),
            broker_rack: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            replica_lag_time_max_ms: 30_000,
            unclean_leader_election_enable: false,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            inter_broker_listener_name: None,
            security_inter_broker_protocol: None,
            advertised: Vec::new(),
            advertised_host: "127.0.0.1".into(),
            advertised_port: 9092,
            data_dir: PathBuf::from("runnel-data"),
            auto_create_topics: true,
            num_partitions: 1,
            default_replication_factor: 1,
            message_max_bytes: 1_048_588,
            socket_request_max_bytes: 104_857_600,
            quota_window_num: 11,
            quota_window_size_seconds: 1,
            retention_check_interval_ms: 300_000,
            group_initial_rebalance_delay_ms: 3_000,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            offsets_topic_num_partitions: 50,
            offsets_topic_replication_factor: 3,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            transaction_state_log_num_partitions: 50,
            transaction_state_log_replication_factor: 3,
            transaction_state_log_min_isr: 2,
            transaction_max_timeout_ms: 900_000,
            transaction_abort_timed_out_cleanup_interval_ms: 10_000,
            transaction_version: 2,
            transaction_partition_verification_enable: true,
            group_consumer_session_timeout_ms: 45_000,
            group_consumer_heartbeat_interval_ms: 5_000,
            group_consumer_min_session_timeout_ms: 45_000,
            group_consumer_max_session_timeout_ms: 60_000,
            group_consumer_min_heartbeat_interval_ms: 5_000,
            group_consumer_max_heartbeat_interval_ms: 15_000,
            group_consumer_migration_policy: Default::default(),
            connection_failed_authentication_delay_ms: 100,
            connection_limits: ConnectionLimitsConfig::default(),
            max_incremental_fetch_session_cache_slots: 1_000,
            log_cleaner: LogCleanerConfig::default(),
            log_defaults,
            authorizer_class_name: String::new(),
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            explicit: BTreeMap::new(),
            security: BTreeMap::new(),
        }
    }
}

/// Kafka's connection limits: how many connections, from where, how fast, and
/// how long one may sit idle. Unset limits are Kafka's `Int.MaxValue`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimitsConfig {
    /// `connections.max.idle.ms` (600000): a connection that completes no request and
    /// has no answer to send for this long is closed (-1: never).
    pub connections_max_idle_ms: i64,
    /// `max.connections`: client connections across all listeners; at the limit a
    /// listener stops accepting until one closes (the inter-broker listener is exempt
    /// when there are others).
    pub max_connections: usize,
    /// `listener.name.<name>.max.connections`, by lower-case listener name.
    pub listener_max_connections: BTreeMap<String, usize>,
    /// `max.connections.per.ip`: more from one address are closed at once.
    pub max_connections_per_ip: usize,
    /// `max.connections.per.ip.overrides`: `host-or-ip:count,...`.
    pub max_connections_per_ip_overrides: BTreeMap<String, usize>,
    /// `max.connection.creation.rate` (KIP-612): new connections per second across
    /// all listeners; above it the listeners accept more slowly.
    pub max_connection_creation_rate: u32,
    /// `listener.name.<name>.max.connection.creation.rate`, by lower-case listener name.
    pub listener_max_connection_creation_rate: BTreeMap<String, u32>,
}

/// Kafka's `Int.MaxValue`: the default of every connection limit (no limit).
pub const UNLIMITED_CONNECTIONS: usize = i32::MAX as usize;

impl Default for ConnectionLimitsConfig {
    fn default() -> Self {
        ConnectionLimitsConfig {
            connections_max_idle_ms: 600_000,
            max_connections: UNLIMITED_CONNECTIONS,
            listener_max_connections: BTreeMap::new(),
            max_connections_per_ip: UNLIMITED_CONNECTIONS,
            max_connections_per_ip_overrides: BTreeMap::new(),
            max_connection_creation_rate: i32::MAX as u32,
            listener_max_connection_creation_rate: BTreeMap::new(),
        }
    }
}

/// `max.connections.per.ip.overrides`: `host:count` pairs, comma-separated.
fn parse_per_ip_overrides(name: &str, v: &str) -> Result<BTreeMap<String, usize>, BrokerConfigError> {
    let mut overrides = BTreeMap::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((host, count)) = entry.rsplit_once(':') else {
            return Err(invalid(name, v, format!("`{entry}` is not HOST:COUNT")));
        };
        let count: usize = count.trim().parse().map_err(|_| invalid(name, v, format!("`{entry}`: the count is not a number")))?;
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(invalid(name, v, format!("`{entry}` names no host")));
        }
        overrides.insert(host.to_string(), count);
    }
    Ok(overrides)
}

/// The broker-wide cleaner settings, with Kafka's names and defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LogCleanerConfig {
    /// `log.cleaner.enable` (true).
    pub enable: bool,
    /// `log.cleaner.threads` (1; Runnel runs one cleaner).
    pub threads: i32,
    /// `log.cleaner.backoff.ms` (15000): sleep when no log needs cleaning.
    pub backoff_ms: u64,
    /// `log.cleaner.dedupe.buffer.size` (128 MiB) and `log.cleaner.io.max.bytes.per.second` (unlimited).
    pub storage: runnel_storage::CleanerConfig,
}

impl Default for LogCleanerConfig {
    fn default() -> Self {
        LogCleanerConfig { enable: true, threads: 1, backoff_ms: 15_000, storage: runnel_storage::CleanerConfig::default() }
    }
}

/// A double as Kafka prints it for the unlimited default (Java's `Double.MAX_VALUE`).
fn java_double(v: f64) -> String {
    if v == f64::MAX {
        "1.7976931348623157E308".into()
    } else {
        v.to_string()
    }
}

fn invalid(name: &str, value: &str, reason: impl Into<String>) -> BrokerConfigError {
    BrokerConfigError::Invalid { name: name.into(), value: value.into(), reason: reason.into() }
}

fn parse_num<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, BrokerConfigError> {
    value.trim().parse::<T>().map_err(|_| invalid(name, value, "not a valid number"))
}

/// A connection count limit: 0 to Kafka's `Int.MaxValue`.
fn parse_connection_count(name: &str, value: &str) -> Result<usize, BrokerConfigError> {
    let n: i64 = parse_num(name, value)?;
    if !(0..=i32::MAX as i64).contains(&n) {
        return Err(invalid(name, value, "must be between 0 and 2147483647"));
    }
    Ok(n as usize)
}

/// `listener.name.<name>.<key>` → the lower-case listener name.
fn listener_limit(name: &str, key: &str) -> Option<String> {
    let listener = name.strip_prefix("listener.name.")?.strip_suffix(key)?.strip_suffix('.')?;
    (!listener.is_empty() && !listener.contains('.')).then(|| listener.to_ascii_lowercase())
}

fn parse_positive(name: &str, value: &str) -> Result<u64, BrokerConfigError> {
    let n: u64 = parse_num(name, value)?;
    if n == 0 {
        return Err(invalid(name, value, "must be at least 1"));
    }
    Ok(n)
}

fn parse_non_negative(name: &str, value: &str) -> Result<i64, BrokerConfigError> {
    let n: i64 = parse_num(name, value)?;
    if n < 0 {
        return Err(invalid(name, value, "must be at least 0"));
    }
    Ok(n)
}

/// Kafka's `controller.quorum.voters`: `ID@HOST:PORT,...`.
fn parse_voters(value: &str) -> Result<BTreeMap<i32, String>, String> {
    let mut voters = BTreeMap::new();
    for voter in value.split(',').map(str::trim).filter(|v| !v.is_empty()) {
        let expected = || format!("{voter:?}: expected ID@HOST:PORT, e.g. 1@127.0.0.1:9093");
        let (id, addr) = voter.split_once('@').ok_or_else(expected)?;
        let id: i32 = id.trim().parse().map_err(|_| format!("{voter:?}: {id:?} is not a node id"))?;
        if id < 0 {
            return Err(format!("{voter:?}: node ids are not negative"));
        }
        let (host, port) = addr.rsplit_once(':').ok_or_else(expected)?;
        if host.is_empty() || port.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(expected());
        }
        if voters.insert(id, addr.to_string()).is_some() {
            return Err(format!("node {id} is named twice"));
        }
    }
    Ok(voters)
}

fn parse_bool(name: &str, value: &str) -> Result<bool, BrokerConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(name, value, "expected true or false")),
    }
}

/// One listener in Kafka's `NAME://HOST:PORT` form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name, upper-case (`PLAINTEXT`, or a name that
    /// `listener.security.protocol.map` maps to a security protocol).
    pub name: String,
    /// Empty when the listener binds every interface (`PLAINTEXT://:9092`).
    /// An IPv6 address is kept without its brackets.
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// Does it bind every interface (empty host, `0.0.0.0` or `::`)?
    pub fn binds_every_interface(&self) -> bool {
        matches!(self.host.as_str(), "" | "0.0.0.0" | "::" | "[::]")
    }

    /// `HOST:PORT` to bind, with brackets around an IPv6 host.
    pub fn socket_address(&self) -> String {
        let host = if self.host.is_empty() { "0.0.0.0" } else { &self.host };
        host_port(host, self.port)
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.name, if self.host.is_empty() { format!(":{}", self.port) } else { host_port(&self.host, self.port) })
    }
}

/// `host:port`, bracketing an IPv6 host as URLs do.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Parses one listener: Kafka's `NAME://HOST:PORT` (`PLAINTEXT://:9092`,
/// `PLAINTEXT://0.0.0.0:9092`, `PLAINTEXT://[::1]:9092`), or a bare
/// `HOST:PORT`, taken as `PLAINTEXT`. Checks syntax only; whether the
/// listener's security protocol is supported is [`listener_security_protocol`]'s question.
pub fn parse_listener(text: &str) -> Result<Listener, String> {
    let text = text.trim();
    let (name, address) = match text.split_once("://") {
        Some((name, address)) => (name.trim(), address.trim()),
        None => ("PLAINTEXT", text),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(format!("{text:?}: invalid listener name {name:?}; expected NAME://HOST:PORT, e.g. PLAINTEXT://127.0.0.1:9092"));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?}: expected NAME://HOST:PORT, e.g. PLAINTEXT://127.0.0.1:9092"))?;
    let port: u16 = port.parse().map_err(|_| format!("{text:?}: the port {port:?} is not a number in 0..=65535"))?;
    let host = match host.strip_prefix('[') {
        Some(inner) => inner.strip_suffix(']').ok_or_else(|| format!("{text:?}: '[' without ']' around the host"))?,
        None if host.contains(':') => {
            return Err(format!("{text:?}: an IPv6 host must be in brackets, e.g. PLAINTEXT://[::1]:9092"))
        }
        None => host,
    };
    Ok(Listener { name: name.to_ascii_uppercase(), host: host.to_string(), port })
}

/// Parses a comma-separated listener list; names must be unique, as in Kafka.
pub fn parse_listener_list(text: &str) -> Result<Vec<Listener>, String> {
    let mut listeners: Vec<Listener> = Vec::new();
    for item in text.split(',').map(str::trim).filter(|item| !item.is_empty()) {
        let listener = parse_listener(item)?;
        if listeners.iter().any(|l| l.name == listener.name) {
            return Err(format!("the listener name {} appears twice", listener.name));
        }
        listeners.push(listener);
    }
    if listeners.is_empty() {
        return Err("no listener given; expected NAME://HOST:PORT, e.g. PLAINTEXT://127.0.0.1:9092".into());
    }
    Ok(listeners)
}

/// Kafka's default `listener.security.protocol.map`: each protocol maps to itself.
fn default_security_protocol_map() -> BTreeMap<String, String> {
    ["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"].iter().map(|p| (p.to_string(), p.to_string())).collect()
}

/// A listener's security protocol (Kafka's `SecurityProtocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        Some(match name {
            "PLAINTEXT" => SecurityProtocol::Plaintext,
            "SSL" => SecurityProtocol::Ssl,
            "SASL_PLAINTEXT" => SecurityProtocol::SaslPlaintext,
            "SASL_SSL" => SecurityProtocol::SaslSsl,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Is the connection wrapped in TLS?
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Must the client authenticate with SASL before anything but ApiVersions and the SASL APIs?
    pub fn uses_sasl(self) -> bool {
        matches!(self, SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl)
    }

    /// Does this build of the broker serve it?
    fn supported(self) -> bool {
        true
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The security protocol of a listener, by `listener.security.protocol.map`,
/// or an error saying why Runnel cannot serve it.
pub fn listener_security_protocol(listener: &Listener, map: &BTreeMap<String, String>) -> Result<SecurityProtocol, String> {
    let name = map.get(&listener.name).ok_or_else(|| {
        format!("listener {listener}: the name {} is not in listener.security.protocol.map", listener.name)
    })?;
    let protocol = SecurityProtocol::parse(name).ok_or_else(|| {
        format!("listener {listener}: {name:?} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL)")
    })?;
    if !protocol.supported() {
        return Err(format!(
            "listener {listener}: security protocol {protocol} is not supported yet; use a PLAINTEXT or SSL listener, e.g. PLAINTEXT://127.0.0.1:9092"
        ));
    }
    Ok(protocol)
}

/// A client listener as the broker serves it: where it binds, its security
/// protocol, and (once resolved at start) what it advertises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientListener {
    pub listener: Listener,
    pub protocol: SecurityProtocol,
}

/// This machine's hostname, which must resolve: it is what a broker
/// listening on every interface advertises, as Kafka does.
fn resolvable_hostname() -> Result<String, String> {
    use std::net::ToSocketAddrs;
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for writes of `buf.len()` bytes for the whole call.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast::<libc::c_char>(), buf.len()) };
    if rc != 0 {
        return Err(format!("cannot read this machine's hostname: {}", std::io::Error::last_os_error()));
    }
    let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let hostname = String::from_utf8_lossy(&buf[..len]).trim().to_string();
    if hostname.is_empty() {
        return Err("this machine has no hostname".into());
    }
    match (hostname.as_str(), 0).to_socket_addrs().map(|addrs| addrs.count()) {
        Ok(0) => Err(format!("this machine's hostname {hostname:?} resolves to no address")),
        Ok(_) => Ok(hostname),
        Err(e) => Err(format!("this machine's hostname {hostname:?} does not resolve ({e})")),
    }
}

/// Listener security settings Runnel reads (each also as `listener.name.<name>.<key>`).
pub const SECURITY_SETTINGS: &[&str] = &[
    "sasl.mechanism.inter.broker.protocol",
    "ssl.client.auth",
    "ssl.endpoint.identification.algorithm",
    "ssl.key.password",
    "ssl.keystore.certificate.chain",
    "ssl.keystore.key",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.keystore.type",
    "ssl.principal.mapping.rules",
    "ssl.truststore.certificates",
    "ssl.truststore.location",
    "ssl.truststore.password",
    "ssl.truststore.type",
];

/// Is `name` a listener security setting, global or per listener
/// (`listener.name.<name>.ssl.…`, `listener.name.<name>.<mechanism>.sasl.jaas.config`)?
pub fn is_security_setting(name: &str) -> bool {
    let key = match name.strip_prefix("listener.name.") {
        Some(rest) => match rest.split_once('.') {
            Some((_, key)) => key,
            None => return false,
        },
        None => name,
    };
    SECURITY_SETTINGS.contains(&key)
        || key.ends_with("sasl.jaas.config")
        || key == "sasl.enabled.mechanisms"
        || key.ends_with(crate::security::sasl::REAUTH_KEY)
        || crate::security::oauthbearer::SETTINGS.iter().any(|setting| key == *setting || key.strip_prefix("oauthbearer.") == Some(setting))
}

/// One supported broker config: Kafka's name, Runnel's default as it is
/// printed, and what it does. The generated reference lists these.
#[derive(Debug, Clone, Copy)]
pub struct BrokerConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

const fn def(name: &'static str, default: &'static str, doc: &'static str) -> BrokerConfigDef {
    BrokerConfigDef { name, default, doc }
}

/// Every broker config Runnel applies, in name order. A unit test checks each
/// default against `BrokerConfig::default()` and that `set` knows every name.
/// The `authorizer.class.name` values that turn on the ACL authorizer.
pub const AUTHORIZER_CLASS_NAMES: &[&str] =
    &["org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer"];

pub static BROKER_CONFIGS: &[BrokerConfigDef] = &[
    def("advertised.listeners", "(listeners)", "NAME://HOST:PORT clients are told to connect to, one per client listener, by name. Defaults to `listeners`; a listener on every interface (`PLAINTEXT://:9092`, `0.0.0.0`, `::`) is advertised with this machine's hostname, and the broker refuses to start if that hostname does not resolve."),
    def("allow.everyone.if.no.acl.found", "false", "With an authorizer: a resource that no ACL names (literally, by prefix or by `*`) is open to every principal. Off (Kafka's default): only `super.users` may use it."),
    def("authorizer.class.name", "", "`org.apache.kafka.metadata.authorizer.StandardAuthorizer` (or the older `kafka.security.authorizer.AclAuthorizer`) turns on Kafka's ACL authorization: every request is checked against the ACLs in the cluster metadata (managed with CreateAcls/DeleteAcls: `kafka-acls.sh`, `runnel acl`), replicated to every node. Empty: no authorizer, everything is allowed and the ACL APIs answer SECURITY_DISABLED. The nodes of a cluster talk to each other as clients do (replica fetches, transaction markers): their principal must be allowed, e.g. `User:ANONYMOUS` in `super.users` on PLAINTEXT inter-broker listeners. Set the same on every node."),
    def("auto.create.topics.enable", "true", "Create a topic when a client first asks for it in a Metadata request (a warning is logged each time)."),
    def("auto.leader.rebalance.enable", "true", "The active controller moves each partition's leadership back to its preferred replica (the first one) when that replica is in the ISR and alive, every `leader.imbalance.check.interval.seconds`."),
    def("broker.heartbeat.interval.ms", "2000", "How often a broker heartbeats to the active controller."),
    def("broker.id", "1", "Alias of `node.id`."),
    def("broker.rack", "", "This broker's rack: replicas of a partition are placed on different racks where possible; reported in Metadata."),
    def("broker.session.timeout.ms", "9000", "A broker whose heartbeats stop for this long is fenced by the active controller: its leaderships move to other ISR members and it leaves every ISR."),
    def("connection.failed.authentication.delay.ms", "100", "A failed SASL authentication is answered this long after it failed, then its connection is closed (slows password guessing)."),
    def("connections.max.idle.ms", "600000", "A client connection that completes no request and has no answer pending for this long is closed (-1: never). A client trickling the bytes of a request (slow loris) does not reset it."),
    def("connections.max.reauth.ms", "0", "SASL listeners (KIP-368): how long an authenticated session lasts before the client must re-authenticate on its connection (clients on SaslAuthenticate v1+ are told and do it by themselves); a connection used after its session ended is closed. 0: sessions never end (an OAUTHBEARER session still ends when its token expires). Also per mechanism (`scram-sha-512.connections.max.reauth.ms`) and per listener (`listener.name.<name>.…`)."),
    def("controller.listener.names", "", "Names of the listeners that carry the metadata quorum's Raft traffic (e.g. `CONTROLLER` in `listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093`); not for clients. A quorum of one (no `controller.quorum.voters`) uses none."),
    def("controller.quorum.bootstrap.servers", "", "KIP-853 dynamic quorums: not supported yet (the broker refuses to start with it alone); give `controller.quorum.voters`."),
    def("controller.quorum.election.timeout.ms", "800", "A voter that hears nothing from the metadata quorum's leader for a random time between this and twice this starts an election (Kafka's default is 1000; Runnel's leader heartbeats every eighth of it, at most every 100 ms). A quorum of one elects itself at once."),
    def("controller.quorum.voters", "", "The metadata quorum's voters, ID@HOST:PORT,... (each node's controller listener); this node's `node.id` must be one of them. Empty: this node alone is the quorum (a cluster of one, no controller listener)."),
    def("default.replication.factor", "1", "Replication factor of auto-created topics and of CreateTopics requests that ask for the default; more than the live brokers is refused with INVALID_REPLICATION_FACTOR."),
    def("group.consumer.heartbeat.interval.ms", "5000", "Heartbeat interval the consumer group protocol (KIP-848) gives its members (a group's `consumer.heartbeat.interval.ms` overrides it)."),
    def("group.consumer.max.heartbeat.interval.ms", "15000", "Largest `consumer.heartbeat.interval.ms` a group config may set."),
    def("group.consumer.max.session.timeout.ms", "60000", "Largest `consumer.session.timeout.ms` a group config may set."),
    def("group.consumer.migration.policy", "bidirectional", "Online migration between the classic and the consumer group protocol (KIP-848) for non-empty groups: `bidirectional`, `upgrade` (a consumer-protocol member joining a classic group converts it), `downgrade` (the last consumer-protocol member leaving converts the group back to classic), or `disabled` (and classic members cannot join a consumer-protocol group). Empty groups always convert."),
    def("group.consumer.min.heartbeat.interval.ms", "5000", "Smallest `consumer.heartbeat.interval.ms` a group config may set."),
    def("group.consumer.min.session.timeout.ms", "45000", "Smallest `consumer.session.timeout.ms` a group config may set."),
    def("group.consumer.session.timeout.ms", "45000", "Session timeout of consumer group protocol (KIP-848) members (a group's `consumer.session.timeout.ms` overrides it)."),
    def("group.initial.rebalance.delay.ms", "3000", "How long a new classic group waits for more members before its first rebalance."),
    def("group.max.session.timeout.ms", "1800000", "Largest session timeout a classic group member may ask for."),
    def("group.min.session.timeout.ms", "6000", "Smallest session timeout a classic group member may ask for."),
    def("inter.broker.listener.name", "PLAINTEXT", "The listener other brokers replicate from and that is registered first (its advertised address is the broker's own). Unset: the listener named after `security.inter.broker.protocol` when that is set, else the listener named `PLAINTEXT`, else (a single node needs none) the first client listener. On an SSL or SASL_SSL listener brokers reach each other over TLS with the listener's `ssl.*` settings (its trust store verifies the other broker, its key store is this broker's client certificate); on a SASL listener they log in with `sasl.mechanism.inter.broker.protocol`."),
    def("leader.imbalance.check.interval.seconds", "300", "How often the active controller runs the preferred-leader rebalance (`auto.leader.rebalance.enable`)."),
    def("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL,SSL:SSL", "Security protocol of each listener name, NAME:PROTOCOL,... (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)."),
    def("listeners", "PLAINTEXT://127.0.0.1:9092", "Where the broker listens, NAME://HOST:PORT (`PLAINTEXT://:9092` and `PLAINTEXT://0.0.0.0:9092` bind every interface, `PLAINTEXT://[::1]:9092` IPv6). Several listeners at once, each with its own name (`PLAINTEXT://127.0.0.1:9092,CLIENT://127.0.0.1:9094` with `CLIENT` in `listener.security.protocol.map`); a client is told the brokers' addresses on the listener it connected to. Port 0 picks a free port, which is then advertised."),
    def("log.cleaner.backoff.ms", "15000", "How long the log cleaner sleeps when no compacted log needs cleaning."),
    def("log.cleaner.dedupe.buffer.size", "134217728", "Memory bound of the cleaner's key map (24 bytes per key, as Kafka counts); a dirty section with more keys is cleaned in several passes."),
    def("log.cleaner.delete.retention.ms", "86400000", "Default `delete.retention.ms` of topics: how long a tombstone stays after its segment was last written."),
    def("log.cleaner.enable", "true", "Run the log cleaner, which compacts topics whose `cleanup.policy` includes `compact` (`__consumer_offsets` included)."),
    def("log.cleaner.io.max.bytes.per.second", "1.7976931348623157E308", "Bytes per second the cleaner reads and writes at most, so it does not starve produce and fetch."),
    def("log.cleaner.max.compaction.lag.ms", "9223372036854775807", "Default `max.compaction.lag.ms` of topics."),
    def("log.cleaner.min.cleanable.ratio", "0.5", "Default `min.cleanable.dirty.ratio` of topics."),
    def("log.cleaner.min.compaction.lag.ms", "0", "Default `min.compaction.lag.ms` of topics."),
    def("log.cleaner.threads", "1", "Cleaner threads; Runnel runs one cleaner (values above 1 are accepted and run one)."),
    def("log.cleanup.policy", "delete", "Default `cleanup.policy` of topics."),
    def("log.dir", "runnel-data", "Data directory, used when `log.dirs` is not set."),
    def("log.dirs", "runnel-data", "Data directory: topics' logs and the broker's metadata. Runnel uses one directory."),
    def("log.index.interval.bytes", "4096", "Default `index.interval.bytes` of topics."),
    def("log.index.size.max.bytes", "10485760", "Default `segment.index.bytes` of topics."),
    def("log.message.timestamp.after.max.ms", "3600000", "Default `message.timestamp.after.max.ms` of topics: how far in the future a CreateTime record may be."),
    def("log.message.timestamp.before.max.ms", "9223372036854775807", "Default `message.timestamp.before.max.ms` of topics: how far in the past a CreateTime record may be."),
    def("log.message.timestamp.type", "CreateTime", "Default `message.timestamp.type` of topics: CreateTime or LogAppendTime."),
    def("log.preallocate", "false", "Default `preallocate` of topics."),
    def("log.retention.bytes", "-1", "Default `retention.bytes` of topics (-1: no limit)."),
    def("log.retention.check.interval.ms", "300000", "How often retention deletes old segments."),
    def("log.retention.hours", "168", "Default `retention.ms` of topics, in hours (overridden by `log.retention.minutes` and `log.retention.ms`)."),
    def("log.retention.minutes", "(log.retention.hours)", "Default `retention.ms` of topics, in minutes (overridden by `log.retention.ms`)."),
    def("log.retention.ms", "604800000", "Default `retention.ms` of topics (-1: forever)."),
    def("log.roll.hours", "168", "Default `segment.ms` of topics, in hours (overridden by `log.roll.ms`)."),
    def("log.roll.ms", "604800000", "Default `segment.ms` of topics."),
    def("log.segment.bytes", "1073741824", "Default `segment.bytes` of topics."),
    def("max.connection.creation.rate", "2147483647", "New client connections per second the broker accepts across its listeners (KIP-612); faster ones wait in the accept queue. `listener.name.<name>.max.connection.creation.rate` limits one listener."),
    def("max.connections", "2147483647", "Client connections across all listeners; at the limit a listener accepts no more until one closes (the inter-broker listener is exempt when there are others). `listener.name.<name>.max.connections` limits one listener."),
    def("max.connections.per.ip", "2147483647", "Connections from one address; more are closed at once (0 is allowed only with overrides: only the addresses they name may connect)."),
    def("max.connections.per.ip.overrides", "", "Per-address exceptions to `max.connections.per.ip`: `HOST-OR-IP:COUNT,...` (host names are resolved at start)."),
    def("max.incremental.fetch.session.cache.slots", "1000", "Incremental fetch sessions (KIP-227) the broker keeps; when full, a new session replaces one unused for two minutes or a smaller one, else the client fetches without a session."),
    def("message.max.bytes", "1048588", "Largest record batch a topic accepts unless its `max.message.bytes` says otherwise."),
    def("min.insync.replicas", "1", "Default `min.insync.replicas` of topics."),
    def("node.id", "1", "This broker's id, reported in Metadata."),
    def("num.partitions", "1", "Partitions of auto-created topics and of CreateTopics requests that ask for the default."),
    def("offsets.retention.check.interval.ms", "600000", "How often expired committed offsets are removed."),
    def("offsets.retention.minutes", "10080", "How long committed offsets are kept, by Kafka's rules (see README)."),
    def("offsets.topic.num.partitions", "50", "Partitions of `__consumer_offsets` (group coordinators spread over the brokers by group id hash), fixed when the topic is first created."),
    def("offsets.topic.replication.factor", "3", "Replicas of each `__consumer_offsets` partition, capped at the number of nodes in `controller.quorum.voters` (1 for a single node); created at start on a single node, at the first FindCoordinator in a cluster (COORDINATOR_NOT_AVAILABLE until that many brokers are registered)."),
    def("process.roles", "broker,controller", "This node's roles. Only combined nodes (`broker,controller`) are supported yet: every node is a broker and a voter of the metadata quorum."),
    def("quota.window.num", "11", "Samples kept of each client's produce and fetch byte rates (client quotas, KIP-13): the rate is measured over this many windows of `quota.window.size.seconds`."),
    def("quota.window.size.seconds", "1", "The length of each client-quota sample. A client over its `producer_byte_rate` / `consumer_byte_rate` (AlterClientQuotas: `kafka-configs.sh --entity-type users|clients`, `runnel quota set`) is throttled: `throttle_time_ms` in its answer and no further request read from its connection for that long."),
    def("replica.lag.time.max.ms", "30000", "A follower that has not caught up with the leader's log end for this long leaves the ISR (through the controller)."),
    def("sasl.enabled.mechanisms", "GSSAPI", "SASL listeners (SASL_PLAINTEXT, SASL_SSL): the mechanisms clients may use. Runnel serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER (set them: Kafka's default GSSAPI is refused at start). Per listener: `listener.name.<name>.sasl.enabled.mechanisms`. PLAIN's users come from `listener.name.<name>.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_alice=\"alice-secret\";` (one `user_<name>` option per user; never logged or reported by DescribeConfigs). SCRAM's users are the cluster metadata's, managed with AlterUserScramCredentials (`kafka-configs.sh --alter --add-config 'SCRAM-SHA-512=[iterations=8192,password=…]' --entity-type users --entity-name alice`))."),
    def("sasl.mechanism.inter.broker.protocol", "GSSAPI", "The SASL mechanism this broker logs in to other brokers with when the inter-broker listener is SASL_PLAINTEXT or SASL_SSL: `PLAIN`, `SCRAM-SHA-256` or `SCRAM-SHA-512` (Kafka's default GSSAPI is refused at start). The login is the `username` and `password` options of that listener's JAAS config for the mechanism (`listener.name.<name>.<mechanism>.sasl.jaas.config`), as in Kafka; give that user `super.users` when an authorizer is on."),
    def("sasl.oauthbearer.clock.skew.seconds", "30", "OAUTHBEARER: seconds of leeway when a token's `exp` and `nbf` are checked."),
    def("sasl.oauthbearer.expected.audience", "", "OAUTHBEARER: comma-separated audiences; when set, a token's `aud` must hold one of them."),
    def("sasl.oauthbearer.expected.issuer", "", "OAUTHBEARER: when set, a token's `iss` must be this."),
    def("sasl.oauthbearer.jwks.endpoint.url", "", "OAUTHBEARER: the identity provider's signing keys (JWKS) as a `file:` URL; tokens must be signed (RS/PS/ES/EdDSA) by the key their `kid` names, and carry `exp`. Unset: Kafka's unsecured default, which accepts unsigned (`alg: none`) tokens, for development only. Per listener: `listener.name.<name>.oauthbearer.sasl.oauthbearer.jwks.endpoint.url` (as every `sasl.oauthbearer.*` setting)."),
    def("sasl.oauthbearer.scope.claim.name", "scope", "OAUTHBEARER: the claim holding the token's scopes."),
    def("sasl.oauthbearer.sub.claim.name", "sub", "OAUTHBEARER: the claim naming the principal (`User:<value>`)."),
    def("security.inter.broker.protocol", "PLAINTEXT", "Kafka's older way to choose the inter-broker listener: the listener named after this protocol (e.g. `SASL_SSL`). Exclusive with `inter.broker.listener.name`."),
    def("socket.request.max.bytes", "104857600", "Largest request frame the broker reads; a larger one closes the connection."),
    def("ssl.client.auth", "none", "TLS listeners: `required` (a client without a certificate the trust store vouches for is refused), `requested` (one is asked for; without one the client is `User:ANONYMOUS`) or `none`. A client certificate makes the principal `User:` + its subject DN (`User:CN=app,O=Example`, RFC 2253 order as Kafka prints it). Per listener: `listener.name.<name>.ssl.client.auth`, as every `ssl.*` setting."),
    def("ssl.endpoint.identification.algorithm", "https", "Brokers connecting to other brokers over TLS check the certificate's names against the host they connect to (`https`, Kafka's default); empty: only the chain is verified."),
    def("ssl.key.password", "", "TLS listeners: the private key's password: a JKS key's when it differs from the store's, or a PEM key's when it is an encrypted PKCS#8 key (PBES2 with AES or 3DES). Never logged or reported by DescribeConfigs."),
    def("ssl.keystore.certificate.chain", "", "TLS listeners: the certificate chain in PEM, inline (with `ssl.keystore.key`, instead of `ssl.keystore.location`)."),
    def("ssl.keystore.key", "", "TLS listeners: the private key in PEM (PKCS#8, PKCS#1 or SEC1; an encrypted PKCS#8 key with `ssl.key.password`), inline. Never logged or reported by DescribeConfigs."),
    def("ssl.keystore.location", "", "TLS listeners: the key store file holding the private key and the certificate chain (server certificate first), in the format `ssl.keystore.type` names."),
    def("ssl.keystore.password", "", "TLS listeners: the password of a JKS or PKCS12 key store (not given for PEM). Never logged or reported by DescribeConfigs."),
    def("ssl.keystore.type", "JKS", "TLS listeners: the key store format: `JKS` (Java's, as `keytool` writes it), `PKCS12` (also with the legacy RC2/3DES ciphers) or `PEM`. JKS and PKCS12 stores need `ssl.keystore.password`."),
    def("ssl.truststore.certificates", "", "TLS listeners: CA certificates in PEM, inline, that client certificates are verified against."),
    def("ssl.truststore.location", "", "TLS listeners: the trust store file of CA certificates that client certificates are verified against (needed when `ssl.client.auth` is `required` or `requested`), in the format `ssl.truststore.type` names."),
    def("ssl.truststore.password", "", "TLS listeners: the password of a JKS or PKCS12 trust store; optional (without it a JKS store's integrity is not checked, as in Java). Never logged or reported by DescribeConfigs."),
    def("ssl.truststore.type", "JKS", "TLS listeners: the trust store format: `JKS`, `PKCS12` or `PEM`."),
    def("super.users", "", "With an authorizer: principals allowed everything whatever the ACLs say, `;`-separated (`User:admin;User:ANONYMOUS`). Unauthenticated PLAINTEXT connections, other brokers' included, are `User:ANONYMOUS`."),
    def("transaction.abort.timed.out.transaction.cleanup.interval.ms", "10000", "How often transactions past their `transaction.timeout.ms` are aborted."),
    def("transaction.max.timeout.ms", "900000", "Largest `transaction.timeout.ms` a producer may ask for (INVALID_TRANSACTION_TIMEOUT beyond)."),
    def("transaction.partition.verification.enable", "true", "Whether a transactions v1 producer's first batch to a partition is checked against its transaction (KIP-890 part 1: INVALID_TXN_STATE, or TRANSACTION_ABORTABLE from Produce v11, when the partition was not added)."),
    def("transaction.state.log.min.isr", "2", "`min.insync.replicas` of `__transaction_state`, capped at its replication factor (1 on a single node)."),
    def("transaction.state.log.num.partitions", "50", "Partitions of `__transaction_state`, fixed when the topic is first created (at the first transactional producer)."),
    def("transaction.state.log.replication.factor", "3", "Replicas of each `__transaction_state` partition, capped at the number of nodes in `controller.quorum.voters` (1 for a single node); created at the first FindCoordinator or InitProducerId for a transactional id (COORDINATOR_NOT_AVAILABLE until that many brokers are registered)."),
    def("transaction.version", "2", "The finalized `transaction.version` feature ApiVersions advertises (KIP-890): 2 = transactions v2 (an epoch bump at every commit/abort, partitions added by the produce itself), 0 or 1 = v1 only (1 also writes `__transaction_state` values in the flexible v1 form). Kafka sets it cluster-wide with `kafka-features`."),
    def("unclean.leader.election.enable", "false", "Whether a partition whose ISR has no live member may get a leader from outside the ISR (losing the records only the ISR had)."),
];

/// Is `name` a broker config Runnel applies (rather than keeps and ignores)?
pub fn is_supported_broker_config(name: &str) -> bool {
    BROKER_CONFIGS.iter().any(|d| d.name == name)
}

/// Escapes a table cell of the generated Markdown.
fn cell(text: &str) -> String {
    if text.is_empty() {
        "(empty)".into()
    } else {
        text.replace('|', "\\|")
    }
}

/// The configuration reference, `docs/configuration.md`: generated from
/// [`BROKER_CONFIGS`] and the storage crate's topic config catalogue, so it
/// cannot drift from the code (`runnel serve --print-config-reference`).
pub fn reference_markdown() -> String {
    let mut out = String::new();
    out.push_str("# Configuration reference\n\n");
    out.push_str("<!-- Generated by `runnel serve --print-config-reference`; do not edit. A unit test fails when this file differs from what the code generates. -->\n\n");
    out.push_str("## Broker configs\n\n");
    out.push_str("Kafka's broker config names. Give them in a `server.properties`-style file (`runnel serve --config FILE`) or one by one (`runnel serve --set KEY=VALUE`). ");
    out.push_str("Precedence, highest first: the explicit flags `--listen`, `--advertised-listener`, `--data-dir` (or their environment variables `RUNNEL_LISTEN`, `RUNNEL_ADVERTISED_LISTENER`, `RUNNEL_DATA_DIR`), then `--set`, then the `--config` file, then the defaults below. ");
    out.push_str("Other names are accepted, logged as unknown and reported by DescribeConfigs, but have no effect.\n\n");
    out.push_str("Dynamic broker configs (Kafka's KIP-226): AlterConfigs / IncrementalAlterConfigs on the BROKER resource change these at runtime, for this broker (resource name = `node.id`) or as the cluster-wide default (resource name \"\"): ");
    out.push_str(&crate::dynamic_config::DYNAMIC_BROKER_CONFIGS.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "));
    out.push_str(". They are kept in the data directory and survive restarts; precedence: per-broker dynamic, cluster-wide dynamic, static, default. Topics without an override of their own follow the new value at once.\n\n");
    out.push_str("| name | default | description |\n|---|---|---|\n");
    for d in BROKER_CONFIGS {
        out.push_str(&format!("| `{}` | {} | {} |\n", d.name, if d.default.is_empty() { "(empty)".to_string() } else { format!("`{}`", d.default) }, cell(d.doc)));
    }
    out.push_str("\n## Topic configs\n\n");
    out.push_str("Per-topic configs (`runnel topic create --config KEY=VALUE`, CreateTopics, AlterConfigs, IncrementalAlterConfigs), with Kafka's names and defaults. ");
    out.push_str("Every one is validated, stored and reported by DescribeConfigs; a topic's config without a value of its own takes the broker default above (`log.*`, `message.max.bytes`, `min.insync.replicas`).\n\n");
    out.push_str("| name | default | description |\n|---|---|---|\n");
    for d in runnel_storage::config::topic_config_defs() {
        out.push_str(&format!("| `{}` | {} | {} |\n", d.name, if d.default.is_empty() { "(empty)".to_string() } else { format!("`{}`", d.default) }, cell(d.doc)));
    }
    out
}

impl BrokerConfig {
    /// Applies one Kafka broker config. Unknown names are kept (reported by
    /// DescribeConfigs) and logged, as Kafka does.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), BrokerConfigError> {
        let v = value.trim();
        if is_security_setting(name) {
            // Checked when the listener is built at start (errors name the key, never the value).
            self.apply(name, v)?;
            return Ok(());
        }
        if !self.apply(name, v)? {
            tracing::warn!(config = name, "unknown broker config; kept but not used");
        }
        self.explicit.insert(name.to_string(), v.to_string());
        Ok(())
    }

    /// A listener's security setting: `listener.name.<lower-case name>.<key>`
    /// (Kafka's per-listener override), else `<key>`.
    pub fn listener_setting(&self, listener: &str, key: &str) -> Option<&str> {
        let per_listener = format!("listener.name.{}.{key}", listener.to_ascii_lowercase());
        self.security.get(&per_listener).or_else(|| self.security.get(key)).map(String::as_str)
    }

    /// Sets the data directory (`log.dirs`) from a path that need not be UTF-8.
    pub fn set_data_dir(&mut self, dir: PathBuf) {
        self.explicit.insert("log.dirs".into(), dir.display().to_string());
        self.data_dir = dir;
    }

    /// Applies a config; `Ok(false)` for a name Runnel does not know.
    pub(crate) fn apply(&mut self, name: &str, v: &str) -> Result<bool, BrokerConfigError> {
        match name {
            "node.id" | "broker.id" => self.node_id = parse_num(name, v)?,
            "process.roles" => {
                let roles: Vec<String> =
                    v.split(',').map(|r| r.trim().to_ascii_lowercase()).filter(|r| !r.is_empty()).collect();
                if roles.is_empty() || roles.iter().any(|r| r != "broker" && r != "controller") {
                    return Err(invalid(name, v, "expected broker, controller, or broker,controller"));
                }
                self.process_roles = roles;
            }
            "controller.quorum.voters" => {
                self.controller_quorum_voters = parse_voters(v).map_err(|reason| invalid(name, v, reason))?
            }
            "controller.quorum.election.timeout.ms" => {
                self.controller_quorum_election_timeout_ms = parse_positive(name, v)?;
                if !(20..=3_600_000).contains(&self.controller_quorum_election_timeout_ms) {
                    return Err(invalid(name, v, "must be between 20 (the quorum leader heartbeats every eighth of it) and 3600000"));
                }
            }
            "controller.quorum.bootstrap.servers" => {
                self.controller_quorum_bootstrap_servers =
                    v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
            }
            "broker.rack" => self.broker_rack = Some(v.to_string()).filter(|r| !r.is_empty()),
            "broker.session.timeout.ms" => self.broker_session_timeout_ms = parse_positive(name, v)?,
            "broker.heartbeat.interval.ms" => self.broker_heartbeat_interval_ms = parse_positive(name, v)?,
            "replica.lag.time.max.ms" => self.replica_lag_time_max_ms = parse_positive(name, v)? as i64,
            "unclean.leader.election.enable" => self.unclean_leader_election_enable = parse_bool(name, v)?,
            "auto.leader.rebalance.enable" => self.auto_leader_rebalance_enable = parse_bool(name, v)?,
            "leader.imbalance.check.interval.seconds" => self.leader_imbalance_check_interval_seconds = parse_positive(name, v)?,
            "listeners" => self.listeners = parse_listener_list(v).map_err(|reason| invalid(name, v, reason))?,
            "advertised.listeners" => {
                let listeners = parse_listener_list(v).map_err(|reason| invalid(name, v, reason))?;
                if let Some(l) = listeners.iter().find(|l| matches!(l.host.as_str(), "0.0.0.0" | "::")) {
                    return Err(invalid(name, v, format!("{l}: clients cannot connect to {}; advertise a hostname or address they can reach", l.host)));
                }
                if let Some(l) = listeners.iter().find(|l| l.port == 0) {
                    return Err(invalid(name, v, format!("{l}: port 0 cannot be advertised")));
                }
                self.advertised_listeners = Some(listeners);
            }
            "listener.security.protocol.map" => {
                let mut map = BTreeMap::new();
                for pair in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                    let (listener, protocol) = pair
                        .split_once(':')
                        .ok_or_else(|| invalid(name, v, format!("{pair:?}: expected LISTENER_NAME:SECURITY_PROTOCOL")))?;
                    map.insert(listener.trim().to_ascii_uppercase(), protocol.trim().to_ascii_uppercase());
                }
                self.listener_security_protocols = map;
            }
            "inter.broker.listener.name" => {
                let name = v.trim().to_ascii_uppercase();
                self.inter_broker_listener_name = Some(name).filter(|n| !n.is_empty());
            }
            "security.inter.broker.protocol" => {
                let protocol = v.trim().to_ascii_uppercase();
                if !protocol.is_empty() && SecurityProtocol::parse(&protocol).is_none() {
                    return Err(invalid(name, v, "expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"));
                }
                self.security_inter_broker_protocol = Some(protocol).filter(|p| !p.is_empty());
            }
            "controller.listener.names" => {
                self.controller_listener_names =
                    v.split(',').map(|n| n.trim().to_ascii_uppercase()).filter(|n| !n.is_empty()).collect();
            }
            "log.dirs" | "log.dir" => {
                let dirs: Vec<&str> = v.split(',').map(str::trim).filter(|d| !d.is_empty()).collect();
                let [dir] = dirs[..] else {
                    return Err(invalid(name, v, "Runnel uses exactly one data directory"));
                };
                // Kafka uses log.dir only when log.dirs is not set.
                if name == "log.dirs" || !self.explicit.contains_key("log.dirs") {
                    self.data_dir = PathBuf::from(dir);
                }
            }
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
            "quota.window.num" => {
                let n: usize = parse_num(name, v)?;
                if n < 1 {
                    return Err(BrokerConfigError::Invalid { name: name.to_string(), value: v.to_string(), reason: "must be at least 1".into() });
                }
                self.quota_window_num = n;
            }
            "quota.window.size.seconds" => {
                let n: u64 = parse_num(name, v)?;
                if n < 1 {
                    return Err(BrokerConfigError::Invalid { name: name.to_string(), value: v.to_string(), reason: "must be at least 1".into() });
                }
                self.quota_window_size_seconds = n;
            }
            "log.retention.check.interval.ms" => self.retention_check_interval_ms = parse_num(name, v)?,
            "group.initial.rebalance.delay.ms" => self.group_initial_rebalance_delay_ms = parse_num(name, v)?,
            "group.min.session.timeout.ms" => self.group_min_session_timeout_ms = parse_num(name, v)?,
            "group.max.session.timeout.ms" => self.group_max_session_timeout_ms = parse_num(name, v)?,
            "offsets.retention.minutes" => self.offsets_retention_minutes = parse_num(name, v)?,
            "offsets.retention.check.interval.ms" => self.offsets_retention_check_interval_ms = parse_num(name, v)?,
            "group.consumer.session.timeout.ms" => self.group_consumer_session_timeout_ms = parse_num(name, v)?,
            "group.consumer.heartbeat.interval.ms" => self.group_consumer_heartbeat_interval_ms = parse_num(name, v)?,
            "group.consumer.min.session.timeout.ms" => self.group_consumer_min_session_timeout_ms = parse_num(name, v)?,
            "group.consumer.max.session.timeout.ms" => self.group_consumer_max_session_timeout_ms = parse_num(name, v)?,
            "group.consumer.min.heartbeat.interval.ms" => self.group_consumer_min_heartbeat_interval_ms = parse_num(name, v)?,
            "group.consumer.max.heartbeat.interval.ms" => self.group_consumer_max_heartbeat_interval_ms = parse_num(name, v)?,
            "transaction.abort.timed.out.transaction.cleanup.interval.ms" => {
                self.transaction_abort_timed_out_cleanup_interval_ms = parse_num(name, v)?
            }
            "transaction.version" => {
                let n: i16 = parse_num(name, v)?;
                if !(0..=2).contains(&n) {
                    return Err(invalid(name, v, "must be 0, 1 or 2"));
                }
                self.transaction_version = n;
            }
            "transaction.partition.verification.enable" => {
                self.transaction_partition_verification_enable = parse_bool(name, v)?;
            }
            "transaction.max.timeout.ms" => {
                let n: i32 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.transaction_max_timeout_ms = n;
            }
            "transaction.state.log.num.partitions" => {
                let n: i32 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.transaction_state_log_num_partitions = n;
            }
            "transaction.state.log.replication.factor" => {
                let n: i16 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.transaction_state_log_replication_factor = n;
            }
            "transaction.state.log.min.isr" => {
                let n: i32 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.transaction_state_log_min_isr = n;
            }
            "group.consumer.migration.policy" => {
                use crate::coordinator::consumer_group::MigrationPolicy;
                self.group_consumer_migration_policy = MigrationPolicy::parse(v.trim())
                    .ok_or_else(|| invalid(name, v, format!("must be one of {}", MigrationPolicy::NAMES.join(", "))))?;
            }
            "offsets.topic.num.partitions" => {
                let n: i32 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.offsets_topic_num_partitions = n;
            }
            "offsets.topic.replication.factor" => {
                let n: i16 = parse_num(name, v)?;
                if n < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.offsets_topic_replication_factor = n;
            }
            "max.incremental.fetch.session.cache.slots" => self.max_incremental_fetch_session_cache_slots = parse_num(name, v)?,
            "connection.failed.authentication.delay.ms" => self.connection_failed_authentication_delay_ms = parse_num(name, v)?,
            "connections.max.idle.ms" => {
                let ms: i64 = parse_num(name, v)?;
                if ms == 0 || ms < -1 {
                    return Err(invalid(name, v, "must be positive, or -1 for no idle limit"));
                }
                self.connection_limits.connections_max_idle_ms = ms;
            }
            "max.connections" => self.connection_limits.max_connections = parse_connection_count(name, v)?,
            "max.connections.per.ip" => self.connection_limits.max_connections_per_ip = parse_connection_count(name, v)?,
            "max.connections.per.ip.overrides" => {
                self.connection_limits.max_connections_per_ip_overrides = parse_per_ip_overrides(name, v)?
            }
            "max.connection.creation.rate" => self.connection_limits.max_connection_creation_rate = parse_num(name, v)?,
            _ if listener_limit(name, "max.connections").is_some() => {
                let listener = listener_limit(name, "max.connections").unwrap_or_default();
                let n = parse_connection_count(name, v)?;
                self.connection_limits.listener_max_connections.insert(listener, n);
            }
            _ if listener_limit(name, "max.connection.creation.rate").is_some() => {
                let listener = listener_limit(name, "max.connection.creation.rate").unwrap_or_default();
                let n: u32 = parse_num(name, v)?;
                self.connection_limits.listener_max_connection_creation_rate.insert(listener, n);
            }
            "authorizer.class.name" => {
                if !v.is_empty() && !AUTHORIZER_CLASS_NAMES.contains(&v) {
                    return Err(invalid(name, v, "the authorizer Runnel has is Kafka's StandardAuthorizer (org.apache.kafka.metadata.authorizer.StandardAuthorizer)"));
                }
                self.authorizer_class_name = v.to_string();
            }
            "super.users" => {
                let users: Vec<String> = v.split(';').map(|u| u.trim().to_string()).filter(|u| !u.is_empty()).collect();
                if let Some(bad) = users.iter().find(|u| !u.split_once(':').is_some_and(|(kind, name)| !kind.is_empty() && !name.is_empty())) {
                    return Err(invalid(name, v, format!("{bad:?} is not a principal of the form Type:name (e.g. User:admin)")));
                }
                self.super_users = users;
            }
            "allow.everyone.if.no.acl.found" => self.allow_everyone_if_no_acl_found = parse_bool(name, v)?,
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
            "log.cleaner.enable" => self.log_cleaner.enable = parse_bool(name, v)?,
            "log.cleaner.threads" => {
                let n: i32 = parse_num(name, v)?;
                if n < 0 {
                    return Err(invalid(name, v, "must be at least 0"));
                }
                self.log_cleaner.threads = n;
            }
            "log.cleaner.backoff.ms" => self.log_cleaner.backoff_ms = parse_num(name, v)?,
            "log.cleaner.dedupe.buffer.size" => self.log_cleaner.storage.dedupe_buffer_size = parse_num(name, v)?,
            "log.cleaner.io.max.bytes.per.second" => {
                let rate: f64 = parse_num(name, v)?;
                if rate.is_nan() || rate <= 0.0 {
                    return Err(invalid(name, v, "must be positive"));
                }
                self.log_cleaner.storage.io_max_bytes_per_second = rate;
            }
            "log.cleaner.delete.retention.ms" => self.log_defaults.delete_retention_ms = parse_non_negative(name, v)?,
            "log.cleaner.min.compaction.lag.ms" => self.log_defaults.min_compaction_lag_ms = parse_non_negative(name, v)?,
            "log.cleaner.max.compaction.lag.ms" => {
                let lag: i64 = parse_num(name, v)?;
                if lag < 1 {
                    return Err(invalid(name, v, "must be at least 1"));
                }
                self.log_defaults.max_compaction_lag_ms = lag;
            }
            "log.cleaner.min.cleanable.ratio" => {
                let ratio: f64 = parse_num(name, v)?;
                if !(0.0..=1.0).contains(&ratio) {
                    return Err(invalid(name, v, "must be between 0 and 1"));
                }
                self.log_defaults.min_cleanable_dirty_ratio = ratio;
            }
            "log.preallocate" => self.log_defaults.preallocate = parse_bool(name, v)?,
            "min.insync.replicas" => self.log_defaults.min_insync_replicas = parse_num(name, v)?,
            "log.message.timestamp.before.max.ms" => self.log_defaults.timestamp_before_max_ms = parse_non_negative(name, v)?,
            "log.message.timestamp.after.max.ms" => self.log_defaults.timestamp_after_max_ms = parse_non_negative(name, v)?,
            "log.message.timestamp.type" => {
                self.log_defaults.timestamp_type = match v {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid(name, v, "expected CreateTime or LogAppendTime")),
                }
            }
            _ if is_security_setting(name) => {
                self.security.insert(name.to_string(), v.to_string());
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The controller listener (the first of `listeners` named in
    /// `controller.listener.names`) and its security protocol; None when
    /// `listeners` does not list one. As in Kafka, a controller listener missing
    /// from a `listener.security.protocol.map` left at its default is PLAINTEXT.
    pub fn controller_listener_protocol(&self) -> Result<Option<(String, SecurityProtocol)>, String> {
        let Some(listener) = self.listeners.iter().find(|l| self.controller_listener_names.contains(&l.name)) else {
            return Ok(None);
        };
        if !self.listener_security_protocols.contains_key(&listener.name) && !self.explicit.contains_key("listener.security.protocol.map") {
            return Ok(Some((listener.name.clone(), SecurityProtocol::Plaintext)));
        }
        let protocol = listener_security_protocol(listener, &self.listener_security_protocols)?;
        Ok(Some((listener.name.clone(), protocol)))
    }

    /// The listeners clients connect to: every listener not named in
    /// `controller.listener.names`, each with a supported security protocol.
    pub fn client_listeners(&self) -> Result<Vec<ClientListener>, BrokerConfigError> {
        let all = self.listeners.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
        let clients: Vec<&Listener> =
            self.listeners.iter().filter(|l| !self.controller_listener_names.contains(&l.name)).collect();
        if clients.is_empty() {
            return Err(invalid("listeners", &all, "no listener for clients (every one is in controller.listener.names)"));
        }
        clients
            .into_iter()
            .map(|l| {
                let protocol = listener_security_protocol(l, &self.listener_security_protocols)
                    .map_err(|reason| invalid("listeners", &all, reason))?;
                Ok(ClientListener { listener: l.clone(), protocol })
            })
            .collect()
    }

    /// The listener other brokers replicate from: `inter.broker.listener.name`,
    /// else Kafka's default (the listener named `PLAINTEXT`), else, as a
    /// single node needs no inter-broker traffic, the first client listener.
    pub fn inter_broker_listener(&self) -> Result<ClientListener, BrokerConfigError> {
        let clients = self.client_listeners()?;
        let by_protocol = self.security_inter_broker_protocol.as_ref();
        if let (Some(_), Some(protocol)) = (&self.inter_broker_listener_name, by_protocol) {
            return Err(invalid(
                "security.inter.broker.protocol",
                protocol,
                "give either inter.broker.listener.name or security.inter.broker.protocol, not both (as Kafka)",
            ));
        }
        match self.inter_broker_listener_name.as_ref().or(by_protocol) {
            Some(name) => clients.into_iter().find(|c| &c.listener.name == name).ok_or_else(|| {
                invalid(if self.inter_broker_listener_name.is_some() { "inter.broker.listener.name" } else { "security.inter.broker.protocol" }, name, "names no client listener in `listeners`")
            }),
            None => {
                let plaintext = clients.iter().position(|c| c.listener.name == "PLAINTEXT").unwrap_or(0);
                Ok(clients[plaintext].clone())
            }
        }
    }

    /// The advertised address of a listener, by name (after [`BrokerConfig::resolve_advertised`]).
    pub fn advertised_for(&self, listener_name: &str) -> Option<&Listener> {
        self.advertised.iter().find(|a| a.name == listener_name)
    }

    /// Decides what clients are told to connect to, once the client listeners
    /// are bound (`bound_ports`: listener name -> port actually bound): for each,
    /// the `advertised.listeners` entry of the same name, else the listener
    /// itself, a wildcard host replaced by this machine's hostname (Kafka's
    /// behaviour) and port 0 by the bound port.
    pub fn resolve_advertised(&mut self, bound_ports: &BTreeMap<String, u16>) -> Result<(), BrokerConfigError> {
        self.resolve_advertised_with(bound_ports, resolvable_hostname)
    }

    fn resolve_advertised_with(
        &mut self,
        bound_ports: &BTreeMap<String, u16>,
        hostname: impl Fn() -> Result<String, String>,
    ) -> Result<(), BrokerConfigError> {
        let mut resolved = Vec::new();
        for client in self.client_listeners()? {
            let listener = client.listener;
            let (host, port) = match &self.advertised_listeners {
                Some(advertised) => {
                    let entry = advertised.iter().find(|a| a.name == listener.name).ok_or_else(|| {
                        let list = advertised.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
                        invalid("advertised.listeners", &list, format!("has no {} listener, which listeners defines", listener.name))
                    })?;
                    (entry.host.clone(), entry.port)
                }
                None => (listener.host.clone(), bound_ports.get(&listener.name).copied().unwrap_or(listener.port)),
            };
            let host = if host.is_empty() || matches!(host.as_str(), "0.0.0.0" | "::") {
                hostname().map_err(|reason| {
                    invalid(
                        "advertised.listeners",
                        "",
                        format!(
                            "listener {listener} binds every interface, so clients would be sent to this machine's hostname, but {reason}; \
                             set advertised.listeners={}://HOST:{port} to the address clients should use",
                            listener.name
                        ),
                    )
                })?
            } else {
                host
            };
            resolved.push(Listener { name: listener.name.clone(), host, port });
        }
        let inter_broker = self.inter_broker_listener()?.listener.name;
        if let Some(own) = resolved.iter().find(|l| l.name == inter_broker) {
            self.advertised_host = own.host.clone();
            self.advertised_port = i32::from(own.port);
        }
        self.advertised = resolved;
        Ok(())
    }

    /// Reads a `server.properties`-style file: `key=value` lines, `#` comments.
    pub fn load_properties(&mut self, path: &std::path::Path) -> Result<(), BrokerConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| BrokerConfigError::File { path: path.to_path_buf(), source })?;
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            let (k, v) = line
                .split_once('=')
                .or_else(|| line.split_once(':'))
                .ok_or_else(|| BrokerConfigError::FileLine {
                    path: path.to_path_buf(),
                    line: number + 1,
                    error: Box::new(invalid(line, "", "expected key=value")),
                })?;
            self.set(k.trim(), v.trim())
                .map_err(|e| BrokerConfigError::FileLine { path: path.to_path_buf(), line: number + 1, error: Box::new(e) })?;
        }
        Ok(())
    }

    /// `advertised.listeners` as clients see it once resolved.
    pub fn advertised_listeners_value(&self) -> String {
        if self.advertised.is_empty() {
            let port = u16::try_from(self.advertised_port).unwrap_or(0);
            return format!("PLAINTEXT://{}", host_port(&self.advertised_host, port));
        }
        self.advertised.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
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
            ("advertised.listeners", self.advertised_listeners_value()),
            ("allow.everyone.if.no.acl.found", self.allow_everyone_if_no_acl_found.to_string()),
            ("authorizer.class.name", self.authorizer_class_name.clone()),
            ("auto.create.topics.enable", self.auto_create_topics.to_string()),
            ("auto.leader.rebalance.enable", self.auto_leader_rebalance_enable.to_string()),
            ("broker.heartbeat.interval.ms", self.broker_heartbeat_interval_ms.to_string()),
            ("broker.id", self.node_id.to_string()),
            ("broker.rack", self.broker_rack.clone().unwrap_or_default()),
            ("broker.session.timeout.ms", self.broker_session_timeout_ms.to_string()),
            ("default.replication.factor", self.default_replication_factor.to_string()),
            ("group.consumer.heartbeat.interval.ms", self.group_consumer_heartbeat_interval_ms.to_string()),
            ("group.consumer.max.heartbeat.interval.ms", self.group_consumer_max_heartbeat_interval_ms.to_string()),
            ("group.consumer.max.session.timeout.ms", self.group_consumer_max_session_timeout_ms.to_string()),
            ("group.consumer.migration.policy", self.group_consumer_migration_policy.name().to_string()),
            ("group.consumer.min.heartbeat.interval.ms", self.group_consumer_min_heartbeat_interval_ms.to_string()),
            ("group.consumer.min.session.timeout.ms", self.group_consumer_min_session_timeout_ms.to_string()),
            ("group.consumer.session.timeout.ms", self.group_consumer_session_timeout_ms.to_string()),
            ("group.initial.rebalance.delay.ms", self.group_initial_rebalance_delay_ms.to_string()),
            ("group.max.session.timeout.ms", self.group_max_session_timeout_ms.to_string()),
            ("group.min.session.timeout.ms", self.group_min_session_timeout_ms.to_string()),
            ("connection.failed.authentication.delay.ms", self.connection_failed_authentication_delay_ms.to_string()),
            ("connections.max.idle.ms", self.connection_limits.connections_max_idle_ms.to_string()),
            ("max.connection.creation.rate", self.connection_limits.max_connection_creation_rate.to_string()),
            ("max.connections", self.connection_limits.max_connections.to_string()),
            ("max.connections.per.ip", self.connection_limits.max_connections_per_ip.to_string()),
            (
                "max.connections.per.ip.overrides",
                self.connection_limits.max_connections_per_ip_overrides.iter().map(|(h, n)| format!("{h}:{n}")).collect::<Vec<_>>().join(","),
            ),
            ("controller.listener.names", self.controller_listener_names.join(",")),
            ("controller.quorum.bootstrap.servers", self.controller_quorum_bootstrap_servers.join(",")),
            ("controller.quorum.election.timeout.ms", self.controller_quorum_election_timeout_ms.to_string()),
            ("controller.quorum.voters", self.controller_quorum_voters.iter().map(|(id, addr)| format!("{id}@{addr}")).collect::<Vec<_>>().join(",")),
            ("inter.broker.listener.name", self.inter_broker_listener().map(|c| c.listener.name).unwrap_or_default()),
            ("security.inter.broker.protocol", self.inter_broker_listener().map(|c| c.protocol.name().to_string()).unwrap_or_default()),
            ("leader.imbalance.check.interval.seconds", self.leader_imbalance_check_interval_seconds.to_string()),
            ("listener.security.protocol.map", self.listener_security_protocols.iter().map(|(n, p)| format!("{n}:{p}")).collect::<Vec<_>>().join(",")),
            ("listeners", self.listeners.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")),
            ("log.cleaner.backoff.ms", self.log_cleaner.backoff_ms.to_string()),
            ("log.cleaner.dedupe.buffer.size", self.log_cleaner.storage.dedupe_buffer_size.to_string()),
            ("log.cleaner.delete.retention.ms", l.delete_retention_ms.to_string()),
            ("log.cleaner.enable", self.log_cleaner.enable.to_string()),
            ("log.cleaner.io.max.bytes.per.second", java_double(self.log_cleaner.storage.io_max_bytes_per_second)),
            ("log.cleaner.max.compaction.lag.ms", l.max_compaction_lag_ms.to_string()),
            ("log.cleaner.min.cleanable.ratio", l.min_cleanable_dirty_ratio.to_string()),
            ("log.cleaner.min.compaction.lag.ms", l.min_compaction_lag_ms.to_string()),
            ("log.cleaner.threads", self.log_cleaner.threads.to_string()),
            ("log.cleanup.policy", l.cleanup_policy.clone()),
            ("log.dirs", self.data_dir.display().to_string()),
            ("log.index.interval.bytes", l.index_interval_bytes.to_string()),
            ("log.index.size.max.bytes", l.segment_index_bytes.to_string()),
            ("log.message.timestamp.after.max.ms", l.timestamp_after_max_ms.to_string()),
            ("log.message.timestamp.before.max.ms", l.timestamp_before_max_ms.to_string()),
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
            ("offsets.topic.replication.factor", self.offsets_topic_replication_factor.to_string()),
            ("process.roles", self.process_roles.join(",")),
            ("quota.window.num", self.quota_window_num.to_string()),
            ("quota.window.size.seconds", self.quota_window_size_seconds.to_string()),
            ("replica.lag.time.max.ms", self.replica_lag_time_max_ms.to_string()),
            ("socket.request.max.bytes", self.socket_request_max_bytes.to_string()),
            ("super.users", self.super_users.join(";")),
            (
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
                self.transaction_abort_timed_out_cleanup_interval_ms.to_string(),
            ),
            ("transaction.max.timeout.ms", self.transaction_max_timeout_ms.to_string()),
            ("transaction.partition.verification.enable", self.transaction_partition_verification_enable.to_string()),
            ("transaction.state.log.min.isr", self.transaction_state_log_min_isr.to_string()),
            ("transaction.state.log.num.partitions", self.transaction_state_log_num_partitions.to_string()),
            ("transaction.state.log.replication.factor", self.transaction_state_log_replication_factor.to_string()),
            ("transaction.version", self.transaction_version.to_string()),
            ("unclean.leader.election.enable", self.unclean_leader_election_enable.to_string()),
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

    fn no_hostname() -> Result<String, String> {
        Err("no hostname in this test".into())
    }

    #[test]
    fn kafka_names_apply() {
        let mut c = BrokerConfig::default();
        c.set("auto.create.topics.enable", "false").unwrap();
        c.set("num.partitions", "6").unwrap();
        c.set("log.retention.hours", "2").unwrap();
        c.set("advertised.listeners", "PLAINTEXT://example:19092").unwrap();
        c.resolve_advertised_with(&BTreeMap::new(), no_hostname).unwrap();
        assert!(!c.auto_create_topics);
        assert_eq!(c.num_partitions, 6);
        assert_eq!(c.log_defaults.retention_ms, 7_200_000);
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("example", 19092));
        assert!(c.set("num.partitions", "zero").is_err());
        assert!(c.set("num.partitions", "0").is_err());
    }

    #[test]
    fn listeners_in_kafkas_forms() {
        let l = parse_listener("PLAINTEXT://:9092").unwrap();
        assert_eq!((l.name.as_str(), l.host.as_str(), l.port), ("PLAINTEXT", "", 9092));
        assert!(l.binds_every_interface());
        assert_eq!(l.socket_address(), "0.0.0.0:9092");
        let l = parse_listener("PLAINTEXT://0.0.0.0:9093").unwrap();
        assert!(l.binds_every_interface());
        let l = parse_listener("plaintext://[::1]:9094").unwrap();
        assert_eq!((l.name.as_str(), l.host.as_str(), l.port), ("PLAINTEXT", "::1", 9094));
        assert_eq!(l.socket_address(), "[::1]:9094");
        assert_eq!(l.to_string(), "PLAINTEXT://[::1]:9094");
        let l = parse_listener("localhost:19092").unwrap();
        assert_eq!((l.name.as_str(), l.host.as_str(), l.port), ("PLAINTEXT", "localhost", 19092));
        for bad in ["PLAINTEXT://host", "PLAINTEXT://host:99999", "PLAINTEXT://::1:9092", "PLAINTEXT://[::1:9092", "://h:1", ""] {
            assert!(parse_listener_list(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(parse_listener_list("PLAINTEXT://:1,PLAINTEXT://:2").unwrap_err().contains("twice"));
    }

    #[test]
    fn security_protocols_come_from_the_map() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://:9092,SSL://:9093,SASL_PLAINTEXT://:9094,SASL_SSL://:9095").unwrap();
        let protocols: Vec<SecurityProtocol> = c.client_listeners().unwrap().into_iter().map(|c| c.protocol).collect();
        assert_eq!(protocols, [SecurityProtocol::Plaintext, SecurityProtocol::Ssl, SecurityProtocol::SaslPlaintext, SecurityProtocol::SaslSsl]);
        let mut c = BrokerConfig::default();
        c.set("listeners", "CLIENT://:9093").unwrap();
        assert!(c.client_listeners().unwrap_err().to_string().contains("listener.security.protocol.map"));
        c.set("listener.security.protocol.map", "CLIENT:PLAINTEXT").unwrap();
        assert_eq!(c.client_listeners().unwrap()[0].listener.name, "CLIENT");
        c.set("listener.security.protocol.map", "CLIENT:TLS").unwrap();
        assert!(c.client_listeners().unwrap_err().to_string().contains("not a security protocol"));
    }

    #[test]
    fn kafkas_kraft_server_properties_listeners_work() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://:9092,CONTROLLER://:9093").unwrap();
        c.set("advertised.listeners", "PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093").unwrap();
        c.set("controller.listener.names", "CONTROLLER").unwrap();
        c.set("listener.security.protocol.map", "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT").unwrap();
        let clients = c.client_listeners().unwrap();
        assert_eq!(clients.len(), 1);
        assert_eq!(clients[0].listener.socket_address(), "0.0.0.0:9092");
        c.resolve_advertised_with(&BTreeMap::new(), no_hostname).unwrap();
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("localhost", 9092));
    }

    #[test]
    fn several_listeners_each_advertise_their_own_address() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:9095,EXTERNAL://0.0.0.0:9096").unwrap();
        c.set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT").unwrap();
        c.set("advertised.listeners", "PLAINTEXT://localhost:19092,INTERNAL://10.0.0.5:9095,EXTERNAL://broker.example:443").unwrap();
        let names: Vec<String> = c.client_listeners().unwrap().into_iter().map(|l| l.listener.name).collect();
        assert_eq!(names, ["PLAINTEXT", "INTERNAL", "EXTERNAL"]);
        c.resolve_advertised_with(&BTreeMap::new(), no_hostname).unwrap();
        assert_eq!(c.advertised_for("INTERNAL").unwrap().to_string(), "INTERNAL://10.0.0.5:9095");
        assert_eq!(c.advertised_for("EXTERNAL").unwrap().to_string(), "EXTERNAL://broker.example:443");
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("localhost", 19092), "the inter-broker listener is PLAINTEXT");
        c.set("inter.broker.listener.name", "internal").unwrap();
        c.resolve_advertised_with(&BTreeMap::new(), no_hostname).unwrap();
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("10.0.0.5", 9095));
        c.set("inter.broker.listener.name", "NOPE").unwrap();
        assert!(c.resolve_advertised_with(&BTreeMap::new(), no_hostname).unwrap_err().to_string().contains("inter.broker.listener.name"));
        // Without advertised.listeners: each listener itself, port 0 by what was bound.
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://127.0.0.1:0,SECOND://127.0.0.1:0").unwrap();
        c.set("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT,SECOND:PLAINTEXT").unwrap();
        let bound = BTreeMap::from([("PLAINTEXT".to_string(), 40001), ("SECOND".to_string(), 40002)]);
        c.resolve_advertised_with(&bound, no_hostname).unwrap();
        assert_eq!(c.advertised_listeners_value(), "PLAINTEXT://127.0.0.1:40001,SECOND://127.0.0.1:40002");
        // An advertised.listeners without one of the listeners is refused.
        c.set("advertised.listeners", "PLAINTEXT://h:1").unwrap();
        assert!(c.resolve_advertised_with(&bound, no_hostname).unwrap_err().to_string().contains("has no SECOND listener"));
    }

    #[test]
    fn advertised_defaults_to_the_listener_and_its_bound_port() {
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
        c.resolve_advertised_with(&BTreeMap::from([("PLAINTEXT".to_string(), 40123)]), no_hostname).unwrap();
        assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("127.0.0.1", 40123));
    }

    #[test]
    fn a_wildcard_listener_advertises_the_hostname_or_refuses() {
        for listeners in ["PLAINTEXT://:9092", "PLAINTEXT://0.0.0.0:9092", "PLAINTEXT://[::]:9092"] {
            let mut c = BrokerConfig::default();
            c.set("listeners", listeners).unwrap();
            c.resolve_advertised_with(&BTreeMap::new(), || Ok("broker-7.example".into())).unwrap();
            assert_eq!((c.advertised_host.as_str(), c.advertised_port), ("broker-7.example", 9092));
            let err = c.resolve_advertised_with(&BTreeMap::new(), no_hostname).unwrap_err().to_string();
            assert!(err.contains("set advertised.listeners=PLAINTEXT://HOST:9092"), "{err}");
        }
        // The real lookup: this machine's hostname, which resolves.
        let mut c = BrokerConfig::default();
        c.set("listeners", "PLAINTEXT://0.0.0.0:9092").unwrap();
        if let Ok(hostname) = resolvable_hostname() {
            c.resolve_advertised(&BTreeMap::new()).unwrap();
            assert_eq!(c.advertised_host, hostname);
            assert_ne!(c.advertised_host, "0.0.0.0");
        }
        assert!(BrokerConfig::default().set("advertised.listeners", "PLAINTEXT://0.0.0.0:9092").is_err());
    }

    #[test]
    fn log_dirs_wins_over_log_dir_and_takes_one_directory() {
        let mut c = BrokerConfig::default();
        c.set("log.dirs", "/a").unwrap();
        c.set("log.dir", "/b").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/a"));
        let mut c = BrokerConfig::default();
        c.set("log.dir", "/b").unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/b"));
        assert!(c.set("log.dirs", "/a,/c").is_err());
    }

    #[test]
    fn the_reference_table_matches_the_code() {
        let defaults: BTreeMap<String, String> =
            BrokerConfig::default().describe().into_iter().map(|(k, v, _)| (k, v)).collect();
        for d in BROKER_CONFIGS {
            if let Some(actual) = defaults.get(d.name) {
                if d.name != "advertised.listeners" {
                    assert_eq!(d.default, actual, "documented default of {}", d.name);
                }
            }
            // Every documented name is one `apply` knows.
            let mut c = BrokerConfig::default();
            let sample = if d.default.starts_with('(') || d.default.is_empty() { "1" } else { d.default };
            let sample = if d.name == "advertised.listeners" { "PLAINTEXT://h:1" } else { sample };
            let sample = if d.name == "controller.listener.names" { "CONTROLLER" } else { sample };
            let sample = if d.name == "controller.quorum.voters" { "1@127.0.0.1:9093" } else { sample };
            assert!(c.apply(d.name, sample).unwrap_or(true), "{} is documented but not applied", d.name);
        }
        for name in defaults.keys() {
            assert!(is_supported_broker_config(name), "{name} is reported but not documented");
        }
        let names: Vec<&str> = BROKER_CONFIGS.iter().map(|d| d.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "BROKER_CONFIGS is kept in name order");
    }

    /// The committed reference must be what the code generates; regenerate it
    /// with `target/release/runnel serve --print-config-reference > docs/configuration.md`.
    #[test]
    fn docs_configuration_md_is_generated_from_the_code() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == reference_markdown(),
            "{} differs from the code's config table; regenerate it: runnel serve --print-config-reference > docs/configuration.md",
            path.display()
        );
    }

    #[test]
    fn quorum_configs_take_kafkas_forms_and_refuse_anything_else() {
        let mut c = BrokerConfig::default();
        c.set("controller.quorum.voters", "1@127.0.0.1:9093, 2@host-b:9093,3@[::1]:9093").unwrap();
        assert_eq!(c.controller_quorum_voters[&1], "127.0.0.1:9093");
        assert_eq!(c.controller_quorum_voters[&2], "host-b:9093");
        assert_eq!(c.controller_quorum_voters[&3], "[::1]:9093");
        for bad in ["1@h", "x@h:1", "1@h:1,1@h:2", "-1@h:1", "h:1", "1@:9093", "1@h:0"] {
            assert!(c.set("controller.quorum.voters", bad).is_err(), "{bad} accepted");
        }
        assert!(c.set("process.roles", "broker,voter").is_err());
        c.set("process.roles", "controller").unwrap();
        assert_eq!(c.process_roles, vec!["controller"]);
        c.set("broker.rack", "rack-a").unwrap();
        assert_eq!(c.broker_rack.as_deref(), Some("rack-a"));
        for zero in ["broker.session.timeout.ms", "broker.heartbeat.interval.ms", "replica.lag.time.max.ms"] {
            assert!(c.set(zero, "0").is_err(), "{zero}=0 accepted");
        }
        c.set("unclean.leader.election.enable", "true").unwrap();
        assert!(c.unclean_leader_election_enable);
        for bad in ["0", "19", "3600001", "-5", "1s"] {
            assert!(c.set("controller.quorum.election.timeout.ms", bad).is_err(), "election timeout {bad} accepted");
        }
        c.set("controller.quorum.election.timeout.ms", "1000").unwrap();
        assert_eq!(c.controller_quorum_election_timeout_ms, 1000);
        let described: BTreeMap<String, String> = c.describe().into_iter().map(|(k, v, _)| (k, v)).collect();
        assert_eq!(described["controller.quorum.voters"], "1@127.0.0.1:9093,2@host-b:9093,3@[::1]:9093");
    }
}
