"""SASL/SCRAM-SHA-256 and SCRAM-SHA-512 (issue 13), with real clients over TCP
on loopback: credentials created with AlterUserScramCredentials (confluent-kafka's
AdminClient) are kept in the cluster metadata, authenticate on SASL_PLAINTEXT
and SASL_SSL, are described without secrets, can be deleted, survive a restart;
failures get Kafka's SASL_AUTHENTICATION_FAILED message and leave other clients
alone; no password reaches the broker log.

Every broker here listens on 127.0.0.1 only.
"""
import os
import sys
import time
import uuid

from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import (AdminClient, NewTopic, ScramCredentialInfo, ScramMechanism,
                                   UserScramCredentialDeletion, UserScramCredentialUpsertion)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runnel_broker import free_port  # noqa: E402
from test_cluster_admin import kafka_tools  # noqa: E402,F401
from test_security import make_listeners_broker, pki, produce_and_consume, tls_settings  # noqa: E402,F401

SCRAM_LISTENERS = {
    "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
    "listener.name.sasl_ssl.sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
    "connection.failed.authentication.delay.ms": "300",
}


def scram_conf(port, mechanism, user, password, pki=None):
    conf = {"bootstrap.servers": f"127.0.0.1:{port}", "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password, "security.protocol": "SASL_PLAINTEXT"}
    if pki:
        conf.update({"security.protocol": "SASL_SSL", "ssl.ca.location": pki["ca"]})
    return conf


def upsert(admin, user, mechanism, iterations, password):
    info = ScramCredentialInfo(mechanism, iterations)
    futures = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, info, password.encode())])
    futures[user].result(30)


def authentication_error(conf, topic):
    """Produces through `conf`; returns the client's authentication error (or None)."""
    errors = []
    bad = Producer(dict(conf, **{"error_cb": errors.append, "message.timeout.ms": 4000}))
    bad.produce(topic, b"never")
    bad.flush(8)
    auth = [e for e in errors if e.code() == KafkaError._AUTHENTICATION]
    return auth[0] if auth else None


def test_scram_credentials_from_the_admin_api_authenticate_and_survive_a_restart(make_listeners_broker, pki):
    p1, p2, p3 = free_port(), free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2), ("SASL_SSL", p3)],
                                   dict(SCRAM_LISTENERS, **tls_settings(pki)))
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p1}"})
    upsert(admin, "alice", ScramMechanism.SCRAM_SHA_512, 8192, "alice-secret")
    upsert(admin, "bob", ScramMechanism.SCRAM_SHA_256, 4096, "bob-secret")
    upsert(admin, "bob", ScramMechanism.SCRAM_SHA_512, 10000, "bob-secret-512")

    # Kafka's checks reach the client: too few iterations.
    bad = admin.alter_user_scram_credentials([UserScramCredentialUpsertion(
        "carol", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), b"carol-secret")])
    try:
        bad["carol"].result(30)
        raise AssertionError("4096 iterations at least")
    except Exception as e:  # KafkaException with UNACCEPTABLE_CREDENTIAL
        assert "iterations" in str(e), e

    topic = "scram-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    alice = scram_conf(p2, "SCRAM-SHA-512", "alice", "alice-secret")
    produce_and_consume(alice, topic)
    assert "principal=User:alice" in broker.log()
    produce_and_consume(scram_conf(p3, "SCRAM-SHA-256", "bob", "bob-secret", pki), topic + "-ssl")
    produce_and_consume(scram_conf(p3, "SCRAM-SHA-512", "bob", "bob-secret-512", pki), topic + "-ssl512")

    # Describe: mechanisms and iterations, no secrets.
    described = admin.describe_user_scram_credentials(["alice", "bob"])
    bob = described["bob"].result(30)
    got = sorted((str(i.mechanism), i.iterations) for i in bob.scram_credential_infos)
    assert got == [("ScramMechanism.SCRAM_SHA_256", 4096), ("ScramMechanism.SCRAM_SHA_512", 10000)], got
    assert [i.iterations for i in described["alice"].result(30).scram_credential_infos] == [8192]
    unknown = admin.describe_user_scram_credentials(["nobody"])["nobody"]
    try:
        unknown.result(30)
        raise AssertionError("describing an unknown user fails")
    except Exception as e:
        assert "does not exist" in str(e), e

    # Failures while an authenticated client keeps producing.
    steady = Producer(dict(alice, acks="all"))
    expected = "invalid credentials with SASL mechanism SCRAM-SHA-512"
    for user, password in (("alice", "wrong-password"), ("mallory", "alice-secret"), ("bob", "bob-secret")):
        started = time.time()
        error = authentication_error(scram_conf(p2, "SCRAM-SHA-512", user, password), topic)
        assert error is not None and expected in error.str(), (user, error)
        assert time.time() - started >= 0.3, "connection.failed.authentication.delay.ms delays the answer"
        steady.produce(topic, b"steady")
        assert steady.flush(30) == 0

    # A deleted credential no longer authenticates; the other mechanism's still does.
    admin.alter_user_scram_credentials([UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)])["bob"].result(30)
    error = authentication_error(scram_conf(p2, "SCRAM-SHA-256", "bob", "bob-secret"), topic)
    assert error is not None and "SCRAM-SHA-256" in error.str(), error
    missing = admin.alter_user_scram_credentials([UserScramCredentialDeletion("bob", ScramMechanism.SCRAM_SHA_256)])["bob"]
    try:
        missing.result(30)
        raise AssertionError("deleting a deleted credential fails")
    except Exception as e:
        assert "does not exist" in str(e), e

    # The credentials are in the cluster metadata: a restart keeps them.
    broker.restart()
    produce_and_consume(alice, topic + "-after")
    produce_and_consume(scram_conf(p2, "SCRAM-SHA-512", "bob", "bob-secret-512"), topic + "-after512")
    error = authentication_error(scram_conf(p2, "SCRAM-SHA-256", "bob", "bob-secret"), topic)
    assert error is not None, "bob's deleted SCRAM-SHA-256 credential stays deleted"

    log = broker.log()
    assert "SASL authentication failed" in log
    for secret in ("alice-secret", "bob-secret", "wrong-password"):
        assert secret not in log, f"{secret} in the broker log"
    # Nor in the metadata log or snapshot: only salted keys are stored.
    for root, _, files in os.walk(broker.data_dir):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert b"alice-secret" not in f.read(), os.path.join(root, name)


def test_scram_with_kafka_python(make_listeners_broker):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError as KafkaPythonError

    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], SCRAM_LISTENERS)
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p1}"})
    upsert(admin, "alice", ScramMechanism.SCRAM_SHA_256, 4096, "alice-secret")
    common = dict(bootstrap_servers=f"127.0.0.1:{p2}", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256")
    topic = "kp-scram-" + uuid.uuid4().hex[:8]
    producer = KafkaProducer(acks="all", sasl_plain_username="alice", sasl_plain_password="alice-secret", **common)
    for i in range(5):
        producer.send(topic, b"v%d" % i)
    producer.flush(30)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", group_id="kp-scram", consumer_timeout_ms=15000,
                             sasl_plain_username="alice", sasl_plain_password="alice-secret", **common)
    got = []
    for message in consumer:
        got.append(message.value)
        if len(got) == 5:
            break
    consumer.close()
    assert got == [b"v%d" % i for i in range(5)]
    try:
        bad = KafkaProducer(sasl_plain_username="alice", sasl_plain_password="nope", max_block_ms=5000, **common)
        bad.send(topic, b"never").get(timeout=5)
        raise AssertionError("a wrong password must not authenticate")
    except KafkaPythonError:
        pass


def test_kafka_configs_tool_manages_scram_users(make_listeners_broker, kafka_tools):
    """Kafka's own kafka-configs (ConfigCommand) creates and deletes a SCRAM
    user through AlterUserScramCredentials (the tool salts and hashes the
    password), and the user it created authenticates."""
    import shutil
    import subprocess

    from test_cluster_admin import KAFKA_LIBS

    def kafka_configs(*args):
        java = shutil.which("java") or "java"
        proc = subprocess.run([java, "-Xmx256m", "-Dlog4j2.configurationFile=" + os.devnull, "-cp", os.path.join(KAFKA_LIBS, "*"),
                               "kafka.admin.ConfigCommand", "--bootstrap-server", f"127.0.0.1:{p1}", *args],
                              capture_output=True, text=True, timeout=90)
        assert proc.returncode == 0, f"kafka-configs {args}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
        return proc.stdout

    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], SCRAM_LISTENERS)
    kafka_configs("--alter", "--add-config", "SCRAM-SHA-512=[iterations=8192,password=alice-secret]",
                  "--entity-type", "users", "--entity-name", "alice")
    # (kafka-configs --describe of users also asks DescribeClientQuotas, which Runnel lacks: described with the admin API.)
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{p1}"})
    infos = admin.describe_user_scram_credentials(["alice"])["alice"].result(30).scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)], infos
    topic = "configs-scram-" + uuid.uuid4().hex[:8]
    produce_and_consume(scram_conf(p2, "SCRAM-SHA-512", "alice", "alice-secret"), topic)
    kafka_configs("--alter", "--delete-config", "SCRAM-SHA-512", "--entity-type", "users", "--entity-name", "alice")
    error = authentication_error(scram_conf(p2, "SCRAM-SHA-512", "alice", "alice-secret"), topic)
    assert error is not None, "the deleted user must not authenticate"
    assert "alice-secret" not in broker.log()


def runnel_cli(bootstrap, *args, stdin=None):
    import subprocess
    from runnel_broker import RUNNEL
    return subprocess.run([RUNNEL, "--brokers", bootstrap, *args], input=stdin, capture_output=True, timeout=60)


def test_runnel_user_scram_sets_lists_and_deletes_credentials(make_listeners_broker):
    p1, p2 = free_port(), free_port()
    broker = make_listeners_broker([("PLAINTEXT", p1), ("SASL_PLAINTEXT", p2)], SCRAM_LISTENERS)
    plain = f"127.0.0.1:{p1}"
    made = runnel_cli(plain, "user", "scram", "set", "dave", "--mechanism", "SCRAM-SHA-256", "--iterations", "4096",
                      "--password-stdin", stdin=b"dave-secret\n")
    assert made.returncode == 0, made.stderr
    made = runnel_cli(plain, "user", "scram", "set", "dave", "--password", "dave-secret-512")
    assert made.returncode == 0, made.stderr
    listed = runnel_cli(plain, "user", "scram", "list")
    assert listed.returncode == 0, listed.stderr
    rows = sorted(line.split("\t") for line in listed.stdout.decode().splitlines()[1:])
    assert rows == [["dave", "SCRAM-SHA-256", "4096"], ["dave", "SCRAM-SHA-512", "8192"]], rows

    topic = "scram-cli-" + uuid.uuid4().hex[:8]
    admin = AdminClient({"bootstrap.servers": plain})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    # The password read from stdin lost its newline: the client's password authenticates.
    produce_and_consume(scram_conf(p2, "SCRAM-SHA-256", "dave", "dave-secret"), topic)
    produce_and_consume(scram_conf(p2, "SCRAM-SHA-512", "dave", "dave-secret-512"), topic + "-512")

    # Kafka's checks come back as errors naming the user.
    weak = runnel_cli(plain, "user", "scram", "set", "erin", "--iterations", "100", "--password", "x")
    assert weak.returncode != 0 and b"erin" in weak.stderr and b"iterations" in weak.stderr.lower(), weak.stderr

    deleted = runnel_cli(plain, "user", "scram", "delete", "dave", "--mechanism", "SCRAM-SHA-256")
    assert deleted.returncode == 0, deleted.stderr
    error = authentication_error(scram_conf(p2, "SCRAM-SHA-256", "dave", "dave-secret"), topic)
    assert error is not None, "a deleted credential no longer authenticates"
    again = runnel_cli(plain, "user", "scram", "delete", "dave", "--mechanism", "SCRAM-SHA-256")
    assert again.returncode != 0 and b"dave" in again.stderr, again.stderr
    listed = runnel_cli(plain, "user", "scram", "list", "dave")
    assert listed.stdout.decode().splitlines()[1:] == ["dave\tSCRAM-SHA-512\t8192"], listed.stdout
    unknown = runnel_cli(plain, "user", "scram", "list", "nobody")
    assert unknown.returncode != 0 and b"nobody" in unknown.stderr, unknown.stderr
    assert "dave-secret" not in broker.log()


def test_runnel_cli_speaks_sasl_ssl_with_scram(make_listeners_broker, pki):
    """README's "Securing Runnel" commands: `runnel produce` and `runnel
    consume` over SASL_SSL with SCRAM-SHA-512 (librdkafka settings through
    -X; the CLI's librdkafka is built with TLS and SCRAM). A wrong password
    fails with an authentication error."""
    p1, p2 = free_port(), free_port()
    make_listeners_broker([("PLAINTEXT", p1), ("SASL_SSL", p2)], dict(tls_settings(pki), **SCRAM_LISTENERS))
    made = runnel_cli(f"127.0.0.1:{p1}", "user", "scram", "set", "alice", "--password-stdin", stdin=b"alice-secret\n")
    assert made.returncode == 0, made.stderr
    topic = "scram-ssl-cli-" + uuid.uuid4().hex[:8]

    def secured(password):
        return ["-X", "security.protocol=SASL_SSL", "-X", f"ssl.ca.location={pki['ca']}", "-X", "sasl.mechanism=SCRAM-SHA-512",
                "-X", "sasl.username=alice", "-X", f"sasl.password={password}"]

    produced = runnel_cli(f"127.0.0.1:{p2}", "produce", topic, *secured("alice-secret"), stdin=b"hello\nworld\n")
    assert produced.returncode == 0, produced.stderr
    consumed = runnel_cli(f"127.0.0.1:{p2}", "consume", topic, "--from-beginning", "-n", "2", "--timeout-ms", "15000",
                          *secured("alice-secret"))
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.decode().split() == ["hello", "world"], consumed.stdout
    refused = runnel_cli(f"127.0.0.1:{p2}", "produce", topic, *secured("wrong"), stdin=b"never\n")
    assert refused.returncode != 0 and b"uthentication" in refused.stderr, refused.stderr
