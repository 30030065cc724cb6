"""__consumer_offsets belongs to the group coordinator: clients may read it,
but a Produce or DeleteRecords from a client is refused, as Kafka refuses it."""
import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def test_produce_to_consumer_offsets_is_refused(broker):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "retries": 0, "message.timeout.ms": 10000})
    errors = []
    producer.produce("__consumer_offsets", key=b"k", value=b"not a commit", partition=0,
                     on_delivery=lambda err, msg: errors.append(err))
    producer.flush(15)
    assert len(errors) == 1 and errors[0] is not None, "a client's record was appended to __consumer_offsets"
    assert errors[0].code() == KafkaError.TOPIC_EXCEPTION, errors[0]


def test_delete_records_of_consumer_offsets_is_refused(broker):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin.delete_records([TopicPartition("__consumer_offsets", 0, -1)], request_timeout=10)
    with pytest.raises(Exception) as refused:
        for future in futures.values():
            future.result(15)
    assert "TOPIC_EXCEPTION" in str(refused.value) or "internal topic" in str(refused.value), refused.value
