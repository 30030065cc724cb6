//! Transaction markers (Kafka's `TransactionMarkerChannelManager`): the
//! COMMIT or ABORT control batch a transaction coordinator writes into each
//! partition of a transaction. A partition led here is written directly; one
//! led by another broker gets WriteTxnMarkers (API 27, v1) from this broker.
//! Either way a marker counts as written only once the partition's in-sync
//! replicas have it and its leader fsynced it (Kafka writes markers with acks=all).

use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_request::{WritableTxnMarker, WritableTxnMarkerTopic};
use kafka_protocol::messages::{ProducerId, TopicName, WriteTxnMarkersRequest};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::ControlType;

use crate::coordinator::GroupCoordinator;
use crate::inter_broker::InterBrokerClient;
use crate::partition::Partition;
use crate::replica_manager::ReplicaManager;

const WRITE_TXN_MARKERS_VERSION: i16 = 1;
/// How long a leader waits for its in-sync replicas and fsync before it
/// answers a marker write with an error (the coordinator retries).
pub const MARKER_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A WriteTxnMarkers answer not received within this long drops the connection.
const REQUEST_TIMEOUT: Duration = MARKER_WRITE_TIMEOUT.saturating_add(Duration::from_secs(5));

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

/// Sends WriteTxnMarkers to other brokers over the inter-broker client's
/// pooled connections (concurrent transactions do not wait for each other).
pub struct MarkerSender {
    client: InterBrokerClient,
}

impl MarkerSender {
    pub fn new(replicas: &Arc<ReplicaManager>, node_id: i32) -> MarkerSender {
        MarkerSender { client: InterBrokerClient::new(replicas, format!("runnel-txn-coordinator-{node_id}")) }
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
        let response = self.client.call(leader, WRITE_TXN_MARKERS_VERSION, &request, REQUEST_TIMEOUT).await?;
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
}
