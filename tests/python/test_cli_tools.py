"""The runnel CLI against a real broker: codecs, group consumption, errors,
binary data and parity with Kafka's own tools (issue 9)."""
import base64
import json
import signal
import subprocess
import threading
import time
import uuid

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from runnel_broker import RUNNEL


def cli(broker, *args, stdin=None, check=True, timeout=60):
    proc = subprocess.run([RUNNEL, "--brokers", broker.bootstrap, *args], input=stdin, capture_output=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr).decode(errors="replace")
    return proc


def new_name(prefix="cli"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def read_all(broker, topic, count, timeout=20):
    """Every record of `topic` through confluent-kafka, as (key, value) pairs."""
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": new_name("g"), "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    try:
        while len(got) < count and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            got.append((m.key(), m.value()))
    finally:
        consumer.close()
    return got


def committed(broker, group, topic, partitions=(0,)):
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        return [tp.offset for tp in consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)]
    finally:
        consumer.close()


# --- codecs -------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_every_codec_both_ways_with_confluent_kafka(broker, codec):
    topic = new_name()
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, "--compression", codec, stdin=b"".join(b"cli %d\n" % i for i in range(20)))
    assert [v for _, v in read_all(broker, topic, 20)] == [b"cli %d" % i for i in range(20)]
    producer = Producer({"bootstrap.servers": broker.bootstrap, "compression.type": codec, "linger.ms": 20})
    for i in range(20):
        producer.produce(topic, value=b"ck %d" % i)
    assert producer.flush(20) == 0
    out = cli(broker, "consume", topic, "--partition", "0", "--offset", "20", "-n", "20", "--timeout-ms", "15000").stdout.decode()
    assert out.splitlines() == [f"ck {i}" for i in range(20)]


# --- consuming as a group -----------------------------------------------------


class LineReader:
    """Collects a process's stdout lines in a thread, so a test can wait for them."""

    def __init__(self, proc):
        self.lines = []
        self.thread = threading.Thread(target=self._run, args=(proc,), daemon=True)
        self.thread.start()

    def _run(self, proc):
        for line in proc.stdout:
            self.lines.append(line)

    def wait_for(self, count, timeout=30):
        deadline = time.time() + timeout
        while len(self.lines) < count and time.time() < deadline:
            time.sleep(0.05)
        return len(self.lines) >= count


def test_ctrl_c_exits_0_and_keeps_the_commits(broker):
    topic, group = new_name(), new_name("g")
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, stdin=b"a\nb\nc\n")
    proc = subprocess.Popen(
        [RUNNEL, "--brokers", broker.bootstrap, "consume", topic, "--group", group, "--from-beginning"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        reader = LineReader(proc)
        assert reader.wait_for(3), "the consumer printed the 3 records"
        time.sleep(6)  # auto-commit (5 s) has committed them already: the final commit has nothing new
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(30)
        stderr = proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 0, stderr
    assert committed(broker, group, topic) == [3]


def test_timeout_counts_from_the_assignment_not_the_join(make_broker):
    # A long initial rebalance delay (Kafka's default is 3 s): joining the group alone takes 4 s.
    broker = make_broker({"group.initial.rebalance.delay.ms": "4000"})
    topic, group = new_name(), new_name("g")
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, stdin=b"x\ny\n")
    started = time.time()
    out = cli(broker, "consume", topic, "--group", group, "--from-beginning", "--timeout-ms", "2500").stdout.decode()
    assert out.splitlines() == ["x", "y"], f"nothing printed after {time.time() - started:.1f}s"


def test_a_later_run_sees_records_produced_into_partitions_that_were_empty(broker):
    topic, group = new_name(), new_name("g")
    cli(broker, "topic", "create", topic, "--partitions", "2")
    first = cli(broker, "consume", topic, "--group", group, "--timeout-ms", "1000").stdout
    assert first == b""
    assert committed(broker, group, topic, (0, 1)) == [0, 0], "the start positions were committed"
    cli(broker, "produce", topic, stdin=b"".join(b"r%d\n" % i for i in range(6)))
    later = cli(broker, "consume", topic, "--group", group, "-n", "6", "--timeout-ms", "10000").stdout.decode()
    assert sorted(later.splitlines()) == [f"r{i}" for i in range(6)]


# --- errors -------------------------------------------------------------------


def test_producing_to_a_missing_topic_fails_at_once(make_broker):
    broker = make_broker({"auto.create.topics.enable": "false"})
    started = time.time()
    proc = cli(broker, "produce", "nope", stdin=b"lost?\n", check=False)
    assert proc.returncode != 0
    assert b'topic "nope" does not exist' in proc.stderr, proc.stderr
    assert time.time() - started < 10


def test_the_brokers_error_message_is_printed(broker):
    suffix = uuid.uuid4().hex[:6]
    cli(broker, "topic", "create", f"a.b{suffix}")
    proc = cli(broker, "topic", "create", f"a_b{suffix}", check=False)
    assert proc.returncode != 0
    assert f"Topic 'a_b{suffix}' collides with existing topic: a.b{suffix}".encode() in proc.stderr, proc.stderr


def test_alter_config_reports_refusals_and_changes_only_what_it_names(broker):
    topic = new_name()
    cli(broker, "topic", "create", topic, "--config", "retention.ms=86400000")
    refused = cli(broker, "topic", "alter-config", topic, "--set", "retention.ms=-5", check=False)
    assert refused.returncode != 0
    assert b"InvalidConfig" in refused.stderr and b"retention.ms" in refused.stderr, refused.stderr
    assert "retention.ms=86400000\t(set on topic)" in cli(broker, "topic", "describe", topic).stdout.decode()
    # Incremental: setting one config keeps the other overrides.
    cli(broker, "topic", "alter-config", topic, "--config", "segment.ms=3600000")
    described = cli(broker, "topic", "describe", topic).stdout.decode()
    assert "retention.ms=86400000\t(set on topic)" in described
    assert "segment.ms=3600000\t(set on topic)" in described
    cli(broker, "topic", "alter-config", topic, "--delete", "retention.ms", "--append", "cleanup.policy=compact")
    described = cli(broker, "topic", "describe", topic).stdout.decode()
    assert "retention.ms=604800000\n" in described, described
    assert "cleanup.policy=delete,compact\t(set on topic)" in described
    cli(broker, "topic", "alter-config", topic, "--subtract", "cleanup.policy=delete")
    assert "cleanup.policy=compact\t(set on topic)" in cli(broker, "topic", "describe", topic).stdout.decode()
    missing = cli(broker, "topic", "alter-config", new_name("missing"), "--config", "retention.ms=1", check=False)
    assert missing.returncode != 0 and b"does not exist" in missing.stderr


def test_admin_commands_fail_on_per_resource_errors(broker):
    missing = new_name("missing")
    for args in (
        ["topic", "delete", missing],
        ["topic", "alter", missing, "--partitions", "3"],
        ["topic", "delete-records", missing, "--partition", "0", "--before", "1"],
        ["group", "delete", new_name("nogroup")],
    ):
        proc = cli(broker, *args, check=False)
        assert proc.returncode != 0, args
        assert proc.stderr.strip(), args


# --- binary data --------------------------------------------------------------


def test_binary_values_round_trip_exactly(broker):
    topic = new_name()
    cli(broker, "topic", "create", topic, "--partitions", "1")
    every_byte = bytes(range(256))
    records = [(b"k\x00\xff", every_byte), (None, b"line\nbreak"), (b"tombstone", None), (b"", b"")]
    framed = b""
    for key, value in records:
        for field in (key, value):
            framed += (-1).to_bytes(4, "big", signed=True) if field is None else len(field).to_bytes(4, "big") + field
    cli(broker, "produce", topic, "--format", "raw", stdin=framed)
    assert read_all(broker, topic, 4) == records, "confluent-kafka reads the exact bytes"
    raw = cli(broker, "consume", topic, "-o", "earliest", "--format", "raw", "-n", "4", "--timeout-ms", "10000").stdout
    assert raw == framed
    # Non-UTF-8 lines are produced as they are, and text output writes their bytes unchanged.
    cli(broker, "produce", topic, stdin=b"\xff\xfe plain\n\x80\n")
    text = cli(broker, "consume", topic, "-o", "4", "-n", "2", "--timeout-ms", "10000").stdout
    assert text == b"\xff\xfe plain\n\x80\n"
    # hex in, base64 out; NUL-delimited text in.
    cli(broker, "produce", topic, "--format", "hex", "-K", ":", stdin=b"6b31:00ff0a\n")
    cli(broker, "produce", topic, "-z", stdin=b"one\nline\x00two\x00")
    out = cli(broker, "consume", topic, "-o", "6", "-n", "3", "--format", "base64", "--print", "key,value", "--timeout-ms", "10000").stdout
    lines = out.splitlines()
    assert lines[0] == b"azE=\t" + base64.b64encode(b"\x00\xff\n")
    assert [base64.b64decode(v.split(b"\t")[1]) for v in lines[1:]] == [b"one\nline", b"two"]
    js = cli(broker, "consume", topic, "-o", "0", "-n", "1", "--format", "json", "--timeout-ms", "10000").stdout
    record = json.loads(js)
    assert base64.b64decode(record["value_base64"]) == every_byte and "value" not in record


def test_bad_input_is_refused_with_the_record_number(broker):
    topic = new_name()
    cli(broker, "topic", "create", topic)
    proc = cli(broker, "produce", topic, "--format", "hex", stdin=b"00ff\nxyz\n", check=False)
    assert proc.returncode != 0 and b"input record 2" in proc.stderr and b"invalid hex" in proc.stderr
    assert b"produced 1 record" in proc.stderr, "the records before the bad one are delivered"
    out = cli(broker, "consume", topic, "-o", "earliest", "-n", "1", "--format", "hex", "--timeout-ms", "10000").stdout
    assert out == b"00ff\n"
    proc = cli(broker, "produce", topic, "--format", "raw", stdin=b"\x00\x00\x00\x05ab", check=False)
    assert proc.returncode != 0 and b"input ends inside" in proc.stderr


# --- parity with Kafka's tools --------------------------------------------------


def test_topic_create_uses_the_brokers_partition_count_and_alter_adds_partitions(make_broker):
    broker = make_broker({"num.partitions": "3"})
    topic = new_name()
    assert f"created topic {topic} (3 partitions)" in cli(broker, "topic", "create", topic).stdout.decode()
    cli(broker, "topic", "alter", topic, "--partitions", "5")
    assert f"{topic}\t5" in cli(broker, "topic", "list").stdout.decode().splitlines()
    shrink = cli(broker, "topic", "alter", topic, "--partitions", "2", check=False)
    assert shrink.returncode != 0 and b"InvalidPartitions" in shrink.stderr, shrink.stderr


def test_delete_records_moves_the_log_start(broker):
    topic = new_name()
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, stdin=b"".join(b"v%d\n" % i for i in range(10)))
    assert "log start 4" in cli(broker, "topic", "delete-records", topic, "--before", "4").stdout.decode()
    assert "0\t1\t[1]\t[1]\t4\t10" in cli(broker, "topic", "describe", topic).stdout.decode()
    out = cli(broker, "consume", topic, "-o", "earliest", "-n", "1", "--timeout-ms", "10000").stdout.decode()
    assert out == "v4\n"


def test_consume_offsets_and_printed_fields(broker):
    topic = new_name()
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, "-K", "=", "-H", "h=1", stdin=b"".join(b"k%d=v%d\n" % (i, i) for i in range(5)))
    time.sleep(1.1)
    middle = int(time.time() * 1000)
    cli(broker, "produce", topic, stdin=b"late\n")
    tail = cli(broker, "consume", topic, "-o", "-2", "-n", "2", "--timeout-ms", "10000").stdout.decode()
    assert tail.splitlines() == ["v4", "late"]
    at = cli(broker, "consume", topic, "-o", f"@{middle}", "-n", "1", "--timeout-ms", "10000").stdout.decode()
    assert at.splitlines() == ["late"]
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle / 1000)) + ".%03dZ" % (middle % 1000)
    assert cli(broker, "consume", topic, "-o", f"@{iso}", "-n", "1", "--timeout-ms", "10000").stdout.decode() == "late\n"
    fields = cli(broker, "consume", topic, "-o", "1", "-n", "1", "--print", "timestamp,partition,offset,headers,key,value", "--timeout-ms", "10000")
    parts = fields.stdout.decode().rstrip("\n").split("\t")
    assert parts[0].startswith("CreateTime:") and int(parts[0].split(":")[1]) > 0
    assert parts[1:] == ["Partition:0", "Offset:1", "h:1", "k1", "v1"]
    bad = cli(broker, "consume", topic, "-o", "soon", check=False)
    assert bad.returncode != 0 and b"expected earliest, latest" in bad.stderr


def test_reset_offsets_previews_unless_executed_and_takes_iso_dates(broker):
    topic, group = new_name(), new_name("g")
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, stdin=b"a\nb\nc\n")
    time.sleep(1.1)
    middle = time.time()
    cli(broker, "produce", topic, stdin=b"d\ne\n")
    cli(broker, "consume", topic, "--group", group, "--from-beginning", "-n", "5", "--timeout-ms", "15000")
    preview = cli(broker, "group", "reset-offsets", group, "--topic", topic, "--to-earliest")
    assert f"{topic}\t0\t0" in preview.stdout.decode() and b"--execute" in preview.stderr
    assert committed(broker, group, topic) == [5], "a preview changes nothing"
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(middle)) + ".%03d+00:00" % int((middle % 1) * 1000)
    cli(broker, "group", "reset-offsets", group, "--topic", topic, "--to-datetime", iso, "--execute")
    assert committed(broker, group, topic) == [3]
    bad = cli(broker, "group", "reset-offsets", group, "--topic", topic, "--to-datetime", "yesterday", check=False)
    assert bad.returncode != 0 and b"ISO-8601" in bad.stderr


def test_lag_of_all_groups_at_once(broker):
    topic, groups = new_name(), [new_name("g"), new_name("g")]
    cli(broker, "topic", "create", topic, "--partitions", "1")
    cli(broker, "produce", topic, stdin=b"".join(b"%d\n" % i for i in range(6)))
    for group, n in zip(groups, ("2", "5")):
        cli(broker, "consume", topic, "--group", group, "--from-beginning", "-n", n, "--timeout-ms", "15000")
    lines = cli(broker, "group", "lag").stdout.decode().splitlines()
    assert lines[0] == "group\ttopic\tpartition\tcommitted\tend\tlag"
    assert f"{groups[0]}\t{topic}\t0\t2\t6\t4" in lines
    assert f"{groups[1]}\t{topic}\t0\t5\t6\t1" in lines
    # Offsets left behind by a deleted topic (if the broker keeps them) do not make the view fail.
    gone = new_name()
    cli(broker, "topic", "create", gone, "--partitions", "1")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": groups[0]})
    try:
        consumer.commit(offsets=[TopicPartition(gone, 0, 0)], asynchronous=False)
    finally:
        consumer.close()
    cli(broker, "topic", "delete", gone)
    lines = cli(broker, "group", "lag", groups[0]).stdout.decode().splitlines()
    assert f"{groups[0]}\t{topic}\t0\t2\t6\t4" in lines
    for line in (l for l in lines if f"\t{gone}\t" in l):
        assert line == f"{groups[0]}\t{gone}\t0\t0\t-\tunknown: the partition does not exist", line


def test_a_committed_offset_beyond_the_end_is_shown_invalid(broker):
    topic, group = new_name(), new_name("g")
    cli(broker, "topic", "create", topic, "--partitions", "1")
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
    try:
        consumer.commit(offsets=[TopicPartition(topic, 0, 1000)], asynchronous=False)
    finally:
        consumer.close()
    described = cli(broker, "group", "describe", group).stdout.decode()
    row = next(line for line in described.splitlines() if line.startswith(f"{topic}\t0\t"))
    assert row.startswith(f"{topic}\t0\t1000\t0\tinvalid: beyond the end 0"), row
