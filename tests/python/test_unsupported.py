"""Features Runnel does not have yet must fail with a clear error rather than
leave clients retrying a coordinator lookup until their timeouts."""

from confluent_kafka import KafkaError, KafkaException, Producer

from test_java import run_java_program


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
    returncode, out = run_java_program(tmp_path, "TransactionsUnsupported", broker.bootstrap, timeout=90)
    assert returncode == 0 and "PASS" in out, out[-3000:]
