"""Older clients that speak low protocol versions (ListOffsets v1-v3, Fetch v4+): kcat, aiokafka, sarama, kafkajs.

kcat from Debian (librdkafka 2.0.2) and aiokafka look offsets up with
ListOffsets v1-v3; a broker that cannot answer those leaves them hanging
where they resolve "beginning", a group's reset offset, or `-Q`. Every
client call here is bounded by a timeout, so a missing answer fails the test
instead of hanging it.
"""
import asyncio
import os
import shutil
import subprocess
import time
import uuid

import aiokafka
import pytest
from confluent_kafka import Consumer, TopicPartition

KCAT = shutil.which("kcat") or shutil.which("kafkacat")
CLIENT_TIMEOUT = 30



@pytest.fixture
def needs_kcat():
    # A failure, not a skip: a machine without kcat would silently drop these tests.
    assert KCAT is not None, "kcat is not installed (scripts/test.sh installs it: apt-get install kcat)"


def kcat(bootstrap, *args, stdin=None, timeout=CLIENT_TIMEOUT):
    """Runs kcat; a hang (the symptom of an unanswered request) fails with the client's own output."""
    cmd = [KCAT, "-b", bootstrap, "-X", "socket.timeout.ms=10000", *args]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"{' '.join(cmd)} hung for {timeout}s; stderr: {(e.stderr or b'').decode(errors='replace')[-2000:]}")
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
    return done.stdout.decode()


def committed_offset(bootstrap, group, topic, partition=0):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = consumer.committed([TopicPartition(topic, partition)], timeout=15)
        return tp.offset
    finally:
        consumer.close()


def kcat_produce(bootstrap, topic, values):
    kcat(bootstrap, "-P", "-t", topic, "-K", ":", stdin="".join(f"k{i}:{v}\n" for i, v in enumerate(values)).encode())


def test_kcat_produce_and_consume_from_beginning(needs_kcat, broker, topic_name):
    values = [f"value-{i}" for i in range(20)]
    kcat_produce(broker.bootstrap, topic_name, values)
    out = kcat(broker.bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e", "-q", "-f", "%k=%s@%o\n")
    assert out.splitlines() == [f"k{i}={v}@{i}" for i, v in enumerate(values)]
    # A relative start ("2 from the end") is resolved with ListOffsets too.
    out = kcat(broker.bootstrap, "-C", "-t", topic_name, "-o", "-2", "-e", "-q", "-f", "%s\n")
    assert out.splitlines() == values[-2:]


def test_kcat_offset_query(needs_kcat, broker, topic_name):
    kcat_produce(broker.bootstrap, topic_name, [f"v{i}" for i in range(7)])
    out = kcat(broker.bootstrap, "-Q", "-t", f"{topic_name}:0:-1")
    assert f"{topic_name} [0] offset 7" in out, out
    out = kcat(broker.bootstrap, "-Q", "-t", f"{topic_name}:0:-2")
    assert f"{topic_name} [0] offset 0" in out, out
    # By timestamp: every record is newer than the epoch, so the first one is found.
    out = kcat(broker.bootstrap, "-Q", "-t", f"{topic_name}:0:1")
    assert f"{topic_name} [0] offset 0" in out, out


def test_kcat_group_consume_commits(needs_kcat, broker, topic_name):
    values = [f"g{i}" for i in range(10)]
    kcat_produce(broker.bootstrap, topic_name, values)
    group = "kcat-" + uuid.uuid4().hex[:8]
    # No committed offset yet: the group starts where auto.offset.reset says (a ListOffsets lookup).
    out = kcat(broker.bootstrap, "-G", group, "-X", "auto.offset.reset=earliest", "-c", str(len(values)), "-q", "-f", "%s\n", topic_name)
    assert out.splitlines() == values
    deadline = time.time() + 15
    while committed_offset(broker.bootstrap, group, topic_name) != len(values) and time.time() < deadline:
        time.sleep(0.2)
    assert committed_offset(broker.bootstrap, group, topic_name) == len(values)


def test_kcat_metadata(needs_kcat, broker, topic_name):
    kcat_produce(broker.bootstrap, topic_name, ["x"])
    out = kcat(broker.bootstrap, "-L", "-t", topic_name)
    assert f'topic "{topic_name}" with 1 partitions' in out, out
    assert "partition 0, leader" in out, out


def run_async(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def test_aiokafka_produce_consume_group_commit_and_offsets(broker, topic_name):

    async def scenario():
        producer = aiokafka.AIOKafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        await producer.start()
        try:
            sent = [await producer.send_and_wait(topic_name, f"a{i}".encode(), key=f"k{i}".encode()) for i in range(12)]
        finally:
            await producer.stop()
        assert [m.offset for m in sent] == list(range(12))
        tp = aiokafka.TopicPartition(topic_name, 0)

        # Consume from the beginning in a group, commit, and look offsets up.
        group = "aio-" + uuid.uuid4().hex[:8]
        consumer = aiokafka.AIOKafkaConsumer(
            topic_name,
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            request_timeout_ms=10000,
        )
        await consumer.start()
        try:
            got = []
            while len(got) < 12:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend(r.value.decode() for r in records)
            assert got == [f"a{i}" for i in range(12)]
            await consumer.commit()
            assert await consumer.committed(tp) == 12
            assert await consumer.beginning_offsets([tp]) == {tp: 0}
            assert await consumer.end_offsets([tp]) == {tp: 12}
            found = await consumer.offsets_for_times({tp: 0})
            assert found[tp].offset == 0
        finally:
            await consumer.stop()

        # Without a group: seek to the beginning of an assigned partition.
        reader = aiokafka.AIOKafkaConsumer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000)
        await reader.start()
        try:
            reader.assign([tp])
            await reader.seek_to_beginning(tp)
            first = await reader.getone()
            assert (first.offset, first.value) == (0, b"a0")
        finally:
            await reader.stop()
        return group

    group = run_async(scenario())
    assert committed_offset(broker.bootstrap, group, topic_name) == 12


GO_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "go")


@pytest.fixture(scope="session")
def sarama_client(tmp_path_factory):
    """tests/go/sarama_client, built with the go toolchain (modules from the Go module proxy)."""
    go = shutil.which("go") or "/usr/local/go/bin/go"
    assert os.access(go, os.X_OK), "go is not installed"
    binary = str(tmp_path_factory.mktemp("sarama") / "sarama-client")
    built = subprocess.run([go, "build", "-o", binary, "./sarama_client"], cwd=GO_DIR, capture_output=True, timeout=600)
    assert built.returncode == 0, built.stderr.decode(errors="replace")
    return binary


def sarama(binary, *args, timeout=90):
    try:
        done = subprocess.run([binary, *args], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"sarama-client {' '.join(args)} hung for {timeout}s; stderr: {(e.stderr or b'').decode(errors='replace')[-2000:]}")
    assert done.returncode == 0, f"sarama-client {' '.join(args)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
    return done.stdout.decode().splitlines()


def test_sarama_produce_consume_group_commit_and_offsets(sarama_client, broker, topic_name):
    """sarama at Kafka 1.0's versions: ListOffsets v2, Fetch v6, JoinGroup v2, OffsetCommit v3."""
    assert sarama(sarama_client, "produce", broker.bootstrap, topic_name, "8") == [str(i) for i in range(8)]
    expected = [f"{i} s{i}" for i in range(8)]
    assert sarama(sarama_client, "consume", broker.bootstrap, topic_name, "8") == expected
    assert sarama(sarama_client, "offsets", broker.bootstrap, topic_name) == ["oldest 0 newest 8"]
    group = "sarama-" + uuid.uuid4().hex[:8]
    assert sarama(sarama_client, "group", broker.bootstrap, topic_name, group, "8") == expected
    assert sarama(sarama_client, "committed", broker.bootstrap, topic_name, group) == ["8"]
    assert committed_offset(broker.bootstrap, group, topic_name) == 8


JS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "js")


@pytest.fixture(scope="session")
def kafkajs_client():
    """tests/js/kafkajs_client.js; scripts/test.sh installs kafkajs (npm ci), as does this fixture if it is missing."""
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "node and npm are not installed"
    if not os.path.isdir(os.path.join(JS_DIR, "node_modules", "kafkajs")):
        installed = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=JS_DIR, capture_output=True, timeout=600)
        assert installed.returncode == 0, installed.stderr.decode(errors="replace")
    return [node, os.path.join(JS_DIR, "kafkajs_client.js")]


def kafkajs(command, *args, timeout=90):
    try:
        done = subprocess.run([*command, *args], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise AssertionError(f"kafkajs client {' '.join(args)} hung for {timeout}s; stderr: {(e.stderr or b'').decode(errors='replace')[-2000:]}")
    assert done.returncode == 0, f"kafkajs client {' '.join(args)} exited {done.returncode}: {done.stderr.decode(errors='replace')[-2000:]}"
    return done.stdout.decode().splitlines()


def test_kafkajs_produce_consume_group_commit_and_offsets(kafkajs_client, broker, topic_name):
    """kafkajs 2.2: ListOffsets v3, Fetch v11."""
    assert kafkajs(kafkajs_client, "produce", broker.bootstrap, topic_name, "6") == [str(i) for i in range(6)]
    assert kafkajs(kafkajs_client, "offsets", broker.bootstrap, topic_name) == ["oldest 0 newest 6"]
    group = "kafkajs-" + uuid.uuid4().hex[:8]
    assert kafkajs(kafkajs_client, "consume", broker.bootstrap, topic_name, group, "6") == [f"{i} j{i}" for i in range(6)]
    assert kafkajs(kafkajs_client, "committed", broker.bootstrap, topic_name, group) == ["6"]
    assert committed_offset(broker.bootstrap, group, topic_name) == 6
