"""message.timestamp.before.max.ms / after.max.ms (KIP-937), seen through
confluent-kafka: a record outside the window is refused with
INVALID_TIMESTAMP and nothing is appended; the topic config overrides the
broker's log.message.timestamp.* default."""
import time
import uuid

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

HOUR_MS = 3_600_000


def produce_one(bootstrap, topic, timestamp):
    """Produces one record at `timestamp`; the delivery error (None on success)."""
    outcome = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "message.send.max.retries": 0})
    producer.produce(topic, value=b"v", timestamp=timestamp, on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(15)
    assert len(outcome) == 1, "the delivery report arrived"
    return outcome[0]


def high_watermark(bootstrap, topic):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "hw-" + uuid.uuid4().hex[:6]})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)[1]
    finally:
        consumer.close()


def create(bootstrap, topic, config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(15)


def test_topic_window_refuses_old_and_future_records(broker):
    topic = "ts-window-" + uuid.uuid4().hex[:6]
    create(broker.bootstrap, topic, {"message.timestamp.before.max.ms": str(HOUR_MS)})
    now = int(time.time() * 1000)
    too_old = produce_one(broker.bootstrap, topic, now - 2 * HOUR_MS)
    assert too_old is not None and too_old.code() == KafkaError.INVALID_TIMESTAMP, too_old
    # message.timestamp.after.max.ms keeps its default: one hour.
    too_new = produce_one(broker.bootstrap, topic, now + 2 * HOUR_MS)
    assert too_new is not None and too_new.code() == KafkaError.INVALID_TIMESTAMP, too_new
    assert produce_one(broker.bootstrap, topic, now - 60_000) is None, "a record inside the window is accepted"
    assert high_watermark(broker.bootstrap, topic) == 1, "only the accepted record was appended"


def test_broker_default_applies_and_topic_overrides_it(make_broker):
    broker = make_broker({"log.message.timestamp.before.max.ms": str(HOUR_MS)})
    now = int(time.time() * 1000)
    strict = "ts-strict-" + uuid.uuid4().hex[:6]
    create(broker.bootstrap, strict, {})
    refused = produce_one(broker.bootstrap, strict, now - 2 * HOUR_MS)
    assert refused is not None and refused.code() == KafkaError.INVALID_TIMESTAMP, refused
    lenient = "ts-lenient-" + uuid.uuid4().hex[:6]
    create(broker.bootstrap, lenient, {"message.timestamp.before.max.ms": str(24 * HOUR_MS)})
    assert produce_one(broker.bootstrap, lenient, now - 2 * HOUR_MS) is None, "the topic's wider window wins"
