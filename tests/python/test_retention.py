"""Retention in the background and LogAppendTime, seen through real clients."""
import time
import uuid

from confluent_kafka import TIMESTAMP_LOG_APPEND_TIME, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic


def watermarks(bootstrap, topic):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm-" + uuid.uuid4().hex[:6]})
    try:
        return c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
    finally:
        c.close()


def test_time_retention_deletes_old_segments(make_broker):
    broker = make_broker({"log.retention.check.interval.ms": "200"})
    topic = "ret-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "60000", "segment.bytes": "200"})])[topic].result(15)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    old = int(time.time() * 1000) - 3_600_000
    for i in range(10):
        producer.produce(topic, value=b"x" * 150, timestamp=old + i)
        producer.flush(10)
    producer.produce(topic, value=b"fresh")
    producer.flush(10)
    deadline = time.time() + 20
    while time.time() < deadline:
        low, high = watermarks(broker.bootstrap, topic)
        if low == 10:
            break
        time.sleep(0.3)
    assert (low, high) == (10, 11), "records older than retention.ms are gone; the fresh one stays"


def test_size_retention(make_broker):
    broker = make_broker({"log.retention.check.interval.ms": "200"})
    topic = "size-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.bytes": "1000", "segment.bytes": "300"})])[topic].result(15)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    for i in range(30):
        producer.produce(topic, value=b"y" * 200)
        producer.flush(10)
    # Retention runs every 200 ms, also while the records arrive: wait for a
    # check that saw all of them, not just the first deletion.
    deadline = time.time() + 20
    low, high = 0, 0
    while time.time() < deadline and not (low > 0 and high - low <= 10):
        low, high = watermarks(broker.bootstrap, topic)
        time.sleep(0.3)
    assert low > 0 and high == 30
    assert high - low <= 10, f"about retention.bytes worth of records remain, not {high - low}"


def test_log_append_time(broker):
    topic = "lat-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"message.timestamp.type": "LogAppendTime"})])[topic].result(15)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce(topic, value=b"v", timestamp=1_000)
    producer.flush(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "lat"})
    c.assign([TopicPartition(topic, 0, 0)])
    msg = None
    deadline = time.time() + 15
    while msg is None and time.time() < deadline:
        msg = c.poll(0.5)
    c.close()
    assert msg is not None and not msg.error()
    kind, ts = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert abs(ts - time.time() * 1000) < 60_000, "the broker's clock, not the producer's 1000"
