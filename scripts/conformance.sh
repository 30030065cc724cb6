#!/usr/bin/env bash
# The differential conformance suite in one command: Apache Kafka (via
# scripts/kafka.sh, cached under target/kafka) and a fresh Runnel, the same
# requests to both, answers compared (crates/conformance). Extra arguments go
# to runnel-conformance (e.g. --filter produce. --verbose).
#   scripts/conformance.sh [--no-build] [ARGS...]
# Cases made for brokers with another setting (--list shows it, e.g.
# group.consumer.migration.policy=disabled) run in a second pass, both
# brokers started again with it.
# Exits non-zero on a difference that tests/conformance/allowed-differences.txt
# does not list; 3 if Kafka cannot be installed (no Maven Central).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=1
if [ "${1:-}" = "--no-build" ]; then build=0; shift; fi
if [ "$build" = 1 ]; then
  cargo build --release --locked -p runnel -p runnel-conformance
fi
if ! scripts/kafka.sh install; then
  echo "conformance: Apache Kafka could not be installed from Maven Central" >&2
  exit 3
fi
work="$root/target/conformance"
mkdir -p "$work"
runnel_pid=""
stop_brokers() {
  if [ -n "$runnel_pid" ]; then kill "$runnel_pid" 2>/dev/null || true; wait "$runnel_pid" 2>/dev/null || true; fi
  runnel_pid=""
  scripts/kafka.sh stop --name conformance || true
}
trap stop_brokers EXIT
# One pass: both brokers fresh with the same extra settings (KEY=VALUE...),
# then the cases made for them (runnel-conformance --broker-setting).
run_pass() {
  local kafka_sets=() runnel_sets=() conformance_args=()
  for setting in "$@"; do
    kafka_sets+=(--set "$setting"); runnel_sets+=(--set "$setting"); conformance_args+=(--broker-setting "$setting")
  done
  rm -rf "$work/runnel-data"
  # Both brokers without the 3 s initial rebalance delay, so group cases are quick.
  # run_pass is called under `||`, where set -e does not apply: check by hand.
  if ! kafka=$(scripts/kafka.sh start --name conformance --set group.initial.rebalance.delay.ms=0 "${kafka_sets[@]}") \
    || [ -z "$kafka" ]; then
    echo "conformance: Apache Kafka did not start (target/kafka/conformance)" >&2
    return 1
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  target/release/runnel serve --listen "127.0.0.1:$port" --data-dir "$work/runnel-data" \
    --set group.initial.rebalance.delay.ms=0 "${runnel_sets[@]}" >"$work/runnel.log" 2>&1 &
  runnel_pid=$!
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "conformance: Kafka $kafka, Runnel 127.0.0.1:$port ${*:+with $* }(logs: target/kafka/conformance, $work/runnel.log)"
  local status=0
  target/release/runnel-conformance --kafka "$kafka" --runnel "127.0.0.1:$port" \
    --allowed tests/conformance/allowed-differences.txt "${conformance_args[@]}" "${extra[@]}" || status=$?
  stop_brokers
  return "$status"
}
extra=("$@")
status=0
run_pass || status=$?
# The cases that need brokers configured otherwise (skipped when --filter names none of them).
if [ "$status" -ne 2 ] && target/release/runnel-conformance --list | grep -q "group.consumer.migration.policy=disabled"; then
  filter=""
  for ((i = 0; i < ${#extra[@]}; i++)); do [ "${extra[$i]}" = "--filter" ] && filter="${extra[$((i + 1))]:-}"; done
  if [ -z "$filter" ] || target/release/runnel-conformance --list | grep "policy=disabled" | grep -qF -- "$filter"; then
    run_pass group.consumer.migration.policy=disabled || status=$?
  fi
fi
exit "$status"
