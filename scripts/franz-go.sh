#!/usr/bin/env bash
# franz-go's own integration tests (github.com/twmb/franz-go, pkg/kgo) against
# Runnel and/or Apache Kafka: a third-party client's test suite, unmodified.
#
#   scripts/franz-go.sh [--against runnel|kafka|both] [--all] [--run REGEX] [--no-build] [--budget SECONDS]
#
#   --against   which broker(s) (default runnel); "both" runs Kafka too, so a
#               failure on both is the suite's own or the environment's
#   --all       every broker test, also those known to fail on Runnel (below)
#   --run RE    only the tests whose name matches RE (grep -E)
#   --no-build  use target/release/runnel as it is (default: cargo build it)
#   --budget S  start no test after S seconds of testing per broker; the tests
#               left over count as failed (CI bounds its run this way)
#
# The module comes from the Go module proxy only (pinned below), is copied out
# of GOMODCACHE into target/franz-go/ and its test binary is built once
# (`go test -c`, cached). Each test runs in its own process, one after the
# other, with a bounded -test.timeout, so a hung test cannot take the others
# down. Per test it prints PASS/FAIL/SKIP, and per broker a closing line
# `N passed, N failed, N skipped`. Exit: 0 if nothing failed, 1 if a test
# failed, 3 if the Go module proxy cannot be reached (nothing was run).
# Logs of every test: target/franz-go/logs/<broker>/<test>.log. RUNNEL_BIN
# names another runnel binary (as for tests/python).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

franz_version=v1.22.3
work="$root/target/franz-go"
src="$work/franz-go@$franz_version"
test_bin="$work/kgo-$franz_version.test"
go_bin=$(command -v go || echo /usr/local/go/bin/go)
# franz-go's default is 500000 records per ETL test; this bounds the run on a
# two-core machine while still chaining several consumer generations.
records=${FRANZ_RECORDS:-5000}
per_test_timeout=${FRANZ_TEST_TIMEOUT:-180s}
budget=0

# The kgo tests that talk to a broker (the others are unit tests of the
# client and say nothing about the broker).
broker_tests=(
  TestPing TestUnknownGroupOffsetFetchPinned TestIssue1034
  TestClient_Produce TestClient_ProduceLargeMessages TestIssue769 TestIssue831
  TestIssueProduceBrokerTooOldFailsRecords TestIssueProduceSyncManualPartitionNegativeDoesNotPanic
  TestIssue325 TestConsumeTopicRetrieval TestConsumeTopicRetrieval_Many TestConsumeRegex
  TestIssue337 TestDirectPartitionPurge TestIssue434 TestAddRemovePartitions
  TestPauseIssue489 TestPauseIssueOct2023 TestIssue523 TestIssue648 TestIssue810 TestIssue865
  TestIssueFetchLargerThanBrokerMaxReadBytes TestPooling TestConsumeMaxDecompressBatchBytes
  TestHookPollStart TestGroupSimple TestGroupETL Test848RegexBrokerResolves
  TestConsumeRegexShareSkipsInternal TestShareGroup TestShareGroupETL TestShareGroupAckOnClose
  TestShareGroupOffsetsAdmin TestTxnEtl TestSCRAMAuth TestSCRAMAuthBadCredentials TestOAuthAuth
)
# Not run against Runnel (unless --all), each with its reason.
# (none since transactions landed: TestTxnEtl runs against Runnel too)
declare -A runnel_skips=()
# The share-group tests skip themselves on a broker without ShareFetch v2
# (Runnel), SCRAM/OAuth ones without KGO_TEST_SCRAM*/KGO_TEST_OAUTH_SEEDS
# (neither broker here has SASL listeners).

against=runnel
all=0
run_filter=""
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    --against) against=$2; shift 2 ;;
    --all) all=1; shift ;;
    --run) run_filter=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --budget) budget=$2; shift 2 ;;
    *) echo "franz-go.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$against" in runnel|kafka|both) ;; *) echo "franz-go.sh: --against runnel|kafka|both" >&2; exit 2 ;; esac

fetch_and_build() {
  if [ ! -f "$src/go.mod" ]; then
    local dir
    if ! dir=$("$go_bin" mod download -json "github.com/twmb/franz-go@$franz_version" \
        | sed -nE 's/^[[:space:]]*"Dir": "(.*)",?$/\1/p') || [ -z "$dir" ]; then
      return 3
    fi
    rm -rf "$src.tmp"
    mkdir -p "$work"
    cp -r "$dir" "$src.tmp"
    chmod -R u+w "$src.tmp"   # GOMODCACHE is read-only
    mv "$src.tmp" "$src"
  fi
  if [ ! -x "$test_bin" ]; then
    (cd "$src" && "$go_bin" mod download) || return 3
    echo "franz-go.sh: building the kgo test binary (once; cached in $test_bin)" >&2
    (cd "$src" && "$go_bin" test -c -buildvcs=false -o "$test_bin.tmp" ./pkg/kgo) || return 1
    mv "$test_bin.tmp" "$test_bin"
  fi
}

status=0
fetch_and_build || status=$?
if [ "$status" -eq 3 ]; then
  echo "franz-go.sh: github.com/twmb/franz-go@$franz_version could not be fetched from the Go module proxy" >&2
  exit 3
elif [ "$status" -ne 0 ]; then
  exit "$status"
fi

if [ "$build" = 1 ] && [ "$against" != kafka ]; then
  cargo build --release --locked -p runnel
fi

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

runnel_pid=""
test_pid=""
kafka_started=0
cleanup() {
  if [ -n "$test_pid" ]; then kill "$test_pid" 2>/dev/null || true; wait "$test_pid" 2>/dev/null || true; fi
  if [ -n "$runnel_pid" ]; then kill "$runnel_pid" 2>/dev/null || true; wait "$runnel_pid" 2>/dev/null || true; fi
  if [ "$kafka_started" = 1 ]; then scripts/kafka.sh stop --name franz-go || true; fi
}
trap cleanup EXIT

# Both run in this shell, not in $(...): cleanup must see the pid they record.
start_runnel() {  # sets runnel_bootstrap
  local port data="$work/runnel-data"
  port=$(free_port)
  rm -rf "$data"
  # As Kafka's own docker image (and scripts/kafka.sh below): no initial
  # rebalance delay, so a group's first generation starts at once.
  "${RUNNEL_BIN:-target/release/runnel}" serve --listen "127.0.0.1:$port" --data-dir "$data" \
    --set group.initial.rebalance.delay.ms=0 >"$work/runnel.log" 2>&1 &
  runnel_pid=$!
  for _ in $(seq 1 100); do
    if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
      runnel_bootstrap="127.0.0.1:$port"
      return 0
    fi
    sleep 0.1
  done
  echo "franz-go.sh: runnel did not start; log: $work/runnel.log" >&2
  return 1
}

start_kafka() {  # sets kafka_bootstrap
  # The settings franz-go's own CI gives Kafka (share groups on, a delivery
  # limit its share ETL test needs), and no initial rebalance delay.
  kafka_started=1
  kafka_bootstrap=$(scripts/kafka.sh start --name franz-go \
    --set group.initial.rebalance.delay.ms=0 \
    --set group.coordinator.rebalance.protocols=classic,consumer,share \
    --set group.share.delivery.count.limit=10 \
    --set share.coordinator.state.topic.num.partitions=5)
}

# run_suite BROKER BOOTSTRAP: runs the selection, prints per test, then the totals.
run_suite() {
  local broker=$1 bootstrap=$2 logs="$work/logs/$1" passed=0 failed=0 skipped=0 t t0 log result secs reason
  rm -rf "$logs"
  mkdir -p "$logs"
  local started=$SECONDS
  echo "franz-go $franz_version kgo tests against $broker ($bootstrap), $records records per ETL test"
  for t in "${broker_tests[@]}"; do
    if [ -n "$run_filter" ] && ! grep -Eq -- "$run_filter" <<<"$t"; then continue; fi
    if [ "$budget" -gt 0 ] && [ $((SECONDS - started)) -ge "$budget" ]; then
      printf 'FAIL  %s (not run: the %s s budget is spent)\n' "$t" "$budget"
      failed=$((failed + 1))
      continue
    fi
    if [ "$broker" = runnel ] && [ "$all" = 0 ] && [ -n "${runnel_skips[$t]:-}" ]; then
      printf 'SKIP  %s: %s\n' "$t" "${runnel_skips[$t]}"
      skipped=$((skipped + 1))
      continue
    fi
    log="$logs/$t.log"
    t0=$(date +%s.%N)
    # In the background with its pid recorded, so that cleanup can stop it
    # (timeout passes the signal on to the test binary).
    (cd "$src/pkg/kgo" && exec env KGO_SEEDS="$bootstrap" KGO_TEST_RF=1 KGO_TEST_RECORDS="$records" KGO_LOG_LEVEL=none \
      timeout --kill-after=10 $((${per_test_timeout%s} + 30)) \
      "$test_bin" -test.run "^$t\$" -test.v -test.count=1 -test.timeout "$per_test_timeout" >"$log" 2>&1) &
    test_pid=$!
    wait "$test_pid" || true
    test_pid=""
    # The test's own top-level verdict line; none means it panicked or timed out.
    result=$(grep -E "^--- (PASS|FAIL|SKIP): $t \(" "$log" | tail -n 1 || true)
    # Wall time: a parent's own "(0.00s)" leaves out its parallel subtests.
    secs=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1fs", b - a}')
    case "$result" in
      "--- PASS"*) printf 'PASS  %s (%s)\n' "$t" "$secs"; passed=$((passed + 1)) ;;
      "--- SKIP"*)
        # t.Skip's message: the test's first log line (cleanups log after it).
        reason=$(sed -nE 's/^ +[a-z0-9_]+_test\.go:[0-9]+: (.*)/\1/p' "$log" | head -n 1)
        printf 'SKIP  %s: %s\n' "$t" "${reason:-skipped by the test}"
        skipped=$((skipped + 1)) ;;
      "--- FAIL"*) printf 'FAIL  %s (%s; log: %s)\n' "$t" "$secs" "$log"; failed=$((failed + 1)) ;;
      *) printf 'FAIL  %s (no verdict after %s: timed out (limit %s) or crashed; log: %s)\n' "$t" "$secs" "$per_test_timeout" "$log"; failed=$((failed + 1)) ;;
    esac
    # CI keeps only this output: show why a test failed, not just where its log was.
    if [ "${result#--- }" = "$result" ] || [ "${result#--- FAIL}" != "$result" ]; then
      grep -E 'unexpected|panic:|Error|error|timed out|FAIL' "$log" | grep -v 'NOT DELETING' | head -n 12 | sed 's/^/      | /' || true
    fi
  done
  echo "$passed passed, $failed failed, $skipped skipped (franz-go against $broker)"
  [ "$failed" -eq 0 ]
}

overall=0
if [ "$against" = kafka ] || [ "$against" = both ]; then
  if ! start_kafka; then
    echo "franz-go.sh: Apache Kafka could not be started (scripts/kafka.sh)" >&2
    exit 1
  fi
  run_suite kafka "$kafka_bootstrap" || overall=1
  scripts/kafka.sh stop --name franz-go
  kafka_started=0
fi
if [ "$against" = runnel ] || [ "$against" = both ]; then
  start_runnel
  run_suite runnel "$runnel_bootstrap" || overall=1
fi
exit "$overall"
