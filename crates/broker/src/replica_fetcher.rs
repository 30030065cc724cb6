//! Replica fetchers (Kafka's `ReplicaFetcherThread`): for every leader this
//! broker follows partitions of, one task that fetches those partitions from
//! it with Fetch v12 (replica id = this broker, `last_fetched_epoch`), appends
//! what comes back with the leader's offsets and epochs, truncates a tail
//! that diverged when the leader answers `diverging_epoch`, and takes the
//! leader's high watermark. Errors back off and retry; the task ends when
//! this broker follows nothing of that leader any more (it became leader, or
//! the topic was deleted).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::error::ApiError;
use crate::inter_broker::{call_on, Failure};
use crate::security::connector::BrokerConnection;
use crate::partition::{Partition, Role};
use crate::replica_manager::ReplicaManager;

const FETCH_VERSION: i16 = 12;
const MAX_WAIT_MS: i32 = 500;
const PARTITION_MAX_BYTES: i32 = 1 << 20;
const RESPONSE_MAX_BYTES: i32 = 10 << 20;
/// Kafka's `replica.fetch.backoff.ms` default.
const BACKOFF: Duration = Duration::from_millis(1000);
const MIN_BACKOFF: Duration = Duration::from_millis(50);
/// No answer within this long: the connection is dropped and made again.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a lasting TLS or login failure is warned about again.
const WARN_EVERY: Duration = Duration::from_secs(30);
/// A connection whose SASL session ends within this is replaced first.
const SESSION_MARGIN: Duration = Duration::from_secs(5);

/// Makes sure a fetcher task runs for `leader_id`.
pub fn ensure_fetcher(manager: &Arc<ReplicaManager>, leader_id: i32) {
    let mut running = manager.fetchers().lock();
    if running.contains(&leader_id) {
        return;
    }
    running.insert(leader_id);
    let manager = Arc::downgrade(manager);
    tokio::spawn(async move {
        let mut fetcher = Fetcher { leader_id, connection: None, correlation_id: 0, last_warning: None };
        fetcher.run(manager).await;
    });
}

struct Fetcher {
    leader_id: i32,
    connection: Option<BrokerConnection>,
    /// The last connection failure warned about, and when.
    last_warning: Option<(String, std::time::Instant)>,
    correlation_id: i32,
}

impl Fetcher {
    async fn run(&mut self, manager: std::sync::Weak<ReplicaManager>) {
        let mut backoff = MIN_BACKOFF;
        loop {
            let Some(manager) = manager.upgrade() else { return };
            let partitions = {
                // Under the registry lock, so a become_follower racing with this exit starts a new task.
                let mut running = manager.fetchers().lock();
                let followed = followed_partitions(&manager, self.leader_id);
                if followed.is_empty() || manager.is_shut_down() {
                    running.remove(&self.leader_id);
                    tracing::debug!(leader = self.leader_id, "replica fetcher stops: nothing left to follow");
                    return;
                }
                followed
            };
            match self.fetch_once(&manager, &partitions).await {
                Ok(()) => backoff = MIN_BACKOFF,
                Err(error) => {
                    // A refused TLS handshake or login does not heal by itself: it is
                    // reported (again every half minute while it lasts); the rest
                    // (a leader restarting, moving) is routine.
                    let refused = error.contains(crate::security::connector::LOGIN_FAILED) || error.contains(crate::security::connector::TLS_FAILED);
                    let repeat = self.last_warning.as_ref().is_some_and(|(last, at)| *last == error && at.elapsed() < WARN_EVERY);
                    if refused && !repeat {
                        tracing::warn!(leader = self.leader_id, %error, "replica fetcher cannot connect to the leader; retrying");
                        self.last_warning = Some((error.clone(), std::time::Instant::now()));
                    } else {
                        tracing::debug!(leader = self.leader_id, %error, ?backoff, "replica fetch failed; backing off");
                    }
                    self.connection = None;
                    drop(manager);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF);
                }
            }
        }
    }

    async fn fetch_once(&mut self, manager: &Arc<ReplicaManager>, partitions: &[Arc<Partition>]) -> Result<(), String> {
        let mut by_topic: Vec<(Arc<str>, Vec<FetchPartition>)> = Vec::new();
        let mut index: HashMap<(Arc<str>, i32), (Arc<Partition>, FetchedAt)> = HashMap::new();
        for partition in partitions {
            let fetch_offset = partition.log_end_offset();
            let leader_epoch = partition.leader_epoch();
            let request = FetchPartition::default()
                .with_partition(partition.index)
                .with_current_leader_epoch(leader_epoch)
                .with_fetch_offset(fetch_offset)
                .with_last_fetched_epoch(partition.latest_log_epoch())
                .with_log_start_offset(-1)
                .with_partition_max_bytes(PARTITION_MAX_BYTES);
            match by_topic.iter_mut().find(|(t, _)| *t == partition.topic) {
                Some((_, list)) => list.push(request),
                None => by_topic.push((partition.topic.clone(), vec![request])),
            }
            index.insert((partition.topic.clone(), partition.index), (partition.clone(), FetchedAt { fetch_offset, leader_epoch }));
        }
        let topics = by_topic
            .into_iter()
            .map(|(topic, parts)| FetchTopic::default().with_topic(TopicName(StrBytes::from_string(topic.to_string()))).with_partitions(parts))
            .collect();
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(manager.config().node_id))
            .with_max_wait_ms(MAX_WAIT_MS)
            .with_min_bytes(1)
            .with_max_bytes(RESPONSE_MAX_BYTES)
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics);
        let response = self.send(manager, &request).await?;
        if response.error_code != 0 {
            return Err(format!("the leader answered error {:?}", ResponseError::try_from_code(response.error_code)));
        }
        let mut failed = None;
        for topic in response.responses {
            let name: Arc<str> = Arc::from(topic.topic.0.as_str());
            for data in topic.partitions {
                let Some((partition, fetched_at)) = index.get(&(name.clone(), data.partition_index)) else { continue };
                if let Err(e) = apply(partition, *fetched_at, &data) {
                    tracing::warn!(topic = %name, partition = data.partition_index, leader = self.leader_id, error = %e, "replica fetch of a partition failed");
                    failed = Some(e);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }

    async fn send(&mut self, manager: &ReplicaManager, request: &FetchRequest) -> Result<FetchResponse, String> {
        let client_id = format!("runnel-replica-fetcher-{}", manager.config().node_id);
        // A SASL session about to end is replaced before it is: the leader would close it.
        if self.connection.as_ref().is_some_and(|c| !c.usable_for(REQUEST_TIMEOUT.min(SESSION_MARGIN))) {
            self.connection = None;
        }
        if self.connection.is_none() {
            let (address, host) = manager.broker_endpoint(self.leader_id).ok_or_else(|| format!("no address known for broker {}", self.leader_id))?;
            let connector = manager.broker_connector();
            let connection = connector
                .connect(address, &host, &client_id, REQUEST_TIMEOUT)
                .await
                .map_err(|e| format!("broker {}: {e}", self.leader_id))?;
            self.connection = Some(connection);
        }
        let Some(connection) = self.connection.as_mut() else { return Err("no connection".into()) };
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let exchange = call_on(&mut connection.stream, &client_id, self.correlation_id, FETCH_VERSION, request, RESPONSE_MAX_BYTES + (1 << 20));
        tokio::time::timeout(REQUEST_TIMEOUT, exchange).await.map_err(|_| "no answer in time".to_string())?.map_err(Failure::into_message)
    }
}

/// The partitions this broker follows with `leader_id` as leader.
fn followed_partitions(manager: &ReplicaManager, leader_id: i32) -> Vec<Arc<Partition>> {
    manager
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .filter(|p| p.replica_state().role == Role::Follower { leader_id })
        .collect()
}

/// Where and in which leader epoch a partition's fetch was sent.
#[derive(Debug, Clone, Copy)]
struct FetchedAt {
    fetch_offset: i64,
    leader_epoch: i32,
}

/// Applies one partition's answer: truncation on a diverging epoch,
/// otherwise the records (whole batches) and the leader's high watermark.
/// An answer that became stale while it was out (this replica became leader
/// or follows a newer epoch) changes nothing: every change to the log checks
/// the epoch under the log lock, and such a refusal is not a failure.
fn apply(partition: &Partition, fetched_at: FetchedAt, data: &kafka_protocol::messages::fetch_response::PartitionData) -> Result<(), String> {
    match apply_unless_stale(partition, fetched_at, data) {
        Err(e) if e.code() == ResponseError::FencedLeaderEpoch.code() => {
            tracing::debug!(topic = %partition.topic, partition = partition.index, error = %e, "stale fetch answer dropped");
            Ok(())
        }
        other => other.map_err(|e| e.to_string()),
    }
}

fn apply_unless_stale(partition: &Partition, fetched_at: FetchedAt, data: &kafka_protocol::messages::fetch_response::PartitionData) -> Result<(), ApiError> {
    let FetchedAt { fetch_offset, leader_epoch } = fetched_at;
    if partition.leader_epoch() != leader_epoch || partition.replica_state().role == Role::Leader {
        return Ok(()); // became leader, or took a newer epoch, while the fetch was out
    }
    if partition.log_end_offset() != fetch_offset {
        return Ok(()); // the log moved meanwhile (a truncation); the next fetch starts from its end
    }
    if data.error_code == ResponseError::OffsetOutOfRange.code() {
        return out_of_range(partition, fetched_at, data.log_start_offset, data.high_watermark);
    }
    if data.error_code != 0 {
        let code = ResponseError::try_from_code(data.error_code).unwrap_or(ResponseError::UnknownServerError);
        // The leader's code is reported, not acted on: a fenced epoch there is not a stale answer here.
        return Err(ApiError::new(ResponseError::UnknownServerError, format!("leader answered {code:?}")));
    }
    let diverging = &data.diverging_epoch;
    if diverging.epoch != -1 || diverging.end_offset != -1 {
        let target = truncation_offset(partition, diverging.epoch, diverging.end_offset);
        let end = partition.truncate_to(target, leader_epoch)?;
        tracing::info!(
            topic = %partition.topic, partition = partition.index, fetch_offset, leader_epoch = diverging.epoch,
            leader_end_offset = diverging.end_offset, target, truncated_to = end, "truncated a log tail that diverged from the leader"
        );
        return Ok(());
    }
    if let Some(records) = &data.records {
        let whole = whole_batches_len(records);
        if whole > 0 {
            restart_at_a_straddling_first_batch(partition, fetched_at, &records[..whole])?;
            partition.append_as_follower(&records[..whole], leader_epoch)?;
        }
    }
    partition.update_follower_high_watermark(data.high_watermark, leader_epoch)?;
    if data.log_start_offset > 0 {
        // The leader's DeleteRecords and retention reach the followers this way (Kafka's
        // maybeIncrementLogStartOffset with the leader's log start).
        partition.follow_leader_log_start(data.log_start_offset, leader_epoch)?;
    }
    Ok(())
}

/// The leader no longer holds this follower's fetch position (Kafka's
/// `handleOutOfRangeError`): behind the leader's log start (retention or
/// DeleteRecords removed it, or this replica was just added), the log is
/// emptied and restarts at the leader's log start; past the leader's high
/// watermark with no diverging epoch to go by, the tail above it goes (what
/// is below the high watermark is on every in-sync replica).
fn out_of_range(
    partition: &Partition,
    FetchedAt { fetch_offset, leader_epoch }: FetchedAt,
    leader_log_start: i64,
    leader_high_watermark: i64,
) -> Result<(), ApiError> {
    if leader_log_start > fetch_offset {
        partition.truncate_fully_and_start_at(leader_log_start, Some(leader_epoch))?;
        tracing::info!(
            topic = %partition.topic, partition = partition.index, fetch_offset, leader_log_start,
            "the leader's log starts past this replica's end: emptied the log and restarted it at the leader's log start"
        );
        return Ok(());
    }
    if leader_high_watermark >= 0 && fetch_offset > leader_high_watermark {
        let end = partition.truncate_to(leader_high_watermark, leader_epoch)?;
        tracing::info!(topic = %partition.topic, partition = partition.index, fetch_offset, truncated_to = end, "this replica's log ran past the leader's: truncated to the leader's high watermark");
        return Ok(());
    }
    Err(ApiError::new(
        ResponseError::OffsetOutOfRange,
        format!("leader answered OFFSET_OUT_OF_RANGE at {fetch_offset} (its log start {leader_log_start}, high watermark {leader_high_watermark})"),
    ))
}

/// An empty log restarted at the leader's log start may get a first batch
/// that begins below it (DeleteRecords cut inside that batch): the log
/// restarts at the batch's base offset so the batch fits, and the log start
/// comes back up from the leader's answer (Kafka handles its
/// `UnexpectedAppendOffsetException` the same way).
fn restart_at_a_straddling_first_batch(partition: &Partition, FetchedAt { fetch_offset, leader_epoch }: FetchedAt, records: &[u8]) -> Result<(), ApiError> {
    let Ok(first) = runnel_storage::BatchHeader::parse(records) else { return Ok(()) };
    // Every other fetch answer starts at the fetch offset: no lock taken for them.
    if first.base_offset >= fetch_offset || first.last_offset() < fetch_offset {
        return Ok(());
    }
    let empty = partition.offsets().log_start_offset == fetch_offset && partition.log_end_offset() == fetch_offset;
    if empty {
        partition.truncate_fully_and_start_at(first.base_offset, Some(leader_epoch))?;
    }
    Ok(())
}

/// Where to cut after the leader said its log holds `leader_epoch` up to
/// `leader_end_offset` (Kafka's `getOffsetTruncationState`): if this log
/// knows that epoch, to the smaller of both ends; if not, to the end of the
/// largest epoch below it here (the next fetch refines it).
fn truncation_offset(partition: &Partition, leader_epoch: i32, leader_end_offset: i64) -> i64 {
    let log_end = partition.log_end_offset();
    if leader_epoch < 0 || leader_end_offset < 0 {
        return leader_end_offset.clamp(0, log_end);
    }
    let (local_epoch, local_end) = partition.end_offset_for_epoch(leader_epoch);
    if local_end < 0 {
        leader_end_offset.min(log_end)
    } else if local_epoch == leader_epoch {
        leader_end_offset.min(local_end)
    } else {
        local_end.min(log_end)
    }
}

/// Bytes of the whole batches at the start of `records` (a leader may cut
/// the last batch short at `max_bytes`; the rest comes with the next fetch).
fn whole_batches_len(records: &[u8]) -> usize {
    let mut pos = 0usize;
    while pos + runnel_storage::batch::BATCH_HEADER_LEN <= records.len() {
        let Ok(header) = runnel_storage::BatchHeader::parse(&records[pos..]) else { break };
        let size = header.total_size();
        if size < runnel_storage::batch::BATCH_HEADER_LEN || pos + size > records.len() {
            break;
        }
        pos += size;
    }
    pos
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_torn_last_batch_is_left_for_the_next_fetch() {
        let mut batch = vec![0u8; 70];
        batch[8..12].copy_from_slice(&58i32.to_be_bytes()); // 12 + 58 = 70 bytes
        let mut two = batch.clone();
        two.extend_from_slice(&batch[..40]);
        assert_eq!(super::whole_batches_len(&two), 70);
        assert_eq!(super::whole_batches_len(&batch[..60]), 0);
        assert_eq!(super::whole_batches_len(&[]), 0);
    }
}
