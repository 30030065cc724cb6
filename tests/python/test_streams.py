"""Kafka Streams (4.3.1, from Maven Central: tests/streams/pom.xml) with
processing.guarantee=exactly_once_v2 against Runnel: the talk's "aggregate
streaming data" use case end to end. tests/streams/Aggregate.java counts per
key, sums per key in 10 s windows and counts per re-keyed bucket (a
repartition topic); it — or the broker — is killed with SIGKILL mid-stream
and started again while the input keeps coming. Its last committed output per key must equal
the aggregate computed from the input directly: an at-least-once run would
count the records processed after its last commit twice.

This exercises transactions (InitProducerId fencing of the killed
instance's producers, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit,
EndTxn, read_committed fetches with aborted transactions), compacted
changelogs restored on restart, repartition topics with DeleteRecords, and
the classic group protocol with Streams' own assignor."""
import glob
import os
import random
import shutil
import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STREAMS_LIBS = os.path.join(ROOT, "target", "streams", "libs")
SOURCE = os.path.join(ROOT, "tests", "streams", "Aggregate.java")
KEYS = [f"k{i}" for i in range(8)]
WINDOW_MS = 10_000
PARTITIONS = 3


@pytest.fixture(scope="module")
def streams_classpath(tmp_path_factory):
    """Kafka Streams' jars (installed by scripts/kafka.sh install-streams) and the compiled application."""
    if not glob.glob(os.path.join(STREAMS_LIBS, "kafka-streams-*.jar")):
        proc = subprocess.run([os.path.join(ROOT, "scripts", "kafka.sh"), "install-streams"], capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"Kafka Streams could not be installed from Maven Central:\n{proc.stderr[-2000:]}"
    javac = shutil.which("javac")
    assert javac, "a JDK is required (scripts/test.sh installs one)"
    classes = tmp_path_factory.mktemp("streams-classes")
    libs = os.path.join(STREAMS_LIBS, "*")
    subprocess.run([javac, "-d", str(classes), "-cp", libs, SOURCE], check=True, timeout=180)
    return os.pathsep.join([str(classes), libs])


class StreamsApp:
    """One instance of tests/streams/Aggregate.java in its own JVM; output in `log_path`."""

    def __init__(self, classpath, bootstrap, application_id, input_topic, output_prefix, state_dir, log_path):
        self.args = ["java", "-Xmx256m", "-cp", classpath, "Aggregate", bootstrap, application_id, input_topic, output_prefix, str(state_dir),
                     os.environ.get("STREAMS_TEST_GUARANTEE", "exactly_once_v2")]
        self.log_path = log_path
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def output(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_running(self, timeout=90):
        deadline = time.time() + timeout
        while time.time() < deadline:
            assert self.proc.poll() is None, f"the Streams application exited ({self.proc.returncode}):\n{self.output()[-4000:]}"
            if self.output().count("RUNNING") > self.runs_seen:
                self.runs_seen = self.output().count("RUNNING")
                return
            time.sleep(0.2)
        raise AssertionError(f"the Streams application is not RUNNING after {timeout} s:\n{self.output()[-4000:]}")

    runs_seen = 0

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self.log.close()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc:
            self.log.close()


class Outputs:
    """The last committed value per key of the three outputs, read with read_committed."""

    def __init__(self, bootstrap, output_prefix):
        self.topics = [f"{output_prefix}-counts", f"{output_prefix}-sums", f"{output_prefix}-buckets"]
        self.consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "streams-check-" + uuid.uuid4().hex[:6],
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        })
        self.consumer.assign([TopicPartition(t, p, 0) for t in self.topics for p in range(PARTITIONS)])
        self.latest = {t: {} for t in self.topics}

    def poll(self, seconds):
        deadline = time.time() + seconds
        while time.time() < deadline:
            for msg in self.consumer.consume(500, timeout=0.2):
                assert not msg.error(), msg.error()
                self.latest[msg.topic()][msg.key().decode()] = int(msg.value().decode())

    def close(self):
        self.consumer.close()


def expected_aggregates(records):
    counts, sums, buckets = {}, {}, {}
    for key, value, ts in records:
        counts[key] = counts.get(key, 0) + 1
        window = f"{key}@{ts - ts % WINDOW_MS}"
        sums[window] = sums.get(window, 0) + value
        bucket = str(value % 5)
        buckets[bucket] = buckets.get(bucket, 0) + 1
    return counts, sums, buckets


def produce(bootstrap, topic, records, pace_s=0.0):
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all", "linger.ms": 5})
    failures = []
    for i, (key, value, ts) in enumerate(records):
        producer.produce(topic, key=key, value=str(value), timestamp=ts,
                         on_delivery=lambda err, msg: failures.append(err) if err else None)
        if pace_s and i % 50 == 49:
            producer.poll(0)
            time.sleep(pace_s)
    assert producer.flush(60) == 0, "input records not delivered"
    assert not failures, failures


@pytest.mark.timeout(300)
@pytest.mark.parametrize("victim", ["application", "broker"])
def test_streams_exactly_once_aggregation_survives_kill9(make_broker, streams_classpath, tmp_path, victim):
    broker = make_broker()
    name = "agg-" + uuid.uuid4().hex[:6]
    input_topic, out = f"{name}-in", f"{name}-out"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topics = [input_topic, f"{out}-counts", f"{out}-sums", f"{out}-buckets"]
    for future in admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics]).values():
        future.result(30)

    rng = random.Random(11)
    base = 1_700_000_000_000
    # 6,000 records, 10 ms apart in event time: six windows per key.
    records = [(rng.choice(KEYS), rng.randrange(1000), base + i * 10) for i in range(6000)]
    first, rest = records[:1500], records[1500:]
    produce(broker.bootstrap, input_topic, first)

    app = StreamsApp(streams_classpath, broker.bootstrap, name, input_topic, out, tmp_path / "state", tmp_path / "streams.log")
    outputs = Outputs(broker.bootstrap, out)
    try:
        app.start().wait_running()
        deadline = time.time() + 60
        while not outputs.latest[f"{out}-counts"] and time.time() < deadline:
            outputs.poll(0.5)
        assert outputs.latest[f"{out}-counts"], f"no committed output within 60 s:\n{app.output()[-4000:]}"
        # The rest of the input arrives in three chunks at ~500 records/s; the
        # application (or the broker), busy with the first two, is killed in
        # the middle of each and restarted before the next chunk begins.
        chunks = [rest[:1500], rest[1500:3000], rest[3000:]]
        for chunk in chunks[:2]:
            feeder = threading.Thread(target=produce, args=(broker.bootstrap, input_topic, chunk, 0.1))
            feeder.start()
            time.sleep(1.5)
            assert feeder.is_alive(), "the chunk was sent before the kill: the kill would not land mid-stream"
            if victim == "application":
                app.kill9()
                app.start().wait_running()
            else:
                broker.kill9()
                broker.start()
            feeder.join(120)
            assert not feeder.is_alive()
        produce(broker.bootstrap, input_topic, chunks[2], 0.1)

        counts, sums, buckets = expected_aggregates(records)
        want = {f"{out}-counts": counts, f"{out}-sums": sums, f"{out}-buckets": buckets}
        deadline = time.time() + 120
        while time.time() < deadline:
            outputs.poll(1.0)
            for topic, expected in want.items():
                for key, value in outputs.latest[topic].items():
                    # An aggregate past its true value means a record was counted twice.
                    assert value <= expected.get(key, 0), f"{topic}[{key}] = {value} > {expected.get(key)}: not exactly once"
            if all(outputs.latest[t] == want[t] for t in want):
                break
        for topic, expected in want.items():
            got = outputs.latest[topic]
            wrong = {k: (got.get(k), v) for k, v in expected.items() if got.get(k) != v}
            assert not wrong, f"{topic}: (got, want) per key {dict(list(wrong.items())[:10])}\n{app.output()[-3000:]}"
        assert "UNCAUGHT" not in app.output(), app.output()[-4000:]
    finally:
        outputs.close()
        app.stop()
