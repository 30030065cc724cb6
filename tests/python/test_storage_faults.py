"""Storage faults are loud and lose as little as possible (issue 9).

Each test drives a real broker over TCP with confluent-kafka: a full disk (a
small tmpfs as the data directory), a flipped byte in a user topic's active
segment and in `__consumer_offsets`, and a deleted topic metadata file.
"""
import glob
import json
import os
import re
import shutil
import struct
import subprocess
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from runnel_broker import RUNNEL, Broker

SEGMENT = "00000000000000000000.log"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def log_lines(broker):
    """The broker's log lines without terminal colours."""
    return ANSI.sub("", broker.log()).splitlines()


def create_topic(bootstrap, topic, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})])[topic].result(15)


def read_all(bootstrap, topic, partitions=1, expected=None, timeout=30):
    """(partition, offset, value) of every record, from the beginning."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify-" + uuid.uuid4().hex[:6], "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    got = []
    deadline = time.time() + timeout
    idle_since = time.time()
    while time.time() < deadline:
        msg = consumer.poll(0.3)
        if msg is None:
            if expected is not None and len(got) >= expected:
                break
            if expected is None and time.time() - idle_since > 3:
                break
            continue
        idle_since = time.time()
        assert not msg.error(), msg.error()
        got.append((msg.partition(), msg.offset(), msg.value()))
    consumer.close()
    return got


def produce_batches(bootstrap, topic, batches, per_batch):
    """Produces `batches` batches of `per_batch` records (one flush each, so one
    batch each); returns the values in order."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1000})
    values = []
    for b in range(batches):
        for r in range(per_batch):
            value = f"batch-{b}-record-{r}".encode()
            producer.produce(topic, value=value, partition=0)
            values.append(value)
        assert producer.flush(15) == 0
    return values


def assert_dense(records):
    by_partition = {}
    for p, o, _ in records:
        by_partition.setdefault(p, []).append(o)
    for p, offsets in by_partition.items():
        assert offsets == list(range(len(offsets))), f"partition {p}: offsets are dense and in order"


# ---------------------------------------------------------------- disk full

@pytest.fixture
def small_tmpfs():
    mount_point = tempfile.mkdtemp(prefix="runnel-tmpfs-")
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", mount_point], capture_output=True, text=True)
    if result.returncode != 0:
        os.rmdir(mount_point)
        pytest.skip(f"cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): {result.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", mount_point], check=False)
    shutil.rmtree(mount_point, ignore_errors=True)


def test_disk_full_answers_storage_error_at_once_keeps_reads_and_recovers_when_space_is_freed(small_tmpfs):
    data_dir = os.path.join(small_tmpfs, "data")
    filler = os.path.join(small_tmpfs, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * (2 << 20))
    broker = Broker({"log.segment.bytes": str(1 << 20)}, data_dir=data_dir).start()
    try:
        topic = "full-" + uuid.uuid4().hex[:6]
        create_topic(broker.bootstrap, topic)
        # retries=0: librdkafka retries KAFKA_STORAGE_ERROR (retriable, as in Kafka); the test wants the broker's answer.
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "retries": 0, "linger.ms": 5})
        acked, failures, sent_at = [], [], {}

        def report(err, msg):
            if err is None:
                acked.append((msg.partition(), msg.offset(), msg.value()))
            else:
                failures.append((err.code(), time.time() - sent_at[msg.value()]))

        deadline = time.time() + 60
        for i in range(20000):  # 20 MB of values: far more than the 8 MB tmpfs holds
            value = f"{i:08d}".encode() + b"x" * 1000
            sent_at[value] = time.time()
            producer.produce(topic, value=value, partition=0, on_delivery=report)
            producer.poll(0)
            if failures or time.time() > deadline:
                break
        assert producer.flush(30) == 0
        assert failures, f"the disk never filled up ({len(acked)} records acknowledged)"
        codes = {code for code, _ in failures}
        assert codes == {KafkaError.KAFKA_STORAGE_ERROR}, f"produce errors on a full disk: {codes}"
        slowest = max(latency for _, latency in failures)
        assert slowest < 5, f"KAFKA_STORAGE_ERROR came after {slowest:.1f}s, not at once"
        assert broker.alive()

        error_lines = [line for line in log_lines(broker) if "ERROR" in line and topic in line]
        assert error_lines, f"no ERROR naming the partition in the broker log:\n{broker.log()}"
        assert "No space left on device" in error_lines[0], error_lines[0]
        assert len(error_lines) <= 3, f"{len(failures)} failures gave {len(error_lines)} ERROR lines: not rate-limited"

        # Reads keep working on a full disk: exactly the acknowledged records, offsets dense.
        got = read_all(broker.bootstrap, topic, expected=len(acked))
        assert got == acked
        assert_dense(got)

        # Space freed: the next produce succeeds without a restart.
        os.remove(filler)
        producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "retries": 0})
        more = []
        for i in range(10):
            producer.produce(topic, value=f"after-{i}".encode(), partition=0,
                             on_delivery=lambda err, msg: more.append((err, msg.partition(), msg.offset(), msg.value())))
        assert producer.flush(15) == 0
        assert [err for err, *_ in more] == [None] * 10, more
        acked += [(p, o, v) for _, p, o, v in more]

        # Every acknowledged record survives a crash and a restart, offsets dense.
        broker.kill9()
        broker.start()
        got = read_all(broker.bootstrap, topic, expected=len(acked))
        assert got == acked
        assert_dense(got)
    finally:
        broker.kill9()
        if broker.log_path and os.path.exists(broker.log_path):
            os.remove(broker.log_path)


# ------------------------------------------------- corrupt batch in a user topic

def walk_batches(data):
    """(position, base offset, total size) of each batch in segment bytes."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        base, length = struct.unpack_from(">qi", data, pos)
        out.append((pos, base, 12 + length))
        pos += 12 + length
    return out


def read_varint(buf, pos):
    raw, shift = 0, 0
    while True:
        byte = buf[pos]
        pos += 1
        raw |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (raw >> 1) ^ -(raw & 1), pos


def record_values(batch):
    """Values of an uncompressed magic-2 batch (the documented quarantine format)."""
    count = struct.unpack_from(">i", batch, 57)[0]
    pos, values = 61, []
    for _ in range(count):
        length, pos = read_varint(batch, pos)
        end = pos + length
        pos += 1  # attributes
        _, pos = read_varint(batch, pos)  # timestamp delta
        _, pos = read_varint(batch, pos)  # offset delta
        key_len, pos = read_varint(batch, pos)
        pos += max(key_len, 0)
        value_len, pos = read_varint(batch, pos)
        values.append(bytes(batch[pos:pos + value_len]))
        pos = end
    return values


def test_flipped_byte_in_first_batch_of_active_segment_is_quarantined_not_deleted(make_broker):
    broker = make_broker()
    topic = "flip-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic)
    values = produce_batches(broker.bootstrap, topic, batches=10, per_batch=3)
    broker.kill9()  # unclean: the active segment is CRC-checked on start
    segment = os.path.join(broker.data_dir, f"{topic}-0", SEGMENT)
    with open(segment, "rb") as f:
        data = bytearray(f.read())
    batches = walk_batches(data)
    assert len(batches) >= 5, batches
    data[batches[0][0] + batches[0][2] - 2] ^= 0x01  # the first batch's last record: CRC-covered
    with open(segment, "wb") as f:
        f.write(data)

    broker.start()
    quarantined = glob.glob(segment + ".quarantine-*")
    assert len(quarantined) == 1, f"no quarantine file beside the segment:\n{broker.log()}"
    with open(quarantined[0], "rb") as f:
        kept = f.read()
    assert kept == bytes(data), "all truncated bytes are kept verbatim"
    line = next((l for l in log_lines(broker) if "ERROR" in l and "CORRUPT LOG" in l), None)
    assert line, f"no ERROR about the corrupt batch:\n{broker.log()}"
    assert f"bytes={len(data)}" in line and "first_lost_offset=0" in line and "last_claimed_offset=29" in line, line
    assert f"intact_batches_after_the_bad_one={len(batches) - 1}" in line, line

    # The documented format lets an operator salvage the intact batches.
    salvaged = [v for pos, _, size in walk_batches(kept)[1:] for v in record_values(kept[pos:pos + size])]
    first_batch_records = batches[1][1]  # the second batch's base offset
    assert salvaged == values[first_batch_records:]

    # The log stays consistent: the next record lands at offset 0, dense.
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    producer.produce(topic, value=b"after", partition=0)
    assert producer.flush(15) == 0
    assert read_all(broker.bootstrap, topic, expected=1) == [(0, 0, b"after")]


# ------------------------------------------------- corrupt __consumer_offsets

def commit(bootstrap, group, topic, offset):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
    consumer.close()


def committed(bootstrap, group, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=15)
    consumer.close()
    return tp.offset


def flip_in_commit_batch(data_dir, offset_value):
    """Flips the last byte of the `__consumer_offsets` batch holding a commit of `offset_value`."""
    segment = os.path.join(data_dir, "__consumer_offsets-0", SEGMENT)
    with open(segment, "rb") as f:
        data = bytearray(f.read())
    needle = struct.pack(">q", offset_value)
    hits = [(pos, size) for pos, _, size in walk_batches(data) if needle in data[pos:pos + size]]
    assert len(hits) == 1, f"commit {offset_value} in {len(hits)} batches"
    pos, size = hits[0]
    data[pos + size - 1] ^= 0x20
    with open(segment, "wb") as f:
        f.write(data)


@pytest.mark.parametrize("shutdown", ["kill9", "clean"])
def test_flipped_byte_in_consumer_offsets_skips_only_that_commit(make_broker, shutdown):
    broker = make_broker({"offsets.topic.num.partitions": "1"})
    topic = "committed-" + uuid.uuid4().hex[:6]
    group = "g-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic)
    for offset in (111111111, 222222222, 333333333):
        commit(broker.bootstrap, group, topic, offset)
    assert committed(broker.bootstrap, group, topic) == 333333333
    if shutdown == "kill9":
        broker.kill9()
        damaged, expected = 222222222, 333333333  # a middle commit: the later one is intact and kept
    else:
        assert broker.stop() == 0
        damaged, expected = 333333333, 222222222  # the last commit: falls back to the one before
    flip_in_commit_batch(broker.data_dir, damaged)

    broker.start()
    assert committed(broker.bootstrap, group, topic) == expected
    assert any("ERROR" in l and "CORRUPT" in l for l in log_lines(broker)), f"no ERROR about the corrupt batch:\n{broker.log()}"
    partition_dir = os.path.join(broker.data_dir, "__consumer_offsets-0")
    assert glob.glob(os.path.join(partition_dir, "*quarantine*")), "the corrupt batch is kept in a quarantine file"
    # The coordinator keeps working: a new commit is stored and survives a restart.
    commit(broker.bootstrap, group, topic, 444444444)
    broker.restart()
    assert committed(broker.bootstrap, group, topic) == 444444444


# ------------------------------------------------- corrupt __transaction_state

def test_flipped_byte_in_transaction_state_skips_only_that_batch(make_broker):
    """A corrupt `__transaction_state` batch is skipped and quarantined, as in
    `__consumer_offsets`: the states written after it are still loaded."""
    broker = make_broker({"transaction.state.log.num.partitions": "1"})
    topic = "txn-data-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic)
    first, second = "first-" + uuid.uuid4().hex[:6], "second-" + uuid.uuid4().hex[:6]
    for txn_id in (first, second):
        producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": txn_id, "linger.ms": 5})
        producer.init_transactions(30)
        producer.begin_transaction()
        producer.produce(topic, value=txn_id.encode())
        producer.commit_transaction(30)
    assert broker.stop() == 0

    segment = os.path.join(broker.data_dir, "__transaction_state-0", SEGMENT)
    with open(segment, "rb") as f:
        data = bytearray(f.read())
    # The first state ever written: `first`'s InitProducerId (Empty).
    hits = [(pos, size) for pos, _, size in walk_batches(data) if first.encode() in data[pos:pos + size]]
    assert len(hits) >= 3, f"expected several state batches of {first}, found {len(hits)}"
    pos, size = hits[0]
    data[pos + size - 1] ^= 0x20
    with open(segment, "wb") as f:
        f.write(data)

    broker.start()
    states = {}
    for txn_id in (first, second):
        described = subprocess.run([RUNNEL, "--brokers", broker.bootstrap, "txn", "describe", txn_id], capture_output=True, timeout=60)
        assert described.returncode == 0, described.stderr
        states[txn_id] = dict(line.split("\t", 1) for line in described.stdout.decode().splitlines())["state"]
    # Both ids' later states were read past the corrupt batch.
    assert states == {first: "CompleteCommit", second: "CompleteCommit"}, states
    assert any("ERROR" in l and "CORRUPT" in l for l in log_lines(broker)), f"no ERROR about the corrupt batch:\n{broker.log()}"
    partition_dir = os.path.join(broker.data_dir, "__transaction_state-0")
    assert glob.glob(os.path.join(partition_dir, "*quarantine*")), "the corrupt batch is kept in a quarantine file"


# ------------------------------------------------- missing topic metadata

def test_topic_whose_metadata_file_is_deleted_is_recovered_from_its_directories(make_broker):
    broker = make_broker()
    topic = "orphan-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, partitions=3)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(60):
        producer.produce(topic, value=f"v{i}".encode(), partition=i % 3)
    assert producer.flush(15) == 0
    assert broker.stop() == 0
    meta_file = os.path.join(broker.data_dir, "meta", "topics", f"{topic}.json")
    assert os.path.exists(meta_file), "topic metadata lives where the test expects it"
    os.remove(meta_file)

    broker.start()
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(topic, timeout=10)
    assert topic in metadata.topics and metadata.topics[topic].error is None, f"topic vanished:\n{broker.log()}"
    assert len(metadata.topics[topic].partitions) == 3
    got = read_all(broker.bootstrap, topic, partitions=3, expected=60)
    assert sorted(v for _, _, v in got) == sorted(f"v{i}".encode() for i in range(60))
    assert_dense(got)
    assert any("ERROR" in l and topic in l and "MISSING TOPIC METADATA" in l for l in log_lines(broker))
    assert os.path.exists(meta_file), "the recovered topic's metadata is written again"


def test_deleted_topic_stays_deleted_across_a_restart(make_broker):
    broker = make_broker()
    topic = "gone-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value=b"x", partition=1)
    assert producer.flush(15) == 0
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([topic])[topic].result(15)
    broker.restart()
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert topic not in metadata.topics or metadata.topics[topic].error is not None
    assert not glob.glob(os.path.join(broker.data_dir, f"{topic}-*"))


def deleted_topic_with_its_logs_put_back(broker, topic):
    """A topic whose deletion the cluster metadata committed while its logs (and
    local metadata file) are still on disk — what a crash after the commit and
    before the logs were removed leaves. Returns (meta_file, topic_id hex, saved)
    with the saved copies restored in place; the broker is stopped."""
    create_topic(broker.bootstrap, topic, partitions=2)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value=b"x", partition=0)
    producer.produce(topic, value=b"y", partition=1)
    assert producer.flush(15) == 0
    assert broker.stop() == 0
    meta_file = os.path.join(broker.data_dir, "meta", "topics", f"{topic}.json")
    with open(meta_file) as f:
        topic_id = uuid.UUID(bytes=bytes(json.load(f)["topic_id"])).hex
    saved = tempfile.mkdtemp()
    for p in (0, 1):
        shutil.copytree(os.path.join(broker.data_dir, f"{topic}-{p}"), os.path.join(saved, f"{topic}-{p}"))
    shutil.copy(meta_file, saved)
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.delete_topics([topic])[topic].result(15)
    assert broker.stop() == 0
    assert not glob.glob(os.path.join(broker.data_dir, f"{topic}-*"))
    for p in (0, 1):
        shutil.copytree(os.path.join(saved, f"{topic}-{p}"), os.path.join(broker.data_dir, f"{topic}-{p}"))
    shutil.copy(os.path.join(saved, os.path.basename(meta_file)), meta_file)
    shutil.rmtree(saved)
    return meta_file, topic_id


def wait_until_gone(broker, topic, meta_file, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline and (glob.glob(os.path.join(broker.data_dir, f"{topic}-*")) or os.path.exists(meta_file)):
        time.sleep(0.2)
    assert not glob.glob(os.path.join(broker.data_dir, f"{topic}-*")), os.listdir(broker.data_dir)
    assert not os.path.exists(meta_file)


def test_topic_deletion_interrupted_after_the_rename_is_finished_on_start(make_broker):
    broker = make_broker()
    topic = "halfgone-" + uuid.uuid4().hex[:6]
    meta_file, topic_id = deleted_topic_with_its_logs_put_back(broker, topic)
    # The crash came after the deletion renamed partition 0 and before it removed the rest.
    os.rename(os.path.join(broker.data_dir, f"{topic}-0"), os.path.join(broker.data_dir, f"{topic}-0.{topic_id}.deleting"))

    broker.start()
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert topic not in metadata.topics, "the interrupted deletion was finished, not undone"
    wait_until_gone(broker, topic, meta_file)
    assert any("finished deleting a topic whose deletion was interrupted" in l for l in log_lines(broker))


def test_logs_of_a_topic_the_cluster_deleted_are_removed_on_start(make_broker):
    broker = make_broker()
    topic = "stray-" + uuid.uuid4().hex[:6]
    # The crash came after the deletion was committed and before any log was touched.
    meta_file, _ = deleted_topic_with_its_logs_put_back(broker, topic)

    broker.start()
    metadata = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=10)
    assert topic not in metadata.topics
    wait_until_gone(broker, topic, meta_file)
    assert any("WARN" in l and topic in l and "no longer has" in l for l in log_lines(broker))
    # The name is free again: a new topic of that name starts empty.
    create_topic(broker.bootstrap, topic, partitions=1)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value=b"new", partition=0)
    assert producer.flush(15) == 0
    assert read_all(broker.bootstrap, topic, partitions=1) == [(0, 0, b"new")]
