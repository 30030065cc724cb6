//! CreateTopics (key 19): validates names, partition counts, replication
//! factors, assignments and configs; creates (or with validate_only, only
//! checks) each topic. v5+ answers with the topic's configs.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::protocol::StrBytes;
use runnel_storage::LogConfig;

use super::describe_configs::topic_configs;
use super::{Reply, RequestContext};
use crate::error::ApiError;
use crate::Broker;

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: CreateTopicsRequest) -> Reply<CreateTopicsResponse> {
    let mut seen: HashMap<StrBytes, usize> = HashMap::new();
    for t in &req.topics {
        *seen.entry(t.name.0.clone()).or_default() += 1;
    }
    let replicas = broker.replicas.clone();
    let broker = broker.clone();
    let version = ctx.version;
    let validate_only = req.validate_only;
    // Creating files and fsyncing metadata is blocking work.
    let topics = req.topics;
    let results = tokio::task::spawn_blocking(move || {
        // A name given twice gets one INVALID_REQUEST result, as in Kafka.
        let mut answered_duplicates = std::collections::HashSet::new();
        topics
            .into_iter()
            .filter(|t| seen.get(&t.name.0).copied().unwrap_or(0) <= 1 || answered_duplicates.insert(t.name.0.clone()))
            .map(|t| {
                let result = CreatableTopicResult::default()
                    .with_name(t.name.clone())
                    // Null on success, as Kafka sends (the crate's default is "").
                    .with_error_message(None)
                    .with_topic_config_error_code(0);
                let outcome = (|| -> Result<(i32, i16, BTreeMap<String, String>, Option<uuid::Uuid>), ApiError> {
                    if seen.get(&t.name.0).copied().unwrap_or(0) > 1 {
                        return Err(ApiError::new(ResponseError::InvalidRequest, "Duplicate topic name."));
                    }
                    let mut configs = BTreeMap::new();
                    for c in &t.configs {
                        let Some(value) = &c.value else {
                            return Err(ApiError::new(ResponseError::InvalidConfig, format!("Null value not supported for topic config {}", c.name)));
                        };
                        LogConfig::validate(&c.name, value).map_err(|e| ApiError::new(ResponseError::InvalidConfig, e.to_string()))?;
                        configs.insert(c.name.to_string(), value.to_string());
                    }
                    let (mut partitions, mut replication) = (t.num_partitions, t.replication_factor);
                    if !t.assignments.is_empty() {
                        if partitions != -1 || replication != -1 {
                            return Err(ApiError::new(ResponseError::InvalidRequest, "Both numPartitions or replicationFactor and replicasAssignments were set. Both cannot be used at the same time."));
                        }
                        for a in &t.assignments {
                            if a.broker_ids.iter().any(|b| b.0 != broker.config.node_id) {
                                return Err(ApiError::new(ResponseError::InvalidReplicaAssignment, format!("Partition {} is assigned to a broker that does not exist", a.partition_index)));
                            }
                        }
                        partitions = t.assignments.len() as i32;
                        replication = t.assignments.first().map(|a| a.broker_ids.len() as i16).unwrap_or(1);
                    }
                    let created = replicas.create_topic(&t.name.0, partitions, replication, configs.clone(), validate_only)?;
                    let partitions = if partitions == -1 { broker.config.num_partitions } else { partitions };
                    let replication = if replication == -1 { broker.config.default_replication_factor } else { replication };
                    // validate_only creates nothing, yet Kafka's answer carries
                    // the id the topic would get: a fresh one.
                    let id = created.map(|c| c.id).unwrap_or_else(uuid::Uuid::new_v4);
                    Ok((partitions, replication, configs, Some(id)))
                })();
                match outcome {
                    Ok((partitions, replication, configs, id)) => {
                        let mut result = result.with_num_partitions(partitions).with_replication_factor(replication);
                        if let Some(id) = id {
                            result = result.with_topic_id(id);
                        }
                        if version >= 5 {
                            let described = topic_configs(&broker, &configs, None, false, false).unwrap_or_default();
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
                }
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default();
    Reply::Now(CreateTopicsResponse::default().with_topics(results))
}
