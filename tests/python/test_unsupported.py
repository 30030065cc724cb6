"""Features Runnel does not have yet must fail with a clear error rather than
leave clients retrying a coordinator lookup until their timeouts."""
import os
import shutil
import subprocess

from confluent_kafka import KafkaError, KafkaException, Producer

from test_java import HERE, client_classpath


def test_transactional_librdkafka_producer_gets_unsupported_version(broker):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "transactional.id": "txn-unsupported"})
    try:
        producer.init_transactions(10)
        raise AssertionError("init_transactions succeeded, but transactions are not implemented")
    except KafkaException as e:
        # Before: FindCoordinator(TRANSACTION) answered COORDINATOR_NOT_AVAILABLE and
        # init_transactions ended in a timeout that did not say why.
        assert e.args[0].code() == KafkaError.UNSUPPORTED_VERSION, e.args[0]


def test_transactional_java_producer_fails_fast(broker, tmp_path):
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "a JDK is required (scripts/test.sh installs one)"
    classpath = os.pathsep.join(client_classpath())
    source = os.path.join(HERE, "..", "java", "TransactionsUnsupported.java")
    subprocess.run([javac, "-d", str(tmp_path), "-cp", classpath, source], check=True, timeout=120)
    proc = subprocess.run(
        [java, "-cp", os.pathsep.join([str(tmp_path), classpath]), "TransactionsUnsupported", broker.bootstrap],
        capture_output=True,
        timeout=90,
    )
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0 and "PASS" in out, out[-3000:]
