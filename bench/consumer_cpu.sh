#!/usr/bin/env bash
# A consumer's CPU per record against Runnel and Apache Kafka holding the same
# stored batches: bench/consumer_cpu.py (see its --help).
#   bench/consumer_cpu.sh [--records N] [--size B] [--batch-bytes B] [--rounds R]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ -x "$venv/bin/python" ] || { echo "consumer_cpu.sh: run scripts/test.sh once (it makes .venv)" >&2; exit 1; }
command -v kcat >/dev/null 2>&1 || { echo "consumer_cpu.sh: needs kcat (apt-get install kcat)" >&2; exit 1; }
cargo build --release -p runnel --locked
scripts/kafka.sh install
exec "$venv/bin/python" bench/consumer_cpu.py "$@"
