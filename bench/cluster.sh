#!/usr/bin/env bash
# Replication factor 3 vs 1, acks=all, on three local nodes: Runnel and Apache
# Kafka with kafka-producer-perf-test (bench/cluster.py; see its --help).
#   bench/cluster.sh [--backends runnel,kafka] [--sizes 1024,100] [--records 100000]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ -x "$venv/bin/python" ] || { echo "cluster.sh: run scripts/test.sh once (it makes .venv)" >&2; exit 1; }
# Network namespaces per node need nft as root; without it the harness runs on 127.0.0.1 ports.
if [ "$(id -u)" = 0 ] && ! command -v nft >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null
fi
scripts/kafka.sh install
cargo build --release --locked -q -p runnel >&2
exec "$venv/bin/python" bench/cluster.py "$@"
