//! Metadata (key 3): the live brokers (with racks), the controller, and topics
//! with their partitions' leaders, replicas, ISR and offline replicas, from the
//! committed cluster metadata this broker has applied. Auto-creates requested
//! topics (through the controller) when `auto.create.topics.enable` is on and
//! the client allows it, as Kafka does.

use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::controller::CreateTopic;
use runnel_controller::{ControllerRequest, ControllerResponse};

use runnel_controller::acl::{operation, CLUSTER_NAME};

use super::{authorized_operations, Authz, Reply, RequestContext};
use crate::security::authorizer::{CLUSTER, CLUSTER_OPERATIONS, TOPIC, TOPIC_OPERATIONS};
use crate::replica_manager::{validate_topic_name, Topic};
use crate::Broker;

/// Kafka's value for "authorized operations not requested".
const AUTHORIZED_OPERATIONS_OMITTED: i32 = authorized_operations::OMITTED;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: MetadataRequest) -> Reply<MetadataResponse> {
    let (brokers, controller_id) = brokers_and_controller(broker, &ctx.listener, true);
    // Before v4 a client could not opt out of auto-creation.
    let client_allows_create = ctx.version < 4 || req.allow_auto_topic_creation;
    // Kafka: topics the caller may not DESCRIBE are left out of a full listing
    // and answered TOPIC_AUTHORIZATION_FAILED when named.
    let authz = Authz::new(broker, ctx);
    let listed = || {
        broker
            .replicas
            .topics()
            .into_iter()
            .filter(|t| broker.cluster.is_listed(t) && authz.topic(operation::DESCRIBE, &t.name))
            .map(|t| describe_topic(broker, &t))
            .collect()
    };
    let denied = |name: Option<TopicName>, topic_id: uuid::Uuid| {
        MetadataResponseTopic::default()
            .with_error_code(ResponseError::TopicAuthorizationFailed.code())
            .with_name(name)
            .with_topic_id(topic_id)
            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
    };
    let topics: Vec<MetadataResponseTopic> = match req.topics {
        None => listed(),
        // v0: an empty list means all topics.
        Some(requested) if requested.is_empty() && ctx.version == 0 => listed(),
        Some(requested) => {
            // A topic named twice is answered once (Kafka collects the names in a set).
            let mut seen_names = std::collections::HashSet::new();
            let mut seen_ids = std::collections::HashSet::new();
            let mut answers = Vec::new();
            for wanted in requested.into_iter().filter(|wanted| match &wanted.name {
                Some(name) => seen_names.insert(name.0.clone()),
                None => seen_ids.insert(wanted.topic_id),
            }) {
                answers.push(match wanted.name {
                    Some(name) if !authz.topic(operation::DESCRIBE, &name.0) => denied(Some(name), uuid::Uuid::nil()),
                    Some(name) => {
                        // Auto-creation needs CREATE on the cluster or on the topic.
                        let may_create = authz.cluster(operation::CREATE) || authz.topic(operation::CREATE, &name.0);
                        topic_by_name(broker, &name.0, client_allows_create, may_create).await
                    }
                    None => match broker.replicas.topic_by_id(&wanted.topic_id).filter(|t| broker.cluster.is_listed(t)) {
                        Some(topic) if !authz.topic(operation::DESCRIBE, &topic.name) => denied(None, wanted.topic_id),
                        Some(topic) => describe_topic(broker, &topic),
                        None => MetadataResponseTopic::default()
                            .with_error_code(ResponseError::UnknownTopicId.code())
                            .with_name(None)
                            .with_topic_id(wanted.topic_id)
                            .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED),
                    },
                });
            }
            answers
        }
    };
    let topics = topics
        .into_iter()
        .map(|t| {
            let requested = req.include_topic_authorized_operations && t.error_code == 0;
            let ops = match &t.name {
                Some(name) if requested => authz.operations(TOPIC, &name.0, TOPIC_OPERATIONS, authorized_operations::TOPIC),
                _ => authorized_operations::if_requested(requested, authorized_operations::TOPIC),
            };
            t.with_topic_authorized_operations(ops)
        })
        .collect();
    Reply::Now(
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
            .with_controller_id(controller_id)
            .with_topics(topics)
            .with_cluster_authorized_operations(if req.include_cluster_authorized_operations {
                authz.operations(CLUSTER, CLUSTER_NAME, CLUSTER_OPERATIONS, authorized_operations::CLUSTER)
            } else {
                authorized_operations::OMITTED
            }),
    )
}

/// The live brokers with their addresses on `listener` (the one the client
/// connected to, as Kafka answers), and the controller id clients are told:
/// the active controller when it is a live broker (combined nodes), else a
/// live broker, as Kafka's KRaft brokers report. `with_recently_fenced`:
/// Metadata's list, which keeps a just-fenced broker a little longer (see
/// `Cluster::live_brokers`); DescribeCluster reports fencing as it is.
pub fn brokers_and_controller(broker: &Broker, listener: &str, with_recently_fenced: bool) -> (Vec<MetadataResponseBroker>, BrokerId) {
    let mut live = broker.cluster.live_brokers(listener, with_recently_fenced);
    if live.is_empty() {
        // Not unfenced yet (only during start-up): this broker alone.
        let (host, port) = own_address(broker, listener);
        live.push((broker.config.node_id, host, port, broker.config.broker_rack.clone()));
    }
    let active = broker.cluster.controller_id();
    let controller = if live.iter().any(|(id, ..)| *id == active) { active } else { live[0].0 };
    let brokers = live
        .into_iter()
        .map(|(id, host, port, rack)| {
            MetadataResponseBroker::default()
                .with_node_id(BrokerId(id))
                .with_host(StrBytes::from_string(host))
                .with_port(port)
                .with_rack(rack.map(StrBytes::from_string))
        })
        .collect();
    (brokers, BrokerId(controller))
}

/// This broker's advertised host and port on `listener`.
pub fn own_address(broker: &Broker, listener: &str) -> (String, i32) {
    match broker.config.advertised_for(listener) {
        Some(a) => (a.host.clone(), i32::from(a.port)),
        None => (broker.config.advertised_host.clone(), broker.config.advertised_port),
    }
}

async fn topic_by_name(broker: &Arc<Broker>, name: &StrBytes, client_allows_create: bool, may_create: bool) -> MetadataResponseTopic {
    if let Some(topic) = broker.replicas.topic(name).filter(|t| broker.cluster.is_listed(t)) {
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
    if !may_create {
        return error(ResponseError::TopicAuthorizationFailed);
    }
    tracing::warn!(topic = %name, partitions = broker.config.num_partitions,
        "auto-creating topic on first use (auto.create.topics.enable=true); create topics explicitly in production");
    let create = CreateTopic {
        name: name.to_string(),
        num_partitions: broker.config.num_partitions,
        replication_factor: broker.config.default_replication_factor,
        assignments: None,
        configs: Default::default(),
    };
    let created = match broker.cluster.submit(ControllerRequest::CreateTopic(create)).await {
        Ok(ControllerResponse::TopicCreated { topic_id, .. }) => broker.cluster.wait_for_topic(&broker.replicas, topic_id).await,
        // Lost a race with a concurrent creator: describe what exists now.
        Err(e) if e.code == ResponseError::TopicAlreadyExists => {
            let image = broker.cluster.image();
            match image.topic_by_name(name) {
                Some(t) => broker.cluster.wait_for_topic(&broker.replicas, t.topic_id).await,
                None => None,
            }
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(topic = %name, error = %e, "auto-creating the topic failed");
            None
        }
    };
    match created {
        Some(topic) => describe_topic(broker, &topic),
        None => error(ResponseError::LeaderNotAvailable),
    }
}

pub fn describe_topic(broker: &Broker, topic: &Topic) -> MetadataResponseTopic {
    let ids = |ids: Vec<i32>| ids.into_iter().map(BrokerId).collect::<Vec<_>>();
    let partitions = topic
        .partitions()
        .iter()
        .map(|p| {
            let view = broker.cluster.partition_view(topic, p);
            let error = if view.leader < 0 { ResponseError::LeaderNotAvailable.code() } else { 0 };
            MetadataResponsePartition::default()
                .with_error_code(error)
                .with_partition_index(p.index)
                .with_leader_id(BrokerId(view.leader))
                .with_leader_epoch(view.leader_epoch)
                .with_replica_nodes(ids(view.replicas))
                .with_isr_nodes(ids(view.isr))
                .with_offline_replicas(ids(view.offline))
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.to_string()))))
        .with_topic_id(topic.id)
        .with_is_internal(topic.internal)
        .with_partitions(partitions)
        .with_topic_authorized_operations(AUTHORIZED_OPERATIONS_OMITTED)
}

