"""Three real `runnel serve` processes on loopback form one cluster with
`controller.quorum.voters`: a topic with replication factor 3 created through
CreateTopics, acks=all produce with confluent-kafka, every replica's log holds
the records, kill -9 of the partition leader -> a new leader from the ISR, the
producer goes on, every acknowledged record is readable, and the killed node
rejoins the ISR and catches up; producer ids from every node are distinct (blocks
of the controller); every node names the same group coordinator (the leader of
the group's replicated __consumer_offsets partition), the others answer
NOT_COORDINATOR, and a group's commits survive kill -9 of its coordinator.
Every wait is bounded."""
import glob
import os
import struct
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from raw_requests import producer_ids, request
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


def test_a_killed_broker_is_fenced_before_its_session_expires():
    """A broker process that dies closes its liveness link to the active
    controller at once (the kernel closes its sockets), so the controller fences
    it at once instead of after broker.session.timeout.ms (Kafka
    waits the session timeout): with a 60 s session, a killed leader's partition
    has a new leader within seconds; the killed node rejoins afterwards."""
    voters = ",".join(f"{i + 1}@127.0.0.1:{free_port()}" for i in range(3))
    slow_session = dict(FAST_CLUSTER, **{"broker.session.timeout.ms": "60000", "controller.quorum.voters": voters})
    nodes = [Broker(dict(slow_session, **{"node.id": str(i + 1)})) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        wait_for_three_brokers(nodes)
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        controller_id = admin.describe_cluster().result(15).controller.id
        victim = next(i for i in (1, 2, 3) if i != controller_id)
        others = [i for i in (1, 2, 3) if i != victim]
        topic = "link-loss"
        admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[victim] + others])])[topic].result(30)
        wait_until("the victim leading with three replicas in the ISR", lambda: (
            lambda p: p if p and p.leader == victim and len(p.isrs) == 3 else None)(partition_metadata(admin, topic)[0]))

        nodes[victim - 1].kill9()
        killed_at = time.time()
        survivors = [n for n in nodes if n.alive()]
        survivor_admin = AdminClient({"bootstrap.servers": bootstrap(survivors)})
        new_p = wait_until("a new leader, long before the 60 s session expires", lambda: (
            lambda p: p if p and p.leader in others else None)(partition_metadata(survivor_admin, topic)[0]), timeout=20)
        print(f"new leader {new_p.leader} {time.time() - killed_at:.1f} s after kill -9 (session 60 s)")
        assert victim not in new_p.isrs
        controller_log = nodes[controller_id - 1].log()
        assert "liveness link closed and no heartbeat followed" in controller_log

        # The restarted node registers again, opens a new link and rejoins the ISR.
        nodes[victim - 1].start()
        wait_until("the restarted node back in the ISR", lambda: (
            lambda p: p if p and sorted(p.isrs) == [1, 2, 3] else None)(partition_metadata(admin, topic)[0]), timeout=60)
    finally:
        for node in nodes:
            node.cleanup()


def test_replication_factor_above_the_live_brokers_is_refused(cluster):
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    futures = admin.create_topics([NewTopic("too-many", num_partitions=1, replication_factor=4)])
    with pytest.raises(KafkaException) as refused:
        futures["too-many"].result(30)
    assert refused.value.args[0].name() == "INVALID_REPLICATION_FACTOR"


def find_coordinator(node, group, expect_success=True):
    """The node id `node` names as `group`'s coordinator (FindCoordinator v1, kafka-python);
    with expect_success=False, (error code, node id)."""
    from kafka.protocol.find_coordinator import FindCoordinatorRequest
    response = request(node.bootstrap, FindCoordinatorRequest[1](group, 0), timeout=15)
    if not expect_success:
        return response.error_code, response.coordinator_id
    assert response.error_code == 0, response
    return response.coordinator_id


def wait_for_three_brokers(nodes):
    wait_until("three live brokers", lambda: len(AdminClient({"bootstrap.servers": bootstrap(nodes)})
                                                 .list_topics(timeout=5).brokers) == 3)


def test_every_node_names_the_same_group_coordinator(cluster):
    """Kafka's coordinator is the leader of the group's __consumer_offsets
    partition: whichever node a client asks, the answer is the same node."""
    wait_for_three_brokers(cluster)
    for group in ("orders", "billing", "g-" + str(time.time())):
        named = {node.bootstrap: find_coordinator(node, group) for node in cluster}
        assert len(set(named.values())) == 1, f"group {group!r}: nodes name different coordinators: {named}"
    # The first FindCoordinator created the topic through the controller, replicated on every node.
    md = AdminClient({"bootstrap.servers": bootstrap(cluster)}).list_topics("__consumer_offsets", timeout=5)
    offsets_topic = md.topics["__consumer_offsets"]
    assert offsets_topic.error is None, offsets_topic.error
    assert all(sorted(p.replicas) == [1, 2, 3] for p in offsets_topic.partitions.values()), \
        {i: p.replicas for i, p in offsets_topic.partitions.items()}


NOT_COORDINATOR = 16


def test_a_broker_that_is_not_the_coordinator_answers_not_coordinator(cluster):
    """OffsetCommit, OffsetFetch and Heartbeat sent to a node that does not lead the
    group's offsets partition: NOT_COORDINATOR (the client then asks FindCoordinator
    again); the coordinator itself takes the commit and returns it."""
    from kafka.protocol.commit import OffsetCommitRequest, OffsetFetchRequest
    from kafka.protocol.group import HeartbeatRequest
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    admin.create_topics([NewTopic("nc-topic", num_partitions=1, replication_factor=3)])["nc-topic"].result(30)
    group = "not-coordinator-group"
    coordinator_id = find_coordinator(cluster[0], group)
    coordinator = cluster[coordinator_id - 1]
    others = [n for n in cluster if n is not coordinator]
    commit = OffsetCommitRequest[2](group, -1, "", -1, [("nc-topic", [(0, 42, "")])])
    for node in others:
        answer = request(node.bootstrap, commit)
        assert answer.topics[0][1][0][1] == NOT_COORDINATOR, (node.bootstrap, answer)
        fetched = request(node.bootstrap, OffsetFetchRequest[3](group, [("nc-topic", [0])]))
        assert fetched.error_code == NOT_COORDINATOR, (node.bootstrap, fetched)
        beat = request(node.bootstrap, HeartbeatRequest[1](group, 1, "some-member"))
        assert beat.error_code == NOT_COORDINATOR, (node.bootstrap, beat)
    answer = wait_until("the coordinator to take the commit", lambda: (
        lambda a: a if a.topics[0][1][0][1] == 0 else None)(request(coordinator.bootstrap, commit)))
    fetched = request(coordinator.bootstrap, OffsetFetchRequest[3](group, [("nc-topic", [0])]))
    assert fetched.error_code == 0 and fetched.topics[0][1][0][1] == 42, fetched


def committed_offsets(nodes, group, partitions):
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": group, "enable.auto.commit": False})
    try:
        return {tp.partition: tp.offset for tp in consumer.committed(partitions, timeout=10)}
    finally:
        consumer.close()


def consume(consumer, count, timeout):
    values = []
    deadline = time.time() + timeout
    while len(values) < count and time.time() < deadline:
        msg = consumer.poll(1.0)
        if msg is not None and msg.error() is None:
            values.append(msg.value().decode())
    return values


def test_group_commits_survive_kill9_of_the_coordinator(cluster):
    """A confluent-kafka group commits on three nodes; the coordinator (leader of the
    group's __consumer_offsets partition, RF 3) is killed with kill -9; another node
    takes over, serves the same committed offsets, and the group goes on from them:
    it reads exactly the records it had not committed."""
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    topic, group = "coordinated", "survivor-group"
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(30)
    wait_until("three replicas in every ISR", lambda: (lambda md: all(
        len(p.isrs) == 3 for p in md.topics[topic].partitions.values()) if topic in md.topics else False)(
        admin.list_topics(topic, timeout=5)))
    producer = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all", "enable.idempotence": True,
                         "linger.ms": 5, "message.timeout.ms": 60000})
    values = [f"record-{i}" for i in range(300)]
    produce(producer, topic, values)

    settings = {"bootstrap.servers": bootstrap(cluster), "group.id": group, "auto.offset.reset": "earliest",
                "enable.auto.commit": False, "session.timeout.ms": 6000}
    first = Consumer(settings)
    first.subscribe([topic])
    before = consume(first, 150, 60)
    assert len(before) == 150, f"only {len(before)} records read before the kill"
    first.commit(asynchronous=False)
    committed = {tp.partition: tp.offset for tp in first.committed([TopicPartition(topic, p) for p in range(3)], timeout=10)}
    first.close()
    # -1001: a partition the sticky partitioner gave nothing to read yet.
    assert sum(o for o in committed.values() if o >= 0) == 150, committed

    coordinator_id = find_coordinator(cluster[0], group)
    assert all(find_coordinator(n, group) == coordinator_id for n in cluster)
    cluster[coordinator_id - 1].kill9()
    survivors = [n for n in cluster if n.alive()]
    started = time.time()
    new_id = wait_until("a surviving node to coordinate the group", lambda: (
        lambda answer: answer[1] if answer[0] == 0 and answer[1] != coordinator_id else None)(
        find_coordinator(survivors[0], group, expect_success=False)), timeout=30)
    print(f"coordinator {coordinator_id} killed; node {new_id} coordinates after {time.time() - started:.1f} s")

    # The commits are read from another node.
    tps = [TopicPartition(topic, p) for p in range(3)]
    read_back = wait_until("the committed offsets from the new coordinator", lambda: (
        lambda c: c if c == committed else None)(committed_offsets(survivors, group, tps)), timeout=30)
    assert read_back == committed

    # The group goes on from its commits: exactly the records not yet committed.
    second = Consumer(dict(settings, **{"bootstrap.servers": bootstrap(survivors)}))
    second.subscribe([topic])
    after = consume(second, 150, 90)
    extra = consume(second, 1, 3)
    second.close()
    producer.flush(5)
    assert sorted(after) == sorted(set(values) - set(before)), \
        f"{len(after)} records after the kill; re-read: {sorted(set(after) & set(before))[:5]}"
    assert not extra, f"more records than were left: {extra}"


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


def test_the_last_in_sync_replica_back_with_a_wiped_disk_is_not_elected(cluster):
    """kill -9 of every node; nodes 1 and 2 restart and leave the ISR (they may be
    behind), node 3, down, stays its last member; then node 3 comes back with an
    empty data directory. Elected, it would make the others truncate to its empty
    log and every record would be gone. Its new directory id tells the controller
    its copy is lost: the partition stays offline (Kafka: a replica in a missing
    directory is offline) until an unclean election picks a replica that kept its
    log, and every acknowledged record is there."""
    import shutil
    from test_cluster_admin import cli
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    topic = "wiped"
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[3, 1, 2]],
                                  config={"min.insync.replicas": "2"})])[topic].result(30)
    wait_until("a full ISR", lambda: (lambda p: p if p and len(p.isrs) == 3 else None)(partition_metadata(admin, topic)[0]))
    # Idempotent: a retried produce (e.g. NOT_ENOUGH_REPLICAS_AFTER_APPEND on a
    # loaded machine) must not write the records twice.
    producer = Producer({"bootstrap.servers": bootstrap(cluster), "acks": "all", "linger.ms": 5, "enable.idempotence": True})
    values = [f"kept-{i}" for i in range(200)]
    produce(producer, topic, values)
    wait_until("every replica's log holds 200 records", lambda: all(log_end_offset(n.data_dir, topic) == 200 for n in cluster))

    for node in cluster:
        node.kill9()
    cluster[0].start()
    cluster[1].start()
    two = bootstrap(cluster[:2])
    admin = AdminClient({"bootstrap.servers": two})
    wait_until("node 3 the last ISR member of a leaderless partition", lambda: (
        lambda p: p if p and p.leader == -1 and list(p.isrs) == [3] else None)(partition_metadata(admin, topic)[0]), timeout=60)

    shutil.rmtree(cluster[2].data_dir)
    os.makedirs(cluster[2].data_dir)
    cluster[2].start(timeout=90)
    wait_for_three_brokers(cluster)
    time.sleep(5)  # several heartbeats and images after node 3 was unfenced
    p = partition_metadata(admin, topic)[0]
    assert p.leader == -1, f"node {p.leader} leads: the wiped copy was elected ({p.replicas}, ISR {p.isrs})"
    assert log_end_offset(cluster[0].data_dir, topic) == 200 and log_end_offset(cluster[1].data_dir, topic) == 200

    out = cli(bootstrap(cluster), "topic", "elect-leaders", topic, "-p", "0", "--election", "unclean").stdout
    assert "elected" in out, out
    p = wait_until("a leader that kept its log", lambda: (
        lambda p: p if p and p.leader in (1, 2) else None)(partition_metadata(admin, topic)[0]), timeout=30)
    consumer = Consumer({"bootstrap.servers": bootstrap(cluster), "group.id": "wiped-check", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen, deadline = [], time.time() + 60
        while len(seen) < 200 and time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                seen.append(msg.value().decode())
    finally:
        consumer.close()
    assert seen == values, f"{len(seen)} of 200 acknowledged records read after the unclean election of node {p.leader}"
    # Node 3 re-replicates from the new leader and rejoins the ISR.
    wait_until("node 3 back in the ISR with every record", lambda: log_end_offset(cluster[2].data_dir, topic) == 200, timeout=60)
