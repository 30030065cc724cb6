"""Replication over a secured cluster vs a plaintext one (issue 13): three
`runnel serve` nodes on loopback, acks=all produce of --messages records of
--size bytes to a topic with 3 partitions, replication factor 3 and
min.insync.replicas=2, from one librdkafka producer (confluent-kafka).

- plaintext: PLAINTEXT client listener, PLAINTEXT between brokers and in the quorum;
- sasl_ssl: the cluster of tests/python/test_inter_broker_security.py (SASL_SSL
  client listener, PLAIN between brokers over SASL_SSL, mutual TLS in the quorum,
  ACLs on), the client on SASL_SSL too.

So the second row pays TLS three times per record: client to leader and leader
to each follower. Every node and the client share this machine's cores. Each
run is appended to --out (JSON lines) and compared with the run before it.

    .venv/bin/python bench/inter_broker_tls.py [--messages 300000] [--size 100]
"""
import argparse
import json
import os
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

import test_inter_broker_security as secured  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from test_cluster import start_cluster  # noqa: E402
from test_security import make_ca  # noqa: E402


def produce_rate(conf, messages, size):
    """acks=all records/s of one producer, after an untimed warm-up."""
    admin = AdminClient(conf)
    secured.wait_for_three_brokers(admin)
    topic = "bench-" + uuid.uuid4().hex[:6]
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=3,
                                  config={"min.insync.replicas": "2"})])[topic].result(30)
    producer = Producer(dict(conf, **{"acks": "all", "linger.ms": 5, "batch.size": 262144,
                                      "queue.buffering.max.messages": 1000000}))
    value = b"x" * size
    for _ in range(min(messages // 10, 20000)):
        producer.produce(topic, value)
    assert producer.flush(120) == 0, "warm-up not acknowledged"
    start = time.time()
    for _ in range(messages):
        while True:
            try:
                producer.produce(topic, value)
                break
            except BufferError:
                producer.poll(0.01)
    assert producer.flush(300) == 0, "records not acknowledged"
    return messages / (time.time() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=300_000)
    parser.add_argument("--size", type=int, default=100)
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "inter_broker_tls.jsonl"))
    args = parser.parse_args()

    rows = {}
    nodes = start_cluster()
    try:
        rows["plaintext"] = produce_rate({"bootstrap.servers": ",".join(n.bootstrap for n in nodes)}, args.messages, args.size)
    finally:
        for node in nodes:
            node.cleanup()
    directory = tempfile.mkdtemp(prefix="runnel-bench-pki-")
    ca = make_ca(directory, "ca")
    pki = {"ca": ca[0], "nodes": {i: secured.make_broker_keystore(directory, f"runnel-broker-{i}", ca) for i in (1, 2, 3)}}
    with secured.running_cluster(pki, "PLAIN") as nodes:
        rows["sasl_ssl"] = produce_rate(secured.client_conf(nodes, pki), args.messages, args.size)

    previous = None
    if os.path.exists(args.out):
        with open(args.out) as f:
            lines = [line for line in f if line.strip()]
        previous = json.loads(lines[-1]) if lines else None
    run = {"when": time.strftime("%Y-%m-%dT%H:%M:%S"), "messages": args.messages, "size": args.size, "rows": rows}
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "a") as f:
        f.write(json.dumps(run) + "\n")
    print("| cluster | records/s | MB/s | vs previous |")
    print("|---|---:|---:|---:|")
    for name, rate in rows.items():
        before = (previous or {}).get("rows", {}).get(name)
        change = f"{(rate / before - 1) * 100:+.0f} %" if before else "-"
        print(f"| {name} | {rate:,.0f} | {rate * args.size / 1e6:.1f} | {change} |")
    print(f"plaintext / sasl_ssl: {rows['plaintext'] / rows['sasl_ssl']:.2f}x  (appended to {args.out})")


if __name__ == "__main__":
    main()
