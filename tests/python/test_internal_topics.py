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


def test_a_local_consumer_offsets_of_an_earlier_release_keeps_its_commits(make_broker, tmp_path):
    """Releases before the replicated __consumer_offsets kept it out of the cluster
    metadata. Such a data directory (here: its cluster metadata log and migration
    marks removed, as a release before the metadata quorum left it) imports its
    1-partition topic (their default) with its id on start, so the commits stay,
    even though the broker now asks for Kafka's 50 partitions; it then lists as a
    topic of the cluster."""
    import json
    import os
    import shutil

    from confluent_kafka import Consumer
    from confluent_kafka.admin import NewTopic

    data_dir = str(tmp_path / "data")
    broker = make_broker({"offsets.topic.num.partitions": "1"}, data_dir=data_dir)
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic("upgraded-topic", num_partitions=2, replication_factor=1)])["upgraded-topic"].result(15)
    committed = [TopicPartition("upgraded-topic", 0, 7), TopicPartition("upgraded-topic", 1, 11)]
    groups = ["upgrade-a", "upgrade-b", "upgrade-c"]
    for group in groups:
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        consumer.commit(offsets=committed, asynchronous=False)
        consumer.close()
    topic_id = admin.list_topics("__consumer_offsets", timeout=5).topics["__consumer_offsets"]
    assert len(topic_id.partitions) == 1
    broker.stop()

    shutil.rmtree(os.path.join(data_dir, "__cluster_metadata-0"))
    values_path = os.path.join(data_dir, "meta", "values.json")
    with open(values_path) as f:
        values = json.load(f)
    values = {k: v for k, v in values.items() if not k.startswith("metadata.migrated")}
    with open(values_path, "w") as f:
        json.dump(values, f)

    upgraded = make_broker(data_dir=data_dir)
    for group in groups:
        consumer = Consumer({"bootstrap.servers": upgraded.bootstrap, "group.id": group})
        try:
            found = consumer.committed([TopicPartition("upgraded-topic", 0), TopicPartition("upgraded-topic", 1)], timeout=15)
        finally:
            consumer.close()
        assert [(tp.partition, tp.offset) for tp in found] == [(0, 7), (1, 11)], (group, found)
    offsets_topic = AdminClient({"bootstrap.servers": upgraded.bootstrap}).list_topics("__consumer_offsets", timeout=5)
    assert len(offsets_topic.topics["__consumer_offsets"].partitions) == 1, "the imported topic keeps its partition count"


def test_a_local_transaction_state_of_an_earlier_release_keeps_its_transactional_ids(make_broker, tmp_path):
    """Releases before the replicated __transaction_state kept it out of the cluster
    metadata. Such a data directory (its cluster metadata log and migration marks
    removed) imports the topic with its id and partition count on start, so a
    transactional id keeps its producer id: the next InitProducerId bumps the epoch."""
    import json
    import os
    import shutil
    import time

    from raw_requests import init_producer_id

    def init(bootstrap, transactional_id):
        deadline = time.time() + 30
        while True:
            error, pid, epoch = init_producer_id(bootstrap, transactional_id)
            if error in (14, 15) and time.time() < deadline:
                time.sleep(0.1)
                continue
            assert error == 0, error
            return pid, epoch

    data_dir = str(tmp_path / "data")
    broker = make_broker({"transaction.state.log.num.partitions": "3"}, data_dir=data_dir)
    before = {tid: init(broker.bootstrap, tid) for tid in ("upgrade-txn-a", "upgrade-txn-b")}
    assert all(epoch == 0 for _, epoch in before.values()), before
    broker.stop()

    shutil.rmtree(os.path.join(data_dir, "__cluster_metadata-0"))
    values_path = os.path.join(data_dir, "meta", "values.json")
    with open(values_path) as f:
        values = json.load(f)
    values = {k: v for k, v in values.items() if not k.startswith("metadata.migrated")}
    with open(values_path, "w") as f:
        json.dump(values, f)

    upgraded = make_broker(data_dir=data_dir)
    for tid, (pid, _) in before.items():
        assert init(upgraded.bootstrap, tid) == (pid, 1), f"{tid}: its state was not imported"
    state_topic = AdminClient({"bootstrap.servers": upgraded.bootstrap}).list_topics("__transaction_state", timeout=5)
    assert len(state_topic.topics["__transaction_state"].partitions) == 3, "the imported topic keeps its partition count"
