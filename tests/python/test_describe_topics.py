"""describeTopics from real admin clients: the Java client over DescribeTopicPartitions (KIP-966), confluent-kafka's describe_topics."""
import os
import re
import shutil
import subprocess
import uuid

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from test_java import client_classpath

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "java", "DescribeTopics.java")


def test_java_describe_topics_pages_through_describe_topic_partitions(make_broker, tmp_path, monkeypatch):
    # Request tracing shows which API the client used for describeTopics.
    monkeypatch.setenv("RUNNEL_LOG", "info,runnel_broker::apis=trace")
    broker = make_broker()
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "a JDK is required (scripts/test.sh installs one)"
    classpath = os.pathsep.join(client_classpath())
    subprocess.run([javac, "-d", str(tmp_path), "-cp", classpath, SOURCE], check=True, timeout=120)
    topic = "dtp-" + uuid.uuid4().hex[:6]
    proc = subprocess.run(
        [java, "-cp", os.pathsep.join([str(tmp_path), classpath]), "DescribeTopics", broker.bootstrap, topic, "5", "missing-" + topic],
        capture_output=True,
        timeout=150,
    )
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out[-4000:]
    assert "PASS" in out
    # 5 partitions at 2 per answer: three DescribeTopicPartitions requests, plus one for the missing topic.
    log = re.sub(r"\x1b\[[0-9;]*m", "", broker.log())  # without the log's colours
    used = log.count("api=DescribeTopicPartitions")
    assert used >= 4, f"the Java client sent {used} DescribeTopicPartitions requests:\n{log[-3000:]}"


def test_confluent_describe_topics(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    topic = "dtp-ck-" + uuid.uuid4().hex[:6]
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(timeout=30)
    described = admin.describe_topics(TopicCollection([topic]), request_timeout=30)[topic].result(timeout=30)
    assert described.name == topic
    assert described.topic_id is not None and str(described.topic_id) != "AAAAAAAAAAAAAAAAAAAAAA"
    assert [p.id for p in described.partitions] == [0, 1, 2]
    for p in described.partitions:
        assert p.leader is not None and [r.id for r in p.replicas] == [p.leader.id] and [r.id for r in p.isr] == [p.leader.id]

    missing = admin.describe_topics(TopicCollection(["missing-" + topic]), request_timeout=30)["missing-" + topic]
    try:
        missing.result(timeout=30)
        raise AssertionError("describing a missing topic succeeded")
    except Exception as e:  # KafkaException carrying UNKNOWN_TOPIC_OR_PART
        assert "UNKNOWN_TOPIC" in str(e), e
