#!/usr/bin/env bash
# Failover time of a three-node cluster: bench/failover.py (see its --help).
#   bench/failover.sh --backend kafka|runnel --cycles 20 [--victim leader|controller] [--set KEY=VALUE]... [--client KEY=VALUE]...
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venv
[ -x "$venv/bin/python" ] || { echo "failover.sh: run scripts/test.sh once (it makes .venv)" >&2; exit 1; }
command -v nft >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nftables >/dev/null; }
case " $* " in
  *" --backend runnel "*|*" --backend=runnel "*) cargo build --release --locked -q -p runnel >&2 ;;
esac
# Kafka's own tools (DescribeQuorum: which node is the active controller), and Kafka itself.
scripts/kafka.sh install
exec "$venv/bin/python" bench/failover.py "$@"
