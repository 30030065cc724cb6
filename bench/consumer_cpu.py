"""A librdkafka consumer's CPU per record, reading one partition from the
beginning, against Runnel and against Apache Kafka holding the same batches.

The catch-up rows of bench/run.sh time the whole read, so they mix what the
broker sends with how the producer happened to batch (a broker that
acknowledges faster gets smaller batches) and with the consumer's share of
the machine. Here the producer fills every batch to `--batch-bytes` (long
linger), so both brokers store identical batches, and what is measured is the
consumer's CPU time (getrusage), not wall time: kcat (C librdkafka, output to
/dev/null) and confluent-kafka (librdkafka under Python), alternating brokers
each round.
"""
import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPIC = "consumer-cpu"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(bootstrap, limit=30.0):
    deadline = time.time() + limit
    while time.time() < deadline:
        try:
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
            return
        except Exception:
            time.sleep(0.2)
    sys.exit(f"no broker at {bootstrap} after {limit} s")


def produce(bootstrap, records, size, batch_bytes):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(30)
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False,
        "batch.size": batch_bytes, "linger.ms": 2000,
        "queue.buffering.max.messages": max(records, 100000), "queue.buffering.max.kbytes": 2097151,
    })
    value = b"x" * size
    for _ in range(records):
        while True:
            try:
                producer.produce(TOPIC, value, partition=0)
                break
            except BufferError:
                producer.poll(0.01)
    if producer.flush(120) != 0:
        sys.exit(f"{bootstrap}: records left unacknowledged")


def kcat_cpu(bootstrap, records):
    start = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(["kcat", "-b", bootstrap, "-C", "-t", TOPIC, "-o", "beginning", "-c", str(records), "-e", "-q", "-f", "%o\n"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, timeout=300)
    end = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)


def python_cpu(bootstrap, records):
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "consumer-cpu", "enable.auto.commit": False})
    consumer.assign([TopicPartition(TOPIC, 0, 0)])
    received, start = 0, None
    deadline = time.time() + 300
    while received < records and time.time() < deadline:
        got = consumer.consume(10000, 1.0)
        if got and start is None:
            start = resource.getrusage(resource.RUSAGE_SELF)
        received += len(got)
    end = resource.getrusage(resource.RUSAGE_SELF)
    consumer.close()
    if received < records:
        sys.exit(f"{bootstrap}: read {received} of {records} records in 300 s")
    return (end.ru_utime - start.ru_utime) + (end.ru_stime - start.ru_stime)


def stored_batches(partition_dir):
    """(batches, records) in a partition directory's segments (Kafka and Runnel share the format)."""
    import glob
    import struct
    batches = count = 0
    for path in sorted(glob.glob(os.path.join(partition_dir, "*.log"))):
        data = open(path, "rb").read()
        pos = 0
        while pos + 61 <= len(data):
            length = struct.unpack_from(">i", data, pos + 8)[0]
            if length <= 0:
                break
            batches += 1
            count += struct.unpack_from(">i", data, pos + 57)[0]
            pos += 12 + length
    return batches, count


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--size", type=int, default=100, help="record value bytes")
    parser.add_argument("--batch-bytes", type=int, default=200_000, help="the producer's batch.size (every batch filled to it)")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()

    data_dir = os.path.join(ROOT, "target", "bench", "consumer-cpu-runnel")
    subprocess.run(["rm", "-rf", data_dir], check=True)
    port = free_port()
    runnel = subprocess.Popen([os.path.join(ROOT, "target", "release", "runnel"), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kafka_sh = os.path.join(ROOT, "scripts", "kafka.sh")
    try:
        kafka = subprocess.run([kafka_sh, "start", "--name", "consumer-cpu"], capture_output=True, text=True, check=True).stdout.split()[-1]
        brokers = {"runnel": f"127.0.0.1:{port}", "kafka": kafka}
        for bootstrap in brokers.values():
            wait_for(bootstrap)
            produce(bootstrap, args.records, args.size, args.batch_bytes)
        shapes = {
            "runnel": stored_batches(os.path.join(data_dir, f"{TOPIC}-0")),
            "kafka": stored_batches(os.path.join(ROOT, "target", "kafka", "consumer-cpu", "node-1", "data", f"{TOPIC}-0")),
        }
        print(f"stored: runnel {shapes['runnel'][0]} batches / {shapes['runnel'][1]} records, kafka {shapes['kafka'][0]} / {shapes['kafka'][1]}")
        samples = {(client, name): [] for client in ("kcat", "python") for name in brokers}
        for _ in range(args.rounds):
            for name, bootstrap in brokers.items():
                samples[("kcat", name)].append(kcat_cpu(bootstrap, args.records) / args.records * 1e6)
                samples[("python", name)].append(python_cpu(bootstrap, args.records) / args.records * 1e6)
        print(f"{'client':<8} {'broker':<7} {'median us/record':>17} {'min':>6} {'max':>6}")
        for (client, name), values in samples.items():
            print(f"{client:<8} {name:<7} {statistics.median(values):>17.3f} {min(values):>6.3f} {max(values):>6.3f}")
        for client in ("kcat", "python"):
            ratio = statistics.median(samples[(client, "runnel")]) / statistics.median(samples[(client, "kafka")])
            print(f"{client}: Runnel/Kafka CPU per record {ratio:.2f} (below 1: the consumer works less against Runnel)")
    finally:
        runnel.terminate()
        runnel.wait(30)
        subprocess.run([kafka_sh, "stop", "--name", "consumer-cpu"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


if __name__ == "__main__":
    main()
