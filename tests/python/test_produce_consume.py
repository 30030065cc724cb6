"""Producing and consuming with real clients: confluent-kafka (librdkafka) and kafka-python."""
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def create_topic(bootstrap, name, partitions=1, config=None):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})])
    futures[name].result(15)


def produce(bootstrap, topic, records, **conf):
    """Produces (key, value, headers) records; returns the delivery reports as (partition, offset)."""
    delivered, errors = [], []

    def report(err, msg):
        if err is not None:
            errors.append(err)
        else:
            delivered.append((msg.partition(), msg.offset()))

    producer = Producer({"bootstrap.servers": bootstrap, **conf})
    for key, value, headers in records:
        producer.produce(topic, key=key, value=value, headers=headers, on_delivery=report)
    left = producer.flush(30)
    assert left == 0, f"{left} records never delivered"
    return delivered, errors


def consume_all(bootstrap, topic, expected, partitions=None, offset=None, timeout=30):
    """Reads `expected` records by direct assignment (no group)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-" + uuid.uuid4().hex[:6], "enable.auto.commit": False})
    parts = partitions if partitions is not None else [0]
    start = offset if offset is not None else -2  # OFFSET_BEGINNING
    consumer.assign([TopicPartition(topic, p, start) for p in parts])
    got = []
    deadline = time.time() + timeout
    try:
        while len(got) < expected and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                raise AssertionError(f"consume error: {msg.error()}")
            got.append(msg)
    finally:
        consumer.close()
    return got


@pytest.mark.parametrize("acks", ["1", "all"])
def test_round_trip_with_keys_and_headers(broker, topic_name, acks):
    create_topic(broker.bootstrap, topic_name)
    records = [(f"k{i}".encode(), f"value-{i}".encode(), [("h", f"{i}".encode()), ("trace", b"x")]) for i in range(50)]
    delivered, errors = produce(broker.bootstrap, topic_name, records, acks=acks, **{"linger.ms": 5})
    assert not errors
    assert sorted(o for _, o in delivered) == list(range(50))
    got = consume_all(broker.bootstrap, topic_name, 50)
    assert [(m.key(), m.value()) for m in got] == [(k, v) for k, v, _ in records]
    assert [m.offset() for m in got] == list(range(50))
    assert got[7].headers() == [("h", b"7"), ("trace", b"x")]


def test_acks_zero_records_arrive(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    records = [(None, f"fire-and-forget-{i}".encode(), None) for i in range(20)]
    produce(broker.bootstrap, topic_name, records, acks="0")
    got = consume_all(broker.bootstrap, topic_name, 20)
    assert sorted(m.value() for m in got) == sorted(v for _, v, _ in records)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_compression_codec_round_trips(broker, topic_name, codec):
    create_topic(broker.bootstrap, topic_name)
    records = [(b"k", (f"compressible {i} " * 20).encode(), None) for i in range(200)]
    delivered, errors = produce(broker.bootstrap, topic_name, records, **{"compression.type": codec, "linger.ms": 20})
    assert not errors
    got = consume_all(broker.bootstrap, topic_name, 200)
    assert [m.value() for m in got] == [v for _, v, _ in records]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner hash)."""
    length = len(data)
    seed = 0x9747B28C
    m = 0x5BD1E995
    r = 24
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    extra = length % 4
    tail = length - extra
    if extra == 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def test_keys_partition_like_the_java_client_and_keep_order(broker, topic_name):
    partitions = 6
    create_topic(broker.bootstrap, topic_name, partitions=partitions)
    keys = [f"user-{i}".encode() for i in range(30)]
    records = [(k, f"{k.decode()}:{n}".encode(), None) for n in range(10) for k in keys]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "partitioner": "murmur2_random", "linger.ms": 10})
    placed = {}

    def report(err, msg):
        assert err is None, err
        placed.setdefault(msg.key(), set()).add(msg.partition())

    for k, v, _ in records:
        producer.produce(topic_name, key=k, value=v, on_delivery=report)
    assert producer.flush(30) == 0
    for k in keys:
        assert placed[k] == {java_partition(k, partitions)}, f"key {k} placed on {placed[k]}"
    got = consume_all(broker.bootstrap, topic_name, len(records), partitions=list(range(partitions)))
    per_key = {}
    for m in got:
        per_key.setdefault(m.key(), []).append(m.value())
    for k in keys:
        assert per_key[k] == [f"{k.decode()}:{n}".encode() for n in range(10)], "per-key order"


def test_high_watermark_is_last_offset_plus_one_with_batches(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    records = [(None, f"v{i}".encode(), None) for i in range(100)]
    produce(broker.bootstrap, topic_name, records, **{"linger.ms": 50, "batch.num.messages": 10})
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "wm"})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10)
    consumer.close()
    assert (low, high) == (0, 100)
    got = consume_all(broker.bootstrap, topic_name, 100)
    assert [m.offset() for m in got] == list(range(100))


def test_consume_from_offset_and_by_timestamp(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    base = int(time.time() * 1000) - 100_000
    for i in range(10):
        producer.produce(topic_name, value=f"v{i}".encode(), timestamp=base + i * 1000)
        producer.flush(10)
    got = consume_all(broker.bootstrap, topic_name, 4, offset=6)
    assert [m.value() for m in got] == [b"v6", b"v7", b"v8", b"v9"]
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "ts"})
    found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 3500)], timeout=10)
    assert found[0].offset == 4
    found = consumer.offsets_for_times([TopicPartition(topic_name, 0, base + 10**9)], timeout=10)
    assert found[0].offset == -1, "no record at or after a future timestamp"
    consumer.close()


def test_message_larger_than_max_is_refused(make_broker, topic_name):
    b = make_broker({"message.max.bytes": "10000"})
    create_topic(b.bootstrap, topic_name)
    delivered, errors = produce(b.bootstrap, topic_name, [(None, b"x" * 20000, None)], **{"message.max.bytes": 2000000})
    assert not delivered
    assert errors and errors[0].code() == KafkaError.MSG_SIZE_TOO_LARGE
    # Nothing partial was appended; a normal record still goes in at offset 0.
    delivered, errors = produce(b.bootstrap, topic_name, [(None, b"small", None)])
    assert delivered == [(0, 0)]


def test_unknown_topic_without_auto_create(make_broker):
    b = make_broker({"auto.create.topics.enable": "false"})
    name = "missing-" + uuid.uuid4().hex[:6]
    producer = Producer({"bootstrap.servers": b.bootstrap, "message.timeout.ms": 3000})
    errors = []
    producer.produce(name, value=b"x", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC, KafkaError._MSG_TIMED_OUT)
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    assert name not in admin.list_topics(timeout=10).topics


def test_auto_create_on_first_use(broker):
    name = "auto-" + uuid.uuid4().hex[:6]
    delivered, errors = produce(broker.bootstrap, name, [(None, b"hello", None)])
    assert delivered == [(0, 0)] and not errors
    assert "auto-creating topic" in broker.log()


def test_list_offsets_earliest_and_latest(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    produce(broker.bootstrap, topic_name, [(None, b"a", None), (None, b"b", None), (None, b"c", None)])
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lo"})
    low, high = consumer.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10, cached=False)
    consumer.close()
    assert (low, high) == (0, 3)


def test_kafka_python_round_trip(broker, topic_name):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as KTopicPartition

    create_topic(broker.bootstrap, topic_name)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", linger_ms=5)
    futures = [producer.send(topic_name, key=f"k{i}".encode(), value=f"v{i}".encode(), headers=[("n", str(i).encode())]) for i in range(30)]
    offsets = [f.get(timeout=20).offset for f in futures]
    producer.close()
    assert offsets == list(range(30))
    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    tp = KTopicPartition(topic_name, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    got = []
    for msg in consumer:
        got.append((msg.offset, msg.key, msg.value, msg.headers))
        if len(got) == 30:
            break
    consumer.close()
    assert [(o, k, v) for o, k, v, _ in got] == [(i, f"k{i}".encode(), f"v{i}".encode()) for i in range(30)]
    assert got[3][3] == [("n", b"3")]


@pytest.mark.parametrize("codec", ["gzip", "lz4", "zstd", "snappy"])
def test_kafka_python_compression(broker, topic_name, codec):
    from kafka import KafkaProducer

    create_topic(broker.bootstrap, topic_name)
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, compression_type=codec, linger_ms=20)
    for i in range(100):
        producer.send(topic_name, value=(f"payload {i} " * 10).encode())
    producer.flush(20)
    producer.close()
    got = consume_all(broker.bootstrap, topic_name, 100)
    assert [m.value() for m in got] == [(f"payload {i} " * 10).encode() for i in range(100)]


def test_idempotent_producer(broker, topic_name):
    create_topic(broker.bootstrap, topic_name)
    delivered, errors = produce(
        broker.bootstrap, topic_name, [(None, f"i{i}".encode(), None) for i in range(100)], **{"enable.idempotence": True, "linger.ms": 5}
    )
    assert not errors
    assert sorted(o for _, o in delivered) == list(range(100))
    got = consume_all(broker.bootstrap, topic_name, 100)
    assert [m.value() for m in got] == [f"i{i}".encode() for i in range(100)]


def test_large_multi_partition_fetches_arrive_intact(broker, topic_name):
    """Fetch responses that carry several partitions' records, each region
    larger than a socket buffer, are sent straight from the log files: every
    byte must arrive in place, across partitions and segment boundaries."""
    import hashlib
    import os

    partitions = 3
    create_topic(broker.bootstrap, topic_name, partitions, config={"segment.bytes": str(4 << 20)})
    values = {}
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 20, "batch.size": 1 << 20, "compression.type": "none"})
    for i in range(3000):
        value = os.urandom(4096)
        values[(i % partitions, i // partitions)] = hashlib.sha256(value).digest()
        producer.produce(topic_name, value=value, partition=i % partitions)
    assert producer.flush(30) == 0
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": "big-" + uuid.uuid4().hex[:6],
        "enable.auto.commit": False,
        "fetch.max.bytes": 50 << 20,
        "max.partition.fetch.bytes": 8 << 20,
        "check.crcs": True,
    })
    consumer.assign([TopicPartition(topic_name, p, -2) for p in range(partitions)])
    got = {}
    deadline = time.time() + 60
    try:
        while len(got) < len(values) and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            assert not msg.error(), msg.error()
            got[(msg.partition(), msg.offset())] = hashlib.sha256(msg.value()).digest()
    finally:
        consumer.close()
    assert len(got) == len(values)
    assert got == values
