//! DeleteTopics (key 20): by name, or by topic id (v6). Internal topics
//! cannot be deleted by clients.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: DeleteTopicsRequest) -> Reply<DeleteTopicsResponse> {
    let targets: Vec<(Option<TopicName>, Uuid)> = if ctx.version >= 6 {
        req.topics.into_iter().map(|t| (t.name, t.topic_id)).collect()
    } else {
        req.topic_names.into_iter().map(|n| (Some(n), Uuid::nil())).collect()
    };
    let broker = broker.clone();
    let authz = Authz::new(&broker, ctx);
    let mutations = Arc::new(super::ControllerMutations::new(&broker, ctx, 5));
    let counted = mutations.clone();
    let results = tokio::task::spawn_blocking(move || {
        targets
            .into_iter()
            .map(|(name, id)| {
                let topic = match &name {
                    Some(n) => broker.replicas.topic(&n.0),
                    None => broker.replicas.topic_by_id(&id),
                };
                let result = DeletableTopicResult::default().with_name(name.clone()).with_topic_id(id);
                let outcome = match topic {
                    None if name.is_none() => Err(ApiError::new(ResponseError::UnknownTopicId, "This server does not host this topic ID.")),
                    // Kafka checks DELETE before looking a named topic up: no hint it exists.
                    _ if name.as_ref().is_some_and(|n| !authz.topic(operation::DELETE, &n.0)) => {
                        Err(ApiError::new(ResponseError::TopicAuthorizationFailed, "Authorization failed."))
                    }
                    None => Err(ApiError::new(ResponseError::UnknownTopicOrPartition, "This server does not host this topic-partition.")),
                    Some(t) if !authz.topic(operation::DELETE, &t.name) => {
                        Err(ApiError::new(ResponseError::TopicAuthorizationFailed, "Authorization failed."))
                    }
                    Some(t) if t.internal => Err(ApiError::new(ResponseError::TopicAuthorizationFailed, format!("Internal topic {} cannot be deleted", t.name))),
                    Some(t) => counted.admit().and_then(|()| {
                        let partitions = broker.cluster.image().topic_by_name(&t.name).map_or(0, |topic| topic.partitions.len());
                        let deleted = crate::cluster::delete_topic_blocking(&broker, &t).map(|_| t);
                        if deleted.is_ok() {
                            counted.record(partitions);
                        }
                        deleted
                    }),
                };
                match outcome {
                    Ok(t) => result.with_name(Some(TopicName(StrBytes::from_string(t.name.to_string())))).with_topic_id(t.id),
                    Err(e) => result.with_error_code(e.code()).with_error_message(e.message.map(StrBytes::from_string)),
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Reply::Now(DeleteTopicsResponse::default().with_responses(results).with_throttle_time_ms(mutations.throttle_time_ms(ctx)))
}
