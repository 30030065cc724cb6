//! WriteTxnMarkers (key 27): a transaction coordinator asks the leader of
//! each partition to append a transaction's COMMIT or ABORT marker. Here the
//! coordinator writes its markers locally; this API is how another
//! coordinator reaches this broker's partitions in a cluster.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use runnel_storage::ControlType;

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: WriteTxnMarkersRequest) -> Reply<WriteTxnMarkersResponse> {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let mut markers = Vec::with_capacity(req.markers.len());
        for marker in req.markers {
            let kind = if marker.transaction_result { ControlType::Commit } else { ControlType::Abort };
            let mut topics = Vec::with_capacity(marker.topics.len());
            for topic in &marker.topics {
                let found = broker.replicas.topic(&topic.name.0);
                let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
                for &index in &topic.partition_indexes {
                    let result = match found.as_ref().and_then(|t| t.partition(index)) {
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(partition) => {
                            match crate::txn_coordinator::write_marker(&broker.groups, &partition, marker.producer_id.0, marker.producer_epoch, kind, marker.coordinator_epoch) {
                                Ok(offset) => partition.wait_durable(offset, std::time::Duration::from_secs(30)).await.map_err(|_| ResponseError::KafkaStorageError),
                                Err(e) => Err(e),
                            }
                        }
                    };
                    partitions.push(
                        WritableTxnMarkerPartitionResult::default().with_partition_index(index).with_error_code(result.err().map_or(0, |e| e.code())),
                    );
                }
                topics.push(WritableTxnMarkerTopicResult::default().with_name(topic.name.clone()).with_partitions(partitions));
            }
            markers.push(WritableTxnMarkerResult::default().with_producer_id(marker.producer_id).with_topics(topics));
        }
        WriteTxnMarkersResponse::default().with_markers(markers)
    }))
}
