//! The replica manager: every topic and partition this broker hosts, their
//! creation, deletion and configs (persisted through the storage engine's
//! [`MetaStore`]), and the background retention task.
//!
//! On a single node this broker leads every partition with an ISR of itself.
//! Replication roles are set through [`ReplicaManager::become_leader`] and
//! [`ReplicaManager::become_follower`] (the seam the controller drives);
//! ISR changes the leader wants go out through an [`AlterPartitionSender`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use parking_lot::{Mutex, RwLock};
use runnel_storage::{DataDir, Log, LogConfig, MetaStore, StorageError, TopicMeta};
use runnel_storage::data_dir::{read_partition_metadata, write_partition_metadata};
use uuid::Uuid;

use crate::config::BrokerConfig;
use crate::dynamic_config::{BrokerScope, DynamicConfigs};
use crate::error::ApiError;
use crate::partition::{IsrChange, Partition};

/// Sends a leader's ISR change to the controller (Kafka's AlterPartition).
/// The controller checks the leader epoch and partition epoch, so a stale or
/// paused leader is fenced; it answers the committed partition epoch and ISR,
/// or the error (FENCED_LEADER_EPOCH, INVALID_UPDATE_VERSION, ...).
pub trait AlterPartitionSender: Send + Sync {
    fn alter_partition(
        &self,
        topic: &str,
        partition: i32,
        change: IsrChange,
    ) -> futures::future::BoxFuture<'static, Result<AlteredPartition, ResponseError>>;
}

/// What the controller committed for an AlterPartition: the partition's
/// leader epoch (a reassignment that completed may have moved leadership),
/// partition epoch and ISR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlteredPartition {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

/// A single node: the ISR is always {self}, so there is never a change to send.
pub struct NoController;

impl AlterPartitionSender for NoController {
    fn alter_partition(
        &self,
        _topic: &str,
        _partition: i32,
        _change: IsrChange,
    ) -> futures::future::BoxFuture<'static, Result<AlteredPartition, ResponseError>> {
        Box::pin(std::future::ready(Err(ResponseError::NotController)))
    }
}

/// Kafka's limit on topic name length.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

pub struct Topic {
    pub name: Arc<str>,
    pub id: Uuid,
    pub internal: bool,
    partitions: RwLock<Vec<Arc<Partition>>>,
    configs: RwLock<BTreeMap<String, String>>,
}

impl Topic {
    pub fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions.read().clone()
    }
    pub fn partition(&self, index: i32) -> Option<Arc<Partition>> {
        usize::try_from(index).ok().and_then(|i| self.partitions.read().get(i).cloned())
    }
    pub fn partition_count(&self) -> usize {
        self.partitions.read().len()
    }
    /// The topic's config overrides (Kafka names).
    pub fn config_overrides(&self) -> BTreeMap<String, String> {
        self.configs.read().clone()
    }
}

pub struct ReplicaManager {
    config: Arc<BrokerConfig>,
    data_dir: DataDir,
    meta: MetaStore,
    /// Dynamic broker and group configs; topics' defaults come from its effective config.
    dynamic: DynamicConfigs,
    topics: RwLock<BTreeMap<Arc<str>, Arc<Topic>>>,
    topic_ids: RwLock<HashMap<Uuid, Arc<Topic>>>,
    /// Serializes topic creation, deletion and config changes.
    admin_lock: Mutex<()>,
    alter_partition: RwLock<Arc<dyn AlterPartitionSender>>,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    replica_lag_time_max_ms: std::sync::atomic::AtomicI64,
    /// Where the other brokers are (node id → address), for the replica fetchers.
    /// Other brokers' inter-broker endpoints: resolved address and registered host name.
    broker_addresses: RwLock<HashMap<i32, (std::net::SocketAddr, Arc<str>)>>,
    /// How connections to other brokers are made (TLS, SASL login).
    broker_connector: RwLock<Arc<crate::security::connector::BrokerConnector>>,
    /// Leaders a replica fetcher task runs for ([`crate::replica_fetcher`]).
    fetchers: Mutex<std::collections::HashSet<i32>>,
    shut_down: std::sync::atomic::AtomicBool,
}

const DELETING_SUFFIX: &str = ".deleting";

/// `<topic>-<n>` → `<topic>-<n>.<topic-id>.deleting` (no longer parsed as a
/// partition directory; the id keeps a later topic of the same name apart).
fn deleting_name(dir: &Path, topic_id: &Uuid) -> PathBuf {
    let mut name = dir.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(format!(".{}{DELETING_SUFFIX}", topic_id.simple()));
    dir.with_file_name(name)
}

/// Completes topic deletions that a crash interrupted. Every
/// `<topic>-<n>.<topic-id>.deleting` directory is removed; if the topic's
/// metadata still names that topic id (the crash came before the metadata
/// was removed), the metadata and the topic's other partition directories go
/// too. A topic created again later under the same name has another id and is
/// left alone.
fn finish_interrupted_deletions(data_dir: &DataDir, meta: &MetaStore, topics: &mut Vec<TopicMeta>) -> Result<(), StorageError> {
    let root = data_dir.root();
    let mut deleting: BTreeMap<(String, String), Vec<PathBuf>> = BTreeMap::new();
    for entry in std::fs::read_dir(root).map_err(|e| StorageError::io(root, e))? {
        let path = entry.map_err(|e| StorageError::io(root, e))?.path();
        let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let parsed = name
            .strip_suffix(DELETING_SUFFIX)
            .and_then(|rest| rest.rsplit_once('.'))
            .and_then(|(dir, id)| Some((dir.rsplit_once('-')?.0.to_string(), id.to_string())));
        if let Some(key) = parsed {
            deleting.entry(key).or_default().push(path);
        }
    }
    if deleting.is_empty() {
        return Ok(());
    }
    let partition_dirs = data_dir.list_partition_dirs()?;
    for ((topic, id), mut dirs) in deleting {
        let still_listed = topics.iter().any(|t| t.name == topic && Uuid::from_bytes(t.topic_id).simple().to_string() == id);
        if still_listed {
            dirs.extend(partition_dirs.iter().filter(|(t, _, _)| *t == topic).map(|(_, _, p)| p.clone()));
            meta.remove(&topic)?;
            topics.retain(|t| t.name != topic);
        }
        for dir in dirs {
            std::fs::remove_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        }
        tracing::info!(topic, "finished deleting a topic whose deletion was interrupted");
    }
    Ok(())
}

/// Writes `partition.metadata` into a partition directory of a data directory
/// written before it existed; warns when it names another topic id than the
/// topic's metadata (the metadata wins, as it did before the file existed).
fn ensure_partition_metadata(dir: &Path, topic: &TopicMeta) -> Result<(), StorageError> {
    match read_partition_metadata(dir) {
        Ok(Some(id)) if id == topic.topic_id => Ok(()),
        Ok(Some(id)) => {
            tracing::warn!(topic = %topic.name, dir = %dir.display(), found = %Uuid::from_bytes(id), expected = %Uuid::from_bytes(topic.topic_id),
                "partition.metadata names another topic id than the topic's metadata; rewriting it");
            write_partition_metadata(dir, topic.topic_id)
        }
        Ok(None) => write_partition_metadata(dir, topic.topic_id),
        Err(e) => {
            tracing::warn!(error = %e, "rewriting an unreadable partition.metadata");
            write_partition_metadata(dir, topic.topic_id)
        }
    }
}

/// Whether a partition directory holds any record bytes.
fn holds_records(dir: &Path) -> bool {
    std::fs::read_dir(dir).into_iter().flatten().flatten().any(|entry| {
        entry.file_name().to_string_lossy().ends_with(".log") && entry.metadata().map(|m| m.len() > 0).unwrap_or(false)
    })
}

/// Partition directories whose topic has no metadata file must not vanish
/// silently with their data: a topic with records is recovered (name from the
/// directories, partition count from the highest partition number, default
/// configs, a new topic id) and its metadata written again, with an ERROR.
/// Directories without records (e.g. a create that crashed before writing the
/// metadata) are left for a later create to reuse, with a WARN.
fn recover_topics_without_metadata(data_dir: &DataDir, meta: &MetaStore, topics: &mut Vec<TopicMeta>) -> Result<(), StorageError> {
    let mut orphans: BTreeMap<String, Vec<(i32, PathBuf)>> = BTreeMap::new();
    for (topic, partition, path) in data_dir.list_partition_dirs()? {
        if !topics.iter().any(|t| t.name == topic) {
            orphans.entry(topic).or_default().push((partition, path));
        }
    }
    for (name, dirs) in orphans {
        if validate_topic_name(&name).is_err() {
            tracing::warn!(topic = name, "ignoring a directory that looks like a partition but is not named like a topic");
            continue;
        }
        if !dirs.iter().any(|(_, dir)| holds_records(dir)) {
            tracing::warn!(topic = name, directories = dirs.len(), "partition directories without topic metadata hold no records; left as they are");
            continue;
        }
        let partitions = dirs.iter().map(|(p, _)| *p).max().unwrap_or(0) as u32 + 1;
        let mut configs = BTreeMap::new();
        if name == crate::coordinator::OFFSETS_TOPIC {
            configs.insert("cleanup.policy".to_string(), "compact".to_string());
            configs.insert("segment.bytes".to_string(), crate::coordinator::OFFSETS_SEGMENT_BYTES.to_string());
        }
        // The id the directories name keeps the topic the cluster metadata knows
        // (a new id would make the broker replace it with an empty one).
        let kept_id = dirs.iter().find_map(|(_, dir)| match read_partition_metadata(dir) {
            Ok(id) => id,
            Err(e) => {
                tracing::warn!(error = %e, "unreadable partition.metadata; ignored");
                None
            }
        });
        let id = kept_id.map(Uuid::from_bytes).unwrap_or_else(Uuid::new_v4);
        let recovered = TopicMeta { name: name.clone(), topic_id: *id.as_bytes(), partitions, configs };
        meta.put(&recovered)?;
        let id_source = if kept_id.is_some() { "its topic id from partition.metadata" } else { "a new topic id" };
        tracing::error!(
            topic = name, partitions, topic_id = %id,
            "MISSING TOPIC METADATA: the topic's metadata file was gone but its partition directories hold records; \
             recovered the topic from its directories with {id_source} and default configs (the cluster metadata \
             restores the config overrides it holds)"
        );
        topics.push(recovered);
    }
    topics.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(())
}

/// Checks a topic name the way Kafka does.
pub fn validate_topic_name(name: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::new(ResponseError::InvalidTopicException, format!("topic name {name:?} {why}")));
    if name.is_empty() {
        return bad("is empty");
    }
    if name == "." || name == ".." {
        return bad("cannot be '.' or '..'");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return bad("is longer than 249 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return bad("contains characters other than ASCII alphanumerics, '.', '_' and '-'");
    }
    Ok(())
}

impl ReplicaManager {
    /// Opens the data directory (taking its lock) and every topic in it.
    pub fn open(config: Arc<BrokerConfig>) -> Result<Arc<ReplicaManager>, StorageError> {
        let data_dir = DataDir::open(&config.data_dir)?;
        let (meta, mut topics) = MetaStore::open(data_dir.root())?;
        finish_interrupted_deletions(&data_dir, &meta, &mut topics)?;
        recover_topics_without_metadata(&data_dir, &meta, &mut topics)?;
        let dynamic = DynamicConfigs::load(config.clone(), &meta)?;
        let replica_lag_time_max_ms = config.replica_lag_time_max_ms;
        let manager = ReplicaManager {
            config,
            data_dir,
            meta,
            dynamic,
            topics: RwLock::new(BTreeMap::new()),
            topic_ids: RwLock::new(HashMap::new()),
            admin_lock: Mutex::new(()),
            alter_partition: RwLock::new(Arc::new(NoController)),
            replica_lag_time_max_ms: std::sync::atomic::AtomicI64::new(replica_lag_time_max_ms),
            broker_addresses: RwLock::new(HashMap::new()),
            broker_connector: RwLock::new(Arc::new(crate::security::connector::BrokerConnector::plaintext())),
            fetchers: Mutex::new(std::collections::HashSet::new()),
            shut_down: std::sync::atomic::AtomicBool::new(false),
        };
        for topic in topics {
            let log_config = manager.log_config_for(&topic.configs)?;
            let name: Arc<str> = Arc::from(topic.name.as_str());
            let mut partitions = Vec::with_capacity(topic.partitions as usize);
            for index in 0..topic.partitions as i32 {
                let dir = manager.data_dir.partition_dir(&topic.name, index);
                let log = Log::open(&dir, log_config.clone())?;
                ensure_partition_metadata(&dir, &topic)?;
                partitions.push(Partition::new(name.clone(), index, log, manager.config.node_id));
            }
            let topic = Arc::new(Topic {
                internal: topic.name.starts_with("__"),
                name: name.clone(),
                id: Uuid::from_bytes(topic.topic_id),
                partitions: RwLock::new(partitions),
                configs: RwLock::new(topic.configs),
            });
            manager.topic_ids.write().insert(topic.id, topic.clone());
            manager.topics.write().insert(name, topic);
        }
        tracing::info!(topics = manager.topics.read().len(), dir = %manager.data_dir.root().display(), "logs loaded");
        Ok(Arc::new(manager))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// Persistent small values (cluster id, producer id blocks).
    pub fn meta(&self) -> &MetaStore {
        &self.meta
    }

    /// Dynamic broker and group configs.
    pub fn dynamic_configs(&self) -> &DynamicConfigs {
        &self.dynamic
    }

    fn log_config_for(&self, overrides: &BTreeMap<String, String>) -> Result<LogConfig, StorageError> {
        Ok(self.dynamic.effective().log_defaults.with_overrides(overrides)?)
    }

    /// Replaces the dynamic configs of one BROKER scope, persists them and
    /// applies the new topic defaults to every partition whose topic does not
    /// override them.
    pub fn set_broker_configs(&self, scope: BrokerScope, configs: BTreeMap<String, String>, validate_only: bool) -> Result<(), ApiError> {
        let _guard = self.admin_lock.lock();
        let Some(effective) = self.dynamic.set_broker_configs(&self.meta, scope, configs, validate_only)? else {
            return Ok(());
        };
        for topic in self.topics() {
            match effective.log_defaults.with_overrides(&topic.configs.read()) {
                Ok(log_config) => {
                    for partition in topic.partitions() {
                        partition.set_config(log_config.clone());
                    }
                }
                Err(e) => tracing::error!(topic = %topic.name, error = %e, "topic config invalid over the new broker defaults; left as it was"),
            }
        }
        tracing::info!(?scope, "dynamic broker configs changed");
        Ok(())
    }

    /// Replaces one group's configs (KIP-848) and persists them.
    pub fn set_group_configs(&self, group_id: &str, configs: BTreeMap<String, String>, validate_only: bool) -> Result<(), ApiError> {
        let _guard = self.admin_lock.lock();
        self.dynamic.set_group_configs(&self.meta, group_id, configs, validate_only)
    }

    /// The effective log config of a topic (defaults + overrides).
    pub fn effective_log_config(&self, topic: &Topic) -> Result<LogConfig, ApiError> {
        self.log_config_for(&topic.configs.read()).map_err(|e| ApiError::from(&e))
    }

    pub fn topic(&self, name: &str) -> Option<Arc<Topic>> {
        self.topics.read().get(name).cloned()
    }
    pub fn topic_by_id(&self, id: &Uuid) -> Option<Arc<Topic>> {
        self.topic_ids.read().get(id).cloned()
    }
    pub fn partition(&self, topic: &str, index: i32) -> Option<Arc<Partition>> {
        self.topic(topic)?.partition(index)
    }
    pub fn topics(&self) -> Vec<Arc<Topic>> {
        self.topics.read().values().cloned().collect()
    }

    /// Creates a topic (or only validates the request). `partitions` and
    /// `replication_factor` of -1 mean the broker defaults.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        replication_factor: i16,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<Option<Arc<Topic>>, ApiError> {
        validate_topic_name(name)?;
        let partitions = if partitions == -1 { self.config.num_partitions } else { partitions };
        if partitions < 1 {
            return Err(ApiError::new(ResponseError::InvalidPartitions, "Number of partitions must be larger than 0."));
        }
        let replication_factor =
            if replication_factor == -1 { self.config.default_replication_factor } else { replication_factor };
        if replication_factor < 1 {
            return Err(ApiError::new(ResponseError::InvalidReplicationFactor, "Replication factor must be larger than 0."));
        }
        if replication_factor > 1 {
            return Err(ApiError::new(
                ResponseError::InvalidReplicationFactor,
                format!(
                    "Unable to replicate the partition {replication_factor} time(s): the target replication factor of \
                     {replication_factor} cannot be reached because only 1 broker(s) are registered."
                ),
            ));
        }
        let log_config = self
            .log_config_for(&configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        let _guard = self.admin_lock.lock();
        if self.topics.read().contains_key(name) {
            return Err(ApiError::new(ResponseError::TopicAlreadyExists, format!("Topic '{name}' already exists.")));
        }
        let normalized = name.replace('.', "_");
        if let Some(other) = self.topics.read().keys().find(|t| t.replace('.', "_") == normalized) {
            return Err(ApiError::new(
                ResponseError::InvalidTopicException,
                format!("Topic '{name}' collides with existing topic: {other}"),
            ));
        }
        if validate_only {
            return Ok(None);
        }
        self.create_local_topic(name, runnel_controller::random_kafka_uuid(), partitions, configs, log_config, |_| {}).map(Some)
    }

    /// Creates a topic the committed cluster metadata holds, with its id, partition
    /// count and configs. `prepare` sets each new partition's role before any request
    /// can see the topic.
    pub fn create_topic_from_image(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        prepare: impl Fn(&Arc<Partition>),
    ) -> Result<Arc<Topic>, ApiError> {
        let log_config = match self.log_config_for(&configs) {
            Ok(log_config) => log_config,
            Err(e) => {
                // Validated by the broker that took the request; a default keeps the data coming.
                tracing::error!(topic = name, error = %e, "topic configs from the cluster metadata are invalid here; using the defaults");
                self.log_config_for(&BTreeMap::new()).map_err(|e| ApiError::from(&e))?
            }
        };
        let _guard = self.admin_lock.lock();
        if let Some(existing) = self.topic(name) {
            return Ok(existing);
        }
        self.create_local_topic(name, id, partitions, configs, log_config, prepare)
    }

    /// Opens the logs of a new topic and only then writes its metadata (a crash in
    /// between leaves empty partition directories, which a later create reuses).
    /// The caller holds `admin_lock`.
    fn create_local_topic(
        &self,
        name: &str,
        id: Uuid,
        partitions: i32,
        configs: BTreeMap<String, String>,
        log_config: LogConfig,
        prepare: impl Fn(&Arc<Partition>),
    ) -> Result<Arc<Topic>, ApiError> {
        let meta = TopicMeta { name: name.to_string(), topic_id: *id.as_bytes(), partitions: partitions as u32, configs: configs.clone() };
        let storage_err = |e: StorageError| ApiError::from(&e);
        let arc_name: Arc<str> = Arc::from(name);
        let mut parts = Vec::with_capacity(partitions as usize);
        for index in 0..partitions {
            let dir = self.data_dir.partition_dir(name, index);
            let log = Log::open(&dir, log_config.clone()).map_err(storage_err)?;
            write_partition_metadata(&dir, *id.as_bytes()).map_err(storage_err)?;
            let partition = Partition::new(arc_name.clone(), index, log, self.config.node_id);
            prepare(&partition);
            parts.push(partition);
        }
        // Metadata last: a crash before this leaves only empty partition dirs, which a later create reuses.
        self.meta.put(&meta).map_err(storage_err)?;
        let topic = Arc::new(Topic {
            name: arc_name.clone(),
            id,
            internal: name.starts_with("__"),
            partitions: RwLock::new(parts),
            configs: RwLock::new(configs),
        });
        self.topic_ids.write().insert(id, topic.clone());
        self.topics.write().insert(arc_name, topic.clone());
        tracing::info!(topic = name, partitions, "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its data.
    pub fn delete_topic(&self, name: &str) -> Result<(), ApiError> {
        let _guard = self.admin_lock.lock();
        let topic = self
            .topics
            .write()
            .remove(name)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")))?;
        self.topic_ids.write().remove(&topic.id);
        // Renaming the directories first makes the deletion survive a crash: a
        // start that finds a `.deleting` directory finishes the deletion instead
        // of recovering the topic from directories that lost their metadata.
        let mut doomed = Vec::new();
        for partition in topic.partitions() {
            let result = partition.take_log_for(|log| {
                let dir = log.dir().to_path_buf();
                let target = deleting_name(&dir, &topic.id);
                match std::fs::rename(&dir, &target) {
                    Ok(()) => doomed.push(target),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(StorageError::io(dir, e)),
                }
                Ok(())
            });
            if let Err(e) = result {
                tracing::warn!(topic = name, partition = partition.index, error = %e, "moving partition data aside for deletion failed");
            }
        }
        if let Err(e) = runnel_storage::meta::sync_dir(self.data_dir.root()) {
            tracing::warn!(topic = name, error = %e, "syncing the data directory failed");
        }
        self.meta.remove(name).map_err(|e| ApiError::from(&e))?;
        for dir in doomed {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(topic = name, dir = %dir.display(), error = %e, "removing partition data failed");
            }
        }
        tracing::info!(topic = name, "deleted topic");
        Ok(())
    }

    /// Raises a topic's partition count to `total`.
    pub fn create_partitions(&self, name: &str, total: i32, validate_only: bool) -> Result<(), ApiError> {
        let _guard = self.admin_lock.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")))?;
        let current = topic.partition_count() as i32;
        if total <= current {
            let msg = if total == current {
                format!("Topic already has {current} partitions.")
            } else {
                format!("Topic currently has {current} partitions, which is higher than the requested {total}.")
            };
            return Err(ApiError::new(ResponseError::InvalidPartitions, msg));
        }
        if validate_only {
            return Ok(());
        }
        self.add_local_partitions(&topic, total, |_| {})
    }

    /// Raises a topic's partition count to what the committed cluster metadata holds;
    /// `prepare` sets each new partition's role before requests can see it.
    pub fn add_partitions_from_image(&self, name: &str, total: i32, prepare: impl Fn(&Arc<Partition>)) -> Result<(), ApiError> {
        let _guard = self.admin_lock.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")))?;
        if total <= topic.partition_count() as i32 {
            return Ok(());
        }
        self.add_local_partitions(&topic, total, prepare)
    }

    /// The caller holds `admin_lock`.
    fn add_local_partitions(&self, topic: &Topic, total: i32, prepare: impl Fn(&Arc<Partition>)) -> Result<(), ApiError> {
        let name = &*topic.name;
        let current = topic.partition_count() as i32;
        let log_config = self.effective_log_config(topic)?;
        let mut added = Vec::new();
        for index in current..total {
            let dir = self.data_dir.partition_dir(name, index);
            let log = Log::open(&dir, log_config.clone()).map_err(|e| ApiError::from(&e))?;
            write_partition_metadata(&dir, *topic.id.as_bytes()).map_err(|e| ApiError::from(&e))?;
            let partition = Partition::new(topic.name.clone(), index, log, self.config.node_id);
            prepare(&partition);
            added.push(partition);
        }
        let meta = TopicMeta {
            name: name.to_string(),
            topic_id: *topic.id.as_bytes(),
            partitions: total as u32,
            configs: topic.config_overrides(),
        };
        self.meta.put(&meta).map_err(|e| ApiError::from(&e))?;
        topic.partitions.write().extend(added);
        tracing::info!(topic = name, partitions = total, "added partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides (validated first), persists them,
    /// and applies them to every partition's log.
    pub fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>, validate_only: bool) -> Result<(), ApiError> {
        let _guard = self.admin_lock.lock();
        let topic = self
            .topic(name)
            .ok_or_else(|| ApiError::new(ResponseError::UnknownTopicOrPartition, format!("Topic '{name}' does not exist.")))?;
        let log_config = self
            .log_config_for(&configs)
            .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        if validate_only {
            return Ok(());
        }
        let meta = TopicMeta {
            name: name.to_string(),
            topic_id: *topic.id.as_bytes(),
            partitions: topic.partition_count() as u32,
            configs: configs.clone(),
        };
        self.meta.put(&meta).map_err(|e| ApiError::from(&e))?;
        *topic.configs.write() = configs;
        for partition in topic.partitions() {
            partition.set_config(log_config.clone());
        }
        Ok(())
    }

    /// The leaders replica fetchers run for (see [`crate::replica_fetcher`]).
    pub fn fetchers(&self) -> &Mutex<std::collections::HashSet<i32>> {
        &self.fetchers
    }

    pub fn is_shut_down(&self) -> bool {
        self.shut_down.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sets who carries ISR changes to the controller.
    pub fn set_alter_partition_sender(&self, sender: Arc<dyn AlterPartitionSender>) {
        *self.alter_partition.write() = sender;
    }

    pub fn set_replica_lag_time_max_ms(&self, ms: i64) {
        self.replica_lag_time_max_ms.store(ms, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn replica_lag_time_max_ms(&self) -> i64 {
        self.replica_lag_time_max_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records where broker `node_id` listens (the replica fetcher connects there).
    /// `host` is the name it registered (what its TLS certificate is checked against).
    pub fn set_broker_address(&self, node_id: i32, address: std::net::SocketAddr, host: &str) {
        self.broker_addresses.write().insert(node_id, (address, Arc::from(host)));
    }

    pub fn broker_address(&self, node_id: i32) -> Option<std::net::SocketAddr> {
        self.broker_addresses.read().get(&node_id).map(|(address, _)| *address)
    }

    /// Where broker `node_id` listens and the host name it registered.
    pub fn broker_endpoint(&self, node_id: i32) -> Option<(std::net::SocketAddr, Arc<str>)> {
        self.broker_addresses.read().get(&node_id).cloned()
    }

    pub fn set_broker_connector(&self, connector: crate::security::connector::BrokerConnector) {
        *self.broker_connector.write() = Arc::new(connector);
    }

    pub fn broker_connector(&self) -> Arc<crate::security::connector::BrokerConnector> {
        self.broker_connector.read().clone()
    }

    fn hosted(&self, topic: &str, partition: i32) -> Result<Arc<Partition>, ApiError> {
        self.partition(topic, partition).ok_or_else(|| {
            ApiError::new(ResponseError::UnknownTopicOrPartition, format!("{topic}-{partition} is not hosted by this broker"))
        })
    }

    /// Makes this broker the leader of `topic`-`partition` at `leader_epoch`
    /// with these replicas and ISR (Kafka's `makeLeader`, driven by the controller).
    pub fn become_leader(
        &self,
        topic: &str,
        partition: i32,
        leader_epoch: i32,
        partition_epoch: i32,
        replicas: Vec<i32>,
        isr: Vec<i32>,
    ) -> Result<(), ApiError> {
        let hosted = self.hosted(topic, partition)?;
        hosted.become_leader(leader_epoch, partition_epoch, replicas, isr, crate::now_ms())?;
        tracing::info!(topic, partition, leader_epoch, partition_epoch, "became leader");
        Ok(())
    }

    /// Makes this broker a follower of `leader_id` for `topic`-`partition`
    /// (Kafka's `makeFollower`); the replica fetcher takes it from there.
    pub fn become_follower(self: &Arc<Self>, topic: &str, partition: i32, leader_id: i32, leader_epoch: i32, partition_epoch: i32) -> Result<(), ApiError> {
        let hosted = self.hosted(topic, partition)?;
        hosted.become_follower(leader_id, leader_epoch, partition_epoch);
        tracing::info!(topic, partition, leader_id, leader_epoch, partition_epoch, "became follower");
        crate::replica_fetcher::ensure_fetcher(self, leader_id);
        Ok(())
    }

    /// Sends an ISR change to the controller in the background and applies
    /// what it committed; a refusal or failure is logged and the change may
    /// be proposed again later.
    pub fn propose_isr_change(&self, partition: Arc<Partition>, change: IsrChange) {
        let sender = self.alter_partition.read().clone();
        let request = sender.alter_partition(&partition.topic, partition.index, change.clone());
        tokio::spawn(async move {
            match request.await {
                Ok(AlteredPartition { leader_epoch, partition_epoch, isr }) if leader_epoch != partition.leader_epoch() => {
                    // The change completed a reassignment that moved leadership (Kafka ignores
                    // such an answer too): the ISR is no longer this leader's to apply, and
                    // counting it would acknowledge writes by replicas that now follow another
                    // leader. The metadata update makes this replica a follower.
                    tracing::info!(topic = %partition.topic, partition = partition.index, leader_epoch, partition_epoch, ?isr, "ISR changed with a new leader epoch; left to the metadata update");
                    partition.clear_pending_isr_change();
                }
                Ok(AlteredPartition { partition_epoch, isr, .. }) => {
                    tracing::info!(topic = %partition.topic, partition = partition.index, partition_epoch, ?isr, "ISR changed");
                    partition.apply_isr(partition_epoch, isr);
                }
                Err(error) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, ?change, ?error, "the controller refused the ISR change");
                    partition.clear_pending_isr_change();
                }
            }
        });
    }

    /// One round of Kafka's `isr-expiration` check: every led partition drops
    /// followers that have not caught up within `replica.lag.time.max.ms`.
    pub fn shrink_lagging_isrs(&self, now_ms: i64) {
        let lag = self.replica_lag_time_max_ms();
        for topic in self.topics() {
            for partition in topic.partitions() {
                if let Some(change) = partition.isr_shrink_proposal(lag, now_ms) {
                    self.propose_isr_change(partition.clone(), change);
                }
            }
        }
    }

    /// Starts the ISR expiration task: every half `replica.lag.time.max.ms`
    /// as Kafka, but at least every second (so a changed setting applies soon).
    pub fn start_isr_expiration_task(self: &Arc<Self>) {
        let manager = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(period) = manager.upgrade().map(|m| (m.replica_lag_time_max_ms() / 2).clamp(5, 1_000)) else { return };
                tokio::time::sleep(Duration::from_millis(period as u64)).await;
                let Some(manager) = manager.upgrade() else { return };
                manager.shrink_lagging_isrs(crate::now_ms());
            }
        });
    }

    /// Runs retention over every partition now.
    pub fn enforce_retention(&self, now_ms: i64) {
        for topic in self.topics() {
            for partition in topic.partitions() {
                let outcome = partition.with_log(|log| log.enforce_retention(now_ms));
                match outcome {
                    Ok(o) if o.segments_deleted > 0 => tracing::info!(
                        topic = %topic.name, partition = partition.index, segments = o.segments_deleted,
                        bytes = o.bytes_deleted, log_start_offset = o.log_start_offset, "retention deleted segments"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(topic = %topic.name, partition = partition.index, error = %e, "retention failed"),
                }
            }
        }
    }

    /// Starts the background retention task (every `log.retention.check.interval.ms`).
    pub fn start_retention_task(self: &Arc<Self>) {
        let manager = Arc::downgrade(self);
        let interval = Duration::from_millis(self.config.retention_check_interval_ms.max(10));
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                let Some(manager) = manager.upgrade() else { return };
                let now = crate::now_ms();
                // Retention deletes files: keep it off the async workers.
                let _ = tokio::task::spawn_blocking(move || manager.enforce_retention(now)).await;
            }
        });
    }

    /// Flushes and closes every log (clean shutdown).
    pub fn shutdown(&self) {
        self.shut_down.store(true, std::sync::atomic::Ordering::Release);
        for topic in self.topics() {
            for partition in topic.partitions() {
                if let Err(e) = partition.close() {
                    tracing::error!(topic = %topic.name, partition = partition.index, error = %e, "flush at shutdown failed");
                }
            }
        }
    }
}
