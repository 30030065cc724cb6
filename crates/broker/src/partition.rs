//! One partition hosted by this broker: its log, its high watermark, and the
//! group-commit flusher that makes `acks=all` appends durable.
//!
//! Group commit: an `acks=all` produce appends (page cache), then asks the
//! flusher for durability and waits. The flusher takes everything appended so
//! far as one [`SyncJob`](runnel_storage::SyncJob), fdatasyncs it on a
//! blocking thread, and publishes the new durable offset; requests that
//! arrive during an fsync are covered by the next one. So concurrent
//! producers share fsyncs instead of paying one each.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use runnel_storage::{AppendInfo, BatchHeader, Log, LogConfig, ReadPlan, StorageError};
use tokio::sync::{watch, Notify};

use crate::error::ApiError;
use crate::producer_state::{ProducerStates, SequenceCheck};

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    /// Idempotent producers' sequence state. Lock order: `producers`, then `log`.
    producers: Mutex<ProducerStates>,
    log: Mutex<Log>,
    /// Log end offset (= high watermark on a single node), for fetch long polls.
    high_watermark: watch::Sender<i64>,
    /// Offset below which everything is fsynced.
    durable: watch::Sender<i64>,
    flush_wanted: Notify,
    /// Set when an fsync failed. After a failed fsync the kernel may have
    /// dropped the dirty pages while reads still show them, so nothing written
    /// since the last good fsync can be trusted durable, and a later fsync
    /// that succeeds proves nothing. The partition refuses every append from
    /// then on and keeps serving reads; its log is not closed cleanly, so the
    /// next start CRC-checks it (a restart is the way back, as with Kafka's
    /// offline log directories).
    storage_failed: AtomicBool,
    /// Rate limit of the ERROR lines for failed appends (disk full and such).
    write_errors: StorageErrorLog,
    closed: AtomicBool,
    leader_epoch: i32,
}

/// The state a fetch reports for a partition alongside its records.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
}

impl Partition {
    /// Wraps an opened log and starts its flusher (needs a tokio runtime).
    /// Idempotent producers' sequences are rebuilt from the batch headers of
    /// the active segment, so a retry that spans a restart is still detected.
    pub fn new(topic: Arc<str>, index: i32, log: Log) -> Arc<Partition> {
        let end = log.log_end_offset();
        let durable = log.durable_offset();
        let mut producers = ProducerStates::default();
        let scan_from = log.active_segment_base().max(log.log_start_offset());
        if let Err(e) = runnel_storage::log::for_each_batch(&log, scan_from, |h| producers.record(h, h.base_offset)) {
            tracing::warn!(%topic, partition = index, error = %e, "could not rebuild producer state; sequences restart");
            producers = ProducerStates::default();
        }
        let partition = Arc::new(Partition {
            topic,
            index,
            producers: Mutex::new(producers),
            log: Mutex::new(log),
            high_watermark: watch::Sender::new(end),
            durable: watch::Sender::new(durable),
            flush_wanted: Notify::new(),
            storage_failed: AtomicBool::new(false),
            write_errors: StorageErrorLog::default(),
            closed: AtomicBool::new(false),
            leader_epoch: 0,
        });
        tokio::spawn(flush_loop(partition.clone()));
        partition
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch
    }

    pub fn high_watermark(&self) -> i64 {
        *self.high_watermark.borrow()
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.log.lock();
        PartitionOffsets { log_start_offset: log.log_start_offset(), high_watermark: log.log_end_offset() }
    }

    pub fn max_message_bytes(&self) -> usize {
        self.log.lock().config().max_message_bytes
    }

    pub fn set_config(&self, config: LogConfig) {
        self.log.lock().set_config(config);
    }

    /// Appends validated batches, assigning offsets in place, after checking
    /// idempotent producers' sequences. A retried batch that is already in the
    /// log is not appended again: its original offsets are returned. Wakes fetchers.
    pub fn append(&self, batches: &mut [u8], headers: &[BatchHeader], now_ms: i64) -> Result<AppendInfo, ApiError> {
        let mut producers = self.producers.lock();
        for header in headers {
            if let SequenceCheck::Duplicate(cached) = producers.check(header)? {
                if headers.len() == 1 {
                    let log_start_offset = self.log.lock().log_start_offset();
                    return Ok(AppendInfo {
                        first_offset: cached.first_offset,
                        last_offset: cached.last_offset,
                        log_append_time: -1,
                        log_start_offset,
                    });
                }
                return Err(ApiError::new(
                    kafka_protocol::error::ResponseError::DuplicateSequenceNumber,
                    "a retried batch was sent together with other batches",
                ));
            }
        }
        if self.storage_failed.load(Ordering::Acquire) {
            return Err(ApiError::new(
                kafka_protocol::error::ResponseError::KafkaStorageError,
                format!("{}-{}: an fsync failed earlier; the partition takes no writes until the broker restarts", self.topic, self.index),
            ));
        }
        let info = {
            let mut log = self.log.lock();
            let appended = log.append(batches, self.leader_epoch, now_ms);
            let info = match appended {
                Ok(info) => info,
                Err(e) => {
                    if matches!(e, StorageError::Io { .. }) {
                        self.write_errors.failed(&self.topic, self.index, &e, now_ms);
                    }
                    return Err(ApiError::from(&e));
                }
            };
            self.write_errors.succeeded(&self.topic, self.index);
            self.high_watermark.send_replace(log.log_end_offset());
            info
        };
        let mut offset = info.first_offset;
        for header in headers {
            producers.record(header, offset);
            offset += header.last_offset_delta as i64 + 1;
        }
        Ok(info)
    }

    /// Waits until every offset up to and including `last_offset` is fsynced.
    /// Returns false on timeout or when the partition's storage failed.
    pub async fn wait_durable(&self, last_offset: i64, timeout: Duration) -> Result<(), DurabilityError> {
        let mut rx = self.durable.subscribe();
        if *rx.borrow() > last_offset {
            return Ok(());
        }
        if self.storage_failed.load(Ordering::Acquire) {
            return Err(DurabilityError::StorageFailed);
        }
        self.flush_wanted.notify_one();
        // A failed fsync ends the wait at once (not at the timeout).
        let waited = tokio::time::timeout(
            timeout,
            rx.wait_for(|durable| *durable > last_offset || self.storage_failed.load(Ordering::Acquire)),
        )
        .await;
        if self.storage_failed.load(Ordering::Acquire) {
            return Err(DurabilityError::StorageFailed);
        }
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(DurabilityError::StorageFailed),
            Err(_) => Err(DurabilityError::TimedOut),
        }
    }

    /// Reads whole batches from `offset`, bounded by the high watermark and
    /// `max_bytes` (at least one batch when `min_one_batch`).
    pub fn read(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<(Bytes, PartitionOffsets), StorageError> {
        let (plan, offsets) = self.read_plan(offset, max_bytes, min_one_batch)?;
        Ok((self.read_planned(&plan)?, offsets))
    }

    /// Reads the bytes of a plan from [`Partition::read_plan`] into memory.
    pub fn read_planned(&self, plan: &ReadPlan) -> Result<Bytes, StorageError> {
        plan.read().map_err(|e| StorageError::io(self.log_dir_hint(), e))
    }

    /// Plans a read of whole batches up to the high watermark without
    /// reading them: fetches send the planned region from the file.
    pub fn read_plan(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<(ReadPlan, PartitionOffsets), StorageError> {
        let log = self.log.lock();
        let offsets = PartitionOffsets { log_start_offset: log.log_start_offset(), high_watermark: log.log_end_offset() };
        let plan = log.read_plan(offset, offsets.high_watermark, max_bytes, min_one_batch)?;
        Ok((plan, offsets))
    }

    fn log_dir_hint(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// A receiver that changes whenever the high watermark moves (fetch long polling).
    pub fn watch_high_watermark(&self) -> watch::Receiver<i64> {
        self.high_watermark.subscribe()
    }

    pub fn with_log<R>(&self, f: impl FnOnce(&mut Log) -> R) -> R {
        let mut log = self.log.lock();
        let r = f(&mut log);
        self.high_watermark.send_replace(log.log_end_offset());
        r
    }

    /// Stops the flusher and flushes; used at shutdown and before deletion.
    pub fn close(&self) -> Result<(), StorageError> {
        self.closed.store(true, Ordering::Release);
        self.flush_wanted.notify_one();
        if self.storage_failed.load(Ordering::Acquire) {
            // No clean-shutdown marker: the next start must CRC-check what the failed fsync left.
            tracing::warn!(topic = %self.topic, partition = self.index, "not closing cleanly after a failed fsync; the next start validates the log");
            return Ok(());
        }
        let mut log = self.log.lock();
        log.close()?;
        self.durable.send_replace(log.log_end_offset());
        Ok(())
    }

    /// Hands out the log for closing or deleting; the partition is unusable afterwards.
    pub fn take_log_for(&self, f: impl FnOnce(&mut Log) -> Result<(), StorageError>) -> Result<(), StorageError> {
        self.closed.store(true, Ordering::Release);
        self.flush_wanted.notify_one();
        let mut log = self.log.lock();
        f(&mut log)
    }
}

/// ERROR lines for failed writes, at most one per partition every
/// [`StorageErrorLog::INTERVAL_MS`], with the count of failures not logged;
/// and one INFO line when writes succeed again.
#[derive(Default)]
struct StorageErrorLog {
    last_logged_ms: AtomicI64,
    unlogged: AtomicU64,
    failing: AtomicBool,
}

impl StorageErrorLog {
    const INTERVAL_MS: i64 = 10_000;

    fn failed(&self, topic: &str, partition: i32, error: &StorageError, now_ms: i64) {
        self.failing.store(true, Ordering::Release);
        let last = self.last_logged_ms.load(Ordering::Acquire);
        let due = last == 0 || now_ms - last >= Self::INTERVAL_MS;
        if due && self.last_logged_ms.compare_exchange(last, now_ms.max(1), Ordering::AcqRel, Ordering::Acquire).is_ok() {
            let not_logged = self.unlogged.swap(0, Ordering::AcqRel);
            tracing::error!(
                topic, partition, error = %error, similar_failures_not_logged = not_logged,
                "append failed; producers get KAFKA_STORAGE_ERROR, reads go on, and writes resume once the cause (e.g. a full disk) is gone"
            );
        } else {
            self.unlogged.fetch_add(1, Ordering::AcqRel);
        }
    }

    fn succeeded(&self, topic: &str, partition: i32) {
        if self.failing.load(Ordering::Acquire) && self.failing.swap(false, Ordering::AcqRel) {
            let not_logged = self.unlogged.swap(0, Ordering::AcqRel);
            tracing::info!(topic, partition, similar_failures_not_logged = not_logged, "appends succeed again");
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityError {
    TimedOut,
    StorageFailed,
}

async fn flush_loop(partition: Arc<Partition>) {
    loop {
        partition.flush_wanted.notified().await;
        if partition.closed.load(Ordering::Acquire) {
            return;
        }
        if partition.storage_failed.load(Ordering::Acquire) {
            // A later fsync that succeeds would prove nothing (see `storage_failed`).
            partition.durable.send_modify(|_| {});
            continue;
        }
        let job = partition.log.lock().sync_job();
        let Some(job) = job else {
            let durable = partition.log.lock().durable_offset();
            partition.durable.send_replace(durable);
            continue;
        };
        let up_to = job.up_to_offset;
        match tokio::task::spawn_blocking(move || job.run()).await {
            Ok(Ok(())) => {
                let durable = {
                    let mut log = partition.log.lock();
                    log.mark_synced(up_to);
                    log.durable_offset()
                };
                partition.durable.send_replace(durable);
            }
            Ok(Err(e)) => {
                // Like Kafka's log-dir failure: stop acknowledging what cannot be made durable.
                tracing::error!(topic = %partition.topic, partition = partition.index, error = %e, "fsync failed; the partition refuses all writes until a restart (the page cache can no longer be trusted), reads go on");
                partition.storage_failed.store(true, Ordering::Release);
                partition.durable.send_modify(|_| {});
            }
            Err(e) => {
                tracing::error!(error = %e, "fsync task failed");
                partition.storage_failed.store(true, Ordering::Release);
                partition.durable.send_modify(|_| {});
            }
        }
    }
}

impl Partition {
    /// Idempotent producers with state on this partition (DescribeProducers).
    pub fn active_producers(&self) -> Vec<crate::producer_state::ActiveProducer> {
        self.producers.lock().active()
    }

    /// The window a CreateTime record's timestamp must fall in at `now_ms`
    /// (`message.timestamp.before.max.ms` / `after.max.ms`); None when the
    /// topic stamps LogAppendTime and producer timestamps are not checked.
    pub fn timestamp_window(&self, now_ms: i64) -> Option<(i64, i64)> {
        let log = self.log.lock();
        let config = log.config();
        (config.timestamp_type == runnel_storage::TimestampType::CreateTime).then(|| {
            (now_ms.saturating_sub(config.timestamp_before_max_ms), now_ms.saturating_add(config.timestamp_after_max_ms))
        })
    }

    /// `min.insync.replicas` of the partition's topic.
    pub fn min_insync_replicas(&self) -> i32 {
        self.log.lock().config().min_insync_replicas
    }
}
