//! Metadata (key 3): brokers, controller, and topics with their partitions.
//! Auto-creates requested topics when `auto.create.topics.enable` is on and
//! the client allows it, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::{authorized_operations, Reply, RequestContext};
use crate::replica_manager::{validate_topic_name, Topic};
use crate::Broker;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = authorized_operations::OMITTED;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: MetadataRequest) -> Reply<MetadataResponse> {
    let config = &broker.config;
    let node = BrokerId(config.node_id);
    let brokers = vec![MetadataResponseBroker::default()
        .with_node_id(node)
        .with_host(StrBytes::from_string(config.advertised_host.clone()))
        .with_port(config.advertised_port)];
    // Before v4 a client could not opt out of auto-creation.
    let client_allows_create = ctx.version < 4 || req.allow_auto_topic_creation;
    let topics: Vec<MetadataResponseTopic> = match req.topics {
        None => broker.replicas.topics().iter().map(|t| describe_topic(broker, t)).collect(),
        Some(requested) if requested.is_empty() && ctx.version == 0 => {
            // v0: an empty list means all topics.
            broker.replicas.topics().iter().map(|t| describe_topic(broker, t)).collect()
        }
        Some(requested) => {
            // A topic named twice is answered once (Kafka collects the names in a set).
            let mut seen_names = std::collections::HashSet::new();
            let mut seen_ids = std::collections::HashSet::new();
            requested
                .into_iter()
                .filter(|wanted| match &wanted.name {
                    Some(name) => seen_names.insert(name.0.clone()),
                    None => seen_ids.insert(wanted.topic_id),
                })
                .map(|wanted| match wanted.name {
                    Some(name) => topic_by_name(broker, &name.0, client_allows_create),
                    None => match broker.replicas.topic_by_id(&wanted.topic_id) {
                        Some(topic) => describe_topic(broker, &topic),
                        None => MetadataResponseTopic::default()
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_name(None)
                            .with_topic_id(wanted.topic_id)
                            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
                    },
                })
                .collect()
        }
    };
    let topics = topics
        .into_iter()
        .map(|t| {
            let ops = authorized_operations::if_requested(req.include_topic_authorized_operations && t.error_code == 0, authorized_operations::TOPIC);
            t.with_topic_authorized_operations(ops)
        })
        .collect();
    Reply::Now(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
            .with_controller_id(node)
            .with_topics(topics)
            .with_cluster_authorized_operations(authorized_operations::if_requested(
                req.include_cluster_authorized_operations,
                authorized_operations::CLUSTER,
            )),
    )
}

fn topic_by_name(broker: &Arc<Broker>, name: &StrBytes, client_allows_create: bool) -> MetadataResponseTopic {
    if let Some(topic) = broker.replicas.topic(name) {
        return describe_topic(broker, &topic);
    }
    let error = |code: ResponseError| {
        MetadataResponseTopic::default()
            .with_error_code(code.code())
            .with_name(Some(TopicName(name.clone())))
            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
    };
    if validate_topic_name(name).is_err() {
        return error(ResponseError::InvalidTopicException);
    }
    if !(client_allows_create && broker.config.auto_create_topics) || name.starts_with("__") {
        return error(ResponseError::UnknownTopicOrPartition);
    }
    tracing::warn!(topic = %name, partitions = broker.config.num_partitions,
        "auto-creating topic on first use (auto.create.topics.enable=true); create topics explicitly in production");
    match broker.replicas.create_topic(name, -1, -1, Default::default(), false) {
        Ok(Some(topic)) => describe_topic(broker, &topic),
        // Lost a race with a concurrent creator: describe what exists now.
        Err(e) if e.code == ResponseError::TopicAlreadyExists => match broker.replicas.topic(name) {
            Some(topic) => describe_topic(broker, &topic),
            None => error(ResponseError::LeaderNotAvailable),
        },
        Ok(None) | Err(_) => error(ResponseError::LeaderNotAvailable),
    }
}

pub fn describe_topic(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            MetadataResponsePartition::default()
                .with_partition_index(p.index)
                .with_leader_id(node)
                .with_leader_epoch(p.leader_epoch())
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.to_string()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

