//! OffsetDelete (key 47): removes a group's committed offsets for partitions
//! it does not subscribe to (GROUP_SUBSCRIBED_TO_TOPIC for those it does).

use std::sync::Arc;

use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};

use super::{Reply, RequestContext};
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, _ctx: &RequestContext, req: OffsetDeleteRequest) -> Reply<OffsetDeleteResponse> {
    let broker = broker.clone();
    Reply::Later(Box::pin(async move {
        let partitions: Vec<(String, i32)> = req
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter().map(move |p| (t.name.0.to_string(), p.partition_index)))
            .collect();
        match broker.groups.delete_offsets(&req.group_id.0, &partitions).await {
            Err(code) => OffsetDeleteResponse::default().with_error_code(code.code()),
            Ok(results) => {
                let mut results = results.into_iter();
                let topics = req
                    .topics
                    .into_iter()
                    .map(|t| {
                        let partitions = t
                            .partitions
                            .iter()
                            .map(|p| {
                                let code = results.next().flatten().map(|e| e.code()).unwrap_or(0);
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
