//! Idempotent producers: producer id allocation (blocks from the controller) and per-partition sequence
//! checks, so a producer's retried batch is not written twice and a gap in
//! its sequence is refused.
//!
//! Per partition and producer id, the epoch and the last
//! [`MAX_CACHED_BATCHES`] batches (sequence range → offsets) are kept, as
//! Kafka does (a producer has at most 5 requests in flight). A batch whose
//! sequence range matches a cached one is a duplicate: it is answered with
//! the original offsets and not appended again.
//!
//! Transactions (KIP-98): a producer's first transactional batch on the
//! partition opens its transaction there (its offset is the transaction's
//! first offset); the COMMIT or ABORT marker the coordinator appends closes
//! it. The oldest open transaction bounds the last stable offset, and an
//! aborted one becomes an entry of the transaction index.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use kafka_protocol::error::ResponseError;
use parking_lot::Mutex;
use runnel_controller::{ControllerRequest, ControllerResponse};
use runnel_storage::{AbortedTxn, BatchHeader, ControlType, MetaStore, StorageError};
use tokio::sync::Notify;

use crate::cluster::Cluster;
use crate::error::ApiError;

/// Kafka keeps the last five batches per producer (max.in.flight.requests.per.connection ≤ 5).
pub const MAX_CACHED_BATCHES: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub first_offset: i64,
    pub last_offset: i64,
}

#[derive(Debug, Clone, Default)]
struct ProducerEntry {
    epoch: i16,
    batches: VecDeque<CachedBatch>,
    /// Max timestamp of the producer's last batch (DescribeProducers).
    last_timestamp: i64,
}

/// One producer as DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub epoch: i16,
    pub last_sequence: i32,
    pub last_timestamp: i64,
    /// First offset of its open transaction here (-1: none).
    pub current_txn_start_offset: i64,
}

/// What the sequence check decided for one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceCheck {
    /// Not an idempotent batch, or the next expected one: append it.
    Append,
    /// Already written: answer with these offsets, append nothing.
    Duplicate(CachedBatch),
}

/// Sequence state of the producers writing to one partition.
#[derive(Debug, Default)]
pub struct ProducerStates {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: producer id → offset of its first transactional batch here.
    open_txns: HashMap<i64, i64>,
}

fn last_sequence(header: &BatchHeader) -> i32 {
    // Sequences wrap at i32::MAX like Kafka's DefaultRecordBatch.
    let last = header.base_sequence as i64 + header.last_offset_delta as i64;
    if last > i32::MAX as i64 {
        (last - i32::MAX as i64 - 1) as i32
    } else {
        last as i32
    }
}

fn next_sequence(sequence: i32) -> i32 {
    if sequence == i32::MAX {
        0
    } else {
        sequence + 1
    }
}

impl ProducerStates {
    /// Checks a batch against its producer's state (before appending).
    pub fn check(&self, header: &BatchHeader) -> Result<SequenceCheck, ApiError> {
        if !header.has_producer_id() {
            return Ok(SequenceCheck::Append);
        }
        let Some(entry) = self.producers.get(&header.producer_id) else {
            // Unknown producer (new, or its state predates a restart): accept its first sequence.
            return Ok(SequenceCheck::Append);
        };
        // Every batch of a known producer is fenced by its epoch: a zombie's
        // transactional offset commits and markers carry no sequence.
        if header.producer_epoch < entry.epoch {
            return Err(ApiError::new(
                ResponseError::InvalidProducerEpoch,
                format!("producer epoch {} is older than the current epoch {}", header.producer_epoch, entry.epoch),
            ));
        }
        if header.base_sequence < 0 {
            return Ok(SequenceCheck::Append);
        }
        if header.producer_epoch > entry.epoch {
            if header.base_sequence != 0 {
                return Err(ApiError::new(
                    ResponseError::OutOfOrderSequenceNumber,
                    format!("a new producer epoch must start at sequence 0, not {}", header.base_sequence),
                ));
            }
            return Ok(SequenceCheck::Append);
        }
        let last = last_sequence(header);
        if let Some(cached) = entry
            .batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last)
        {
            return Ok(SequenceCheck::Duplicate(*cached));
        }
        let expected = entry.batches.back().map(|b| next_sequence(b.last_sequence)).unwrap_or(0);
        if header.base_sequence != expected {
            return Err(ApiError::new(
                ResponseError::OutOfOrderSequenceNumber,
                format!("expected sequence {expected}, got {}", header.base_sequence),
            ));
        }
        Ok(SequenceCheck::Append)
    }

    /// The producers with state here, by producer id.
    pub fn active(&self) -> Vec<ActiveProducer> {
        let mut out: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(id, entry)| ActiveProducer {
                producer_id: *id,
                epoch: entry.epoch,
                last_sequence: entry.batches.back().map_or(-1, |b| b.last_sequence),
                last_timestamp: entry.last_timestamp,
                current_txn_start_offset: self.open_txns.get(id).copied().unwrap_or(-1),
            })
            .collect();
        out.sort_by_key(|p| p.producer_id);
        out
    }

    /// Records an appended batch (offsets as assigned by the log).
    pub fn record(&mut self, header: &BatchHeader, first_offset: i64) {
        if header.has_producer_id() && header.is_transactional() && !header.is_control() {
            self.open_txns.entry(header.producer_id).or_insert(first_offset);
        }
        if !header.has_producer_id() || header.base_sequence < 0 {
            return;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch != entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.last_timestamp = header.max_timestamp;
        entry.batches.push_back(CachedBatch {
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            first_offset,
            last_offset: first_offset + header.last_offset_delta as i64,
        });
        while entry.batches.len() > MAX_CACHED_BATCHES {
            entry.batches.pop_front();
        }
    }
}

impl ProducerStates {
    /// A COMMIT or ABORT marker of `header`'s producer was appended at
    /// `marker_offset`: its open transaction ends, and the marker's epoch
    /// (bumped when the coordinator fenced the producer) becomes current.
    /// Returns the transaction-index entry of an aborted transaction.
    pub fn complete_txn(&mut self, header: &BatchHeader, marker_offset: i64, marker: ControlType, last_stable_offset: i64) -> Option<AbortedTxn> {
        if !matches!(marker, ControlType::Abort | ControlType::Commit) {
            return None;
        }
        let entry = self.producers.entry(header.producer_id).or_default();
        if header.producer_epoch > entry.epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        let first_offset = self.open_txns.remove(&header.producer_id)?;
        (marker == ControlType::Abort).then_some(AbortedTxn {
            producer_id: header.producer_id,
            first_offset,
            last_offset: marker_offset,
            last_stable_offset,
        })
    }

    /// First offset of the oldest open transaction (bounds the last stable offset).
    pub fn first_open_offset(&self) -> Option<i64> {
        self.open_txns.values().min().copied()
    }

    /// Whether `producer_id` has an open transaction here.
    pub fn has_open_txn(&self, producer_id: i64) -> bool {
        self.open_txns.contains_key(&producer_id)
    }
}

/// A block of producer ids the active controller handed to this broker:
/// `[first, first + count)`, never handed to any other broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdBlock {
    pub first: i64,
    pub count: i64,
}

impl ProducerIdBlock {
    fn end(&self) -> i64 {
        self.first.saturating_add(self.count)
    }
}

/// Where producer-id blocks come from: the active controller ([`ControllerIdBlocks`]).
pub trait ProducerIdBlockSource: Send + Sync + 'static {
    fn next_block(&self) -> BoxFuture<'static, Result<ProducerIdBlock, ApiError>>;
}

/// Kafka's `ProducerIdManager.PidPrefetchThreshold`: the next block is requested
/// once this share of the current one is used.
const PREFETCH_PERCENT: i64 = 90;
/// After a failed block request, no new one for this long (Kafka: 50 ms).
const RETRY_BACKOFF: Duration = Duration::from_millis(100);
/// A block request that takes longer has failed (its block, if it comes, is lost: ids are plenty).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Default)]
struct Blocks {
    /// The current block: ids `[next, end)` are still free.
    next: i64,
    end: i64,
    /// Claiming this id requests the next block.
    prefetch_at: i64,
    /// The block fetched ahead, taken when the current one is used up.
    prefetched: Option<ProducerIdBlock>,
    request_in_flight: bool,
    retry_not_before: Option<Instant>,
    /// Counts failed block requests, so a waiter notices one that failed while it waited.
    failures: u64,
    last_error: Option<String>,
}

/// Hands out producer ids from blocks of the active controller (Kafka's
/// `RPCProducerIdManager`), so ids are unique across the cluster and never
/// reused after a restart of any node. Claiming an id never waits for I/O:
/// the next block is requested in the background when 90% of the current
/// one is used; when none is there yet, the caller gets
/// COORDINATOR_LOAD_IN_PROGRESS (retriable) or waits with [`Self::next_id`].
pub struct ProducerIdManager {
    source: Arc<dyn ProducerIdBlockSource>,
    blocks: Mutex<Blocks>,
    changed: Notify,
}

fn no_block_yet(detail: &str) -> ApiError {
    ApiError::new(ResponseError::CoordinatorLoadInProgress, format!("no producer id block from the controller yet: {detail}"))
}

impl ProducerIdManager {
    /// A manager with no block yet; the first claim (or [`Self::prefetch`]) requests one.
    pub fn new(source: Arc<dyn ProducerIdBlockSource>) -> Arc<Self> {
        Arc::new(ProducerIdManager { source, blocks: Mutex::new(Blocks::default()), changed: Notify::new() })
    }

    /// Requests a block now unless one is there or on its way (start-up).
    pub fn prefetch(self: &Arc<Self>) {
        let mut blocks = self.blocks.lock();
        if blocks.next >= blocks.end && blocks.prefetched.is_none() {
            self.maybe_request(&mut blocks);
        }
    }

    /// A fresh producer id, without waiting: COORDINATOR_LOAD_IN_PROGRESS when this
    /// broker has no free id until the controller answers. Must run inside the runtime.
    pub fn try_next(self: &Arc<Self>) -> Result<i64, ApiError> {
        let mut blocks = self.blocks.lock();
        if blocks.next >= blocks.end {
            match blocks.prefetched.take() {
                Some(block) => {
                    blocks.next = block.first;
                    blocks.end = block.end();
                    blocks.prefetch_at = block.first + block.count / 100 * PREFETCH_PERCENT;
                }
                None => {
                    self.maybe_request(&mut blocks);
                    let detail = blocks.last_error.clone().unwrap_or_else(|| "requested".into());
                    return Err(no_block_yet(&detail));
                }
            }
        }
        let id = blocks.next;
        blocks.next += 1;
        if id >= blocks.prefetch_at && blocks.prefetched.is_none() {
            self.maybe_request(&mut blocks);
        }
        Ok(id)
    }

    /// A fresh producer id, waiting at most `wait` for a block from the controller;
    /// answers at once when a block request fails meanwhile.
    pub async fn next_id(self: &Arc<Self>, wait: Duration) -> Result<i64, ApiError> {
        let deadline = tokio::time::Instant::now() + wait;
        let failures_before = self.blocks.lock().failures;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let error = match self.try_next() {
                Ok(id) => return Ok(id),
                Err(e) => e,
            };
            if self.blocks.lock().failures != failures_before {
                return Err(error);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(error);
            }
        }
    }

    /// Waits (at most `wait`) until an id can be claimed without waiting; false if none came.
    pub async fn wait_ready(self: &Arc<Self>, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        let failures_before = self.blocks.lock().failures;
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let mut blocks = self.blocks.lock();
                if blocks.next < blocks.end || blocks.prefetched.is_some() {
                    return true;
                }
                if blocks.failures != failures_before {
                    return false;
                }
                self.maybe_request(&mut blocks);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    fn maybe_request(self: &Arc<Self>, blocks: &mut Blocks) {
        if blocks.request_in_flight || blocks.retry_not_before.is_some_and(|t| Instant::now() < t) {
            return;
        }
        blocks.request_in_flight = true;
        let this = self.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(REQUEST_TIMEOUT, this.source.next_block()).await {
                Ok(result) => result,
                Err(_) => Err(ApiError::new(ResponseError::RequestTimedOut, "the controller did not answer in time")),
            };
            this.block_arrived(result);
        });
    }

    fn block_arrived(&self, result: Result<ProducerIdBlock, ApiError>) {
        let mut blocks = self.blocks.lock();
        blocks.request_in_flight = false;
        let result = result.and_then(|block| {
            // Blocks only move upwards; anything else would hand out ids twice.
            let highest = blocks.end.max(blocks.prefetched.map_or(0, |p| p.end()));
            if block.first < 0 || block.count <= 0 || block.first.checked_add(block.count).is_none() || block.first < highest {
                Err(ApiError::new(
                    ResponseError::UnknownServerError,
                    format!("refused producer id block {block:?}: not above the ids already held (up to {highest})"),
                ))
            } else {
                Ok(block)
            }
        });
        match result {
            Ok(block) => {
                tracing::debug!(first = block.first, count = block.count, "producer id block from the controller");
                blocks.prefetched = Some(block);
                blocks.retry_not_before = None;
                blocks.last_error = None;
            }
            Err(e) => {
                if blocks.last_error.is_none() {
                    tracing::warn!(error = %e, "requesting a producer id block from the controller failed");
                }
                blocks.failures += 1;
                blocks.retry_not_before = Some(Instant::now() + RETRY_BACKOFF);
                blocks.last_error = Some(e.to_string());
            }
        }
        drop(blocks);
        self.changed.notify_waiters();
    }
}

/// MetaStore key of the local counter that issued producer ids before they came
/// from the controller: every id below its value may be in use. Read, never written.
pub const LEGACY_NEXT_BLOCK_KEY: &str = "producer.id.next.block";

/// The local counter's high-water of a data directory written by an earlier
/// release (0 if it never issued an id).
pub fn legacy_high_water(meta: &MetaStore) -> Result<i64, StorageError> {
    match meta.get_value(LEGACY_NEXT_BLOCK_KEY)? {
        None => Ok(0),
        Some(value) => value.trim().parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(|| StorageError::Corrupt {
            path: "meta/values.json".into(),
            reason: format!("{LEGACY_NEXT_BLOCK_KEY} is {value:?}, not a producer id: the ids this broker issued are unknown"),
        }),
    }
}

/// Producer-id blocks from the active controller (AllocateProducerIds), with this
/// broker's id and epoch. `first_id_at_least` carries the data directory's legacy
/// high-water, so the cluster's ids start above what the local counter issued.
pub struct ControllerIdBlocks {
    pub cluster: Weak<Cluster>,
    pub first_id_at_least: i64,
}

impl ProducerIdBlockSource for ControllerIdBlocks {
    fn next_block(&self) -> BoxFuture<'static, Result<ProducerIdBlock, ApiError>> {
        let cluster = self.cluster.clone();
        let first_id_at_least = self.first_id_at_least;
        Box::pin(async move {
            let cluster = cluster.upgrade().ok_or_else(|| ApiError::new(ResponseError::BrokerNotAvailable, "shutting down"))?;
            let request = ControllerRequest::AllocateProducerIds {
                broker_id: cluster.node_id(),
                broker_epoch: cluster.broker_epoch(),
                first_id_at_least,
            };
            match cluster.submit(request).await? {
                ControllerResponse::ProducerIds { first_producer_id, count } => Ok(ProducerIdBlock { first: first_producer_id, count }),
                other => Err(ApiError::new(ResponseError::UnknownServerError, format!("unexpected controller answer {other:?}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id,
            producer_epoch: epoch,
            base_sequence,
            record_count: records,
        }
    }

    #[test]
    fn in_order_batches_append_and_retries_are_duplicates() {
        let mut states = ProducerStates::default();
        let first = batch(7, 0, 0, 3);
        assert_eq!(states.check(&first).unwrap(), SequenceCheck::Append);
        states.record(&first, 100);
        let second = batch(7, 0, 3, 2);
        assert_eq!(states.check(&second).unwrap(), SequenceCheck::Append);
        states.record(&second, 103);
        match states.check(&first).unwrap() {
            SequenceCheck::Duplicate(c) => assert_eq!((c.first_offset, c.last_offset), (100, 102)),
            other => panic!("expected duplicate, got {other:?}"),
        }
    }

    #[test]
    fn gaps_and_old_epochs_are_refused() {
        let mut states = ProducerStates::default();
        let first = batch(7, 1, 0, 1);
        states.record(&first, 0);
        let gap = batch(7, 1, 5, 1);
        assert_eq!(states.check(&gap).unwrap_err().code, ResponseError::OutOfOrderSequenceNumber);
        let zombie = batch(7, 0, 1, 1);
        assert_eq!(states.check(&zombie).unwrap_err().code, ResponseError::InvalidProducerEpoch);
        let bumped = batch(7, 2, 0, 1);
        assert_eq!(states.check(&bumped).unwrap(), SequenceCheck::Append);
        let bumped_bad = batch(7, 2, 4, 1);
        assert_eq!(states.check(&bumped_bad).unwrap_err().code, ResponseError::OutOfOrderSequenceNumber);
    }

    #[test]
    fn non_idempotent_batches_skip_checks() {
        let states = ProducerStates::default();
        assert_eq!(states.check(&batch(-1, -1, -1, 4)).unwrap(), SequenceCheck::Append);
    }

    fn txn_batch(producer_id: i64, epoch: i16, base_sequence: i32, records: i32) -> BatchHeader {
        BatchHeader { attributes: 0x10, ..batch(producer_id, epoch, base_sequence, records) }
    }

    fn marker(producer_id: i64, epoch: i16) -> BatchHeader {
        BatchHeader { attributes: 0x30, ..batch(producer_id, epoch, -1, 1) }
    }

    #[test]
    fn markers_close_transactions_and_aborts_become_index_entries() {
        let mut states = ProducerStates::default();
        states.record(&txn_batch(1, 0, 0, 2), 10);
        states.record(&txn_batch(2, 0, 0, 1), 12);
        states.record(&txn_batch(1, 0, 2, 1), 13);
        assert_eq!(states.first_open_offset(), Some(10));
        assert_eq!(states.complete_txn(&marker(1, 0), 14, ControlType::Commit, 10), None);
        assert_eq!(states.first_open_offset(), Some(12));
        let aborted = states.complete_txn(&marker(2, 0), 15, ControlType::Abort, 12).expect("an index entry");
        assert_eq!((aborted.producer_id, aborted.first_offset, aborted.last_offset), (2, 12, 15));
        assert_eq!(states.first_open_offset(), None);
        // A marker for a producer without an open transaction leaves no entry.
        assert_eq!(states.complete_txn(&marker(2, 0), 16, ControlType::Abort, 16), None);
    }

    #[test]
    fn a_fencing_marker_bumps_the_epoch_so_the_zombie_is_refused() {
        let mut states = ProducerStates::default();
        states.record(&txn_batch(1, 0, 0, 1), 0);
        states.complete_txn(&marker(1, 1), 1, ControlType::Abort, 0);
        let zombie = txn_batch(1, 0, 1, 1);
        assert_eq!(states.check(&zombie).unwrap_err().code, ResponseError::InvalidProducerEpoch);
        // Marker-like batches without sequences are fenced by epoch too.
        assert_eq!(states.check(&marker(1, 0)).unwrap_err().code, ResponseError::InvalidProducerEpoch);
        assert_eq!(states.check(&txn_batch(1, 2, 0, 1)).unwrap(), SequenceCheck::Append);
    }

    #[test]
    fn sequences_wrap_at_i32_max() {
        let mut states = ProducerStates::default();
        let near_end = batch(9, 0, i32::MAX - 1, 2);
        states.record(&near_end, 0);
        assert_eq!(states.check(&batch(9, 0, 0, 1)).unwrap(), SequenceCheck::Append);
    }

    /// Blocks of `count` ids from a counter, as a controller hands them out; each
    /// request fails while `failing` is set. `gate`: requests wait for a permit.
    struct CountingSource {
        next: Mutex<i64>,
        count: i64,
        requests: std::sync::atomic::AtomicU32,
        failing: std::sync::atomic::AtomicBool,
    }

    impl CountingSource {
        fn new(count: i64) -> Arc<Self> {
            Arc::new(CountingSource { next: Mutex::new(0), count, requests: Default::default(), failing: Default::default() })
        }
        fn requests(&self) -> u32 {
            self.requests.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl ProducerIdBlockSource for CountingSource {
        fn next_block(&self) -> BoxFuture<'static, Result<ProducerIdBlock, ApiError>> {
            self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let result = if self.failing.load(std::sync::atomic::Ordering::SeqCst) {
                Err(ApiError::new(ResponseError::RequestTimedOut, "no controller"))
            } else {
                let mut next = self.next.lock();
                let block = ProducerIdBlock { first: *next, count: self.count };
                *next += self.count;
                Ok(block)
            };
            Box::pin(async move { result })
        }
    }

    /// Lets spawned block requests run (current-thread runtime).
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn ids_come_from_blocks_and_the_next_block_is_fetched_before_the_current_runs_out() {
        let source = CountingSource::new(100);
        let ids = ProducerIdManager::new(source.clone());
        // The first claim has no block yet: a retriable error, and a request goes out.
        assert_eq!(ids.try_next().unwrap_err().code, ResponseError::CoordinatorLoadInProgress);
        settle().await;
        assert_eq!(source.requests(), 1);
        let mut claimed = Vec::new();
        for _ in 0..90 {
            claimed.push(ids.try_next().unwrap());
        }
        settle().await;
        assert_eq!(source.requests(), 1, "no prefetch before 90% of the block is used");
        claimed.push(ids.try_next().unwrap());
        settle().await;
        assert_eq!(source.requests(), 2, "claiming the 91st id prefetches the next block");
        for _ in 0..109 {
            claimed.push(ids.try_next().unwrap());
        }
        assert_eq!(claimed, (0..200).collect::<Vec<i64>>(), "no gap and no wait at the block boundary");
    }

    #[tokio::test]
    async fn without_a_controller_the_answer_is_retriable_and_ids_come_once_it_answers() {
        let source = CountingSource::new(10);
        source.failing.store(true, std::sync::atomic::Ordering::SeqCst);
        let ids = ProducerIdManager::new(source.clone());
        let started = Instant::now();
        let refused = ids.next_id(Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(refused.code, ResponseError::CoordinatorLoadInProgress);
        assert!(started.elapsed() < Duration::from_secs(1), "a failed request answers at once, not after the wait");
        assert!(refused.to_string().contains("no controller"), "{refused}");
        // Within the backoff, claims send no new request.
        let before = source.requests();
        assert!(ids.try_next().is_err());
        settle().await;
        assert_eq!(source.requests(), before);
        source.failing.store(false, std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(RETRY_BACKOFF + Duration::from_millis(20)).await;
        assert_eq!(ids.next_id(Duration::from_secs(5)).await.unwrap(), 0);
        assert!(ids.wait_ready(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_block_below_the_ids_already_held_is_refused() {
        let ids = ProducerIdManager::new(CountingSource::new(10));
        ids.block_arrived(Ok(ProducerIdBlock { first: 500, count: 10 }));
        assert_eq!(ids.try_next().unwrap(), 500);
        ids.block_arrived(Ok(ProducerIdBlock { first: 505, count: 10 }));
        ids.block_arrived(Ok(ProducerIdBlock { first: -3, count: 10 }));
        ids.block_arrived(Ok(ProducerIdBlock { first: i64::MAX - 1, count: 10 }));
        let claimed: Vec<i64> = (0..9).map(|_| ids.try_next().unwrap()).collect();
        assert_eq!(claimed, (501..510).collect::<Vec<i64>>());
    }

    #[test]
    fn the_legacy_high_water_is_read_and_a_garbled_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let (meta, _) = MetaStore::open(dir.path()).unwrap();
        assert_eq!(legacy_high_water(&meta).unwrap(), 0);
        meta.put_value(LEGACY_NEXT_BLOCK_KEY, "7000").unwrap();
        assert_eq!(legacy_high_water(&meta).unwrap(), 7000);
        meta.put_value(LEGACY_NEXT_BLOCK_KEY, "seven").unwrap();
        let error = legacy_high_water(&meta).unwrap_err().to_string();
        assert!(error.contains(LEGACY_NEXT_BLOCK_KEY), "{error}");
    }
}
