"""Issue 11's faults under load, checked by the Jepsen-style checker.

Each test runs the workload (two idempotent acks=all writers, confluent-kafka
and the Java client; a two-member consumer group; a committed-offset
sampler) on a fresh 6-partition topic, injects its fault FAULT_CYCLES times
(default 1; scripts/soak.sh runs hundreds), then reads everything back and
asserts the checker finds nothing.

Backends (CLUSTER_BACKENDS, comma-separated, default "runnel"):
- ``kafka``: Apache Kafka 4.3.1, three combined nodes, RF 3, min.insync.replicas 2.
  Proves the harness and the checker: every fault must pass against Kafka.
- ``runnel``: a single ``runnel serve`` (RUNNEL_NODES=1, the default) runs the
  faults that make sense on one node (kill -9 + restart, kill all, SIGSTOP /
  SIGCONT, SIGTERM restart), RF 1. RUNNEL_NODES=3 runs all of them against a
  three-node Runnel cluster, RF 3, min.insync.replicas 2.
- ``runnel3``: a three-node Runnel cluster whatever RUNNEL_NODES says, so one
  run can hold both sizes (CI: CLUSTER_BACKENDS=runnel,runnel3,kafka).
Status and times per fault: bench/README.md.
"""
import os

import pytest

import checker
import faults
import harness

BACKENDS = [b.strip() for b in os.environ.get("CLUSTER_BACKENDS", "runnel").split(",") if b.strip()]
CYCLES = int(os.environ.get("FAULT_CYCLES", "1"))
NODES = {"kafka": 3, "runnel": int(os.environ.get("RUNNEL_NODES", "1")), "runnel3": 3}


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request):
    backend = request.param
    try:
        c = harness.Cluster("runnel" if backend == "runnel3" else backend, NODES[backend])
    except harness.Unavailable as e:
        pytest.skip(f"!!! {backend} cluster unavailable: {e} !!!")
    try:
        c.start()
    except Exception:
        c.close()
        raise
    yield c
    c.close()
    if not request.session.testsfailed:
        c.cleanup_files()


@pytest.mark.parametrize("fault", list(faults.FAULTS))
def test_fault_under_load(cluster, fault):
    why_not = faults.applicable(fault, cluster)
    if why_not:
        pytest.skip(why_not)
    anomalies, stats, events = faults.run_faults(cluster, [fault], CYCLES, log=lambda m: print(m, flush=True))
    print(stats)
    assert not anomalies, f"{fault} on {cluster.backend.name}: {checker.summary(anomalies)}\n{stats}"
    assert not stats["writer_errors"], "\n".join(stats["writer_errors"])
    assert stats["group_finished"], f"the group did not finish consuming: {stats}"
    assert not stats["unfinished_writers"], f"a writer did not finish: {stats}"
    assert stats["acked"] >= 50 and stats["in_log"] >= stats["acked"], stats
    assert len(events) == CYCLES
