"""The transaction coordinator in a three-node cluster (three real `runnel serve`
processes on loopback): a transactional id's coordinator is the leader of its
replicated __transaction_state partition, named alike by every node, and the
other nodes answer NOT_COORDINATOR; a confluent-kafka transactional producer's
state survives kill -9 of its coordinator (the open transaction is aborted, the
old producer fenced, read_committed sees exactly the committed records); markers
reach partitions led by other nodes (WriteTxnMarkers); a partition leader checks
a transactional produce with a coordinator on another node (AddPartitionsToTxn
v5 adds a transactions v2 produce's partition, v4 verifies a v1 one), so the
cluster finalizes transaction.version 2 and the Java client speaks v2 through
it. Every wait is bounded."""
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import raw_requests as rr
from raw_requests import request, transaction_coordinator
from test_cluster import bootstrap, cluster, wait_for_three_brokers, wait_until  # noqa: F401 (fixture)

NOT_COORDINATOR = 16


def coordinator_of(node, transactional_id):
    """The node id `node` names as the transactional id's coordinator (retrying while
    the topic is being created or has no leader yet)."""
    def ask():
        error, node_id, _ = transaction_coordinator(node.bootstrap, transactional_id)
        return node_id if error == 0 else None
    return wait_until(f"{node.bootstrap} to name a coordinator for {transactional_id}", ask, timeout=30)


def create_topic(admin, name, **kwargs):
    admin.create_topics([NewTopic(name, **kwargs)])[name].result(30)
    wait_until(f"every replica of {name} in its ISR", lambda: (lambda md: name in md.topics and all(
        len(p.isrs) == len(p.replicas) for p in md.topics[name].partitions.values()))(admin.list_topics(name, timeout=5)))


def read_committed(nodes, topic, partitions, expected_count, settle_s=3.0, timeout=60.0):
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": f"rc-{time.time()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    deadline = time.time() + timeout
    quiet_until = None
    try:
        while time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value().decode())
            if len(values) >= expected_count:
                # A little longer: anything beyond the expected records is a failure.
                quiet_until = quiet_until or time.time() + settle_s
                if time.time() >= quiet_until:
                    break
    finally:
        consumer.close()
    return values


def transactional_producer(nodes, transactional_id):
    return Producer({"bootstrap.servers": bootstrap(nodes), "transactional.id": transactional_id,
                     "linger.ms": 5, "message.timeout.ms": 60000, "transaction.timeout.ms": 60000})


def test_every_node_names_the_same_transaction_coordinator_and_the_others_refuse(cluster):
    from kafka.protocol.add_partitions_to_txn import AddPartitionsToTxnRequest
    from kafka.protocol.end_txn import EndTxnRequest
    from kafka.protocol.init_producer_id import InitProducerIdRequest_v1
    wait_for_three_brokers(cluster)
    for transactional_id in ("orders-txn", "billing-txn", f"t-{time.time()}"):
        named = {node.bootstrap: coordinator_of(node, transactional_id) for node in cluster}
        assert len(set(named.values())) == 1, f"{transactional_id!r}: nodes name different coordinators: {named}"
    md = AdminClient({"bootstrap.servers": bootstrap(cluster)}).list_topics("__transaction_state", timeout=5)
    state_topic = md.topics["__transaction_state"]
    assert state_topic.error is None, state_topic.error
    assert all(sorted(p.replicas) == [1, 2, 3] for p in state_topic.partitions.values())

    transactional_id = "refused-elsewhere"
    coordinator_id = coordinator_of(cluster[0], transactional_id)
    coordinator = cluster[coordinator_id - 1]
    for node in (n for n in cluster if n is not coordinator):
        init = request(node.bootstrap, InitProducerIdRequest_v1(transactional_id=transactional_id, transaction_timeout_ms=60000))
        assert init.error_code == NOT_COORDINATOR, (node.bootstrap, init)
        add = request(node.bootstrap, AddPartitionsToTxnRequest[0](transactional_id, 1000, 0, [("some-topic", [0])]))
        assert add.results[0][1][0][1] in (NOT_COORDINATOR, 3), (node.bootstrap, add)
        end = request(node.bootstrap, EndTxnRequest[0](transactional_id, 1000, 0, True))
        assert end.error_code == NOT_COORDINATOR, (node.bootstrap, end)
    init = wait_until("the coordinator to issue a producer id", lambda: (lambda r: r if r.error_code == 0 else None)(
        request(coordinator.bootstrap, InitProducerIdRequest_v1(transactional_id=transactional_id, transaction_timeout_ms=60000))))
    assert init.producer_id >= 0 and init.producer_epoch == 0, init


def test_transactions_survive_kill9_of_their_coordinator(cluster):
    """Committed transactions, one left open, kill -9 of the coordinator: a new
    producer with the same transactional.id on the survivors initialises (the open
    transaction is aborted, the old producer fenced) and read_committed consumers
    see exactly the committed records."""
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    topic, transactional_id = "txn-survivor", "survivor-txn"
    # Three partitions with leaders spread over the nodes: one is led by the node killed below.
    create_topic(admin, topic, num_partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})
    first = transactional_producer(cluster, transactional_id)
    first.init_transactions(60)
    committed = []
    for t in range(3):
        first.begin_transaction()
        for i in range(30):
            value = f"committed-{t}-{i}"
            first.produce(topic, value=value.encode(), partition=i % 3)
            committed.append(value)
        first.commit_transaction(60)
    first.begin_transaction()
    for i in range(30):
        first.produce(topic, value=f"open-{i}".encode(), partition=i % 3)
    assert first.flush(30) == 0, "the open transaction's records were not acknowledged"

    coordinator_id = coordinator_of(cluster[0], transactional_id)
    assert all(coordinator_of(n, transactional_id) == coordinator_id for n in cluster)
    cluster[coordinator_id - 1].kill9()
    survivors = [n for n in cluster if n.alive()]
    started = time.time()
    second = transactional_producer(survivors, transactional_id)
    second.init_transactions(90)
    print(f"coordinator {coordinator_id} killed; init_transactions on the survivors after {time.time() - started:.1f} s")
    assert coordinator_of(survivors[0], transactional_id) != coordinator_id

    second.begin_transaction()
    for i in range(30):
        value = f"after-{i}"
        second.produce(topic, value=value.encode(), partition=i % 3)
        committed.append(value)
    second.commit_transaction(60)

    # The old producer is fenced: its open transaction cannot commit any more.
    with pytest.raises(KafkaException):
        first.commit_transaction(30)

    seen = read_committed(survivors, topic, 3, len(committed))
    assert not [v for v in seen if v.startswith("open-")], "records of the aborted transaction were read"
    assert sorted(seen) == sorted(committed), f"{len(seen)} read, {len(committed)} committed"


def test_markers_reach_partitions_led_by_other_nodes(cluster):
    """A transaction whose partitions are all led by nodes other than its
    coordinator: the markers go out as WriteTxnMarkers; read_committed consumers
    of those partitions see the committed transaction and not the aborted one."""
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    transactional_id = "remote-markers-txn"
    coordinator_id = coordinator_of(cluster[0], transactional_id)
    others = [n for n in (1, 2, 3) if n != coordinator_id]
    topic = "led-elsewhere"
    create_topic(admin, topic, num_partitions=2, replica_assignment=[[others[0], coordinator_id, others[1]], [others[1], coordinator_id, others[0]]])
    md = admin.list_topics(topic, timeout=5).topics[topic]
    leaders = {i: p.leader for i, p in md.partitions.items()}
    assert coordinator_id not in leaders.values(), f"coordinator {coordinator_id}, leaders {leaders}"

    producer = transactional_producer(cluster, transactional_id)
    producer.init_transactions(60)
    producer.begin_transaction()
    for i in range(20):
        producer.produce(topic, value=f"aborted-{i}".encode(), partition=i % 2)
    producer.abort_transaction(60)
    producer.begin_transaction()
    committed = [f"committed-{i}" for i in range(20)]
    for i, value in enumerate(committed):
        producer.produce(topic, value=value.encode(), partition=i % 2)
    producer.commit_transaction(60)

    seen = read_committed(cluster, topic, 2, len(committed))
    assert sorted(seen) == sorted(committed), f"read_committed saw {len(seen)} records: {seen[:5]}"


NONE, INVALID_TXN_STATE, TRANSACTION_ABORTABLE = 0, 48, 120


def init_on(node, transactional_id):
    """InitProducerId on the id's coordinator `node`, retried while it loads: (producer id, epoch)."""
    def ask():
        error, pid, epoch = rr.init_producer_id(node.bootstrap, transactional_id)
        assert error in (NONE, 14, 15, 51), error  # loading, not available, concurrent transactions
        return (pid, epoch) if error == NONE else None
    return wait_until(f"{node.bootstrap} to initialise {transactional_id}", ask)


def id_coordinated_away_from(node, prefix, avoid):
    """A transactional id (`prefix`-n) whose coordinator is not node `avoid`, and its coordinator."""
    for n in range(100):
        transactional_id = f"{prefix}-{n}"
        coordinator_id = coordinator_of(node, transactional_id)
        if coordinator_id != avoid:
            return transactional_id, coordinator_id
    raise AssertionError(f"every id {prefix}-n is coordinated by node {avoid}")


def group_coordinator_of(node, group):
    """The node id `node` names as the group's coordinator (FindCoordinator v1, key type 0)."""
    from kafka.protocol.find_coordinator import FindCoordinatorRequest
    def ask():
        resp = request(node.bootstrap, FindCoordinatorRequest[1](group, 0))
        return resp.coordinator_id if resp.error_code == 0 else None
    return wait_until(f"{node.bootstrap} to name a coordinator for group {group}", ask)


def test_a_multi_node_cluster_finalizes_transaction_version_2(cluster):
    """Every node's ApiVersions finalizes transaction.version 2, as a single node
    does: a partition leader reaches a coordinator on another node."""
    wait_for_three_brokers(cluster)
    for node in cluster:
        error, _, _, epoch, finalized = rr.api_versions_features(node.bootstrap)
        assert error == NONE and epoch >= 0
        assert finalized.get("transaction.version") == (2, 2), (node.bootstrap, finalized)


def test_a_partition_leader_checks_produces_with_a_coordinator_on_another_node(cluster):
    """The partition's leader is not the transaction's coordinator. A v1
    producer (Produce v10/v11) writing to a partition never added to its
    transaction is refused (INVALID_TXN_STATE / TRANSACTION_ABORTABLE, as on one
    node and in Kafka) after an AddPartitionsToTxn v4 verify-only round trip, and
    nothing is written; once added it goes through. A v2 producer's Produce v12
    adds the partition at the remote coordinator (AddPartitionsToTxn v5)."""
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    v1_id, v1_coordinator = id_coordinated_away_from(cluster[0], "remote-check-v1", avoid=None)
    leader_id = next(n for n in (1, 2, 3) if n != v1_coordinator)
    v2_id, v2_coordinator = id_coordinated_away_from(cluster[0], "remote-check-v2", avoid=leader_id)
    topic = "checked-elsewhere"
    create_topic(admin, topic, num_partitions=1, replica_assignment=[[leader_id] + [n for n in (1, 2, 3) if n != leader_id]])
    assert admin.list_topics(topic, timeout=5).topics[topic].partitions[0].leader == leader_id
    # The coordinators check the topic in their own metadata: every node must have applied it.
    wait_until(f"every node to know {topic}", lambda: all(
        (lambda md: topic in md.topics and md.topics[topic].error is None)(
            AdminClient({"bootstrap.servers": n.bootstrap}).list_topics(topic, timeout=5)) for n in cluster))
    leader = cluster[leader_id - 1]

    coordinator = cluster[v1_coordinator - 1]
    pid, epoch = init_on(coordinator, v1_id)
    batch = rr.transactional_batch(pid, epoch, 0, ["unverified"])
    assert rr.produce_flexible(leader.bootstrap, 10, v1_id, topic, 0, batch)[0] == INVALID_TXN_STATE
    assert rr.produce_flexible(leader.bootstrap, 11, v1_id, topic, 0, batch)[0] == TRANSACTION_ABORTABLE
    assert rr.describe_transaction(coordinator.bootstrap, v1_id)["partitions"] == set()
    assert rr.add_partitions_to_txn(coordinator.bootstrap, v1_id, pid, epoch, topic, [0]) == {(topic, 0): NONE}
    error, base, message = rr.produce_flexible(leader.bootstrap, 11, v1_id, topic, 0, batch)
    assert (error, base) == (NONE, 0), message
    assert rr.end_txn(coordinator.bootstrap, v1_id, pid, epoch, commit=True, version=4) == (NONE, -1, -1)

    coordinator = cluster[v2_coordinator - 1]
    pid, epoch = init_on(coordinator, v2_id)
    batch = rr.transactional_batch(pid, epoch, 0, ["added-by-the-produce"])
    error, base, message = rr.produce_flexible(leader.bootstrap, 12, v2_id, topic, 0, batch)
    assert (error, base) == (NONE, 2), message  # after the first record and its COMMIT marker
    described = rr.describe_transaction(coordinator.bootstrap, v2_id)
    assert described["state"] == "Ongoing" and described["partitions"] == {(topic, 0)}, described
    assert rr.end_txn(coordinator.bootstrap, v2_id, pid, epoch, commit=True) == (NONE, pid, epoch + 1)

    seen = read_committed(cluster, topic, 1, 2)
    assert sorted(seen) == ["added-by-the-produce", "unverified"], seen


def test_java_client_speaks_transactions_v2_with_a_coordinator_on_another_node(cluster, tmp_path):
    """The Java client (Kafka 4.x defaults) against the cluster: transactions v2
    (its epoch goes 0 -> 4 over commit, abort, commit, commit) while the output
    partitions, the input partition and the group's offsets are all led by
    nodes other than the transaction's coordinator; read_committed sees each
    input once and the group's offsets are committed (tests/java/TransactionsV2.java)."""
    from test_java import run_java_program
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    group = "java-v2-group"
    transactional_id, coordinator_id = id_coordinated_away_from(cluster[0], "java-v2-remote", avoid=group_coordinator_of(cluster[0], group))
    others = [n for n in (1, 2, 3) if n != coordinator_id]
    source, sink = "java-v2-in", "java-v2-out"
    create_topic(admin, source, num_partitions=1, replica_assignment=[[others[0], others[1], coordinator_id]])
    create_topic(admin, sink, num_partitions=2, replica_assignment=[[others[0], coordinator_id, others[1]], [others[1], coordinator_id, others[0]]])
    leaders = {t: {i: p.leader for i, p in admin.list_topics(t, timeout=5).topics[t].partitions.items()} for t in (source, sink)}
    assert all(coordinator_id not in ls.values() for ls in leaders.values()), (coordinator_id, leaders)

    returncode, out = run_java_program(tmp_path, "TransactionsV2", bootstrap(cluster), source, sink, group, transactional_id, timeout=240)
    assert returncode == 0 and "PASS" in out, out[-4000:]
    described = rr.describe_transaction(cluster[coordinator_id - 1].bootstrap, transactional_id)
    assert (described["state"], described["producer_epoch"]) == ("CompleteCommit", 4), described
