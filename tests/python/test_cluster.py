"""Three real `runnel serve` processes on loopback form one cluster with
`controller.quorum.voters`: a topic with replication factor 3 created through
CreateTopics, acks=all produce with confluent-kafka, every replica's log holds
the records, kill -9 of the partition leader -> a new leader from the ISR, the
producer goes on, every acknowledged record is readable, and the killed node
rejoins the ISR and catches up; producer ids from every node are distinct (blocks
of the controller). Every wait is bounded."""
import glob
import os
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from raw_requests import producer_ids
from runnel_broker import Broker, free_port

# Short timers so failover happens within seconds (Kafka's defaults: 9000 / 2000 / 30000).
FAST_CLUSTER = {
    "broker.session.timeout.ms": "3000",
    "broker.heartbeat.interval.ms": "500",
    "replica.lag.time.max.ms": "5000",
}


def start_cluster(size=3):
    voters = ",".join(f"{i + 1}@127.0.0.1:{free_port()}" for i in range(size))
    nodes = [Broker(dict(FAST_CLUSTER, **{"node.id": str(i + 1), "controller.quorum.voters": voters})) for i in range(size)]
    for node in nodes:
        node.start()
    return nodes


def bootstrap(nodes):
    return ",".join(n.bootstrap for n in nodes if n.alive())


def wait_until(what, condition, timeout=30.0):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = condition()
            if last:
                return last
        except KafkaException as e:
            last = e
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})")


def partition_metadata(admin, topic):
    md = admin.list_topics(topic, timeout=5)
    t = md.topics.get(topic)
    if t is None or t.error is not None or 0 not in t.partitions:
        return None, md
    return t.partitions[0], md


def log_end_offset(data_dir, topic):
    """The log end offset of `topic`-0 in a data directory, from its segment files' batch headers."""
    end = 0
    for path in glob.glob(os.path.join(data_dir, f"{topic}-0", "*.log")):
        with open(path, "rb") as f:
            data = f.read()
        pos = 0
        while pos + 27 <= len(data):
            base_offset, length = struct.unpack_from(">qi", data, pos)
            if length <= 0 or pos + 12 + length > len(data):
                break
            (last_offset_delta,) = struct.unpack_from(">i", data, pos + 23)
            end = max(end, base_offset + last_offset_delta + 1)
            pos += 12 + length
    return end


def produce(producer, topic, values):
    failures = []

    def report(err, msg):
        if err is not None:
            failures.append(err)

    for value in values:
        producer.produce(topic, value=value.encode(), on_delivery=report)
        producer.poll(0)
    assert producer.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not failures, failures


@pytest.fixture
def cluster():
    nodes = start_cluster()
    yield nodes
    for node in nodes:
        node.cleanup()


def test_three_nodes_replicate_fail_over_and_rejoin(cluster):
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    wait_until("every node lists three live brokers", lambda: all(
        len(AdminClient({"bootstrap.servers": n.bootstrap}).list_topics(timeout=5).brokers) == 3 for n in cluster))

    topic = "replicated"
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})])
    futures[topic].result(30)
    p = wait_until("the partition with three replicas in the ISR",
                      lambda: (lambda p: p if p and len(p.isrs) == 3 else None)(partition_metadata(admin, topic)[0]))
    assert sorted(p.replicas) == [1, 2, 3]

    producer = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 60000})
    first = [f"before-{i}" for i in range(200)]
    produce(producer, topic, first)
    # Every replica's log holds the acknowledged records.
    wait_until("every replica's log to hold 200 records",
               lambda: all(log_end_offset(n.data_dir, topic) == 200 for n in cluster))

    old_leader = p.leader
    killed = cluster[old_leader - 1]
    killed.kill9()
    started = time.time()
    survivors = [n for n in cluster if n.alive()]
    survivor_admin = AdminClient({"bootstrap.servers": bootstrap(survivors)})
    new_p = wait_until("a new leader from the ISR", lambda: (
        lambda p: p if p and p.leader not in (-1, old_leader) else None)(partition_metadata(survivor_admin, topic)[0]), timeout=20)
    failover_s = time.time() - started
    assert new_p.leader in (1, 2, 3) and new_p.leader != old_leader
    print(f"failover: new leader {new_p.leader} after {failover_s:.1f} s")

    # The same producer goes on; every acknowledged record is readable.
    second = [f"after-{i}" for i in range(200)]
    produce(producer, topic, second)
    consumer = Consumer({"bootstrap.servers": bootstrap(survivors), "group.id": "check-" + str(time.time()),
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    seen = []
    deadline = time.time() + 60
    while len(seen) < 400 and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            seen.append(msg.value().decode())
    consumer.close()
    assert sorted(seen) == sorted(first + second), f"{len(seen)} records read, 400 acknowledged"
    assert seen == first + second, "records out of order"

    # The killed node restarts, catches up and rejoins the ISR.
    killed.start()
    wait_until("the restarted node back in the ISR", lambda: (
        lambda p: p if p and sorted(p.isrs) == [1, 2, 3] else None)(partition_metadata(admin, topic)[0]), timeout=60)
    wait_until("the restarted node's log to hold all 400 records", lambda: log_end_offset(killed.data_dir, topic) == 400)
    producer.flush(5)


def test_replication_factor_above_the_live_brokers_is_refused(cluster):
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    futures = admin.create_topics([NewTopic("too-many", num_partitions=1, replication_factor=4)])
    with pytest.raises(KafkaException) as refused:
        futures["too-many"].result(30)
    assert refused.value.args[0].name() == "INVALID_REPLICATION_FACTOR"


def find_coordinator(node, group):
    """The node id `node` names as `group`'s coordinator (FindCoordinator v1, kafka-python)."""
    import socket
    from kafka.conn import BrokerConnection
    from kafka.protocol.find_coordinator import FindCoordinatorRequest
    host, port = node.bootstrap.rsplit(":", 1)
    conn = BrokerConnection(host, int(port), socket.AF_INET, api_version=(2, 1))
    try:
        conn.connect_blocking(5)
        assert conn.connected(), f"cannot connect to {node.bootstrap}"
        future = conn.send(FindCoordinatorRequest[1](group, 0))
        deadline = time.time() + 5
        while not future.is_done and time.time() < deadline:
            for response, f in conn.recv():
                f.success(response)
            time.sleep(0.01)
        assert future.is_done and future.succeeded(), f"no FindCoordinator answer from {node.bootstrap}"
        assert future.value.error_code == 0, future.value
        return future.value.coordinator_id
    finally:
        conn.close()


@pytest.mark.xfail(strict=True, reason="the group coordinator is still per broker (each node names itself and keeps "
                                       "its own __consumer_offsets): a group's members and its committed offsets "
                                       "split across nodes; the fault harness with RUNNEL_NODES=3 finds the group "
                                       "unfinished after kill -9 / restarts (tests/cluster)")
def test_every_node_names_the_same_group_coordinator(cluster):
    """Kafka's coordinator is the leader of the group's __consumer_offsets
    partition: whichever node a client asks, the answer is the same node."""
    wait_until("three live brokers", lambda: len(AdminClient({"bootstrap.servers": bootstrap(cluster)})
                                                  .list_topics(timeout=5).brokers) == 3)
    for group in ("orders", "billing", "g-" + str(time.time())):
        named = {node.bootstrap: find_coordinator(node, group) for node in cluster}
        assert len(set(named.values())) == 1, f"group {group!r}: nodes name different coordinators: {named}"


def test_producer_ids_are_unique_across_the_brokers(cluster):
    """InitProducerId, idempotent and transactional, against each node: no id twice,
    also after the active controller is killed and a new one hands out the blocks."""
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    issued = {}
    for node in cluster:
        issued[node.bootstrap] = producer_ids(node.bootstrap, 20) + producer_ids(node.bootstrap, 5, f"txn-{node.port}")
    every = [pid for ids in issued.values() for pid in ids]
    assert len(set(every)) == len(every), f"a producer id was issued twice: {issued}"

    # The active controller dies: the next blocks come from the new one, above every block handed out.
    controller_id = admin.list_topics(timeout=5).controller_id
    assert controller_id in (1, 2, 3), controller_id
    cluster[controller_id - 1].kill9()
    survivors = [n for n in cluster if n.alive()]
    for node in survivors:
        # More than a block (1000), so each survivor needs a block of the new controller.
        more = producer_ids(node.bootstrap, 1100, retry_for_s=60)
        every += more
    assert len(set(every)) == len(every), "a producer id was issued twice after the controller changed"
