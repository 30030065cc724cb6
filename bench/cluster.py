"""Throughput of replication factor 3 against replication factor 1 on a
three-node cluster (issue 11): Runnel and Apache Kafka, in one run.

For each backend: three combined broker+controller nodes from
tests/cluster/harness.py (one network namespace per node when root, else
127.0.0.1 ports), two topics of P partitions -- RF 1, and RF 3 with
min.insync.replicas=2 -- and Kafka's own kafka-producer-perf-test
(org.apache.kafka.tools.ProducerPerformance from scripts/kafka.sh's install)
against each: N records of each size, unthrottled, acks=all, the Java
producer's other defaults. Both backends get the same settings, the harness's.

The run is appended to target/bench/cluster.json (one JSON object a line) and
printed as a Markdown table with the change against the previous run.

    bench/cluster.sh                                   # both backends, 1 KiB and 100 B
    bench/cluster.sh --backends runnel --sizes 1024 --records 50000
"""
import argparse
import json
import os
import re
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))

import harness  # noqa: E402

TOOL_TIMEOUT_S = 240  # one perf-test run; a slower one is a failure, not a result
SUMMARY = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, ([\d.]+) ms max latency, "
    r"(\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def producer_perf(bootstrap, topic, size, records, log4j):
    """kafka-producer-perf-test, acks=all; returns its summary line as a dict."""
    argv = [*harness.KafkaBackend.java("-Xmx512M", log4j), "org.apache.kafka.tools.ProducerPerformance",
            "--bootstrap-server", bootstrap, "--topic", topic, "--num-records", str(records),
            "--record-size", str(size), "--throughput", "-1", "--command-property", "acks=all"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    summaries = SUMMARY.findall(proc.stdout)
    if proc.returncode != 0 or not summaries:
        raise RuntimeError(f"kafka-producer-perf-test on {topic} failed ({proc.returncode}): "
                           f"{proc.stdout[-800:]} {proc.stderr[-1500:]}")
    sent, rate, mb, avg, mx, p50, p95, p99, p999 = summaries[-1]  # the last line is the whole run's
    if int(sent) < records:
        raise RuntimeError(f"kafka-producer-perf-test sent {sent} of {records} records to {topic}")
    return {"records": int(sent), "records_per_s": float(rate), "mb_per_s": float(mb), "avg_ms": float(avg),
            "max_ms": float(mx), "p50_ms": int(p50), "p95_ms": int(p95), "p99_ms": int(p99), "p999_ms": int(p999)}


def run_backend(backend, args, log4j):
    rows = []
    cluster = harness.Cluster(backend, 3)
    try:
        t0 = time.monotonic()
        cluster.start()
        print(f"{backend}: 3 nodes up in {time.monotonic() - t0:.0f}s "
              f"({'network namespaces' if cluster.network.namespaces else 'loopback'})", flush=True)
        for replication in args.replication:
            topic = f"perf-rf{replication}"
            cluster.create_topic(topic, args.partitions, replication, 2 if replication >= 3 else 1)
            # Warm-up (untimed): a JVM broker compiles its hot paths under the first load.
            producer_perf(cluster.bootstrap, topic, max(args.sizes), max(1000, args.records // 10), log4j)
            for size in args.sizes:
                load_before = os.getloadavg()[0]
                result = producer_perf(cluster.bootstrap, topic, size, args.records, log4j)
                row = {"backend": backend, "replication": replication, "size": size, "partitions": args.partitions,
                       **result, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}
                rows.append(row)
                print(f"{backend} RF {replication} {size} B: {row['records_per_s']:.0f} records/s, "
                      f"{row['mb_per_s']:.1f} MB/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms "
                      f"(load {row['load_average'][0]:.1f} -> {row['load_average'][1]:.1f})", flush=True)
    finally:
        cluster.close()
        cluster.cleanup_files()
    return rows


def key(row):
    return (row["backend"], row["replication"], row["size"], row["partitions"])


def previous_run(path):
    try:
        with open(path) as f:
            lines = [line for line in f if line.strip()]
        return json.loads(lines[-1]) if lines else None
    except (OSError, json.JSONDecodeError):
        return None


def table(run, previous):
    before = {key(r): r for r in (previous or {}).get("rows", [])}
    out = ["| backend | RF | size | records/s | MB/s | p50 ms | p99 ms | RF 3 / RF 1 | vs previous | load |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    by_key = {key(r): r for r in run["rows"]}
    for r in run["rows"]:
        rf1 = by_key.get((r["backend"], 1, r["size"], r["partitions"]))
        ratio = f"{r['records_per_s'] / rf1['records_per_s']:.2f}" if rf1 and r["replication"] != 1 else "–"
        old = before.get(key(r))
        change = f"{(r['records_per_s'] / old['records_per_s'] - 1) * 100:+.0f} %" if old else "–"
        out.append(f"| {r['backend']} | {r['replication']} | {r['size']} B | {r['records_per_s']:.0f} | "
                   f"{r['mb_per_s']:.1f} | {r['p50_ms']} | {r['p99_ms']} | {ratio} | {change} | "
                   f"{r['load_average'][0]:.1f}–{r['load_average'][1]:.1f} |")
    return "\n".join(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="runnel,kafka", help="comma-separated: runnel, kafka")
    parser.add_argument("--sizes", default="1024,100", help="record sizes in bytes, comma-separated")
    parser.add_argument("--records", type=int, default=100000, help="records per row")
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--replication", default="1,3", help="replication factors, comma-separated")
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench", "cluster.json"))
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.replication = [int(r) for r in args.replication.split(",")]
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in harness.BACKENDS:
            parser.error(f"unknown backend {b!r} (runnel, kafka)")

    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    log4j = os.path.join(os.path.dirname(args.out), "cluster-tools-log4j2.properties")
    with open(log4j, "w") as f:  # the tool's warnings to stderr, so stdout holds only its results
        f.write("rootLogger.level = WARN\nrootLogger.appenderRef.stderr.ref = STDERR\nappender.stderr.type = Console\n"
                "appender.stderr.name = STDERR\nappender.stderr.target = SYSTEM_ERR\n"
                "appender.stderr.layout.type = PatternLayout\nappender.stderr.layout.pattern = [%d] %p %m (%c)%n\n")
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    rows = []
    for backend in backends:
        rows += run_backend(backend, args, log4j)
    run = {"time": started, "records": args.records, "settings": harness.default_settings(3), "rows": rows}
    previous = previous_run(args.out)
    with open(args.out, "a") as f:
        f.write(json.dumps(run) + "\n")
    print(table(run, previous))
    print(f"(appended to {args.out}; 'vs previous' compares records/s with the run before it)")


if __name__ == "__main__":
    main()
