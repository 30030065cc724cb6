//! The group coordinator: consumer groups (classic protocol) and their
//! committed offsets.
//!
//! Groups live in memory ([`group::Group`]); committed offsets are written,
//! the way Kafka does it, as records to the internal compacted topic
//! `__consumer_offsets` (Kafka's key version 1 / value version 3 formats, see
//! [`offsets`]). That topic is in the cluster metadata like any other,
//! replicated with `offsets.topic.replication.factor`; a group belongs to the
//! partition `java_string_hash(group) % partitions`, and its coordinator is
//! that partition's leader. On becoming leader of a partition this broker
//! replays it to load its groups and offsets (COORDINATOR_LOAD_IN_PROGRESS
//! meanwhile); on losing it, they are unloaded and pending joins and syncs are
//! told NOT_COORDINATOR. A write is answered only once its record is in every
//! ISR member (the high watermark passed it) and fsynced on the leader.

pub mod assignor;
pub mod consumer_group;
pub mod consumer_protocol;
pub mod group;
pub mod group_record;
pub mod hosted;
pub mod offsets;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;

use crate::cluster::{Cluster, LeadershipListener};
use crate::config::BrokerConfig;
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
use consumer_group::{ClassicJoin, ConsumerGroup, Heartbeat, HeartbeatAnswer, MigrationPolicy, TopicsView, LEAVE_GROUP_EPOCH};
use group::{Group, JoinOutcome, JoinRequest, JoinResult, SyncOutcome, SyncResult};
use offsets::{CommittedOffset, OffsetKey};
pub use hosted::partition_for;
use hosted::HostedPartitions;
use records::CoordinatorRecord;

pub const OFFSETS_TOPIC: &str = "__consumer_offsets";
/// Kafka's `offset.metadata.max.bytes` default.
pub const OFFSET_METADATA_MAX_BYTES: usize = 4096;
const TICK: Duration = Duration::from_millis(100);
/// Kafka's `offsets.topic.segment.bytes` default.
pub const OFFSETS_SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// Kafka's `offsets.commit.timeout.ms` default: how long a write waits for the
/// in-sync replicas before the client is told COORDINATOR_NOT_AVAILABLE.
const OFFSETS_COMMIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a single node's start waits for its `__consumer_offsets` to be
/// created and led here before it serves anyway (clients then retry).
const START_LOAD_WAIT: Duration = Duration::from_secs(10);

/// One line of ListGroups.
pub struct ListedGroup {
    pub id: String,
    pub protocol_type: String,
    pub state: &'static str,
    pub group_type: &'static str,
}

pub struct GroupCoordinator {
    config: Arc<BrokerConfig>,
    replicas: Arc<ReplicaManager>,
    cluster: Arc<Cluster>,
    /// The offsets partitions whose groups are in memory here.
    /// Taken alone or after the other locks, never before them.
    hosted: HostedPartitions,
    groups: Mutex<HashMap<String, Group>>,
    /// Groups of the consumer group protocol (KIP-848). A group id lives in
    /// one map or the other: a group moves between them when it converts
    /// (online migration), and classic members of a consumer group live in it.
    /// Taken after `groups` when both are held.
    consumer_groups: Mutex<HashMap<String, ConsumerGroup>>,
    offsets: Mutex<BTreeMap<OffsetKey, CommittedOffset>>,
    /// Transactional offset commits (KIP-98/447) by producer id, in the log
    /// but visible only once the producer's COMMIT marker is written.
    pending_txn_offsets: Mutex<HashMap<i64, Vec<(OffsetKey, CommittedOffset)>>>,
    /// Held by every append to `__consumer_offsets`, so records land in the
    /// order they were made. Taken after the groups lock, never before it.
    /// (The topic is compacted by the broker's log cleaner, like any other.)
    append_lock: Mutex<()>,
}

impl LeadershipListener for GroupCoordinator {
    fn leaderships_changed(self: Arc<Self>) {
        self.follow_leaderships(true);
    }
}

impl GroupCoordinator {
    /// Starts the coordinator: it loads the `__consumer_offsets` partitions
    /// this broker leads (and follows leadership from now on), and starts the
    /// clock that expires sessions and completes rebalances. A single node
    /// creates the topic first and serves once its offsets are loaded, as before
    /// the topic was replicated; a cluster creates it at the first FindCoordinator.
    pub fn start(config: Arc<BrokerConfig>, replicas: Arc<ReplicaManager>, cluster: Arc<Cluster>) -> Result<Arc<GroupCoordinator>, String> {
        let coordinator = Arc::new(GroupCoordinator {
            config,
            replicas,
            cluster,
            hosted: HostedPartitions::new(OFFSETS_TOPIC),
            groups: Mutex::new(HashMap::new()),
            consumer_groups: Mutex::new(HashMap::new()),
            offsets: Mutex::new(BTreeMap::new()),
            pending_txn_offsets: Mutex::new(HashMap::new()),
            append_lock: Mutex::new(()),
        });
        let listener: Arc<dyn LeadershipListener> = coordinator.clone();
        coordinator.cluster.add_leadership_listener(Arc::downgrade(&listener));
        if coordinator.config.controller_quorum_voters.is_empty() {
            let handle = tokio::runtime::Handle::current();
            if let Err(e) = handle.block_on(coordinator.ensure_topic()) {
                tracing::warn!(error = ?e, "creating {OFFSETS_TOPIC} failed; FindCoordinator tries again");
            }
            let node_id = coordinator.config.node_id;
            let led = handle.block_on(coordinator.cluster.wait_for_image(START_LOAD_WAIT, |image| {
                image.topic_by_name(OFFSETS_TOPIC).is_some_and(|t| t.partitions.values().all(|p| p.leader == node_id))
            }));
            if !led {
                tracing::warn!("{OFFSETS_TOPIC} is not led here yet; groups answer COORDINATOR_LOAD_IN_PROGRESS until it is");
            }
        } else {
            coordinator.create_topic_once_brokers_registered();
        }
        // Loads what is led here now, on this thread: a single node serves with its offsets loaded.
        coordinator.follow_leaderships(false);
        let retention_check = Duration::from_millis(coordinator.config.offsets_retention_check_interval_ms.max(100));
        every(&coordinator, retention_check, |c| async move { c.expire_offsets().await });
        every(&coordinator, TICK, |c| async move { c.tick(Instant::now()) });
        Ok(coordinator)
    }

    /// A cluster creates `__consumer_offsets` as soon as enough brokers are live
    /// for its replication factor (or at the first FindCoordinator, if earlier), so
    /// that a broker lost later does not leave the cluster unable to create it.
    fn create_topic_once_brokers_registered(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let Some(coordinator) = weak.upgrade() else { return };
                let image = coordinator.cluster.image();
                if image.topic_by_name(OFFSETS_TOPIC).is_some() {
                    return;
                }
                if image.unfenced_brokers().count() >= coordinator.offsets_replication_factor() as usize {
                    let _ = coordinator.ensure_topic().await;
                }
            }
        });
    }

    /// The replication factor `__consumer_offsets` is created with:
    /// `offsets.topic.replication.factor` capped at the number of nodes the
    /// cluster is configured with, so a single node needs no setting.
    fn offsets_replication_factor(&self) -> i16 {
        let nodes = i16::try_from(Cluster::configured_nodes(&self.config)).unwrap_or(i16::MAX);
        self.config.offsets_topic_replication_factor.min(nodes).max(1)
    }

    /// Creates `__consumer_offsets` through the controller if the cluster has
    /// none (Kafka creates it at the first FindCoordinator) and waits until this
    /// broker has applied it. COORDINATOR_NOT_AVAILABLE if that fails, e.g. while
    /// fewer brokers are registered than its replication factor.
    pub async fn ensure_topic(&self) -> Result<(), ResponseError> {
        use runnel_controller::controller::CreateTopic;
        use runnel_controller::{ControllerRequest, ControllerResponse};
        if let Some(topic) = self.cluster.image().topic_by_name(OFFSETS_TOPIC) {
            let id = topic.topic_id;
            return self.cluster.wait_for_topic(&self.replicas, id).await.map(|_| ()).ok_or(ResponseError::CoordinatorNotAvailable);
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        // Kafka's offsets.topic.segment.bytes: small segments let the log cleaner free space.
        configs.insert("segment.bytes".to_string(), OFFSETS_SEGMENT_BYTES.to_string());
        let create = CreateTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: self.config.offsets_topic_num_partitions,
            replication_factor: self.offsets_replication_factor(),
            assignments: None,
            configs,
        };
        let topic_id = match self.cluster.submit(ControllerRequest::CreateTopic(create)).await {
            Ok(ControllerResponse::TopicCreated { topic_id, .. }) => {
                tracing::info!(partitions = self.config.offsets_topic_num_partitions, replication_factor = self.offsets_replication_factor(), "created {OFFSETS_TOPIC}");
                topic_id
            }
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {
                // Created meanwhile (another broker's first FindCoordinator, or the
                // creation once enough brokers are live): it may not be applied here yet.
                let applied = |image: &runnel_controller::MetadataImage| image.topic_by_name(OFFSETS_TOPIC).is_some();
                if !self.cluster.wait_for_image(crate::cluster::APPLY_WAIT, applied).await {
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
                let image = self.cluster.image();
                image.topic_by_name(OFFSETS_TOPIC).map(|t| t.topic_id).ok_or(ResponseError::CoordinatorNotAvailable)?
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to creating {OFFSETS_TOPIC}");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            Err(e) => {
                tracing::warn!(error = %e, "creating {OFFSETS_TOPIC} failed");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        };
        self.cluster.wait_for_topic(&self.replicas, topic_id).await.map(|_| ()).ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// Whether this broker coordinates `group_id` now: it leads the group's
    /// offsets partition (else NOT_COORDINATOR) and has loaded it (else
    /// COORDINATOR_LOAD_IN_PROGRESS). Every group API asks this first.
    pub fn check_coordinator(&self, group_id: &str) -> Result<(), ResponseError> {
        self.hosted.coordinator_epoch(&self.replicas, &self.cluster, group_id).map(|_| ())
    }

    /// Loads the offsets partitions led here that are not loaded at their
    /// current leader epoch, and unloads those no longer led here. In the
    /// background (`in_background`, from the image follower) or on this thread.
    fn follow_leaderships(self: &Arc<Self>, in_background: bool) {
        let changes = self.hosted.changes(&self.replicas, &self.cluster);
        for index in changes.to_unload {
            self.unload_partition(index, changes.partition_count);
        }
        for (partition, epoch) in changes.to_load {
            if in_background {
                let coordinator = self.clone();
                tokio::task::spawn_blocking(move || coordinator.load_partition(&partition, epoch));
            } else {
                self.load_partition(&partition, epoch);
            }
        }
    }

    /// Forgets the groups and offsets of an offsets partition no longer led here
    /// (`partitions`: the topic's partition count, None when it is gone: all).
    /// Members waiting for a join or sync are told NOT_COORDINATOR and find the new one.
    fn unload_partition(&self, index: i32, partitions: Option<usize>) {
        let belongs = |group: &str| partitions.is_none_or(|count| partition_for(group, count) == index);
        let mut offsets = self.offsets.lock();
        let mut groups = self.groups.lock();
        let mut consumer_groups = self.consumer_groups.lock();
        let before = groups.len() + consumer_groups.len();
        offsets.retain(|key, _| !belongs(&key.group));
        groups.retain(|id, group| {
            if belongs(id) {
                group.fail_waiting(ResponseError::NotCoordinator);
                false
            } else {
                true
            }
        });
        consumer_groups.retain(|id, _| !belongs(id));
        let mut pending = self.pending_txn_offsets.lock();
        for commits in pending.values_mut() {
            commits.retain(|(key, _)| !belongs(&key.group));
        }
        pending.retain(|_, commits| !commits.is_empty());
        let unloaded = before - groups.len() - consumer_groups.len();
        if unloaded > 0 {
            tracing::info!(partition = index, groups = unloaded, "unloaded the groups of a {OFFSETS_TOPIC} partition no longer led here");
        } else {
            tracing::debug!(partition = index, "unloaded an empty {OFFSETS_TOPIC} partition no longer led here");
        }
    }

    /// Replays one offsets partition led here at `epoch` and makes its groups and
    /// offsets live, unless leadership moved on meanwhile.
    fn load_partition(&self, partition: &Arc<Partition>, epoch: i32) {
        let started = Instant::now();
        // Offsets in this topic mean nothing outside the broker, so the intact
        // batches that recovery found after a corrupt one are worth appending again.
        match partition.with_log(|log| log.salvage_quarantined(partition.leader_epoch(), crate::now_ms())) {
            Ok(0) => {}
            Ok(n) => tracing::warn!(partition = partition.index, batches = n, "re-appended the intact {OFFSETS_TOPIC} batches found after a corrupt one"),
            Err(e) => tracing::error!(partition = partition.index, error = %e, "could not re-append the intact {OFFSETS_TOPIC} batches; they stay in the quarantine file"),
        }
        let replay = records::read_all(partition);
        if let Some(why) = &replay.incomplete {
            tracing::error!(partition = partition.index, why = %why, "{OFFSETS_TOPIC} could only be replayed in part: later commits and group state are missing");
        }
        let now = Instant::now();
        let mut offsets: BTreeMap<OffsetKey, CommittedOffset> = BTreeMap::new();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut pending: HashMap<i64, Vec<(OffsetKey, CommittedOffset)>> = HashMap::new();
        let (mut offsets_loaded, mut groups_loaded) = (0usize, 0usize);
        for record in replay.records {
            match record {
                CoordinatorRecord::Offset(key, value) => {
                    groups.entry(key.group.clone()).or_insert_with(|| Group::new(key.group.clone()));
                    match value {
                        Some(v) => offsets.insert(key, v),
                        None => offsets.remove(&key),
                    };
                    offsets_loaded += 1;
                }
                CoordinatorRecord::Group(id, Some(meta)) => {
                    groups.insert(id.clone(), Group::restore(id, meta, now));
                    groups_loaded += 1;
                }
                CoordinatorRecord::Group(id, None) => {
                    groups.remove(&id);
                }
                CoordinatorRecord::TxnOffset(producer_id, key, value) => {
                    groups.entry(key.group.clone()).or_insert_with(|| Group::new(key.group.clone()));
                    pending.entry(producer_id).or_default().push((key, value));
                }
                CoordinatorRecord::TxnMarker { producer_id, commit } => {
                    if let Some(commits) = pending.remove(&producer_id) {
                        if commit {
                            offsets_loaded += commits.len();
                            offsets.extend(commits);
                        }
                    }
                }
            }
        }
        let mut cache = self.offsets.lock();
        let mut live_groups = self.groups.lock();
        let mut pending_txn_offsets = self.pending_txn_offsets.lock();
        if !self.hosted.finish_loading(partition.index, epoch) {
            tracing::info!(partition = partition.index, leader_epoch = epoch, "leadership moved while loading; the loaded state is dropped");
            return;
        }
        cache.extend(offsets);
        live_groups.extend(groups);
        for (producer_id, commits) in pending {
            pending_txn_offsets.entry(producer_id).or_default().extend(commits);
        }
        // Most of the 50 partitions hold nothing: those are not worth a line each.
        if offsets_loaded == 0 && groups_loaded == 0 {
            tracing::debug!(partition = partition.index, leader_epoch = epoch, "loaded an empty {OFFSETS_TOPIC} partition led here");
        } else {
            tracing::info!(
                partition = partition.index, leader_epoch = epoch, offsets = offsets_loaded, groups = groups_loaded,
                took_ms = started.elapsed().as_millis() as u64, "loaded the groups of a {OFFSETS_TOPIC} partition led here"
            );
        }
    }

    /// The clock: session expiry, rebalance deadlines, and persisting what they changed.
    fn tick(&self, now: Instant) {
        let mut groups = self.groups.lock();
        for group in groups.values_mut() {
            group.tick(now);
            self.persist_if_dirty(group);
        }
        let dynamic = self.replicas.dynamic_configs();
        let mut consumer_groups = self.consumer_groups.lock();
        let ids: Vec<String> = consumer_groups.keys().cloned().collect();
        for group_id in ids {
            // A group's own consumer.session.timeout.ms (KIP-848 group config), else the broker's.
            let session = Duration::from_millis(dynamic.consumer_session_timeout_ms(&group_id).max(0) as u64);
            let doomed = consumer_groups.get(&group_id).map(|g| g.expired_members(now, session)).unwrap_or_default();
            self.fence_consumer_members(&mut groups, &mut consumer_groups, &group_id, &doomed, now);
        }
    }

    fn migration_policy(&self) -> MigrationPolicy {
        self.config.group_consumer_migration_policy
    }

    /// Removes members from a consumer-protocol group (they left, or missed a
    /// deadline). If only classic members remain and the policy allows it, the
    /// group goes back to the classic protocol instead and its members
    /// rebalance there (Kafka's online downgrade). Called with both locks held.
    fn fence_consumer_members(
        &self,
        groups: &mut HashMap<String, Group>,
        consumer_groups: &mut HashMap<String, ConsumerGroup>,
        group_id: &str,
        leaving: &[String],
        now: Instant,
    ) {
        let Some(group) = consumer_groups.get_mut(group_id) else { return };
        if leaving.is_empty() {
            return;
        }
        if !(self.migration_policy().downgrade_enabled() && group.only_classic_members_remain_without(leaving)) {
            for id in leaving {
                group.remove_member(id);
            }
            return;
        }
        let members = group.to_classic_members(leaving, &self.topics_view());
        let classic = Group::downgraded(group_id.to_string(), group.group_epoch, members, true, now);
        tracing::info!(group = group_id, generation = classic.generation, "converted the consumer group to a classic group: only classic members remain");
        consumer_groups.remove(group_id);
        let group = groups.entry(group_id.to_string()).insert_entry(classic).into_mut();
        self.persist_if_dirty(group);
    }

    /// The member id for a classic member of a consumer group joining without
    /// one, and the outcome of its JoinGroup (Kafka's
    /// classicGroupJoinToConsumerGroup). Called with both locks held.
    fn classic_join_consumer_group(
        &self,
        groups: &mut HashMap<String, Group>,
        consumer_groups: &mut HashMap<String, ConsumerGroup>,
        group_id: &str,
        req: JoinRequest,
    ) -> JoinOutcome {
        let policy = self.migration_policy();
        let Some(group) = consumer_groups.get_mut(group_id) else {
            return JoinOutcome::error(ResponseError::UnknownMemberId, req.member_id);
        };
        if policy == MigrationPolicy::Disabled || !group.supports_classic_protocols(&req.protocol_type, &req.protocols) {
            return JoinOutcome::error(ResponseError::InconsistentGroupProtocol, req.member_id);
        }
        let unknown = req.member_id.is_empty();
        let member_id = if unknown { uuid::Uuid::new_v4().to_string() } else { req.member_id.clone() };
        if unknown && req.instance_id.is_none() && req.require_known_member_id {
            return JoinOutcome::error(ResponseError::MemberIdRequired, member_id);
        }
        if !unknown {
            if let Err(e) = group.check_classic_rejoin(&member_id, req.instance_id.as_deref()) {
                return JoinOutcome::error(e, member_id);
            }
        }
        let topics = self.topics_view();
        let metadata = req.protocols.first().map(|(_, metadata)| metadata.clone()).unwrap_or_default();
        let subscription = match consumer_protocol::decode_subscription(&metadata, &topics) {
            Ok(subscription) => subscription,
            Err(why) => {
                tracing::warn!(group = group_id, member = %member_id, why = %why, "a classic member's subscription cannot be read");
                return JoinOutcome::error(ResponseError::InconsistentGroupProtocol, member_id);
            }
        };
        let now = Instant::now();
        let join = ClassicJoin {
            member_id,
            instance_id: req.instance_id.clone(),
            client_id: req.client_id,
            client_host: req.client_host,
            session_timeout: req.session_timeout,
            rebalance_timeout: req.rebalance_timeout,
            protocols: req.protocols,
            subscription,
        };
        let answer = group.classic_join(join, &topics, now);
        tracing::debug!(group = group_id, member = %answer.member_id, generation = answer.generation, "classic member joined the consumer group");
        // The last consumer-protocol member was a static member whose new incarnation speaks classic.
        if answer.replaced_consumer_member && policy.downgrade_enabled() && group.only_classic_members_remain_without(&[]) {
            let rebalance = group.assignment_epoch < group.group_epoch;
            let members = group.to_classic_members(&[], &topics);
            let classic = Group::downgraded(group_id.to_string(), group.group_epoch, members, rebalance, now);
            tracing::info!(group = group_id, "converted the consumer group to a classic group: its last consumer-protocol member came back as a classic member");
            consumer_groups.remove(group_id);
            let group = groups.entry(group_id.to_string()).insert_entry(classic).into_mut();
            self.persist_if_dirty(group);
        }
        JoinOutcome {
            error: None,
            generation: answer.generation,
            protocol_type: Some("consumer".to_string()),
            protocol_name: Some(answer.protocol_name),
            // No leader: the coordinator assigns, so the member only syncs.
            leader: String::new(),
            member_id: answer.member_id,
            members: Vec::new(),
            skip_assignment: false,
        }
    }

    fn offsets_partition(&self, group_id: &str) -> Option<Arc<Partition>> {
        let topic = self.replicas.topic(OFFSETS_TOPIC)?;
        topic.partition(self.offsets_partition_index(group_id)?)
    }

    /// The `__consumer_offsets` partition of a group (AddOffsetsToTxn adds it to a transaction).
    pub fn offsets_partition_index(&self, group_id: &str) -> Option<i32> {
        let topic = self.replicas.topic(OFFSETS_TOPIC)?;
        Some(partition_for(group_id, topic.partition_count()))
    }

    /// TxnOffsetCommit: appends the producer's offsets as a transactional
    /// batch (durably) and keeps them pending until its transaction ends.
    pub async fn commit_txn_offsets(&self, group_id: &str, producer_id: i64, producer_epoch: i16, commits: Vec<(OffsetKey, CommittedOffset)>) -> Result<(), ResponseError> {
        if commits.is_empty() {
            return Ok(());
        }
        let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
        let last_offset = {
            let _guard = self.append_lock.lock();
            let last = records::append_transactional(&partition, producer_id, producer_epoch, &commits).map_err(coordinator_error)?;
            // Pending from the append on, so a marker that follows at once finds them.
            self.pending_txn_offsets.lock().entry(producer_id).or_default().extend(commits);
            last
        };
        wait_committed(&partition, last_offset).await
    }

    /// A producer's transaction ended (its marker is in `__consumer_offsets`):
    /// its pending offsets become committed, or are dropped on abort.
    pub fn complete_txn(&self, producer_id: i64, commit: bool) {
        let Some(commits) = self.pending_txn_offsets.lock().remove(&producer_id) else { return };
        if commit {
            let mut cache = self.offsets.lock();
            for (key, value) in commits {
                cache.insert(key, value);
            }
        }
    }

    /// Whether a transactional commit of this offset is pending (OffsetFetch
    /// with require_stable answers UNSTABLE_OFFSET_COMMIT then, KIP-447).
    pub fn has_pending_txn_offset(&self, key: &OffsetKey) -> bool {
        self.pending_txn_offsets.lock().values().any(|commits| commits.iter().any(|(k, _)| k == key))
    }

    fn append(&self, partition: &Partition, entries: &[CoordinatorRecord]) -> Result<i64, ResponseError> {
        let _guard = self.append_lock.lock();
        records::append(partition, entries).map_err(coordinator_error)
    }

    async fn append_durably(&self, partition: &Partition, entries: &[CoordinatorRecord]) -> Result<(), ResponseError> {
        let last_offset = self.append(partition, entries)?;
        wait_committed(partition, last_offset).await
    }

    /// Writes the group's metadata record if its persisted state is out of
    /// date. Called with the groups lock held, so records stay in order.
    /// Returns what to wait on for durability.
    fn persist_if_dirty(&self, group: &mut Group) -> Option<(Arc<Partition>, i64)> {
        if !group.take_dirty() {
            return None;
        }
        let partition = self.offsets_partition(&group.id)?;
        match self.append(&partition, &[CoordinatorRecord::Group(group.id.clone(), Some(group.snapshot()))]) {
            Ok(last) => Some((partition, last)),
            Err(e) => {
                tracing::warn!(group = %group.id, error = ?e, "persisting group metadata failed");
                None
            }
        }
    }

    pub fn initial_rebalance_delay(&self) -> Duration {
        Duration::from_millis(self.config.group_initial_rebalance_delay_ms)
    }

    pub fn session_timeout_in_range(&self, session_timeout_ms: i32) -> bool {
        (self.config.group_min_session_timeout_ms..=self.config.group_max_session_timeout_ms).contains(&session_timeout_ms)
    }

    pub fn join(&self, group_id: &str, req: JoinRequest) -> JoinResult {
        if let Err(e) = self.check_coordinator(group_id) {
            return JoinResult::Now(JoinOutcome::error(e, req.member_id));
        }
        let mut groups = self.groups.lock();
        {
            let mut consumer_groups = self.consumer_groups.lock();
            match consumer_groups.get(group_id) {
                // Classic members join a consumer-protocol group as its members (online migration).
                Some(group) if !group.is_empty() => {
                    return JoinResult::Now(self.classic_join_consumer_group(&mut groups, &mut consumer_groups, group_id, req));
                }
                // An empty consumer-protocol group simply becomes a classic one.
                Some(_) => {
                    consumer_groups.remove(group_id);
                }
                None => {}
            }
        }
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string()));
        let result = group.join(req, Instant::now(), self.initial_rebalance_delay());
        self.persist_if_dirty(group);
        result
    }

    /// SyncGroup. The leader's answer waits until the new assignment is durable.
    pub async fn sync(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        assignments: Vec<(String, bytes::Bytes)>,
    ) -> SyncResult {
        if let Err(e) = self.check_coordinator(group_id) {
            return SyncResult::Now(SyncOutcome::error(e));
        }
        if let Some(group) = self.consumer_groups.lock().get_mut(group_id) {
            // A classic member of a consumer-protocol group gets the assignment the coordinator computed.
            let outcome = match group.classic_sync(member_id, instance_id, generation, (None, None), &self.topics_view(), Instant::now()) {
                Ok((protocol_name, assignment)) => SyncOutcome {
                    error: None,
                    protocol_type: Some("consumer".to_string()),
                    protocol_name: Some(protocol_name),
                    assignment,
                },
                Err(e) => SyncOutcome::error(e),
            };
            return SyncResult::Now(outcome);
        }
        let (result, written) = {
            let mut groups = self.groups.lock();
            match groups.get_mut(group_id) {
                Some(group) => {
                    let result = group.sync(member_id, instance_id, generation, assignments, Instant::now());
                    (result, self.persist_if_dirty(group))
                }
                None => (SyncResult::Now(SyncOutcome::error(ResponseError::UnknownMemberId)), None),
            }
        };
        if let Some((partition, last)) = written {
            if let Err(e) = wait_committed(&partition, last).await {
                return SyncResult::Now(SyncOutcome::error(e));
            }
        }
        result
    }

    pub fn heartbeat(&self, group_id: &str, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<(), ResponseError> {
        self.check_coordinator(group_id)?;
        if let Some(group) = self.consumer_groups.lock().get_mut(group_id) {
            let now = Instant::now();
            if group.only_classic_members_remain_without(&[]) {
                group.refresh_target(&self.topics_view(), now);
            }
            return group.classic_heartbeat(member_id, instance_id, generation, now);
        }
        let mut groups = self.groups.lock();
        let group = groups.get_mut(group_id).ok_or(ResponseError::UnknownMemberId)?;
        group.heartbeat(member_id, instance_id, generation, Instant::now())
    }

    /// Removes members (by id, or by static instance id); per-member errors.
    pub fn leave(&self, group_id: &str, members: &[(String, Option<String>)]) -> Vec<Result<(), ResponseError>> {
        let mut groups = self.groups.lock();
        {
            let mut consumer_groups = self.consumer_groups.lock();
            if let Some(group) = consumer_groups.get(group_id) {
                let (results, leaving) = group.classic_leave(members);
                self.fence_consumer_members(&mut groups, &mut consumer_groups, group_id, &leaving, Instant::now());
                return results;
            }
        }
        let Some(group) = groups.get_mut(group_id) else {
            return members.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect();
        };
        let results = members
            .iter()
            .map(|(member_id, instance)| {
                let id = group.resolve_leaving_member(member_id, instance.as_deref())?;
                tracing::debug!(group = group_id, member = %id, "member left");
                group.remove_member(&id, Instant::now());
                Ok(())
            })
            .collect();
        self.persist_if_dirty(group);
        results
    }

    /// OffsetFetch v9 from a member of a consumer-protocol group: it must be
    /// a member at its current epoch.
    pub fn validate_fetch(&self, group_id: &str, member_id: &str, member_epoch: i32) -> Result<(), ResponseError> {
        match self.consumer_groups.lock().get(group_id) {
            Some(group) => group.validate_member_epoch(member_id, member_epoch, ResponseError::StaleMemberEpoch),
            None => Ok(()),
        }
    }

    /// The topics a consumer group may subscribe to: name → (id, partitions).
    fn topics_view(&self) -> TopicsView {
        self.replicas
            .topics()
            .into_iter()
            .map(|t| (t.name.to_string(), assignor::TopicInfo { id: t.id, partitions: t.partition_count() as i32 }))
            .collect()
    }

    /// ConsumerGroupHeartbeat (KIP-848).
    pub fn consumer_heartbeat(&self, group_id: &str, req: Heartbeat) -> Result<HeartbeatAnswer, (ResponseError, String)> {
        self.check_coordinator(group_id).map_err(|e| (e, String::new()))?;
        let topics = self.topics_view();
        let now = Instant::now();
        let mut classic_groups = self.groups.lock();
        let mut groups = self.consumer_groups.lock();
        if !groups.contains_key(group_id) {
            if let Some(classic) = classic_groups.get_mut(group_id) {
                if req.member_epoch == 0 {
                    if !classic.is_empty() {
                        groups.insert(group_id.to_string(), self.upgrade(classic, &topics, now)?);
                    }
                    // An empty classic group simply becomes a consumer-protocol group.
                    classic_groups.remove(group_id);
                    if let Some(partition) = self.offsets_partition(group_id) {
                        if let Err(e) = self.append(&partition, &[CoordinatorRecord::Group(group_id.to_string(), None)]) {
                            tracing::warn!(group = group_id, error = ?e, "writing the converted classic group's tombstone failed");
                        }
                    }
                } else if !classic.is_empty() {
                    return Err((ResponseError::GroupIdNotFound, format!("Group {group_id} is not a consumer group.")));
                }
            }
        }
        if req.member_epoch == LEAVE_GROUP_EPOCH {
            // The last consumer-protocol member leaving a group of classic members: back to classic.
            let leaving = groups.get(group_id).and_then(|g| g.member_for(&req.member_id, req.instance_id.as_deref()));
            let downgrade = leaving.as_ref().is_some_and(|id| {
                self.migration_policy().downgrade_enabled()
                    && groups.get(group_id).is_some_and(|g| g.only_classic_members_remain_without(std::slice::from_ref(id)))
            });
            if let (true, Some(id)) = (downgrade, leaving) {
                self.fence_consumer_members(&mut classic_groups, &mut groups, group_id, std::slice::from_ref(&id), now);
                return Ok(HeartbeatAnswer { member_id: id, member_epoch: LEAVE_GROUP_EPOCH, assignment: None });
            }
        }
        drop(classic_groups);
        if req.member_epoch != 0 && !groups.contains_key(group_id) {
            return Err((ResponseError::UnknownMemberId, format!("Member {} is not a member of group {group_id}.", req.member_id)));
        }
        let group = groups.entry(group_id.to_string()).or_insert_with(|| ConsumerGroup::new(group_id.to_string()));
        let (member_id, member_epoch, instance_id) = (req.member_id.clone(), req.member_epoch, req.instance_id.clone());
        let has_subscription = req.subscribed_topic_names.is_some() || req.subscribed_topic_regex.is_some();
        group.heartbeat(req, &topics, now).map_err(|e| {
            // The messages Kafka sends with these errors (clients log them).
            let message = match e {
                ResponseError::InvalidRequest if member_epoch == 0 && !has_subscription => {
                    "SubscribedTopicNames must be set in first request.".to_string()
                }
                ResponseError::InvalidRequest if member_epoch == 0 => "RebalanceTimeoutMs must be provided in first request.".to_string(),
                ResponseError::InvalidRequest => "MemberEpoch is invalid.".to_string(),
                ResponseError::UnknownMemberId => format!("Member {member_id} is not a member of group {group_id}."),
                ResponseError::FencedMemberEpoch => format!(
                    "The consumer group member's epoch ({member_epoch}) is not the one the group coordinator expects. \
                     The member must abandon all its partitions and rejoin."
                ),
                ResponseError::UnreleasedInstanceId => {
                    format!("Static member with instance id {} is not released yet.", instance_id.unwrap_or_default())
                }
                _ => String::new(),
            };
            (e, message)
        })
    }

    /// The consumer-protocol group a non-empty classic group becomes when a
    /// consumer-protocol member joins it (Kafka's online upgrade). Its members'
    /// pending JoinGroup/SyncGroup are told to rejoin.
    fn upgrade(&self, classic: &mut Group, topics: &TopicsView, now: Instant) -> Result<ConsumerGroup, (ResponseError, String)> {
        let id = classic.id.clone();
        if !self.migration_policy().upgrade_enabled() {
            let message = format!("Cannot upgrade classic group {id} to consumer group because online upgrade is disabled.");
            return Err((ResponseError::GroupIdNotFound, message));
        }
        if classic.protocol_type.as_deref() != Some("consumer") {
            let message = format!("Cannot upgrade classic group {id} to consumer group because the group does not use the consumer embedded protocol.");
            return Err((ResponseError::GroupIdNotFound, message));
        }
        let converted = ConsumerGroup::from_classic(classic, topics, now).map_err(|why| {
            tracing::warn!(group = %id, why = %why, "cannot upgrade the classic group to a consumer group");
            (ResponseError::GroupIdNotFound, format!("Cannot upgrade classic group {id} to consumer group: {why}."))
        })?;
        classic.fail_waiting(ResponseError::RebalanceInProgress);
        tracing::info!(group = %id, members = converted.members.len(), epoch = converted.group_epoch, "converted the classic group to a consumer group");
        Ok(converted)
    }

    /// A group's own consumer.heartbeat.interval.ms (KIP-848 group config), else the broker's.
    pub fn consumer_heartbeat_interval_ms(&self, group_id: &str) -> i32 {
        self.replicas.dynamic_configs().consumer_heartbeat_interval_ms(group_id)
    }

    /// Runs `f` on a consumer group (None when there is no such group).
    pub fn describe_consumer_group<R>(&self, group_id: &str, f: impl FnOnce(Option<&ConsumerGroup>) -> R) -> R {
        let groups = self.consumer_groups.lock();
        f(groups.get(group_id))
    }

    /// Topic name of a topic id, for answers that show both.
    pub fn topic_name(&self, id: &uuid::Uuid) -> Option<String> {
        self.replicas.topic_by_id(id).map(|t| t.name.to_string())
    }

    /// Validates a commit against the group's membership and generation.
    /// `api_version` is OffsetCommit's; a TxnOffsetCommit (`transactional`)
    /// is judged as OffsetCommit v8 for a classic group.
    pub fn validate_commit(
        &self,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        api_version: i16,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        self.check_coordinator(group_id)?;
        if let Some(group) = self.consumer_groups.lock().get(group_id) {
            return group.validate_commit(member_id, generation, api_version, transactional);
        }
        // A group with committed offsets exists for Kafka even when no member
        // ever joined (a "simple" group, recreated from its offsets on load).
        let has_offsets = self.has_committed_offsets(group_id);
        let mut groups = self.groups.lock();
        if generation >= 0 && !has_offsets && !groups.contains_key(group_id) {
            // A generation names a group that does not exist: Kafka answers
            // GROUP_ID_NOT_FOUND from v9, ILLEGAL_GENERATION before.
            return Err(if api_version >= 9 { ResponseError::GroupIdNotFound } else { ResponseError::IllegalGeneration });
        }
        let group = groups.entry(group_id.to_string()).or_insert_with(|| Group::new(group_id.to_string()));
        group.validate_commit(member_id, instance_id, generation)
    }

    fn has_committed_offsets(&self, group_id: &str) -> bool {
        let start = OffsetKey { group: group_id.to_string(), topic: String::new(), partition: i32::MIN };
        self.offsets.lock().range(start..).next().is_some_and(|(k, _)| k.group == group_id)
    }

    /// Durably records offsets: appends them to `__consumer_offsets`, waits
    /// for the fsync, then makes them visible to OffsetFetch.
    pub async fn store_offsets(&self, group_id: &str, commits: Vec<(OffsetKey, CommittedOffset)>) -> Result<(), ResponseError> {
        if commits.is_empty() {
            return Ok(());
        }
        let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
        let entries: Vec<CoordinatorRecord> =
            commits.iter().map(|(k, v)| CoordinatorRecord::Offset(k.clone(), Some(v.clone()))).collect();
        self.append_durably(&partition, &entries).await?;
        let mut cache = self.offsets.lock();
        for (key, value) in commits {
            cache.insert(key, value);
        }
        Ok(())
    }

    pub fn committed(&self, key: &OffsetKey) -> Option<CommittedOffset> {
        self.offsets.lock().get(key).cloned()
    }

    /// Every committed offset of a group: (topic, partition) → offset.
    pub fn committed_for_group(&self, group_id: &str) -> Vec<(OffsetKey, CommittedOffset)> {
        let start = OffsetKey { group: group_id.to_string(), topic: String::new(), partition: i32::MIN };
        self.offsets
            .lock()
            .range(start..)
            .take_while(|(k, _)| k.group == group_id)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Every group: (group id, protocol type, state name, group type).
    pub fn list(&self) -> Vec<ListedGroup> {
        let mut out: Vec<ListedGroup> = self
            .groups
            .lock()
            .values()
            .map(|g| ListedGroup {
                id: g.id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_else(|| "consumer".into()),
                state: g.state.kafka_name(),
                group_type: "classic",
            })
            .collect();
        out.extend(self.consumer_groups.lock().values().map(|g| ListedGroup {
            id: g.id.clone(),
            protocol_type: "consumer".into(),
            state: g.state_name(),
            group_type: "consumer",
        }));
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    pub fn describe<R>(&self, group_id: &str, f: impl FnOnce(Option<&Group>) -> R) -> R {
        let groups = self.groups.lock();
        f(groups.get(group_id))
    }

    /// OffsetDelete: removes committed offsets of partitions the group does
    /// not subscribe to (all of them when the group has no members).
    /// Per-partition results, or a group-level error.
    pub async fn delete_offsets(&self, group_id: &str, partitions: &[(String, i32)]) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        self.check_coordinator(group_id)?;
        let consumer_subscriptions = self.consumer_groups.lock().get(group_id).map(|g| g.subscribed_topic_names());
        let subscribed = if let Some(topics) = consumer_subscriptions {
            topics.into_iter().collect()
        } else {
            let groups = self.groups.lock();
            let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            if group.members.is_empty() {
                std::collections::HashSet::new()
            } else {
                group.subscribed_topics().ok_or(ResponseError::NonEmptyGroup)?
            }
        };
        let results: Vec<Option<ResponseError>> = partitions
            .iter()
            .map(|(topic, _)| subscribed.contains(topic).then_some(ResponseError::GroupSubscribedToTopic))
            .collect();
        let doomed: Vec<OffsetKey> = partitions
            .iter()
            .zip(&results)
            .filter(|(_, r)| r.is_none())
            .map(|((topic, partition), _)| OffsetKey { group: group_id.to_string(), topic: topic.clone(), partition: *partition })
            .filter(|k| self.offsets.lock().contains_key(k))
            .collect();
        if !doomed.is_empty() {
            let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
            let tombstones: Vec<CoordinatorRecord> = doomed.iter().map(|k| CoordinatorRecord::Offset(k.clone(), None)).collect();
            self.append_durably(&partition, &tombstones).await?;
            let mut cache = self.offsets.lock();
            for key in doomed {
                cache.remove(&key);
            }
        }
        Ok(results)
    }

    /// Expires committed offsets older than `offsets.retention.minutes`, by
    /// Kafka's rules (see [`Group::offset_expiration_base`]; consumer-protocol
    /// groups keep offsets of subscribed topics), writing tombstones; an empty
    /// group left without offsets is deleted.
    pub async fn expire_offsets(&self) {
        let retention_ms = self.config.offsets_retention_minutes.saturating_mul(60_000);
        let now = crate::now_ms();
        let expired: Vec<OffsetKey> = {
            let offsets = self.offsets.lock();
            let groups = self.groups.lock();
            let consumer_groups = self.consumer_groups.lock();
            offsets
                .iter()
                .filter(|(key, value)| {
                    let base = match (consumer_groups.get(&key.group), groups.get(&key.group)) {
                        (Some(g), _) if g.subscribed_topic_names().contains(&key.topic) => None,
                        (Some(_), _) | (None, None) => Some(value.commit_timestamp),
                        (None, Some(g)) => g.offset_expiration_base(&key.topic, value.commit_timestamp),
                    };
                    base.is_some_and(|b| now.saturating_sub(b) >= retention_ms)
                })
                .map(|(k, _)| k.clone())
                .collect()
        };
        if expired.is_empty() {
            return;
        }
        let mut by_group: BTreeMap<String, Vec<OffsetKey>> = BTreeMap::new();
        for key in expired {
            by_group.entry(key.group.clone()).or_default().push(key);
        }
        for (group_id, keys) in by_group {
            let Some(partition) = self.offsets_partition(&group_id) else { continue };
            let mut records: Vec<CoordinatorRecord> = keys.iter().map(|k| CoordinatorRecord::Offset(k.clone(), None)).collect();
            let remaining = self.committed_for_group(&group_id).len() - keys.len();
            let group_gone = remaining == 0
                && self.groups.lock().get(&group_id).is_none_or(|g| g.is_empty())
                && self.consumer_groups.lock().get(&group_id).is_none_or(|g| g.is_empty());
            if group_gone {
                records.push(CoordinatorRecord::Group(group_id.clone(), None));
            }
            if let Err(e) = self.append_durably(&partition, &records).await {
                tracing::warn!(group = %group_id, error = ?e, "writing expired offsets failed; retrying at the next check");
                continue;
            }
            tracing::info!(group = %group_id, offsets = keys.len(), deleted_group = group_gone, "expired committed offsets");
            let mut cache = self.offsets.lock();
            for key in &keys {
                cache.remove(key);
            }
            drop(cache);
            if group_gone {
                // Unless a member joined meanwhile.
                let mut groups = self.groups.lock();
                if groups.get(&group_id).is_some_and(|g| g.is_empty()) {
                    groups.remove(&group_id);
                }
                drop(groups);
                let mut consumer_groups = self.consumer_groups.lock();
                if consumer_groups.get(&group_id).is_some_and(|g| g.is_empty()) {
                    consumer_groups.remove(&group_id);
                }
            }
        }
    }

    /// Deletes an empty group and its offsets (tombstones in `__consumer_offsets`).
    pub async fn delete_group(&self, group_id: &str) -> Result<(), ResponseError> {
        self.check_coordinator(group_id)?;
        let consumer_group = match self.consumer_groups.lock().get(group_id) {
            Some(group) if !group.is_empty() => return Err(ResponseError::NonEmptyGroup),
            Some(_) => true,
            None => false,
        };
        if !consumer_group {
            let groups = self.groups.lock();
            let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
            if !group.is_empty() {
                return Err(ResponseError::NonEmptyGroup);
            }
        }
        let keys: Vec<OffsetKey> = self.committed_for_group(group_id).into_iter().map(|(k, _)| k).collect();
        let partition = self.offsets_partition(group_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
        let mut tombstones: Vec<CoordinatorRecord> = keys.iter().map(|k| CoordinatorRecord::Offset(k.clone(), None)).collect();
        tombstones.push(CoordinatorRecord::Group(group_id.to_string(), None));
        self.append_durably(&partition, &tombstones).await?;
        let mut cache = self.offsets.lock();
        for key in keys {
            cache.remove(&key);
        }
        drop(cache);
        self.groups.lock().remove(group_id);
        self.consumer_groups.lock().remove(group_id);
        Ok(())
    }
}

/// A write to `__consumer_offsets` as the group APIs report it (Kafka's
/// mapping): leadership lost → NOT_COORDINATOR; too few replicas or a timeout
/// → COORDINATOR_NOT_AVAILABLE; a fenced producer stays what it is.
pub(crate) fn coordinator_error(code: ResponseError) -> ResponseError {
    match code {
        ResponseError::NotLeaderOrFollower | ResponseError::UnknownTopicOrPartition => ResponseError::NotCoordinator,
        ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut
        | ResponseError::KafkaStorageError => ResponseError::CoordinatorNotAvailable,
        ResponseError::InvalidProducerEpoch | ResponseError::ProducerFenced => code,
        _ => ResponseError::CoordinatorNotAvailable,
    }
}

/// Waits until a coordinator write up to `last_offset` is committed: every ISR
/// member has it (the high watermark passed it, within `offsets.commit.timeout.ms`)
/// and it is fsynced here, as a produce with acks=all.
pub(crate) async fn wait_committed(partition: &Partition, last_offset: i64) -> Result<(), ResponseError> {
    let deadline = tokio::time::Instant::now() + OFFSETS_COMMIT_TIMEOUT;
    partition.wait_replicated(last_offset, deadline).await.map_err(|e| coordinator_error(e.code))?;
    partition.wait_durable(last_offset, records::DURABILITY_TIMEOUT).await.map_err(|_| ResponseError::CoordinatorNotAvailable)
}

/// Runs `job` every `period` (first after one period) while the coordinator lives.
fn every<F, Fut>(coordinator: &Arc<GroupCoordinator>, period: Duration, job: F)
where
    F: Fn(Arc<GroupCoordinator>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = Arc::downgrade(coordinator);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(period);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(coordinator) = weak.upgrade() else { return };
            job(coordinator).await;
        }
    });
}

/// Turns a finished join into the protocol's response.
pub fn join_response(outcome: JoinOutcome) -> kafka_protocol::messages::JoinGroupResponse {
    use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
    use kafka_protocol::protocol::StrBytes;
    kafka_protocol::messages::JoinGroupResponse::default()
        .with_error_code(outcome.error.map(|e| e.code()).unwrap_or(0))
        .with_generation_id(outcome.generation)
        .with_protocol_type(outcome.protocol_type.map(StrBytes::from_string))
        .with_protocol_name(outcome.protocol_name.map(StrBytes::from_string))
        .with_leader(StrBytes::from_string(outcome.leader))
        .with_member_id(StrBytes::from_string(outcome.member_id))
        .with_skip_assignment(outcome.skip_assignment)
        .with_members(
            outcome
                .members
                .into_iter()
                .map(|(id, instance, metadata)| {
                    JoinGroupResponseMember::default()
                        .with_member_id(StrBytes::from_string(id))
                        .with_group_instance_id(instance.map(StrBytes::from_string))
                        .with_metadata(metadata)
                })
                .collect(),
        )
}
