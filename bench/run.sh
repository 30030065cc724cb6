#!/usr/bin/env bash
# The benchmark: builds Runnel and the harness in release mode, installs what
# the side-by-side systems need (redis-server, iperf3), then runs
# runnel-bench. Extra arguments go to runnel-bench (see --help), e.g.
#   bench/run.sh --messages 200000 --sizes 1024
#   bench/run.sh --smoke          # tiny counts: checks the harness end to end
#   bench/run.sh --with redis,kafka   # also Apache Kafka (default and fsync per append) and its perf tools
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v iperf3 >/dev/null 2>&1 || need_apt+=(iperf3)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "bench: installing ${need_apt[*]}" >&2
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Two builds, not one `-p runnel -p runnel-bench`: built together, cargo unifies
# their dependencies' features and compiles another `runnel` binary (10+ min on
# the 2-core machine) instead of benchmarking the one `cargo build -p runnel` made.
cargo build --release -q -p runnel
cargo build --release -q -p runnel-bench
exec target/release/runnel-bench --runnel target/release/runnel "$@"
