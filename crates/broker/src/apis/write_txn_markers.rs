//! WriteTxnMarkers (key 27): a transaction coordinator asks the leader of
//! each partition to append a transaction's COMMIT or ABORT marker (a
//! coordinator writes the markers of partitions it leads itself). Answered per
//! partition once the marker is in the ISR and fsynced (Kafka's acks=all).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use runnel_storage::ControlType;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: WriteTxnMarkersRequest) -> Reply<WriteTxnMarkersResponse> {
    // Kafka: only brokers (CLUSTER_ACTION) write markers.
    let cluster_action = Authz::new(broker, ctx).cluster(operation::CLUSTER_ACTION);
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
                        _ if !cluster_action => Err(ResponseError::ClusterAuthorizationFailed),
                        None => Err(ResponseError::UnknownTopicOrPartition),
                        Some(partition) => {
                            crate::txn_coordinator::markers::write_marker_replicated(
                                &broker.groups, &partition, marker.producer_id.0, marker.producer_epoch, kind, marker.coordinator_epoch,
                            )
                            .await
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
