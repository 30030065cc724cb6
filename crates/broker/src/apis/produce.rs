//! Produce (key 0): validate each partition's record batches (framing, CRC,
//! size, codec, counts), append them as received with offsets assigned in
//! place, and answer according to `acks`:
//! - `acks=0`: no response at all;
//! - `acks=1`: after the write to the log (page cache);
//! - `acks=all`: after the data is fsynced on the leader (group commit, see
//!   [`crate::partition`]) and every ISR member has it (the high watermark
//!   passed it); refused up front with NOT_ENOUGH_REPLICAS when the ISR is
//!   smaller than `min.insync.replicas`, and answered
//!   NOT_ENOUGH_REPLICAS_AFTER_APPEND when it shrank below it meanwhile.
//!   A single node's ISR is itself, so this is the fsync alone.
//!
//! A transactional producer's first batch on a partition is checked with
//! the transaction coordinator first (KIP-890): from v12 (transactions v2)
//! the partition joins the transaction then and there; before v12 it must
//! have been added already (`transaction.partition.verification.enable`),
//! else INVALID_TXN_STATE (TRANSACTION_ABORTABLE from v11). A coordinator on
//! this broker is asked in-process, one on another broker by AddPartitionsToTxn
//! v5 (add) or v4 (verify only) through [`crate::add_partitions_to_txn_manager`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::RecordBatchDecoder;
use runnel_storage::batch::{validate_batches, BatchHeader};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::add_partitions_to_txn_manager::TxnCheck;
use crate::error::ApiError;
use crate::partition::{DurabilityError, Partition};
use crate::replica_manager::Topic;
use crate::Broker;


struct PendingAck {
    topic_index: usize,
    partition_index: usize,
    partition: Arc<Partition>,
    last_offset: i64,
}

/// Whether a transactional produce at `version` adds its partitions to the
/// transaction: a transactions v2 client's (v12+), when the broker has v2.
fn adds_partitions(broker: &Broker, version: i16) -> bool {
    version >= 12 && broker.config.transaction_version >= 2
}

/// A partition of the request, by its position: (topic index, partition index).
type Slot = (usize, usize);

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: ProduceRequest) -> Reply<ProduceResponse> {
    let denied = authorization_refusals(broker, ctx, &req);
    let adds = adds_partitions(broker, ctx.version);
    let verify = adds || broker.config.transaction_partition_verification_enable;
    // acks=0 has no answer to carry a refusal (and transactional producers use acks=all).
    if req.acks == 0 || req.transactional_id.is_none() || !verify {
        return handle_checked(broker, ctx, req, denied);
    }
    let starts: Vec<TransactionStart> = transaction_starts(broker, ctx.version, &req).into_iter().filter(|s| !denied.contains_key(&s.slot)).collect();
    if starts.is_empty() {
        return handle_checked(broker, ctx, req, denied);
    }
    let broker = broker.clone();
    let ctx = ctx.clone();
    Reply::Later(Box::pin(async move {
        let transactional_id = req.transactional_id.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
        let mut refusals = check_transaction_starts(&broker, ctx.version, &transactional_id, starts).await;
        refusals.extend(denied);
        match handle_checked(&broker, &ctx, req, refusals) {
            Reply::Now(response) => response,
            Reply::Later(response) => response.await,
            Reply::Nothing => ProduceResponse::default(),
        }
    }))
}

/// Kafka's produce authorization: WRITE on the transactional id (every
/// partition refused without it), then WRITE on each topic.
fn authorization_refusals(broker: &Broker, ctx: &RequestContext, req: &ProduceRequest) -> HashMap<Slot, ApiError> {
    let authz = Authz::new(broker, ctx);
    let mut refusals = HashMap::new();
    if !authz.enabled() {
        return refusals;
    }
    let transactional_id_denied = req.transactional_id.as_ref().is_some_and(|id| !authz.transactional_id(operation::WRITE, id));
    for (topic_index, topic_data) in req.topic_data.iter().enumerate() {
        let refusal = if transactional_id_denied {
            ApiError::bare(ResponseError::TransactionalIdAuthorizationFailed)
        } else {
            let name = if ctx.version >= 13 {
                // An unknown id is answered UNKNOWN_TOPIC_ID by the append.
                match broker.replicas.topic_by_id(&topic_data.topic_id) {
                    Some(topic) => topic.name.to_string(),
                    None => continue,
                }
            } else {
                topic_data.name.0.to_string()
            };
            if authz.topic(operation::WRITE, &name) {
                continue;
            }
            ApiError::bare(ResponseError::TopicAuthorizationFailed)
        };
        for partition_index in 0..topic_data.partition_data.len() {
            refusals.insert((topic_index, partition_index), refusal.clone());
        }
    }
    refusals
}

/// A transactional batch on a partition where its producer has no open
/// transaction yet: the partition must be in (v12+: join) the transaction.
struct TransactionStart {
    slot: Slot,
    topic: String,
    partition: i32,
    producer_id: i64,
    producer_epoch: i16,
}

fn transaction_starts(broker: &Broker, version: i16, req: &ProduceRequest) -> Vec<TransactionStart> {
    let mut starts = Vec::new();
    for (topic_index, topic_data) in req.topic_data.iter().enumerate() {
        let topic = if version >= 13 { broker.replicas.topic_by_id(&topic_data.topic_id) } else { broker.replicas.topic(&topic_data.name.0) };
        // An unknown topic or partition is refused by the append itself.
        let Some(topic) = topic else { continue };
        for (partition_index, data) in topic_data.partition_data.iter().enumerate() {
            let Some(records) = data.records.as_ref() else { continue };
            let Ok(header) = BatchHeader::parse(records) else { continue };
            if !(header.has_producer_id() && header.is_transactional() && !header.is_control()) {
                continue;
            }
            let Some(partition) = topic.partition(data.index) else { continue };
            if partition.has_open_txn(header.producer_id) {
                continue;
            }
            starts.push(TransactionStart {
                slot: (topic_index, partition_index),
                topic: topic.name.to_string(),
                partition: data.index,
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
            });
        }
    }
    starts
}

/// Asks the transaction coordinator about each transaction start: the
/// refused ones with the error Kafka's produce path answers (Kafka's
/// `AddPartitionsToTxnManager` and `ReplicaManager` mappings).
async fn check_transaction_starts(broker: &Broker, version: i16, transactional_id: &str, starts: Vec<TransactionStart>) -> HashMap<Slot, ApiError> {
    let mut refusals = HashMap::new();
    // One producer per request, as Kafka requires (InvalidPidMapping otherwise).
    let (producer_id, producer_epoch) = (starts[0].producer_id, starts[0].producer_epoch);
    if starts.iter().any(|s| (s.producer_id, s.producer_epoch) != (producer_id, producer_epoch)) {
        for start in &starts {
            refusals.insert(start.slot, ApiError::new(ResponseError::InvalidProducerIdMapping, "Transactional records contained more than one producer ID"));
        }
        return refusals;
    }
    let partitions: Vec<(String, i32)> = starts.iter().map(|s| (s.topic.clone(), s.partition)).collect();
    let check = TxnCheck { transactional_id: transactional_id.to_string(), producer_id, producer_epoch, partitions };
    let errors = crate::add_partitions_to_txn_manager::add_or_verify(broker, adds_partitions(broker, version), check).await;
    for (start, error) in starts.iter().zip(errors) {
        let Some(error) = error else { continue };
        let refusal = match error {
            ResponseError::ProducerFenced => ApiError::bare(ResponseError::InvalidProducerEpoch),
            // Clients before v11 do not know TRANSACTION_ABORTABLE.
            ResponseError::TransactionAbortable if version <= 10 => {
                ApiError::new(ResponseError::InvalidTxnState, "Partition was not added to the transaction")
            }
            ResponseError::TransactionAbortable => ApiError::new(ResponseError::TransactionAbortable, "Partition was not added to the transaction"),
            // Retriable for the coordinator, but not every client retries these on a
            // produce: NOT_ENOUGH_REPLICAS makes them retry without a metadata refresh.
            // NETWORK_EXCEPTION: the coordinator on another broker could not be reached in time.
            ResponseError::ConcurrentTransactions
            | ResponseError::CoordinatorLoadInProgress
            | ResponseError::CoordinatorNotAvailable
            | ResponseError::NotCoordinator
            | ResponseError::NetworkException => ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!("Unable to verify the partition has been added to the transaction. Underlying error: {error:?}"),
            ),
            other => ApiError::bare(other),
        };
        tracing::debug!(transactional_id, topic = %start.topic, partition = start.partition, error = ?refusal.code(), "transactional produce refused by the coordinator");
        refusals.insert(start.slot, refusal);
    }
    refusals
}

fn handle_checked(broker: &Arc<Broker>, ctx: &RequestContext, req: ProduceRequest, mut refusals: HashMap<Slot, ApiError>) -> Reply<ProduceResponse> {
    let acks = req.acks;
    let timeout = Duration::from_millis(req.timeout_ms.max(0) as u64);
    let now = crate::now_ms();
    // Cut off from the controller, this broker may have lost its leaderships
    // already: what it appended now would be truncated when it rejoins.
    let in_session = broker.cluster.in_session();
    let mut responses = Vec::with_capacity(req.topic_data.len());
    let mut pending = Vec::new();
    for (topic_index, topic_data) in req.topic_data.into_iter().enumerate() {
        // v13 names topics by id (KIP-516); earlier versions by name.
        let topic = if ctx.version >= 13 {
            broker.replicas.topic_by_id(&topic_data.topic_id)
        } else {
            broker.replicas.topic(&topic_data.name.0)
        };
        let mut partition_responses = Vec::with_capacity(topic_data.partition_data.len());
        for (partition_index, data) in topic_data.partition_data.into_iter().enumerate() {
            let response = PartitionProduceResponse::default().with_index(data.index);
            let outcome = if !matches!(acks, 0 | 1 | -1) {
                Err(ApiError::new(ResponseError::InvalidRequiredAcks, format!("acks={acks} is not 0, 1 or -1")).into())
            } else if let Some(refusal) = refusals.remove(&(topic_index, partition_index)) {
                Err(refusal.into())
            } else {
                append_partition(topic.as_deref(), ctx.version, data.index, data.records, acks, now, in_session)
            };
            match outcome {
                Ok((partition, info)) => {
                    if acks == -1 {
                        pending.push(PendingAck {
                            topic_index,
                            partition_index,
                            partition,
                            last_offset: info.last_offset,
                        });
                    }
                    partition_responses.push(
                        response
                            .with_base_offset(info.first_offset)
                            .with_log_append_time_ms(info.log_append_time)
                            .with_log_start_offset(info.log_start_offset),
                    );
                }
                Err(refusal) => {
                    let e = &refusal.error;
                    tracing::debug!(topic = %topic_data.name.0, partition = data.index, error = %e, "produce refused");
                    // Per-record errors exist from v8 (KIP-467).
                    let record_errors = if ctx.version >= 8 { refusal.record_errors } else { Vec::new() };
                    partition_responses
                        .push(error_response(response, e).with_record_errors(record_errors).with_log_start_offset(refusal.log_start_offset));
                }
            }
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic_data.name)
                .with_topic_id(topic_data.topic_id)
                .with_partition_responses(partition_responses),
        );
    }
    if acks == 0 {
        // An acks=0 produce has no answer to carry a refusal: the answer is
        // kept for `apis::handle_request`, which closes the connection instead,
        // as Kafka does (the client learns of it and refreshes its metadata).
        let refused = responses.iter().any(|t| t.partition_responses.iter().any(|p| p.error_code != 0));
        return if refused { Reply::Now(ProduceResponse::default().with_responses(responses)) } else { Reply::Nothing };
    }
    let response = ProduceResponse::default().with_responses(responses);
    if pending.is_empty() {
        return Reply::Now(response);
    }
    let deadline = tokio::time::Instant::now() + timeout;
    Reply::Later(Box::pin(async move {
        let mut response = response;
        for ack in pending {
            let result = match ack.partition.wait_durable(ack.last_offset, timeout).await {
                Err(DurabilityError::TimedOut) => Err(ApiError::new(ResponseError::RequestTimedOut, "timed out waiting for fsync")),
                Err(DurabilityError::StorageFailed) => Err(ApiError::new(ResponseError::KafkaStorageError, "fsync failed")),
                Ok(()) => ack.partition.wait_replicated(ack.last_offset, deadline).await,
            };
            if let Err(error) = result {
                let slot = &mut response.responses[ack.topic_index].partition_responses[ack.partition_index];
                *slot = error_response(PartitionProduceResponse::default().with_index(slot.index), &error);
            }
        }
        response
    }))
}

fn error_response(response: PartitionProduceResponse, e: &ApiError) -> PartitionProduceResponse {
    response
        .with_error_code(e.code())
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
        .with_error_message(e.message.clone().map(StrBytes::from_string))
}

/// Why a partition's records were refused: the error, and for errors about
/// single records (timestamps) which records, as Kafka reports them.
struct Refusal {
    error: ApiError,
    record_errors: Vec<BatchIndexAndErrorMessage>,
    /// Kafka reports the partition's log start offset with record errors.
    log_start_offset: i64,
}

impl From<ApiError> for Refusal {
    fn from(error: ApiError) -> Self {
        Refusal { error, record_errors: Vec::new(), log_start_offset: -1 }
    }
}

/// Kafka's check of CreateTime timestamps (KIP-937): every record must lie in
/// `[lower, upper]` (`now - message.timestamp.before.max.ms`, `now +
/// message.timestamp.after.max.ms`); records without a timestamp (-1) pass.
/// Records are decoded only when a batch's header cannot vouch for them.
fn check_timestamps(records: &Bytes, headers: &[BatchHeader], (lower, upper): (i64, i64)) -> Result<(), Refusal> {
    let mut record_errors = Vec::new();
    let mut position = 0usize;
    for header in headers {
        let size = header.total_size();
        let batch = records.slice(position..(position + size).min(records.len()));
        position += size;
        // The header's max timestamp bounds the records from above; with no
        // lower bound in sight (the default is unlimited) they need no decoding.
        if header.max_timestamp <= upper && lower < 0 {
            continue;
        }
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| RecordBatchDecoder::decode(&mut batch.clone())));
        let Ok(Ok(set)) = decoded else {
            return Err(ApiError::new(ResponseError::CorruptMessage, "a record batch could not be decoded to check its timestamps").into());
        };
        for (index, record) in set.records.iter().enumerate() {
            if record.timestamp != -1 && (record.timestamp < lower || record.timestamp > upper) {
                record_errors.push(
                    BatchIndexAndErrorMessage::default().with_batch_index(index as i32).with_batch_index_error_message(Some(StrBytes::from_string(
                        format!(
                            "Timestamp {} of message with offset {} is out of range. The timestamp should be within [{lower}, {upper}]",
                            record.timestamp, record.offset
                        ),
                    ))),
                );
            }
        }
    }
    if record_errors.is_empty() {
        return Ok(());
    }
    Err(Refusal {
        error: ApiError::new(ResponseError::InvalidTimestamp, "One or more records have been rejected due to invalid timestamp"),
        record_errors,
        log_start_offset: -1,
    })
}

/// Kafka's `validateKey`: a compacted topic refuses records without a key
/// (INVALID_RECORD, each such record named in the record errors). Records
/// are decoded for compacted topics only.
fn check_keys(records: &Bytes, headers: &[BatchHeader], topic_partition: &str) -> Result<(), Refusal> {
    let keyless = runnel_storage::cleaner::keyless_records(records, headers).map_err(|e| ApiError::from(&e))?;
    if keyless.is_empty() {
        return Ok(());
    }
    let message = format!("Compacted topic cannot accept message without key in topic partition {topic_partition}.");
    let shown: Vec<String> = keyless.iter().take(3).map(|i| format!("RecordError(batchIndex={i}, message='{message}')")).collect();
    let record_errors = keyless
        .iter()
        .map(|&i| {
            BatchIndexAndErrorMessage::default()
                .with_batch_index(i)
                .with_batch_index_error_message(Some(StrBytes::from_string(message.clone())))
        })
        .collect();
    Err(Refusal {
        error: ApiError::new(
            ResponseError::InvalidRecord,
            format!(
                "One or more records have been rejected due to {} record errors in total, and only showing the first three errors at most: [{}]",
                keyless.len(),
                shown.join(", ")
            ),
        ),
        record_errors,
        log_start_offset: -1,
    })
}

fn append_partition(
    topic: Option<&Topic>,
    version: i16,
    partition: i32,
    records: Option<Bytes>,
    acks: i16,
    now_ms: i64,
    in_session: bool,
) -> Result<(Arc<Partition>, runnel_storage::AppendInfo), Refusal> {
    let unknown = || {
        if version >= 13 && topic.is_none() {
            ApiError::bare(ResponseError::UnknownTopicId)
        } else {
            ApiError::new(ResponseError::UnknownTopicOrPartition, "This server does not host this topic-partition.")
        }
    };
    let topic = topic.ok_or_else(unknown)?;
    if topic.internal {
        // The coordinator writes its own log; a client's record there could only corrupt it.
        return Err(ApiError::new(ResponseError::InvalidTopicException, format!("Cannot append to internal topic {}", topic.name)).into());
    }
    let partition_index = partition;
    let partition = topic.partition(partition).ok_or_else(unknown)?;
    if !partition.is_leader() {
        return Err(ApiError::new(ResponseError::NotLeaderOrFollower, format!("this broker is not the leader of {}-{partition_index}", topic.name)).into());
    }
    if !in_session {
        return Err(ApiError::new(
            ResponseError::NotLeaderOrFollower,
            format!("this broker's session with the controller lapsed; it may no longer lead {}-{partition_index}", topic.name),
        )
        .into());
    }
    if acks == -1 {
        let min_isr = partition.min_insync_replicas();
        let isr = partition.isr_size();
        if (isr as i64) < min_isr as i64 {
            return Err(ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!("min.insync.replicas={min_isr} but the in-sync replica set has {isr} member(s)"),
            )
            .into());
        }
    }
    let records = records.ok_or_else(|| ApiError::new(ResponseError::InvalidRecord, "produce request without records"))?;
    let max = partition.max_message_bytes();
    let validated = validate_batches(&records, max).map_err(|e| ApiError::from(&e))?;
    if partition.is_compacted() {
        check_keys(&records, &validated.headers, &format!("{}-{partition_index}", topic.name))
            .map_err(|refusal| Refusal { log_start_offset: partition.offsets().log_start_offset, ..refusal })?;
    }
    if let Some(window) = partition.timestamp_window(now_ms) {
        check_timestamps(&records, &validated.headers, window)
            .map_err(|refusal| Refusal { log_start_offset: partition.offsets().log_start_offset, ..refusal })?;
    }
    // Offsets are written into the batch headers in place; the frame buffer
    // is usually ours alone by now, otherwise this copies once.
    let mut batches: BytesMut = records.try_into_mut().unwrap_or_else(|shared| BytesMut::from(&shared[..]));
    let info = partition.append(&mut batches, &validated.headers, now_ms)?;
    Ok((partition, info))
}
