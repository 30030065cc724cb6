//! Transaction markers (Kafka's `TransactionMarkerChannelManager`): the
//! COMMIT or ABORT control batch a transaction coordinator writes into each
//! partition of a transaction. A partition led here is written directly; one
//! led by another broker gets WriteTxnMarkers (API 27, v1) from this broker.
//! Either way a marker counts as written only once the partition's in-sync
//! replicas have it and its leader fsynced it (Kafka writes markers with acks=all).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ApiKey, ProducerId, RequestHeader, ResponseHeader, TopicName, WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, StrBytes};
use parking_lot::Mutex;
use runnel_storage::ControlType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::coordinator::GroupCoordinator;
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;

const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long a leader waits for its in-sync replicas and fsync before it
/// answers a marker write with an error (the coordinator retries).
pub const MARKER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A WriteTxnMarkers answer not received within this long drops the connection.
const REQUEST_TIMEOUT: Duration = MARKER_WRITE_TIMEOUT.saturating_add(Duration::from_secs(5));
const RESPONSE_MAX_BYTES: i32 = 16 << 20;

/// Writes one marker into a partition led here, as Kafka's WriteTxnMarkers
/// does with acks=all: NOT_ENOUGH_REPLICAS before the append if the ISR is
/// below `min.insync.replicas`, then waits for the ISR and the fsync.
pub async fn write_marker_replicated(
    groups: &GroupCoordinator,
    partition: &Partition,
    producer_id: i64,
    producer_epoch: i16,
    marker: ControlType,
    coordinator_epoch: i32,
) -> Result<(), ResponseError> {
    if !partition.is_leader() {
        return Err(ResponseError::NotLeaderOrFollower);
    }
    if (partition.isr_size() as i64) < partition.min_insync_replicas() as i64 {
        return Err(ResponseError::NotEnoughReplicas);
    }
    let offset = super::write_marker(groups, partition, producer_id, producer_epoch, marker, coordinator_epoch)?;
    let deadline = tokio::time::Instant::now() + MARKER_WRITE_TIMEOUT;
    partition.wait_replicated(offset, deadline).await.map_err(|e| e.code)?;
    partition.wait_durable(offset, MARKER_WRITE_TIMEOUT).await.map_err(|_| ResponseError::KafkaStorageError)
}

/// One transaction's markers for the partitions one broker leads.
pub struct MarkerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
    pub coordinator_epoch: i32,
    pub partitions: Vec<(String, i32)>,
}

/// Sends WriteTxnMarkers to other brokers over connections kept per broker
/// (an idle pool: concurrent transactions do not wait for each other).
pub struct MarkerSender {
    replicas: std::sync::Weak<ReplicaManager>,
    node_id: i32,
    idle: Mutex<HashMap<i32, Vec<TcpStream>>>,
}

impl MarkerSender {
    pub fn new(replicas: &Arc<ReplicaManager>, node_id: i32) -> MarkerSender {
        MarkerSender { replicas: Arc::downgrade(replicas), node_id, idle: Mutex::new(HashMap::new()) }
    }

    /// Asks broker `leader` to write `batch`'s markers; per partition, the error
    /// code it answered (0: written). Err: no answer (connection or protocol failure).
    pub async fn send(&self, leader: i32, batch: &MarkerBatch) -> Result<Vec<((String, i32), i16)>, String> {
        let mut topics: Vec<WritableTxnMarkerTopic> = Vec::new();
        for (topic, index) in &batch.partitions {
            match topics.last_mut() {
                Some(t) if t.name.0.as_str() == topic => t.partition_indexes.push(*index),
                _ => topics.push(
                    WritableTxnMarkerTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.clone())))
                        .with_partition_indexes(vec![*index]),
                ),
            }
        }
        let request = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
            .with_producer_id(ProducerId(batch.producer_id))
            .with_producer_epoch(batch.producer_epoch)
            .with_transaction_result(batch.commit)
            .with_coordinator_epoch(batch.coordinator_epoch)
            .with_topics(topics)]);
        let pooled = self.idle.lock().get_mut(&leader).and_then(Vec::pop);
        let mut stream = match pooled {
            Some(stream) => stream,
            None => {
                let replicas = self.replicas.upgrade().ok_or("shutting down")?;
                let address = replicas.broker_address(leader).ok_or_else(|| format!("no address known for broker {leader}"))?;
                let stream = tokio::time::timeout(REQUEST_TIMEOUT, TcpStream::connect(address))
                    .await
                    .map_err(|_| format!("connecting to broker {leader} at {address} timed out"))?
                    .map_err(|e| format!("connect to broker {leader} at {address}: {e}"))?;
                let _ = stream.set_nodelay(true);
                stream
            }
        };
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.exchange(&mut stream, &request))
            .await
            .map_err(|_| format!("broker {leader} did not answer WriteTxnMarkers in time"))??;
        // Only a connection that answered in order goes back to the pool.
        self.idle.lock().entry(leader).or_default().push(stream);
        let mut out = Vec::new();
        for marker in response.markers {
            for topic in marker.topics {
                for p in topic.partitions {
                    out.push(((topic.name.0.to_string(), p.partition_index), p.error_code));
                }
            }
        }
        Ok(out)
    }

    async fn exchange(&self, stream: &mut TcpStream, request: &WriteTxnMarkersRequest) -> Result<WriteTxnMarkersResponse, String> {
        const CORRELATION_ID: i32 = 1;
        let version = WRITE_TXN_MARKERS_VERSION;
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::WriteTxnMarkers as i16)
            .with_request_api_version(version)
            .with_correlation_id(CORRELATION_ID)
            .with_client_id(Some(StrBytes::from_string(format!("runnel-txn-coordinator-{}", self.node_id))));
        let mut body = BytesMut::new();
        header.encode(&mut body, WriteTxnMarkersRequest::header_version(version)).map_err(|e| format!("encode header: {e}"))?;
        request.encode(&mut body, version).map_err(|e| format!("encode WriteTxnMarkers: {e}"))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        stream.write_all(&frame).await.map_err(|e| format!("send: {e}"))?;
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).await.map_err(|e| format!("read: {e}"))?;
        let len = i32::from_be_bytes(len);
        if !(0..=RESPONSE_MAX_BYTES).contains(&len) {
            return Err(format!("answer of {len} bytes"));
        }
        let mut buf = vec![0u8; len as usize];
        stream.read_exact(&mut buf).await.map_err(|e| format!("read: {e}"))?;
        let mut answer = Bytes::from(buf);
        let response_header =
            ResponseHeader::decode(&mut answer, WriteTxnMarkersResponse::header_version(version)).map_err(|e| format!("decode header: {e}"))?;
        if response_header.correlation_id != CORRELATION_ID {
            return Err(format!("answer for correlation id {}", response_header.correlation_id));
        }
        let response = WriteTxnMarkersResponse::decode(&mut answer, version).map_err(|e| format!("decode WriteTxnMarkers answer: {e}"))?;
        if answer.has_remaining() {
            return Err(format!("{} bytes after the WriteTxnMarkers answer", answer.remaining()));
        }
        Ok(response)
    }
}
