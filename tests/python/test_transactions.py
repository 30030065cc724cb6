"""Transactions (KIP-98/447) with a real client: confluent-kafka (librdkafka)
against a running runnel broker over TCP.

What these prove: committed records reach read_committed consumers and aborted
ones never do (read_uncommitted sees both); an open transaction holds
read_committed consumers back at the last stable offset; a second producer
with the same transactional.id fences the first and aborts its transaction;
a transaction past transaction.timeout.ms is aborted by the broker;
consume-transform-produce with send_offsets_to_transaction gives each input
exactly once in the output; and all of it survives kill -9 of the broker.
"""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

FAST_TXNS = {"transaction.abort.timed.out.transaction.cleanup.interval.ms": "300", "transaction.state.log.num.partitions": "5"}


def create_topic(bootstrap, name, partitions=1):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(timeout=30)


def txn_producer(bootstrap, txn_id, **extra):
    conf = {"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5}
    conf.update(extra)
    producer = Producer(conf)
    producer.init_transactions(30)
    return producer


def read_values(bootstrap, topic, isolation, idle=3.0, limit=30.0, expect=None):
    """Every value in the topic as a consumer at `isolation` sees it, from the
    beginning, until nothing arrives for `idle` seconds (or `expect` values came)."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "reader-" + uuid.uuid4().hex[:8],
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": isolation,
    })
    values = []
    deadline = time.time() + limit
    last = time.time()
    assigned = False

    def on_assign(_consumer, _partitions):
        # The idle wait counts from the assignment: joining the group may take a while.
        nonlocal last, assigned
        last, assigned = time.time(), True

    consumer.subscribe([topic], on_assign=on_assign)
    try:
        while time.time() < deadline and (not assigned or time.time() - last < idle):
            if expect is not None and len(values) >= expect:
                break
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            values.append(msg.value().decode())
            last = time.time()
    finally:
        consumer.close()
    return values


@pytest.fixture
def txn_broker(make_broker):
    return make_broker(FAST_TXNS)


def test_read_committed_sees_committed_records_only(txn_broker, topic_name):
    create_topic(txn_broker.bootstrap, topic_name, partitions=3)
    producer = txn_producer(txn_broker.bootstrap, "txn-" + topic_name)
    for batch, commit in (("a", True), ("b", False), ("c", True)):
        producer.begin_transaction()
        for i in range(20):
            producer.produce(topic_name, key=str(i), value=f"{batch}{i}")
        producer.flush(10)
        if commit:
            producer.commit_transaction(30)
        else:
            producer.abort_transaction(30)
    committed = read_values(txn_broker.bootstrap, topic_name, "read_committed", expect=40)
    assert sorted(committed) == sorted([f"a{i}" for i in range(20)] + [f"c{i}" for i in range(20)])
    everything = read_values(txn_broker.bootstrap, topic_name, "read_uncommitted", expect=60)
    assert len(everything) == 60, everything
    assert {v[0] for v in everything} == {"a", "b", "c"}


def test_open_transaction_holds_read_committed_back(txn_broker, topic_name):
    create_topic(txn_broker.bootstrap, topic_name)
    plain = Producer({"bootstrap.servers": txn_broker.bootstrap})
    plain.produce(topic_name, value="before")
    plain.flush(10)
    producer = txn_producer(txn_broker.bootstrap, "txn-" + topic_name)
    producer.begin_transaction()
    producer.produce(topic_name, value="inside")
    producer.flush(10)
    plain.produce(topic_name, value="after")  # past the open transaction: not stable yet
    plain.flush(10)
    assert read_values(txn_broker.bootstrap, topic_name, "read_committed", idle=2.0) == ["before"]
    assert read_values(txn_broker.bootstrap, topic_name, "read_uncommitted", expect=3) == ["before", "inside", "after"]
    # The last stable offset as ListOffsets(read_committed) reports it: the open transaction's first offset.
    consumer = Consumer({"bootstrap.servers": txn_broker.bootstrap, "group.id": "lso-" + topic_name, "isolation.level": "read_committed"})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10, cached=False)
        assert (low, high) == (0, 1)
    finally:
        consumer.close()
    producer.commit_transaction(30)
    assert read_values(txn_broker.bootstrap, topic_name, "read_committed", expect=3) == ["before", "inside", "after"]


def test_a_new_producer_fences_the_zombie_and_aborts_its_transaction(txn_broker, topic_name):
    create_topic(txn_broker.bootstrap, topic_name)
    txn_id = "txn-" + topic_name
    zombie = txn_producer(txn_broker.bootstrap, txn_id)
    zombie.begin_transaction()
    zombie.produce(topic_name, value="zombie")
    zombie.flush(10)
    successor = txn_producer(txn_broker.bootstrap, txn_id)  # aborts the zombie's transaction
    with pytest.raises(KafkaException) as refused:
        zombie.commit_transaction(15)
    assert refused.value.args[0].fatal() or refused.value.args[0].code() in (
        KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH), refused.value
    successor.begin_transaction()
    successor.produce(topic_name, value="successor")
    successor.commit_transaction(30)
    assert read_values(txn_broker.bootstrap, topic_name, "read_committed", expect=1, idle=2.0) == ["successor"]
    assert sorted(read_values(txn_broker.bootstrap, topic_name, "read_uncommitted", expect=2)) == ["successor", "zombie"]


def test_transactions_past_their_timeout_are_aborted(txn_broker, topic_name):
    create_topic(txn_broker.bootstrap, topic_name)
    producer = txn_producer(txn_broker.bootstrap, "txn-" + topic_name, **{"transaction.timeout.ms": 1500})
    producer.begin_transaction()
    producer.produce(topic_name, value="slow")
    producer.flush(10)
    time.sleep(4)
    with pytest.raises(KafkaException):
        producer.commit_transaction(15)
    assert read_values(txn_broker.bootstrap, topic_name, "read_committed", idle=2.0) == []
    assert read_values(txn_broker.bootstrap, topic_name, "read_uncommitted", expect=1) == ["slow"]


def test_init_transactions_refuses_a_timeout_above_the_maximum(make_broker, topic_name):
    b = make_broker({"transaction.max.timeout.ms": "5000"})
    producer = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "txn-" + topic_name, "transaction.timeout.ms": 10000})
    with pytest.raises(KafkaException) as refused:
        producer.init_transactions(15)
    assert refused.value.args[0].code() == KafkaError.INVALID_TRANSACTION_TIMEOUT, refused.value


def transform_once(bootstrap, source, sink, group, txn_id, limit_s=60.0, batch=25, abort_every=0):
    """Consume-transform-produce: each input value v becomes 'out-v' in `sink`,
    offsets committed in the same transaction. Every `abort_every`-th
    transaction is aborted instead (and the consumer rewound). Stops when
    the input is drained."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
    })
    consumer.subscribe([source])
    producer = txn_producer(bootstrap, txn_id)
    deadline = time.time() + limit_s
    idle_since = time.time()
    transactions = 0
    try:
        while time.time() < deadline and time.time() - idle_since < 4:
            msgs = [m for m in consumer.consume(batch, 0.5) if not m.error()]
            if not msgs:
                continue
            idle_since = time.time()
            producer.begin_transaction()
            for m in msgs:
                producer.produce(sink, key=m.key(), value=b"out-" + m.value())
            producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
            transactions += 1
            if abort_every and transactions % abort_every == 0:
                producer.abort_transaction(30)
                # Back to the committed offsets: the aborted batch is processed again.
                committed = consumer.committed(consumer.assignment(), 30)
                for tp in committed:
                    consumer.seek(TopicPartition(tp.topic, tp.partition, tp.offset if tp.offset >= 0 else 0))
            else:
                producer.commit_transaction(30)
    finally:
        consumer.close()
    return transactions


def test_consume_transform_produce_gives_each_input_exactly_once(txn_broker, topic_name):
    source, sink = topic_name + "-in", topic_name + "-out"
    create_topic(txn_broker.bootstrap, source, partitions=2)
    create_topic(txn_broker.bootstrap, sink, partitions=2)
    plain = Producer({"bootstrap.servers": txn_broker.bootstrap})
    for i in range(300):
        plain.produce(source, key=str(i), value=str(i))
    plain.flush(10)
    transactions = transform_once(txn_broker.bootstrap, source, sink, "g-" + topic_name, "txn-" + topic_name, abort_every=3)
    assert transactions >= 3
    out = read_values(txn_broker.bootstrap, sink, "read_committed", expect=300)
    assert sorted(out) == sorted(f"out-{i}" for i in range(300))
    # The group's offsets were committed by the transactions: the input is fully consumed.
    consumer = Consumer({"bootstrap.servers": txn_broker.bootstrap, "group.id": "g-" + topic_name, "isolation.level": "read_committed"})
    try:
        committed = consumer.committed([TopicPartition(source, 0), TopicPartition(source, 1)], 30)
        total = 0
        for tp in committed:
            low, high = consumer.get_watermark_offsets(TopicPartition(source, tp.partition), timeout=10, cached=False)
            assert tp.offset == high, committed
            total += high
        assert total == 300
    finally:
        consumer.close()


def test_pending_offsets_are_unstable_until_the_transaction_commits(txn_broker, topic_name):
    create_topic(txn_broker.bootstrap, topic_name)
    group = "g-" + topic_name
    producer = txn_producer(txn_broker.bootstrap, "txn-" + topic_name)
    consumer = Consumer({"bootstrap.servers": txn_broker.bootstrap, "group.id": group, "isolation.level": "read_committed"})
    try:
        producer.begin_transaction()
        producer.produce(topic_name, value="x")
        # The group metadata of a consumer that never joined: generation -1, as for a simple group.
        producer.send_offsets_to_transaction([TopicPartition(topic_name, 0, 1)], consumer.consumer_group_metadata(), 30)
        # OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT: librdkafka retries until its timeout.
        with pytest.raises(KafkaException):
            consumer.committed([TopicPartition(topic_name, 0)], 3)
        producer.commit_transaction(30)
        (tp,) = consumer.committed([TopicPartition(topic_name, 0)], 10)
        assert tp.offset == 1
    finally:
        consumer.close()


def test_transactions_survive_kill9_of_the_broker(make_broker, topic_name):
    b = make_broker(FAST_TXNS)
    create_topic(b.bootstrap, topic_name, partitions=2)
    txn_id = "txn-" + topic_name
    expected = []
    for round_ in range(4):
        producer = txn_producer(b.bootstrap, txn_id)
        producer.begin_transaction()
        for i in range(10):
            producer.produce(topic_name, key=str(i), value=f"committed-{round_}-{i}")
        producer.commit_transaction(30)
        expected += [f"committed-{round_}-{i}" for i in range(10)]
        producer.begin_transaction()
        for i in range(10):
            producer.produce(topic_name, key=str(i), value=f"open-{round_}-{i}")
        producer.flush(10)
        b.kill9()
        del producer
        b.start()
        # The open transaction survived the restart: read_committed consumers are still held back.
        held = read_values(b.bootstrap, topic_name, "read_committed", idle=2.0, expect=len(expected))
        assert sorted(held) == sorted(expected), held
        # A new producer with the same id aborts it (fencing the dead one).
        successor = txn_producer(b.bootstrap, txn_id)
        successor.begin_transaction()
        successor.produce(topic_name, value=f"successor-{round_}")
        successor.commit_transaction(30)
        expected.append(f"successor-{round_}")
        del successor
    seen = read_values(b.bootstrap, topic_name, "read_committed", expect=len(expected))
    assert sorted(seen) == sorted(expected)
    assert not [v for v in seen if v.startswith("open-")]


def runnel_cli(bootstrap, *args):
    import subprocess
    from runnel_broker import RUNNEL
    return subprocess.run([RUNNEL, "--brokers", bootstrap, *args], capture_output=True, timeout=60)


def test_cli_lists_and_describes_transactions(txn_broker, topic_name):
    create_topic(txn_broker.bootstrap, topic_name, partitions=2)
    txn_id = "txn-" + topic_name
    producer = txn_producer(txn_broker.bootstrap, txn_id)
    producer.begin_transaction()
    producer.produce(topic_name, value="x", partition=1)
    producer.flush(10)
    listed = runnel_cli(txn_broker.bootstrap, "txn", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split("\t") for line in listed.stdout.decode().splitlines()]
    assert rows[0] == ["transactional-id", "producer-id", "state"]
    (row,) = [r for r in rows[1:] if r[0] == txn_id]
    assert row[2] == "Ongoing"
    only_empty = runnel_cli(txn_broker.bootstrap, "txn", "list", "--state", "Empty")
    assert txn_id not in only_empty.stdout.decode()
    described = runnel_cli(txn_broker.bootstrap, "txn", "describe", txn_id)
    assert described.returncode == 0, described.stderr
    fields = dict(line.split("\t", 1) for line in described.stdout.decode().splitlines())
    assert fields["state"] == "Ongoing" and fields["producer-id"] == row[1]
    assert fields["partitions"] == f"{topic_name}:1"
    producer.commit_transaction(30)
    fields = dict(line.split("\t", 1) for line in runnel_cli(txn_broker.bootstrap, "txn", "describe", txn_id).stdout.decode().splitlines())
    assert fields["state"] == "CompleteCommit" and fields["partitions"] == ""
    missing = runnel_cli(txn_broker.bootstrap, "txn", "describe", "no-such-id")
    assert missing.returncode != 0, missing.stdout
    assert b"no-such-id" in missing.stderr and b"TransactionalIdNotFound" in missing.stderr, missing.stderr


def test_java_client_transactions_commit_abort_and_fencing(txn_broker, topic_name, tmp_path):
    """The official Java client (kafka-clients 4.3.0): commit, abort, a zombie
    fenced by its successor; read_committed sees exactly the committed records."""
    from test_java import run_java_program
    create_topic(txn_broker.bootstrap, topic_name)
    returncode, out = run_java_program(tmp_path, "Transactions", txn_broker.bootstrap, topic_name, timeout=150)
    assert returncode == 0 and "PASS" in out, out[-4000:]


def test_kill9_of_the_application_mid_transaction_keeps_exactly_once(txn_broker, topic_name):
    """The application is killed (-9) in the middle of its transactions
    several times; each restart fences its predecessor, whose open transaction
    is aborted, and goes on from the committed offsets. The output holds each
    input exactly once."""
    import os
    import random
    import signal
    import subprocess
    import sys
    source, sink = topic_name + "-in", topic_name + "-out"
    create_topic(txn_broker.bootstrap, source, partitions=2)
    create_topic(txn_broker.bootstrap, sink, partitions=2)
    plain = Producer({"bootstrap.servers": txn_broker.bootstrap})
    for i in range(2000):
        plain.produce(source, key=str(i), value=str(i))
    plain.flush(10)
    app = [sys.executable, os.path.join(os.path.dirname(__file__), "txn_transform_app.py"),
           txn_broker.bootstrap, source, sink, "g-" + topic_name, "txn-" + topic_name]
    rng = random.Random(7)
    kills = 0
    for _ in range(4):
        proc = subprocess.Popen(app, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        # Killed once it has committed a few transactions (so mid-stream), at a random moment.
        committed = 0
        deadline = time.time() + 30
        while committed < 3 and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            committed += line.startswith(b"committed")
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(10)
    final = subprocess.run(app, capture_output=True, timeout=90)
    assert final.returncode == 0, final.stderr[-2000:]
    assert kills >= 3
    out = read_values(txn_broker.bootstrap, sink, "read_committed", expect=2000, limit=60)
    assert len(out) == 2000 and sorted(out) == sorted(f"out-{i}" for i in range(2000)), (len(out), len(set(out)))
