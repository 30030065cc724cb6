"""Dynamic broker configs (KIP-226) and group configs (KIP-848) through real
clients: confluent-kafka's AdminClient changes them with
IncrementalAlterConfigs (kafka-python's AlterConfigs for the cluster-wide
default, whose empty resource name confluent-kafka refuses), a producer sees
the effect, and a restarted broker still has them."""
import os
import sys

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewTopic, ResourceType)
from kafka.admin import ConfigResource as LegacyConfigResource
from kafka.admin import ConfigResourceType, KafkaAdminClient

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runnel_broker import Broker  # noqa: E402

NODE = "1"
BIG_RECORD = b"x" * 300_000


@pytest.fixture
def broker():
    b = Broker().start()
    yield b
    b.cleanup()


def admin(broker):
    return AdminClient({"bootstrap.servers": broker.bootstrap})


def alter(broker, resource_type, name, key, value, op=AlterConfigOpType.SET):
    resource = ConfigResource(resource_type, name, incremental_configs=[ConfigEntry(key, value, incremental_operation=op)])
    client = admin(broker)  # kept alive until its futures complete
    for future in client.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def set_cluster_default(broker, configs):
    """AlterConfigs on BROKER "": replaces the whole set of cluster-wide dynamic defaults."""
    client = KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=30_000)
    try:
        response = client.alter_configs([LegacyConfigResource(ConfigResourceType.BROKER, "", configs=configs)])
    finally:
        client.close()
    assert [r[0] for r in response.resources] == [0], response


def describe(broker, resource_type, name, key):
    resource = ConfigResource(resource_type, name)
    client = admin(broker)
    configs = client.describe_configs([resource])[resource].result(timeout=30)
    return configs.get(key)


def produce_big(broker, topic):
    """Produces one 300 kB record; returns the delivery error (None when delivered)."""
    outcome = []
    producer = Producer({"bootstrap.servers": broker.bootstrap, "message.max.bytes": 2_000_000, "retries": 0,
                         "message.timeout.ms": 20_000})
    producer.produce(topic, BIG_RECORD, on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(30)
    assert outcome, "no delivery report within 30 s"
    return outcome[0]


def create_topic(broker, topic, config=None):
    client = admin(broker)
    for future in client.create_topics([NewTopic(topic, 1, 1, config=config or {})]).values():
        future.result(timeout=30)


def test_cluster_default_and_per_broker_message_max_bytes_take_effect_and_persist(broker):
    create_topic(broker, "plain")
    assert produce_big(broker, "plain") is None

    set_cluster_default(broker, {"message.max.bytes": "100000"})
    default = describe(broker, ResourceType.BROKER, NODE, "message.max.bytes")
    assert default.value == "100000" and default.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    topic_config = describe(broker, ResourceType.TOPIC, "plain", "max.message.bytes")
    assert topic_config.value == "100000" and topic_config.source == ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG.value
    error = produce_big(broker, "plain")
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error

    broker.restart()
    assert describe(broker, ResourceType.TOPIC, "plain", "max.message.bytes").value == "100000"
    error = produce_big(broker, "plain")
    assert error is not None and error.code() == KafkaError.MSG_SIZE_TOO_LARGE, error

    # The per-broker config wins over the cluster-wide default.
    alter(broker, ResourceType.BROKER, NODE, "message.max.bytes", "2000000")
    node_config = describe(broker, ResourceType.BROKER, NODE, "message.max.bytes")
    assert node_config.value == "2000000" and node_config.source == ConfigSource.DYNAMIC_BROKER_CONFIG.value
    assert produce_big(broker, "plain") is None

    broker.restart()
    assert describe(broker, ResourceType.TOPIC, "plain", "max.message.bytes").value == "2000000"
    alter(broker, ResourceType.BROKER, NODE, "message.max.bytes", None, AlterConfigOpType.DELETE)
    set_cluster_default(broker, {})
    restored = describe(broker, ResourceType.TOPIC, "plain", "max.message.bytes")
    assert restored.value == "1048588" and restored.source == ConfigSource.DEFAULT_CONFIG.value
    assert produce_big(broker, "plain") is None


def test_a_topic_override_still_wins_over_a_dynamic_default(broker):
    create_topic(broker, "kept", {"retention.ms": "60000"})
    create_topic(broker, "follows")
    set_cluster_default(broker, {"log.retention.ms": "3600000"})
    assert describe(broker, ResourceType.TOPIC, "follows", "retention.ms").value == "3600000"
    kept = describe(broker, ResourceType.TOPIC, "kept", "retention.ms")
    assert kept.value == "60000" and kept.source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value


@pytest.mark.parametrize("key,value", [("log.dirs", "/tmp/elsewhere"), ("log.retention.ms", "soon"),
                                       ("log.cleanup.policy", "sometimes"), ("log.retention.hours", "2")])
def test_static_configs_and_bad_values_are_refused_and_change_nothing(broker, key, value):
    with pytest.raises(KafkaException) as refused:
        alter(broker, ResourceType.BROKER, NODE, key, value)
    assert refused.value.args[0].code() == KafkaError.INVALID_REQUEST, refused.value
    current = describe(broker, ResourceType.BROKER, NODE, key)
    assert current is None or current.source in (ConfigSource.DEFAULT_CONFIG.value, ConfigSource.STATIC_BROKER_CONFIG.value), current


def test_group_config_is_validated_described_and_persisted(broker):
    alter(broker, ResourceType.GROUP, "orders", "consumer.session.timeout.ms", "50000")
    assert describe(broker, ResourceType.GROUP, "orders", "consumer.session.timeout.ms").value == "50000"
    assert describe(broker, ResourceType.GROUP, "other", "consumer.session.timeout.ms").value == "45000"
    with pytest.raises(KafkaException) as refused:
        alter(broker, ResourceType.GROUP, "orders", "consumer.session.timeout.ms", "1")
    assert refused.value.args[0].code() == KafkaError.INVALID_CONFIG, refused.value
    broker.restart()
    assert describe(broker, ResourceType.GROUP, "orders", "consumer.session.timeout.ms").value == "50000"
