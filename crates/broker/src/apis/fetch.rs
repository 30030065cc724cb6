//! Fetch (key 1): whole record batches served from the stored bytes.
//!
//! Long polling: when fewer than `min_bytes` are available the request waits
//! up to `max_wait_ms`, woken by any append to one of its partitions (a watch
//! on the high watermark), not by a sleep loop. `max_bytes` bounds the
//! response and `partition_max_bytes` each partition, except that the first
//! batch of the first non-empty partition is always returned whole so a
//! consumer can make progress (KIP-74).
//!
//! Fetch sessions (KIP-227, [`crate::fetch_session`]): from v7 a client may
//! open a session and then send only what changed; the answer then carries
//! only partitions with news. Every partition of the session is read.
//!
//! Replication: a fetch with a replica id >= 0 (v4-14 `replica_id`, v15+
//! `replica_state`) is a follower's. It reads up to the log end, not the high
//! watermark, records the follower's log end offset (its fetch offset) on
//! the leader, which may advance the high watermark or, for a follower that
//! caught up, propose its return to the ISR; and when the follower's
//! `last_fetched_epoch` (v12+) diverges from the leader's log, the answer
//! carries `diverging_epoch` and no records, so it truncates first.
//! `current_leader_epoch` (v9+) is checked for every fetcher
//! (FENCED_LEADER_EPOCH / UNKNOWN_LEADER_EPOCH, as Kafka).
//!
//! Records are not read here: each partition gets a read plan (file,
//! position, length) and a placeholder in the response, and the network
//! layer sends the planned bytes from the page cache ([`crate::frame`]).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{AbortedTransaction, EpochEndOffset, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, ProducerId, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::{ReadPlan, StorageError};
use tokio::time::Instant;
use uuid::Uuid;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::fetch_session::{
    FetchPosition, FetchSessionCache, PartitionView, SessionPartition, TopicKey, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID,
};
use crate::frame::placeholder;
use crate::partition::{FollowerFetch, Partition};
use crate::replica_manager::Topic;
use crate::Broker;

/// Kafka's read_committed isolation level.
const READ_COMMITTED: i8 = 1;

struct Target {
    partition_index: i32,
    position: FetchPosition,
    partition: Result<Arc<Partition>, ResponseError>,
    epochs: FetchEpochs,
}

/// A partition's `current_leader_epoch` and `last_fetched_epoch` in this
/// request (-1 when absent, or for partitions an incremental session carries
/// without naming them).
#[derive(Debug, Clone, Copy)]
struct FetchEpochs {
    current_leader: i32,
    last_fetched: i32,
}

const NO_EPOCHS: FetchEpochs = FetchEpochs { current_leader: -1, last_fetched: -1 };

/// Who is fetching.
#[derive(Debug, Clone, Copy)]
struct Fetcher {
    /// A broker replicating (replica id >= 0), or a consumer (-1).
    replica_id: i32,
    version: i16,
}

impl Fetcher {
    fn is_follower(&self) -> bool {
        self.replica_id >= 0
    }
}

struct TopicTarget {
    key: TopicKey,
    name: TopicName,
    id: Uuid,
    topic: Option<Arc<Topic>>,
    partitions: Vec<Target>,
}

/// A fetch response whose record placeholders stand for `regions`, in order.
pub struct FetchReply {
    pub response: FetchResponse,
    pub regions: Vec<ReadPlan>,
}

/// How this fetch relates to a fetch session (KIP-227).
enum SessionMode {
    /// Fetch v4-6, or epoch -1: a full answer, no session.
    Sessionless,
    /// Epoch 0: a full answer that opens a session.
    Open,
    /// Epoch > 0: an answer with only what changed in this session.
    Incremental(i32),
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: FetchRequest) -> Reply<FetchReply> {
    let by_id = ctx.version >= 13;
    let topic_key = |name: &TopicName, id: Uuid| if by_id { TopicKey::Id(id) } else { TopicKey::Name(name.0.to_string()) };
    let fetcher = Fetcher {
        replica_id: if ctx.version <= 14 { req.replica_id.0 } else { req.replica_state.replica_id.0 },
        version: ctx.version,
    };
    let epochs: std::collections::HashMap<SessionPartition, FetchEpochs> = req
        .topics
        .iter()
        .flat_map(|t| {
            let key = topic_key(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| {
                ((key.clone(), p.partition), FetchEpochs { current_leader: p.current_leader_epoch, last_fetched: p.last_fetched_epoch })
            })
        })
        .collect();
    let requested: Vec<(SessionPartition, FetchPosition)> = req
        .topics
        .iter()
        .flat_map(|t| {
            let key = topic_key(&t.topic, t.topic_id);
            t.partitions.iter().map(move |p| {
                let position = FetchPosition { fetch_offset: p.fetch_offset, max_bytes: p.partition_max_bytes.max(0) as usize };
                ((key.clone(), p.partition), position)
            })
        })
        .collect();

    let sessions = &broker.fetch_sessions;
    let mode = if ctx.version < 7 {
        SessionMode::Sessionless
    } else {
        match req.session_epoch {
            FINAL_EPOCH | INITIAL_EPOCH => {
                if req.session_id != INVALID_SESSION_ID {
                    sessions.remove(req.session_id);
                }
                if req.session_epoch == FINAL_EPOCH {
                    SessionMode::Sessionless
                } else {
                    SessionMode::Open
                }
            }
            epoch => SessionMode::Incremental(epoch),
        }
    };
    let partitions = match mode {
        SessionMode::Incremental(epoch) => {
            let forgotten = req
                .forgotten_topics_data
                .iter()
                .flat_map(|t| {
                    let key = topic_key(&t.topic, t.topic_id);
                    t.partitions.iter().map(move |p| (key.clone(), *p))
                })
                .collect();
            match sessions.update(req.session_id, epoch, requested, forgotten, std::time::Instant::now()) {
                Ok(all) => all,
                Err(error) => {
                    let response = FetchResponse::default().with_error_code(error.code()).with_session_id(INVALID_SESSION_ID);
                    return Reply::Now(FetchReply { response, regions: Vec::new() });
                }
            }
        }
        _ => requested,
    };
    let mode = match mode {
        SessionMode::Incremental(_) => SessionMode::Incremental(req.session_id),
        other => other,
    };
    // Kafka: a follower's fetch needs CLUSTER_ACTION, a consumer's READ on each topic.
    let authz = Authz::new(broker, ctx);
    let from_follower = fetcher.replica_id >= 0;
    let cluster_action = !from_follower || authz.cluster(operation::CLUSTER_ACTION);
    let readable = |topic: &str| cluster_action && (from_follower || authz.topic(operation::READ, topic));
    let topics = targets(broker, by_id, partitions, &epochs, &readable);
    let max_bytes = if ctx.version >= 3 { req.max_bytes.max(0) as usize } else { usize::MAX };
    // A consumer with a quota gets at most what the quota allows over its window (Kafka's getMaxValueInQuotaWindow).
    let max_bytes = match from_follower {
        true => max_bytes,
        false => {
            let image = broker.cluster.image();
            let bound = broker.quotas.max_value_in_window(crate::quota::QuotaKind::Fetch, &image.client_quotas, &ctx.principal, ctx.client_id());
            bound.map_or(max_bytes, |bound| max_bytes.min(bound))
        }
    };
    let min_bytes = req.min_bytes.max(0) as usize;
    let max_wait = Duration::from_millis(req.max_wait_ms.max(0) as u64);
    let read_committed = req.isolation_level == READ_COMMITTED;
    let broker = broker.clone();

    Reply::Later(Box::pin(async move {
        let deadline = Instant::now() + max_wait;
        let reply = loop {
            // Subscribe before reading so an append between the read and the wait is not missed.
            let mut watchers: Vec<_> = topics
                .iter()
                .flat_map(|t| t.partitions.iter())
                .filter_map(|p| p.partition.as_ref().ok().map(|p| p.watch_offsets()))
                .collect();
            for w in &mut watchers {
                w.borrow_and_update();
            }
            let (reply, bytes, has_error) = read_all(&broker, fetcher, &topics, max_bytes, read_committed, by_id);
            let done = bytes >= min_bytes
                || has_error
                || watchers.is_empty()
                || Instant::now() >= deadline;
            if done {
                break reply;
            }
            let any_append = select_all(watchers.iter_mut().map(|w| Box::pin(w.changed())));
            tokio::select! {
                _ = any_append => {}
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        finish_session(&broker.fetch_sessions, mode, &topics, reply)
    }))
}

/// Resolves the partitions to read, grouped by topic in the given order.
fn targets(
    broker: &Broker,
    by_id: bool,
    partitions: Vec<(SessionPartition, FetchPosition)>,
    epochs: &std::collections::HashMap<SessionPartition, FetchEpochs>,
    readable: &dyn Fn(&str) -> bool,
) -> Vec<TopicTarget> {
    let mut topics: Vec<TopicTarget> = Vec::new();
    for ((key, partition_index), position) in partitions {
        let target_epochs = epochs.get(&(key.clone(), partition_index)).copied().unwrap_or(NO_EPOCHS);
        if topics.last().map(|t| t.key != key).unwrap_or(true) {
            let (topic, name, id) = match &key {
                TopicKey::Id(id) => {
                    let topic = broker.replicas.topic_by_id(id);
                    let name = topic.as_ref().map(|t| t.name.to_string()).unwrap_or_default();
                    (topic, name, *id)
                }
                TopicKey::Name(name) => (broker.replicas.topic(name), name.clone(), Uuid::nil()),
            };
            topics.push(TopicTarget { key: key.clone(), name: TopicName(StrBytes::from_string(name)), id, topic, partitions: Vec::new() });
        }
        let Some(target) = topics.last_mut() else { continue };
        let missing = if by_id { ResponseError::UnknownTopicId } else { ResponseError::UnknownTopicOrPartition };
        let partition = match &target.topic {
            None if by_id => Err(missing),
            // Kafka checks a named topic before looking it up: no hint it exists.
            _ if !readable(target.name.0.as_str()) => Err(ResponseError::TopicAuthorizationFailed),
            None => Err(missing),
            Some(topic) => topic.partition(partition_index).ok_or(ResponseError::UnknownTopicOrPartition),
        };
        target.partitions.push(Target { partition_index, position, partition, epochs: target_epochs });
    }
    topics
}

/// Sets the answer's session id and, for an incremental fetch, keeps only
/// the partitions the client must hear about.
fn finish_session(sessions: &FetchSessionCache, mode: SessionMode, topics: &[TopicTarget], mut reply: FetchReply) -> FetchReply {
    let views = || -> Vec<(SessionPartition, FetchPosition, PartitionView)> {
        topics
            .iter()
            .zip(&reply.response.responses)
            .flat_map(|(topic, response)| {
                topic.partitions.iter().zip(&response.partitions).map(|(target, data)| {
                    let view = PartitionView {
                        error_code: data.error_code,
                        high_watermark: data.high_watermark,
                        last_stable_offset: data.last_stable_offset,
                        log_start_offset: data.log_start_offset,
                        has_records: data.records.as_ref().is_some_and(|r| !r.is_empty()),
                    };
                    ((topic.key.clone(), target.partition_index), target.position, view)
                })
            })
            .collect()
    };
    match mode {
        SessionMode::Sessionless => reply.response.session_id = INVALID_SESSION_ID,
        SessionMode::Open => {
            let id = sessions.create(views(), std::time::Instant::now());
            reply.response.session_id = id;
        }
        SessionMode::Incremental(session_id) => {
            let views: Vec<_> = views().into_iter().map(|(key, _, view)| (key, view)).collect();
            let Some(selected) = sessions.select(session_id, &views) else {
                // Evicted while this fetch waited: the client starts a new session.
                let response = FetchResponse::default()
                    .with_error_code(ResponseError::FetchSessionIdNotFound.code())
                    .with_session_id(INVALID_SESSION_ID);
                return FetchReply { response, regions: Vec::new() };
            };
            // Partitions left out carry no records, so the regions (one per
            // partition with records, in order) still line up.
            let mut selected = selected.into_iter();
            for topic in &mut reply.response.responses {
                topic.partitions.retain(|_| selected.next().unwrap_or(false));
            }
            reply.response.responses.retain(|t| !t.partitions.is_empty());
            reply.response.session_id = session_id;
        }
    }
    reply
}

/// Plans a read of every partition once. Returns the reply, the record bytes
/// in it, and whether any partition carried an error (which ends a long poll).
/// Fetch v13+ names topics by id only (`by_id`), older versions by name only.
fn read_all(
    broker: &Arc<Broker>,
    fetcher: Fetcher,
    topics: &[TopicTarget],
    max_bytes: usize,
    read_committed: bool,
    by_id: bool,
) -> (FetchReply, usize, bool) {
    let mut regions = Vec::new();
    let mut remaining = max_bytes;
    let mut total = 0usize;
    let mut has_error = false;
    let mut responses = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for target in &topic.partitions {
            let data = PartitionData::default()
                .with_partition_index(target.partition_index)
                .with_preferred_read_replica(BrokerId(-1))
                .with_aborted_transactions(if read_committed { Some(Vec::new()) } else { None });
            let partition = match &target.partition {
                Ok(p) => p,
                Err(code) => {
                    has_error = true;
                    // Kafka answers a partition it cannot look up with an empty
                    // (not null) aborted-transactions list.
                    partitions.push(
                        data.with_error_code(code.code())
                            .with_aborted_transactions(Some(Vec::new()))
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Bytes::new())),
                    );
                    continue;
                }
            };
            let fenced = |code: ResponseError| {
                data.clone()
                    .with_error_code(code.code())
                    .with_high_watermark(-1)
                    .with_last_stable_offset(-1)
                    .with_log_start_offset(-1)
                    .with_records(Some(Bytes::new()))
            };
            if fetcher.is_follower() {
                let checked = partition.follower_fetch(
                    fetcher.replica_id,
                    target.epochs.current_leader,
                    target.position.fetch_offset,
                    target.epochs.last_fetched,
                    crate::now_ms(),
                );
                match checked {
                    Err(ResponseError::OffsetOutOfRange) => {
                        // Kafka's follower asks the leader's log start and end with ListOffsets
                        // next; Runnel's reads them from this answer (only replicas get them).
                        has_error = true;
                        let offsets = partition.offsets();
                        partitions.push(
                            fenced(ResponseError::OffsetOutOfRange)
                                .with_high_watermark(offsets.high_watermark)
                                .with_log_start_offset(offsets.log_start_offset),
                        );
                        continue;
                    }
                    Err(code) => {
                        has_error = true;
                        partitions.push(fenced(code));
                        continue;
                    }
                    Ok((FollowerFetch::Diverging { epoch, end_offset }, _)) => {
                        // An answer of its own: the long poll ends with it.
                        has_error = true;
                        let offsets = partition.offsets();
                        partitions.push(
                            data.with_high_watermark(offsets.high_watermark)
                                .with_last_stable_offset(offsets.last_stable_offset)
                                .with_log_start_offset(offsets.log_start_offset)
                                .with_diverging_epoch(EpochEndOffset::default().with_epoch(epoch).with_end_offset(end_offset))
                                .with_records(Some(Bytes::new())),
                        );
                        continue;
                    }
                    Ok((FollowerFetch::Read, isr_change)) => {
                        if let Some(change) = isr_change {
                            broker.replicas.propose_isr_change(partition.clone(), change);
                        }
                    }
                }
            } else {
                let refused = partition.check_current_leader_epoch(target.epochs.current_leader).err().or_else(|| {
                    // Consumers may read from a follower from v11 (KIP-392), as in Kafka.
                    (fetcher.version < 11 && !partition.is_leader()).then_some(ResponseError::NotLeaderOrFollower)
                });
                if let Some(code) = refused {
                    has_error = true;
                    partitions.push(fenced(code));
                    continue;
                }
            }
            let limit = target.position.max_bytes.min(remaining);
            let min_one_batch = total == 0;
            // Followers append what they receive: whole batches only.
            let planned = if fetcher.is_follower() {
                partition.read_plan_to(target.position.fetch_offset, limit, min_one_batch, true).map(|(plan, offsets)| (plan, offsets, Vec::new()))
            } else if read_committed {
                partition.read_plan_committed(target.position.fetch_offset, limit, min_one_batch)
            } else {
                partition.read_plan_for_consumer(target.position.fetch_offset, limit, min_one_batch).map(|(plan, offsets)| (plan, offsets, Vec::new()))
            };
            match planned.and_then(|(plan, offsets, aborted)| {
                let records = match placeholder(plan.len) {
                    Some(placeholder) if plan.file.is_some() => {
                        regions.push(plan);
                        placeholder
                    }
                    // Nothing to send, or one batch too large to splice: read it.
                    _ => partition.read_planned(&plan)?,
                };
                Ok((records, offsets, aborted))
            }) {
                Ok((records, offsets, aborted)) => {
                    total += records.len();
                    remaining = remaining.saturating_sub(records.len());
                    let data = if aborted.is_empty() {
                        data
                    } else {
                        data.with_aborted_transactions(Some(
                            aborted
                                .iter()
                                .map(|a| AbortedTransaction::default().with_producer_id(ProducerId(a.producer_id)).with_first_offset(a.first_offset))
                                .collect(),
                        ))
                    };
                    partitions.push(
                        data.with_high_watermark(offsets.high_watermark)
                            .with_last_stable_offset(offsets.last_stable_offset)
                            .with_log_start_offset(offsets.log_start_offset)
                            .with_records(Some(records)),
                    );
                }
                Err(e) => {
                    has_error = true;
                    let code = match &e {
                        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
                        other => {
                            tracing::error!(topic = %topic.name.0, partition = target.partition_index, error = %other, "fetch read failed");
                            ResponseError::KafkaStorageError
                        }
                    };
                    // Like Kafka, a failed read reports no offsets (-1): a
                    // consumer out of range resets through ListOffsets.
                    partitions.push(
                        data.with_error_code(code.code())
                            .with_high_watermark(-1)
                            .with_last_stable_offset(-1)
                            .with_log_start_offset(-1)
                            .with_records(Some(Bytes::new())),
                    );
                }
            }
        }
        let response = FetchableTopicResponse::default().with_partitions(partitions);
        responses.push(if by_id { response.with_topic_id(topic.id) } else { response.with_topic(topic.name.clone()) });
    }
    (FetchReply { response: FetchResponse::default().with_responses(responses), regions }, total, has_error)
}
