"""Consumer groups: the seed example, partitions shared within a group, offsets that survive restarts."""
import os
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(HERE, "..", "..", "..", "shared", "acceptance", "seed_example.py")


def test_seed_example(broker):
    if not os.path.exists(SEED):
        import pytest

        pytest.skip("shared acceptance scripts are not beside the repository")
    proc = subprocess.run([sys.executable, SEED], env=dict(os.environ, BOOTSTRAP=broker.bootstrap), capture_output=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"PASS" in proc.stdout


def create_topic(bootstrap, name, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})  # kept alive until the future resolves
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(15)


def produce_n(bootstrap, topic, n, partitions):
    p = Producer({"bootstrap.servers": bootstrap})
    for i in range(n):
        p.produce(topic, value=f"m{i}".encode(), partition=i % partitions)
    assert p.flush(20) == 0


def test_two_consumers_share_partitions(broker):
    topic = "shared-" + uuid.uuid4().hex[:6]
    group = "g-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 4)
    produce_n(broker.bootstrap, topic, 400, 4)
    conf = {"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest", "session.timeout.ms": 6000}
    a, b = Consumer(conf), Consumer(conf)
    a.subscribe([topic])
    b.subscribe([topic])
    seen = {"a": [], "b": []}
    deadline = time.time() + 60
    # A rebalance may redeliver records consumed after the last commit (at-least-once), so wait for 400 distinct.
    while len(set(seen["a"]) | set(seen["b"])) < 400 and time.time() < deadline:
        for name, c in (("a", a), ("b", b)):
            msg = c.poll(0.2)
            if msg is not None and not msg.error():
                seen[name].append((msg.partition(), msg.offset()))
    pa = {p.partition for p in a.assignment()}
    pb = {p.partition for p in b.assignment()}
    a.close()
    b.close()
    assert pa and pb, f"both members own partitions: {pa} {pb}"
    assert pa.isdisjoint(pb) and pa | pb == {0, 1, 2, 3}
    everything = seen["a"] + seen["b"]
    assert len(set(everything)) == 400, "every record consumed across the group"
    assert len(everything) - 400 <= 20, f"{len(everything) - 400} records redelivered: commits on revocation were lost"


def test_committed_offsets_survive_restart_and_kill(make_broker):
    broker = make_broker()
    topic = "commits-" + uuid.uuid4().hex[:6]
    group = "g-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 2)
    produce_n(broker.bootstrap, topic, 100, 2)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 17), TopicPartition(topic, 1, 23)], asynchronous=False)
    c.close()
    for restart in (broker.restart, lambda: (broker.kill9(), broker.start())):
        restart()
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
        committed = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
        assert [(tp.partition, tp.offset) for tp in committed] == [(0, 17), (1, 23)]
        c.subscribe([topic])
        first = {}
        deadline = time.time() + 30
        while len(first) < 2 and time.time() < deadline:
            msg = c.poll(0.5)
            if msg is not None and not msg.error():
                first.setdefault(msg.partition(), msg.offset())
        c.close()
        assert first == {0: 17, 1: 23}, "a restarted consumer resumes right after the committed offsets"


def test_kafka_python_group(broker):
    from kafka import KafkaConsumer

    topic = "kp-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 2)
    produce_n(broker.bootstrap, topic, 50, 2)
    consumer = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id="kp-" + uuid.uuid4().hex[:6], auto_offset_reset="earliest", consumer_timeout_ms=15000)
    got = []
    for msg in consumer:
        got.append(msg.value)
        if len(got) == 50:
            break
    consumer.commit()
    consumer.close()
    assert sorted(got) == sorted(f"m{i}".encode() for i in range(50))


def test_group_admin_apis(broker):
    """List/describe groups and list/alter/delete their offsets through both admin clients."""
    from confluent_kafka import ConsumerGroupTopicPartitions
    from kafka.admin import KafkaAdminClient

    from test_cli import cli

    topic = "adm-" + uuid.uuid4().hex[:6]
    group = "adm-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 2)
    produce_n(broker.bootstrap, topic, 20, 2)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 5), TopicPartition(topic, 1, 7)], asynchronous=False)
    c.close()

    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    listed = admin.list_consumer_groups().result(10)
    assert group in {g.group_id for g in listed.valid}
    offsets = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])[group].result(10)
    assert sorted((tp.partition, tp.offset) for tp in offsets.topic_partitions) == [(0, 5), (1, 7)]
    admin.alter_consumer_group_offsets([ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0, 9)])])[group].result(10)
    described = admin.describe_consumer_groups([group])[group].result(10)
    assert described.group_id == group and not described.members

    kadmin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    kafka_python_groups = {g[0] for g in kadmin.list_consumer_groups()}
    assert group in kafka_python_groups
    listed_offsets = kadmin.list_consumer_group_offsets(group)
    assert {(tp.partition, o.offset) for tp, o in listed_offsets.items()} == {(0, 9), (1, 7)}

    # OffsetDelete, through the CLI (runnel group delete-offsets).
    out = cli(broker, "group", "delete-offsets", group, "--topic", topic, "--partition", "0").stdout.decode()
    assert f"{topic}\t0\tdeleted" in out
    remaining = kadmin.list_consumer_group_offsets(group)
    assert {(tp.partition, o.offset) for tp, o in remaining.items()} == {(1, 7)}

    # With an active member subscribed to the topic, its offsets are protected.
    member = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "auto.offset.reset": "earliest"})
    member.subscribe([topic])
    deadline = time.time() + 20
    while time.time() < deadline and not member.assignment():
        member.poll(0.2)
    refused = cli(broker, "group", "delete-offsets", group, "--topic", topic, "--partition", "1", check=False)
    assert refused.returncode != 0 and b"subscribed" in refused.stderr.lower(), refused.stderr
    member.close()
    kadmin.close()


def test_offsets_expire_after_retention_unless_the_group_is_active(make_broker):
    """offsets.retention.minutes: a standalone consumer's offsets expire a
    retention after their commit (and its group disappears, also after a
    restart); an active group's offsets for its subscribed topic stay."""
    broker = make_broker({"offsets.retention.minutes": "1", "offsets.retention.check.interval.ms": "500"})
    topic = "expiry-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 1)
    produce_n(broker.bootstrap, topic, 10, 1)
    standalone, active = "g-standalone-" + uuid.uuid4().hex[:6], "g-active-" + uuid.uuid4().hex[:6]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": standalone, "enable.auto.commit": False})
    c.commit(offsets=[TopicPartition(topic, 0, 5)], asynchronous=False)
    c.close()
    member = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": active, "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    member.subscribe([topic])
    deadline = time.time() + 30
    while not member.assignment() and time.time() < deadline:
        member.poll(0.2)
    member.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})

    def committed(group):
        probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            return probe.committed([TopicPartition(topic, 0)], timeout=10)[0].offset
        finally:
            probe.close()

    assert committed(standalone) == 5
    deadline = time.time() + 75
    while committed(standalone) == 5 and time.time() < deadline:
        member.poll(1.0)  # keeps the active member's session alive
    assert committed(standalone) < 0, "the standalone group's offset expired"
    member.poll(0.5)
    assert committed(active) == 7, "an active group's subscribed offsets do not expire"
    member.close()
    groups = {g.group_id for g in admin.list_consumer_groups().result(10).valid}
    assert standalone not in groups and active in groups
    broker.restart()
    assert committed(standalone) < 0, "expiry is durable"
    assert committed(active) == 7


def test_offsets_topic_is_compacted_and_replays_the_same_state(make_broker):
    """__consumer_offsets is compacted by the log cleaner like any compacted
    topic: after many commits of the same keys the superseded records are
    gone, and a restart still sees every group's latest offsets (and not a
    deleted group's)."""
    # One __consumer_offsets partition: every group's commits in the partition read below.
    broker = make_broker({"log.cleaner.backoff.ms": "100", "offsets.topic.num.partitions": "1"})
    topic = "compact-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 2)
    produce_n(broker.bootstrap, topic, 10, 2)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})  # kept alive until the futures resolve
    # Small segments so that the cleaner has closed segments to clean.
    resource = ConfigResource(ConfigResource.Type.TOPIC, "__consumer_offsets")
    resource.add_incremental_config(ConfigEntry("segment.bytes", "4096", incremental_operation=AlterConfigOpType.SET))
    resource.add_incremental_config(ConfigEntry("min.cleanable.dirty.ratio", "0.1", incremental_operation=AlterConfigOpType.SET))
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(10)
    busy, quiet, doomed = ("g-" + name + "-" + uuid.uuid4().hex[:6] for name in ("busy", "quiet", "doomed"))
    for group, value in ((quiet, 3), (doomed, 4)):
        c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
        c.commit(offsets=[TopicPartition(topic, 0, value), TopicPartition(topic, 1, value)], asynchronous=False)
        c.close()
    admin.delete_consumer_groups([doomed])[doomed].result(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": busy, "enable.auto.commit": False})
    for i in range(1, 1501):
        c.commit(offsets=[TopicPartition(topic, i % 2, i)], asynchronous=False)
    c.close()

    def records_in_offsets_topic():
        probe = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "probe-" + uuid.uuid4().hex[:6], "enable.auto.commit": False})
        try:
            low, high = probe.get_watermark_offsets(TopicPartition("__consumer_offsets", 0), timeout=10, cached=False)
            probe.assign([TopicPartition("__consumer_offsets", 0, low)])
            count, last, idle = 0, low - 1, 0
            while last < high - 1 and idle < 4:
                msg = probe.poll(0.5)
                if msg is None:
                    idle += 1
                    continue
                count += 1
                last = msg.offset()
            return count, high
        finally:
            probe.close()

    deadline = time.time() + 30
    count, high = records_in_offsets_topic()
    while time.time() < deadline and count > 1000:
        time.sleep(0.5)
        count, high = records_in_offsets_topic()
    assert high > 1500 and count < 1000, f"__consumer_offsets was not compacted: {count} records of {high} offsets"
    for restart in (broker.restart, lambda: (broker.kill9(), broker.start())):
        restart()
        for group, expected in ((busy, [(0, 1500), (1, 1499)]), (quiet, [(0, 3), (1, 3)]), (doomed, [(0, -1001), (1, -1001)])):
            c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False})
            got = c.committed([TopicPartition(topic, 0), TopicPartition(topic, 1)], timeout=10)
            c.close()
            assert [(tp.partition, tp.offset) for tp in got] == expected, group
