"""Failover time (issue 11's "Measured"): from `kill -9` of a partition's leader
to the first acknowledged acks=all produce on that partition, over N cycles.

A prober process (confluent-kafka, idempotent, acks=all, linger.ms=0, every
other setting librdkafka's default) sends one record every 10 ms to the
measured partition and logs the wall-clock time of each send and
acknowledgement. Each cycle: find the leader, kill -9 it, and take the first
acknowledgement of a record sent after the kill; then restart the node and
wait until every partition is fully replicated again. The cluster is the one
of tests/cluster/harness.py (one network namespace per node when root).

    bench/failover.sh --backend kafka --cycles 20
    bench/failover.sh --backend kafka --cycles 20 --set broker.session.timeout.ms=1000 --set broker.heartbeat.interval.ms=250
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

import harness  # noqa: E402

KAFKA_DEFAULTS = {"broker.session.timeout.ms": 9000, "broker.heartbeat.interval.ms": 2000,
                  "replica.lag.time.max.ms": 30000}


def probe(bootstrap, topic, partition, log_path, stop_file, max_seconds):
    from confluent_kafka import Producer
    log = open(log_path, "w", buffering=1)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 0, "message.timeout.ms": 120000})
    seq = 0
    start = time.monotonic()

    def acked(seq):
        def callback(err, _msg):
            log.write(f"{'A' if err is None else 'F'} {seq} {time.time():.6f}\n")
        return callback

    while not os.path.exists(stop_file) and time.monotonic() - start < max_seconds:
        log.write(f"S {seq} {time.time():.6f}\n")
        try:
            producer.produce(topic, value=f"probe:{seq}".encode(), partition=partition, on_delivery=acked(seq))
        except BufferError:
            producer.poll(0.1)
            continue
        seq += 1
        deadline = time.monotonic() + 0.01
        while time.monotonic() < deadline:
            producer.poll(max(0.0, deadline - time.monotonic()))
    producer.flush(30)
    log.close()


class ProbeLog:
    """The prober's log, read incrementally (it grows by 200 lines a second)."""

    def __init__(self, path):
        self.path = path
        self.offset = 0
        self.sent, self.acked = {}, {}

    def update(self):
        try:
            with open(self.path) as f:
                f.seek(self.offset)
                while True:
                    line = f.readline()
                    if not line.endswith("\n"):
                        break  # not written completely yet: read it next time
                    self.offset += len(line)
                    parts = line.split()
                    if len(parts) != 3:
                        continue
                    kind, seq, when = parts[0], int(parts[1]), float(parts[2])
                    if kind == "S":
                        self.sent[seq] = when
                    elif kind == "A":
                        self.acked[seq] = when
        except FileNotFoundError:
            pass
        return self

    def first_ack_after(self, kill_time):
        self.update()
        after = []
        for seq in range(max(self.sent, default=-1), -1, -1):  # newest first: stop at the kill
            if self.sent.get(seq, 0) <= kill_time:
                break
            if seq in self.acked:
                after.append(self.acked[seq])
        return min(after) - kill_time if after else None


def _median_ms(values):
    return round(statistics.median(values) * 1000) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="kafka", choices=sorted(harness.BACKENDS))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a broker setting for every node (default: Kafka's own failure-detection defaults)")
    parser.add_argument("--label", default=None, help="name of this row in the result")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "failover.json"))
    args = parser.parse_args()

    settings = dict(KAFKA_DEFAULTS)
    for item in args.set:
        key, _, value = item.partition("=")
        settings[key] = value
    cluster = harness.Cluster(args.backend, args.nodes, settings=settings)
    prober = None
    try:
        t0 = time.monotonic()
        cluster.start()
        topic = "failover"
        cluster.create_topic(topic, args.partitions, min(3, args.nodes), 2 if args.nodes >= 3 else 1)
        print(f"cluster of {args.nodes} {args.backend} nodes up in {time.monotonic() - t0:.0f}s "
              f"({'network namespaces' if cluster.network.namespaces else 'loopback'})", flush=True)
        probe_log = os.path.join(cluster.workdir, "probe.log")
        stop_file = os.path.join(cluster.workdir, "stop-probe")
        prober = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe", cluster.bootstrap, topic,
                                   "0", probe_log, stop_file, str(3600)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  preexec_fn=harness.die_with_parent)
        probe_log = ProbeLog(probe_log)
        results, controller_kills = [], []
        for cycle in range(args.cycles):
            harness.wait_until(lambda: probe_log.update().acked, 60, what="the prober's first acknowledgement")
            time.sleep(1.0)
            leader = harness.wait_until(lambda: (lambda l: l if l >= 0 else None)(cluster.leader(topic, 0)), 60,
                                        what="a leader for partition 0")
            node = cluster.nodes[leader]
            # Killing the active controller as well adds a quorum election to the failover.
            try:
                was_controller = cluster.controller() == leader
            except Exception:
                was_controller = None
            kill_time = time.time()
            node.kill9()
            elapsed = harness.wait_until(lambda: probe_log.first_ack_after(kill_time), 120, interval=0.05,
                                         what="an acknowledgement after the kill")
            results.append(elapsed)
            controller_kills.append(was_controller)
            print(f"cycle {cycle + 1}/{args.cycles}: killed node {leader}"
                  f"{' (also the active controller)' if was_controller else ''}, first ack after {elapsed * 1000:.0f} ms",
                  flush=True)
            node.start()
            cluster.wait_healthy(topic, args.partitions, min(3, args.nodes), timeout=240)
        p50 = statistics.median(results)
        row = {
            "label": args.label or f"{args.backend}, session {settings['broker.session.timeout.ms']} ms",
            "backend": args.backend, "nodes": args.nodes, "cycles": len(results), "settings": settings,
            "p50_ms": round(p50 * 1000), "max_ms": round(max(results) * 1000), "min_ms": round(min(results) * 1000),
            "all_ms": [round(r * 1000) for r in results],
            "controller_killed": controller_kills,
            "p50_ms_leader_only": _median_ms([r for r, c in zip(results, controller_kills) if c is False]),
            "p50_ms_leader_and_controller": _median_ms([r for r, c in zip(results, controller_kills) if c]),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
        with open(args.out, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"| {row['label']} | {row['cycles']} | {row['p50_ms']} | {row['max_ms']} | {row['min_ms']} |")
        print(f"failover: p50 {row['p50_ms']} ms, max {row['max_ms']} ms over {row['cycles']} cycles; p50 when only a "
              f"broker died {row['p50_ms_leader_only']} ms, when the active controller died too "
              f"{row['p50_ms_leader_and_controller']} ms (appended to {args.out})")
    finally:
        if prober is not None:
            open(os.path.join(cluster.workdir, "stop-probe"), "w").close()
            try:
                prober.wait(40)
            except subprocess.TimeoutExpired:
                prober.kill()
        cluster.close()
        cluster.cleanup_files()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        bootstrap, topic, partition, log_path, stop_file, max_seconds = sys.argv[2:]
        probe(bootstrap, topic, int(partition), log_path, stop_file, float(max_seconds))
    else:
        main()
