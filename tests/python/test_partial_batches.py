"""Fetch answers cut inside a batch, as Kafka sends them.

Kafka slices a partition's log at the fetch's byte limit, so the last batch
of an answer is often cut short; every client drops that tail and fetches it
again from the first offset it lacks. Runnel answers consumers the same way
(it fills `partition_max_bytes` instead of stopping at the last whole batch).
These tests make every answer end in a partial batch and check that each
client still reads every record exactly once, in order.
"""
import asyncio
import shutil
import subprocess

import aiokafka
import kafka
from confluent_kafka import Consumer, Producer, TopicPartition

COUNT = 3000
VALUE_SIZE = 700
# Batches of at most 64 KiB (the producer's batch.size); a limit of 1.5
# batches ends nearly every answer inside a batch.
BATCH_BYTES = 64 * 1024
FETCH_LIMIT = BATCH_BYTES * 3 // 2


def value(i):
    return f"{i:08d}".encode() + b"p" * (VALUE_SIZE - 8)


def produce(bootstrap, topic):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": BATCH_BYTES, "acks": "all"})
    for i in range(COUNT):
        producer.produce(topic, value(i), partition=0)
    assert producer.flush(30) == 0, "records left unsent"


def assert_complete(pairs):
    offsets = [o for o, _ in pairs]
    assert offsets == list(range(COUNT)), f"offsets not dense and in order: first wrong at {next((i for i, o in enumerate(offsets) if o != i), len(offsets))}"
    assert [v for _, v in pairs] == [value(i) for i in range(COUNT)]


def test_confluent_kafka_reads_answers_ending_in_a_partial_batch(broker, topic_name):
    produce(broker.bootstrap, topic_name)
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "partial-" + topic_name,
        "enable.auto.commit": False,
        "max.partition.fetch.bytes": FETCH_LIMIT,
    })
    try:
        consumer.assign([TopicPartition(topic_name, 0, 0)])
        got = []
        for _ in range(600):
            if len(got) >= COUNT:
                break
            for m in consumer.consume(1000, 0.2):
                assert m.error() is None, m.error()
                got.append((m.offset(), m.value()))
        assert_complete(got)
    finally:
        consumer.close()


def test_kafka_python_reads_answers_ending_in_a_partial_batch(broker, topic_name):
    produce(broker.bootstrap, topic_name)
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=broker.bootstrap,
        max_partition_fetch_bytes=FETCH_LIMIT,
        fetch_max_bytes=FETCH_LIMIT,
        consumer_timeout_ms=10000,
        request_timeout_ms=15000,
    )
    try:
        tp = kafka.TopicPartition(topic_name, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        got = []
        for m in consumer:
            got.append((m.offset, m.value))
            if len(got) >= COUNT:
                break
        assert_complete(got)
    finally:
        consumer.close()


def test_aiokafka_reads_answers_ending_in_a_partial_batch(broker, topic_name):
    produce(broker.bootstrap, topic_name)

    async def scenario():
        consumer = aiokafka.AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            max_partition_fetch_bytes=FETCH_LIMIT,
            fetch_max_bytes=FETCH_LIMIT,
            request_timeout_ms=15000,
        )
        await consumer.start()
        try:
            tp = aiokafka.TopicPartition(topic_name, 0)
            consumer.assign([tp])
            await consumer.seek_to_beginning(tp)
            got = []
            while len(got) < COUNT:
                batch = await consumer.getmany(timeout_ms=1000)
                for records in batch.values():
                    got.extend((r.offset, r.value) for r in records)
            return got
        finally:
            await consumer.stop()

    assert_complete(asyncio.run(asyncio.wait_for(scenario(), 60)))


def test_kcat_reads_answers_ending_in_a_partial_batch(broker, topic_name):
    kcat = shutil.which("kcat") or shutil.which("kafkacat")
    assert kcat is not None, "kcat is not installed (scripts/test.sh installs it)"
    produce(broker.bootstrap, topic_name)
    done = subprocess.run(
        [kcat, "-b", broker.bootstrap, "-C", "-t", topic_name, "-p", "0", "-o", "beginning", "-e", "-q",
         "-X", f"fetch.message.max.bytes={FETCH_LIMIT}", "-f", "%o %s\n"],
        capture_output=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr.decode(errors="replace")[-2000:]
    pairs = []
    for line in done.stdout.split(b"\n"):
        if line:
            offset, _, v = line.partition(b" ")
            pairs.append((int(offset), v))
    assert_complete(pairs)
