"""A consume-transform-produce application for test_transactions.py: each
input value v becomes 'out-v' in the sink, the input offsets committed in the
same transaction. Exits after 4 s without input (or 60 s in all).
Usage: txn_transform_app.py BOOTSTRAP SOURCE SINK GROUP TRANSACTIONAL_ID"""
import sys
import time

from confluent_kafka import Consumer, Producer


def main(bootstrap, source, sink, group, txn_id):
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
        "enable.auto.commit": False, "isolation.level": "read_committed",
        # A restarted instance takes its predecessor's place at once (static membership).
        "group.instance.id": "transform-app", "session.timeout.ms": 6000,
    })
    consumer.subscribe([source])
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": txn_id, "linger.ms": 5})
    producer.init_transactions(30)
    deadline = time.time() + 60
    idle_since = time.time()
    while time.time() < deadline and time.time() - idle_since < 4:
        msgs = [m for m in consumer.consume(20, 0.5) if not m.error()]
        if not msgs:
            continue
        idle_since = time.time()
        producer.begin_transaction()
        for m in msgs:
            producer.produce(sink, key=m.key(), value=b"out-" + m.value())
        producer.send_offsets_to_transaction(consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30)
        producer.commit_transaction(30)
        print("committed", len(msgs), flush=True)
    consumer.close()


if __name__ == "__main__":
    main(*sys.argv[1:6])
