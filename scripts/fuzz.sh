#!/usr/bin/env bash
# Builds the cargo-fuzz targets in fuzz/ and runs each for a bounded time:
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]   (default 60 s; every target)
# Needs the nightly toolchain (rustup) and cargo-fuzz: one on PATH is used,
# otherwise it is installed from crates.io into target/cargo-fuzz (kept there for
# the next run). Without either the script says why and fails: a fuzz step that
# cannot run must not pass. Each target starts from its committed seeds
# (fuzz/seeds/<target>: real clients' requests and segments, and every input
# that ever crashed) plus what earlier runs found (fuzz/corpus/<target>, not
# committed). Exits non-zero when a target crashes; the input is left in
# fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run -s none -a <target> <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(request record_batch scram segment_recovery)
CARGO_FUZZ_VERSION=0.13.2
# No sanitizer: the targets are safe Rust over safe Rust (ASan would halve the
# executions and slow the build); debug assertions on, so an arithmetic
# overflow is a crash too.
flags=(-s none --debug-assertions)

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "fuzz: FAILED: no nightly toolchain (cargo-fuzz needs one): rustup toolchain install nightly" >&2
  exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  if [ ! -x "$root/target/cargo-fuzz/bin/cargo-fuzz" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION into target/cargo-fuzz"
    if ! cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION" --root "$root/target/cargo-fuzz" --quiet; then
      echo "fuzz: FAILED: cargo-fuzz could not be installed from crates.io" >&2
      exit 1
    fi
  fi
  export PATH="$root/target/cargo-fuzz/bin:$PATH"
fi
# The fuzz workspace's lock file is committed: a build must not change it.
if ! cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null; then
  echo "fuzz: FAILED: fuzz/Cargo.lock is out of date" >&2
  exit 1
fi

start=$(date +%s)
cargo +nightly fuzz build "${flags[@]}"
echo "fuzz: build took $(( $(date +%s) - start )) s"

failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
  log=$(mktemp)
  echo "fuzz: $target for $seconds s"
  set +e
  cargo +nightly fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  execs=$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  rate=$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  cov=$(grep -Eo 'DONE[[:space:]]+cov: [0-9]+' "$log" | grep -Eo '[0-9]+$' || echo "?")
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    failed+=("$target")
    summary+=("$target: CRASHED after $execs executions; input in fuzz/artifacts/$target/")
  else
    summary+=("$target: ${seconds} s, $execs executions ($rate/s), coverage $cov, no crash")
  fi
  rm -f "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: FAILED: ${failed[*]}" >&2
  exit 1
fi
