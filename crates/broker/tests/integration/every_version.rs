//! Every API the broker advertises, at every version it accepts, over TCP.
//!
//! The versions come from `SUPPORTED_APIS`, so a newly advertised API or
//! version is covered automatically, and an API without a request builder
//! here fails the test. Requests are meaningful (topics with records, groups
//! with members and committed offsets) so that each handler sets the fields it
//! sets for real clients: kafka-protocol refuses to encode a field that does
//! not exist at the response's version, and a handler that sets one anyway
//! leaves its client without an answer (ListOffsets v1-v3 did, with the
//! leader epoch). Each answer must carry the request's correlation id, decode
//! at the request's version, and say what the request asked. Error paths,
//! where handlers set error fields, are probed as well.


use crate::common;
use bytes::Bytes;
use crate::common::{record_batch, s, topic_name, Client};
use kafka_protocol::messages::*;
use kafka_protocol::records::{Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
use runnel_broker::apis::SUPPORTED_APIS;
use uuid::Uuid;

const TOPIC: &str = "every";
const RECORDS: i64 = 3;
const TIMESTAMP: i64 = common::BASE_TIMESTAMP;
const COMMITTED_GROUP: &str = "committed";
const COMMITTED_OFFSET: i64 = 2;

fn group_id(name: &str) -> GroupId {
    GroupId(s(name))
}

/// `count` records valued v0, v1, … created at TIMESTAMP + i.
fn batch(count: i64) -> Bytes {
    let values: Vec<String> = (0..count).map(|i| format!("v{i}")).collect();
    record_batch(&values.iter().map(String::as_str).collect::<Vec<_>>())
}

/// `count` records of producer `producer_id` from sequence 0, created at TIMESTAMP + i.
fn idempotent_batch(producer_id: i64, producer_epoch: i16, count: i64) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32,
            timestamp: TIMESTAMP + i,
            key: None,
            value: Some(Bytes::from(format!("v{i}"))),
            headers: Default::default(),
        })
        .collect();
    let mut buf = bytes::BytesMut::new();
    RecordBatchEncoder::encode(&mut buf, &records, &RecordEncodeOptions { version: 2, compression: Compression::None }).expect("a test batch encodes");
    buf.freeze()
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// Broker state the requests refer to.
struct Fixture {
    topic_id: Uuid,
    /// A stable classic group with one member.
    active_group: &'static str,
    active_member: String,
    active_generation: i32,
}

const PROTOCOL: &str = "range";

fn join_request(version: i16, group: &str, member_id: &str) -> JoinGroupRequest {
    let mut req = JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(60_000)
        .with_member_id(s(member_id))
        .with_protocol_type(s("consumer"))
        .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default()
            .with_name(s(PROTOCOL))
            .with_metadata(Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 5, b'e', b'v', b'e', b'r', b'y', 0, 0, 0, 0]))]);
    if version >= 1 {
        req = req.with_rebalance_timeout_ms(60_000);
    }
    req
}

/// Joins `group` as its only member at `version` (answering MEMBER_ID_REQUIRED
/// from v4 on); returns the final JoinGroup answer.
async fn join(client: &mut Client, version: i16, group: &str) -> Result<JoinGroupResponse, String> {
    let first = client.try_request(version, &join_request(version, group, "")).await?;
    if first.error_code != 79 {
        return Ok(first);
    }
    check(version >= 4, || format!("MEMBER_ID_REQUIRED at v{version}"))?;
    let member = first.member_id.to_string();
    client.try_request(version, &join_request(version, group, &member)).await
}

fn sync_request(version: i16, group: &str, member: &str, generation: i32) -> SyncGroupRequest {
    let mut req = SyncGroupRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id(generation)
        .with_member_id(s(member))
        .with_assignments(vec![sync_group_request::SyncGroupRequestAssignment::default()
            .with_member_id(s(member))
            .with_assignment(Bytes::from_static(&[0, 1, 0, 0, 0, 1, 0, 5, b'e', b'v', b'e', b'r', b'y', 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]))]);
    if version >= 5 {
        req = req.with_protocol_type(Some(s("consumer"))).with_protocol_name(Some(s(PROTOCOL)));
    }
    req
}

/// Joins and syncs `group` with one member (JoinGroup v5, SyncGroup v3): (member id, generation).
async fn stable_group(client: &mut Client, group: &str) -> Result<(String, i32), String> {
    let joined = join(client, 5, group).await?;
    check(joined.error_code == 0, || format!("join {group}: error {}", joined.error_code))?;
    let member = joined.member_id.to_string();
    let synced = client.try_request(3, &sync_request(3, group, &member, joined.generation_id)).await?;
    check(synced.error_code == 0, || format!("sync {group}: error {}", synced.error_code))?;
    Ok((member, joined.generation_id))
}

fn commit_request(version: i16, group: &str, topic: &str, offset: i64) -> OffsetCommitRequest {
    let mut partition = offset_commit_request::OffsetCommitRequestPartition::default()
        .with_partition_index(0)
        .with_committed_offset(offset)
        .with_committed_metadata(Some(s("meta")));
    if version >= 6 {
        partition = partition.with_committed_leader_epoch(0);
    }
    OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic_name(topic)).with_partitions(vec![partition])])
}

async fn create_topic(client: &mut Client, name: &str, partitions: i32) -> Result<(), String> {
    let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(topic_name(name))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    let resp = client.try_request(7, &req).await?;
    check(resp.topics.first().map(|t| t.error_code) == Some(0), || format!("create {name}: {:?}", resp.topics.first().map(|t| t.error_code)))
}

async fn produce(client: &mut Client, topic: &str, count: i64) -> Result<(), String> {
    let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![produce_request::TopicProduceData::default()
        .with_name(topic_name(topic))
        .with_partition_data(vec![produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch(count)))])]);
    let resp = client.try_request(9, &req).await?;
    let code = resp.responses[0].partition_responses[0].error_code;
    check(code == 0, || format!("produce to {topic}: error {code}"))
}

async fn setup(client: &mut Client) -> Result<Fixture, String> {
    create_topic(client, TOPIC, 1).await?;
    produce(client, TOPIC, RECORDS).await?;
    create_topic(client, "grow", 1).await?;
    create_topic(client, "trim", 1).await?;
    produce(client, "trim", 10).await?;
    let metadata = client
        .try_request(12, &MetadataRequest::default().with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC)))])))
        .await?;
    let topic_id = metadata.topics[0].topic_id;
    check(!topic_id.is_nil(), || "the topic has no id".into())?;
    let committed = client.try_request(8, &commit_request(8, COMMITTED_GROUP, TOPIC, COMMITTED_OFFSET)).await?;
    check(committed.topics[0].partitions[0].error_code == 0, || "setup commit failed".into())?;
    let active_group = "active";
    let (active_member, active_generation) = stable_group(client, active_group).await?;
    Ok(Fixture { topic_id, active_group, active_member, active_generation })
}

/// Drives one API at one version: a meaningful request, and checks on its answer.
async fn exercise(client: &mut Client, f: &Fixture, api: ApiKey, v: i16) -> Result<(), String> {
    match api {
        ApiKey::Produce => {
            let mut topic = produce_request::TopicProduceData::default()
                .with_partition_data(vec![produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch(1)))]);
            topic = if v >= 13 { topic.with_topic_id(f.topic_id) } else { topic.with_name(topic_name(TOPIC)) };
            let resp = client.try_request(v, &ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![topic])).await?;
            let p = &resp.responses[0].partition_responses[0];
            check(p.error_code == 0 && p.base_offset >= RECORDS, || format!("produce answered error {} at offset {}", p.error_code, p.base_offset))
        }
        ApiKey::Fetch => {
            let mut topic = fetch_request::FetchTopic::default().with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)]);
            topic = if v >= 13 { topic.with_topic_id(f.topic_id) } else { topic.with_topic(topic_name(TOPIC)) };
            let mut req = FetchRequest::default().with_max_wait_ms(0).with_min_bytes(1).with_max_bytes(1 << 20).with_topics(vec![topic]);
            if v < 15 {
                req = req.with_replica_id(BrokerId(-1));
            }
            let resp = client.try_request(v, &req).await?;
            let p = &resp.responses[0].partitions[0];
            check(p.error_code == 0 && p.high_watermark >= RECORDS, || format!("fetch: error {} high watermark {}", p.error_code, p.high_watermark))?;
            let mut records = p.records.clone().unwrap_or_default();
            let batches = RecordBatchDecoder::decode_all(&mut records).map_err(|e| format!("fetched records do not decode: {e}"))?;
            let first = batches.first().and_then(|b| b.records.first()).map(|r| (r.offset, r.value.clone()));
            check(first == Some((0, Some(Bytes::from_static(b"v0")))), || format!("first fetched record {first:?}"))
        }
        ApiKey::ListOffsets => {
            let partitions = [-2i64, -1, TIMESTAMP + 1]
                .into_iter()
                .map(|ts| list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(ts))
                .collect::<Vec<_>>();
            let mut found = Vec::new();
            // One partition per request: older versions forbid a partition twice.
            for p in partitions {
                let mut req = ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![p])]);
                if v >= 10 {
                    req = req.with_timeout_ms(10_000);
                }
                let resp = client.try_request(v, &req).await?;
                let answer = &resp.topics[0].partitions[0];
                check(answer.error_code == 0, || format!("list offsets error {}", answer.error_code))?;
                found.push(answer.offset);
                if v >= 4 {
                    check(answer.leader_epoch >= 0, || format!("leader epoch {} at v{v}", answer.leader_epoch))?;
                }
            }
            // Earliest, latest (grows as Produce runs first), and by timestamp.
            check(found[0] == 0 && found[1] >= RECORDS && found[2] == 1, || format!("offsets (earliest, latest, by time) = {found:?}"))
        }
        ApiKey::Metadata => {
            let mut req = MetadataRequest::default().with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC)))]));
            if v >= 8 {
                req = req.with_include_topic_authorized_operations(true);
            }
            if (8..=10).contains(&v) {
                req = req.with_include_cluster_authorized_operations(true);
            }
            let resp = client.try_request(v, &req).await?;
            check(resp.brokers.len() == 1, || format!("{} brokers", resp.brokers.len()))?;
            let t = &resp.topics[0];
            check(t.error_code == 0 && t.partitions.len() == 1, || format!("metadata topic error {} with {} partitions", t.error_code, t.partitions.len()))
        }
        ApiKey::ApiVersions => {
            let mut req = ApiVersionsRequest::default();
            if v >= 3 {
                req = req.with_client_software_name(s("every-version-test")).with_client_software_version(s("1"));
            }
            let resp = client.try_request(v, &req).await?;
            check(resp.error_code == 0 && resp.api_keys.len() == SUPPORTED_APIS.len(), || format!("api versions error {} with {} keys", resp.error_code, resp.api_keys.len()))
        }
        ApiKey::InitProducerId => {
            let resp = client.try_request(v, &InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(60_000)).await?;
            check(resp.error_code == 0 && resp.producer_id.0 >= 0, || format!("init producer id: error {} id {}", resp.error_code, resp.producer_id.0))
        }
        ApiKey::FindCoordinator => {
            let (node, error) = if v >= 4 {
                let resp = client.try_request(v, &FindCoordinatorRequest::default().with_coordinator_keys(vec![s(COMMITTED_GROUP)])).await?;
                let c = resp.coordinators.first().ok_or("no coordinator")?;
                (c.node_id.0, c.error_code)
            } else {
                let resp = client.try_request(v, &FindCoordinatorRequest::default().with_key(s(COMMITTED_GROUP))).await?;
                (resp.node_id.0, resp.error_code)
            };
            check(error == 0 && node >= 0, || format!("find coordinator: error {error} node {node}"))
        }
        ApiKey::JoinGroup => {
            let resp = join(client, v, &format!("join-v{v}")).await?;
            check(resp.error_code == 0 && resp.leader == resp.member_id && resp.members.len() == 1, || {
                format!("join: error {} leader {:?} member {:?} members {}", resp.error_code, resp.leader, resp.member_id, resp.members.len())
            })
        }
        ApiKey::SyncGroup => {
            let group = format!("sync-v{v}");
            let joined = join(client, 5, &group).await?;
            let resp = client.try_request(v, &sync_request(v, &group, &joined.member_id, joined.generation_id)).await?;
            check(resp.error_code == 0 && !resp.assignment.is_empty(), || format!("sync: error {} assignment {:?}", resp.error_code, resp.assignment))
        }
        ApiKey::Heartbeat => {
            let req = HeartbeatRequest::default()
                .with_group_id(group_id(f.active_group))
                .with_generation_id(f.active_generation)
                .with_member_id(s(&f.active_member));
            let resp = client.try_request(v, &req).await?;
            check(resp.error_code == 0, || format!("heartbeat error {}", resp.error_code))
        }
        ApiKey::LeaveGroup => {
            let group = format!("leave-v{v}");
            let (member, _) = stable_group(client, &group).await?;
            let req = if v >= 3 {
                LeaveGroupRequest::default()
                    .with_group_id(group_id(&group))
                    .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(s(&member))])
            } else {
                LeaveGroupRequest::default().with_group_id(group_id(&group)).with_member_id(s(&member))
            };
            let resp = client.try_request(v, &req).await?;
            let member_errors: Vec<i16> = resp.members.iter().map(|m| m.error_code).collect();
            check(resp.error_code == 0 && member_errors.iter().all(|c| *c == 0), || format!("leave: error {} members {member_errors:?}", resp.error_code))
        }
        ApiKey::OffsetCommit => {
            let group = format!("commit-v{v}");
            let resp = client.try_request(v, &commit_request(v, &group, TOPIC, 1)).await?;
            let code = resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code);
            check(code == Some(0), || format!("commit: {code:?}"))
        }
        ApiKey::OffsetFetch => {
            let (offset, error) = if v >= 8 {
                let req = OffsetFetchRequest::default().with_groups(vec![offset_fetch_request::OffsetFetchRequestGroup::default()
                    .with_group_id(group_id(COMMITTED_GROUP))
                    .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopics::default().with_name(topic_name(TOPIC)).with_partition_indexes(vec![0])]))]);
                let resp = client.try_request(v, &req).await?;
                let g = resp.groups.first().ok_or("no group in the answer")?;
                let p = g.topics.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
                (p.committed_offset, g.error_code.max(p.error_code))
            } else {
                let req = OffsetFetchRequest::default()
                    .with_group_id(group_id(COMMITTED_GROUP))
                    .with_topics(Some(vec![offset_fetch_request::OffsetFetchRequestTopic::default().with_name(topic_name(TOPIC)).with_partition_indexes(vec![0])]));
                let resp = client.try_request(v, &req).await?;
                let p = resp.topics.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
                (p.committed_offset, resp.error_code.max(p.error_code))
            };
            check(error == 0 && offset == COMMITTED_OFFSET, || format!("offset fetch: error {error} offset {offset}"))
        }
        ApiKey::ListGroups => {
            let resp = client.try_request(v, &ListGroupsRequest::default()).await?;
            let found = resp.groups.iter().any(|g| g.group_id.0.as_str() == f.active_group);
            check(resp.error_code == 0 && found, || format!("list groups: error {} found active: {found}", resp.error_code))
        }
        ApiKey::DescribeGroups => {
            let mut req = DescribeGroupsRequest::default().with_groups(vec![group_id(f.active_group)]);
            if v >= 3 {
                req = req.with_include_authorized_operations(true);
            }
            let resp = client.try_request(v, &req).await?;
            let g = resp.groups.first().ok_or("no group in the answer")?;
            check(g.error_code == 0 && g.group_state.as_str() == "Stable" && g.members.len() == 1, || {
                format!("describe: error {} state {} members {}", g.error_code, g.group_state.as_str(), g.members.len())
            })
        }
        ApiKey::DeleteGroups => {
            let group = format!("delete-v{v}");
            client.try_request(8, &commit_request(8, &group, TOPIC, 1)).await?;
            let resp = client.try_request(v, &DeleteGroupsRequest::default().with_groups_names(vec![group_id(&group)])).await?;
            let code = resp.results.first().map(|r| r.error_code);
            check(code == Some(0), || format!("delete groups: {code:?}"))
        }
        ApiKey::OffsetDelete => {
            let group = format!("offset-delete-v{v}");
            client.try_request(8, &commit_request(8, &group, TOPIC, 1)).await?;
            let req = OffsetDeleteRequest::default().with_group_id(group_id(&group)).with_topics(vec![offset_delete_request::OffsetDeleteRequestTopic::default()
                .with_name(topic_name(TOPIC))
                .with_partitions(vec![offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)])]);
            let resp = client.try_request(v, &req).await?;
            let code = resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code);
            check(resp.error_code == 0 && code == Some(0), || format!("offset delete: error {} partition {code:?}", resp.error_code))
        }
        ApiKey::ConsumerGroupHeartbeat => {
            let group = format!("consumer-v{v}");
            // From v1 the member chooses its id (KIP-1082).
            let member_id = if v >= 1 { Uuid::new_v4().to_string() } else { String::new() };
            let req = ConsumerGroupHeartbeatRequest::default()
                .with_group_id(group_id(&group))
                .with_member_id(s(&member_id))
                .with_member_epoch(0)
                .with_rebalance_timeout_ms(60_000)
                .with_subscribed_topic_names(Some(vec![topic_name(TOPIC)]))
                .with_topic_partitions(Some(vec![]));
            let resp = client.try_request(v, &req).await?;
            check(resp.error_code == 0 && resp.member_epoch > 0, || format!("consumer heartbeat: error {} {:?} epoch {}", resp.error_code, resp.error_message, resp.member_epoch))?;
            // Heartbeat again until the assignment arrives, so that the describe below shows it.
            let member = resp.member_id.clone().unwrap_or_default();
            let again = req.with_member_id(member).with_member_epoch(resp.member_epoch);
            let resp = client.try_request(v, &again).await?;
            check(resp.error_code == 0, || format!("second consumer heartbeat: error {}", resp.error_code))?;
            let described = client
                .try_request(v.min(1), &ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id(&group)]).with_include_authorized_operations(true))
                .await?;
            let g = described.groups.first().ok_or("no group in the answer")?;
            check(g.error_code == 0 && g.members.len() == 1, || format!("describe consumer group: error {} members {}", g.error_code, g.members.len()))
        }
        ApiKey::ConsumerGroupDescribe => {
            let req = ConsumerGroupDescribeRequest::default().with_group_ids(vec![group_id("consumer-v0"), group_id("missing")]).with_include_authorized_operations(true);
            let resp = client.try_request(v, &req).await?;
            let codes: Vec<i16> = resp.groups.iter().map(|g| g.error_code).collect();
            check(codes == vec![0, 69], || format!("consumer group describe codes {codes:?} (want found, GROUP_ID_NOT_FOUND)"))
        }
        ApiKey::CreateTopics => {
            let name = format!("created-v{v}");
            let req = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(topic_name(&name))
                .with_num_partitions(2)
                .with_replication_factor(1)
                .with_configs(vec![create_topics_request::CreatableTopicConfig::default().with_name(s("retention.ms")).with_value(Some(s("3600000")))])]);
            let resp = client.try_request(v, &req).await?;
            let t = resp.topics.first().ok_or("no topic in the answer")?;
            check(t.error_code == 0, || format!("create topic: error {} {:?}", t.error_code, t.error_message))?;
            // Creating it again names the problem.
            let again = client.try_request(v, &req).await?;
            let code = again.topics.first().map(|t| t.error_code);
            check(code == Some(36), || format!("creating an existing topic: {code:?} (want TOPIC_ALREADY_EXISTS)"))
        }
        ApiKey::DeleteTopics => {
            let name = format!("doomed-v{v}");
            create_topic(client, &name, 1).await?;
            let req = if v >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic_name(&name)))])
            } else {
                DeleteTopicsRequest::default().with_topic_names(vec![topic_name(&name)])
            };
            let resp = client.try_request(v, &req.with_timeout_ms(10_000)).await?;
            let code = resp.responses.first().map(|r| r.error_code);
            check(code == Some(0), || format!("delete topic: {code:?}"))
        }
        ApiKey::CreatePartitions => {
            let count = v as i32 + 2;
            let req = CreatePartitionsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_partitions_request::CreatePartitionsTopic::default()
                .with_name(topic_name("grow"))
                .with_count(count)
                // Null, as clients send it: the controller places the new partitions.
                .with_assignments(None)]);
            let resp = client.try_request(v, &req).await?;
            let code = resp.results.first().map(|r| r.error_code);
            check(code == Some(0), || format!("create partitions to {count}: {code:?}"))
        }
        ApiKey::DeleteRecords => {
            let before = v as i64 + 1;
            let req = DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                .with_name(topic_name("trim"))
                .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(before)])]);
            let resp = client.try_request(v, &req).await?;
            let p = resp.topics.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
            check(p.error_code == 0 && p.low_watermark == before, || format!("delete records: error {} low watermark {}", p.error_code, p.low_watermark))
        }
        ApiKey::DescribeConfigs => {
            let resources = vec![
                describe_configs_request::DescribeConfigsResource::default().with_resource_type(2).with_resource_name(s(TOPIC)).with_configuration_keys(None),
                describe_configs_request::DescribeConfigsResource::default().with_resource_type(4).with_resource_name(s("1")).with_configuration_keys(None),
            ];
            let mut req = DescribeConfigsRequest::default().with_resources(resources).with_include_synonyms(true);
            if v >= 3 {
                req = req.with_include_documentation(true);
            }
            let resp = client.try_request(v, &req).await?;
            let summary: Vec<(i16, usize)> = resp.results.iter().map(|r| (r.error_code, r.configs.len())).collect();
            check(summary.len() == 2 && summary.iter().all(|(code, n)| *code == 0 && *n > 0), || format!("describe configs (error, configs): {summary:?}"))
        }
        ApiKey::AlterConfigs => {
            let req = AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(TOPIC))
                .with_configs(vec![alter_configs_request::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("604800000")))])]);
            let resp = client.try_request(v, &req).await?;
            let code = resp.responses.first().map(|r| r.error_code);
            check(code == Some(0), || format!("alter configs: {code:?}"))
        }
        ApiKey::IncrementalAlterConfigs => {
            let req = IncrementalAlterConfigsRequest::default().with_resources(vec![incremental_alter_configs_request::AlterConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(s(TOPIC))
                .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(s("retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(s("604800000")))])]);
            let resp = client.try_request(v, &req).await?;
            let code = resp.responses.first().map(|r| r.error_code);
            check(code == Some(0), || format!("incremental alter configs: {code:?}"))
        }
        ApiKey::ListConfigResources => {
            // v0 lists client-metrics resources (none); v1 every resource type, the topic included.
            let resp = client.try_request(v, &ListConfigResourcesRequest::default()).await?;
            let holds_topic = resp.config_resources.iter().any(|r| r.resource_type == 2 && r.resource_name.as_str() == TOPIC);
            check(resp.error_code == 0 && holds_topic == (v >= 1), || format!("list config resources v{v}: error {} topic listed {holds_topic}", resp.error_code))
        }
        ApiKey::DescribeCluster => {
            let resp = client.try_request(v, &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true)).await?;
            check(resp.error_code == 0 && resp.brokers.len() == 1, || format!("describe cluster: error {} brokers {}", resp.error_code, resp.brokers.len()))
        }
        ApiKey::DescribeTopicPartitions => {
            // A one-partition budget over every topic: the answer stops after
            // the first topic's partition and names where to resume.
            let resp = client.try_request(v, &DescribeTopicPartitionsRequest::default().with_response_partition_limit(1)).await?;
            let first = resp.topics.first().ok_or("no topic in the answer")?;
            check(resp.topics.len() == 1 && first.error_code == 0 && first.partitions.len() == 1, || format!("describe topic partitions: {:?}", resp.topics))?;
            let cursor = resp.next_cursor.ok_or("no cursor although topics remain")?;
            let next = DescribeTopicPartitionsRequest::default().with_cursor(Some(
                describe_topic_partitions_request::Cursor::default().with_topic_name(cursor.topic_name).with_partition_index(cursor.partition_index),
            ));
            let rest = client.try_request(v, &next.with_response_partition_limit(2000)).await?;
            let mut names: Vec<&str> = resp.topics.iter().chain(&rest.topics).filter_map(|t| t.name.as_ref().map(|n| n.0.as_str())).collect();
            names.dedup();
            check(names.contains(&TOPIC) && names.windows(2).all(|w| w[0] < w[1]) && rest.next_cursor.is_none(), || format!("paged topics: {names:?}"))
        }
        ApiKey::OffsetForLeaderEpoch => {
            // Epoch 0 is the single node's current epoch: it ends at the log end.
            let partition = |current: i32| {
                offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(current)
                    .with_leader_epoch(0)
            };
            let req = OffsetForLeaderEpochRequest::default().with_topics(vec![offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic_name(TOPIC))
                .with_partitions(vec![partition(-1)])]);
            let req = if v >= 3 { req.with_replica_id(BrokerId(-1)) } else { req };
            let resp = client.try_request(v, &req).await?;
            let p = &resp.topics[0].partitions[0];
            check(p.error_code == 0 && p.leader_epoch == 0 && p.end_offset >= RECORDS, || format!("offset for leader epoch: {p:?}"))?;
            // A current leader epoch newer than the broker's: UNKNOWN_LEADER_EPOCH (75).
            let req = OffsetForLeaderEpochRequest::default().with_topics(vec![offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(topic_name(TOPIC))
                .with_partitions(vec![partition(5)])]);
            let resp = client.try_request(v, &req).await?;
            let p = &resp.topics[0].partitions[0];
            check(p.error_code == 75 && p.end_offset == -1 && p.leader_epoch == -1, || format!("newer current epoch: {p:?}"))
        }
        ApiKey::DescribeProducers => {
            // An idempotent producer writes to its own topic, then is described.
            let topic = "idempotent";
            create_topic(client, topic, 1).await?;
            let issued = client.try_request(4, &InitProducerIdRequest::default().with_transactional_id(None).with_transaction_timeout_ms(-1)).await?;
            check(issued.error_code == 0, || format!("init producer id: error {}", issued.error_code))?;
            let records = idempotent_batch(issued.producer_id.0, issued.producer_epoch, 3);
            let req = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![produce_request::PartitionProduceData::default().with_index(0).with_records(Some(records))])]);
            let code = client.try_request(9, &req).await?.responses[0].partition_responses[0].error_code;
            check(code == 0, || format!("idempotent produce: error {code}"))?;
            let req = DescribeProducersRequest::default().with_topics(vec![describe_producers_request::TopicRequest::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![0])]);
            let resp = client.try_request(v, &req).await?;
            let p = resp.topics.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
            let described: Vec<(i64, i32, i32, i64)> =
                p.active_producers.iter().map(|a| (a.producer_id.0, a.producer_epoch, a.last_sequence, a.last_timestamp)).collect();
            let expected = (issued.producer_id.0, issued.producer_epoch as i32, 2, TIMESTAMP + 2);
            check(p.error_code == 0 && described == vec![expected], || format!("describe producers: error {} producers {described:?}, expected {expected:?}", p.error_code))
        }
        ApiKey::AddPartitionsToTxn => {
            let txn = format!("add-partitions-v{v}");
            let (producer_id, epoch) = init_transactional(client, &txn).await?;
            let topics = vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![0])];
            let req = if v < 4 {
                AddPartitionsToTxnRequest::default()
                    .with_v3_and_below_transactional_id(TransactionalId(s(&txn)))
                    .with_v3_and_below_producer_id(ProducerId(producer_id))
                    .with_v3_and_below_producer_epoch(epoch)
                    .with_v3_and_below_topics(topics)
            } else {
                AddPartitionsToTxnRequest::default().with_transactions(vec![add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                    .with_transactional_id(TransactionalId(s(&txn)))
                    .with_producer_id(ProducerId(producer_id))
                    .with_producer_epoch(epoch)
                    .with_topics(topics)])
            };
            let resp = client.try_request(v, &req).await?;
            let results = if v < 4 { resp.results_by_topic_v3_and_below } else { resp.results_by_transaction.into_iter().flat_map(|t| t.topic_results).collect() };
            let codes: Vec<i16> = results.iter().flat_map(|t| t.results_by_partition.iter().map(|p| p.partition_error_code)).collect();
            check(codes == vec![0], || format!("add partitions: {codes:?}"))
        }
        ApiKey::AddOffsetsToTxn => {
            let txn = format!("add-offsets-v{v}");
            let (producer_id, epoch) = init_transactional(client, &txn).await?;
            let req = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&txn)))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_group_id(group_id(COMMITTED_GROUP));
            let code = client.try_request(v, &req).await?.error_code;
            check(code == 0, || format!("add offsets: error {code}"))
        }
        ApiKey::EndTxn => {
            let txn = format!("end-txn-v{v}");
            let (producer_id, epoch) = init_transactional(client, &txn).await?;
            add_partition(client, &txn, producer_id, epoch).await?;
            let req = EndTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&txn)))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_committed(true);
            let code = client.try_request(v, &req).await?.error_code;
            check(code == 0, || format!("end txn: error {code}"))
        }
        ApiKey::WriteTxnMarkers => {
            let topic = format!("markers-v{v}");
            create_topic(client, &topic, 1).await?;
            let req = WriteTxnMarkersRequest::default().with_markers(vec![write_txn_markers_request::WritableTxnMarker::default()
                .with_producer_id(ProducerId(424242))
                .with_producer_epoch(0)
                .with_transaction_result(false)
                .with_coordinator_epoch(0)
                .with_topics(vec![write_txn_markers_request::WritableTxnMarkerTopic::default().with_name(topic_name(&topic)).with_partition_indexes(vec![0])])]);
            let resp = client.try_request(v, &req).await?;
            let codes: Vec<i16> = resp.markers.iter().flat_map(|m| m.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code))).collect();
            check(codes == vec![0], || format!("write markers: {codes:?}"))
        }
        ApiKey::TxnOffsetCommit => {
            let txn = format!("txn-offset-commit-v{v}");
            let (producer_id, epoch) = init_transactional(client, &txn).await?;
            let group = format!("txn-group-v{v}");
            let add = AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(s(&txn)))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_group_id(group_id(&group));
            check(client.try_request(3, &add).await?.error_code == 0, || "add offsets failed".into())?;
            let req = TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(s(&txn)))
                .with_group_id(group_id(&group))
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])]);
            let resp = client.try_request(v, &req).await?;
            let codes: Vec<i16> = resp.topics.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
            check(codes == vec![0], || format!("txn offset commit: {codes:?}"))
        }
        ApiKey::DescribeTransactions => {
            let txn = format!("describe-v{v}");
            let (producer_id, epoch) = init_transactional(client, &txn).await?;
            add_partition(client, &txn, producer_id, epoch).await?;
            let resp = client.try_request(v, &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s(&txn))])).await?;
            let t = resp.transaction_states.first().ok_or("no transaction in the answer")?;
            let topics: Vec<(String, Vec<i32>)> = t.topics.iter().map(|d| (d.topic.0.to_string(), d.partitions.clone())).collect();
            check(
                t.error_code == 0 && t.transaction_state.as_str() == "Ongoing" && t.producer_id.0 == producer_id && topics == vec![(TOPIC.to_string(), vec![0])],
                || format!("describe transactions: {t:?}"),
            )
        }
        ApiKey::ListTransactions => {
            let txn = format!("list-v{v}");
            let (producer_id, _) = init_transactional(client, &txn).await?;
            let req = ListTransactionsRequest::default().with_producer_id_filters(vec![ProducerId(producer_id)]).with_duration_filter(-1);
            let resp = client.try_request(v, &req).await?;
            let listed: Vec<(String, String)> = resp.transaction_states.iter().map(|t| (t.transactional_id.0.to_string(), t.transaction_state.to_string())).collect();
            check(resp.error_code == 0 && listed == vec![(txn.clone(), "Empty".to_string())], || format!("list transactions: {listed:?}"))
        }
        ApiKey::DescribeLogDirs => {
            // Null topics: every partition held here; then just TOPIC-0.
            for topics in [None, Some(vec![describe_log_dirs_request::DescribableLogDirTopic::default().with_topic(topic_name(TOPIC)).with_partitions(vec![0])])] {
                let all = topics.is_none();
                let resp = client.try_request(v, &DescribeLogDirsRequest::default().with_topics(topics)).await?;
                let dir = resp.results.first().ok_or("no log dir in the answer")?;
                let every = dir.topics.iter().find(|t| t.name.0.as_str() == TOPIC).ok_or_else(|| format!("{TOPIC} not in the log dir (all: {all})"))?;
                let p0 = every.partitions.iter().find(|p| p.partition_index == 0).ok_or("no partition 0")?;
                check(resp.error_code == 0 && dir.error_code == 0 && resp.results.len() == 1, || format!("describe log dirs: {resp:?}"))?;
                check(p0.partition_size > 0 && p0.offset_lag == 0 && !p0.is_future_key, || format!("{TOPIC}-0: {p0:?}"))?;
                check(all || (dir.topics.len() == 1 && every.partitions.len() == 1), || format!("only {TOPIC}-0 was asked for: {:?}", dir.topics))?;
                check(v < 4 || (dir.total_bytes > 0 && dir.usable_bytes >= 0 && dir.usable_bytes <= dir.total_bytes), || format!("space: {dir:?}"))?;
                check(dir.log_dir.starts_with('/'), || format!("log dir {:?} is not absolute", dir.log_dir))?;
            }
            Ok(())
        }
        ApiKey::DescribeQuorum => {
            let resp = client.try_request(v, &describe_quorum(v, "__cluster_metadata")).await?;
            let p = resp.topics.first().and_then(|t| t.partitions.first()).ok_or("no partition in the answer")?;
            // A quorum of one: this node leads, is the only voter and is caught up.
            let voters: Vec<(i32, i64)> = p.current_voters.iter().map(|r| (r.replica_id.0, r.log_end_offset)).collect();
            check(resp.error_code == 0 && p.error_code == 0 && p.leader_id.0 >= 0 && p.leader_epoch >= 1 && p.high_watermark > 0, || format!("describe quorum: {p:?}"))?;
            check(voters == vec![(p.leader_id.0, p.high_watermark)] && p.observers.is_empty(), || format!("voters {voters:?}, high watermark {}", p.high_watermark))?;
            check(v < 1 || p.current_voters[0].last_caught_up_timestamp > 0, || format!("the leader's timestamps: {:?}", p.current_voters[0]))?;
            check((v >= 2) == (resp.nodes.len() == 1), || format!("nodes at v{v}: {:?}", resp.nodes))
        }
        ApiKey::ElectLeaders => {
            // One node: its replica already leads every partition, preferred or not.
            let election_types: &[i8] = if v >= 1 { &[0, 1] } else { &[0] };
            for &election_type in election_types {
                let req = ElectLeadersRequest::default()
                    .with_election_type(election_type)
                    .with_timeout_ms(10_000)
                    .with_topic_partitions(Some(vec![elect_leaders_request::TopicPartitions::default().with_topic(topic_name(TOPIC)).with_partitions(vec![0])]));
                let resp = client.try_request(v, &req).await?;
                let results: Vec<(String, i32, i16)> = resp
                    .replica_election_results
                    .iter()
                    .flat_map(|t| t.partition_result.iter().map(move |p| (t.topic.0.to_string(), p.partition_id, p.error_code)))
                    .collect();
                // ELECTION_NOT_NEEDED (84).
                check(resp.error_code == 0 && results == vec![(TOPIC.to_string(), 0, 84)], || format!("elect type {election_type}: {results:?}"))?;
            }
            // Every partition: those that need no election are left out.
            let resp = client.try_request(v, &ElectLeadersRequest::default().with_timeout_ms(10_000).with_topic_partitions(None)).await?;
            let listed = resp.replica_election_results.iter().any(|t| t.topic.0.as_str() == TOPIC);
            let results: usize = resp.replica_election_results.iter().map(|t| t.partition_result.len()).sum();
            check(resp.error_code == 0 && listed && results == 0, || format!("elect every partition: {resp:?}"))
        }
        ApiKey::AlterPartitionReassignments => {
            // One node: moving TOPIC-0 onto the broker that has it changes nothing and succeeds.
            let node = client.try_request(0, &DescribeClusterRequest::default()).await?.brokers.first().map(|b| b.broker_id.0).ok_or("no broker")?;
            let req = reassign_request(TOPIC, 0, Some(vec![node])).with_allow_replication_factor_change(v == 0);
            let resp = client.try_request(v, &req).await?;
            let codes: Vec<i16> = resp.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect();
            check(resp.error_code == 0 && codes == vec![0], || format!("reassign onto the same broker: {resp:?}"))?;
            check(v == 0 || !resp.allow_replication_factor_change, || "v1 echoes allow_replication_factor_change".into())
        }
        ApiKey::ListPartitionReassignments => {
            for topics in [None, Some(vec![list_partition_reassignments_request::ListPartitionReassignmentsTopics::default().with_name(topic_name(TOPIC)).with_partition_indexes(vec![0])])] {
                let resp = client.try_request(v, &ListPartitionReassignmentsRequest::default().with_topics(topics)).await?;
                check(resp.error_code == 0 && resp.topics.is_empty(), || format!("no reassignment is ongoing: {resp:?}"))?;
            }
            Ok(())
        }
        ApiKey::SaslHandshake => {
            // A PLAINTEXT listener: Kafka's ILLEGAL_SASL_STATE (the SASL listeners are driven by tests/python/test_security.py).
            let resp = client.try_request(v, &SaslHandshakeRequest::default().with_mechanism(s("PLAIN"))).await?;
            check(resp.error_code == ILLEGAL_SASL_STATE, || format!("sasl handshake on a plaintext listener: {resp:?}"))
        }
        ApiKey::SaslAuthenticate => {
            let resp = client.try_request(v, &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"\0u\0p"))).await?;
            check(resp.error_code == ILLEGAL_SASL_STATE, || format!("sasl authenticate on a plaintext listener: {resp:?}"))
        }
        ApiKey::AlterUserScramCredentials => {
            let resp = client.try_request(v, &scram_upsert("every-user", 8192)).await?;
            let codes: Vec<(String, i16)> = resp.results.iter().map(|r| (r.user.to_string(), r.error_code)).collect();
            check(codes == vec![("every-user".to_string(), 0)], || format!("SCRAM upsertion: {resp:?}"))
        }
        ApiKey::DescribeUserScramCredentials => {
            client.try_request(0, &scram_upsert("described", 4096)).await?;
            let req = DescribeUserScramCredentialsRequest::default()
                .with_users(Some(vec![describe_user_scram_credentials_request::UserName::default().with_name(s("described"))]));
            let resp = client.try_request(v, &req).await?;
            let result = resp.results.first().ok_or("no result")?;
            let infos: Vec<(i8, i32)> = result.credential_infos.iter().map(|c| (c.mechanism, c.iterations)).collect();
            check(result.error_code == 0 && infos == vec![(2, 4096)], || format!("described SCRAM credentials: {resp:?}"))
        }
        ApiKey::CreateAcls => {
            let resp = client.try_request(v, &create_acl(&format!("created-v{v}"), "User:alice")).await?;
            let codes: Vec<i16> = resp.results.iter().map(|r| r.error_code).collect();
            check(codes == vec![0], || format!("ACL creation: {resp:?}"))
        }
        ApiKey::DescribeAcls => {
            let name = format!("described-v{v}");
            let created = client.try_request(1, &create_acl(&name, "User:alice")).await?;
            check(created.results.iter().all(|r| r.error_code == 0), || format!("ACL creation: {created:?}"))?;
            let resp = client.try_request(v, &describe_acls(Some(name.as_str()), 2)).await?;
            let found: Vec<(String, usize)> = resp.resources.iter().map(|r| (r.resource_name.to_string(), r.acls.len())).collect();
            check(resp.error_code == 0 && found == vec![(name.clone(), 1)], || format!("described ACLs: {resp:?}"))
        }
        ApiKey::DeleteAcls => {
            let name = format!("deleted-v{v}");
            client.try_request(1, &create_acl(&name, "User:alice")).await?;
            let resp = client.try_request(v, &delete_acls(&name, 2)).await?;
            let matched: Vec<(i16, usize)> = resp.filter_results.iter().map(|r| (r.error_code, r.matching_acls.len())).collect();
            check(matched == vec![(0, 1)], || format!("ACL deletion: {resp:?}"))
        }
        ApiKey::AlterClientQuotas => {
            let client_id = format!("altered-v{v}");
            let resp = client.try_request(v, &alter_quota("client-id", Some(&client_id), "producer_byte_rate", Some(1024.0))).await?;
            let codes: Vec<i16> = resp.entries.iter().map(|e| e.error_code).collect();
            check(codes == vec![0], || format!("quota alteration: {resp:?}"))?;
            let described = client.try_request(1, &describe_quota("client-id", Some(&client_id))).await?;
            let values: Vec<(String, f64)> =
                described.entries.iter().flatten().flat_map(|e| e.values.iter().map(|v| (v.key.to_string(), v.value))).collect();
            check(values == vec![("producer_byte_rate".to_string(), 1024.0)], || format!("the altered quota: {described:?}"))
        }
        ApiKey::DescribeClientQuotas => {
            let user = format!("described-v{v}");
            let altered = client.try_request(1, &alter_quota("user", Some(&user), "consumer_byte_rate", Some(2048.0))).await?;
            check(altered.entries.iter().all(|e| e.error_code == 0), || format!("quota alteration: {altered:?}"))?;
            let resp = client.try_request(v, &describe_quota("user", Some(&user))).await?;
            let found: Vec<(Vec<(String, Option<String>)>, Vec<(String, f64)>)> = resp
                .entries
                .iter()
                .flatten()
                .map(|e| {
                    let entity = e.entity.iter().map(|x| (x.entity_type.to_string(), x.entity_name.as_ref().map(|n| n.to_string()))).collect();
                    (entity, e.values.iter().map(|v| (v.key.to_string(), v.value)).collect())
                })
                .collect();
            let want = vec![(vec![("user".to_string(), Some(user.clone()))], vec![("consumer_byte_rate".to_string(), 2048.0)])];
            check(resp.error_code == 0 && found == want, || format!("described quotas: {resp:?}"))
        }
        other => Err(format!("no request builder for {other:?}: add one to this test")),
    }
}

/// CreateAcls of one binding: ALLOW `principal` READ on the topic `name` from any host.
fn create_acl(name: &str, principal: &str) -> CreateAclsRequest {
    CreateAclsRequest::default().with_creations(vec![create_acls_request::AclCreation::default()
        .with_resource_type(2)
        .with_resource_name(s(name))
        .with_resource_pattern_type(3)
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(3)
        .with_permission_type(3)])
}

/// DescribeAcls of the topic bindings named `name` (None: every name); resource type 0 is UNKNOWN (invalid).
fn describe_acls(name: Option<&str>, resource_type: i8) -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(name.map(s))
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)
}

/// DeleteAcls of every binding on the topic `name`.
fn delete_acls(name: &str, resource_type: i8) -> DeleteAclsRequest {
    DeleteAclsRequest::default().with_filters(vec![delete_acls_request::DeleteAclsFilter::default()
        .with_resource_type_filter(resource_type)
        .with_resource_name_filter(Some(s(name)))
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1)])
}

/// AlterClientQuotas of one key of one single-type entity (`value` None removes the key).
fn alter_quota(entity_type: &str, name: Option<&str>, key: &str, value: Option<f64>) -> AlterClientQuotasRequest {
    AlterClientQuotasRequest::default().with_entries(vec![alter_client_quotas_request::EntryData::default()
        .with_entity(vec![alter_client_quotas_request::EntityData::default().with_entity_type(s(entity_type)).with_entity_name(name.map(s))])
        .with_ops(vec![alter_client_quotas_request::OpData::default()
            .with_key(s(key))
            .with_value(value.unwrap_or(0.0))
            .with_remove(value.is_none())])])
}

/// DescribeClientQuotas of exactly the entity `entity_type` = `name` (None: the default entity), strict.
fn describe_quota(entity_type: &str, name: Option<&str>) -> DescribeClientQuotasRequest {
    DescribeClientQuotasRequest::default().with_strict(true).with_components(vec![describe_client_quotas_request::ComponentData::default()
        .with_entity_type(s(entity_type))
        .with_match_type(if name.is_some() { 0 } else { 1 })
        .with_match(name.map(s))])
}

/// Kafka's INVALID_REQUEST error code.
const INVALID_REQUEST: i16 = 42;

/// An upsertion of a SCRAM-SHA-512 credential (the salted password is arbitrary bytes here).
fn scram_upsert(user: &str, iterations: i32) -> AlterUserScramCredentialsRequest {
    AlterUserScramCredentialsRequest::default().with_upsertions(vec![alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
        .with_name(s(user))
        .with_mechanism(2)
        .with_iterations(iterations)
        .with_salt(Bytes::from_static(b"0123456789abcdef"))
        .with_salted_password(Bytes::from(vec![7u8; 64]))])
}

/// Kafka's ILLEGAL_SASL_STATE error code.
const ILLEGAL_SASL_STATE: i16 = 34;

fn reassign_request(topic: &str, partition: i32, replicas: Option<Vec<i32>>) -> AlterPartitionReassignmentsRequest {
    AlterPartitionReassignmentsRequest::default().with_timeout_ms(10_000).with_topics(vec![
        alter_partition_reassignments_request::ReassignableTopic::default().with_name(topic_name(topic)).with_partitions(vec![
            alter_partition_reassignments_request::ReassignablePartition::default()
                .with_partition_index(partition)
                .with_replicas(replicas.map(|r| r.into_iter().map(BrokerId).collect())),
        ]),
    ])
}

fn describe_quorum(_version: i16, topic: &str) -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default()
        .with_topic_name(topic_name(topic))
        .with_partitions(vec![describe_quorum_request::PartitionData::default().with_partition_index(0)])])
}

/// InitProducerId for a transactional id: (producer id, epoch).
async fn init_transactional(client: &mut Client, txn: &str) -> Result<(i64, i16), String> {
    let req = InitProducerIdRequest::default().with_transactional_id(Some(TransactionalId(s(txn)))).with_transaction_timeout_ms(60_000);
    let resp = client.try_request(4, &req).await?;
    check(resp.error_code == 0 && resp.producer_id.0 >= 0, || format!("init transactional producer: error {}", resp.error_code))?;
    Ok((resp.producer_id.0, resp.producer_epoch))
}

/// AddPartitionsToTxn (v3) of partition 0 of TOPIC.
async fn add_partition(client: &mut Client, txn: &str, producer_id: i64, epoch: i16) -> Result<(), String> {
    let req = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(s(txn)))
        .with_v3_and_below_producer_id(ProducerId(producer_id))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![0])]);
    let resp = client.try_request(3, &req).await?;
    let ok = resp.results_by_topic_v3_and_below.iter().all(|t| t.results_by_partition.iter().all(|p| p.partition_error_code == 0));
    check(ok, || format!("add partition: {resp:?}"))
}

/// The error path of one API at one version, where a handler sets its error
/// fields (messages, -1 offsets, …): the request names something missing, and
/// the answer must arrive, decode, and carry an error. None: no error probe.
async fn exercise_error(client: &mut Client, api: ApiKey, v: i16) -> Option<Result<(), String>> {
    const MISSING: &str = "missing-topic";
    let missing_member = |code: i16| check(code != 0, || "an unknown member was accepted".into());
    let refused = |code: Option<i16>| check(matches!(code, Some(c) if c != 0), || format!("answered {code:?} for something missing"));
    let outcome = async {
        match api {
            ApiKey::Produce if v < 13 => {
                let topic = produce_request::TopicProduceData::default()
                    .with_name(topic_name(MISSING))
                    .with_partition_data(vec![produce_request::PartitionProduceData::default().with_index(0).with_records(Some(batch(1)))]);
                let resp = client.try_request(v, &ProduceRequest::default().with_acks(1).with_timeout_ms(10_000).with_topic_data(vec![topic])).await?;
                refused(resp.responses.first().and_then(|t| t.partition_responses.first()).map(|p| p.error_code))
            }
            ApiKey::Fetch if v < 13 => {
                let topic = fetch_request::FetchTopic::default().with_topic(topic_name(MISSING)).with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)]);
                let resp = client.try_request(v, &FetchRequest::default().with_replica_id(BrokerId(-1)).with_max_wait_ms(0).with_topics(vec![topic])).await?;
                refused(resp.responses.first().and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::ListOffsets => {
                let req = ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                    .with_name(topic_name(MISSING))
                    .with_partitions(vec![list_offsets_request::ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1)])]);
                let resp = client.try_request(v, &req).await?;
                refused(resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::SyncGroup => {
                let resp = client.try_request(v, &sync_request(v, "no-such-group", "no-such-member", 1)).await?;
                missing_member(resp.error_code)
            }
            ApiKey::Heartbeat => {
                let req = HeartbeatRequest::default().with_group_id(group_id("no-such-group")).with_generation_id(1).with_member_id(s("no-such-member"));
                missing_member(client.try_request(v, &req).await?.error_code)
            }
            ApiKey::LeaveGroup => {
                let req = if v >= 3 {
                    LeaveGroupRequest::default()
                        .with_group_id(group_id("no-such-group"))
                        .with_members(vec![leave_group_request::MemberIdentity::default().with_member_id(s("no-such-member"))])
                } else {
                    LeaveGroupRequest::default().with_group_id(group_id("no-such-group")).with_member_id(s("no-such-member"))
                };
                let resp = client.try_request(v, &req).await?;
                missing_member(resp.error_code.max(resp.members.iter().map(|m| m.error_code).max().unwrap_or(0)))
            }
            ApiKey::DescribeGroups => {
                // Only v6 has an error for a missing group; before, it is "Dead".
                let resp = client.try_request(v, &DescribeGroupsRequest::default().with_groups(vec![group_id("no-such-group")])).await?;
                let g = resp.groups.first().ok_or("no group in the answer")?;
                check(g.error_code != 0 || g.group_state.as_str() == "Dead", || format!("a missing group is {} with error {}", g.group_state.as_str(), g.error_code))
            }
            ApiKey::DeleteGroups => {
                let resp = client.try_request(v, &DeleteGroupsRequest::default().with_groups_names(vec![group_id("no-such-group")])).await?;
                refused(resp.results.first().map(|r| r.error_code))
            }
            ApiKey::OffsetDelete => {
                let req = OffsetDeleteRequest::default().with_group_id(group_id("no-such-group")).with_topics(vec![offset_delete_request::OffsetDeleteRequestTopic::default()
                    .with_name(topic_name(TOPIC))
                    .with_partitions(vec![offset_delete_request::OffsetDeleteRequestPartition::default().with_partition_index(0)])]);
                refused(Some(client.try_request(v, &req).await?.error_code))
            }
            ApiKey::DeleteTopics => {
                let req = if v >= 6 {
                    DeleteTopicsRequest::default().with_topics(vec![delete_topics_request::DeleteTopicState::default().with_name(Some(topic_name(MISSING)))])
                } else {
                    DeleteTopicsRequest::default().with_topic_names(vec![topic_name(MISSING)])
                };
                refused(client.try_request(v, &req.with_timeout_ms(10_000)).await?.responses.first().map(|r| r.error_code))
            }
            ApiKey::CreatePartitions => {
                let req = CreatePartitionsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(topic_name(MISSING))
                    .with_count(3)]);
                refused(client.try_request(v, &req).await?.results.first().map(|r| r.error_code))
            }
            ApiKey::DeleteRecords => {
                let req = DeleteRecordsRequest::default().with_timeout_ms(10_000).with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(topic_name(MISSING))
                    .with_partitions(vec![delete_records_request::DeleteRecordsPartition::default().with_partition_index(0).with_offset(1)])]);
                refused(client.try_request(v, &req).await?.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::DescribeConfigs => {
                let req = DescribeConfigsRequest::default().with_resources(vec![describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(MISSING))
                    .with_configuration_keys(None)]);
                refused(client.try_request(v, &req).await?.results.first().map(|r| r.error_code))
            }
            ApiKey::AlterConfigs => {
                let req = AlterConfigsRequest::default().with_resources(vec![alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(MISSING))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("1000")))])]);
                refused(client.try_request(v, &req).await?.responses.first().map(|r| r.error_code))
            }
            ApiKey::IncrementalAlterConfigs => {
                let req = IncrementalAlterConfigsRequest::default().with_resources(vec![incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(s(MISSING))
                    .with_configs(vec![incremental_alter_configs_request::AlterableConfig::default().with_name(s("retention.ms")).with_value(Some(s("1000")))])]);
                refused(client.try_request(v, &req).await?.responses.first().map(|r| r.error_code))
            }
            ApiKey::DescribeTopicPartitions => {
                let req = DescribeTopicPartitionsRequest::default()
                    .with_topics(vec![describe_topic_partitions_request::TopicRequest::default().with_name(topic_name(MISSING))]);
                refused(client.try_request(v, &req).await?.topics.first().map(|t| t.error_code))
            }
            ApiKey::OffsetForLeaderEpoch => {
                let req = OffsetForLeaderEpochRequest::default().with_topics(vec![offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                    .with_topic(topic_name(MISSING))
                    .with_partitions(vec![offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_partition(0).with_leader_epoch(0)])]);
                refused(client.try_request(v, &req).await?.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::ListConfigResources if v >= 1 => {
                let req = ListConfigResourcesRequest::default().with_resource_types(vec![99]);
                refused(Some(client.try_request(v, &req).await?.error_code))
            }
            ApiKey::DescribeProducers => {
                let req = DescribeProducersRequest::default().with_topics(vec![describe_producers_request::TopicRequest::default()
                    .with_name(topic_name(MISSING))
                    .with_partition_indexes(vec![0])]);
                refused(client.try_request(v, &req).await?.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::AddPartitionsToTxn => {
                // An id no InitProducerId created: INVALID_PRODUCER_ID_MAPPING (49).
                let topics = vec![add_partitions_to_txn_request::AddPartitionsToTxnTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![0])];
                let req = if v < 4 {
                    AddPartitionsToTxnRequest::default()
                        .with_v3_and_below_transactional_id(TransactionalId(s("no-such-txn")))
                        .with_v3_and_below_producer_id(ProducerId(1))
                        .with_v3_and_below_topics(topics)
                } else {
                    AddPartitionsToTxnRequest::default().with_transactions(vec![add_partitions_to_txn_request::AddPartitionsToTxnTransaction::default()
                        .with_transactional_id(TransactionalId(s("no-such-txn")))
                        .with_producer_id(ProducerId(1))
                        .with_topics(topics)])
                };
                let resp = client.try_request(v, &req).await?;
                let results = if v < 4 { resp.results_by_topic_v3_and_below } else { resp.results_by_transaction.into_iter().flat_map(|t| t.topic_results).collect() };
                let code = results.first().and_then(|t| t.results_by_partition.first()).map(|p| p.partition_error_code);
                check(code == Some(49), || format!("unknown transactional id: {code:?}"))
            }
            ApiKey::AddOffsetsToTxn => {
                let req = AddOffsetsToTxnRequest::default().with_transactional_id(TransactionalId(s("no-such-txn"))).with_producer_id(ProducerId(1)).with_group_id(group_id("g"));
                let code = client.try_request(v, &req).await?.error_code;
                check(code == 49, || format!("unknown transactional id: {code}"))
            }
            ApiKey::EndTxn => {
                let req = EndTxnRequest::default().with_transactional_id(TransactionalId(s("no-such-txn"))).with_producer_id(ProducerId(1)).with_committed(true);
                let code = client.try_request(v, &req).await?.error_code;
                check(code == 49, || format!("unknown transactional id: {code}"))
            }
            ApiKey::WriteTxnMarkers => {
                let req = WriteTxnMarkersRequest::default().with_markers(vec![write_txn_markers_request::WritableTxnMarker::default()
                    .with_producer_id(ProducerId(1))
                    .with_topics(vec![write_txn_markers_request::WritableTxnMarkerTopic::default().with_name(topic_name(MISSING)).with_partition_indexes(vec![0])])]);
                let resp = client.try_request(v, &req).await?;
                refused(resp.markers.first().and_then(|m| m.topics.first()).and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::TxnOffsetCommit => {
                let req = TxnOffsetCommitRequest::default()
                    .with_transactional_id(TransactionalId(s("no-such-txn")))
                    .with_group_id(group_id("g"))
                    .with_producer_id(ProducerId(1))
                    .with_generation_id(-1)
                    .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(topic_name(MISSING))
                        .with_partitions(vec![txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_partition_index(0)])]);
                refused(client.try_request(v, &req).await?.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code))
            }
            ApiKey::DescribeTransactions => {
                let resp = client.try_request(v, &DescribeTransactionsRequest::default().with_transactional_ids(vec![TransactionalId(s("no-such-txn"))])).await?;
                let code = resp.transaction_states.first().map(|t| t.error_code);
                // TRANSACTIONAL_ID_NOT_FOUND (105).
                check(code == Some(105), || format!("unknown transactional id: {code:?}"))
            }
            ApiKey::ListTransactions if v >= 2 => {
                let req = ListTransactionsRequest::default().with_transactional_id_pattern(Some(s("(unclosed"))).with_duration_filter(-1);
                refused(Some(client.try_request(v, &req).await?.error_code))
            }
            ApiKey::DescribeUserScramCredentials => {
                let req = DescribeUserScramCredentialsRequest::default()
                    .with_users(Some(vec![describe_user_scram_credentials_request::UserName::default().with_name(s("nobody"))]));
                let code = client.try_request(v, &req).await?.results.first().map(|r| r.error_code);
                // RESOURCE_NOT_FOUND (91).
                check(code == Some(91), || format!("unknown SCRAM user: {code:?}"))
            }
            ApiKey::AlterUserScramCredentials => {
                let code = client.try_request(v, &scram_upsert("few-iterations", 1)).await?.results.first().map(|r| r.error_code);
                // UNACCEPTABLE_CREDENTIAL (93).
                check(code == Some(93), || format!("too few iterations: {code:?}"))
            }
            ApiKey::CreateAcls => {
                // A principal without its type is refused.
                let code = client.try_request(v, &create_acl("no-type", "alice")).await?.results.first().map(|r| r.error_code);
                check(code == Some(INVALID_REQUEST), || format!("ACL for a principal without a type: {code:?}"))
            }
            ApiKey::DescribeAcls => {
                let resp = client.try_request(v, &describe_acls(None, 0)).await?;
                check(resp.error_code == INVALID_REQUEST, || format!("describe with an UNKNOWN resource type: {resp:?}"))
            }
            ApiKey::DeleteAcls => {
                let code = client.try_request(v, &delete_acls("any", 0)).await?.filter_results.first().map(|r| r.error_code);
                check(code == Some(INVALID_REQUEST), || format!("delete with an UNKNOWN resource type: {code:?}"))
            }
            ApiKey::AlterClientQuotas => {
                let resp = client.try_request(v, &alter_quota("user", Some("u"), "no_such_key", Some(1.0))).await?;
                let answers: Vec<(i16, Option<String>)> =
                    resp.entries.iter().map(|e| (e.error_code, e.error_message.as_ref().map(|m| m.to_string()))).collect();
                let want = vec![(INVALID_REQUEST, Some("Invalid configuration key no_such_key".to_string()))];
                check(answers == want, || format!("an unknown quota key: {resp:?}"))
            }
            ApiKey::DescribeClientQuotas => {
                // EXACT without a name.
                let req = describe_quota("user", None).with_components(vec![describe_client_quotas_request::ComponentData::default()
                    .with_entity_type(s("user"))
                    .with_match_type(0)
                    .with_match(None)]);
                let resp = client.try_request(v, &req).await?;
                check(resp.error_code == INVALID_REQUEST && resp.entries.is_none(), || format!("EXACT without a name: {resp:?}"))
            }
            ApiKey::DescribeLogDirs => {
                // Unknown topics and partitions are left out, without an error.
                let req = DescribeLogDirsRequest::default().with_topics(Some(vec![
                    describe_log_dirs_request::DescribableLogDirTopic::default().with_topic(topic_name(MISSING)).with_partitions(vec![0]),
                    describe_log_dirs_request::DescribableLogDirTopic::default().with_topic(topic_name(TOPIC)).with_partitions(vec![999]),
                ]));
                let resp = client.try_request(v, &req).await?;
                let dir = resp.results.first().ok_or("no log dir in the answer")?;
                check(dir.error_code == 0 && dir.topics.is_empty(), || format!("missing partitions described: {:?}", dir.topics))
            }
            ApiKey::DescribeQuorum => {
                // Only __cluster_metadata-0 is described: UNKNOWN_TOPIC_OR_PARTITION (3).
                let resp = client.try_request(v, &describe_quorum(v, TOPIC)).await?;
                let code = resp.topics.first().and_then(|t| t.partitions.first()).map(|p| p.error_code);
                check(code == Some(3) && resp.nodes.is_empty(), || format!("describe quorum of {TOPIC}: {resp:?}"))
            }
            ApiKey::ElectLeaders => {
                let req = ElectLeadersRequest::default().with_timeout_ms(10_000).with_topic_partitions(Some(vec![
                    elect_leaders_request::TopicPartitions::default().with_topic(topic_name(MISSING)).with_partitions(vec![0]),
                ]));
                let code = client.try_request(v, &req).await?.replica_election_results.first().and_then(|t| t.partition_result.first()).map(|p| p.error_code);
                // UNKNOWN_TOPIC_OR_PARTITION (3).
                check(code == Some(3), || format!("elect on a missing topic: {code:?}"))
            }
            ApiKey::AlterPartitionReassignments => {
                let codes = |resp: AlterPartitionReassignmentsResponse| -> Vec<i16> {
                    resp.responses.iter().flat_map(|t| t.partitions.iter().map(|p| p.error_code)).collect()
                };
                // UNKNOWN_TOPIC_OR_PARTITION (3), INVALID_REPLICA_ASSIGNMENT (39) for an unregistered broker,
                // NO_REASSIGNMENT_IN_PROGRESS (85) for a cancel with none.
                let missing = codes(client.try_request(v, &reassign_request(MISSING, 0, Some(vec![1]))).await?);
                let bad_broker = codes(client.try_request(v, &reassign_request(TOPIC, 0, Some(vec![4242]))).await?);
                let cancel = codes(client.try_request(v, &reassign_request(TOPIC, 0, None)).await?);
                check(missing == vec![3] && bad_broker == vec![39] && cancel == vec![85], || format!("missing {missing:?}, bad broker {bad_broker:?}, cancel {cancel:?}"))
            }
            _ => Err(String::from("no probe")),
        }
    };
    match outcome.await {
        Err(e) if e == "no probe" => None,
        other => Some(other),
    }
}

#[tokio::test]
async fn every_api_answers_at_every_version_it_accepts() {
    let dir = tempfile::tempdir().expect("temp dir");
    // With the authorizer on, as a super user: every API passes its checks and the ACL APIs work.
    let settings = [
        ("group.initial.rebalance.delay.ms", "0"),
        ("authorizer.class.name", "org.apache.kafka.metadata.authorizer.StandardAuthorizer"),
        ("super.users", "User:ANONYMOUS"),
    ];
    let broker = common::start_broker(dir.path(), &settings).await;
    let mut client = Client::connect(broker.local_addr).await;
    let fixture = setup(&mut client).await.expect("setup");
    let mut failures = Vec::new();
    let mut exercised = 0;
    for &(api, advertised_min, max) in SUPPORTED_APIS {
        // Produce v0-2 are advertised only for old librdkafka's sake and refused
        // (Kafka 4 does the same); the crate cannot even encode them.
        let min = advertised_min.max(api.valid_versions().min);
        if min != advertised_min {
            assert_eq!(api, ApiKey::Produce, "{api:?} v{advertised_min}..v{min} are advertised but cannot be encoded");
        }
        for version in min..=max {
            exercised += 1;
            // A fresh connection per version keeps one failure from hiding the rest.
            let mut client = Client::connect(broker.local_addr).await;
            if let Err(e) = exercise(&mut client, &fixture, api, version).await {
                failures.push(format!("{api:?} v{version}: {e}"));
            }
            let mut client = Client::connect(broker.local_addr).await;
            if let Some(Err(e)) = exercise_error(&mut client, api, version).await {
                failures.push(format!("{api:?} v{version}, error path: {e}"));
            }
        }
    }
    broker.shutdown().await;
    assert!(failures.is_empty(), "{} of {exercised} (api, version) pairs failed:\n{}", failures.len(), failures.join("\n"));
}
