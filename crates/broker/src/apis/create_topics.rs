//! CreateTopics (key 19): validates names, partition counts, replication
//! factors, assignments and configs here, then the controller places the
//! replicas (INVALID_REPLICATION_FACTOR when more than the live brokers) and
//! commits the topic; the answer waits until this broker has it. With
//! validate_only nothing is created. v5+ answers with the topic's configs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::LogConfig;

use super::describe_configs::topic_configs;
use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use runnel_controller::controller::{place_replicas, CreateTopic};
use runnel_controller::{ControllerRequest, ControllerResponse};

use crate::error::ApiError;
use crate::replica_manager::validate_topic_name;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: CreateTopicsRequest) -> Reply<CreateTopicsResponse> {
    let mut seen: HashMap<StrBytes, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.clone()).or_default() += 1;
    }
    let version = ctx.version;
    // A name given twice gets one INVALID_REQUEST result, as in Kafka.
    let mut answered_duplicates = std::collections::HashSet::new();
    let mut results = Vec::new();
    let authz = Authz::new(broker, ctx);
    let may_create_any = authz.cluster(operation::CREATE);
    let mutations = super::ControllerMutations::new(broker, ctx, 6);
    for t in req.topics {
        let duplicate = seen.get(&t.name.0).copied().unwrap_or(0) > 1;
        if duplicate && !answered_duplicates.insert(t.name.0.clone()) {
            continue;
        }
        let result = CreatableTopicResult::default()
            .with_name(t.name.clone())
            // Null on success, as Kafka sends (the crate's default is "").
            .with_error_message(None)
            .with_topic_config_error_code(0);
        let outcome = if duplicate {
            Err(ApiError::new(ResponseError::InvalidRequest, "Duplicate topic name."))
        } else if !may_create_any && !authz.topic(operation::CREATE, &t.name.0) {
            // Kafka: CREATE on the cluster or on the topic.
            Err(ApiError::new(ResponseError::TopicAuthorizationFailed, "Authorization failed."))
        } else if let Err(throttled) = mutations.admit() {
            Err(throttled)
        } else {
            let created = create_one(broker, &t, req.validate_only).await;
            if let (Ok((partitions, ..)), false) = (&created, req.validate_only) {
                mutations.record((*partitions).max(0) as usize);
            }
            created
        };
        results.push(match outcome {
            // v5+ answers with the topic's settings only to a caller that may
            // describe its configs; others get TOPIC_AUTHORIZATION_FAILED in
            // topic_config_error_code, as Kafka's controller answers.
            Ok((_, _, _, id)) if version >= 5 && !authz.topic(operation::DESCRIBE_CONFIGS, &t.name.0) => result
                .with_topic_id(id)
                .with_num_partitions(-1)
                .with_replication_factor(-1)
                .with_configs(Some(Vec::new()))
                .with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code()),
            Ok((partitions, replication, configs, id)) => {
                let mut result = result.with_num_partitions(partitions).with_replication_factor(replication).with_topic_id(id);
                if version >= 5 {
                    let described = topic_configs(broker, &configs, None, false, false).unwrap_or_default();
                    result = result.with_configs(Some(
                        described
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(c.name)
                                    .with_value(c.value)
                                    .with_read_only(c.read_only)
                                    .with_config_source(c.config_source)
                                    .with_is_sensitive(c.is_sensitive)
                            })
                            .collect(),
                    ));
                }
                result
            }
            Err(e) => result
                .with_error_code(e.code())
                .with_error_message(e.message.map(StrBytes::from_string))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        });
    }
    Reply::Now(CreateTopicsResponse::default().with_topics(results).with_throttle_time_ms(mutations.throttle_time_ms(ctx)))
}

/// Validates one topic here (name, configs, counts, assignments), then has the
/// controller create it and waits until this broker has it. validate_only
/// checks against the applied cluster metadata and creates nothing, yet answers
/// with the id the topic would get, as Kafka does (a fresh one).
async fn create_one(
    broker: &Arc<Broker>,
    t: &CreatableTopic,
    validate_only: bool,
) -> Result<(i32, i16, BTreeMap<String, String>, uuid::Uuid), ApiError> {
    let name = t.name.0.to_string();
    validate_topic_name(&name)?;
    let mut configs = BTreeMap::new();
    for c in &t.configs {
        let Some(value) = &c.value else {
            return Err(ApiError::new(ResponseError::InvalidConfig, format!("Null value not supported for topic config {}", c.name)));
        };
        LogConfig::validate(&c.name, value).map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
        configs.insert(c.name.to_string(), value.to_string());
    }
    broker
        .replicas
        .dynamic_configs()
        .effective()
        .log_defaults
        .with_overrides(&configs)
        .map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
    let assignments = if t.assignments.is_empty() {
        None
    } else {
        if t.num_partitions != -1 || t.replication_factor != -1 {
            return Err(ApiError::new(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
        }
        let mut by_index: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
        for a in &t.assignments {
            by_index.insert(a.partition_index, a.broker_ids.iter().map(|b| b.0).collect());
        }
        if by_index.keys().copied().ne(0..by_index.len() as i32) {
            return Err(ApiError::new(ResponseError::InvalidReplicaAssignment, "Partitions should be a consecutive 0-based integer sequence."));
        }
        Some(by_index.into_values().collect::<Vec<_>>())
    };
    let partitions = match (&assignments, t.num_partitions) {
        (Some(a), _) => a.len() as i32,
        (None, -1) => broker.config.num_partitions,
        (None, n) => n,
    };
    let replication = match (&assignments, t.replication_factor) {
        (Some(a), _) => a.first().map_or(0, |r| r.len() as i16),
        (None, -1) => broker.config.default_replication_factor,
        (None, n) => n,
    };
    if partitions < 1 {
        return Err(ApiError::new(ResponseError::InvalidPartitions, "Number of partitions must be larger than 0."));
    }
    if replication < 1 {
        return Err(ApiError::new(ResponseError::InvalidReplicationFactor, "Replication factor must be larger than 0."));
    }
    let image = broker.cluster.image();
    if image.topic_by_name(&name).is_some() || broker.replicas.topic(&name).is_some() {
        return Err(ApiError::new(ResponseError::TopicAlreadyExists, format!("Topic '{name}' already exists.")));
    }
    let normalized = name.replace('.', "_");
    if let Some(other) = image.topic_ids_by_name.keys().find(|other| other.replace('.', "_") == normalized) {
        return Err(ApiError::new(ResponseError::InvalidTopicException, format!("Topic '{name}' collides with existing topic: {other}")));
    }
    if validate_only {
        if assignments.is_none() {
            // The controller's placement check, against the applied image.
            place_replicas(&image, 0, partitions, replication).map_err(|e| {
                ApiError::new(ResponseError::try_from_code(e.code).unwrap_or(ResponseError::InvalidReplicationFactor), e.message)
            })?;
        }
        return Ok((partitions, replication, configs, runnel_controller::random_kafka_uuid()));
    }
    let create = CreateTopic {
        name,
        num_partitions: if assignments.is_some() { -1 } else { partitions },
        replication_factor: if assignments.is_some() { -1 } else { replication },
        assignments,
        configs: configs.clone(),
    };
    match broker.cluster.submit(ControllerRequest::CreateTopic(create)).await? {
        ControllerResponse::TopicCreated { topic_id, num_partitions, replication_factor } => {
            // Answered once this broker has the topic (bounded: it is created either way).
            broker.cluster.wait_for_topic(&broker.replicas, topic_id).await;
            Ok((num_partitions, replication_factor, configs, topic_id))
        }
        other => Err(ApiError::new(ResponseError::UnknownServerError, format!("unexpected controller answer {other:?}"))),
    }
}
