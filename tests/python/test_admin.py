"""Admin APIs with confluent-kafka's AdminClient and kafka-python's KafkaAdminClient."""
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
)


@pytest.fixture
def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def error_code(future):
    with pytest.raises(KafkaException) as info:
        future.result(15)
    return info.value.args[0].code()


def test_create_describe_delete(admin, topic_name):
    fs = admin.create_topics([NewTopic(topic_name, num_partitions=4, replication_factor=1, config={"retention.ms": "3600000", "cleanup.policy": "compact"})])
    fs[topic_name].result(15)
    meta = admin.list_topics(timeout=10)
    assert len(meta.topics[topic_name].partitions) == 4
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["retention.ms"].value == "3600000"
    assert configs["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert configs["cleanup.policy"].value == "compact"
    assert configs["segment.bytes"].value == "1073741824"
    assert configs["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value
    admin.delete_topics([topic_name])[topic_name].result(15)
    assert topic_name not in admin.list_topics(timeout=10).topics


def test_validate_only_does_not_create(admin, topic_name):
    admin.create_topics([NewTopic(topic_name, 2, 1)], validate_only=True)[topic_name].result(15)
    assert topic_name not in admin.list_topics(timeout=10).topics


def test_create_errors(admin, topic_name):
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(15)
    assert error_code(admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name]) == KafkaError.TOPIC_ALREADY_EXISTS
    bad = "bad-" + topic_name
    assert error_code(admin.create_topics([NewTopic(bad, 1, 1, config={"retention.ms": "soon"})])[bad]) == KafkaError.INVALID_CONFIG
    assert error_code(admin.create_topics([NewTopic(bad, 1, 1, config={"no.such.thing": "1"})])[bad]) == KafkaError.INVALID_CONFIG
    assert error_code(admin.create_topics([NewTopic(bad, 1, 3)])[bad]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert error_code(admin.create_topics([NewTopic("bad/name", 1, 1)])["bad/name"]) == KafkaError.TOPIC_EXCEPTION
    assert error_code(admin.delete_topics(["missing-" + topic_name])["missing-" + topic_name]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_alter_and_incremental_alter_configs(admin, topic_name):
    admin.create_topics([NewTopic(topic_name, 1, 1, config={"retention.ms": "1000"})])[topic_name].result(15)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic_name, set_config={"max.message.bytes": "200000"})
    admin.alter_configs([resource])[resource].result(10)
    described = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)])
    configs = list(described.values())[0].result(10)
    assert configs["max.message.bytes"].value == "200000"
    assert configs["retention.ms"].value == "604800000", "AlterConfigs replaces the whole set of overrides"
    inc = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic_name,
        incremental_configs=[
            ConfigEntry("retention.ms", "5000", incremental_operation=AlterConfigOpType.SET),
            ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE),
            ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.APPEND),
        ],
    )
    admin.incremental_alter_configs([inc])[inc].result(10)
    configs = list(admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic_name)]).values())[0].result(10)
    assert configs["retention.ms"].value == "5000"
    assert configs["max.message.bytes"].value == "1048588"
    assert configs["cleanup.policy"].value == "delete,compact"
    bad = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[ConfigEntry("retention.ms", "x", incremental_operation=AlterConfigOpType.SET)])
    assert error_code(admin.incremental_alter_configs([bad])[bad]) == KafkaError.INVALID_CONFIG


def test_broker_configs_are_described(admin):
    resource = ConfigResource(ConfigResource.Type.BROKER, "1")
    configs = admin.describe_configs([resource])[resource].result(10)
    assert configs["num.partitions"].value == "1"
    assert configs["message.max.bytes"].value == "1048588"
    assert configs["group.initial.rebalance.delay.ms"].value == "0"


def test_create_partitions(admin, topic_name):
    admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name].result(15)
    admin.create_partitions([NewPartitions(topic_name, 5)])[topic_name].result(15)
    assert len(admin.list_topics(timeout=10).topics[topic_name].partitions) == 5
    assert error_code(admin.create_partitions([NewPartitions(topic_name, 3)])[topic_name]) == KafkaError.INVALID_PARTITIONS
    p = Producer({"bootstrap.servers": admin_bootstrap(admin)})
    delivered = []
    p.produce(topic_name, value=b"x", partition=4, on_delivery=lambda e, m: delivered.append((e, m.partition())))
    p.flush(10)
    assert delivered == [(None, 4)]


def admin_bootstrap(admin):
    meta = admin.list_topics(timeout=10)
    broker = list(meta.brokers.values())[0]
    return f"{broker.host}:{broker.port}"


def test_describe_cluster(admin, broker):
    cluster = admin.describe_cluster().result(10)
    assert cluster.cluster_id and len(cluster.cluster_id) == 22
    assert [(n.id, n.host, n.port) for n in cluster.nodes] == [(1, "127.0.0.1", broker.port)]
    assert cluster.controller.id == 1


def test_delete_records_moves_low_watermark(admin, broker, topic_name):
    from confluent_kafka import TopicPartition as TP

    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(15)
    p = Producer({"bootstrap.servers": broker.bootstrap})
    for i in range(20):
        p.produce(topic_name, value=f"v{i}".encode())
        p.flush(10)
    result = admin.delete_records([TP(topic_name, 0, 12)])
    list(result.values())[0].result(10)
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "dr"})
    low, high = c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10, cached=False)
    c.close()
    assert (low, high) == (12, 20)


def test_kafka_python_admin(broker, topic_name):
    from kafka.admin import ConfigResource as KConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic as KNewTopic

    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    admin.create_topics([KNewTopic(topic_name, 3, 1, topic_configs={"retention.ms": "86400000"})])
    assert topic_name in admin.list_topics()
    described = admin.describe_configs([KConfigResource(ConfigResourceType.TOPIC, topic_name)])
    text = repr(described)
    assert "86400000" in text
    admin.delete_topics([topic_name])
    assert topic_name not in admin.list_topics()
    admin.close()
