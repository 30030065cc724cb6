//! Replication between in-process brokers on loopback, each with its own
//! data directory. Roles are set by calling `become_leader` /
//! `become_follower` on the replica manager (the seam the controller will
//! drive); records go in with real Produce requests over TCP and the
//! followers copy them with real Fetch requests through the replica fetcher.


use crate::common;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crate::common::{record_batch, topic_name, Client};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use parking_lot::Mutex;
use runnel_broker::partition::IsrChange;
use runnel_broker::replica_manager::{AlterPartitionSender, AlteredPartition};
use runnel_broker::RunningBroker;

const TOPIC: &str = "replicated";
/// Bounds every wait for replication to happen.
const PATIENCE: Duration = Duration::from_secs(20);

async fn broker(dir: &std::path::Path, node_id: i32, extra: &[(&str, &str)]) -> RunningBroker {
    let id = node_id.to_string();
    let mut settings = vec![("node.id", id.as_str())];
    settings.extend_from_slice(extra);
    let broker = common::start_broker(dir, &settings).await;
    broker.broker.replicas.create_topic(TOPIC, 1, 1, Default::default(), false).expect("topic");
    broker
}

/// Tells every broker where the others listen.
fn introduce(brokers: &[&RunningBroker]) {
    for b in brokers {
        for other in brokers {
            b.broker.replicas.set_broker_address(other.broker.config.node_id, other.local_addr, "127.0.0.1");
        }
    }
}

async fn produce(client: &mut Client, acks: i16, values: &[&str], timeout_ms: i32) -> produce_response::PartitionProduceResponse {
    let req = ProduceRequest::default().with_acks(acks).with_timeout_ms(timeout_ms).with_topic_data(vec![produce_request::TopicProduceData::default()
        .with_name(topic_name(TOPIC))
        .with_partition_data(vec![produce_request::PartitionProduceData::default().with_index(0).with_records(Some(record_batch(values)))])]);
    let resp = client.request(9, &req).await;
    resp.responses[0].partition_responses[0].clone()
}

/// Every stored byte of the partition on `broker`, from offset 0 to its log end.
fn log_bytes(broker: &RunningBroker) -> Bytes {
    let partition = broker.broker.replicas.partition(TOPIC, 0).expect("partition");
    let (plan, _) = partition.read_plan_to(0, usize::MAX >> 1, true, true).expect("read plan");
    partition.read_planned(&plan).expect("read")
}

async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "not within {PATIENCE:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Plays the controller's part in AlterPartition: checks the leader epoch
/// and partition epoch (fencing a stale leader) and commits the new ISR with
/// the next partition epoch.
#[derive(Default)]
struct TestController {
    state: Mutex<HashMap<(String, i32), (i32, i32, Vec<i32>)>>,
    changes: Mutex<Vec<Vec<i32>>>,
}

impl TestController {
    fn assign(&self, partition: i32, leader_epoch: i32, partition_epoch: i32, isr: Vec<i32>) {
        self.state.lock().insert((TOPIC.to_string(), partition), (leader_epoch, partition_epoch, isr));
    }
}

impl AlterPartitionSender for TestController {
    fn alter_partition(&self, topic: &str, partition: i32, change: IsrChange) -> futures::future::BoxFuture<'static, Result<AlteredPartition, ResponseError>> {
        let mut state = self.state.lock();
        let answer = match state.get_mut(&(topic.to_string(), partition)) {
            None => Err(ResponseError::UnknownTopicOrPartition),
            Some((epoch, _, _)) if *epoch != change.leader_epoch => Err(ResponseError::FencedLeaderEpoch),
            Some((_, partition_epoch, _)) if *partition_epoch != change.partition_epoch => Err(ResponseError::InvalidUpdateVersion),
            Some((_, partition_epoch, isr)) => {
                *partition_epoch += 1;
                *isr = change.new_isr.clone();
                self.changes.lock().push(change.new_isr.clone());
                Ok(AlteredPartition { leader_epoch: change.leader_epoch, partition_epoch: *partition_epoch, isr: isr.clone() })
            }
        };
        Box::pin(std::future::ready(answer))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_all_waits_for_the_follower_which_ends_with_the_same_bytes_at_the_same_offsets() {
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = broker(dir1.path(), 1, &[]).await;
    let follower = broker(dir2.path(), 2, &[]).await;
    introduce(&[&leader, &follower]);
    leader.broker.replicas.become_leader(TOPIC, 0, 1, 1, vec![1, 2], vec![1, 2]).unwrap();
    follower.broker.replicas.become_follower(TOPIC, 0, 1, 1, 1).unwrap();

    let mut client = Client::connect(leader.local_addr).await;
    let mut next = 0;
    for round in 0..20 {
        let values: Vec<String> = (0..1 + round % 4).map(|i| format!("r{round}-{i}")).collect();
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        let answer = produce(&mut client, -1, &values, 10_000).await;
        assert_eq!(answer.error_code, 0, "{answer:?}");
        assert_eq!(answer.base_offset, next);
        next += values.len() as i64;
        // Acknowledged under acks=all: the follower has it already.
        let follower_end = follower.broker.replicas.partition(TOPIC, 0).unwrap().log_end_offset();
        assert!(follower_end >= next, "acked offset {} but the follower ends at {follower_end}", next - 1);
    }
    let leader_partition = leader.broker.replicas.partition(TOPIC, 0).unwrap();
    assert_eq!(leader_partition.high_watermark(), next);
    let follower_partition = follower.broker.replicas.partition(TOPIC, 0).unwrap();
    eventually("the follower learns the high watermark", || follower_partition.high_watermark() == next).await;
    assert_eq!(log_bytes(&follower), log_bytes(&leader), "the follower's log is the leader's, byte for byte");
    // The batches carry the leader's epoch (1), and both epoch caches say so.
    assert_eq!(follower_partition.end_offset_for_epoch(1), (1, next));
    assert_eq!(leader_partition.end_offset_for_epoch(0), (0, 0), "epoch 0 wrote nothing before epoch 1 took over");
    follower.shutdown().await;
    leader.shutdown().await;
}

/// Fetch v12 as a follower (replica id 2) would send it; the test plays the follower.
fn follower_fetch(offset: i64, last_fetched_epoch: i32, current_leader_epoch: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(2))
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![fetch_request::FetchTopic::default().with_topic(topic_name(TOPIC)).with_partitions(vec![fetch_request::FetchPartition::default()
            .with_partition(0)
            .with_fetch_offset(offset)
            .with_last_fetched_epoch(last_fetched_epoch)
            .with_current_leader_epoch(current_leader_epoch)
            .with_partition_max_bytes(1 << 20)])])
}

fn consumer_fetch(offset: i64, current_leader_epoch: i32) -> FetchRequest {
    follower_fetch(offset, -1, current_leader_epoch).with_replica_id(BrokerId(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_high_watermark_moves_only_when_the_follower_fetched_and_consumers_stop_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let leader = broker(dir.path(), 1, &[]).await;
    leader.broker.replicas.become_leader(TOPIC, 0, 3, 1, vec![1, 2], vec![1, 2]).unwrap();
    let mut client = Client::connect(leader.local_addr).await;
    assert_eq!(produce(&mut client, 1, &["a", "b", "c"], 10_000).await.error_code, 0);

    // A consumer sees nothing yet: the follower has not fetched.
    let answer = client.request(12, &consumer_fetch(0, 3)).await;
    let p = &answer.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()), "a consumer read past the high watermark");

    // The follower fetches from 0: it gets the records (past the high watermark); the HW stays.
    let answer = client.request(12, &follower_fetch(0, -1, 3)).await;
    let p = &answer.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    assert!(!p.records.as_ref().unwrap().is_empty(), "a follower reads up to the log end");
    // Its next fetch, from 3, says it has them: the HW moves to 3.
    let answer = client.request(12, &follower_fetch(3, 3, 3)).await;
    assert_eq!(answer.responses[0].partitions[0].high_watermark, 3);
    let answer = client.request(12, &consumer_fetch(0, 3)).await;
    assert!(!answer.responses[0].partitions[0].records.as_ref().unwrap().is_empty());

    // current_leader_epoch is checked for both kinds of fetchers, as in Kafka.
    let code = |a: &FetchResponse| a.responses[0].partitions[0].error_code;
    assert_eq!(code(&client.request(12, &consumer_fetch(0, 2)).await), ResponseError::FencedLeaderEpoch.code());
    assert_eq!(code(&client.request(12, &consumer_fetch(0, 4)).await), ResponseError::UnknownLeaderEpoch.code());
    assert_eq!(code(&client.request(12, &follower_fetch(3, 3, 2)).await), ResponseError::FencedLeaderEpoch.code());
    // A replica the leader does not know is refused.
    let stranger = follower_fetch(3, 3, 3).with_replica_id(BrokerId(9));
    assert_eq!(code(&client.request(12, &stranger).await), ResponseError::NotLeaderOrFollower.code());

    // A follower whose last fetched epoch (2) ended earlier on the leader is told to truncate.
    let answer = client.request(12, &follower_fetch(5, 2, 3)).await;
    let p = &answer.responses[0].partitions[0];
    assert_eq!((p.diverging_epoch.epoch, p.diverging_epoch.end_offset), (2, 0), "epoch 2 predates every epoch here: the first known one starts at 0");
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));

    // OffsetForLeaderEpoch answers from the same cache.
    let req = OffsetForLeaderEpochRequest::default().with_replica_id(BrokerId(2)).with_topics(vec![offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
        .with_topic(topic_name(TOPIC))
        .with_partitions(vec![
            offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(3).with_leader_epoch(3),
            offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(3).with_leader_epoch(1),
            offset_for_leader_epoch_request::OffsetForLeaderPartition::default().with_partition(0).with_current_leader_epoch(2).with_leader_epoch(1),
        ])]);
    let answer = client.request(4, &req).await;
    let got: Vec<(i16, i32, i64)> = answer.topics[0].partitions.iter().map(|p| (p.error_code, p.leader_epoch, p.end_offset)).collect();
    assert_eq!(got, vec![(0, 3, 3), (0, 1, 0), (ResponseError::FencedLeaderEpoch.code(), -1, -1)]);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_follower_holds_acks_all_until_the_isr_shrinks_then_not_enough_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let leader = broker(dir.path(), 1, &[("min.insync.replicas", "2")]).await;
    let controller = Arc::new(TestController::default());
    controller.assign(0, 1, 1, vec![1, 2]);
    leader.broker.replicas.set_alter_partition_sender(controller.clone());
    leader.broker.replicas.set_replica_lag_time_max_ms(1_000);
    leader.broker.replicas.become_leader(TOPIC, 0, 1, 1, vec![1, 2], vec![1, 2]).unwrap();
    let mut client = Client::connect(leader.local_addr).await;

    // Follower 2 never fetches. The produce waits, then the ISR shrinks to {1}
    // through the controller, and min.insync.replicas=2 is no longer met.
    let started = std::time::Instant::now();
    let answer = produce(&mut client, -1, &["x"], 15_000).await;
    let waited = started.elapsed();
    assert_eq!(answer.error_code, ResponseError::NotEnoughReplicasAfterAppend.code(), "{answer:?}");
    assert!(waited >= Duration::from_millis(900), "answered after {waited:?}, before the follower could have lagged");
    assert!(waited < Duration::from_secs(10), "answered after {waited:?}: the ISR did not shrink");
    assert_eq!(controller.changes.lock().clone(), vec![vec![1]]);
    let state = leader.broker.replicas.partition(TOPIC, 0).unwrap().replica_state();
    assert_eq!((state.isr.clone(), state.partition_epoch), (vec![1], 2));
    // Now refused before the append.
    let answer = produce(&mut client, -1, &["y"], 15_000).await;
    assert_eq!(answer.error_code, ResponseError::NotEnoughReplicas.code());
    // acks=1 is not bound by min.insync.replicas.
    assert_eq!(produce(&mut client, 1, &["z"], 15_000).await.error_code, 0);
    leader.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_with_a_divergent_tail_truncates_on_rejoin_and_ends_byte_identical() {
    let (dir1, dir2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let old_leader = broker(dir1.path(), 1, &[]).await;
    let new_leader = broker(dir2.path(), 2, &[]).await;
    introduce(&[&old_leader, &new_leader]);
    // Epoch 1: broker 1 leads, broker 2 follows; three records reach both.
    old_leader.broker.replicas.become_leader(TOPIC, 0, 1, 1, vec![1, 2], vec![1, 2]).unwrap();
    new_leader.broker.replicas.become_follower(TOPIC, 0, 1, 1, 1).unwrap();
    let mut to_old = Client::connect(old_leader.local_addr).await;
    assert_eq!(produce(&mut to_old, -1, &["a", "b", "c"], 10_000).await.error_code, 0);

    // Broker 2 is elected at epoch 2 (broker 1 cut off, still thinking it leads epoch 1).
    new_leader.broker.replicas.become_leader(TOPIC, 0, 2, 2, vec![1, 2], vec![2]).unwrap();
    // The old leader takes writes nobody else gets (acks=1): its divergent tail, epoch 1.
    assert_eq!(produce(&mut to_old, 1, &["lost-1", "lost-2"], 10_000).await.base_offset, 3);
    assert_eq!(produce(&mut to_old, 1, &["lost-3"], 10_000).await.base_offset, 5);
    // The new leader takes other writes at epoch 2.
    let mut to_new = Client::connect(new_leader.local_addr).await;
    assert_eq!(produce(&mut to_new, 1, &["d"], 10_000).await.base_offset, 3);
    assert_eq!(produce(&mut to_new, 1, &["e", "f", "g"], 10_000).await.base_offset, 4);

    // Broker 1 rejoins as a follower: it must drop offsets 3..6 and copy the new leader's.
    old_leader.broker.replicas.become_follower(TOPIC, 0, 2, 2, 2).unwrap();
    let rejoined = old_leader.broker.replicas.partition(TOPIC, 0).unwrap();
    eventually("the rejoined follower catches up", || rejoined.log_end_offset() == 7).await;
    assert_eq!(log_bytes(&old_leader), log_bytes(&new_leader), "byte-identical after truncation and catch-up");
    assert_eq!(rejoined.end_offset_for_epoch(1), (1, 3), "epoch 1 now ends where epoch 2 began");
    old_leader.shutdown().await;
    new_leader.shutdown().await;
}
