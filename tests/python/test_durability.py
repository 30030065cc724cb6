"""Acknowledged means durable: kill -9 right after the last acks=all ack, restart, read everything back."""
import subprocess
import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from runnel_broker import RUNNEL, Broker


def read_all(bootstrap, topic, partitions, expected, timeout=30):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "verify-" + uuid.uuid4().hex[:6], "enable.auto.commit": False})
    consumer.assign([TopicPartition(topic, p, -2) for p in range(partitions)])
    got = []
    deadline = time.time() + timeout
    while time.time() < deadline:
        msg = consumer.poll(0.5)
        if msg is None:
            if len(got) >= expected:
                break
            continue
        assert not msg.error(), msg.error()
        got.append((msg.partition(), msg.offset(), msg.value()))
    consumer.close()
    return got


def test_acked_records_survive_kill_9(make_broker):
    broker = make_broker()
    topic = "durable-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(15)
    n = 3000
    acked = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all", "linger.ms": 2, "enable.idempotence": True})

    def report(err, msg):
        assert err is None, err
        acked.append((msg.partition(), msg.offset(), msg.value()))
        if len(acked) == n:
            broker.kill9()  # the moment the last ack arrives

    for i in range(n):
        producer.produce(topic, key=str(i % 17).encode(), value=f"record-{i}".encode(), on_delivery=report)
        producer.poll(0)
    producer.flush(30)
    assert len(acked) == n
    assert not broker.alive(), "the broker was killed at the last ack"
    broker.start()
    got = read_all(broker.bootstrap, topic, 3, n)
    assert len(got) == n, f"read back {len(got)} of {n} acknowledged records"
    assert sorted(got) == sorted(acked), "exactly the acknowledged records, once each"
    for p in range(3):
        offsets = [o for part, o, _ in got if part == p]
        assert offsets == list(range(len(offsets))), f"partition {p} offsets are dense and in order"


def test_clean_restart_keeps_topics_configs_and_data(make_broker):
    broker = make_broker()
    topic = "keep-" + uuid.uuid4().hex[:6]
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1, config={"retention.ms": "123456789"})])[topic].result(15)
    producer = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(100):
        producer.produce(topic, value=f"v{i}".encode(), partition=i % 2)
    assert producer.flush(15) == 0
    assert broker.stop() == 0, "clean shutdown exits 0"
    broker.start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    meta = admin.list_topics(timeout=10)
    assert len(meta.topics[topic].partitions) == 2
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == "123456789"
    got = read_all(broker.bootstrap, topic, 2, 100)
    assert sorted(v for _, _, v in got) == sorted(f"v{i}".encode() for i in range(100))


def test_second_broker_on_same_data_dir_refuses_to_start(make_broker):
    broker = make_broker()
    second = Broker(data_dir=broker.data_dir)
    proc = subprocess.run(second.command(), capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0
    assert b"lock" in proc.stderr.lower(), proc.stderr
    assert broker.alive()


def test_torn_tail_is_truncated_on_recovery(make_broker, tmp_path):
    import glob
    import os

    broker = make_broker()
    topic = "torn-" + uuid.uuid4().hex[:6]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(50):
        producer.produce(topic, value=f"v{i}".encode())
        producer.flush(10)
    broker.kill9()
    (segment,) = glob.glob(os.path.join(broker.data_dir, f"{topic}-0", "*.log"))
    with open(segment, "ab") as f:
        f.write(b"\x00\x00\x00\x00\x00\x00\x00\x32\x00\x00\x01\x00garbage-of-a-torn-write")
    broker.start()
    got = read_all(broker.bootstrap, topic, 1, 50)
    assert [v for _, _, v in got] == [f"v{i}".encode() for i in range(50)]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    offsets = []
    producer.produce(topic, value=b"after", on_delivery=lambda e, m: offsets.append(m.offset()))
    producer.flush(10)
    assert offsets == [50], "appends continue right after the last good batch"
