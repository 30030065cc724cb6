//! The metadata quorum with real Raft nodes in one process, over real loopback TCP,
//! each with its own data directory. Every wait is bounded.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use runnel_controller::controller::CreateTopic;
use runnel_controller::records::BrokerEndpoint;
use runnel_controller::{ControllerRequest, ControllerResponse, MetadataImage, Quorum, QuorumConfig};
use tokio::net::TcpListener;
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(15);

async fn wait_until<F: FnMut() -> bool>(what: &str, timeout: Duration, mut condition: F) -> Duration {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

fn config(node_id: u64, voters: &BTreeMap<u64, String>, dir: &Path) -> QuorumConfig {
    let mut config = QuorumConfig::new(node_id, voters.clone(), dir.to_path_buf());
    config.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
    config.raft_heartbeat_interval = Duration::from_millis(50);
    config.rpc_timeout = Duration::from_millis(1000);
    config
}

struct Cluster {
    voters: BTreeMap<u64, String>,
    dirs: BTreeMap<u64, tempfile::TempDir>,
    nodes: BTreeMap<u64, Quorum>,
    /// Adjusts every node's config (e.g. `quickly_purging`).
    tune: fn(QuorumConfig) -> QuorumConfig,
}

impl Cluster {
    async fn start(size: u64) -> Cluster {
        Cluster::start_tuned(size, |config| config).await
    }

    async fn start_tuned(size: u64, tune: fn(QuorumConfig) -> QuorumConfig) -> Cluster {
        let mut listeners = BTreeMap::new();
        for id in 1..=size {
            listeners.insert(id, TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let voters: BTreeMap<u64, String> =
            listeners.iter().map(|(id, l)| (*id, l.local_addr().unwrap().to_string())).collect();
        let dirs: BTreeMap<u64, tempfile::TempDir> = (1..=size).map(|id| (id, tempfile::tempdir().unwrap())).collect();
        let mut cluster = Cluster { voters, dirs, nodes: BTreeMap::new(), tune };
        for (id, listener) in listeners {
            cluster.start_node(id, Some(listener)).await;
        }
        cluster
    }

    async fn restart(&mut self, id: u64) {
        let listener = TcpListener::bind(&self.voters[&id]).await.unwrap();
        self.start_node(id, Some(listener)).await;
    }

    /// The leader all running nodes agree on.
    async fn leader(&self) -> u64 {
        let mut leader = None;
        wait_until("an agreed leader", WAIT, || {
            let seen: Vec<Option<u64>> = self.nodes.values().map(|n| n.leader_id()).collect();
            leader = seen[0].filter(|l| self.nodes.contains_key(l) && seen.iter().all(|s| *s == Some(*l)));
            leader.is_some()
        })
        .await;
        leader.unwrap()
    }

    async fn all_see(&self, what: &str, condition: impl Fn(&MetadataImage) -> bool) {
        let watches: Vec<_> = self.nodes.values().map(|n| n.image_watch()).collect();
        wait_until(what, WAIT, || watches.iter().all(|w| condition(&w.borrow()))).await;
    }
}

async fn live_broker(node: &Quorum, broker_id: i32) -> i64 {
    let response = node
        .submit(ControllerRequest::RegisterBroker {
            node_id: broker_id,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![BrokerEndpoint {
                name: "PLAINTEXT".into(),
                host: "127.0.0.1".into(),
                port: 9092,
                security_protocol: "PLAINTEXT".into(),
            }],
            rack: None,
            directory_id: Uuid::nil(),
        })
        .await
        .unwrap();
    let ControllerResponse::BrokerRegistered { broker_epoch } = response else { panic!("{response:?}") };
    let heartbeat = ControllerRequest::BrokerHeartbeat { node_id: broker_id, broker_epoch, want_fence: false, want_shutdown: false };
    // The answer carries how far the controller's metadata log was applied (at
    // least the registration just committed).
    let answer = node.submit(heartbeat).await.unwrap();
    assert!(
        matches!(answer, ControllerResponse::Heartbeat { is_fenced: false, should_shutdown: false, metadata_index } if metadata_index > 0),
        "{answer:?}"
    );
    broker_epoch
}

async fn create_topic(node: &Quorum, name: &str) -> Uuid {
    let response = node
        .submit(ControllerRequest::CreateTopic(CreateTopic {
            name: name.into(),
            num_partitions: 3,
            replication_factor: 1,
            ..Default::default()
        }))
        .await
        .unwrap();
    let ControllerResponse::TopicCreated { topic_id, .. } = response else { panic!("{response:?}") };
    topic_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_forward_submits_from_followers() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    // Submitted on a follower: forwarded to the active controller, committed everywhere.
    live_broker(&cluster.nodes[&follower], 7).await;
    let topic_id = create_topic(&cluster.nodes[&follower], "orders").await;
    cluster.all_see("the topic on every node", |image| image.topic_by_id(&topic_id).is_some_and(|t| t.partitions.len() == 3)).await;
    cluster.all_see("the cluster id", |image| image.cluster_id.as_ref().is_some_and(|id| id.len() == 22)).await;
    // A refusal travels back from the leader with its Kafka error code.
    let error = cluster.nodes[&follower]
        .submit(ControllerRequest::CreateTopic(CreateTopic { name: "orders".into(), num_partitions: 1, replication_factor: 1, ..Default::default() }))
        .await
        .unwrap_err();
    assert!(matches!(error, runnel_controller::SubmitError::Refused(ref e) if e.code == 36), "{error:?}");
    let info = cluster.nodes[&leader].quorum_info();
    assert_eq!(info.leader_id, Some(leader));
    assert_eq!(info.voters.len(), 3);
    assert!(info.voters.iter().all(|v| v.log_end_offset > 0), "{info:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_leader_elects_another_and_keeps_committed_records() {
    let mut cluster = Cluster::start(3).await;
    let old_leader = cluster.leader().await;
    live_broker(&cluster.nodes[&old_leader], 1).await;
    let topic_id = create_topic(&cluster.nodes[&old_leader], "before").await;
    // A crash: the node's tasks and listener vanish without a goodbye.
    drop(cluster.nodes.remove(&old_leader));
    let start = Instant::now();
    let new_leader = cluster.leader().await;
    let failover = start.elapsed();
    assert_ne!(new_leader, old_leader);
    assert!(failover < Duration::from_secs(5), "failover took {failover:?}");
    eprintln!("metadata quorum failover: {failover:?}");
    cluster.all_see("the committed topic", |image| image.topic_by_id(&topic_id).is_some()).await;
    // The new active controller decides on the full image: the old topic name is taken, a new one is not.
    let survivor = &cluster.nodes[&new_leader];
    let error = survivor
        .submit(ControllerRequest::CreateTopic(CreateTopic { name: "before".into(), num_partitions: 1, replication_factor: 1, ..Default::default() }))
        .await
        .unwrap_err();
    assert!(matches!(error, runnel_controller::SubmitError::Refused(ref e) if e.code == 36), "{error:?}");
    let after = create_topic(survivor, "after").await;
    cluster.all_see("the topic created after failover", |image| image.topic_by_id(&after).is_some()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_with_the_same_image() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    live_broker(&cluster.nodes[&leader], 1).await;
    create_topic(&cluster.nodes[&leader], "a").await;
    let follower = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    cluster.nodes.remove(&follower).unwrap().shutdown().await;
    // Committed while it is away: it must catch up on rejoining.
    let missed = create_topic(&cluster.nodes[&leader], "b").await;
    cluster.restart(follower).await;
    cluster.all_see("the topic committed while the node was down", |image| image.topic_by_id(&missed).is_some()).await;
    let leader_image: Arc<MetadataImage> = cluster.nodes[&leader].image_watch().borrow().clone();
    let rejoined = cluster.nodes[&follower].image_watch();
    wait_until("identical images", WAIT, || **rejoined.borrow() == *leader_image).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_controller_fences_a_broker_whose_heartbeats_stop() {
    let voters: BTreeMap<u64, String> = BTreeMap::from([(1, String::new())]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(1, &voters, dir.path());
    config.controller.broker_session_timeout = Duration::from_millis(800);
    let node = Quorum::start(config).await.unwrap();
    live_broker(&node, 1).await;
    let epoch2 = live_broker(&node, 2).await;
    create_topic(&node, "t").await;
    let watch = node.image_watch();
    // Broker 2 keeps its session; broker 1 goes silent.
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(2500) {
        node.submit(ControllerRequest::BrokerHeartbeat { node_id: 2, broker_epoch: epoch2, want_fence: false, want_shutdown: false })
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let image = watch.borrow().clone();
    assert!(!image.is_unfenced(1), "broker 1 is still unfenced");
    assert!(image.is_unfenced(2), "broker 2 was fenced despite its heartbeats");
    for topic in image.topics.values() {
        for p in topic.partitions.values() {
            assert_ne!(p.leader, 1, "a fenced broker still leads {p:?}");
        }
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_quorum_persists_before_answering_and_restarts_with_its_image() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = QuorumConfig::single_node(1, dir.path().to_path_buf());
    config.bootstrap_cluster_id = Some("existing-cluster-id-1234".into());
    // Small, so that the run takes snapshots and purges the log: restart must use both.
    config.snapshot_every_entries = 8;
    let node = Quorum::start(config.clone()).await.unwrap();
    let log = dir.path().join("__cluster_metadata-0").join("log");
    live_broker(&node, 1).await;
    for i in 0..20 {
        let before = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        create_topic(&node, &format!("topic-{i}")).await;
        let after = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
        // Answered only once its entry is in the log file (the append is fsynced before openraft's
        // callback, which is what commits it); a purge may shrink the file in between.
        assert!(after != before, "topic-{i} answered before its entry reached the log file");
    }
    let image: Arc<MetadataImage> = node.image_watch().borrow().clone();
    assert_eq!(image.cluster_id.as_deref(), Some("existing-cluster-id-1234"));
    assert_eq!(image.topics.len(), 20);
    node.shutdown().await;
    assert!(dir.path().join("__cluster_metadata-0/snapshot.json").exists());

    let node = Quorum::start(config).await.unwrap();
    let watch = node.image_watch();
    wait_until("the image restored from the snapshot and log", WAIT, || **watch.borrow() == *image).await;
    // And it goes on committing.
    create_topic(&node, "topic-after-restart").await;
    assert!(watch.borrow().topic_by_name("topic-after-restart").is_some());
    node.shutdown().await;
}

/// A config whose snapshots and purges come quickly: after a few dozen entries the
/// leader no longer has the start of the log, so a node that lost its data can only
/// catch up from a snapshot.
fn quickly_purging(mut config: QuorumConfig) -> QuorumConfig {
    config.snapshot_every_entries = 10;
    config
}

impl Cluster {
    async fn start_node(&mut self, id: u64, listener: Option<TcpListener>) {
        let listener = match listener {
            Some(listener) => listener,
            // A crashed node's listener goes with its aborted task, a moment later.
            None => {
                let start = Instant::now();
                loop {
                    match TcpListener::bind(&self.voters[&id]).await {
                        Ok(listener) => break listener,
                        Err(e) if start.elapsed() < WAIT => {
                            eprintln!("rebinding node {id}'s controller address: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        Err(e) => panic!("cannot rebind node {id}'s controller address: {e}"),
                    }
                }
            }
        };
        let config = (self.tune)(config(id, &self.voters, self.dirs[&id].path()));
        let node = Quorum::start_with_listener(config, Some(listener)).await.unwrap();
        self.nodes.insert(id, node);
    }

    /// The node's whole data directory removed, as an operator replacing a disk would.
    fn wipe(&self, id: u64) {
        let dir = self.dirs[&id].path();
        std::fs::remove_dir_all(dir).unwrap();
        std::fs::create_dir_all(dir).unwrap();
    }

    /// Waits until every running node holds the leader's image, and returns it.
    async fn converged(&self, what: &str) -> Arc<MetadataImage> {
        let leader = self.leader().await;
        let leader_watch = self.nodes[&leader].image_watch();
        let watches: Vec<_> = self.nodes.values().map(|n| n.image_watch()).collect();
        wait_until(what, WAIT, || {
            let image = leader_watch.borrow().clone();
            watches.iter().all(|w| **w.borrow() == *image)
        })
        .await;
        let image = leader_watch.borrow().clone();
        image
    }
}

/// Enough entries that every node snapshots and purges the start of its log.
async fn fill_past_purge(cluster: &Cluster, prefix: &str, topics: usize) {
    let leader = cluster.leader().await;
    for i in 0..topics {
        create_topic(&cluster.nodes[&leader], &format!("{prefix}-{i}")).await;
    }
    let leader_dir = cluster.dirs[&leader].path().join("__cluster_metadata-0");
    wait_until("the leader to purge its log", WAIT, || leader_dir.join("purged.json").exists()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_catches_up_from_the_leaders_snapshot() {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let mut cluster = Cluster::start_tuned(3, quickly_purging).await;
    let first_leader = cluster.leader().await;
    live_broker(&cluster.nodes[&first_leader], 1).await;
    fill_past_purge(&cluster, "before", 30).await;
    // A leader change first, so that the term is past 1: a wiped node's own first
    // election (term 1) then cannot unseat the leader, whose replication state still
    // says how far the node had got before it lost its data (the soak's case).
    drop(cluster.nodes.remove(&first_leader));
    let leader = cluster.leader().await;
    cluster.start_node(first_leader, None).await;
    fill_past_purge(&cluster, "between", 20).await;
    cluster.converged("every node before the wipe").await;
    assert_eq!(cluster.leader().await, leader);
    // Crash a follower, remove its data, start it again with the same id and voters.
    let wiped = *cluster.nodes.keys().find(|id| **id != leader).unwrap();
    drop(cluster.nodes.remove(&wiped));
    cluster.wipe(wiped);
    cluster.start_node(wiped, None).await;
    let image = cluster.converged("the wiped node to catch up to the leader's image").await;
    assert_eq!(image.topics.len(), 50, "{:?}", image.topic_ids_by_name.keys().collect::<Vec<_>>());
    // It keeps following: a record committed after it rejoined reaches it too.
    let after = create_topic(&cluster.nodes[&cluster.leader().await], "after-the-wipe").await;
    cluster.all_see("the topic committed after the wipe", |image| image.topic_by_id(&after).is_some()).await;
    cluster.converged("identical images after the wipe").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_wiped_while_the_whole_quorum_was_down_catches_up() {
    let mut cluster = Cluster::start_tuned(3, quickly_purging).await;
    let leader = cluster.leader().await;
    live_broker(&cluster.nodes[&leader], 1).await;
    fill_past_purge(&cluster, "before", 30).await;
    let before = cluster.converged("every node before the stop").await;
    for id in [1, 2, 3] {
        cluster.nodes.remove(&id).unwrap().shutdown().await;
    }
    cluster.wipe(2);
    for id in [1, 2, 3] {
        cluster.start_node(id, None).await;
    }
    let image = cluster.converged("the wiped node to catch up after the restart").await;
    assert_eq!(image.topics, before.topics);
    assert_eq!(image.cluster_id, before.cluster_id);
    let after = create_topic(&cluster.nodes[&cluster.leader().await], "after-the-restart").await;
    cluster.all_see("the topic committed after the restart", |image| image.topic_by_id(&after).is_some()).await;
}
