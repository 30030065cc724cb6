"""Failover time (issue 11's "Measured"): from `kill -9` of a partition's leader
to the first acknowledged acks=all produce on that partition, over N cycles.

A prober process (confluent-kafka, idempotent, acks=all, linger.ms=0, every
other setting librdkafka's default) sends one record every 10 ms to the
measured partition and logs the wall-clock time of each send and
acknowledgement. Each cycle: find the leader, kill -9 it, and take the first
acknowledgement of a record sent after the kill; then restart the node and
wait until every partition is fully replicated again. The cluster is the one
of tests/cluster/harness.py (one network namespace per node when root).

With --victim controller each cycle kills the active controller instead (a
quorum election on top of the partition's), and the prober sends to every
partition each tick; the time is taken on the lowest partition the killed
node led.

    bench/failover.sh --backend kafka --cycles 20
    bench/failover.sh --backend kafka --cycles 20 --set broker.session.timeout.ms=1000 --set broker.heartbeat.interval.ms=200
    bench/failover.sh --backend runnel --cycles 20 --victim controller --set broker.session.timeout.ms=1000 --set broker.heartbeat.interval.ms=200
"""
import argparse
import datetime
import json
import os
import re
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


def probe(bootstrap, topic, partitions, log_path, stop_file, max_seconds, client_settings):
    from confluent_kafka import Producer
    log = open(log_path, "w", buffering=1)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                         "linger.ms": 0, "message.timeout.ms": 120000, **client_settings})
    seq = 0
    start = time.monotonic()

    def acked(seq, partition):
        def callback(err, _msg):
            log.write(f"{'A' if err is None else 'F'} {seq} {time.time():.6f} {partition}\n")
        return callback

    while not os.path.exists(stop_file) and time.monotonic() - start < max_seconds:
        for partition in partitions:
            log.write(f"S {seq} {time.time():.6f} {partition}\n")
            try:
                producer.produce(topic, value=f"probe:{seq}".encode(), partition=partition,
                                 on_delivery=acked(seq, partition))
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
        self.sent, self.acked = {}, {}  # seq -> (wall-clock time, partition)

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
                    if len(parts) != 4:
                        continue
                    kind, seq, when, partition = parts[0], int(parts[1]), float(parts[2]), int(parts[3])
                    if kind == "S":
                        self.sent[seq] = (when, partition)
                    elif kind == "A":
                        self.acked[seq] = (when, partition)
        except FileNotFoundError:
            pass
        return self

    def first_ack_after(self, kill_time, partition):
        self.update()
        after = []
        for seq in range(max(self.sent, default=-1), -1, -1):  # newest first: stop at the kill
            when, sent_to = self.sent.get(seq, (0, None))
            if when <= kill_time:
                break
            if sent_to == partition and seq in self.acked:
                after.append(self.acked[seq][0])
        return min(after) - kill_time if after else None


def controller_and_its_partition(cluster, topic):
    """(active controller, lowest partition it leads), or None while it leads none."""
    controller = cluster.controller()
    led = sorted(p for p, (leader, _replicas, _isr) in cluster.metadata(topic).items() if leader == controller)
    return (controller, led[0]) if led else None


RUNNEL_LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z")


def runnel_milestones(cluster, victim, topic, partition, kill_time, first_ack):
    """Where a Runnel failover's time went, from the nodes' logs: seconds from
    the kill to the controller fencing the victim, and to a surviving node
    taking the partition's leadership (the rest is the client finding it)."""
    fenced = led = None
    fence_line = re.compile(rf"(broker session expired|liveness link closed and no heartbeat followed): fencing it node_id={victim}\b")
    leader_line = re.compile(rf'became leader topic="{re.escape(topic)}" partition={partition} ')
    for node in cluster.nodes.values():
        if node.id == victim:
            continue
        try:
            with open(node.log_path, errors="replace") as f:
                lines = f.readlines()[-20000:]
        except OSError:
            continue
        for line in lines:
            m = RUNNEL_LOG_TIME.match(line)
            if not m:
                continue
            when = datetime.datetime.strptime(m.group(1)[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            if not kill_time < when <= first_ack:
                continue
            if fenced is None and fence_line.search(line):
                fenced = when - kill_time
            if led is None and leader_line.search(line):
                led = when - kill_time
    return fenced, led


def _median_ms(values):
    return round(statistics.median(values) * 1000) if values else None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", default="kafka", choices=sorted(harness.BACKENDS))
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--cycles", type=int, default=20)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--victim", default="leader", choices=["leader", "controller"],
                        help="kill partition 0's leader (default) or the active controller each cycle")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a broker setting for every node (default: Kafka's own failure-detection defaults)")
    parser.add_argument("--client", action="append", default=[], metavar="KEY=VALUE",
                        help="a librdkafka setting for the prober (default: librdkafka's defaults)")
    parser.add_argument("--keep", action="store_true", help="keep the nodes' logs and the prober's log")
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
        probed = range(args.partitions) if args.victim == "controller" else [0]
        client_settings = dict(item.partition("=")[::2] for item in args.client)
        prober = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--probe", cluster.bootstrap, topic,
                                   ",".join(map(str, probed)), probe_log, stop_file, str(3600),
                                   json.dumps(client_settings)],
                                  stdout=subprocess.DEVNULL, stderr=open(os.path.join(cluster.workdir, "probe.err"), "w"),
                                  preexec_fn=harness.die_with_parent)
        probe_log = ProbeLog(probe_log)
        results, controller_kills, measured, milestones = [], [], [], []
        for cycle in range(args.cycles):
            harness.wait_until(lambda: probe_log.update().acked, 60, what="the prober's first acknowledgement")
            time.sleep(1.0)
            if args.victim == "controller":
                leader, partition = harness.wait_until(lambda: controller_and_its_partition(cluster, topic), 60,
                                                       what="an active controller that leads a partition")
                was_controller = True
            else:
                partition = 0
                leader = harness.wait_until(lambda: (lambda l: l if l >= 0 else None)(cluster.leader(topic, 0)), 60,
                                            what="a leader for partition 0")
                # Killing the active controller as well adds a quorum election to the failover.
                try:
                    was_controller = cluster.controller() == leader
                except Exception:
                    was_controller = None
            node = cluster.nodes[leader]
            kill_time = time.time()
            node.kill9()
            elapsed = harness.wait_until(lambda: probe_log.first_ack_after(kill_time, partition), 120, interval=0.05,
                                         what="an acknowledgement after the kill")
            results.append(elapsed)
            controller_kills.append(was_controller)
            measured.append(partition)
            detail = ""
            if args.backend == "runnel":
                fenced, led = runnel_milestones(cluster, leader, topic, partition, kill_time, kill_time + elapsed)
                milestones.append({"fenced_ms": fenced and round(fenced * 1000), "leader_ms": led and round(led * 1000)})
                detail = (f" (fenced at {fenced * 1000:.0f} ms, " if fenced else " (fence not logged, ") + \
                         (f"new leader at {led * 1000:.0f} ms)" if led else "new leader not logged)")
            print(f"cycle {cycle + 1}/{args.cycles}: killed node {leader}"
                  f"{' (also the active controller)' if was_controller else ''}, first ack on partition {partition} after {elapsed * 1000:.0f} ms{detail}",
                  flush=True)
            node.start()
            cluster.wait_healthy(topic, args.partitions, min(3, args.nodes), timeout=240)
        p50 = statistics.median(results)
        row = {
            "label": args.label or f"{args.backend}, session {settings['broker.session.timeout.ms']} ms",
            "backend": args.backend, "victim": args.victim, "client_settings": client_settings, "measured_partitions": measured, "nodes": args.nodes, "cycles": len(results), "settings": settings,
            "p50_ms": round(p50 * 1000), "max_ms": round(max(results) * 1000), "min_ms": round(min(results) * 1000),
            "all_ms": [round(r * 1000) for r in results],
            "controller_killed": controller_kills,
            "milestones": milestones,
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
        if args.keep:
            print(f"logs kept in {cluster.workdir}")
        else:
            cluster.cleanup_files()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--probe":
        bootstrap, topic, partitions, log_path, stop_file, max_seconds, client_settings = sys.argv[2:]
        probe(bootstrap, topic, [int(p) for p in partitions.split(",")], log_path, stop_file, float(max_seconds),
              json.loads(client_settings))
    else:
        main()
