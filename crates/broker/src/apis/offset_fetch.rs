//! OffsetFetch (key 9): committed offsets of a group (v8+: of several groups),
//! for given partitions or all of them; -1 where nothing was committed.
//! With `require_stable` (v7+, KIP-447) a partition whose transactional
//! commit is still pending answers UNSTABLE_OFFSET_COMMIT (offset -1): the
//! consumer retries until the transaction ends.

use std::sync::Arc;

use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{OffsetFetchRequest, OffsetFetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use runnel_controller::acl::operation;

use super::{Authz, Reply, RequestContext};
use crate::coordinator::offsets::{CommittedOffset, OffsetKey};
use crate::Broker;

type Found = (i32, Option<CommittedOffset>, Option<ResponseError>);

/// (topic, [(partition, committed, error)]) for one group and an optional topic filter.
/// Kafka: topics the caller may not DESCRIBE are left out of an all-topics
/// answer, and answered TOPIC_AUTHORIZATION_FAILED when named.
fn lookup(broker: &Broker, authz: &Authz, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>, require_stable: bool) -> Vec<(String, Vec<Found>)> {
    let all_topics = wanted.is_none();
    let mut found = lookup_committed(broker, group, wanted);
    if all_topics {
        found.retain(|(topic, _)| authz.topic(operation::DESCRIBE, topic));
    } else {
        for (topic, partitions) in &mut found {
            if !authz.topic(operation::DESCRIBE, topic) {
                for (_, committed, error) in partitions.iter_mut() {
                    *committed = None;
                    *error = Some(ResponseError::TopicAuthorizationFailed);
                }
            }
        }
    }
    if require_stable {
        for (topic, partitions) in &mut found {
            for (partition, committed, error) in partitions.iter_mut() {
                let key = OffsetKey { group: group.to_string(), topic: topic.clone(), partition: *partition };
                if broker.groups.has_pending_txn_offset(&key) {
                    *committed = None;
                    *error = Some(ResponseError::UnstableOffsetCommit);
                }
            }
        }
    }
    found
}

fn lookup_committed(broker: &Broker, group: &str, wanted: Option<Vec<(String, Vec<i32>)>>) -> Vec<(String, Vec<Found>)> {
    match wanted {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let found = partitions
                    .into_iter()
                    .map(|p| {
                        let key = OffsetKey { group: group.to_string(), topic: topic.clone(), partition: p };
                        (p, broker.groups.committed(&key), None)
                    })
                    .collect();
                (topic, found)
            })
            .collect(),
        None => {
            let mut out: Vec<(String, Vec<Found>)> = Vec::new();
            for (key, value) in broker.groups.committed_for_group(group) {
                match out.last_mut() {
                    Some((topic, parts)) if *topic == key.topic => parts.push((key.partition, Some(value), None)),
                    _ => out.push((key.topic.clone(), vec![(key.partition, Some(value), None)])),
                }
            }
            out
        }
    }
}

fn fields(c: &Option<CommittedOffset>) -> (i64, i32, Option<StrBytes>) {
    match c {
        Some(c) => (c.offset, c.leader_epoch, Some(StrBytes::from_string(c.metadata.clone()))),
        None => (-1, -1, Some(StrBytes::from_static_str(""))),
    }
}

pub async fn handle(broker: &Arc<Broker>, ctx: &RequestContext, req: OffsetFetchRequest) -> Reply<OffsetFetchResponse> {
    let authz = Authz::new(broker, ctx);
    if ctx.version >= 8 {
        let groups = req
            .groups
            .into_iter()
            .map(|g| {
                if !authz.group(operation::DESCRIBE, &g.group_id.0) {
                    return OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(ResponseError::GroupAuthorizationFailed.code());
                }
                if let Err(e) = broker.groups.check_coordinator(&g.group_id.0) {
                    return OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(e.code());
                }
                // v9: a consumer-protocol member names itself and its epoch; a stale one is refused.
                if let Some(member_id) = g.member_id.as_ref().filter(|_| g.member_epoch >= 0) {
                    if let Err(e) = broker.groups.validate_fetch(&g.group_id.0, member_id, g.member_epoch) {
                        return OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_error_code(e.code());
                    }
                }
                let wanted = g
                    .topics
                    .map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
                let topics = lookup(broker, &authz, &g.group_id.0, wanted, req.require_stable)
                    .into_iter()
                    .map(|(topic, parts)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(TopicName(StrBytes::from_string(topic)))
                            .with_partitions(
                                parts
                                    .iter()
                                    .map(|(p, c, error)| {
                                        let (offset, epoch, metadata) = fields(c);
                                        OffsetFetchResponsePartitions::default()
                                            .with_partition_index(*p)
                                            .with_error_code(error.map_or(0, |e| e.code()))
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(metadata)
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default().with_group_id(g.group_id).with_topics(topics)
            })
            .collect();
        return Reply::Now(OffsetFetchResponse::default().with_groups(groups));
    }
    if !authz.group(operation::DESCRIBE, &req.group_id.0) {
        return Reply::Now(coordinator_error(ctx.version, req, ResponseError::GroupAuthorizationFailed));
    }
    if let Err(e) = broker.groups.check_coordinator(&req.group_id.0) {
        return Reply::Now(coordinator_error(ctx.version, req, e));
    }
    let wanted = req.topics.map(|ts| ts.into_iter().map(|t| (t.name.0.to_string(), t.partition_indexes)).collect());
    let topics = lookup(broker, &authz, &req.group_id.0, wanted, ctx.version >= 7 && req.require_stable)
        .into_iter()
        .map(|(topic, parts)| {
            OffsetFetchResponseTopic::default().with_name(TopicName(StrBytes::from_string(topic))).with_partitions(
                parts
                    .iter()
                    .map(|(p, c, error)| {
                        let (offset, epoch, metadata) = fields(c);
                        OffsetFetchResponsePartition::default()
                            .with_partition_index(*p)
                            .with_error_code(error.map_or(0, |e| e.code()))
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(epoch)
                            .with_metadata(metadata)
                    })
                    .collect(),
            )
        })
        .collect();
    Reply::Now(OffsetFetchResponse::default().with_topics(topics))
}

/// OffsetFetch v0-7 from a broker that does not coordinate the group: the
/// error at the top level (v2+), and on every partition asked for (v0-1 have
/// nowhere else to put it).
fn coordinator_error(version: i16, req: OffsetFetchRequest, error: ResponseError) -> OffsetFetchResponse {
    let topics = req
        .topics
        .unwrap_or_default()
        .into_iter()
        .map(|t| {
            let partitions = t
                .partition_indexes
                .into_iter()
                .map(|p| {
                    let (offset, epoch, metadata) = fields(&None);
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_error_code(error.code())
                        .with_committed_offset(offset)
                        .with_committed_leader_epoch(epoch)
                        .with_metadata(metadata)
                })
                .collect();
            OffsetFetchResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_error_code(error.code())
    } else {
        response
    }
}
