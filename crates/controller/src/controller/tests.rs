use super::*;
use proptest::prelude::*;

const SESSION: Duration = Duration::from_millis(9000);
const LINK_LOSS_GRACE: Duration = Duration::from_millis(2000);

struct Cluster {
    controller: Controller,
    image: MetadataImage,
    now: Instant,
    epochs: BTreeMap<i32, i64>,
    /// Each node's data directory id (a wipe gives it a new one).
    directories: BTreeMap<i32, Uuid>,
}

impl Cluster {
    fn new(unclean: bool) -> Self {
        Cluster {
            controller: Controller::new(ControllerConfig { broker_session_timeout: SESSION, unclean_leader_election: unclean, leader_rebalance_interval: None, colocated_broker: None, link_loss_grace: LINK_LOSS_GRACE }),
            image: MetadataImage::default(),
            now: Instant::now(),
            epochs: BTreeMap::new(),
            directories: BTreeMap::new(),
        }
    }

    fn run(&mut self, request: ControllerRequest) -> Result<ControllerResponse, ControllerError> {
        let decision = self.controller.decide(&self.image, &request, self.now)?;
        for record in &decision.records {
            self.image.apply(record).expect("controller records apply");
        }
        Ok(decision.response)
    }

    fn register(&mut self, node_id: i32, rack: Option<&str>) -> i64 {
        self.try_register(node_id, rack).unwrap()
    }

    fn try_register(&mut self, node_id: i32, rack: Option<&str>) -> Result<i64, ControllerError> {
        let directory_id = *self.directories.entry(node_id).or_insert_with(Uuid::new_v4);
        let response = self.run(ControllerRequest::RegisterBroker {
            node_id,
            incarnation_id: Uuid::new_v4(),
            endpoints: vec![],
            rack: rack.map(String::from),
            directory_id,
        })?;
        let ControllerResponse::BrokerRegistered { broker_epoch } = response else { panic!("{response:?}") };
        self.epochs.insert(node_id, broker_epoch);
        Ok(broker_epoch)
    }

    fn heartbeat(&mut self, node_id: i32, want_fence: bool, want_shutdown: bool) -> Result<ControllerResponse, ControllerError> {
        let broker_epoch = self.epochs[&node_id];
        self.run(ControllerRequest::BrokerHeartbeat { node_id, broker_epoch, want_fence, want_shutdown })
    }

    fn live_broker(&mut self, node_id: i32, rack: Option<&str>) {
        self.register(node_id, rack);
        self.heartbeat(node_id, false, false).unwrap();
    }

    fn create(&mut self, name: &str, partitions: i32, rf: i16) -> Result<Uuid, ControllerError> {
        let response = self.run(ControllerRequest::CreateTopic(CreateTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..Default::default()
        }))?;
        let ControllerResponse::TopicCreated { topic_id, .. } = response else { panic!("{response:?}") };
        Ok(topic_id)
    }

    /// Everyone but `node_id` heartbeats past its session; then the controller's timer runs.
    fn expire(&mut self, node_id: i32) {
        self.now += SESSION + Duration::from_secs(1);
        let others: Vec<(i32, bool)> =
            self.image.brokers.values().filter(|b| b.node_id != node_id).map(|b| (b.node_id, b.fenced)).collect();
        for (other, fenced) in others {
            self.heartbeat(other, fenced, false).unwrap();
        }
        for record in self.controller.fence_expired(&self.image, self.now).unwrap() {
            self.image.apply(&record).unwrap();
        }
    }

    fn alter_isr(&mut self, topic_id: Uuid, partition: i32, new_isr: Vec<i32>) -> Result<ControllerResponse, ControllerError> {
        let state = self.image.partition(&topic_id, partition).unwrap().clone();
        self.run(ControllerRequest::AlterPartition(AlterPartition {
            broker_id: state.leader,
            broker_epoch: self.epochs.get(&state.leader).copied().unwrap_or(-1),
            topic_id,
            partition,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            new_isr,
        }))
    }
}

fn code(result: Result<ControllerResponse, ControllerError>) -> i16 {
    result.err().map_or(0, |e| e.code)
}

#[test]
fn registration_epochs_and_duplicate_node_ids() {
    let mut c = Cluster::new(false);
    let incarnation = Uuid::new_v4();
    let register = |incarnation_id| ControllerRequest::RegisterBroker { node_id: 1, incarnation_id, endpoints: vec![], rack: None, directory_id: Uuid::nil() };
    assert_eq!(c.run(register(incarnation)).unwrap(), ControllerResponse::BrokerRegistered { broker_epoch: 1 });
    assert!(c.image.brokers[&1].fenced, "a broker registers fenced");
    // A retry of the same incarnation keeps its epoch and writes nothing.
    assert!(c.controller.decide(&c.image, &register(incarnation), c.now).unwrap().records.is_empty());
    c.epochs.insert(1, 1);
    c.heartbeat(1, false, false).unwrap();
    assert!(c.image.is_unfenced(1));
    // Another process with the same node id while the first is alive is refused...
    assert_eq!(code(c.run(register(Uuid::new_v4()))), ResponseError::DuplicateBrokerRegistration.code());
    // ...and accepted, with a new epoch, once the first one's session has expired.
    c.now += SESSION + Duration::from_secs(1);
    assert_eq!(c.run(register(Uuid::new_v4())).unwrap(), ControllerResponse::BrokerRegistered { broker_epoch: 2 });
    assert_eq!(code(c.heartbeat(1, false, false)), ResponseError::StaleBrokerEpoch.code());
}

fn kill_all_then_restart_1_and_2(c: &mut Cluster) {
    c.now += SESSION + Duration::from_secs(1);
    for node in [1, 2] {
        c.register(node, None);
    }
    for record in c.controller.fence_expired(&c.image, c.now).unwrap() {
        c.image.apply(&record).unwrap();
    }
}

#[test]
fn the_last_isr_member_back_with_a_wiped_directory_is_not_elected() {
    for unclean in [false, true] {
        let mut c = Cluster::new(unclean);
        for node in 1..=3 {
            c.live_broker(node, None);
        }
        let topic_id = c.create("t", 1, 3).unwrap();
        // Every node is killed; nodes 1 and 2 restart (new incarnations, same disks) and
        // leave the ISR; node 3 stays down: the last ISR member of a leaderless partition.
        kill_all_then_restart_1_and_2(&mut c);
        let p = c.image.partition(&topic_id, 0).unwrap().clone();
        assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![3]));
        // Node 3 comes back with an empty disk: a new directory id.
        c.directories.insert(3, Uuid::new_v4());
        c.register(3, None);
        for node in [1, 2] {
            c.heartbeat(node, false, false).unwrap();
        }
        c.heartbeat(3, false, false).unwrap();
        let p = c.image.partition(&topic_id, 0).unwrap().clone();
        if unclean {
            // Another live replica was elected at once: what it has survives.
            assert!(p.leader == 1 || p.leader == 2, "{p:?}");
            assert_eq!((p.isr.clone(), p.offline_replicas.clone()), (vec![p.leader], vec![]));
            continue;
        }
        assert_eq!((p.leader, p.isr.clone(), p.offline_replicas.clone()), (NO_LEADER, vec![3], vec![3]), "the empty copy was elected");
        // Preferred election cannot pick it either; an unclean one picks a replica that kept its log.
        let elect = |election| ControllerRequest::ElectLeaders { election, partitions: vec![("t".to_string(), 0)] };
        c.run(elect(ElectionType::Preferred)).unwrap();
        assert_eq!(c.image.partition(&topic_id, 0).unwrap().leader, NO_LEADER);
        c.run(elect(ElectionType::Unclean)).unwrap();
        let p = c.image.partition(&topic_id, 0).unwrap().clone();
        assert!(p.leader == 1 || p.leader == 2, "{p:?}");
        assert_eq!((p.isr.clone(), p.offline_replicas.clone()), (vec![p.leader], vec![]));
    }
    // The same disk after a restart is not a lost copy: the last ISR member leads again.
    let mut c = Cluster::new(false);
    for node in 1..=3 {
        c.live_broker(node, None);
    }
    let topic_id = c.create("t", 1, 3).unwrap();
    kill_all_then_restart_1_and_2(&mut c);
    c.register(3, None);
    c.heartbeat(3, false, false).unwrap();
    let p = c.image.partition(&topic_id, 0).unwrap().clone();
    assert_eq!((p.leader, p.offline_replicas.clone()), (3, vec![]));
}

#[test]
fn the_broker_in_the_controllers_own_process_reregisters_at_once() {
    let mut c = Cluster::new(false);
    c.controller = Controller::new(ControllerConfig { colocated_broker: Some(1), ..ControllerConfig::default() });
    c.live_broker(1, None);
    c.live_broker(2, None);
    // Node 1 restarted (kill -9): its new incarnation cannot coexist with the old one.
    let epoch = c.register(1, None);
    assert!(epoch > 1, "a new broker epoch");
    // Another node's duplicate still waits for the session.
    assert_eq!(c.try_register(2, None).unwrap_err().code, ResponseError::DuplicateBrokerRegistration.code());
}

#[test]
fn replication_factor_above_live_brokers_is_refused() {
    let mut c = Cluster::new(false);
    c.live_broker(1, None);
    c.register(2, None); // fenced: not eligible
    let error = c.create("t", 1, 2).unwrap_err();
    assert_eq!(error.code, ResponseError::InvalidReplicationFactor.code());
    assert!(c.image.topic_by_name("t").is_none());
    assert_eq!(c.create("t", 0, 1).unwrap_err().code, ResponseError::InvalidPartitions.code());
    assert_eq!(c.create("bad/name", 1, 1).unwrap_err().code, ResponseError::InvalidTopicException.code());
    c.create("t", 1, 1).unwrap();
    assert_eq!(c.create("t", 1, 1).unwrap_err().code, ResponseError::TopicAlreadyExists.code());
}

#[test]
fn placement_balances_leaders_and_spreads_replicas() {
    let mut c = Cluster::new(false);
    for id in 1..=3 {
        c.live_broker(id, None);
    }
    let topic_id = c.create("t", 6, 3).unwrap();
    let topic = c.image.topic_by_id(&topic_id).unwrap();
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    for p in topic.partitions.values() {
        assert_eq!(p.replicas.iter().collect::<BTreeSet<_>>().len(), 3);
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.leader, p.replicas[0]);
        *leaders.entry(p.leader).or_default() += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
    // A second topic keeps the cluster balanced: 1 partition each goes to... every broker in turn.
    let second = c.create("u", 3, 1).unwrap();
    let led: BTreeSet<i32> = c.image.topic_by_id(&second).unwrap().partitions.values().map(|p| p.leader).collect();
    assert_eq!(led.len(), 3);
}

#[test]
fn placement_is_rack_aware() {
    let mut c = Cluster::new(false);
    for (id, rack) in [(1, "a"), (2, "a"), (3, "b"), (4, "b"), (5, "c"), (6, "c")] {
        c.live_broker(id, Some(rack));
    }
    let topic_id = c.create("t", 12, 3).unwrap();
    let mut leaders: BTreeMap<i32, usize> = BTreeMap::new();
    for p in c.image.topic_by_id(&topic_id).unwrap().partitions.values() {
        let racks: BTreeSet<_> = p.replicas.iter().map(|r| c.image.brokers[r].rack.clone()).collect();
        assert_eq!(racks.len(), 3, "replicas {:?} share a rack", p.replicas);
        *leaders.entry(p.leader).or_default() += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2; 6]);
}

#[test]
fn explicit_assignments_are_validated() {
    let mut c = Cluster::new(false);
    c.live_broker(1, None);
    c.live_broker(2, None);
    let create = |assignments: Vec<Vec<i32>>| {
        ControllerRequest::CreateTopic(CreateTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Some(assignments),
            ..Default::default()
        })
    };
    assert_eq!(code(c.run(create(vec![vec![1, 9]]))), ResponseError::InvalidReplicaAssignment.code());
    assert_eq!(code(c.run(create(vec![vec![1, 1]]))), ResponseError::InvalidReplicaAssignment.code());
    assert_eq!(code(c.run(create(vec![vec![1, 2], vec![2]]))), ResponseError::InvalidReplicaAssignment.code());
    c.run(create(vec![vec![2, 1], vec![1, 2]])).unwrap();
    let topic = c.image.topic_by_name("t").unwrap();
    assert_eq!(topic.partitions[&0].leader, 2);
    assert_eq!(topic.partitions[&1].leader, 1);
    c.run(ControllerRequest::CreatePartitions { topic: "t".into(), count: 3, assignments: None }).unwrap();
    assert_eq!(c.image.topic_by_name("t").unwrap().partitions[&2].replicas.len(), 2);
    assert_eq!(
        code(c.run(ControllerRequest::CreatePartitions { topic: "t".into(), count: 3, assignments: None })),
        ResponseError::InvalidPartitions.code()
    );
}

#[test]
fn fencing_elects_from_the_isr_and_keeps_the_last_member() {
    let mut c = Cluster::new(false);
    for id in 1..=3 {
        c.live_broker(id, None);
    }
    let topic_id = c
        .run(ControllerRequest::CreateTopic(CreateTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Some(vec![vec![1, 2, 3]]),
            ..Default::default()
        }))
        .map(|r| match r {
            ControllerResponse::TopicCreated { topic_id, .. } => topic_id,
            other => panic!("{other:?}"),
        })
        .unwrap();
    c.alter_isr(topic_id, 0, vec![1, 2]).unwrap();
    c.expire(1);
    let p = c.image.partition(&topic_id, 0).unwrap().clone();
    assert!(!c.image.is_unfenced(1));
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch, p.partition_epoch), (2, vec![2], 1, 2));
    // Broker 3 is not in the ISR: losing 2 leaves the partition leaderless, with 2 kept in the ISR.
    c.expire(2);
    let p = c.image.partition(&topic_id, 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![2]));
    assert_eq!(p.leader_epoch, 2);
    // 2 comes back: it leads again, cleanly.
    c.heartbeat(2, false, false).unwrap();
    let p = c.image.partition(&topic_id, 0).unwrap().clone();
    assert_eq!((p.leader, p.isr.clone(), p.leader_epoch), (2, vec![2], 3));
}

#[test]
fn unclean_election_only_when_enabled() {
    for unclean in [false, true] {
        let mut c = Cluster::new(unclean);
        c.live_broker(1, None);
        c.live_broker(2, None);
        let topic_id = c.create("t", 1, 2).unwrap();
        let leader = c.image.partition(&topic_id, 0).unwrap().leader;
        let follower = 3 - leader;
        c.alter_isr(topic_id, 0, vec![leader]).unwrap();
        c.expire(leader);
        let p = c.image.partition(&topic_id, 0).unwrap();
        if unclean {
            assert_eq!((p.leader, p.isr.clone()), (follower, vec![follower]));
        } else {
            assert_eq!((p.leader, p.isr.clone()), (NO_LEADER, vec![leader]));
            let response = c
                .run(ControllerRequest::ElectLeaders { election: ElectionType::Unclean, partitions: vec![("t".into(), 0)] })
                .unwrap();
            assert_eq!(response, ControllerResponse::LeadersElected { results: vec![("t".into(), 0, 0)] });
            let p = c.image.partition(&topic_id, 0).unwrap();
            assert_eq!((p.leader, p.isr.clone()), (follower, vec![follower]));
        }
    }
}

#[test]
fn alter_partition_follows_kafkas_checks() {
    let mut c = Cluster::new(false);
    for id in 1..=3 {
        c.live_broker(id, None);
    }
    let topic_id = c.create("t", 1, 3).unwrap();
    let state = c.image.partition(&topic_id, 0).unwrap().clone();
    let leader = state.leader;
    let others: Vec<i32> = state.replicas.iter().copied().filter(|r| *r != leader).collect();
    let request = |leader_epoch, partition_epoch, new_isr: Vec<i32>, epochs: &BTreeMap<i32, i64>| {
        ControllerRequest::AlterPartition(AlterPartition {
            broker_id: leader,
            broker_epoch: epochs[&leader],
            topic_id,
            partition: 0,
            leader_epoch,
            partition_epoch,
            new_isr,
        })
    };
    let epochs = c.epochs.clone();
    let response = c.run(request(0, 0, vec![leader, others[0]], &epochs)).unwrap();
    assert_eq!(
        response,
        ControllerResponse::PartitionAltered { leader, leader_epoch: 0, partition_epoch: 1, isr: vec![leader, others[0]] }
    );
    // The same request again: its partition epoch is now stale.
    assert_eq!(code(c.run(request(0, 0, vec![leader], &epochs))), ResponseError::InvalidUpdateVersion.code());
    assert_eq!(code(c.run(request(0, 1, vec![others[0]], &epochs))), ResponseError::InvalidRequest.code());
    let mut stale = epochs.clone();
    *stale.get_mut(&leader).unwrap() -= 1;
    assert_eq!(code(c.run(request(0, 1, vec![leader], &stale))), ResponseError::StaleBrokerEpoch.code());
    // Broker others[1] is fenced: it may not join the ISR.
    c.heartbeat(others[1], true, false).unwrap();
    assert_eq!(code(c.run(request(0, 1, vec![leader, others[0], others[1]], &epochs))), ResponseError::IneligibleReplica.code());
    // A leader change makes the old leader's epoch stale.
    c.heartbeat(leader, false, true).unwrap();
    assert_eq!(code(c.run(request(0, 1, vec![leader], &epochs))), ResponseError::FencedLeaderEpoch.code());
}

#[test]
fn controlled_shutdown_moves_leadership_then_fences() {
    let mut c = Cluster::new(false);
    c.live_broker(1, None);
    c.live_broker(2, None);
    let topic_id = c.create("t", 4, 2).unwrap();
    let response = c.heartbeat(1, false, true).unwrap();
    assert_eq!(response, ControllerResponse::Heartbeat { is_fenced: true, should_shutdown: true, metadata_index: 0 });
    for p in c.image.topic_by_id(&topic_id).unwrap().partitions.values() {
        assert_eq!((p.leader, p.isr.clone()), (2, vec![2]));
    }
    // Back, caught up: the preferred leader election returns leadership to it once in the ISR.
    c.heartbeat(1, false, false).unwrap();
    for partition in 0..4 {
        let p = c.image.partition(&topic_id, partition).unwrap().clone();
        let mut isr = p.isr.clone();
        isr.push(1);
        c.alter_isr(topic_id, partition, isr).unwrap();
    }
    for record in c.controller.rebalance_preferred_leaders(&c.image).unwrap() {
        c.image.apply(&record).unwrap();
    }
    for p in c.image.topic_by_id(&topic_id).unwrap().partitions.values() {
        assert_eq!(p.leader, p.replicas[0]);
    }
}

fn allocate(broker_id: i32, broker_epoch: i64, first_id_at_least: i64) -> ControllerRequest {
    ControllerRequest::AllocateProducerIds { broker_id, broker_epoch, first_id_at_least }
}

#[test]
fn producer_id_blocks_are_consecutive_and_never_shared_between_brokers() {
    let mut c = Cluster::new(false);
    let one = c.register(1, None);
    let two = c.register(2, None);
    assert_eq!(c.run(allocate(1, one, 0)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 0, count: 1000 });
    assert_eq!(c.run(allocate(2, two, 0)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 1000, count: 1000 });
    assert_eq!(c.run(allocate(1, one, 0)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 2000, count: 1000 });
    assert_eq!(c.image.next_producer_id, 3000);
}

#[test]
fn producer_ids_need_the_current_broker_epoch() {
    let mut c = Cluster::new(false);
    let epoch = c.register(1, None);
    assert_eq!(code(c.run(allocate(1, epoch + 7, 0))), ResponseError::StaleBrokerEpoch.code());
    // An unknown broker gets STALE_BROKER_EPOCH too, as from Kafka's controller.
    assert_eq!(code(c.run(allocate(9, epoch, 0))), ResponseError::StaleBrokerEpoch.code());
    // Refusals hand nothing out.
    assert_eq!(c.image.next_producer_id, 0);
    // A re-registered broker's old epoch is stale.
    let newer = c.register(1, None);
    assert_eq!(code(c.run(allocate(1, epoch, 0))), ResponseError::StaleBrokerEpoch.code());
    assert_eq!(c.run(allocate(1, newer, 0)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 0, count: 1000 });
}

#[test]
fn a_local_high_water_raises_the_next_block_and_a_lower_one_changes_nothing() {
    let mut c = Cluster::new(false);
    let one = c.register(1, None);
    let two = c.register(2, None);
    // Broker 1's data directory issued ids below 7000 from its local counter.
    assert_eq!(c.run(allocate(1, one, 7000)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 7000, count: 1000 });
    assert_eq!(c.run(allocate(2, two, 0)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 8000, count: 1000 });
    assert_eq!(c.run(allocate(2, two, 3000)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 9000, count: 1000 });
}

#[test]
fn producer_id_exhaustion_is_refused_without_a_record() {
    let mut c = Cluster::new(false);
    let epoch = c.register(1, None);
    let refused = c.controller.decide(&c.image, &allocate(1, epoch, i64::MAX - 10), c.now).unwrap_err();
    assert_eq!(refused.code, ResponseError::UnknownServerError.code());
    assert_eq!(c.image.next_producer_id, 0);
}

#[test]
fn the_next_block_survives_a_snapshot_and_a_new_controller() {
    let mut c = Cluster::new(false);
    let epoch = c.register(1, None);
    c.run(allocate(1, epoch, 0)).unwrap();
    c.run(allocate(1, epoch, 0)).unwrap();
    // A new active controller starts from the image restored from its snapshot.
    let snapshot = serde_json::to_vec(&c.image).unwrap();
    c.image = serde_json::from_slice(&snapshot).unwrap();
    c.controller = Controller::new(ControllerConfig::default());
    assert_eq!(c.run(allocate(1, epoch, 0)).unwrap(), ControllerResponse::ProducerIds { first_producer_id: 2000, count: 1000 });
}

#[test]
fn an_allocation_request_without_a_high_water_decodes() {
    // A request forwarded by a node of the release before `first_id_at_least`.
    let old: ControllerRequest =
        serde_json::from_str(r#"{"AllocateProducerIds":{"broker_id":1,"broker_epoch":4}}"#).unwrap();
    assert_eq!(old, allocate(1, 4, 0));
}

#[derive(Debug, Clone)]
enum Op {
    Register(i32),
    Heartbeat(i32, bool),
    Expire(i32),
    Shutdown(i32),
    Create(i16),
    ShrinkIsr(usize, usize),
    ExpandIsr(usize, usize),
    PreferredElection,
    Reassign(usize, Vec<i32>),
    CancelReassignment(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (1..5i32).prop_map(Op::Register),
        (1..5i32, any::<bool>()).prop_map(|(n, f)| Op::Heartbeat(n, f)),
        (1..5i32).prop_map(Op::Expire),
        (1..5i32).prop_map(Op::Shutdown),
        (1..4i16).prop_map(Op::Create),
        (0..8usize, 0..3usize).prop_map(|(p, k)| Op::ShrinkIsr(p, k)),
        (0..8usize, 0..4usize).prop_map(|(p, k)| Op::ExpandIsr(p, k)),
        Just(Op::PreferredElection),
        (0..8usize, proptest::collection::vec(1..5i32, 1..4)).prop_map(|(p, t)| Op::Reassign(p, t)),
        (0..8usize).prop_map(Op::CancelReassignment),
    ]
}

fn partitions(image: &MetadataImage) -> Vec<(Uuid, i32, crate::image::PartitionImage)> {
    image
        .topics
        .values()
        .flat_map(|t| t.partitions.iter().map(move |(p, s)| (t.topic_id, *p, s.clone())))
        .collect()
}

fn check_invariants(before: &MetadataImage, after: &MetadataImage, unclean: bool) -> Result<(), TestCaseError> {
    for (topic_id, partition, p) in partitions(after) {
        prop_assert!(!p.isr.is_empty(), "empty ISR: {:?}", p);
        prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)), "ISR ⊄ replicas: {:?}", p);
        prop_assert!(p.adding_replicas.iter().chain(&p.removing_replicas).all(|r| p.replicas.contains(r)), "adding/removing ⊄ replicas: {:?}", p);
        prop_assert!(p.adding_replicas.iter().all(|r| !p.removing_replicas.contains(r)), "a replica both adding and removing: {:?}", p);
        if p.is_reassigning() {
            prop_assert!(!p.adding_replicas.iter().all(|r| p.isr.contains(r)) || p.isr.iter().all(|r| p.removing_replicas.contains(r)), "a reassignment that could complete did not: {:?}", p);
        }
        if p.leader != NO_LEADER {
            prop_assert!(p.isr.contains(&p.leader), "leader ∉ ISR: {:?}", p);
            prop_assert!(p.isr.iter().all(|r| after.is_unfenced(*r)), "a led partition has a fenced ISR member: {:?}", p);
        }
        if let Some(old) = before.partition(&topic_id, partition) {
            prop_assert!(p.leader_epoch >= old.leader_epoch && p.partition_epoch >= old.partition_epoch);
            if p.leader != old.leader {
                prop_assert!(p.leader_epoch > old.leader_epoch, "leader changed without an epoch bump");
                // A completing reassignment may elect a target replica whose joining the ISR completed it
                // (an adding replica, or a kept one that was never in the ISR: a new target can be a
                // subset of the previous reassignment's adding replicas).
                let was_a_target = old.replicas.contains(&p.leader) && !old.removing_replicas.contains(&p.leader);
                let joined_and_completed = old.is_reassigning() && !p.is_reassigning() && was_a_target && p.isr.contains(&p.leader);
                if !unclean && p.leader != NO_LEADER && !joined_and_completed {
                    prop_assert!(old.isr.contains(&p.leader), "{} elected from outside the ISR {:?}", p.leader, old.isr);
                }
            }
            if p != *old {
                prop_assert!(p.partition_epoch > old.partition_epoch, "partition changed without an epoch bump");
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn random_cluster_histories_keep_the_partition_invariants(unclean in any::<bool>(), ops in proptest::collection::vec(op(), 1..60)) {
        let mut c = Cluster::new(unclean);
        let mut topics = 0;
        for op in ops {
            let before = c.image.clone();
            match op {
                Op::Register(n) => { let _ = c.try_register(n, None); }
                Op::Heartbeat(n, want_fence) => { if c.epochs.contains_key(&n) { let _ = c.heartbeat(n, want_fence, false); } }
                Op::Expire(n) => { if c.epochs.contains_key(&n) { c.expire(n); } }
                Op::Shutdown(n) => { if c.epochs.contains_key(&n) { let _ = c.heartbeat(n, false, true); } }
                Op::Create(rf) => { topics += 1; let _ = c.create(&format!("t{topics}"), 2, rf); }
                Op::ShrinkIsr(i, k) | Op::ExpandIsr(i, k) => {
                    let all = partitions(&c.image);
                    if all.is_empty() { continue; }
                    let (topic_id, partition, p) = all[i % all.len()].clone();
                    if p.leader == NO_LEADER { continue; }
                    let mut isr = p.isr.clone();
                    if matches!(op, Op::ShrinkIsr(..)) {
                        let victim = isr[k % isr.len()];
                        if victim != p.leader { isr.retain(|r| *r != victim); }
                    } else {
                        let candidate = p.replicas[k % p.replicas.len()];
                        if !isr.contains(&candidate) { isr.push(candidate); }
                    }
                    let _ = c.alter_isr(topic_id, partition, isr);
                }
                Op::Reassign(i, _) | Op::CancelReassignment(i) => {
                    let all = partitions(&c.image);
                    if all.is_empty() { continue; }
                    let (topic_id, partition, _) = all[i % all.len()].clone();
                    let topic = c.image.topic_by_id(&topic_id).unwrap().name.clone();
                    let target = match &op { Op::Reassign(_, target) => Some(target.clone()), _ => None };
                    c.reassign(&topic, partition, target, true);
                }
                Op::PreferredElection => {
                    for record in c.controller.rebalance_preferred_leaders(&c.image).unwrap() {
                        c.image.apply(&record).unwrap();
                    }
                }
            }
            check_invariants(&before, &c.image, unclean)?;
        }
    }
}

impl Cluster {
    fn reassign(&mut self, topic: &str, partition: i32, target: Option<Vec<i32>>, allow_rf_change: bool) -> (i16, Option<String>) {
        let response = self
            .run(ControllerRequest::AlterPartitionReassignments {
                reassignments: vec![Reassignment { topic: topic.into(), partition, target }],
                allow_replication_factor_change: allow_rf_change,
            })
            .unwrap();
        let ControllerResponse::Reassigned { mut results } = response else { panic!("{response:?}") };
        let (_, _, code, message) = results.remove(0);
        (code, message)
    }

    fn state(&self, topic_id: Uuid) -> crate::image::PartitionImage {
        self.image.partition(&topic_id, 0).unwrap().clone()
    }
}

/// Three live brokers, topic "t" with one partition on `replicas`, all in the ISR, led by the first.
fn reassignment_cluster(replicas: Vec<i32>) -> (Cluster, Uuid) {
    let mut c = Cluster::new(false);
    for n in 1..=4 {
        c.live_broker(n, None);
    }
    let response = c
        .run(ControllerRequest::CreateTopic(CreateTopic {
            name: "t".into(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: Some(vec![replicas]),
            ..Default::default()
        }))
        .unwrap();
    let ControllerResponse::TopicCreated { topic_id, .. } = response else { panic!("{response:?}") };
    (c, topic_id)
}

#[test]
fn a_move_adds_the_target_then_completes_when_the_new_replicas_join_the_isr() {
    let (mut c, topic_id) = reassignment_cluster(vec![1, 2]);
    assert_eq!(c.reassign("t", 0, Some(vec![3, 4]), true), (0, None));
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.adding_replicas.clone(), p.removing_replicas.clone()), (vec![3, 4, 1, 2], vec![3, 4], vec![1, 2]));
    assert_eq!((p.isr.clone(), p.leader), (vec![1, 2], 1));
    // One adding replica in sync: not yet.
    c.alter_isr(topic_id, 0, vec![1, 2, 3]).unwrap();
    assert!(c.state(topic_id).is_reassigning());
    // The last one: replicas = target, the old ones leave the ISR, the removed leader is replaced by the first target replica.
    let response = c.alter_isr(topic_id, 0, vec![1, 2, 3, 4]).unwrap();
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![3, 4], vec![3, 4], 3));
    assert!(!p.is_reassigning());
    assert_eq!(p.leader_epoch, 1);
    assert_eq!(
        response,
        ControllerResponse::PartitionAltered { leader: 3, leader_epoch: 1, partition_epoch: p.partition_epoch, isr: vec![3, 4] }
    );
}

#[test]
fn a_leader_kept_by_the_target_stays_leader() {
    let (mut c, topic_id) = reassignment_cluster(vec![1, 2]);
    c.reassign("t", 0, Some(vec![3, 1]), true);
    c.alter_isr(topic_id, 0, vec![1, 2, 3]).unwrap();
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader, p.leader_epoch), (vec![3, 1], vec![1, 3], 1, 0));
}

#[test]
fn removing_replicas_only_completes_at_once() {
    let (mut c, topic_id) = reassignment_cluster(vec![1, 2, 3]);
    assert_eq!(c.reassign("t", 0, Some(vec![2, 3]), true).0, 0);
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![2, 3], vec![2, 3], 2));
    assert!(!p.is_reassigning());
    // The same assignment again writes nothing.
    let epoch = p.partition_epoch;
    assert_eq!(c.reassign("t", 0, Some(vec![2, 3]), true).0, 0);
    assert_eq!(c.state(topic_id).partition_epoch, epoch);
}

#[test]
fn cancel_reverts_to_the_original_replicas() {
    let (mut c, topic_id) = reassignment_cluster(vec![1]);
    let none = ResponseError::NoReassignmentInProgress.code();
    assert_eq!(c.reassign("t", 0, None, true).0, none);
    c.reassign("t", 0, Some(vec![2]), true);
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.adding_replicas.clone(), p.removing_replicas.clone()), (vec![2, 1], vec![2], vec![1]));
    assert_eq!(c.reassign("t", 0, None, true), (0, None));
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![1], vec![1], 1));
    assert!(!p.is_reassigning());
    assert_eq!(c.reassign("t", 0, None, true).0, none);
}

#[test]
fn cancel_after_an_adding_replica_led_elects_an_original_one() {
    let (mut c, topic_id) = reassignment_cluster(vec![1, 2]);
    c.reassign("t", 0, Some(vec![3, 4]), true);
    c.alter_isr(topic_id, 0, vec![1, 2, 3]).unwrap();
    // Broker 1 fails: 2 leads. Then 2 fails too: 3 (in the ISR) leads.
    c.expire(1);
    c.expire(2);
    assert_eq!(c.state(topic_id).leader, 3);
    c.heartbeat(2, false, false).unwrap();
    c.alter_isr(topic_id, 0, vec![3, 2]).unwrap();
    c.reassign("t", 0, None, true);
    let p = c.state(topic_id);
    assert_eq!((p.replicas.clone(), p.isr.clone(), p.leader), (vec![1, 2], vec![2], 2));
}

#[test]
fn invalid_reassignments_are_refused_with_kafkas_codes() {
    let (mut c, topic_id) = reassignment_cluster(vec![1, 2]);
    let before = c.state(topic_id);
    let invalid = ResponseError::InvalidReplicaAssignment.code();
    assert_eq!(c.reassign("t", 0, Some(vec![]), true).0, invalid);
    assert_eq!(c.reassign("t", 0, Some(vec![3, 3]), true).0, invalid);
    let (code, message) = c.reassign("t", 0, Some(vec![3, 9]), true);
    assert_eq!(code, invalid);
    assert!(message.unwrap().contains("broker 9"));
    assert_eq!(c.reassign("t", 1, Some(vec![3]), true).0, ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(c.reassign("nope", 0, Some(vec![3]), true).0, ResponseError::UnknownTopicOrPartition.code());
    assert_eq!(c.reassign("t", 0, Some(vec![3]), false).0, ResponseError::InvalidReplicationFactor.code());
    assert_eq!(c.state(topic_id), before);
    // The same size is allowed without a replication factor change.
    assert_eq!(c.reassign("t", 0, Some(vec![3, 4]), false).0, 0);
}

#[test]
fn one_bad_partition_does_not_stop_the_others() {
    let (mut c, topic_id) = reassignment_cluster(vec![1]);
    let response = c
        .run(ControllerRequest::AlterPartitionReassignments {
            reassignments: vec![
                Reassignment { topic: "t".into(), partition: 7, target: Some(vec![2]) },
                Reassignment { topic: "t".into(), partition: 0, target: Some(vec![2]) },
            ],
            allow_replication_factor_change: true,
        })
        .unwrap();
    let ControllerResponse::Reassigned { results } = response else { panic!() };
    assert_eq!(results.iter().map(|r| r.2).collect::<Vec<_>>(), vec![ResponseError::UnknownTopicOrPartition.code(), 0]);
    assert_eq!(c.state(topic_id).adding_replicas, vec![2]);
}

#[test]
fn a_reassignment_replacing_one_in_progress_completes_when_its_target_joins_the_isr() {
    // Found by the proptest in CI: the new target [4] is a subset of the old reassignment's adding
    // replicas, so (as in Kafka's PartitionReassignmentReplicas, which starts from the full replica
    // list) nothing is adding and 1 and 3 are removing; 4 joining the ISR completes it and 4 leads.
    let mut c = Cluster::new(false);
    c.live_broker(3, None);
    c.try_register(4, None).unwrap();
    c.try_register(1, None).unwrap();
    let topic_id = c.create("t1", 1, 1).unwrap();
    c.heartbeat(4, false, false).unwrap();
    assert_eq!(c.reassign("t1", 0, Some(vec![4, 1]), true).0, 0);
    assert_eq!(c.reassign("t1", 0, Some(vec![4]), true).0, 0);
    let p = c.state(topic_id);
    assert_eq!((p.replicas.as_slice(), p.isr.as_slice(), p.leader), (&[4, 1, 3][..], &[3][..], 3));
    assert_eq!((p.adding_replicas.as_slice(), p.removing_replicas.as_slice()), (&[][..], &[1, 3][..]));
    c.alter_isr(topic_id, 0, vec![3, 4]).unwrap();
    let p = c.state(topic_id);
    assert_eq!((p.replicas.as_slice(), p.isr.as_slice(), p.leader, p.leader_epoch), (&[4][..], &[4][..], 4, 1));
    assert!(!p.is_reassigning());
}

#[test]
fn an_unclean_election_of_the_adding_replica_completes_the_reassignment() {
    // Found by the proptest: the only ISR member (and source of the move) dies before
    // the target caught up; the unclean election puts the target alone in the ISR.
    let mut c = Cluster::new(true);
    c.live_broker(3, None);
    c.try_register(1, None).unwrap();
    let topic_id = c.create("t1", 1, 1).unwrap();
    c.heartbeat(1, false, false).unwrap();
    assert_eq!(c.reassign("t1", 0, Some(vec![1]), true).0, 0);
    c.expire(3);
    let p = c.state(topic_id);
    assert_eq!((p.replicas.as_slice(), p.isr.as_slice(), p.leader), (&[1][..], &[1][..], 1));
    assert!(!p.is_reassigning(), "{p:?}");
}

fn scram_upsertion(name: &str, mechanism: i8, iterations: i32) -> ScramUpsertion {
    ScramUpsertion { name: name.into(), mechanism, iterations, salt: vec![1; 16], stored_key: vec![2; 32], server_key: vec![3; 32] }
}

fn scram_results(decision: &Decision) -> Vec<(String, i16, Option<String>)> {
    match &decision.response {
        ControllerResponse::ScramCredentialsAltered { results } => results.clone(),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[test]
fn scram_alterations_follow_kafkas_checks_and_commit_the_valid_ones_together() {
    let mut controller = Controller::new(ControllerConfig::default());
    let image = MetadataImage::default();
    let now = Instant::now();
    let request = ControllerRequest::AlterUserScramCredentials {
        deletions: vec![ScramDeletion { name: "ghost".into(), mechanism: 1 }],
        upsertions: vec![
            scram_upsertion("alice", 2, 8192),
            scram_upsertion("twice", 2, 8192),
            scram_upsertion("twice", 1, 8192),
            scram_upsertion("few", 1, 4095),
            scram_upsertion("many", 1, 16385),
            scram_upsertion("", 1, 8192),
            scram_upsertion("odd", 3, 8192),
            scram_upsertion("bob", 1, 4096),
        ],
    };
    let decision = controller.decide(&image, &request, now).unwrap();
    let code = |name: &str| scram_results(&decision).into_iter().find(|(n, _, _)| n == name).map(|(_, c, m)| (c, m.unwrap_or_default()));
    assert_eq!(code("alice"), Some((0, String::new())));
    assert_eq!(code("bob"), Some((0, String::new())));
    assert_eq!(code("ghost").unwrap().0, ResponseError::ResourceNotFound.code());
    assert_eq!(code("twice").unwrap().0, ResponseError::DuplicateResource.code());
    assert_eq!(code("few"), Some((ResponseError::UnacceptableCredential.code(), "Too few iterations".into())));
    assert_eq!(code("many"), Some((ResponseError::UnacceptableCredential.code(), "Too many iterations".into())));
    assert_eq!(code(""), Some((ResponseError::UnacceptableCredential.code(), "Username must not be empty".into())));
    assert_eq!(code("odd").unwrap().0, ResponseError::UnsupportedSaslMechanism.code());
    assert_eq!(scram_results(&decision).len(), 8, "one answer per user");
    // Only alice's and bob's credentials are written.
    let mut applied = image.clone();
    for record in &decision.records {
        applied.apply(record).unwrap();
    }
    assert_eq!(applied.scram_credentials.keys().collect::<Vec<_>>(), vec!["alice", "bob"]);
    assert_eq!(applied.scram_credentials["alice"][&2].iterations, 8192);

    // Deleting an existing credential removes it; the other mechanism's is unknown.
    let delete = ControllerRequest::AlterUserScramCredentials {
        deletions: vec![ScramDeletion { name: "alice".into(), mechanism: 2 }, ScramDeletion { name: "bob".into(), mechanism: 2 }],
        upsertions: vec![],
    };
    let decision = controller.decide(&applied, &delete, now).unwrap();
    let results = scram_results(&decision);
    assert_eq!(results[0], ("alice".to_string(), 0, None));
    assert_eq!(results[1].1, ResponseError::ResourceNotFound.code());
    for record in &decision.records {
        applied.apply(record).unwrap();
    }
    assert!(!applied.scram_credentials.contains_key("alice"));
    assert!(applied.scram_credentials.contains_key("bob"));
}

#[test]
fn a_lost_liveness_link_fences_after_the_grace_unless_a_heartbeat_comes() {
    let mut c = Cluster::new(false);
    for id in 1..=3 {
        c.live_broker(id, None);
    }
    let topic = c.create("t", 1, 3).unwrap();
    let leader = c.image.partition(&topic, 0).unwrap().leader;
    let fence_due = |c: &mut Cluster| {
        let records = c.controller.fence_expired(&c.image, c.now).unwrap();
        for record in &records {
            c.image.apply(record).unwrap();
        }
        !records.is_empty()
    };

    // A link lost by an older incarnation, or by an unknown node, changes nothing.
    let epoch = c.epochs[&leader];
    c.controller
        .liveness_link_lost(&c.image.clone(), leader, epoch - 1, c.now);
    c.controller
        .liveness_link_lost(&c.image.clone(), 42, 1, c.now);
    c.now += LINK_LOSS_GRACE * 2;
    for id in 1..=3 {
        c.heartbeat(id, false, false).unwrap();
    }
    assert!(!fence_due(&mut c));

    // A heartbeat within the grace (a live broker that reconnected) cancels it.
    c.controller
        .liveness_link_lost(&c.image.clone(), leader, epoch, c.now);
    c.now += LINK_LOSS_GRACE / 2;
    c.heartbeat(leader, false, false).unwrap();
    c.now += LINK_LOSS_GRACE;
    assert!(
        !fence_due(&mut c),
        "a broker that heartbeat after its link closed was fenced"
    );

    // No heartbeat within the grace: fenced long before its session expires, its leadership moved.
    c.controller
        .liveness_link_lost(&c.image.clone(), leader, epoch, c.now);
    c.now += LINK_LOSS_GRACE / 2;
    assert!(!fence_due(&mut c), "fenced before the grace ended");
    c.now += LINK_LOSS_GRACE;
    assert!(LINK_LOSS_GRACE * 2 < SESSION);
    assert!(fence_due(&mut c));
    assert!(c.image.brokers[&leader].fenced);
    let state = c.image.partition(&topic, 0).unwrap();
    assert_ne!(state.leader, leader);
    assert!(!state.isr.contains(&leader));
}

fn acl(resource_type: i8, name: &str, pattern_type: i8, principal: &str, operation: i8, permission_type: i8) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.into(),
        pattern_type,
        principal: principal.into(),
        host: "*".into(),
        operation,
        permission_type,
    }
}

#[test]
fn acls_are_validated_deduplicated_applied_and_deleted_by_filter() {
    use crate::acl::{operation, pattern_type, permission, resource_type};
    let mut controller = Controller::new(ControllerConfig::default());
    let now = Instant::now();
    let mut image = MetadataImage::default();
    let read = acl(resource_type::TOPIC, "orders", pattern_type::LITERAL, "User:alice", operation::READ, permission::ALLOW);
    let prefixed = acl(resource_type::TOPIC, "ord", pattern_type::PREFIXED, "User:bob", operation::WRITE, permission::DENY);
    let bad_principal = acl(resource_type::TOPIC, "orders", pattern_type::LITERAL, "alice", operation::READ, permission::ALLOW);
    let match_pattern = acl(resource_type::TOPIC, "orders", pattern_type::MATCH, "User:alice", operation::READ, permission::ALLOW);
    let create = ControllerRequest::CreateAcls { bindings: vec![read.clone(), prefixed.clone(), bad_principal, match_pattern, read.clone()] };
    let decision = controller.decide(&image, &create, now).unwrap();
    let ControllerResponse::AclsCreated { results } = &decision.response else { panic!("unexpected {:?}", decision.response) };
    let codes: Vec<i16> = results.iter().map(|(code, _)| *code).collect();
    let invalid = ResponseError::InvalidRequest.code();
    assert_eq!(codes, vec![0, 0, invalid, invalid, 0]);
    assert_eq!(decision.records.len(), 2, "the repeated binding is written once");
    for record in &decision.records {
        image.apply(record).unwrap();
    }
    assert_eq!(image.acls.len(), 2);
    // Creating an existing binding again writes nothing.
    let again = controller.decide(&image, &ControllerRequest::CreateAcls { bindings: vec![read.clone()] }, now).unwrap();
    assert!(again.records.is_empty());

    // A filter that matches both; an invalid one; one that then matches nothing left.
    let every_topic = AclBindingFilter {
        resource_type: resource_type::TOPIC,
        resource_name: None,
        pattern_type: pattern_type::ANY,
        principal: None,
        host: None,
        operation: operation::ANY,
        permission_type: permission::ANY,
    };
    let unknown = AclBindingFilter { resource_type: resource_type::UNKNOWN, ..every_topic.clone() };
    let delete = ControllerRequest::DeleteAcls { filters: vec![every_topic.clone(), unknown, every_topic] };
    let decision = controller.decide(&image, &delete, now).unwrap();
    let ControllerResponse::AclsDeleted { results } = &decision.response else { panic!("unexpected {:?}", decision.response) };
    assert_eq!(results[0].error_code, 0);
    assert_eq!(results[0].deleted.len(), 2);
    assert!(results[0].deleted.contains(&prefixed));
    assert_eq!(results[1].error_code, invalid);
    assert!(results[2].deleted.is_empty());
    for record in &decision.records {
        image.apply(record).unwrap();
    }
    assert!(image.acls.is_empty());
}
