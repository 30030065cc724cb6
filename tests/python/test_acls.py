"""ACL authorization (issue 13) with Kafka's StandardAuthorizer semantics, with
real clients over TCP on loopback: PLAIN users on SASL_PLAINTEXT, `super.users`
= User:admin; admin manages ACLs with confluent-kafka's AdminClient and with
Kafka's own kafka-acls tool (AclCommand); alice is refused (TOPIC/GROUP
_AUTHORIZATION_FAILED) until ACLs allow her; PREFIXED patterns; DENY wins;
transactional producers need WRITE on their transactional id;
Metadata hides what she may not describe; the ACLs are in the cluster metadata,
so they survive a restart and an ACL created on one node of three is enforced
by another (whose brokers replicate as User:ANONYMOUS, a super user there).

Every broker here listens on 127.0.0.1 only; every wait is bounded.
"""
import os
import sys
import tempfile
import time
import uuid

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient, NewTopic,
                                   ResourcePatternType, ResourceType)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runnel_broker import free_port  # noqa: E402
from test_cluster_admin import cli, kafka_tools  # noqa: E402,F401
from test_security import ListenersBroker, plain_conf  # noqa: E402

STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
        'user_admin="admin-secret" user_alice="alice-secret" user_bob="bob-secret";')


def acl_settings(super_users="User:admin"):
    return {
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": JAAS,
        "authorizer.class.name": STANDARD_AUTHORIZER,
        "super.users": super_users,
        "group.initial.rebalance.delay.ms": "0",
    }


@pytest.fixture(scope="module")
def secured():
    """One broker: PLAINTEXT (User:ANONYMOUS, no ACLs) and SASL_PLAINTEXT (PLAIN users)."""
    p1, p2 = free_port(), free_port()
    broker = ListenersBroker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], acl_settings()).start()
    yield broker, p2
    broker.cleanup()


def users(port):
    return {name: plain_conf(port, name, f"{name}-secret") for name in ("admin", "alice", "bob")}


def topic_acl(topic, principal, operation, permission=AclPermissionType.ALLOW, pattern=ResourcePatternType.LITERAL):
    return AclBinding(ResourceType.TOPIC, topic, pattern, principal, "*", operation, permission)


def group_acl(group, principal, operation=AclOperation.READ):
    return AclBinding(ResourceType.GROUP, group, ResourcePatternType.LITERAL, principal, "*", operation, AclPermissionType.ALLOW)


def create_acls(admin, bindings):
    for future in admin.create_acls(bindings).values():
        future.result(30)


def new_topic(admin, prefix="acl-"):
    topic = prefix + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    return topic


def produce_error(conf, topic, timeout=10):
    """Produces one record; returns its delivery error code (None: delivered)."""
    outcome = []
    producer = Producer(dict(conf, **{"message.timeout.ms": int(timeout * 1000), "acks": "all"}))
    producer.produce(topic, b"v", on_delivery=lambda err, msg: outcome.append(err))
    producer.flush(timeout + 5)
    assert outcome, "no delivery report"
    return outcome[0].code() if outcome[0] is not None else None


def consume_one(conf, topic, group, timeout=20):
    """Reads from the start in `group`: the first record's value, or the first error code."""
    consumer = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    try:
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                return msg.error().code()
            consumer.commit(message=msg, asynchronous=False)
            return msg.value()
        return None
    finally:
        consumer.close()


def test_admin_creates_describes_and_deletes_acls_others_may_not(secured):
    broker, port = secured
    conf = users(port)
    admin = AdminClient(conf["admin"])
    name = "described-" + uuid.uuid4().hex[:6]
    bindings = [
        topic_acl(name, "User:alice", AclOperation.READ),
        topic_acl(name, "User:bob", AclOperation.WRITE, AclPermissionType.DENY),
        topic_acl(name[:-2], "User:alice", AclOperation.DESCRIBE, pattern=ResourcePatternType.PREFIXED),
    ]
    create_acls(admin, bindings)
    everything_on_name = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.ANY, None, None,
                                          AclOperation.ANY, AclPermissionType.ANY)
    described = admin.describe_acls(everything_on_name).result(30)
    assert sorted(described) == sorted(bindings[:2])
    matching = AclBindingFilter(ResourceType.TOPIC, name, ResourcePatternType.MATCH, None, None,
                                AclOperation.ANY, AclPermissionType.ANY)
    assert sorted(admin.describe_acls(matching).result(30)) == sorted(bindings)
    alice_only = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice", None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    assert set(bindings[0::2]) <= set(admin.describe_acls(alice_only).result(30))

    # Invalid bindings are refused by the controller with Kafka's INVALID_REQUEST.
    cluster_misnamed = AclBinding(ResourceType.BROKER, "not-kafka-cluster", ResourcePatternType.LITERAL, "User:alice", "*",
                                  AclOperation.ALTER, AclPermissionType.ALLOW)
    with pytest.raises(Exception) as refused:
        create_acls(admin, [cluster_misnamed])
    assert "INVALID_REQUEST" in str(refused.value) or "kafka-cluster" in str(refused.value)

    # alice is no super user: CLUSTER_AUTHORIZATION_FAILED.
    alice_admin = AdminClient(conf["alice"])
    with pytest.raises(Exception) as denied:
        create_acls(alice_admin, [topic_acl(name, "User:alice", AclOperation.ALL)])
    assert "CLUSTER_AUTHORIZATION_FAILED" in str(denied.value)
    # (librdkafka drops DescribeAcls' top-level error: kafka-python reports it.)
    from kafka import KafkaAdminClient
    from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePatternFilter
    from kafka.admin import ResourceType as KafkaPythonResourceType
    from kafka.errors import ClusterAuthorizationFailedError
    alice_kafka_python = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{port}", security_protocol="SASL_PLAINTEXT",
                                          sasl_mechanism="PLAIN", sasl_plain_username="alice", sasl_plain_password="alice-secret")
    try:
        every_acl = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY, permission_type=ACLPermissionType.ANY,
                              resource_pattern=ResourcePatternFilter(KafkaPythonResourceType.ANY, None, ACLResourcePatternType.ANY))
        with pytest.raises(ClusterAuthorizationFailedError):
            alice_kafka_python.describe_acls(every_acl)
    finally:
        alice_kafka_python.close()

    # On this broker PLAINTEXT clients (User:ANONYMOUS) are no super users: runnel acl is refused.
    refused_cli = cli(broker.bootstrap, "acl", "list", check=False)
    assert refused_cli.returncode != 0 and "ClusterAuthorizationFailed" in refused_cli.stderr, refused_cli.stderr

    deleted = admin.delete_acls([everything_on_name])[everything_on_name].result(30)
    assert sorted(deleted) == sorted(bindings[:2])
    assert admin.describe_acls(everything_on_name).result(30) == []
    assert admin.describe_acls(matching).result(30) == [bindings[2]]


def test_produce_and_consume_need_acls(secured):
    _, port = secured
    conf = users(port)
    admin = AdminClient(conf["admin"])
    topic = new_topic(admin)
    group = "g-" + uuid.uuid4().hex[:8]
    assert produce_error(conf["alice"], topic, timeout=4) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The consumer asks for its group's coordinator first: refused without READ on the group.
    assert consume_one(conf["alice"], topic, group, timeout=10) == KafkaError.GROUP_AUTHORIZATION_FAILED

    create_acls(admin, [topic_acl(topic, "User:alice", AclOperation.WRITE)])
    assert produce_error(conf["alice"], topic) is None
    # READ on the group alone: the topic is still refused.
    create_acls(admin, [group_acl(group, "User:alice")])
    assert consume_one(conf["alice"], topic, group, timeout=10) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    create_acls(admin, [topic_acl(topic, "User:alice", AclOperation.READ)])
    assert consume_one(conf["alice"], topic, group) == b"v"
    # Another group without an ACL is still refused.
    assert consume_one(conf["alice"], topic, group + "-other", timeout=10) == KafkaError.GROUP_AUTHORIZATION_FAILED
    # bob has none of these ACLs.
    assert produce_error(conf["bob"], topic, timeout=4) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_prefixed_acls_and_deny_overrides_allow(secured):
    _, port = secured
    conf = users(port)
    admin = AdminClient(conf["admin"])
    prefix = "pre-" + uuid.uuid4().hex[:6] + "-"
    allowed, denied = new_topic(admin, prefix), new_topic(admin, prefix)
    create_acls(admin, [topic_acl(prefix, "User:bob", AclOperation.WRITE, pattern=ResourcePatternType.PREFIXED)])
    assert produce_error(conf["bob"], allowed) is None
    assert produce_error(conf["bob"], denied) is None
    create_acls(admin, [topic_acl(denied, "User:bob", AclOperation.WRITE, AclPermissionType.DENY)])
    assert produce_error(conf["bob"], denied, timeout=4) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    assert produce_error(conf["bob"], allowed) is None
    # A DENY for every principal (User:*) wins over alice's ALLOW ALL too.
    create_acls(admin, [topic_acl(allowed, "User:alice", AclOperation.ALL),
                        topic_acl(allowed, "User:*", AclOperation.WRITE, AclPermissionType.DENY)])
    assert produce_error(conf["alice"], allowed, timeout=4) == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_transactional_and_idempotent_producers_need_acls(secured):
    _, port = secured
    conf = users(port)
    admin = AdminClient(conf["admin"])
    topic = new_topic(admin, "txn-")
    txn_id = "tx-" + uuid.uuid4().hex[:8]
    create_acls(admin, [topic_acl(topic, "User:bob", AclOperation.WRITE)])
    # WRITE on some topic lets bob's idempotent producer get a producer id.
    assert produce_error(dict(conf["bob"], **{"enable.idempotence": True}), topic) is None
    refused = Producer(dict(conf["bob"], **{"transactional.id": txn_id}))
    with pytest.raises(Exception) as denied:
        refused.init_transactions(15)
    assert "TRANSACTIONAL_ID_AUTHORIZATION_FAILED" in str(denied.value) or "Transactional Id authorization failed" in str(denied.value)
    create_acls(admin, [AclBinding(ResourceType.TRANSACTIONAL_ID, txn_id, ResourcePatternType.LITERAL, "User:bob", "*",
                                   AclOperation.WRITE, AclPermissionType.ALLOW)])
    producer = Producer(dict(conf["bob"], **{"transactional.id": txn_id}))
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, b"in-a-transaction")
    producer.commit_transaction(30)


def test_metadata_hides_topics_the_caller_may_not_describe(secured):
    _, port = secured
    conf = users(port)
    admin = AdminClient(conf["admin"])
    visible, hidden = new_topic(admin, "vis-"), new_topic(admin, "hid-")
    create_acls(admin, [topic_acl(visible, "User:alice", AclOperation.READ)])  # READ implies DESCRIBE
    alice_admin = AdminClient(conf["alice"])
    alice_topics = alice_admin.list_topics(timeout=20).topics
    assert visible in alice_topics
    assert hidden not in alice_topics
    assert hidden in admin.list_topics(timeout=20).topics
    named = alice_admin.list_topics(hidden, timeout=20).topics[hidden]
    assert named.error is not None and named.error.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_a_refused_acks_zero_produce_closes_its_connection(secured):
    """An acks=0 produce has no answer to carry TOPIC_AUTHORIZATION_FAILED:
    as Kafka, the broker closes that connection (logged with the reason) and
    appends nothing; the same client's acks=1 produce is told the error."""
    broker, port = secured
    conf = users(port)
    admin = AdminClient(conf["admin"])
    topic = new_topic(admin)
    create_acls(admin, [topic_acl(topic, "User:alice", AclOperation.DESCRIBE)])
    producer = Producer(dict(conf["alice"], **{"acks": 0, "linger.ms": 0}))
    for i in range(5):
        producer.produce(topic, b"never-%d" % i)
    assert producer.flush(15) == 0
    deadline = time.time() + 15
    while time.time() < deadline and f"acks=0 produce to {topic} refused" not in broker.log():
        time.sleep(0.2)
    assert f"acks=0 produce to {topic} refused (Some(TopicAuthorizationFailed))" in broker.log()
    assert produce_error(conf["alice"], topic) == KafkaError.TOPIC_AUTHORIZATION_FAILED
    consumer = Consumer(dict(conf["admin"], **{"group.id": "g-" + uuid.uuid4().hex[:8]}))
    low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=15)
    consumer.close()
    assert (low, high) == (0, 0), "a refused acks=0 record was appended"


def test_create_topics_answers_configs_only_to_who_may_describe_them(secured):
    """CreateTopics v5+ (KIP-525) answers with the new topic's configs and
    partition count only when the caller may DESCRIBE_CONFIGS it; a caller
    allowed CREATE alone gets the topic created with topic_config_error_code
    TOPIC_AUTHORIZATION_FAILED, no configs and -1 partitions, as Kafka answers."""
    from raw_requests import create_topics_v7

    broker, port = secured
    admin = AdminClient(users(port)["admin"])
    prefix = "cfg-" + uuid.uuid4().hex[:6] + "-"
    create_acls(admin, [topic_acl(prefix, "User:ANONYMOUS", AclOperation.CREATE, pattern=ResourcePatternType.PREFIXED)])
    plaintext = f"127.0.0.1:{broker.port}"
    _, results = create_topics_v7(plaintext, [prefix + "a"], 2)
    hidden = results[prefix + "a"]
    assert hidden["error_code"] == 0 and hidden["topic_config_error_code"] == 29, hidden
    assert hidden["num_partitions"] == -1 and not hidden["configs"], hidden
    assert prefix + "a" in admin.list_topics(timeout=20).topics
    create_acls(admin, [topic_acl(prefix, "User:ANONYMOUS", AclOperation.DESCRIBE_CONFIGS, pattern=ResourcePatternType.PREFIXED)])
    _, results = create_topics_v7(plaintext, [prefix + "b"], 2)
    shown = results[prefix + "b"]
    assert shown["error_code"] == 0 and shown["topic_config_error_code"] == 0, shown
    assert shown["num_partitions"] == 2 and "cleanup.policy" in shown["configs"], shown


def test_kafka_acls_tool_adds_and_lists_acls_and_they_survive_a_restart(secured, kafka_tools):
    broker, port = secured
    conf = users(port)
    topic = "tool-" + uuid.uuid4().hex[:8]
    with tempfile.NamedTemporaryFile("w", suffix=".properties", delete=False) as props:
        props.write("security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                    "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required "
                    'username="admin" password="admin-secret";\n')
    common = ["--bootstrap-server", f"127.0.0.1:{port}", "--command-config", props.name]
    try:
        kafka_tools("AclCommand", *common, "--add", "--allow-principal", "User:alice", "--operation", "Read",
                    "--operation", "Write", "--topic", topic)
        listed = kafka_tools("AclCommand", *common, "--list", "--topic", topic).stdout
        assert "User:alice" in listed and "READ" in listed and "WRITE" in listed, listed

        broker.restart()
        # The ACLs are in the metadata log: alice may still write and describe, not delete.
        admin = AdminClient(conf["admin"])
        admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
        assert produce_error(conf["alice"], topic) is None
        listed = kafka_tools("AclCommand", *common, "--list", "--topic", topic).stdout
        assert "User:alice" in listed, listed
        alice_admin = AdminClient(conf["alice"])
        deleted = alice_admin.delete_topics([topic])[topic]
        with pytest.raises(Exception) as denied:
            deleted.result(30)
        assert "TOPIC_AUTHORIZATION_FAILED" in str(denied.value)
    finally:
        os.unlink(props.name)


def test_an_acl_created_on_one_node_is_enforced_by_another():
    """Three nodes whose brokers talk PLAINTEXT (User:ANONYMOUS, a super user
    here, as a Kafka cluster must allow its inter-broker principal)."""
    voters = ",".join(f"{i + 1}@127.0.0.1:{free_port()}" for i in range(3))
    ports = [(free_port(), free_port()) for _ in range(3)]
    nodes = []
    try:
        for i, (plain, sasl) in enumerate(ports):
            settings = dict(acl_settings("User:admin;User:ANONYMOUS"), **{
                "node.id": str(i + 1), "controller.quorum.voters": voters, "inter.broker.listener.name": "PLAINTEXT",
                "broker.session.timeout.ms": "3000", "broker.heartbeat.interval.ms": "500"})
            nodes.append(ListenersBroker([("PLAINTEXT", plain), ("SASL_PLAINTEXT", sasl)], settings))
        for node in nodes:
            node.start()
        admin_conf = plain_conf(ports[0][1], "admin", "admin-secret")
        alice_conf = plain_conf(ports[2][1], "alice", "alice-secret")
        admin = AdminClient(admin_conf)
        deadline = time.time() + 60
        while len(admin.list_topics(timeout=10).brokers) < 3:
            assert time.time() < deadline, "three brokers"
            time.sleep(0.3)
        topic = "spread-" + uuid.uuid4().hex[:8]
        admin.create_topics([NewTopic(topic, 1, 3)])[topic].result(30)
        assert produce_error(alice_conf, topic, timeout=4) == KafkaError.TOPIC_AUTHORIZATION_FAILED
        # runnel acl speaks PLAINTEXT: User:ANONYMOUS, a super user on this cluster.
        cli(f"127.0.0.1:{ports[0][0]}", "acl", "create", "--allow-principal", "User:alice", "--operation", "write", "--topic", topic)
        listed = cli(f"127.0.0.1:{ports[1][0]}", "acl", "list", "--topic", topic).stdout
        assert f"topic\t{topic}\tliteral\tUser:alice\t*\twrite\tallow" in listed, listed
        # Replicated to node 3 through the metadata log; acks=all needs the replica fetches (ANONYMOUS) to work.
        deadline = time.time() + 30
        while produce_error(alice_conf, topic) is not None:
            assert time.time() < deadline, "alice's WRITE ACL reached node 3"
        alice_admin = AdminClient(alice_conf)
        alice_topics = alice_admin.list_topics(timeout=10).topics
        assert set(alice_topics) == {topic}, "only what alice may describe"
    finally:
        for node in nodes:
            node.cleanup()


def test_a_regex_subscription_gets_only_topics_its_member_may_describe(secured):
    """KIP-848 consumer (librdkafka, group.protocol=consumer) subscribing by
    regex: the coordinator resolves the regex only to the topics its principal
    may DESCRIBE (Kafka 4.0, KAFKA-18813), so alice is assigned her topic and
    not bob's, which matches the same regex; once she is granted READ on it
    her next heartbeats add it."""
    broker, port = secured
    u = users(port)
    admin = AdminClient(u["admin"])
    prefix = "rx" + uuid.uuid4().hex[:6] + "-"
    mine, other = prefix + "alice", prefix + "bob"
    for topic in (mine, other):
        admin.create_topics([NewTopic(topic, 2, 1)])[topic].result(30)
    for topic in (mine, other):
        producer = Producer(dict(u["admin"], acks="all"))
        producer.produce(topic, topic.encode())
        assert producer.flush(30) == 0
    group = "rx-group-" + uuid.uuid4().hex[:6]
    create_acls(admin, [topic_acl(mine, "User:alice", AclOperation.READ), group_acl(group, "User:alice")])

    consumer = Consumer(dict(u["alice"], **{"group.id": group, "group.protocol": "consumer",
                                           "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([f"^{prefix}.*"])
    try:
        def read_until(want, seconds):
            seen = set()
            deadline = time.time() + seconds
            while time.time() < deadline and not want <= seen:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    seen.add(msg.topic())
            return seen

        assert read_until({mine}, 30) == {mine}
        # Some seconds more: bob's topic, matched by the regex, is never assigned.
        assert other not in read_until({other}, 4)
        assert {tp.topic for tp in consumer.assignment()} == {mine}

        create_acls(admin, [topic_acl(other, "User:alice", AclOperation.READ)])
        assert other in read_until({other}, 30), "her heartbeats after the grant add bob's topic"
        assert {tp.topic for tp in consumer.assignment()} == {mine, other}

        # ConsumerGroupDescribe (librdkafka's describe for KIP-848 groups): bob may describe the
        # group but not alice's topics in its assignments, so the group is an error to him.
        create_acls(admin, [group_acl(group, "User:bob", AclOperation.DESCRIBE)])
        bob = AdminClient(u["bob"])  # kept in a variable: a dropped client ends its requests
        with pytest.raises(KafkaException) as denied:
            bob.describe_consumer_groups([group])[group].result(15)
        assert denied.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED, denied.value
        described = admin.describe_consumer_groups([group])[group].result(15)
        assert {tp.topic for m in described.members for tp in m.assignment.topic_partitions} == {mine, other}
    finally:
        consumer.close()
