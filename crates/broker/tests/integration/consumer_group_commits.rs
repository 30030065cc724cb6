//! Offset commits by a KIP-848 (consumer protocol) member over TCP, judged as
//! Kafka's ConsumerGroup.validateOffsetCommit does: OffsetCommit below v9
//! cannot speak for such a member (UNSUPPORTED_VERSION), and a stale member
//! epoch is STALE_MEMBER_EPOCH — in TxnOffsetCommit too, where clients abort
//! the transaction and retry (franz-go's TestTxnEtl failed when Runnel
//! answered UNSUPPORTED_VERSION there, which clients treat as fatal).


use crate::common::{s, start_broker, topic_name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;

const GROUP: &str = "commits-848";
const TOPIC: &str = "commits-topic";

/// Joins `GROUP` as a consumer-protocol member subscribed to `TOPIC`: (member id, epoch).
async fn join(client: &mut Client) -> (String, i32) {
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(topic_name(TOPIC)))]))
        .with_allow_auto_topic_creation(true);
    let resp = client.request(12, &metadata).await;
    assert_eq!(resp.topics[0].error_code, 0, "topic auto-created");
    let member_id = uuid::Uuid::new_v4().to_string();
    let req = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(&member_id))
        .with_member_epoch(0)
        .with_rebalance_timeout_ms(60_000)
        .with_subscribed_topic_names(Some(vec![topic_name(TOPIC)]))
        .with_topic_partitions(Some(vec![]));
    let resp = client.request(0, &req).await;
    assert_eq!(resp.error_code, 0, "heartbeat: {:?}", resp.error_message);
    assert!(resp.member_epoch > 0, "joined with epoch {}", resp.member_epoch);
    (member_id, resp.member_epoch)
}

fn offset_commit(member_id: &str, epoch: i32) -> OffsetCommitRequest {
    let partition = offset_commit_request::OffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1);
    OffsetCommitRequest::default()
        .with_group_id(GroupId(s(GROUP)))
        .with_member_id(s(member_id))
        .with_generation_id_or_member_epoch(epoch)
        .with_topics(vec![offset_commit_request::OffsetCommitRequestTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![partition])])
}

fn txn_offset_commit(member_id: &str, epoch: i32) -> TxnOffsetCommitRequest {
    let partition = txn_offset_commit_request::TxnOffsetCommitRequestPartition::default().with_partition_index(0).with_committed_offset(1);
    TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(s("commits-txn")))
        .with_group_id(GroupId(s(GROUP)))
        .with_producer_id(ProducerId(1))
        .with_producer_epoch(0)
        .with_member_id(s(member_id))
        .with_generation_id(epoch)
        .with_topics(vec![txn_offset_commit_request::TxnOffsetCommitRequestTopic::default().with_name(topic_name(TOPIC)).with_partitions(vec![partition])])
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

#[tokio::test]
async fn commits_of_a_consumer_protocol_member_get_kafkas_errors() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let (member, epoch) = join(&mut client).await;

    let commit_error = |resp: &OffsetCommitResponse| resp.topics[0].partitions[0].error_code;
    let resp = client.request(8, &offset_commit(&member, epoch)).await;
    assert_eq!(commit_error(&resp), code(ResponseError::UnsupportedVersion), "OffsetCommit v8 by a consumer-protocol member");
    let resp = client.request(9, &offset_commit(&member, epoch - 1)).await;
    assert_eq!(commit_error(&resp), code(ResponseError::StaleMemberEpoch), "OffsetCommit v9, stale epoch");
    let resp = client.request(9, &offset_commit(&member, epoch)).await;
    assert_eq!(commit_error(&resp), 0, "OffsetCommit v9, current epoch");

    let txn_error = |resp: &TxnOffsetCommitResponse| resp.topics[0].partitions[0].error_code;
    let resp = client.request(3, &txn_offset_commit(&member, epoch - 1)).await;
    assert_eq!(txn_error(&resp), code(ResponseError::StaleMemberEpoch), "TxnOffsetCommit, stale epoch");
    let resp = client.request(3, &txn_offset_commit("not-a-member", epoch)).await;
    assert_eq!(txn_error(&resp), code(ResponseError::UnknownMemberId), "TxnOffsetCommit, unknown member");
}
