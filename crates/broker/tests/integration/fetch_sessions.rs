//! Incremental fetch sessions (KIP-227) over TCP: an in-process broker driven
//! with Fetch requests encoded by the kafka-protocol crate, at a version that
//! names topics (v12) and one that names them by id (v17). The Java client
//! (tests/python/test_java.py) exercises the same path as a real consumer.


use crate::common;
use std::time::Duration;

use crate::common::{record_batch, topic_name as name, Client};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ForgottenTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use runnel_broker::RunningBroker;
use uuid::Uuid;

const FETCH_SESSION_ID_NOT_FOUND: i16 = 70;
const INVALID_FETCH_SESSION_EPOCH: i16 = 71;

/// A broker whose topics have 3 partitions.
async fn start_broker(dir: &std::path::Path, settings: &[(&str, &str)]) -> RunningBroker {
    let mut all = vec![("num.partitions", "3")];
    all.extend_from_slice(settings);
    common::start_broker(dir, &all).await
}

async fn produce(client: &mut Client, topic: &str, partition: i32) {
    let req = ProduceRequest::default().with_acks(1).with_timeout_ms(5000).with_topic_data(vec![TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(vec![PartitionProduceData::default().with_index(partition).with_records(Some(record_batch(&["v"])))])]);
    let resp = client.request(9, &req).await;
    assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
}

/// Creates the topic (3 partitions) and returns its id.
async fn create_topic(client: &mut Client, topic: &str) -> Uuid {
    let req = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default().with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(true);
    let resp = client.request(12, &req).await;
    assert_eq!(resp.topics[0].error_code, 0);
    assert_eq!(resp.topics[0].partitions.len(), 3);
    resp.topics[0].topic_id
}

/// Builds Fetch requests for one topic at one version (by name before v13, by id after).
struct Fetcher {
    version: i16,
    topic: String,
    topic_id: Uuid,
}

impl Fetcher {
    fn topic(&self) -> FetchTopic {
        let t = FetchTopic::default();
        if self.version >= 13 {
            t.with_topic_id(self.topic_id)
        } else {
            t.with_topic(name(&self.topic))
        }
    }

    fn request(&self, session_id: i32, epoch: i32, partitions: &[(i32, i64)], max_wait_ms: i32) -> FetchRequest {
        let topics = if partitions.is_empty() {
            vec![]
        } else {
            vec![self.topic().with_partitions(
                partitions
                    .iter()
                    .map(|(p, offset)| FetchPartition::default().with_partition(*p).with_fetch_offset(*offset).with_partition_max_bytes(1 << 20))
                    .collect(),
            )]
        };
        FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_id(session_id)
            .with_session_epoch(epoch)
            .with_topics(topics)
    }

    fn forget(&self, req: FetchRequest, partitions: Vec<i32>) -> FetchRequest {
        let forgotten = if self.version >= 13 {
            ForgottenTopic::default().with_topic_id(self.topic_id)
        } else {
            ForgottenTopic::default().with_topic(name(&self.topic))
        };
        req.with_forgotten_topics_data(vec![forgotten.with_partitions(partitions)])
    }
}

/// (partition, high watermark, has records) of every partition in an answer.
fn answered(resp: &FetchResponse) -> Vec<(i32, i64, bool)> {
    resp.responses
        .iter()
        .flat_map(|t| t.partitions.iter())
        .map(|p| (p.partition_index, p.high_watermark, p.records.as_ref().is_some_and(|r| !r.is_empty())))
        .collect()
}

async fn session_lifecycle(version: i16) {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let topic = format!("sessions-v{version}");
    let topic_id = create_topic(&mut client, &topic).await;
    let fetcher = Fetcher { version, topic: topic.clone(), topic_id };
    produce(&mut client, &topic, 0).await;
    produce(&mut client, &topic, 0).await;

    // A full fetch at epoch 0 opens a session and answers every partition.
    let resp = client.request(version, &fetcher.request(0, 0, &[(0, 0), (1, 0), (2, 0)], 0)).await;
    assert_eq!(resp.error_code, 0);
    let session = resp.session_id;
    assert_ne!(session, 0, "a session is opened");
    assert_eq!(answered(&resp), vec![(0, 2, true), (1, 0, false), (2, 0, false)]);
    if version >= 13 {
        assert_eq!(resp.responses[0].topic_id, topic_id);
    } else {
        assert_eq!(resp.responses[0].topic.0.as_str(), topic);
    }

    // Epoch 1: partition 0 consumed up to its end; nothing is new, so nothing is answered.
    let resp = client.request(version, &fetcher.request(session, 1, &[(0, 2)], 0)).await;
    assert_eq!((resp.error_code, resp.session_id), (0, session));
    assert_eq!(answered(&resp), vec![]);

    // Epoch 2 names no partition: records on partition 2 are found all the same.
    produce(&mut client, &topic, 2).await;
    let resp = client.request(version, &fetcher.request(session, 2, &[], 0)).await;
    assert_eq!(answered(&resp), vec![(2, 1, true)]);

    // Replaying an epoch, or a session the broker does not know.
    let resp = client.request(version, &fetcher.request(session, 2, &[], 0)).await;
    assert_eq!((resp.error_code, resp.session_id), (INVALID_FETCH_SESSION_EPOCH, 0));
    assert!(resp.responses.is_empty());
    let resp = client.request(version, &fetcher.request(session ^ 0x5555, 1, &[], 0)).await;
    assert_eq!((resp.error_code, resp.session_id), (FETCH_SESSION_ID_NOT_FOUND, 0));

    // Epoch 3 forgets partition 2: its new records are no longer answered.
    let resp = client.request(version, &fetcher.forget(fetcher.request(session, 3, &[], 0), vec![2])).await;
    assert_eq!(answered(&resp), vec![]);
    produce(&mut client, &topic, 2).await;
    let resp = client.request(version, &fetcher.request(session, 4, &[], 0)).await;
    assert_eq!(answered(&resp), vec![]);

    // A long poll on the session wakes on an append to a partition the request does not name.
    let mut producer = Client::connect(broker.local_addr).await;
    let started = std::time::Instant::now();
    let poll = tokio::spawn({
        let req = fetcher.request(session, 5, &[], 10_000);
        async move {
            let resp = client.request(version, &req).await;
            (client, resp)
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    produce(&mut producer, &topic, 1).await;
    let (mut client, resp) = poll.await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5), "the long poll should wake on the append");
    assert_eq!(answered(&resp), vec![(1, 1, true)]);

    // Epoch -1 closes the session and answers in full, without a session.
    let resp = client.request(version, &fetcher.request(session, -1, &[(0, 0)], 0)).await;
    assert_eq!((resp.error_code, resp.session_id), (0, 0));
    assert_eq!(answered(&resp), vec![(0, 2, true)]);
    let resp = client.request(version, &fetcher.request(session, 6, &[], 0)).await;
    assert_eq!(resp.error_code, FETCH_SESSION_ID_NOT_FOUND);
    broker.shutdown().await;
}

#[tokio::test]
async fn fetch_sessions_by_topic_name() {
    session_lifecycle(12).await;
}

#[tokio::test]
async fn fetch_sessions_by_topic_id() {
    session_lifecycle(17).await;
}

#[tokio::test]
async fn a_full_session_cache_answers_without_a_session_and_old_versions_get_none() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_broker(dir.path(), &[("max.incremental.fetch.session.cache.slots", "1")]).await;
    let mut client = Client::connect(broker.local_addr).await;
    let topic_id = create_topic(&mut client, "slots").await;
    let fetcher = Fetcher { version: 12, topic: "slots".into(), topic_id };
    let first = client.request(12, &fetcher.request(0, 0, &[(0, 0), (1, 0)], 0)).await;
    assert_ne!(first.session_id, 0);
    // Not larger than the cached session, which is not stale: no room.
    let second = client.request(12, &fetcher.request(0, 0, &[(0, 0)], 0)).await;
    assert_eq!((second.error_code, second.session_id), (0, 0));
    assert_eq!(answered(&second), vec![(0, 0, false)]);
    // Epoch 0 naming the open session replaces it.
    let third = client.request(12, &fetcher.request(first.session_id, 0, &[(2, 0)], 0)).await;
    assert_ne!(third.session_id, 0);
    let resp = client.request(12, &fetcher.request(first.session_id, 1, &[], 0)).await;
    assert_eq!(resp.error_code, FETCH_SESSION_ID_NOT_FOUND);
    // Fetch v6 has no sessions: always full answers.
    let resp = client.request(6, &fetcher.request(0, 0, &[(0, 0), (1, 0)], 0)).await;
    assert_eq!(answered(&resp).len(), 2);
    broker.shutdown().await;
}
