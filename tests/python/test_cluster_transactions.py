"""The transaction coordinator in a three-node cluster (three real `runnel serve`
processes on loopback): a transactional id's coordinator is the leader of its
replicated __transaction_state partition, named alike by every node, and the
other nodes answer NOT_COORDINATOR; a confluent-kafka transactional producer's
state survives kill -9 of its coordinator (the open transaction is aborted, the
old producer fenced, read_committed sees exactly the committed records); markers
reach partitions led by other nodes (WriteTxnMarkers). Every wait is bounded."""
import time

import pytest
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from raw_requests import request, transaction_coordinator
from test_cluster import bootstrap, cluster, wait_for_three_brokers, wait_until  # noqa: F401 (fixture)

NOT_COORDINATOR = 16


def coordinator_of(node, transactional_id):
    """The node id `node` names as the transactional id's coordinator (retrying while
    the topic is being created or has no leader yet)."""
    def ask():
        error, node_id, _ = transaction_coordinator(node.bootstrap, transactional_id)
        return node_id if error == 0 else None
    return wait_until(f"{node.bootstrap} to name a coordinator for {transactional_id}", ask, timeout=30)


def create_topic(admin, name, **kwargs):
    admin.create_topics([NewTopic(name, **kwargs)])[name].result(30)
    wait_until(f"every replica of {name} in its ISR", lambda: (lambda md: name in md.topics and all(
        len(p.isrs) == len(p.replicas) for p in md.topics[name].partitions.values()))(admin.list_topics(name, timeout=5)))


def read_committed(nodes, topic, partitions, expected_count, settle_s=3.0, timeout=60.0):
    consumer = Consumer({"bootstrap.servers": bootstrap(nodes), "group.id": f"rc-{time.time()}",
                         "isolation.level": "read_committed", "enable.auto.commit": False,
                         "auto.offset.reset": "earliest"})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    values = []
    deadline = time.time() + timeout
    quiet_until = None
    try:
        while time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                values.append(msg.value().decode())
            if len(values) >= expected_count:
                # A little longer: anything beyond the expected records is a failure.
                quiet_until = quiet_until or time.time() + settle_s
                if time.time() >= quiet_until:
                    break
    finally:
        consumer.close()
    return values


def transactional_producer(nodes, transactional_id):
    return Producer({"bootstrap.servers": bootstrap(nodes), "transactional.id": transactional_id,
                     "linger.ms": 5, "message.timeout.ms": 60000, "transaction.timeout.ms": 60000})


def test_every_node_names_the_same_transaction_coordinator_and_the_others_refuse(cluster):
    from kafka.protocol.add_partitions_to_txn import AddPartitionsToTxnRequest
    from kafka.protocol.end_txn import EndTxnRequest
    from kafka.protocol.init_producer_id import InitProducerIdRequest_v1
    wait_for_three_brokers(cluster)
    for transactional_id in ("orders-txn", "billing-txn", f"t-{time.time()}"):
        named = {node.bootstrap: coordinator_of(node, transactional_id) for node in cluster}
        assert len(set(named.values())) == 1, f"{transactional_id!r}: nodes name different coordinators: {named}"
    md = AdminClient({"bootstrap.servers": bootstrap(cluster)}).list_topics("__transaction_state", timeout=5)
    state_topic = md.topics["__transaction_state"]
    assert state_topic.error is None, state_topic.error
    assert all(sorted(p.replicas) == [1, 2, 3] for p in state_topic.partitions.values())

    transactional_id = "refused-elsewhere"
    coordinator_id = coordinator_of(cluster[0], transactional_id)
    coordinator = cluster[coordinator_id - 1]
    for node in (n for n in cluster if n is not coordinator):
        init = request(node.bootstrap, InitProducerIdRequest_v1(transactional_id=transactional_id, transaction_timeout_ms=60000))
        assert init.error_code == NOT_COORDINATOR, (node.bootstrap, init)
        add = request(node.bootstrap, AddPartitionsToTxnRequest[0](transactional_id, 1000, 0, [("some-topic", [0])]))
        assert add.results[0][1][0][1] in (NOT_COORDINATOR, 3), (node.bootstrap, add)
        end = request(node.bootstrap, EndTxnRequest[0](transactional_id, 1000, 0, True))
        assert end.error_code == NOT_COORDINATOR, (node.bootstrap, end)
    init = wait_until("the coordinator to issue a producer id", lambda: (lambda r: r if r.error_code == 0 else None)(
        request(coordinator.bootstrap, InitProducerIdRequest_v1(transactional_id=transactional_id, transaction_timeout_ms=60000))))
    assert init.producer_id >= 0 and init.producer_epoch == 0, init


def test_transactions_survive_kill9_of_their_coordinator(cluster):
    """Committed transactions, one left open, kill -9 of the coordinator: a new
    producer with the same transactional.id on the survivors initialises (the open
    transaction is aborted, the old producer fenced) and read_committed consumers
    see exactly the committed records."""
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    topic, transactional_id = "txn-survivor", "survivor-txn"
    # Three partitions with leaders spread over the nodes: one is led by the node killed below.
    create_topic(admin, topic, num_partitions=3, replication_factor=3, config={"min.insync.replicas": "2"})
    first = transactional_producer(cluster, transactional_id)
    first.init_transactions(60)
    committed = []
    for t in range(3):
        first.begin_transaction()
        for i in range(30):
            value = f"committed-{t}-{i}"
            first.produce(topic, value=value.encode(), partition=i % 3)
            committed.append(value)
        first.commit_transaction(60)
    first.begin_transaction()
    for i in range(30):
        first.produce(topic, value=f"open-{i}".encode(), partition=i % 3)
    assert first.flush(30) == 0, "the open transaction's records were not acknowledged"

    coordinator_id = coordinator_of(cluster[0], transactional_id)
    assert all(coordinator_of(n, transactional_id) == coordinator_id for n in cluster)
    cluster[coordinator_id - 1].kill9()
    survivors = [n for n in cluster if n.alive()]
    started = time.time()
    second = transactional_producer(survivors, transactional_id)
    second.init_transactions(90)
    print(f"coordinator {coordinator_id} killed; init_transactions on the survivors after {time.time() - started:.1f} s")
    assert coordinator_of(survivors[0], transactional_id) != coordinator_id

    second.begin_transaction()
    for i in range(30):
        value = f"after-{i}"
        second.produce(topic, value=value.encode(), partition=i % 3)
        committed.append(value)
    second.commit_transaction(60)

    # The old producer is fenced: its open transaction cannot commit any more.
    with pytest.raises(KafkaException):
        first.commit_transaction(30)

    seen = read_committed(survivors, topic, 3, len(committed))
    assert not [v for v in seen if v.startswith("open-")], "records of the aborted transaction were read"
    assert sorted(seen) == sorted(committed), f"{len(seen)} read, {len(committed)} committed"


def test_markers_reach_partitions_led_by_other_nodes(cluster):
    """A transaction whose partitions are all led by nodes other than its
    coordinator: the markers go out as WriteTxnMarkers; read_committed consumers
    of those partitions see the committed transaction and not the aborted one."""
    wait_for_three_brokers(cluster)
    admin = AdminClient({"bootstrap.servers": bootstrap(cluster)})
    transactional_id = "remote-markers-txn"
    coordinator_id = coordinator_of(cluster[0], transactional_id)
    others = [n for n in (1, 2, 3) if n != coordinator_id]
    topic = "led-elsewhere"
    create_topic(admin, topic, num_partitions=2, replica_assignment=[[others[0], coordinator_id, others[1]], [others[1], coordinator_id, others[0]]])
    md = admin.list_topics(topic, timeout=5).topics[topic]
    leaders = {i: p.leader for i, p in md.partitions.items()}
    assert coordinator_id not in leaders.values(), f"coordinator {coordinator_id}, leaders {leaders}"

    producer = transactional_producer(cluster, transactional_id)
    producer.init_transactions(60)
    producer.begin_transaction()
    for i in range(20):
        producer.produce(topic, value=f"aborted-{i}".encode(), partition=i % 2)
    producer.abort_transaction(60)
    producer.begin_transaction()
    committed = [f"committed-{i}" for i in range(20)]
    for i, value in enumerate(committed):
        producer.produce(topic, value=value.encode(), partition=i % 2)
    producer.commit_transaction(60)

    seen = read_committed(cluster, topic, 2, len(committed))
    assert sorted(seen) == sorted(committed), f"read_committed saw {len(seen)} records: {seen[:5]}"
