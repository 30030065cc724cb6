//! CreatePartitions (key 37): raises a topic's partition count, with the new
//! partitions' replicas placed by the controller or given as assignments.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: CreatePartitionsRequest) -> Reply<CreatePartitionsResponse> {
    let broker = broker.clone();
    let authz = Authz::new(&broker, ctx);
    let validate_only = req.validate_only;
    let mut occurrences: HashMap<StrBytes, usize> = HashMap::new();
    for t in &req.topics {
        *occurrences.entry(t.name.0.clone()).or_default() += 1;
    }
    let mutations = Arc::new(super::ControllerMutations::new(&broker, ctx, 3));
    let counted = mutations.clone();
    let results = tokio::task::spawn_blocking(move || {
        // A name given twice gets one INVALID_REQUEST result, as in Kafka.
        let mut answered_duplicates = HashSet::new();
        req.topics
            .into_iter()
            .filter(|t| occurrences[&t.name.0] <= 1 || answered_duplicates.insert(t.name.0.clone()))
            .map(|t| {
                let outcome = if occurrences[&t.name.0] > 1 {
                    Err(ApiError::new(ResponseError::InvalidRequest, "Duplicate topic name."))
                } else if !authz.topic(operation::ALTER, &t.name.0) {
                    Err(ApiError::new(ResponseError::TopicAuthorizationFailed, "Authorization failed."))
                } else if let Err(throttled) = counted.admit() {
                    Err(throttled)
                } else {
                    let before = broker.cluster.image().topic_by_name(&t.name.0).map_or(0, |topic| topic.partitions.len());
                    let assignments =
                        t.assignments.as_ref().filter(|a| !a.is_empty()).map(|a| a.iter().map(|x| x.broker_ids.iter().map(|b| b.0).collect()).collect());
                    let created = crate::cluster::create_partitions_blocking(&broker, &t.name.0, t.count, assignments, validate_only);
                    if created.is_ok() && !validate_only {
                        counted.record((t.count.max(0) as usize).saturating_sub(before));
                    }
                    created
                };
                let result = CreatePartitionsTopicResult::default().with_name(t.name);
                match outcome {
                    Ok(()) => result,
                    Err(e) => result.with_error_code(e.code()).with_error_message(e.message.map(StrBytes::from_string)),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Reply::Now(CreatePartitionsResponse::default().with_results(results).with_throttle_time_ms(mutations.throttle_time_ms(ctx)))
}
