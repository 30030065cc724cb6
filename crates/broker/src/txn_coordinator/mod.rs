//! The transaction coordinator (KIP-98, Kafka's `TransactionCoordinator` +
//! `TransactionStateManager`), beside the group coordinator.
//!
//! Each transactional id belongs to partition `hash(id) % 50` of the internal
//! compacted topic `__transaction_state` (`transaction.state.log.num.partitions`;
//! created at the first transactional producer). Its state — producer id and
//! epoch, timeout, state, partitions, timestamps — is written there in
//! Kafka's record format ([`records`]) before any answer depends on it, and
//! replayed on start. A transaction goes Empty → Ongoing (AddPartitionsToTxn,
//! AddOffsetsToTxn) → PrepareCommit/PrepareAbort (EndTxn, a timeout, a new
//! producer fencing the old one) → markers written into every partition of
//! the transaction through the replica manager → CompleteCommit/CompleteAbort.
//! A transaction found in a Prepare state on start, or whose markers could
//! not all be written, is completed by the clock.
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
//!
//! In a cluster the coordinator for an id will be the leader of its
//! `__transaction_state` partition, loading that partition on becoming
//! leader; markers for partitions led elsewhere will go out as
//! WriteTxnMarkers (API 27, which this broker answers).

pub mod records;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::records::RecordBatchDecoder;
use parking_lot::Mutex;
use runnel_storage::ControlType;

use crate::config::BrokerConfig;
use crate::coordinator::{GroupCoordinator, OFFSETS_TOPIC};
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;
pub use records::{TxnMetadata, TxnState};

pub const TRANSACTION_STATE_TOPIC: &str = "__transaction_state";
/// Kafka's `transaction.state.log.segment.bytes` default.
const SEGMENT_BYTES: u64 = 100 * 1024 * 1024;
const DURABILITY_TIMEOUT: Duration = Duration::from_secs(30);
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
    txns: Mutex<HashMap<String, TxnEntry>>,
}

/// Java's `String.hashCode`, which Kafka uses to map an id to its partition.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(c as i32))
}

/// What a partition of a transaction is: a data partition or a group's offsets.
fn is_offsets_partition(topic: &str) -> bool {
    topic == OFFSETS_TOPIC
}

impl TxnCoordinator {
    /// Loads `__transaction_state` if it exists, completes transactions left
    /// in a Prepare state, and starts the timeout clock.
    pub fn start(config: Arc<BrokerConfig>, replicas: Arc<ReplicaManager>, groups: Arc<GroupCoordinator>) -> Arc<TxnCoordinator> {
        let coordinator = Arc::new(TxnCoordinator { config, replicas, groups, txns: Mutex::new(HashMap::new()) });
        coordinator.load();
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

    /// Creates `__transaction_state` (compacted, Kafka's defaults) if needed.
    pub fn ensure_topic(&self) -> Result<(), ResponseError> {
        if self.replicas.topic(TRANSACTION_STATE_TOPIC).is_some() {
            return Ok(());
        }
        let mut configs = BTreeMap::new();
        configs.insert("cleanup.policy".to_string(), "compact".to_string());
        configs.insert("segment.bytes".to_string(), SEGMENT_BYTES.to_string());
        match self.replicas.create_topic(TRANSACTION_STATE_TOPIC, self.config.transaction_state_log_num_partitions, 1, configs, false) {
            Ok(_) => Ok(()),
            Err(e) if e.code == ResponseError::TopicAlreadyExists => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, "creating {TRANSACTION_STATE_TOPIC} failed");
                Err(ResponseError::CoordinatorNotAvailable)
            }
        }
    }

    fn state_partition(&self, transactional_id: &str) -> Option<Arc<Partition>> {
        let topic = self.replicas.topic(TRANSACTION_STATE_TOPIC)?;
        let count = topic.partition_count().max(1) as i32;
        topic.partition((java_string_hash(transactional_id) & 0x7fff_ffff) % count)
    }

    /// Replays every partition of `__transaction_state`: the latest record of each id wins.
    fn load(&self) {
        let Some(topic) = self.replicas.topic(TRANSACTION_STATE_TOPIC) else { return };
        let mut loaded: HashMap<String, TxnMetadata> = HashMap::new();
        for partition in topic.partitions() {
            let mut offset = partition.offsets().log_start_offset;
            loop {
                let (bytes, offsets) = match partition.read(offset, 1 << 20, true) {
                    Ok(read) => read,
                    Err(e) => {
                        tracing::error!(partition = partition.index, offset, error = %e, "reading {TRANSACTION_STATE_TOPIC} failed; later transaction states are missing");
                        break;
                    }
                };
                if bytes.is_empty() {
                    break;
                }
                let mut next = offset;
                let mut buf = bytes.clone();
                match RecordBatchDecoder::decode_all(&mut buf) {
                    Ok(sets) => {
                        for set in sets {
                            for record in set.records {
                                next = next.max(record.offset + 1);
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
                        }
                    }
                    Err(e) => {
                        tracing::error!(partition = partition.index, offset, error = %e, "a {TRANSACTION_STATE_TOPIC} batch does not decode; later transaction states are missing");
                        break;
                    }
                }
                if next <= offset || next >= offsets.high_watermark {
                    break;
                }
                offset = next;
            }
        }
        let count = loaded.len();
        let mut txns = self.txns.lock();
        for (id, meta) in loaded {
            txns.insert(id, TxnEntry { meta, pending: false });
        }
        if count > 0 {
            tracing::info!(transactional_ids = count, "loaded the transaction coordinator's state");
        }
    }

    /// Writes an id's new state to its `__transaction_state` partition and waits until it is durable.
    async fn persist(&self, transactional_id: &str, meta: &TxnMetadata) -> Result<(), ResponseError> {
        self.ensure_topic()?;
        let partition = self.state_partition(transactional_id).ok_or(ResponseError::CoordinatorNotAvailable)?;
        // Kafka writes the flexible v1 value from transaction.version 1 on.
        let value = records::encode_value(meta, self.config.transaction_version >= 1);
        let keyed = vec![(records::encode_key(transactional_id), Some(value))];
        // (append_keyed logs why a write failed.)
        let last_offset = crate::coordinator::records::append_keyed(&partition, keyed, None).map_err(|_| ResponseError::CoordinatorNotAvailable)?;
        partition.wait_durable(last_offset, DURABILITY_TIMEOUT).await.map_err(|_| ResponseError::CoordinatorNotAvailable)
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
        self.ensure_topic()?;
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
        if let Err(e) = self.write_markers(&prepared, commit).await {
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

    /// The markers of one transaction, into each of its partitions (Kafka's
    /// WriteTxnMarkers, local here), then waits until all are durable. A
    /// partition whose topic is gone is skipped.
    async fn write_markers(&self, meta: &TxnMetadata, commit: bool) -> Result<(), ResponseError> {
        let marker = if commit { ControlType::Commit } else { ControlType::Abort };
        let mut written = Vec::new();
        for (topic, index) in &meta.partitions {
            let Some(partition) = self.replicas.topic(topic).and_then(|t| t.partition(*index)) else { continue };
            let offset = write_marker(&self.groups, &partition, meta.producer_id, meta.producer_epoch, marker, 0)?;
            written.push((partition, offset));
        }
        for (partition, offset) in written {
            partition.wait_durable(offset, DURABILITY_TIMEOUT).await.map_err(|_| ResponseError::KafkaStorageError)?;
        }
        Ok(())
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
