//! ListPartitionReassignments (key 46, KIP-455): the ongoing reassignments
//! (replicas = target followed by the leaving ones, adding, removing) from
//! this broker's applied image, for every partition (`topics` null) or the
//! named ones. As Kafka, named partitions that do not exist or have no
//! reassignment are left out of the answer.

use std::sync::Arc;

use kafka_protocol::messages::list_partition_reassignments_response::{OngoingPartitionReassignment, OngoingTopicReassignment};
use kafka_protocol::messages::{BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use runnel_controller::image::{PartitionImage, TopicImage};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(
    broker: &Arc<Broker>,
    ctx: &RequestContext,
    req: ListPartitionReassignmentsRequest,
) -> Reply<ListPartitionReassignmentsResponse> {
    if !Authz::new(broker, ctx).cluster(operation::DESCRIBE) {
        let code = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
        return Reply::Now(ListPartitionReassignmentsResponse::default().with_error_code(code));
    }
    let image = broker.cluster.image();
    let ongoing = |topic: &TopicImage, partitions: &mut dyn Iterator<Item = (i32, &PartitionImage)>| {
        let partitions: Vec<OngoingPartitionReassignment> = partitions
            .filter(|(_, p)| p.is_reassigning())
            .map(|(index, p)| {
                let ids = |v: &[i32]| v.iter().map(|b| BrokerId(*b)).collect::<Vec<_>>();
                OngoingPartitionReassignment::default()
                    .with_partition_index(index)
                    .with_replicas(ids(&p.replicas))
                    .with_adding_replicas(ids(&p.adding_replicas))
                    .with_removing_replicas(ids(&p.removing_replicas))
            })
            .collect();
        (!partitions.is_empty()).then(|| {
            OngoingTopicReassignment::default()
                .with_name(TopicName(StrBytes::from_string(topic.name.clone())))
                .with_partitions(partitions)
        })
    };
    let topics: Vec<OngoingTopicReassignment> = match &req.topics {
        None => image
            .topics
            .values()
            .filter_map(|t| ongoing(t, &mut t.partitions.iter().map(|(i, p)| (*i, p))))
            .collect(),
        Some(requested) => requested
            .iter()
            .filter_map(|r| {
                let topic = image.topic_by_name(r.name.0.as_str())?;
                let mut named = r.partition_indexes.iter().filter_map(|i| topic.partitions.get(i).map(|p| (*i, p)));
                ongoing(topic, &mut named)
            })
            .collect(),
    };
    Reply::Now(ListPartitionReassignmentsResponse::default().with_topics(topics))
}
