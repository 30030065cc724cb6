#!/usr/bin/env bash
# Transactional produce vs non-transactional, and the log cleaner: bench/txn.py (see its --help).
#   bench/txn.sh [--with-kafka] [--records N] [--size B] [--keys K] [--time-limit S]
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ -x "$venv/bin/python" ] || { echo "txn.sh: run scripts/test.sh once (it makes .venv)" >&2; exit 1; }
cargo build --release -p runnel --locked
for arg in "$@"; do [ "$arg" = --with-kafka ] && scripts/kafka.sh install; done
exec "$venv/bin/python" bench/txn.py "$@"
