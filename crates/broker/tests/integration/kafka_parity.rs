//! Answers that once differed from Apache Kafka's (found by runnel-conformance)
//! and are now Kafka's: each test drives the broker over TCP and checks the
//! fields a client acts on.


use crate::common::{record_batch, start_broker, s, topic_name, Client, BASE_TIMESTAMP};
use kafka_protocol::messages::delete_records_request::{DeleteRecordsPartition, DeleteRecordsTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;

const INVALID_REQUEST: i16 = 42;
const ILLEGAL_GENERATION: i16 = 22;
const GROUP_ID_NOT_FOUND: i16 = 69;

async fn create_topic_with_records(client: &mut Client, name: &str, values: &[&str]) {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(name)))]))
        .with_allow_auto_topic_creation(true);
    assert_eq!(client.request(12, &req).await.topics[0].error_code, 0, "auto-create {name}");
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name(name))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(record_batch(values)))])]);
    let resp = client.request(9, &produce).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0, "produce to {name}");
}

async fn delete_records_before(client: &mut Client, name: &str, offset: i64) {
    let req = DeleteRecordsRequest::default().with_timeout_ms(5000).with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic_name(name))
        .with_partitions(vec![DeleteRecordsPartition::default().with_partition_index(0).with_offset(offset)])]);
    let resp = client.request(2, &req).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 0, "delete records of {name}");
}

fn list_offsets(name: &str, partitions: &[(i32, i64)]) -> ListOffsetsRequest {
    ListOffsetsRequest::default().with_replica_id(BrokerId(-1)).with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic_name(name))
        .with_partitions(partitions.iter().map(|&(p, ts)| ListOffsetsPartition::default().with_partition_index(p).with_timestamp(ts)).collect())])
}

/// offsetsForTimes after DeleteRecords: the first record at or above the log
/// start, with its own timestamp; nothing at all once every record is deleted.
#[tokio::test]
async fn lookup_by_timestamp_skips_deleted_records() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    // One batch of five records, timestamps BASE_TIMESTAMP + 0..4.
    create_topic_with_records(&mut client, "cut", &["a", "b", "c", "d", "e"]).await;
    delete_records_before(&mut client, "cut", 3).await;
    let resp = client.request(8, &list_offsets("cut", &[(0, BASE_TIMESTAMP)])).await;
    let answer = &resp.topics[0].partitions[0];
    assert_eq!((answer.error_code, answer.offset, answer.timestamp), (0, 3, BASE_TIMESTAMP + 3), "the log start's own record");

    create_topic_with_records(&mut client, "gone", &["a", "b"]).await;
    delete_records_before(&mut client, "gone", 2).await;
    let resp = client.request(8, &list_offsets("gone", &[(0, BASE_TIMESTAMP)])).await;
    let answer = &resp.topics[0].partitions[0];
    assert_eq!((answer.error_code, answer.offset, answer.timestamp), (0, -1, -1), "no record left to find");
    broker.shutdown().await;
}

#[tokio::test]
async fn list_offsets_answers_a_partition_named_twice_once_with_invalid_request() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic_with_records(&mut client, "twice", &["a"]).await;
    let resp = client.request(8, &list_offsets("twice", &[(0, -1), (0, -2)])).await;
    let partitions = &resp.topics[0].partitions;
    assert_eq!(partitions.len(), 1, "one answer for the duplicated partition");
    assert_eq!((partitions[0].error_code, partitions[0].offset), (INVALID_REQUEST, -1));
    broker.shutdown().await;
}

fn commit(group: &str, generation: i32, member: &str, topic: &str) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(group)))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(s(member))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1)])])
}

/// A generation names a group: if there is none, Kafka answers
/// GROUP_ID_NOT_FOUND (v9+) or ILLEGAL_GENERATION, and creates nothing; a
/// commit outside the group protocol (generation -1) is accepted, also for
/// the empty group id.
#[tokio::test]
async fn offset_commit_to_a_group_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    create_topic_with_records(&mut client, "commits", &["a", "b"]).await;
    let resp = client.request(9, &commit("nobody", 4, "someone", "commits")).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, GROUP_ID_NOT_FOUND, "v9");
    let resp = client.request(8, &commit("nobody", 4, "someone", "commits")).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, ILLEGAL_GENERATION, "v8");
    let resp = client.request(9, &commit("", -1, "", "commits")).await;
    assert_eq!(resp.topics[0].partitions[0].error_code, 0, "the empty group id takes commits");
    // The group now exists through its offsets: a generation gets the membership check.
    let resp = client.request(9, &commit("", 4, "someone", "commits")).await;
    assert_ne!(resp.topics[0].partitions[0].error_code, GROUP_ID_NOT_FOUND, "a group with offsets exists");
    broker.shutdown().await;
}

/// KIP-511: a client software name outside the pattern is refused.
#[tokio::test]
async fn api_versions_refuses_a_software_name_outside_kip_511() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let bad = ApiVersionsRequest::default().with_client_software_name(s("bad name!")).with_client_software_version(s("1.0"));
    let resp = client.request(3, &bad).await;
    assert_eq!(resp.error_code, INVALID_REQUEST);
    let good = ApiVersionsRequest::default().with_client_software_name(s("librdkafka")).with_client_software_version(s("2.6.1"));
    let resp = client.request(3, &good).await;
    assert_eq!(resp.error_code, 0);
    assert!(!resp.api_keys.is_empty());
    broker.shutdown().await;
}

/// message.timestamp.before.max.ms: records older than the window are refused
/// with INVALID_TIMESTAMP, one record error each from v8 (none before, where
/// the field does not exist), and nothing is appended.
#[tokio::test]
async fn produce_refuses_timestamps_outside_the_topic_window() {
    const INVALID_TIMESTAMP: i16 = 32;
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let create = CreateTopicsRequest::default().with_timeout_ms(10_000).with_topics(vec![create_topics_request::CreatableTopic::default()
        .with_name(topic_name("old"))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![create_topics_request::CreatableTopicConfig::default()
            .with_name(s("message.timestamp.before.max.ms"))
            .with_value(Some(s("3600000")))])]);
    assert_eq!(client.request(7, &create).await.topics[0].error_code, 0);
    // record_batch's timestamps are from 2023.
    let produce = ProduceRequest::default().with_acks(-1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(topic_name("old"))
        .with_partition_data(vec![PartitionProduceData::default().with_index(0).with_records(Some(record_batch(&["a", "b"])))])]);
    for version in [3, 9] {
        let resp = client.request(version, &produce).await;
        let p = &resp.responses[0].partition_responses[0];
        assert_eq!((p.error_code, p.base_offset), (INVALID_TIMESTAMP, -1), "v{version}");
        let indexes: Vec<i32> = p.record_errors.iter().map(|e| e.batch_index).collect();
        assert_eq!(indexes, if version >= 8 { vec![0, 1] } else { vec![] }, "v{version} record errors");
    }
    let resp = client.request(8, &list_offsets("old", &[(0, -1)])).await;
    assert_eq!(resp.topics[0].partitions[0].offset, 0, "nothing was appended");
    broker.shutdown().await;
}
