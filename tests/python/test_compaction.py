"""Log compaction (cleanup.policy=compact) seen through real clients: the
latest value of every key survives, superseded values and expired
tombstones go, offsets keep their values, keyless records are refused."""
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

CLEANER = {"log.cleaner.backoff.ms": "100"}


def read_all(bootstrap, topic, isolation="read_committed"):
    """Every record from the log start to the end (the LSO for read_committed,
    librdkafka's default): [(offset, key, value)]."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "cmp-" + uuid.uuid4().hex[:6], "enable.auto.commit": False,
                  "isolation.level": isolation})
    try:
        low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10, cached=False)
        c.assign([TopicPartition(topic, 0, low)])
        out = []
        deadline = time.time() + 30
        last = low - 1
        while last < high - 1 and time.time() < deadline:
            msg = c.poll(0.5)
            if msg is None:
                # A compacted tail leaves nothing to read up to the end: an empty poll after data is the end.
                if out and time.time() > deadline - 25:
                    break
                continue
            assert not msg.error(), msg.error()
            out.append((msg.offset(), msg.key(), msg.value()))
            last = msg.offset()
        return out
    finally:
        c.close()


def create_compacted(bootstrap, topic, **config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    settings = {"cleanup.policy": "compact", "segment.bytes": "1024", "min.cleanable.dirty.ratio": "0.01"}
    settings.update(config)
    admin.create_topics([NewTopic(topic, 1, 1, config=settings)])[topic].result(15)


def produce(bootstrap, topic, records):
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
        producer.flush(10)


def wait_until(predicate, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.3)
    return predicate()


def test_latest_value_per_key_survives_with_offsets_kept(make_broker):
    broker = make_broker(CLEANER)
    topic = "cmp-" + uuid.uuid4().hex[:6]
    create_compacted(broker.bootstrap, topic, **{"delete.retention.ms": "0"})
    records = []
    for round_ in range(20):
        for k in range(5):
            records.append((b"k%d" % k, b"v%d-%d" % (k, round_) + b"." * 40))
    records.append((b"k4", None))  # tombstone of k4
    records.append((b"tail", b"active segment"))
    produce(broker.bootstrap, topic, records)
    expected_offset = {}
    for offset, (key, value) in enumerate(records):
        expected_offset[key] = (offset, value)

    # A read that overlaps a cleaning pass can start in the old segments and
    # end in the cleaned ones; compare only a read that the next one repeats.
    previous = []

    def compacted():
        got = read_all(broker.bootstrap, topic)
        stable = got if len(got) < len(records) // 2 and previous and got == previous[-1] else None
        previous.append(got)
        return stable

    got = wait_until(compacted)
    assert got, "the cleaner compacted the topic"
    offsets = [o for o, _, _ in got]
    assert offsets == sorted(set(offsets)), "offsets strictly increase"
    by_key = {}
    for offset, key, value in got:
        by_key[key] = (offset, value)
    for key in [b"k0", b"k1", b"k2", b"k3", b"tail"]:
        assert by_key[key] == expected_offset[key], f"{key}: its latest value, at its original offset"
    # Compaction removes only older records of a key: what is read of each key's
    # history is a suffix of it (the active segment is never cleaned).
    for key in {k for k, _ in records}:
        history = [v for k, v in records if k == key]
        seen = [v for _, k, v in got if k == key]
        assert seen == history[len(history) - len(seen):], f"{key}: {len(seen)} records read are its latest ones"
    assert len([1 for _, k, _ in got if k == b"k0"]) < 20, "superseded values of k0 are gone"


def test_keyless_record_is_refused_on_a_compacted_topic(make_broker):
    broker = make_broker(CLEANER)
    topic = "cmpk-" + uuid.uuid4().hex[:6]
    create_compacted(broker.bootstrap, topic)
    errors = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0, "retries": 0})
    producer.produce(topic, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    producer.flush(10)
    assert errors and errors[0] is not None
    assert errors[0].code() == KafkaError.INVALID_RECORD, errors[0]
    # A keyed record still goes in.
    produce(broker.bootstrap, topic, [(b"k", b"v")])
    assert [(k, v) for _, k, v in read_all(broker.bootstrap, topic)] == [(b"k", b"v")]


def test_compacted_log_survives_kill_during_cleaning(make_broker):
    broker = make_broker(CLEANER)
    topic = "cmpx-" + uuid.uuid4().hex[:6]
    create_compacted(broker.bootstrap, topic)
    latest = {}
    for attempt in range(3):
        records = [(b"k%d" % (i % 7), b"a%d-%d" % (attempt, i) + b"." * 60) for i in range(120)]
        produce(broker.bootstrap, topic, records)
        for key, value in records:
            latest[key] = value
        time.sleep(0.2 * attempt)  # the cleaner is somewhere in its pass
        broker.kill9()
        broker.start()
        got = {k: v for _, k, v in read_all(broker.bootstrap, topic)}
        assert got == latest, f"attempt {attempt}: every key's latest value after kill -9"


def test_compaction_removes_aborted_transactions_and_keeps_committed_ones(make_broker):
    """A compacted topic written by a transactional producer: the cleaner drops
    the records of aborted transactions (even a read_uncommitted consumer no
    longer sees them) and keeps the latest committed value of every key; an
    open transaction's records (above the last stable offset) are left alone."""
    broker = make_broker(CLEANER)
    topic = "cmp-txn-" + uuid.uuid4().hex[:6]
    create_compacted(broker.bootstrap, topic, **{"delete.retention.ms": "0"})
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "cmp-" + uuid.uuid4().hex[:6], "linger.ms": 0})
    producer.init_transactions(30)
    latest = {}
    for round_ in range(6):
        producer.begin_transaction()
        for k in range(4):
            producer.produce(topic, key=b"k%d" % k, value=b"aborted-%d" % round_ + b"." * 60)
        producer.abort_transaction(30)
        producer.begin_transaction()
        for k in range(4):
            value = b"committed-%d" % round_ + b"." * 60
            producer.produce(topic, key=b"k%d" % k, value=value)
            latest[b"k%d" % k] = value
        producer.commit_transaction(30)
    # An open transaction at the end: below the LSO only.
    producer.begin_transaction()
    producer.produce(topic, key=b"k0", value=b"open")
    producer.flush(10)

    # read_uncommitted sees every record in the log, aborted ones too, until the cleaner drops them.
    before = read_all(broker.bootstrap, topic, "read_uncommitted")
    assert before[-1][2] == b"open"

    def cleaned():
        got = read_all(broker.bootstrap, topic, "read_uncommitted")
        return got if got and not any(v.startswith(b"aborted") for _, _, v in got) else None

    got = wait_until(cleaned)
    assert got, f"aborted records still in the log: {[v[:12] for _, _, v in read_all(broker.bootstrap, topic, 'read_uncommitted')]}"
    by_key = {}
    for _, key, value in got:
        by_key[key] = value
    assert by_key == {**latest, b"k0": b"open"}, "the latest committed values (and the open transaction's record) remain"
    producer.commit_transaction(30)
    # read_committed: the latest committed value of every key, now k0=open.
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "cmp-rc-" + uuid.uuid4().hex[:6],
                  "isolation.level": "read_committed", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    seen = {}
    deadline = time.time() + 20
    while time.time() < deadline and seen.get(b"k0") != b"open":
        msg = c.poll(0.5)
        if msg is not None and not msg.error():
            assert not msg.value().startswith(b"aborted"), msg.value()
            seen[msg.key()] = msg.value()
    c.close()
    assert seen == {**latest, b"k0": b"open"}
