"""Partition reassignment (KIP-455: AlterPartitionReassignments /
ListPartitionReassignments) on three real `runnel serve` processes, driven by
Apache Kafka's own kafka-reassign-partitions tool (ReassignPartitionsCommand
from kafka-tools 4.3.1) and the runnel CLI, while a confluent-kafka producer
with acks=all writes. Every wait and every load loop is bounded."""
import glob
import json
import os
import subprocess
import threading
import time

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from test_cluster import bootstrap, cluster, wait_until  # noqa: F401 (cluster is a fixture)
from test_cluster_admin import cli, kafka_tools  # noqa: F401 (kafka_tools is a fixture)


def partitions_of(admin, topic):
    """{partition: (leader, replicas, isr)} from Metadata."""
    t = admin.list_topics(topic, timeout=5).topics.get(topic)
    if t is None or t.error is not None:
        return {}
    return {p.id: (p.leader, list(p.replicas), sorted(p.isrs)) for p in t.partitions.values()}


def reassignment_file(tmp_path, topic, targets):
    path = tmp_path / "reassignment.json"
    path.write_text(json.dumps({"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": r, "log_dirs": ["any"] * len(r)} for p, r in targets.items()]}))
    return str(path)


def read_all(servers, topic, partitions, timeout=60):
    """Every record of the partitions, from offset 0 to the high watermark: {partition: [value, ...]}."""
    consumer = Consumer({"bootstrap.servers": servers, "group.id": "reassignment-check", "enable.auto.commit": False})
    try:
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions}
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        values = {p: [] for p in partitions}
        deadline = time.time() + timeout
        while any(len(values[p]) < ends[p] for p in partitions) and time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            values[msg.partition()].append(msg.value().decode())
        return values, ends
    finally:
        consumer.close()


def test_kafka_reassign_tool_moves_leaders_away_while_producing_and_loses_nothing(cluster, kafka_tools, tmp_path):
    servers = bootstrap(cluster)
    admin = AdminClient({"bootstrap.servers": servers})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    topic = "moving"
    admin.create_topics([NewTopic(topic, num_partitions=2, replica_assignment=[[1, 2], [2, 3]])])[topic].result(30)
    wait_until("both partitions fully in sync", lambda: (lambda ps: ps if len(ps) == 2 and all(
        len(isr) == 2 for _, _, isr in ps.values()) else None)(partitions_of(admin, topic)))

    # Each partition loses its leader: 0 moves from [1, 2] to [2, 3], 1 from [2, 3] to [3, 1].
    targets = {0: [2, 3], 1: [3, 1]}
    plan = reassignment_file(tmp_path, topic, targets)
    producer = Producer({"bootstrap.servers": servers, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked = {0: [], 1: []}
    failures = []

    def report(err, msg):
        if err is not None:
            failures.append(err)
        else:
            acked[msg.partition()].append(msg.value().decode())

    total, started = 4000, None
    execute = None
    for i in range(total):
        partition = i % 2
        producer.produce(topic, value=f"{partition}-{i // 2:06d}".encode(), partition=partition, on_delivery=report)
        producer.poll(0)
        if i == 600:
            started = time.time()
            execute = subprocess.Popen(
                ["java", "-Xmx256m", "-Dlog4j2.configurationFile=" + os.devnull, "-cp",
                 os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "target", "kafka", "libs", "*"),
                 "org.apache.kafka.tools.reassign.ReassignPartitionsCommand", "--bootstrap-server", servers,
                 "--reassignment-json-file", plan, "--execute"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if i % 20 == 0:
            time.sleep(0.05)  # about 10 s of producing, across the move
    out, err = execute.communicate(timeout=120)
    assert execute.returncode == 0, out + err
    assert "Successfully started partition reassignments" in out, out

    last_verify = []

    def verified():
        proc = kafka_tools("reassign.ReassignPartitionsCommand", "--bootstrap-server", servers,
                           "--reassignment-json-file", plan, "--verify", "--preserve-throttles", check=False)
        last_verify[:] = [proc.stdout + proc.stderr[-2000:], partitions_of(admin, topic)]
        done = all(f"Reassignment of partition {topic}-{p} is completed." in proc.stdout for p in targets)
        return proc.stdout if proc.returncode == 0 and done else None
    try:
        wait_until("kafka-reassign-partitions --verify: every partition completed", verified, timeout=90)
    except AssertionError:
        logs = "\n".join(f"node {n + 1}: " + l for n, node in enumerate(cluster) for l in node.log().splitlines()
                         if "moving" in l and ("became" in l or "replicas" in l or "ISR" in l or "isr" in l))
        raise AssertionError(f"--verify never completed; last: {last_verify}\n{logs[-6000:]}")
    moved_after = time.time() - started
    # Records written after the move go to the new leaders.
    for i in range(total, total + 200):
        producer.produce(topic, value=f"{i % 2}-{i // 2:06d}".encode(), partition=i % 2, on_delivery=report)
    assert producer.flush(60) == 0, "records still unacknowledged after 60 s"
    assert not failures, failures

    # Metadata: the target replicas, in order, a leader among them, all in sync.
    def settled():
        ps = partitions_of(admin, topic)
        ok = all(ps.get(p, (None, None, None))[1] == r and ps[p][0] in r and ps[p][2] == sorted(r) for p, r in targets.items())
        return ps if ok else None
    ps = wait_until("Metadata shows the target replicas in sync", settled)
    assert ps[0][0] != 1 and ps[1][0] != 2, f"the removed leaders still lead: {ps}"
    # No reassignment left (ListPartitionReassignments).
    assert cli(servers, "partition", "list-reassignments").stdout.strip() == "no reassignment in progress"

    # Every acknowledged record reads back exactly once, in the order written.
    values, ends = read_all(servers, topic, [0, 1])
    for p in (0, 1):
        got = values[p]
        assert len(got) == ends[p], f"partition {p}: read {len(got)} of {ends[p]}"
        assert len(set(got)) == len(got), f"partition {p}: duplicates"
        assert got == sorted(got), f"partition {p}: out of order"
        missing = set(acked[p]) - set(got)
        assert not missing, f"partition {p}: {len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
        assert len(acked[p]) == (total + 200) // 2
    # The removed replicas' copies are deleted (Kafka's StopReplica with deletion):
    # node 1 no longer holds partition 0, node 2 no longer holds partition 1.
    def record_bytes(node, partition):
        return sum(os.path.getsize(f) for f in glob.glob(os.path.join(node.data_dir, f"{topic}-{partition}", "*.log")))
    wait_until("the removed replicas' logs are emptied",
               lambda: record_bytes(cluster[0], 0) == 0 and record_bytes(cluster[1], 1) == 0, timeout=30)
    assert record_bytes(cluster[2], 0) > 0 and record_bytes(cluster[0], 1) > 0, "the new replicas hold no records"
    print(f"moved two leaders in {moved_after:.1f} s while producing; {sum(len(a) for a in acked.values())} records acknowledged")



def test_leadership_moved_round_the_brokers_again_and_again_under_an_idempotent_producer(cluster):
    """Each move takes the partition away from its leader, whose copy is then
    deleted, while an acks=all idempotent producer keeps writing. The old
    leader once went on taking writes into its emptied log for a moment and
    acknowledged them by its followers' old progress: the new leader lacked
    them and the producer failed with OUT_OF_ORDER_SEQUENCE_NUMBER (and the
    records were lost). About one move in 20 hit it."""
    servers = bootstrap(cluster)
    admin = AdminClient({"bootstrap.servers": servers})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    topic = "round"
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[2, 3]])])[topic].result(30)
    wait_until("the partition in sync", lambda: partitions_of(admin, topic).get(0, (0, 0, []))[2] == [2, 3] or None)

    producer = Producer({"bootstrap.servers": servers, "acks": "all", "enable.idempotence": True, "linger.ms": 5})
    acked, failures, stop = [], [], threading.Event()

    def report(err, msg):
        (failures if err is not None else acked).append(err if err is not None else int(msg.value()))

    def produce():
        n = 0
        while not stop.is_set() and n < 2_000_000:
            try:
                producer.produce(topic, value=str(n).encode(), on_delivery=report)
            except BufferError:
                producer.poll(0.05)
                continue
            except KafkaException as e:
                failures.append(e)
                return
            n += 1
            producer.poll(0)
            if n % 20 == 0:
                time.sleep(0.005)
    writer = threading.Thread(target=produce)
    writer.start()
    moves, deadline = 0, time.time() + 60
    try:
        for replicas in [[3, 1], [1, 2], [2, 3]] * 16:
            if failures or time.time() > deadline:
                break
            cli(servers, "partition", "reassign", "-t", topic, "-p", "0", "--replicas", ",".join(map(str, replicas)))
            wait_until(f"the move to {replicas}", lambda: cli(servers, "partition", "list-reassignments").stdout.strip()
                       == "no reassignment in progress", timeout=30)
            moves += 1
            time.sleep(0.3)
    finally:
        stop.set()
        writer.join(30)
    remaining = producer.flush(60)
    assert not failures, f"after {moves} moves: {failures[:3]}"
    assert remaining == 0, "records still unacknowledged after 60 s"
    assert moves >= 24, f"only {moves} moves in 60 s"

    values, ends = read_all(servers, topic, [0])
    got = [int(v) for v in values[0]]
    assert len(got) == ends[0], f"read {len(got)} of {ends[0]}"
    assert got == sorted(set(got)), "duplicates or out of order"
    missing = set(acked) - set(got)
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    print(f"{moves} moves, {len(acked)} records acknowledged and read back")


def test_cancel_errors_and_the_runnel_cli(cluster, kafka_tools, tmp_path):
    servers = bootstrap(cluster)
    admin = AdminClient({"bootstrap.servers": servers})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    topic = "stuck"
    admin.create_topics([NewTopic(topic, num_partitions=2, replica_assignment=[[1], [2]])])[topic].result(30)
    wait_until("the topic", lambda: len(partitions_of(admin, topic)) == 2 or None)
    producer = Producer({"bootstrap.servers": servers, "acks": "all"})
    for i in range(50):
        producer.produce(topic, value=f"v{i}".encode(), partition=0)
    assert producer.flush(30) == 0

    # Error codes, over the wire from the CLI: unknown partition, unregistered broker,
    # a cancel with nothing to cancel.
    proc = cli(servers, "partition", "reassign", "--topic", topic, "--partition", "7", "--replicas", "2", check=False)
    assert proc.returncode != 0 and "UnknownTopicOrPartition" in proc.stderr, proc.stdout + proc.stderr
    proc = cli(servers, "partition", "reassign", "--topic", "no-such-topic", "--partition", "0", "--replicas", "2", check=False)
    assert proc.returncode != 0 and "UnknownTopicOrPartition" in proc.stderr, proc.stdout + proc.stderr
    proc = cli(servers, "partition", "reassign", "--topic", topic, "--partition", "0", "--replicas", "2,42", check=False)
    assert proc.returncode != 0 and "InvalidReplicaAssignment" in proc.stderr and "42" in proc.stderr, proc.stdout + proc.stderr
    proc = cli(servers, "partition", "reassign", "--topic", topic, "--partition", "0", "--replicas", "2,2", check=False)
    assert proc.returncode != 0 and "InvalidReplicaAssignment" in proc.stderr, proc.stdout + proc.stderr
    proc = cli(servers, "partition", "reassign", "--topic", topic, "--partition", "0", "--cancel", check=False)
    assert proc.returncode != 0 and "NoReassignmentInProgress" in proc.stderr, proc.stdout + proc.stderr
    proc = cli(servers, "partition", "reassign", "--topic", topic, "--partition", "0", "--replicas", "2,3", "--keep-replication-factor", check=False)
    assert proc.returncode != 0 and "InvalidReplicationFactor" in proc.stderr, proc.stdout + proc.stderr
    assert partitions_of(admin, topic)[0][1] == [1], "a refused reassignment changed the replicas"

    # A replica that cannot catch up (its broker is stopped: fenced, still registered)
    # keeps the reassignment in progress; Metadata shows the union.
    cluster[2].stop()
    wait_until("broker 3 fenced", lambda: len(admin.list_topics(timeout=5).brokers) == 2 or None)
    out = cli(bootstrap(cluster), "partition", "reassign", "--topic", topic, "--partition", "0", "--replicas", "3,1").stdout
    assert "reassignment to 3,1 started" in out, out
    out = cli(bootstrap(cluster), "partition", "list-reassignments", topic).stdout
    assert out.splitlines() == ["topic\tpartition\treplicas\tadding\tremoving", f"{topic}\t0\t3,1\t3\t"], out
    assert partitions_of(AdminClient({"bootstrap.servers": bootstrap(cluster)}), topic)[0][1] == [3, 1]

    # Kafka's tool cancels it: the original replicas are back, nothing is listed.
    plan = reassignment_file(tmp_path, topic, {0: [3, 1]})
    proc = kafka_tools("reassign.ReassignPartitionsCommand", "--bootstrap-server", bootstrap(cluster),
                       "--reassignment-json-file", plan, "--verify", "--preserve-throttles")
    assert f"Reassignment of partition {topic}-0 is still in progress." in proc.stdout, proc.stdout
    proc = kafka_tools("reassign.ReassignPartitionsCommand", "--bootstrap-server", bootstrap(cluster),
                       "--reassignment-json-file", plan, "--cancel", "--preserve-throttles")
    assert f"Successfully cancelled partition reassignment for: {topic}-0" in proc.stdout, proc.stdout
    live_admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    assert partitions_of(live_admin, topic)[0][:2] == (1, [1])
    assert cli(bootstrap(cluster), "partition", "list-reassignments").stdout.strip() == "no reassignment in progress"

    # The runnel CLI moves partition 1 from broker 2 to broker 1 (Kafka's tool verifies it).
    out = cli(bootstrap(cluster), "partition", "reassign", "-t", topic, "-p", "1", "--replicas", "1").stdout
    assert "reassignment to 1 started" in out, out
    plan = reassignment_file(tmp_path, topic, {1: [1]})
    wait_until("partition 1 moved to broker 1", lambda: "is completed" in kafka_tools(
        "reassign.ReassignPartitionsCommand", "--bootstrap-server", bootstrap(cluster), "--reassignment-json-file", plan,
        "--verify", "--preserve-throttles").stdout or None, timeout=60)
    wait_until("Metadata: partition 1 led by broker 1 alone", lambda: partitions_of(live_admin, topic).get(1) == (1, [1], [1]) or None)
    # The records of partition 0 were never touched.
    values, _ = read_all(bootstrap(cluster), topic, [0])
    assert values[0] == [f"v{i}" for i in range(50)]


def test_a_replica_added_after_delete_records_starts_at_the_leaders_log_start(cluster):
    # The new replica's empty log ends at 0, below the leader's log start: the leader
    # answers OFFSET_OUT_OF_RANGE and the follower restarts its log there (Kafka's
    # truncateFullyAndStartAt); before that it retried offset 0 forever and the
    # reassignment never completed.
    from confluent_kafka import TopicPartition as TP
    from test_cluster import log_end_offset
    servers = bootstrap(cluster)
    admin = AdminClient({"bootstrap.servers": servers})
    wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
    topic = "trimmed"
    admin.create_topics([NewTopic(topic, num_partitions=1, replica_assignment=[[1]])])[topic].result(30)
    wait_until("the topic", lambda: len(partitions_of(admin, topic)) == 1 or None)
    producer = Producer({"bootstrap.servers": servers, "acks": "all"})
    for i in range(100):
        producer.produce(topic, value=f"v{i:03d}".encode(), partition=0)
    assert producer.flush(30) == 0
    result = admin.delete_records([TP(topic, 0, 60)])
    assert list(result.values())[0].result(30).low_watermark == 60

    out = cli(servers, "partition", "reassign", "-t", topic, "-p", "0", "--replicas", "1,2").stdout
    assert "reassignment to 1,2 started" in out, out
    wait_until("broker 2 in sync", lambda: partitions_of(admin, topic).get(0) == (1, [1, 2], [1, 2]) or None, timeout=30)
    assert cli(servers, "partition", "list-reassignments").stdout.strip() == "no reassignment in progress"
    assert log_end_offset(cluster[1].data_dir, topic) == 100
    # Broker 2 alone serves the partition after broker 1 stops: offsets 60..99, nothing below.
    cluster[0].stop()
    survivor = bootstrap(cluster)
    wait_until("broker 2 leads", lambda: partitions_of(AdminClient({"bootstrap.servers": survivor}), topic).get(0, (None,))[0] == 2 or None, timeout=30)
    consumer = Consumer({"bootstrap.servers": survivor, "group.id": "trimmed-check", "enable.auto.commit": False,
                         "auto.offset.reset": "error"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        assert (low, high) == (60, 100)
        consumer.assign([TopicPartition(topic, 0, 60)])
        values, deadline = [], time.time() + 30
        while len(values) < 40 and time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and not msg.error():
                values.append(msg.value().decode())
    finally:
        consumer.close()
    assert values == [f"v{i:03d}" for i in range(60, 100)]
