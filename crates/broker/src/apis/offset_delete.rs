//! OffsetDelete (key 47): removes a group's committed offsets for partitions
//! it does not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC for those it does).

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: OffsetDeleteRequest) -> Reply<OffsetDeleteResponse> {
    // Kafka: DELETE on the group, READ on each topic.
    let authz = Authz::new(broker, ctx);
    if !authz.group(operation::DELETE, &req.group_id.0) {
        return Reply::Now(OffsetDeleteResponse::default().with_error_code(ResponseError::GroupAuthorizationFailed.code()));
    }
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        // As Kafka: a partition that does not exist is answered
        // UNKNOWN_TOPIC_OR_PARTITION; only the others reach the coordinator.
        let exists = |topic: &str, partition: i32| broker.replicas.topic(topic).is_some_and(|t| t.partition(partition).is_some());
        // (topic, partition, the error it gets without reaching the coordinator)
        let requested: Vec<(String, i32, Option<ResponseError>)> = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index)))
            .map(|(topic, partition)| {
                let refusal = if !authz.topic(operation::READ, &topic) {
                    Some(ResponseError::TopicAuthorizationFailed)
                } else if !exists(&topic, partition) {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else {
                    None
                };
                (topic, partition, refusal)
            })
            .collect();
        let known: Vec<(String, i32)> = requested.iter().filter(|r| r.2.is_none()).map(|(t, p, _)| (t.clone(), *p)).collect();
        match broker.groups.delete_offsets(&req.group_id.0, &known).await {
            Err(code) => OffsetDeleteResponse::default().with_error_code(code.code()),
            Ok(results) => {
                let mut results = results.into_iter();
                let mut codes = requested.into_iter().map(|(_, _, refusal)| match refusal {
                    None => results.next().flatten().map(|e| e.code()).unwrap_or(0),
                    Some(refusal) => refusal.code(),
                });
                let topics = req
                    .topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let code = codes.next().unwrap_or(0);
                                OffsetDeleteResponsePartition::default().with_partition_index(p.partition_index).with_error_code(code)
                            })
                            .collect();
                        OffsetDeleteResponseTopic::default().with_name(t.name).with_partitions(partitions)
                    })
                    .collect();
                OffsetDeleteResponse::default().with_topics(topics)
            }
        }
    }))
}
