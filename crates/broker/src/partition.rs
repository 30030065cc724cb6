//! One partition hosted by this broker: its log, its high watermark, and the
//! group-commit flusher that makes `acks=all` appends durable.
//!
//! Group commit: an `acks=all` produce appends (page cache), then asks the
//! flusher for durability and waits. The flusher takes everything appended so
//! far as one [`SyncJob`](runnel_storage::SyncJob), fdatasyncs it on a
//! blocking thread, and publishes the new durable offset; requests that
//! arrive during an fsync are covered by the next one. So concurrent
//! producers share fsyncs instead of paying one each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use runnel_storage::{AbortedTxn, AppendInfo, BatchHeader, ControlType, Log, LogConfig, ReadPlan, StorageError};
use tokio::sync::{watch, Notify};

use kafka_protocol::error::ResponseError;

use crate::error::ApiError;
use crate::producer_state::{ProducerStates, SequenceCheck};

pub struct Partition {
    pub topic: Arc<str>,
    pub index: i32,
    /// Idempotent producers' sequence state. Lock order: `producers`, then `log`.
    producers: Mutex<ProducerStates>,
    log: Mutex<Log>,
    /// Log end offset and high watermark: fetch long polls (followers read
    /// to the log end, consumers to the high watermark) and `acks=all`
    /// waits watch it.
    offsets_watch: watch::Sender<LogOffsets>,
    /// Role, epochs, replicas, ISR, followers' progress. Lock order: `log`, then `replica`.
    replica: Mutex<ReplicaState>,
    /// This broker's node id.
    local_id: i32,
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
    /// Mirror of `replica.leader_epoch`, read on hot paths without the lock.
    leader_epoch: AtomicI32,
    /// First offset of the oldest open transaction (i64::MAX: none), kept
    /// with `producers`; the last stable offset is min(this, high watermark).
    first_unstable: AtomicI64,
    /// On a follower: the leader's high watermark as of the last fetch (-1:
    /// not heard yet); DescribeLogDirs reports the offset lag from it.
    leader_high_watermark: AtomicI64,
}

/// The two offsets fetches and produces wait on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogOffsets {
    pub log_end_offset: i64,
    pub high_watermark: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Follower { leader_id: i32 },
}

/// What the leader knows of one follower (Kafka's `Replica` state).
#[derive(Debug, Clone, Copy)]
pub struct FollowerProgress {
    /// The follower's log end offset as of its last fetch (-1: unknown yet).
    pub log_end_offset: i64,
    /// The last time the follower had everything the leader had (ms; 0: never).
    pub last_caught_up_ms: i64,
    /// The leader's log end offset at the follower's previous fetch, and when
    /// that fetch came (Kafka's lastFetchLeaderLogEndOffset / lastFetchTimeMs).
    last_fetch_leader_end: i64,
    last_fetch_ms: i64,
}

impl FollowerProgress {
    /// A follower that has not fetched yet; `caught_up_ms` 0 means never caught up.
    fn unknown(caught_up_ms: i64) -> FollowerProgress {
        FollowerProgress { log_end_offset: -1, last_caught_up_ms: caught_up_ms, last_fetch_leader_end: -1, last_fetch_ms: 0 }
    }
}

/// The replica state of a partition, as the controller assigned it.
#[derive(Debug, Clone)]
pub struct ReplicaState {
    pub role: Role,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub replicas: Vec<i32>,
    pub isr: Vec<i32>,
    /// On the leader: every other assigned replica's progress.
    pub followers: HashMap<i32, FollowerProgress>,
    /// An ISR change sent to the controller and not answered yet (Kafka's
    /// pending AlterPartition): no second one is sent meanwhile.
    pub pending_isr_change: bool,
}

/// What the leader answers a follower's fetch for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowerFetch {
    /// Read from the fetch offset up to the log end.
    Read,
    /// The follower's last fetched epoch ended earlier here (or is unknown):
    /// it must truncate to `end_offset` (KIP-320 / KIP-595 diverging epoch).
    Diverging { epoch: i32, end_offset: i64 },
}

/// An ISR change the leader wants the controller to make (Kafka's AlterPartition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<i32>,
}

/// The state a fetch reports for a partition alongside its records.
#[derive(Debug, Clone, Copy)]
pub struct PartitionOffsets {
    pub log_start_offset: i64,
    pub high_watermark: i64,
    /// Offsets below it are not part of an open transaction (KIP-98's LSO).
    pub last_stable_offset: i64,
}

impl Partition {
    /// Wraps an opened log and starts its flusher (needs a tokio runtime).
    /// Idempotent producers' sequences are rebuilt from the batch headers of
    /// the active segment, so a retry that spans a restart is still detected.
    /// The partition starts as the leader of a one-replica ISR (this broker),
    /// at the latest epoch its log holds (0 for a new log): a single node.
    pub fn new(topic: Arc<str>, index: i32, log: Log, local_id: i32) -> Arc<Partition> {
        let end = log.log_end_offset();
        let leader_epoch = log.latest_epoch().unwrap_or(0).max(0);
        let durable = log.durable_offset();
        let mut log = log;
        let producers = rebuild_producer_states(&mut log, &topic, index);
        let first_unstable = producers.first_open_offset().unwrap_or(i64::MAX);
        let partition = Arc::new(Partition {
            topic,
            index,
            producers: Mutex::new(producers),
            log: Mutex::new(log),
            offsets_watch: watch::Sender::new(LogOffsets { log_end_offset: end, high_watermark: end }),
            replica: Mutex::new(ReplicaState {
                role: Role::Leader,
                leader_epoch,
                partition_epoch: 0,
                replicas: vec![local_id],
                isr: vec![local_id],
                followers: HashMap::new(),
                pending_isr_change: false,
            }),
            local_id,
            durable: watch::Sender::new(durable),
            flush_wanted: Notify::new(),
            storage_failed: AtomicBool::new(false),
            write_errors: StorageErrorLog::default(),
            closed: AtomicBool::new(false),
            leader_epoch: AtomicI32::new(leader_epoch),
            first_unstable: AtomicI64::new(first_unstable),
            leader_high_watermark: AtomicI64::new(-1),
        });
        tokio::spawn(flush_loop(partition.clone()));
        partition
    }

    pub fn leader_epoch(&self) -> i32 {
        self.leader_epoch.load(Ordering::Acquire)
    }

    pub fn high_watermark(&self) -> i64 {
        self.offsets_watch.borrow().high_watermark
    }

    pub fn offsets(&self) -> PartitionOffsets {
        let log = self.log.lock();
        let high_watermark = self.high_watermark();
        PartitionOffsets { log_start_offset: log.log_start_offset(), high_watermark, last_stable_offset: self.stable_below(high_watermark) }
    }

    /// The last stable offset given the high watermark.
    fn stable_below(&self, high_watermark: i64) -> i64 {
        high_watermark.min(self.first_unstable.load(Ordering::Acquire))
    }

    /// The last stable offset: read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        self.stable_below(self.high_watermark())
    }

    pub fn local_id(&self) -> i32 {
        self.local_id
    }

    pub fn is_leader(&self) -> bool {
        self.replica.lock().role == Role::Leader
    }

    /// A copy of the replica state (role, epochs, replicas, ISR, followers).
    pub fn replica_state(&self) -> ReplicaState {
        self.replica.lock().clone()
    }

    /// Kafka's `checkCurrentLeaderEpoch`: a request's `current_leader_epoch`
    /// (-1: not given) against this replica's. Older: FENCED_LEADER_EPOCH
    /// (the caller's metadata is stale); newer: UNKNOWN_LEADER_EPOCH (ours is).
    pub fn check_current_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ResponseError> {
        if current_leader_epoch < 0 {
            return Ok(());
        }
        let local = self.leader_epoch();
        if local > current_leader_epoch {
            Err(ResponseError::FencedLeaderEpoch)
        } else if local < current_leader_epoch {
            Err(ResponseError::UnknownLeaderEpoch)
        } else {
            Ok(())
        }
    }

    /// The largest epoch <= `epoch` in the log and where it ends (OffsetForLeaderEpoch).
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.log.lock().end_offset_for_epoch(epoch)
    }

    /// The latest leader epoch in the log (-1 if none): a follower's `last_fetched_epoch`.
    pub fn latest_log_epoch(&self) -> i32 {
        self.log.lock().latest_epoch().unwrap_or(-1)
    }

    /// The log end offset.
    pub fn log_end_offset(&self) -> i64 {
        self.log.lock().log_end_offset()
    }

    /// Makes this replica the leader (Kafka's `makeLeader`): the new epoch
    /// starts at the log end in the epoch cache, followers' progress is reset
    /// (ISR members count as caught up now, their log end unknown until they
    /// fetch), and the high watermark stays where it was until every ISR
    /// member has fetched.
    pub fn become_leader(&self, leader_epoch: i32, partition_epoch: i32, replicas: Vec<i32>, isr: Vec<i32>, now_ms: i64) -> Result<(), ApiError> {
        let mut log = self.log.lock();
        log.assign_epoch_start(leader_epoch).map_err(|e| ApiError::from(&e))?;
        let end = log.log_end_offset();
        let mut replica = self.replica.lock();
        let followers = replicas
            .iter()
            .filter(|&&id| id != self.local_id)
            .map(|&id| {
                let caught_up = if isr.contains(&id) { now_ms } else { 0 };
                (id, FollowerProgress::unknown(caught_up))
            })
            .collect();
        *replica = ReplicaState {
            role: Role::Leader,
            leader_epoch,
            partition_epoch,
            replicas,
            isr,
            followers,
            pending_isr_change: false,
        };
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        let hw = self.high_watermark().min(end);
        let hw = Self::leader_high_watermark(&replica, self.local_id, end, hw);
        drop(replica);
        self.offsets_watch.send_replace(LogOffsets { log_end_offset: end, high_watermark: hw });
        Ok(())
    }

    /// Makes this replica a follower of `leader_id` (Kafka's `makeFollower`).
    /// Waiting `acks=all` produces end with NOT_LEADER_OR_FOLLOWER.
    pub fn become_follower(&self, leader_id: i32, leader_epoch: i32, partition_epoch: i32) {
        let log = self.log.lock();
        let end = log.log_end_offset();
        let mut replica = self.replica.lock();
        replica.role = Role::Follower { leader_id };
        replica.leader_epoch = leader_epoch;
        replica.partition_epoch = partition_epoch;
        replica.followers.clear();
        replica.pending_isr_change = false;
        self.leader_epoch.store(leader_epoch, Ordering::Release);
        drop(replica);
        let hw = self.high_watermark().min(end);
        self.offsets_watch.send_replace(LogOffsets { log_end_offset: end, high_watermark: hw });
    }

    /// The controller committed an ISR change (or refused one): the new ISR
    /// and partition epoch apply, the pending change is over.
    pub fn apply_isr(&self, partition_epoch: i32, isr: Vec<i32>) {
        let end = self.log.lock().log_end_offset();
        let mut replica = self.replica.lock();
        if partition_epoch >= replica.partition_epoch {
            replica.partition_epoch = partition_epoch;
            replica.isr = isr;
        }
        self.isr_change_applied(replica, end);
    }

    /// The end of an ISR or assignment change on the leader: no change is
    /// pending any more, and the high watermark follows the new ISR.
    fn isr_change_applied(&self, mut replica: parking_lot::MutexGuard<'_, ReplicaState>, end: i64) {
        replica.pending_isr_change = false;
        let hw = Self::leader_high_watermark(&replica, self.local_id, end, self.high_watermark());
        drop(replica);
        self.publish(end, hw);
    }

    /// On the leader, in the same leader epoch: the replicas changed (a
    /// reassignment added or removed some). Followers that stay keep their
    /// progress (resetting it would hold the high watermark back until they
    /// fetch again); new ones start unknown, caught up now if the ISR has
    /// them (as Kafka's makeLeader: a new topic's followers come this way
    /// before their first fetch, and must not be shrunk out at once).
    pub fn update_assignment(&self, partition_epoch: i32, replicas: Vec<i32>, isr: Vec<i32>) {
        let now_ms = crate::now_ms();
        let end = self.log.lock().log_end_offset();
        let mut replica = self.replica.lock();
        if partition_epoch < replica.partition_epoch {
            return;
        }
        let mut followers = std::mem::take(&mut replica.followers);
        replica.followers = replicas
            .iter()
            .filter(|&&id| id != self.local_id)
            .map(|&id| {
                let caught_up = if isr.contains(&id) { now_ms } else { 0 };
                (id, followers.remove(&id).unwrap_or(FollowerProgress::unknown(caught_up)))
            })
            .collect();
        replica.replicas = replicas;
        replica.partition_epoch = partition_epoch;
        replica.isr = isr;
        self.isr_change_applied(replica, end);
    }

    /// Forgets a pending ISR change that failed, so the next check may send another.
    pub fn clear_pending_isr_change(&self) {
        self.replica.lock().pending_isr_change = false;
    }

    /// HW on the leader: the least log end offset over the ISR (the leader's
    /// own included; followers not heard from yet count as unknown, holding it
    /// back), never below `current` (it only moves forward).
    fn leader_high_watermark(replica: &ReplicaState, local_id: i32, leader_end: i64, current: i64) -> i64 {
        if replica.role != Role::Leader {
            return current.min(leader_end);
        }
        let mut hw = leader_end;
        for id in &replica.isr {
            if *id == local_id {
                continue;
            }
            match replica.followers.get(id) {
                Some(f) if f.log_end_offset >= 0 => hw = hw.min(f.log_end_offset),
                _ => return current.min(leader_end),
            }
        }
        hw.max(current).min(leader_end)
    }

    fn publish(&self, end: i64, hw: i64) {
        self.offsets_watch.send_if_modified(|o| {
            let new = LogOffsets { log_end_offset: end, high_watermark: hw };
            let changed = *o != new;
            *o = new;
            changed
        });
    }

    /// A follower's fetch on the leader: checks its epoch and that it is an
    /// assigned replica, and whether its last fetched epoch diverges from this
    /// log (then it must truncate; its progress is not recorded). Otherwise
    /// records its log end (= its fetch offset), advances the high watermark
    /// and returns the ISR change to propose when it caught up while outside
    /// the ISR (Kafka's `updateFollowerFetchState` + `maybeExpandIsr`).
    pub fn follower_fetch(
        &self,
        replica_id: i32,
        current_leader_epoch: i32,
        fetch_offset: i64,
        last_fetched_epoch: i32,
        now_ms: i64,
    ) -> Result<(FollowerFetch, Option<IsrChange>), ResponseError> {
        self.check_current_leader_epoch(current_leader_epoch)?;
        let log = self.log.lock();
        // Leadership first, as Kafka's localLogWithEpochOrThrow: a replica that just
        // stopped leading (its log may be emptied) must not answer with its log's offsets.
        let mut replica = self.replica.lock();
        if replica.role != Role::Leader {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let end = log.log_end_offset();
        if last_fetched_epoch >= 0 {
            let (epoch, end_offset) = log.end_offset_for_epoch(last_fetched_epoch);
            if epoch < last_fetched_epoch || end_offset < fetch_offset {
                return Ok((FollowerFetch::Diverging { epoch, end_offset }, None));
            }
        }
        if fetch_offset < log.log_start_offset() || fetch_offset > end {
            return Err(ResponseError::OffsetOutOfRange);
        }
        let epoch_start = log.leader_epochs().latest().map(|e| e.start_offset).unwrap_or(0);
        let Some(progress) = replica.followers.get_mut(&replica_id) else {
            return Err(ResponseError::NotLeaderOrFollower);
        };
        // Kafka's rule: caught up if it fetched the log end, or, as of its
        // previous fetch, it had then reached what the leader had then.
        if fetch_offset >= end {
            progress.last_caught_up_ms = now_ms;
        } else if progress.last_fetch_leader_end >= 0 && fetch_offset >= progress.last_fetch_leader_end {
            progress.last_caught_up_ms = progress.last_caught_up_ms.max(progress.last_fetch_ms);
        }
        progress.log_end_offset = fetch_offset;
        progress.last_fetch_leader_end = end;
        progress.last_fetch_ms = now_ms;
        let hw = Self::leader_high_watermark(&replica, self.local_id, end, self.high_watermark());
        // Expansion (Kafka's isFollowerInSync): caught up to the HW and into the current epoch.
        let expand = !replica.pending_isr_change
            && !replica.isr.contains(&replica_id)
            && fetch_offset >= hw
            && fetch_offset >= epoch_start;
        let change = expand.then(|| {
            replica.pending_isr_change = true;
            let mut new_isr = replica.isr.clone();
            new_isr.push(replica_id);
            IsrChange { leader_epoch: replica.leader_epoch, partition_epoch: replica.partition_epoch, new_isr }
        });
        drop(replica);
        drop(log);
        self.publish(end, hw);
        Ok((FollowerFetch::Read, change))
    }

    /// On the leader: the ISR without the followers that have not caught up
    /// for `lag_time_max_ms` (Kafka's `maybeShrinkIsr`), if that changes it
    /// and no other change is pending.
    pub fn isr_shrink_proposal(&self, lag_time_max_ms: i64, now_ms: i64) -> Option<IsrChange> {
        if self.replica.lock().followers.is_empty() {
            return None; // a single node: nothing to shrink, and no log lock taken
        }
        let end = self.log.lock().log_end_offset();
        let mut replica = self.replica.lock();
        if replica.role != Role::Leader || replica.pending_isr_change {
            return None;
        }
        let lagging = |id: &i32| {
            replica.followers.get(id).is_some_and(|f| f.log_end_offset < end && now_ms - f.last_caught_up_ms > lag_time_max_ms)
        };
        let new_isr: Vec<i32> = replica.isr.iter().copied().filter(|id| *id == self.local_id || !lagging(id)).collect();
        if new_isr.len() == replica.isr.len() {
            return None;
        }
        replica.pending_isr_change = true;
        Some(IsrChange { leader_epoch: replica.leader_epoch, partition_epoch: replica.partition_epoch, new_isr })
    }

    /// On a follower: the leader's high watermark, bounded by this log's end.
    pub fn update_follower_high_watermark(&self, leader_high_watermark: i64, fetched_in_epoch: i32) -> Result<(), ApiError> {
        let log = self.log.lock();
        self.check_still_following(fetched_in_epoch)?;
        self.leader_high_watermark.store(leader_high_watermark, Ordering::Release);
        let end = log.log_end_offset();
        drop(log);
        self.publish(end, leader_high_watermark.min(end).max(0));
        Ok(())
    }

    /// Called with the log lock held, before a follower applies a fetch answer
    /// to its log: the answer came from the leader of `fetched_in_epoch`. If
    /// this replica became leader or took a newer epoch since the fetch went
    /// out, the answer is stale and must not touch the log (Kafka's fetcher
    /// drops answers whose epoch is no longer the partition's). The log lock
    /// makes the check and the change one step against `become_leader`.
    fn check_still_following(&self, fetched_in_epoch: i32) -> Result<(), ApiError> {
        let replica = self.replica.lock();
        match replica.role {
            Role::Follower { leader_id } if leader_id >= 0 && replica.leader_epoch == fetched_in_epoch => Ok(()),
            _ => Err(ApiError::new(
                ResponseError::FencedLeaderEpoch,
                format!(
                    "{}-{}: a fetch answer of leader epoch {fetched_in_epoch} arrived after the partition moved on (now {:?} in epoch {})",
                    self.topic, self.index, replica.role, replica.leader_epoch
                ),
            )),
        }
    }

    /// How far this replica's log end is behind what the partition has
    /// committed: 0 on the leader; on a follower the leader's high watermark
    /// (as of its last fetch) minus this log end, 0 until a fetch answered.
    pub fn offset_lag(&self) -> i64 {
        if self.is_leader() {
            return 0;
        }
        let leader_high_watermark = self.leader_high_watermark.load(Ordering::Acquire);
        (leader_high_watermark - self.log_end_offset()).max(0)
    }

    /// On a follower: appends batches fetched from the leader, with their
    /// offsets and epochs. Idempotent-producer state follows the batches.
    pub fn append_as_follower(&self, batches: &[u8], fetched_in_epoch: i32) -> Result<AppendInfo, ApiError> {
        let mut producers = self.producers.lock();
        let mut log = self.log.lock();
        self.check_still_following(fetched_in_epoch)?;
        let info = log.append_as_follower(batches).map_err(|e| ApiError::from(&e))?;
        let mut pos = 0;
        let mut transactional = false;
        while pos < batches.len() {
            let Ok(header) = BatchHeader::parse(&batches[pos..]) else { break };
            let batch = &batches[pos..(pos + header.total_size()).min(batches.len())];
            pos += header.total_size();
            transactional |= header.is_transactional();
            // A replicated marker ends its transaction here as on the leader, so that
            // this replica, once leader, has the right last stable offset and aborted index.
            match header.is_control().then(|| runnel_storage::txn_index::control_type(batch)).flatten() {
                Some(marker) => {
                    let lso = producers.first_open_offset().unwrap_or(header.base_offset);
                    if let Some(aborted) = producers.complete_txn(&header, header.base_offset, marker, lso) {
                        log.add_aborted_txn(aborted).map_err(|e| ApiError::from(&e))?;
                    }
                }
                None => producers.record(&header, header.base_offset),
            }
        }
        let end = log.log_end_offset();
        drop(log);
        if transactional {
            self.open_txns_changed(&producers);
        }
        self.publish(end, self.high_watermark().min(end));
        Ok(info)
    }

    /// On a follower: drops the log from `offset` on (a tail that diverged
    /// from the leader), rebuilds idempotent-producer state from what is
    /// left, and lowers the high watermark if it was past the new end.
    pub fn truncate_to(&self, offset: i64, fetched_in_epoch: i32) -> Result<i64, ApiError> {
        let mut producers = self.producers.lock();
        let mut log = self.log.lock();
        self.check_still_following(fetched_in_epoch)?;
        let end = log.truncate_to(offset).map_err(|e| ApiError::from(&e))?;
        *producers = rebuild_producer_states(&mut log, &self.topic, self.index);
        drop(log);
        self.open_txns_changed(&producers);
        self.publish(end, self.high_watermark().min(end));
        Ok(end)
    }

    /// Empties the log and restarts it at `offset` (a follower behind its
    /// leader's log start: `fetched_in_epoch` is the epoch of that fetch; or a
    /// broker no longer a replica of the partition, already a follower of
    /// nobody: `None`). Never on a leader: it would take writes into the
    /// emptied log and count the followers' old progress as acknowledgement.
    pub fn truncate_fully_and_start_at(&self, offset: i64, fetched_in_epoch: Option<i32>) -> Result<(), ApiError> {
        let mut producers = self.producers.lock();
        let mut log = self.log.lock();
        match fetched_in_epoch {
            Some(epoch) => self.check_still_following(epoch)?,
            None if self.replica.lock().role == Role::Leader => {
                return Err(ApiError::new(ResponseError::NotLeaderOrFollower, format!("{}-{}: the leader's log is not emptied", self.topic, self.index)));
            }
            None => {}
        }
        log.truncate_fully_and_start_at(offset).map_err(|e| ApiError::from(&e))?;
        *producers = ProducerStates::default();
        let _ = log.set_transaction_scan_start(None);
        let end = log.log_end_offset();
        drop(log);
        self.open_txns_changed(&producers);
        self.publish(end, end);
        Ok(())
    }

    /// A follower takes its leader's log start offset (never past its own log end).
    pub fn follow_leader_log_start(&self, leader_log_start: i64, fetched_in_epoch: i32) -> Result<(), ApiError> {
        let mut log = self.log.lock();
        self.check_still_following(fetched_in_epoch)?;
        if leader_log_start > log.log_start_offset() && log.log_start_offset() < log.log_end_offset() {
            log.delete_records_before(leader_log_start).map_err(|e| ApiError::from(&e))?;
        }
        Ok(())
    }

    /// Waits until every ISR member has `last_offset` (the high watermark
    /// passed it), for `acks=all`. Then, as Kafka's DelayedProduce does,
    /// answers NOT_ENOUGH_REPLICAS_AFTER_APPEND when the ISR has shrunk below
    /// `min.insync.replicas` meanwhile; NOT_LEADER_OR_FOLLOWER if leadership
    /// moved; REQUEST_TIMED_OUT at the deadline.
    pub async fn wait_replicated(&self, last_offset: i64, deadline: tokio::time::Instant) -> Result<(), ApiError> {
        let mut rx = self.offsets_watch.subscribe();
        let reached = |o: &LogOffsets| o.high_watermark > last_offset;
        loop {
            if !self.is_leader() {
                return Err(ApiError::new(ResponseError::NotLeaderOrFollower, "leadership moved before the ISR had the records"));
            }
            if reached(&rx.borrow_and_update()) {
                break;
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(ApiError::new(ResponseError::NotLeaderOrFollower, "partition closed")),
                Err(_) => return Err(ApiError::new(ResponseError::RequestTimedOut, "timed out waiting for the in-sync replicas")),
            }
        }
        let isr = self.replica.lock().isr.len() as i32;
        let min_isr = self.min_insync_replicas();
        if isr < min_isr {
            return Err(ApiError::new(
                ResponseError::NotEnoughReplicasAfterAppend,
                format!("the in-sync replica set shrank to {isr} member(s), below min.insync.replicas={min_isr}, after the append"),
            ));
        }
        Ok(())
    }

    /// Size of the ISR now (the produce path checks it against `min.insync.replicas`).
    pub fn isr_size(&self) -> usize {
        self.replica.lock().isr.len()
    }

    /// `cleanup.policy` includes `compact` (records without a key are refused).
    pub fn is_compacted(&self) -> bool {
        self.log.lock().config().is_compacted()
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
        self.append_locked(&mut producers, batches, headers, now_ms)
    }

    /// Appends a transaction marker (a control batch, COMMIT or ABORT) for a
    /// producer (Kafka's WriteTxnMarkers on the partition): its open
    /// transaction here ends, an aborted one enters the transaction index,
    /// and the last stable offset moves on. Returns the marker's offset.
    /// An epoch older than the producer's is refused (INVALID_PRODUCER_EPOCH).
    pub fn write_txn_marker(&self, producer_id: i64, producer_epoch: i16, marker: ControlType, coordinator_epoch: i32, now_ms: i64) -> Result<i64, ApiError> {
        let mut batch = control_batch(producer_id, producer_epoch, marker, coordinator_epoch, now_ms)?;
        let validated = runnel_storage::batch::validate_batches(&batch, usize::MAX)
            .map_err(|e| ApiError::new(ResponseError::UnknownServerError, format!("marker batch: {e}")))?;
        let mut producers = self.producers.lock();
        let info = self.append_locked(&mut producers, &mut batch, &validated.headers, now_ms)?;
        let lso = self.last_stable_offset();
        if let Some(aborted) = producers.complete_txn(&validated.headers[0], info.first_offset, marker, lso) {
            // In the index before the last stable offset passes the marker.
            self.log.lock().add_aborted_txn(aborted).map_err(|e| ApiError::from(&e))?;
        }
        self.open_txns_changed(&producers);
        Ok(info.first_offset)
    }

    /// Whether `producer_id` has an open transaction on this partition.
    pub fn has_open_txn(&self, producer_id: i64) -> bool {
        self.producers.lock().has_open_txn(producer_id)
    }

    /// Publishes a change of the oldest open transaction: the last stable
    /// offset, and the scan start a restart needs to find it again.
    fn open_txns_changed(&self, producers: &ProducerStates) {
        let first = producers.first_open_offset();
        let previous = self.first_unstable.swap(first.unwrap_or(i64::MAX), Ordering::AcqRel);
        if previous == first.unwrap_or(i64::MAX) {
            return;
        }
        if let Err(e) = self.log.lock().set_transaction_scan_start(first) {
            tracing::warn!(topic = %self.topic, partition = self.index, error = %e, "could not record where open transactions start; a restart scans less far back");
        }
        // read_committed fetches long-poll on this watch.
        self.offsets_watch.send_modify(|_| {});
    }

    fn append_locked(&self, producers: &mut ProducerStates, batches: &mut [u8], headers: &[BatchHeader], now_ms: i64) -> Result<AppendInfo, ApiError> {
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
            let replica = self.replica.lock();
            if replica.role != Role::Leader {
                return Err(ApiError::new(ResponseError::NotLeaderOrFollower, format!("this broker is not the leader of {}-{}", self.topic, self.index)));
            }
            let appended = log.append(batches, replica.leader_epoch, now_ms);
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
            let end = log.log_end_offset();
            let hw = Self::leader_high_watermark(&replica, self.local_id, end, self.high_watermark());
            self.offsets_watch.send_replace(LogOffsets { log_end_offset: end, high_watermark: hw });
            info
        };
        let mut offset = info.first_offset;
        let mut transactional = false;
        for header in headers {
            producers.record(header, offset);
            transactional |= header.is_transactional();
            offset += header.last_offset_delta as i64 + 1;
        }
        if transactional {
            self.open_txns_changed(producers);
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
        self.read_plan_to(offset, max_bytes, min_one_batch, false)
    }

    /// [`Partition::read_plan`], up to the log end instead for a follower's fetch (`to_log_end`).
    pub fn read_plan_to(&self, offset: i64, max_bytes: usize, min_one_batch: bool, to_log_end: bool) -> Result<(ReadPlan, PartitionOffsets), StorageError> {
        let log = self.log.lock();
        let high_watermark = self.high_watermark();
        let offsets = PartitionOffsets { log_start_offset: log.log_start_offset(), high_watermark, last_stable_offset: self.stable_below(high_watermark) };
        let limit = if to_log_end { log.log_end_offset() } else { offsets.high_watermark };
        let plan = log.read_plan(offset, limit, max_bytes, min_one_batch)?;
        Ok((plan, offsets))
    }

    /// A consumer's fetch plan: up to the high watermark and exactly
    /// `max_bytes` when a batch is cut (see [`Log::read_plan_filled`]).
    pub fn read_plan_for_consumer(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<(ReadPlan, PartitionOffsets), StorageError> {
        let log = self.log.lock();
        let high_watermark = self.high_watermark();
        let offsets = PartitionOffsets { log_start_offset: log.log_start_offset(), high_watermark, last_stable_offset: self.stable_below(high_watermark) };
        let plan = log.read_plan_filled(offset, offsets.high_watermark, max_bytes, min_one_batch)?;
        Ok((plan, offsets))
    }

    /// A read_committed read: batches below the last stable offset (the
    /// last one cut at `max_bytes`, as for any consumer), and the aborted
    /// transactions overlapping them (the consumer drops their records).
    pub fn read_plan_committed(&self, offset: i64, max_bytes: usize, min_one_batch: bool) -> Result<(ReadPlan, PartitionOffsets, Vec<AbortedTxn>), StorageError> {
        let log = self.log.lock();
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.stable_below(high_watermark);
        let offsets = PartitionOffsets { log_start_offset: log.log_start_offset(), high_watermark, last_stable_offset };
        let plan = log.read_plan_filled(offset, last_stable_offset, max_bytes, min_one_batch)?;
        let aborted = if plan.len > 0 { log.aborted_txns(offset, last_stable_offset) } else { Vec::new() };
        Ok((plan, offsets, aborted))
    }

    fn log_dir_hint(&self) -> String {
        format!("{}-{}", self.topic, self.index)
    }

    /// A receiver that changes whenever the log end or the high watermark moves (fetch long polling).
    pub fn watch_offsets(&self) -> watch::Receiver<LogOffsets> {
        self.offsets_watch.subscribe()
    }

    pub fn with_log<R>(&self, f: impl FnOnce(&mut Log) -> R) -> R {
        let mut log = self.log.lock();
        let r = f(&mut log);
        let end = log.log_end_offset();
        let replica = self.replica.lock();
        let hw = Self::leader_high_watermark(&replica, self.local_id, end, self.high_watermark());
        drop(replica);
        self.publish(end, hw);
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

/// Idempotent producers' sequences and open transactions from the batch
/// headers, from the active segment (or the oldest open transaction, when
/// it began earlier: see `Log::transaction_scan_start`), so a retry that
/// spans a restart or a truncation is still detected and open transactions
/// stay open. ABORT markers found on the way re-enter the transaction index
/// (a crash may have lost the active segment's entries).
fn rebuild_producer_states(log: &mut Log, topic: &str, index: i32) -> ProducerStates {
    let mut producers = ProducerStates::default();
    let mut aborted = Vec::new();
    let scan_from = log.transaction_scan_start();
    let scanned = runnel_storage::log::for_each_batch_with_control(log, scan_from, |h, control| match control {
        Some(marker) => {
            let lso = producers.first_open_offset().unwrap_or(h.base_offset);
            aborted.extend(producers.complete_txn(h, h.base_offset, marker, lso));
        }
        None => producers.record(h, h.base_offset),
    });
    if let Err(e) = scanned {
        tracing::warn!(%topic, partition = index, error = %e, "could not rebuild producer state; sequences restart and open transactions are forgotten");
        return ProducerStates::default();
    }
    for entry in aborted {
        if let Err(e) = log.add_aborted_txn(entry) {
            tracing::warn!(%topic, partition = index, error = %e, "could not rewrite a transaction index entry");
        }
    }
    producers
}

/// A transaction marker as Kafka writes it: a transactional control batch
/// holding one control record (key: version 0 + marker type; value:
/// version 0 + coordinator epoch), encoded by kafka-protocol.
fn control_batch(producer_id: i64, producer_epoch: i16, marker: ControlType, coordinator_epoch: i32, now_ms: i64) -> Result<Vec<u8>, ApiError> {
    use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
    let mut key = bytes::BytesMut::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.code().to_be_bytes());
    let mut value = bytes::BytesMut::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let record = Record {
        transactional: true,
        control: true,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id,
        producer_epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: now_ms,
        key: Some(key.freeze()),
        value: Some(value.freeze()),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, [&record], &RecordEncodeOptions { version: 2, compression: Compression::None })
        .map_err(|e| ApiError::new(ResponseError::UnknownServerError, format!("encoding a transaction marker: {e}")))?;
    Ok(buf.to_vec())
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
