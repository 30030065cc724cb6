"""The benchmark scripts' own logic on hand-made input (bench/failover.py,
bench/cluster.py): the numbers in bench/README.md come from these parsers."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "bench"))

import cluster as cluster_bench  # noqa: E402
import failover  # noqa: E402

# The closing line of org.apache.kafka.tools.ProducerPerformance (Kafka 4.3), as printed.
PERF_OUTPUT = """49997 records sent, 9995.4 records/sec (9.76 MB/sec), 1531.2 ms avg latency, 2810.0 ms max latency.
100000 records sent, 12582.1 records/sec (12.29 MB/sec), 1606.52 ms avg latency, 3287.00 ms max latency, 1563 ms 50th, 3014 ms 95th, 3191 ms 99th, 3262 ms 99.9th.
"""


def test_the_perf_tools_summary_line_is_parsed():
    rows = cluster_bench.SUMMARY.findall(PERF_OUTPUT)
    assert len(rows) == 1  # the interim line has no percentiles
    sent, rate, mb, _avg, _max, p50, _p95, p99, _p999 = rows[0]
    assert (sent, rate, mb, p50, p99) == ("100000", "12582.1", "12.29", "1563", "3191")


def test_the_table_compares_with_the_previous_run_and_rf1():
    def row(backend, rf, rate):
        return {"backend": backend, "replication": rf, "size": 1024, "partitions": 3, "records_per_s": rate,
                "mb_per_s": rate / 1000, "p50_ms": 1, "p99_ms": 2, "load_average": [1.0, 2.0]}
    previous = {"rows": [row("runnel", 1, 1000.0)]}
    run = {"rows": [row("runnel", 1, 1500.0), row("runnel", 3, 750.0)]}
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in cluster_bench.table(run, previous).splitlines()]
    ratio, change = cells[0].index("RF 3 / RF 1"), cells[0].index("vs previous")
    assert (cells[2][ratio], cells[2][change]) == ("–", "+50 %")   # RF 1: no ratio; +50 % on the previous run
    assert (cells[3][ratio], cells[3][change]) == ("0.50", "–")   # RF 3: half of RF 1; nothing before it


def test_the_first_ack_after_the_kill_is_taken_on_the_measured_partition(tmp_path):
    log = tmp_path / "probe.log"
    log.write_text("S 0 10.000 0\nA 0 10.005 0\n"   # before the kill
                   "S 1 10.500 0\nS 2 10.500 1\n"  # after it: partition 1 answers first
                   "A 2 10.600 1\nA 1 12.000 0\n"
                   "S 3 10.7")                     # a line not written completely yet: ignored
    probe = failover.ProbeLog(str(log))
    assert abs(probe.first_ack_after(10.1, 0) - 1.9) < 1e-9
    assert abs(probe.first_ack_after(10.1, 1) - 0.5) < 1e-9
    assert probe.first_ack_after(10.1, 2) is None
