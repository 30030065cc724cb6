"""Transactions and compaction, measured (issue 12): transactional produce
throughput against non-transactional in one run, and the log cleaner's
throughput and its effect on produce latency.

Against a fresh single Runnel node (target/release/runnel, its defaults;
--with-kafka also a single-node Apache Kafka from scripts/kafka.sh, same
rows). A confluent-kafka producer (acks=all, idempotent, linger.ms=5) writes
--records records of --size bytes over --keys keys to a 6-partition topic:

  plain         no transactions
  txn-100ms     a transaction committed every 100 ms
  txn-1000      a transaction committed every 1,000 records
  compacted     no transactions, cleanup.policy=compact (segment.bytes 1 MiB,
                min.cleanable.dirty.ratio 0.1): the cleaner runs while producing

Each row: records/s, MB/s, send->ack latency p50/p99/p99.9 (ms), and for the
transactional rows the commit latency p50/p99. For Runnel's compacted row,
the cleaner's own throughput from its "log cleaned" log lines (bytes read /
time spent cleaning) and what it removed. Every row is bounded in records
and in time (--time-limit). The run is appended to target/bench/txn.json and
printed as a Markdown table with the change against the previous run.

    bench/txn.sh                          # Runnel
    bench/txn.sh --with-kafka --records 100000
"""
import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUNNEL = os.environ.get("RUNNEL_BIN", os.path.join(ROOT, "target", "release", "runnel"))
RESULTS = os.path.join(ROOT, "target", "bench", "txn.json")
PARTITIONS = 6


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunnelNode:
    name = "runnel"

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="runnel-bench-txn-")
        self.port = free_port()
        self.log_path = os.path.join(self.dir, "broker.log")
        self.bootstrap = f"127.0.0.1:{self.port}"
        log = open(self.log_path, "ab")
        env = dict(os.environ, RUNNEL_LOG="info")
        self.proc = subprocess.Popen([RUNNEL, "serve", "--listen", self.bootstrap, "--data-dir", os.path.join(self.dir, "data"),
                                      "--set", "log.cleaner.backoff.ms=100", "--log-format", "json"],
                                     stdout=log, stderr=log, env=env)
        wait_serving(self.bootstrap, self.proc)

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class KafkaNode:
    name = "kafka"

    def __init__(self):
        out = subprocess.run([os.path.join(ROOT, "scripts", "kafka.sh"), "start", "--name", "bench-txn"],
                             check=True, capture_output=True, text=True, timeout=300)
        self.bootstrap = out.stdout.strip().splitlines()[-1]

    def log(self):
        return ""

    def stop(self):
        subprocess.run([os.path.join(ROOT, "scripts", "kafka.sh"), "stop", "--name", "bench-txn"], timeout=120)


def wait_serving(bootstrap, proc, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"runnel exited with {proc.returncode}")
        try:
            AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=2)
            return
        except KafkaException:
            time.sleep(0.2)
    sys.exit(f"runnel on {bootstrap} did not serve within {timeout} s")


def percentile(values, p):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100.0 * len(values)))]


def create_topic(bootstrap, topic, config):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1, config=config)])[topic].result(30)


def run_row(bootstrap, mode, records, size, keys, time_limit):
    """Produces `records` records (or until `time_limit` s); the row's numbers."""
    topic = f"bench-{mode}-{uuid.uuid4().hex[:6]}"
    config = {}
    if mode == "compacted":
        config = {"cleanup.policy": "compact", "segment.bytes": str(1 << 20), "min.cleanable.dirty.ratio": "0.1"}
    create_topic(bootstrap, topic, config)
    settings = {"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True, "linger.ms": 5,
                "queue.buffering.max.messages": 200000}
    transactional = mode.startswith("txn")
    if transactional:
        settings["transactional.id"] = f"bench-{uuid.uuid4().hex[:8]}"
    producer = Producer(settings)
    if transactional:
        producer.init_transactions(30)
        producer.begin_transaction()
    value = b"x" * size
    latencies, commits, errors = [], [], []

    def delivered(err, msg, sent=None):
        if err:
            errors.append(err)
        else:
            latencies.append(time.perf_counter() - sent)

    started = time.perf_counter()
    last_commit = started
    sent = 0
    in_txn = 0
    while sent < records and time.perf_counter() - started < time_limit:
        now = time.perf_counter()
        try:
            producer.produce(topic, key=b"key-%d" % (sent % keys), value=value,
                             on_delivery=lambda err, msg, t=now: delivered(err, msg, t))
        except BufferError:
            producer.poll(0.01)
            continue
        sent += 1
        in_txn += 1
        producer.poll(0)
        if transactional:
            due = (mode == "txn-100ms" and now - last_commit >= 0.1) or (mode == "txn-1000" and in_txn >= 1000)
            if due:
                t0 = time.perf_counter()
                producer.commit_transaction(60)
                commits.append(time.perf_counter() - t0)
                producer.begin_transaction()
                last_commit, in_txn = time.perf_counter(), 0
    if transactional:
        t0 = time.perf_counter()
        producer.commit_transaction(60)
        commits.append(time.perf_counter() - t0)
    remaining = producer.flush(120)
    elapsed = time.perf_counter() - started
    if remaining or errors:
        sys.exit(f"{mode}: {remaining} records undelivered, {len(errors)} errors (first: {errors[:1]})")
    row = {
        "mode": mode,
        "records": sent,
        "records_per_s": sent / elapsed,
        "mb_per_s": sent * size / elapsed / 1e6,
        "p50_ms": percentile(latencies, 50) * 1e3,
        "p99_ms": percentile(latencies, 99) * 1e3,
        "p999_ms": percentile(latencies, 99.9) * 1e3,
    }
    if commits:
        row.update(commits=len(commits), commit_p50_ms=percentile(commits, 50) * 1e3, commit_p99_ms=percentile(commits, 99) * 1e3)
    return row


def cleaner_totals(log_text):
    """The cleaner's work from Runnel's JSON log lines: passes, bytes read, seconds spent."""
    passes, bytes_read, ms, read, kept = 0, 0, 0, 0, 0
    for line in log_text.splitlines():
        if "log cleaned" not in line:
            continue
        try:
            fields = json.loads(line).get("fields", {})
        except ValueError:
            continue
        passes += 1
        bytes_read += int(fields.get("bytes_read", 0))
        ms += int(fields.get("elapsed_ms", 0))
        read += int(fields.get("records_read", 0))
        kept += int(fields.get("records_kept", 0))
    return {"passes": passes, "bytes_read": bytes_read, "seconds": ms / 1e3, "records_read": read, "records_kept": kept}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--time-limit", type=float, default=60.0, help="seconds per row at most")
    parser.add_argument("--with-kafka", action="store_true")
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    results = []
    for make in [RunnelNode] + ([KafkaNode] if args.with_kafka else []):
        node = make()
        try:
            for mode in ["plain", "txn-100ms", "txn-1000", "compacted"]:
                row = run_row(node.bootstrap, mode, args.records, args.size, args.keys, args.time_limit)
                row["backend"] = node.name
                if mode == "compacted" and node.name == "runnel":
                    time.sleep(3)  # the cleaner catches up with the end of the run
                    row["cleaner"] = cleaner_totals(node.log())
                results.append(row)
                print(f"{node.name:6} {mode:10} {row['records_per_s']:>10.0f} rec/s  p99 {row['p99_ms']:.1f} ms", flush=True)
        finally:
            node.stop()
    run = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_avg_1m": [load_before, os.getloadavg()[0]],
           "records": args.records, "size": args.size, "keys": args.keys, "rows": results}
    previous = None
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            lines = [line for line in f if line.strip()]
            previous = json.loads(lines[-1]) if lines else None
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a") as f:
        f.write(json.dumps(run) + "\n")
    print_table(run, previous)


def print_table(run, previous):
    before = {(r["backend"], r["mode"]): r for r in (previous or {}).get("rows", [])}
    plain = {r["backend"]: r["records_per_s"] for r in run["rows"] if r["mode"] == "plain"}
    print(f"\n{run['when']}, {run['records']} records of {run['size']} B over {run['keys']} keys, "
          f"load average {run['load_avg_1m'][0]:.1f} -> {run['load_avg_1m'][1]:.1f}\n")
    print("| backend | row | records/s | MB/s | vs plain | send→ack p50 / p99 / p99.9 ms | commit p50 / p99 ms | vs previous run |")
    print("|---|---|---|---|---|---|---|---|")
    for r in run["rows"]:
        prev = before.get((r["backend"], r["mode"]))
        change = f"{r['records_per_s'] / prev['records_per_s'] - 1:+.0%}" if prev else "–"
        commit = f"{r['commit_p50_ms']:.1f} / {r['commit_p99_ms']:.1f}" if "commits" in r else "–"
        print(f"| {r['backend']} | {r['mode']} | {r['records_per_s']:,.0f} | {r['mb_per_s']:.1f} | "
              f"{r['records_per_s'] / plain[r['backend']]:.2f} | {r['p50_ms']:.1f} / {r['p99_ms']:.1f} / {r['p999_ms']:.1f} | {commit} | {change} |")
    for r in run["rows"]:
        c = r.get("cleaner")
        if c:
            rate = c["bytes_read"] / c["seconds"] / 1e6 if c["seconds"] else float("nan")
            print(f"\ncleaner ({r['backend']}, compacted row): {c['passes']} passes, {c['bytes_read'] / 1e6:.1f} MB read in "
                  f"{c['seconds']:.2f} s = {rate:.0f} MB/s; records {c['records_read']:,} read, {c['records_kept']:,} kept")


if __name__ == "__main__":
    main()
