//! The transaction coordinator (KIP-98, Kafka's `TransactionCoordinator` +
//! `TransactionStateManager`), beside the group coordinator.
//!
//! Each transactional id belongs to partition `hash(id) % 50` of the internal
//! compacted topic `__transaction_state` (`transaction.state.log.num.partitions`;
//! created through the controller at the first FindCoordinator or InitProducerId
//! for a transactional id, replicated `transaction.state.log.replication.factor`
//! times, `min.insync.replicas` = `transaction.state.log.min.isr`). The
//! coordinator of an id is the leader of its partition: this broker loads
//! (replays) each partition it becomes leader of (COORDINATOR_LOAD_IN_PROGRESS
//! meanwhile) and unloads those it stops leading; other brokers answer
//! NOT_COORDINATOR. An id's state — producer id and epoch, timeout, state,
//! partitions, timestamps — is written there in Kafka's record format
//! ([`records`]) and answered only once every in-sync replica has it and the
//! leader fsynced it. A transaction goes Empty → Ongoing (AddPartitionsToTxn,
//! AddOffsetsToTxn) → PrepareCommit/PrepareAbort (EndTxn, a timeout, a new
//! producer fencing the old one) → markers written into every partition of
//! the transaction (locally, or WriteTxnMarkers to the partition's leader:
//! [`markers`]) → CompleteCommit/CompleteAbort. A transaction found in a
//! Prepare state on load, or whose markers could not all be written, is
//! completed by the clock.
//!
//! Transactions v1 (KIP-98: the client adds partitions, EndTxn keeps the
//! epoch) and v2 (KIP-890, `transaction.version` 2, finalized in ApiVersions
//! by default): EndTxn v5 bumps the producer epoch at every commit/abort
//! (a new producer id once the epoch is exhausted), the markers carry the
//! bumped epoch and the answer names the producer id/epoch to go on with; a
//! Produce v12+ or TxnOffsetCommit v5 adds its partition to the transaction
//! itself ([`TxnCoordinator::add_partitions`] with client version 2). The
//! client's version of each transition is stored with the state (Kafka's
//! `clientTransactionVersion`): it decides which retried EndTxn is valid.

pub mod markers;
pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::records::NO_LEADER;
use runnel_storage::ControlType;

use crate::cluster::{Cluster, LeadershipListener};
use crate::config::BrokerConfig;
use crate::coordinator::hosted::{partition_for, HostedPartitions};
use crate::coordinator::{GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
use markers::{MarkerBatch, MarkerSender};
pub use records::{TxnMetadata, TxnState};

pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's `transaction.state.log.segment.bytes` default.
const SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
/// How long a transaction's markers are retried before the clock takes over.
const MARKER_RETRY_FOR: Duration = Duration::from_secs(10);
/// How long a single node's start waits for its `__transaction_state` to be
/// led here before it serves anyway (clients then retry).
const START_LOAD_WAIT: Duration = Duration::from_secs(10);
/// How long InitProducerId waits for a partition being loaded here.
const LOAD_WAIT: Duration = Duration::from_secs(3);

/// A producer epoch at this value is exhausted: the next bump takes a new producer id.
const MAX_EPOCH: i16 = i16::MAX - 1;

struct TxnEntry {
    meta: TxnMetadata,
    /// A state change is being written (Kafka's pending transition): other
    /// requests for this id get CONCURRENT_TRANSACTIONS meanwhile.
    pending: bool,
}

/// One line of ListTransactions / the CLI.
#[derive(Debug, Clone)]
pub struct TxnListing {
    pub transactional_id: String,
    pub meta: TxnMetadata,
}

pub struct TxnCoordinator {
    config: Arc<BrokerConfig>,
    replicas: Arc<ReplicaManager>,
    groups: Arc<GroupCoordinator>,
    cluster: Arc<Cluster>,
    /// The state partitions whose ids are in `txns`, by leader epoch (the
    /// coordinator epoch its markers carry). Taken alone or after `txns`, never before it.
    hosted: HostedPartitions,
    markers: MarkerSender,
    txns: Mutex<HashMap<String, TxnEntry>>,
}

impl LeadershipListener for TxnCoordinator {
    fn leaderships_changed(self: Arc<Self>) {
        self.follow_leaderships(true);
    }
}

/// What a partition of a transaction is: a data partition or a group's offsets.
fn is_offsets_partition(topic: &str) -> bool {
    topic == OFFSETS_TOPIC
}

impl TxnCoordinator {
    /// Loads the `__transaction_state` partitions led here (and follows
    /// leadership from now on), completes transactions left in a Prepare
    /// state, and starts the timeout clock. A single node serves with its
    /// transactions loaded, as before the topic was replicated.
    pub fn start(config: Arc<BrokerConfig>, replicas: Arc<ReplicaManager>, groups: Arc<GroupCoordinator>, cluster: Arc<Cluster>) -> Arc<TxnCoordinator> {
        let markers = MarkerSender::new(&replicas, config.node_id);
        let coordinator =
            Arc::new(TxnCoordinator { config, replicas, groups, cluster, hosted: HostedPartitions::new(TRANSACTION_STATE_TOPIC), markers, txns: Mutex::new(HashMap::new()) });
        let listener: Arc<dyn LeadershipListener> = coordinator.clone();
        coordinator.cluster.add_leadership_listener(Arc::downgrade(&listener));
        let node_id = coordinator.config.node_id;
        if coordinator.config.controller_quorum_voters.is_empty() && coordinator.cluster.image().topic_by_name(TRANSACTION_STATE_TOPIC).is_some() {
            let led = tokio::runtime::Handle::current().block_on(coordinator.cluster.wait_for_image(START_LOAD_WAIT, |image| {
                image.topic_by_name(TRANSACTION_STATE_TOPIC).is_some_and(|t| t.partitions.values().all(|p| p.leader == node_id))
            }));
            if !led {
                tracing::warn!("{TRANSACTION_STATE_TOPIC} is not led here yet; transactions answer COORDINATOR_LOAD_IN_PROGRESS until it is");
            }
        }
        // Loads what is led here now, on this thread.
        coordinator.follow_leaderships(false);
        let weak = Arc::downgrade(&coordinator);
        let period = Duration::from_millis(coordinator.config.transaction_abort_timed_out_cleanup_interval_ms.max(10));
        tokio::spawn(async move {
            // Prepared transactions found on load are completed at once.
            let mut first = true;
            loop {
                if !first {
                    tokio::time::sleep(period).await;
                }
                first = false;
                let Some(coordinator) = weak.upgrade() else { return };
                coordinator.tick().await;
            }
        });
        coordinator
    }

    /// The replication factor `__transaction_state` is created with:
    /// `transaction.state.log.replication.factor` capped at the number of nodes
    /// the cluster is configured with, so a single node needs no setting.
    fn state_replication_factor(&self) -> i16 {
        let nodes = i16::try_from(Cluster::configured_nodes(&self.config)).unwrap_or(i16::MAX);
        self.config.transaction_state_log_replication_factor.min(nodes).max(1)
    }

    /// Creates `__transaction_state` through the controller if the cluster has
    /// none (Kafka creates it at the first FindCoordinator for a transactional
    /// id) and waits until this broker has applied it. COORDINATOR_NOT_AVAILABLE
    /// if that fails, e.g. while fewer brokers are registered than its replication factor.
    pub async fn ensure_topic(&self) -> Result<(), ResponseError> {
        use runnel_controller::controller::CreateTopic;
        use runnel_controller::{ControllerRequest, ControllerResponse};
        if let Some(topic) = self.cluster.image().topic_by_name(TRANSACTION_STATE_TOPIC) {
            let id = topic.topic_id;
            return self.cluster.wait_for_topic(&self.replicas, id).await.map(|_| ()).ok_or(ResponseError::CoordinatorNotAvailable);
        }
        let replication_factor = self.state_replication_factor();
        let min_isr = self.config.transaction_state_log_min_isr.min(i32::from(replication_factor)).max(1);
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), SEGMENT_BYTES.to_string());
        configs.insert("min.insync.replicas".to_string(), min_isr.to_string());
        let partitions = self.config.transaction_state_log_num_partitions;
        let create = CreateTopic { name: TRANSACTION_STATE_TOPIC.to_string(), num_partitions: partitions, replication_factor, assignments: None, configs };
        let topic_id = match self.cluster.submit(ControllerRequest::CreateTopic(create)).await {
            Ok(ControllerResponse::TopicCreated { topic_id, .. }) => {
                tracing::info!(partitions, replication_factor, min_isr, "created {TRANSACTION_STATE_TOPIC}");
                topic_id
            }
            Err(e) if e.code == ResponseError::TopicAlreadyExists => {
                // Created meanwhile (another broker's first FindCoordinator, or the
                // creation once enough brokers are live): it may not be applied here yet.
                let applied = |image: &runnel_controller::MetadataImage| image.topic_by_name(TRANSACTION_STATE_TOPIC).is_some();
                if !self.cluster.wait_for_image(crate::cluster::APPLY_WAIT, applied).await {
                    return Err(ResponseError::CoordinatorNotAvailable);
                }
                let image = self.cluster.image();
                image.topic_by_name(TRANSACTION_STATE_TOPIC).map(|t| t.topic_id).ok_or(ResponseError::CoordinatorNotAvailable)?
            }
            Ok(other) => {
                tracing::error!(?other, "unexpected answer to creating {TRANSACTION_STATE_TOPIC}");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
            Err(e) => {
                tracing::warn!(error = %e, "creating {TRANSACTION_STATE_TOPIC} failed");
                return Err(ResponseError::CoordinatorNotAvailable);
            }
        };
        self.cluster.wait_for_topic(&self.replicas, topic_id).await.map(|_| ()).ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// Whether this broker coordinates `transactional_id` now: it leads the
    /// id's state partition (else NOT_COORDINATOR) and has loaded it (else
    /// COORDINATOR_LOAD_IN_PROGRESS). The transactional APIs ask this first.
    pub fn check_coordinator(&self, transactional_id: &str) -> Result<(), ResponseError> {
        self.coordinator_epoch(transactional_id).map(|_| ())
    }

    /// The leader epoch of the id's state partition if it is loaded here (the coordinator epoch).
    fn coordinator_epoch(&self, transactional_id: &str) -> Result<i32, ResponseError> {
        self.hosted.coordinator_epoch(&self.replicas, &self.cluster, transactional_id)
    }

    /// InitProducerId's check: the topic is created first if the cluster has
    /// none, and a partition being loaded here is waited for a little.
    async fn ensure_coordinator(&self, transactional_id: &str) -> Result<(), ResponseError> {
        if self.cluster.image().topic_by_name(TRANSACTION_STATE_TOPIC).is_none() {
            self.ensure_topic().await?;
        }
        let deadline = Instant::now() + LOAD_WAIT;
        loop {
            match self.check_coordinator(transactional_id) {
                Err(ResponseError::CoordinatorLoadInProgress) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                result => return result,
            }
        }
    }

    /// Whether a state partition is being loaded here (ListTransactions then
    /// answers COORDINATOR_LOAD_IN_PROGRESS, as Kafka's).
    pub fn loading(&self) -> bool {
        self.hosted.any_loading()
    }

    fn state_partition(&self, transactional_id: &str) -> Option<Arc<Partition>> {
        let topic = self.replicas.topic(TRANSACTION_STATE_TOPIC)?;
        topic.partition(partition_for(transactional_id, topic.partition_count()))
    }

    /// Loads the state partitions led here that are not loaded at their
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

    /// Forgets the ids of a state partition no longer led here (`partitions`:
    /// the topic's partition count, None when it is gone: all). An operation
    /// still writing fails on its append or wait with NOT_COORDINATOR.
    fn unload_partition(&self, index: i32, partitions: Option<usize>) {
        let mut txns = self.txns.lock();
        let before = txns.len();
        txns.retain(|id, _| partitions.is_some_and(|count| partition_for(id, count) != index));
        tracing::info!(partition = index, transactional_ids = before - txns.len(), "unloaded a {TRANSACTION_STATE_TOPIC} partition no longer led here");
    }

    /// Replays one state partition led here at `epoch` and makes its ids live
    /// unless leadership moved on meanwhile; then the clock runs at once, so
    /// transactions left in a Prepare state get their markers.
    fn load_partition(self: &Arc<Self>, partition: &Arc<Partition>, epoch: i32) {
        let started = Instant::now();
        let loaded = replay(partition);
        let count = loaded.len();
        {
            let mut txns = self.txns.lock();
            if !self.hosted.finish_loading(partition.index, epoch) {
                tracing::info!(partition = partition.index, leader_epoch = epoch, "leadership moved while loading; the loaded state is dropped");
                return;
            }
            for (id, meta) in loaded {
                txns.insert(id, TxnEntry { meta, pending: false });
            }
        }
        tracing::info!(
            partition = partition.index, leader_epoch = epoch, transactional_ids = count,
            took_ms = started.elapsed().as_millis() as u64, "loaded a {TRANSACTION_STATE_TOPIC} partition led here"
        );
        if count > 0 {
            let coordinator = self.clone();
            tokio::spawn(async move { coordinator.tick().await });
        }
    }

    /// Writes an id's new state to its `__transaction_state` partition and
    /// waits until every in-sync replica has it and it is fsynced here (Kafka's
    /// mapping of failures: leadership lost → NOT_COORDINATOR, too few replicas
    /// or a timeout → COORDINATOR_NOT_AVAILABLE).
    async fn persist(&self, transactional_id: &str, meta: &TxnMetadata) -> Result<(), ResponseError> {
        let partition = self.state_partition(transactional_id).ok_or(ResponseError::NotCoordinator)?;
        if !partition.is_leader() {
            return Err(ResponseError::NotCoordinator);
        }
        if (partition.isr_size() as i64) < partition.min_insync_replicas() as i64 {
            return Err(ResponseError::CoordinatorNotAvailable);
        }
        // Kafka writes the flexible v1 value from transaction.version 1 on.
        let value = records::encode_value(meta, self.config.transaction_version >= 1);
        let keyed = vec![(records::encode_key(transactional_id), Some(value))];
        // (append_keyed logs why a write failed.)
        let last_offset = crate::coordinator::records::append_keyed(&partition, keyed, None).map_err(crate::coordinator::coordinator_error)?;
        crate::coordinator::wait_committed(&partition, last_offset).await
    }

    /// Marks an id pending and returns its state (the caller computes the next one).
    fn begin(&self, transactional_id: &str) -> Option<TxnMetadata> {
        let mut txns = self.txns.lock();
        let entry = txns.get_mut(transactional_id)?;
        entry.pending = true;
        Some(entry.meta.clone())
    }

    /// Ends a pending transition: the new state if it was written, else the old one stays.
    fn finish(&self, transactional_id: &str, written: Option<TxnMetadata>) {
        let mut txns = self.txns.lock();
        if let Some(entry) = txns.get_mut(transactional_id) {
            if let Some(meta) = written {
                entry.meta = meta;
            }
            entry.pending = false;
        }
    }

    /// InitProducerId with a transactional id: a new producer id at epoch 0
    /// for a new id, else the epoch bumped (fencing the previous producer);
    /// an open transaction is aborted first and the caller told to retry
    /// (CONCURRENT_TRANSACTIONS), as Kafka does.
    pub async fn init_producer_id(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: impl FnOnce() -> Result<i64, ResponseError>,
    ) -> Result<(i64, i16), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        self.ensure_coordinator(transactional_id).await?;
        let now = crate::now_ms();
        enum Plan {
            Create(TxnMetadata),
            Bump(TxnMetadata),
            Fence(TxnMetadata),
        }
        let plan = {
            let mut txns = self.txns.lock();
            match txns.get_mut(transactional_id) {
                None => {
                    let meta = TxnMetadata::new(new_producer_id()?, timeout_ms, now);
                    txns.insert(transactional_id.to_string(), TxnEntry { meta: meta.clone(), pending: true });
                    Plan::Create(meta)
                }
                Some(entry) if entry.pending => return Err(ResponseError::ConcurrentTransactions),
                Some(entry) => {
                    let meta = &entry.meta;
                    if let Some((pid, _)) = expected {
                        if pid != meta.producer_id {
                            return Err(ResponseError::ProducerFenced);
                        }
                    }
                    match meta.state {
                        TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => {
                            return Err(ResponseError::ConcurrentTransactions)
                        }
                        TxnState::Ongoing => {
                            // Fence the current producer: abort its transaction at a bumped epoch.
                            let mut next = meta.clone();
                            next.producer_epoch = meta.producer_epoch.saturating_add(1).min(MAX_EPOCH);
                            next.state = TxnState::PrepareAbort;
                            next.last_update_ms = now;
                            entry.pending = true;
                            Plan::Fence(next)
                        }
                        TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort | TxnState::Dead => {
                            if let Some((_, epoch)) = expected {
                                if epoch != meta.producer_epoch {
                                    return Err(ResponseError::ProducerFenced);
                                }
                            }
                            let mut next = meta.clone();
                            if meta.producer_epoch >= MAX_EPOCH {
                                next.producer_id = new_producer_id()?;
                                next.producer_epoch = 0;
                            } else {
                                next.producer_epoch += 1;
                            }
                            // A new session: the client's transaction version is learnt again (Kafka: TV_0).
                            next.previous_producer_id = meta.producer_id;
                            next.next_producer_id = -1;
                            next.client_transaction_version = 0;
                            next.timeout_ms = timeout_ms;
                            next.state = TxnState::Empty;
                            next.partitions.clear();
                            next.start_ms = -1;
                            next.last_update_ms = now;
                            entry.pending = true;
                            Plan::Bump(next)
                        }
                    }
                }
            }
        };
        match plan {
            Plan::Create(meta) => match self.persist(transactional_id, &meta).await {
                Ok(()) => {
                    self.finish(transactional_id, Some(meta.clone()));
                    Ok((meta.producer_id, meta.producer_epoch))
                }
                Err(e) => {
                    self.txns.lock().remove(transactional_id);
                    Err(e)
                }
            },
            Plan::Bump(meta) => match self.persist(transactional_id, &meta).await {
                Ok(()) => {
                    self.finish(transactional_id, Some(meta.clone()));
                    Ok((meta.producer_id, meta.producer_epoch))
                }
                Err(e) => {
                    self.finish(transactional_id, None);
                    Err(e)
                }
            },
            Plan::Fence(prepared) => {
                tracing::info!(transactional_id, producer_id = prepared.producer_id, epoch = prepared.producer_epoch, "fencing the previous producer: aborting its open transaction");
                self.end_prepared(transactional_id, prepared).await;
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// Kafka's checks of a request naming an ongoing producer (AddPartitionsToTxn,
    /// AddOffsetsToTxn, EndTxn): the id must map to that producer id at that epoch.
    fn check_producer(meta: &TxnMetadata, producer_id: i64, producer_epoch: i16) -> Result<(), ResponseError> {
        if meta.producer_id != producer_id {
            Err(ResponseError::InvalidProducerIdMapping)
        } else if meta.producer_epoch != producer_epoch {
            Err(ResponseError::ProducerFenced)
        } else {
            Ok(())
        }
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn (client version 0), or a
    /// transactions v2 Produce / TxnOffsetCommit adding its own partition
    /// (client version 2): the partitions join the transaction (which starts
    /// if none is open), durably.
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[(String, i32)],
        client_transaction_version: i16,
    ) -> Result<(), ResponseError> {
        let next = {
            let mut txns = self.txns.lock();
            let entry = txns.get_mut(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
            Self::check_producer(&entry.meta, producer_id, producer_epoch)?;
            if entry.pending {
                return Err(ResponseError::ConcurrentTransactions);
            }
            let meta = &entry.meta;
            match meta.state {
                TxnState::PrepareCommit | TxnState::PrepareAbort | TxnState::PrepareEpochFence => return Err(ResponseError::ConcurrentTransactions),
                TxnState::Ongoing if partitions.iter().all(|p| meta.partitions.contains(p)) => return Ok(()),
                _ => {}
            }
            let now = crate::now_ms();
            let mut next = meta.clone();
            if meta.state != TxnState::Ongoing {
                next.partitions.clear();
                next.start_ms = now;
            }
            next.state = TxnState::Ongoing;
            next.partitions.extend(partitions.iter().cloned());
            next.last_update_ms = now;
            next.client_transaction_version = client_transaction_version;
            entry.pending = true;
            next
        };
        let written = self.persist(transactional_id, &next).await;
        self.finish(transactional_id, written.is_ok().then_some(next));
        written
    }

    /// AddPartitionsToTxn v4+ with verify_only (a partition leader asking on
    /// a produce's behalf): per partition, whether it is in the open transaction.
    pub fn verify_partitions(&self, transactional_id: &str, producer_id: i64, producer_epoch: i16, partitions: &[(String, i32)]) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let txns = self.txns.lock();
        let entry = txns.get(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
        Self::check_producer(&entry.meta, producer_id, producer_epoch)?;
        if entry.pending {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let ongoing = entry.meta.state == TxnState::Ongoing;
        Ok(partitions
            .iter()
            .map(|p| (!(ongoing && entry.meta.partitions.contains(p))).then_some(ResponseError::TransactionAbortable))
            .collect())
    }

    /// EndTxn: PrepareCommit/PrepareAbort is written, then the markers, then
    /// CompleteCommit/CompleteAbort. With `client_transaction_version` 2
    /// (EndTxn v5) the epoch is bumped in the Prepare state, the markers carry
    /// it, and an exhausted epoch moves to a new producer id at Complete
    /// (Kafka's `prepareAbortOrCommit` / `prepareComplete`). Returns the
    /// producer id and epoch the client goes on with. A retry of a finished
    /// EndTxn succeeds: under v2 it names the epoch before the bump.
    pub async fn end_txn(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        client_transaction_version: i16,
        new_producer_id: impl FnOnce() -> Result<i64, ResponseError>,
    ) -> Result<(i64, i16), ResponseError> {
        let prepared = {
            let mut txns = self.txns.lock();
            let entry = txns.get_mut(transactional_id).ok_or(ResponseError::InvalidProducerIdMapping)?;
            let meta = &entry.meta;
            let request_v2 = client_transaction_version >= 2;
            let is_retry = Self::check_end_txn_producer(meta, producer_id, producer_epoch, request_v2)?;
            if entry.pending {
                return Err(ResponseError::ConcurrentTransactions);
            }
            // Under v2 a client may abort with no transaction open, to move to
            // a new epoch (Kafka 4 answers so; a commit there is INVALID_TXN_STATE).
            let empty_abort = request_v2
                && !commit
                && !is_retry
                && matches!(meta.state, TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort);
            let stored_v2 = meta.client_transaction_version >= 2;
            match (meta.state, commit) {
                _ if empty_abort => {
                    let mut next = meta.clone();
                    next.state = TxnState::PrepareAbort;
                    next.partitions.clear();
                    next.last_update_ms = crate::now_ms();
                    next.start_ms = next.last_update_ms;
                    next.client_transaction_version = client_transaction_version;
                    next.producer_epoch = meta.producer_epoch.checked_add(1).ok_or(ResponseError::ProducerFenced)?;
                    if meta.producer_epoch >= MAX_EPOCH {
                        next.next_producer_id = new_producer_id()?;
                    }
                    entry.pending = true;
                    next
                }
                (TxnState::Ongoing, _) => {
                    let mut next = meta.clone();
                    next.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
                    next.last_update_ms = crate::now_ms();
                    next.client_transaction_version = client_transaction_version;
                    if client_transaction_version >= 2 {
                        // The epoch is below i16::MAX (InitProducerId rotates ids at MAX_EPOCH), so the bump fits.
                        next.producer_epoch = meta.producer_epoch.checked_add(1).ok_or(ResponseError::ProducerFenced)?;
                        if meta.producer_epoch >= MAX_EPOCH {
                            next.next_producer_id = new_producer_id()?;
                        }
                    }
                    entry.pending = true;
                    next
                }
                // A retry of the EndTxn that ended it (under v2 only a retry: the epoch before the bump).
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) if is_retry || !stored_v2 => {
                    return Ok((meta.producer_id, meta.producer_epoch))
                }
                (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => return Err(ResponseError::ConcurrentTransactions),
                _ => return Err(ResponseError::InvalidTxnState),
            }
        };
        if let Err(e) = self.persist(transactional_id, &prepared).await {
            self.finish(transactional_id, None);
            return Err(e);
        }
        self.finish(transactional_id, Some(prepared.clone()));
        let next_producer = Self::completed(&prepared);
        if self.begin(transactional_id).is_some() {
            self.complete(transactional_id, prepared).await;
        }
        Ok((next_producer.producer_id, next_producer.producer_epoch))
    }

    /// Kafka's EndTxn producer checks; Ok(true) for a retry of a v2 EndTxn.
    /// Under transactions v2 (the id's last transition was a v2 client's)
    /// an ended transaction's epoch is one above the client's, so a retry
    /// names the epoch before the bump (or, after an overflow, the previous
    /// producer id at the exhausted epoch); the current epoch is valid while
    /// the transaction is open, and once it ended only from a v2 client.
    fn check_end_txn_producer(meta: &TxnMetadata, producer_id: i64, producer_epoch: i16, request_v2: bool) -> Result<bool, ResponseError> {
        let v2 = meta.client_transaction_version >= 2;
        let retry_on_bump = v2 && meta.producer_id == producer_id && i32::from(meta.producer_epoch) == i32::from(producer_epoch) + 1;
        let retry_on_overflow = v2 && meta.previous_producer_id == producer_id && producer_epoch >= MAX_EPOCH && meta.producer_epoch == 0;
        if meta.producer_id != producer_id && !retry_on_overflow {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        let valid_epoch = if v2 {
            match meta.state {
                TxnState::Ongoing | TxnState::Empty | TxnState::Dead | TxnState::PrepareEpochFence => producer_epoch == meta.producer_epoch,
                TxnState::PrepareCommit | TxnState::PrepareAbort => retry_on_bump,
                TxnState::CompleteCommit | TxnState::CompleteAbort => {
                    retry_on_bump || retry_on_overflow || (request_v2 && producer_epoch == meta.producer_epoch)
                }
            }
        } else {
            producer_epoch == meta.producer_epoch
        };
        if valid_epoch {
            Ok(retry_on_bump || retry_on_overflow)
        } else {
            Err(ResponseError::ProducerFenced)
        }
    }

    /// The Complete state a prepared transaction ends in (Kafka's
    /// `prepareComplete`): no partitions; under v2 an exhausted epoch's
    /// transaction moves to its next producer id at epoch 0.
    fn completed(prepared: &TxnMetadata) -> TxnMetadata {
        let mut done = prepared.clone();
        done.state = if prepared.state == TxnState::PrepareCommit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        done.partitions.clear();
        done.last_update_ms = crate::now_ms();
        if prepared.client_transaction_version >= 2 {
            done.previous_producer_id = prepared.producer_id;
            if prepared.next_producer_id >= 0 {
                done.producer_id = prepared.next_producer_id;
                done.producer_epoch = 0;
            }
            done.next_producer_id = -1;
        }
        done
    }

    /// Writes a Prepare state (already marked pending) and completes it.
    async fn end_prepared(&self, transactional_id: &str, prepared: TxnMetadata) {
        if let Err(e) = self.persist(transactional_id, &prepared).await {
            tracing::warn!(transactional_id, error = ?e, "writing the abort of a transaction failed; retried by the clock");
            self.finish(transactional_id, None);
            return;
        }
        self.finish(transactional_id, Some(prepared.clone()));
        if self.begin(transactional_id).is_some() {
            self.complete(transactional_id, prepared).await;
        }
    }

    /// Writes the markers of a prepared transaction (the id is pending) and
    /// then its Complete state. On failure the Prepare state stays and the
    /// clock retries.
    async fn complete(&self, transactional_id: &str, prepared: TxnMetadata) {
        let commit = prepared.state == TxnState::PrepareCommit;
        if let Err(e) = self.write_markers(transactional_id, &prepared, commit).await {
            tracing::warn!(transactional_id, error = ?e, "writing transaction markers failed; retried by the clock");
            self.finish(transactional_id, None);
            return;
        }
        let done = Self::completed(&prepared);
        let written = self.persist(transactional_id, &done).await;
        if let Err(e) = &written {
            tracing::warn!(transactional_id, error = ?e, "writing the completed transaction state failed; retried by the clock");
        }
        self.finish(transactional_id, written.ok().map(|()| done));
    }

    /// The markers of one transaction, into each of its partitions: written
    /// here into the partitions led here, sent as WriteTxnMarkers to the leader
    /// of the others, retried (for `MARKER_RETRY_FOR`, then by the clock) until
    /// every one is written or its partition is gone. Stops when this broker no
    /// longer coordinates the id.
    async fn write_markers(&self, transactional_id: &str, meta: &TxnMetadata, commit: bool) -> Result<(), ResponseError> {
        let marker = if commit { ControlType::Commit } else { ControlType::Abort };
        let mut remaining: Vec<(String, i32)> = meta.partitions.iter().cloned().collect();
        let give_up = Instant::now() + MARKER_RETRY_FOR;
        let mut backoff = Duration::from_millis(50);
        loop {
            let coordinator_epoch = self.coordinator_epoch(transactional_id)?;
            let image = self.cluster.image();
            let mut by_leader: BTreeMap<i32, Vec<(String, i32)>> = BTreeMap::new();
            for (topic, index) in remaining.drain(..) {
                // A partition whose topic (or the partition) left the cluster metadata needs no marker.
                let Some(state) = image.topic_by_name(&topic).and_then(|t| t.partitions.get(&index)) else { continue };
                by_leader.entry(state.leader).or_default().push((topic, index));
            }
            let mut last_error = ResponseError::CoordinatorNotAvailable;
            for (leader, partitions) in by_leader {
                if leader == NO_LEADER {
                    remaining.extend(partitions);
                    continue;
                }
                if leader == self.config.node_id {
                    for (topic, index) in partitions {
                        let Some(partition) = self.replicas.topic(&topic).and_then(|t| t.partition(index)) else { continue };
                        let written = markers::write_marker_replicated(&self.groups, &partition, meta.producer_id, meta.producer_epoch, marker, coordinator_epoch).await;
                        if let Err(e) = written {
                            tracing::debug!(transactional_id, %topic, partition = index, error = ?e, "writing a transaction marker here failed; retrying");
                            last_error = e;
                            remaining.push((topic, index));
                        }
                    }
                    continue;
                }
                let batch = MarkerBatch { producer_id: meta.producer_id, producer_epoch: meta.producer_epoch, commit, coordinator_epoch, partitions };
                match self.markers.send(leader, &batch).await {
                    Ok(results) => {
                        for (tp, code) in results {
                            if code == 0 {
                                continue;
                            }
                            let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
                            tracing::debug!(transactional_id, topic = %tp.0, partition = tp.1, leader, error = ?error, "a transaction marker was refused; retrying");
                            last_error = error;
                            remaining.push(tp);
                        }
                    }
                    Err(why) => {
                        tracing::debug!(transactional_id, leader, why = %why, "WriteTxnMarkers failed; retrying");
                        remaining.extend(batch.partitions);
                    }
                }
            }
            if remaining.is_empty() {
                return Ok(());
            }
            if Instant::now() >= give_up {
                tracing::warn!(transactional_id, partitions = ?remaining, error = ?last_error, "transaction markers not written yet");
                return Err(last_error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(1));
        }
    }

    /// The clock: aborts transactions past their timeout (fencing their
    /// producer, as Kafka does) and completes prepared ones left unfinished.
    async fn tick(&self) {
        let now = crate::now_ms();
        let work: Vec<(String, TxnMetadata)> = {
            let mut txns = self.txns.lock();
            txns.iter_mut()
                .filter(|(_, e)| !e.pending)
                .filter_map(|(id, entry)| {
                    let meta = &entry.meta;
                    let next = match meta.state {
                        TxnState::Ongoing if now.saturating_sub(meta.start_ms) > meta.timeout_ms as i64 => {
                            tracing::info!(transactional_id = %id, producer_id = meta.producer_id, timeout_ms = meta.timeout_ms, "aborting a transaction past its timeout");
                            let mut next = meta.clone();
                            next.producer_epoch = meta.producer_epoch.saturating_add(1).min(MAX_EPOCH);
                            next.state = TxnState::PrepareAbort;
                            next.last_update_ms = now;
                            next
                        }
                        TxnState::PrepareCommit | TxnState::PrepareAbort => meta.clone(),
                        _ => return None,
                    };
                    entry.pending = true;
                    Some((id.clone(), next))
                })
                .collect()
        };
        for (id, next) in work {
            if next.state == TxnState::PrepareAbort && self.txns.lock().get(&id).is_some_and(|e| e.meta.state == TxnState::Ongoing) {
                self.end_prepared(&id, next).await;
            } else {
                self.complete(&id, next).await;
            }
        }
    }

    /// DescribeTransactions: one id's state.
    pub fn describe(&self, transactional_id: &str) -> Option<TxnMetadata> {
        self.txns.lock().get(transactional_id).map(|e| e.meta.clone())
    }

    /// ListTransactions: every id, filtered by state names, producer ids and
    /// the minimum running time of an open transaction (-1: any).
    pub fn list(&self, states: &[TxnState], producer_ids: &[i64], min_duration_ms: i64) -> Vec<TxnListing> {
        let now = crate::now_ms();
        let mut out: Vec<TxnListing> = self
            .txns
            .lock()
            .iter()
            .filter(|(_, e)| states.is_empty() || states.contains(&e.meta.state))
            .filter(|(_, e)| producer_ids.is_empty() || producer_ids.contains(&e.meta.producer_id))
            .filter(|(_, e)| min_duration_ms < 0 || (e.meta.state == TxnState::Ongoing && now - e.meta.start_ms >= min_duration_ms))
            .map(|(id, e)| TxnListing { transactional_id: id.clone(), meta: e.meta.clone() })
            .collect();
        out.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        out
    }
}

/// Writes one transaction marker into a partition; a marker in
/// `__consumer_offsets` also ends the producer's pending offset commits.
/// Returns the marker's offset.
pub fn write_marker(groups: &GroupCoordinator, partition: &Partition, producer_id: i64, producer_epoch: i16, marker: ControlType, coordinator_epoch: i32) -> Result<i64, ResponseError> {
    let offset = partition.write_txn_marker(producer_id, producer_epoch, marker, coordinator_epoch, crate::now_ms()).map_err(|e| {
        tracing::warn!(topic = %partition.topic, partition = partition.index, producer_id, error = %e, "writing a transaction marker failed");
        e.code
    })?;
    if is_offsets_partition(&partition.topic) {
        groups.complete_txn(producer_id, marker == ControlType::Commit);
    }
    Ok(offset)
}

/// Replays one `__transaction_state` partition to its log end (a new leader's
/// log is what its followers will hold): the latest record of each id wins.
fn replay(partition: &Partition) -> HashMap<String, TxnMetadata> {
    let mut loaded: HashMap<String, TxnMetadata> = HashMap::new();
    let incomplete = crate::coordinator::records::for_each_batch(partition, |_, _, sets| {
        for record in sets.into_iter().flat_map(|set| set.records) {
            let Some(id) = record.key.and_then(records::decode_key) else { continue };
            match record.value {
                None => {
                    loaded.remove(&id);
                }
                Some(value) => match records::decode_value(value) {
                    Some(meta) => {
                        loaded.insert(id, meta);
                    }
                    None => tracing::warn!(transactional_id = %id, offset = record.offset, "skipping an unreadable transaction state record"),
                },
            }
        }
    });
    if let Some(why) = incomplete {
        tracing::error!(partition = partition.index, why = %why, "{TRANSACTION_STATE_TOPIC} could only be replayed in part: later transaction states are missing");
    }
    loaded
}
