"""describeTopics from real admin clients: the Java client over DescribeTopicPartitions (KIP-966), confluent-kafka's describe_topics."""
import re
import uuid

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient, NewTopic

from test_java import run_java_program


def test_java_describe_topics_pages_through_describe_topic_partitions(make_broker, tmp_path, monkeypatch):
    # Request tracing shows which API the client used for describeTopics.
    monkeypatch.setenv("RUNNEL_LOG", "info,runnel_broker::apis=trace")
    broker = make_broker()
    topic = "dtp-" + uuid.uuid4().hex[:6]
    returncode, out = run_java_program(tmp_path, "DescribeTopics", broker.bootstrap, topic, 5, "missing-" + topic)
    assert returncode == 0, out[-4000:]
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
