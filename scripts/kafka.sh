#!/usr/bin/env bash
# Apache Kafka, the reference broker, on this machine.
#
#   scripts/kafka.sh install                      fetch Kafka + dependencies from Maven Central (cached)
#   scripts/kafka.sh install-streams              fetch Kafka Streams + dependencies into target/streams/libs (cached)
#   scripts/kafka.sh start [--nodes 1|3] [--name N] [--set KEY=VALUE]...
#                                                 format fresh storage, start KRaft, print the bootstrap
#   scripts/kafka.sh status [--name N]            print the bootstrap if running (exit 1 if not)
#   scripts/kafka.sh stop [--name N]              stop it (SIGTERM, then SIGKILL after 30 s)
#
# Kafka comes from tests/kafka/pom.xml via `mvn dependency:copy-dependencies`
# (~/.m2 is the cache; target/kafka/libs is rebuilt only when the pom changes).
# Each instance lives in target/kafka/<name>/ (default name: "default"): per
# node its server.properties, data and log. One node runs combined
# broker+controller mode; --nodes 3 starts three combined nodes with a static
# three-voter quorum. Everything listens on free 127.0.0.1 ports.
# KAFKA_HEAP overrides the JVM heap (default -Xmx512m, -Xmx384m per node for 3);
# its words go to java as they are (the benchmark passes the heap and GC
# options of Kafka's own start scripts this way).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
kafka_dir="$root/target/kafka"
libs="$kafka_dir/libs"
pom="$root/tests/kafka/pom.xml"

die() { echo "kafka.sh: $*" >&2; exit 1; }

ensure_java() {
  local major=0
  if command -v java >/dev/null 2>&1; then
    major=$(java -version 2>&1 | sed -nE 's/.*version "([0-9]+).*/\1/p' | head -n 1)
  fi
  if [ "${major:-0}" -lt 17 ]; then
    echo "kafka.sh: Kafka 4.x needs Java 17+, installing openjdk-17" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jdk-headless >/dev/null
  fi
  if ! command -v mvn >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
  fi
}

# Fetches the dependencies of a pom into a directory with `mvn
# dependency:copy-dependencies`, unless that directory was filled from the
# same pom already (its sha256 is kept beside the jars).
install_pom() {
  local pom=$1 dir=$2 must_have=$3
  ensure_java
  local stamp="$dir/.pom.sha256"
  local want
  want=$(sha256sum "$pom" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "kafka.sh: fetching $(basename "$(dirname "$pom")")/pom.xml's jars from Maven Central into $dir" >&2
  mvn -q -B -f "$pom" dependency:copy-dependencies \
    -DoutputDirectory="$dir" -DincludeScope=runtime >&2
  ls "$dir"/$must_have >/dev/null 2>&1 || die "mvn did not produce $must_have in $dir"
  echo "$want" >"$stamp"
}

install() { install_pom "$pom" "$libs" 'kafka_2.13-*.jar'; }

# Kafka Streams and its client jars (tests/streams/pom.xml), for the
# exactly-once Streams application in tests/python/test_streams.py.
install_streams() { install_pom "$root/tests/streams/pom.xml" "$root/target/streams/libs" 'kafka-streams-*.jar'; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

java_args() { # java_args HEAP LOG4J_CONFIG: the JVM options before MAIN
  # shellcheck disable=SC2206
  jvm=($1 -XX:+UseG1GC -Djava.awt.headless=true -Dlog4j2.configurationFile="$2" -cp "$libs/*")
}

instance_dir() { echo "$kafka_dir/${name:-default}"; }

running_pids() {
  local dir pidfile pid
  dir=$(instance_dir)
  for pidfile in "$dir"/node-*/pid; do
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then echo "$pid"; fi
  done
}

status() {
  local dir
  dir=$(instance_dir)
  if [ -f "$dir/bootstrap" ] && [ -n "$(running_pids)" ]; then
    cat "$dir/bootstrap"
    return 0
  fi
  echo "kafka.sh: instance '${name:-default}' is not running" >&2
  return 1
}

stop() {
  local dir pid pids waited=0
  dir=$(instance_dir)
  pids=$(running_pids)
  [ -n "$pids" ] || { rm -f "$dir/bootstrap"; return 0; }
  for pid in $pids; do kill "$pid" 2>/dev/null || true; done
  while [ -n "$(running_pids)" ] && [ "$waited" -lt 300 ]; do
    sleep 0.1
    waited=$((waited + 1))
  done
  for pid in $(running_pids); do
    echo "kafka.sh: pid $pid ignored SIGTERM for 30 s, killing it" >&2
    kill -9 "$pid" 2>/dev/null || true
  done
  rm -f "$dir/bootstrap" "$dir"/node-*/pid
}

write_log4j() {
  cat >"$kafka_dir/log4j2.properties" <<'EOF'
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
appender.stdout.type = Console
appender.stdout.name = STDOUT
appender.stdout.layout.type = PatternLayout
appender.stdout.layout.pattern = [%d] %p %m (%c)%n
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.apache.name = org.apache.kafka
logger.apache.level = INFO
EOF
}

start() {
  install
  if status >/dev/null 2>&1; then
    status
    return 0
  fi
  stop
  local dir nodes=${nodes:-1} heap i voters="" bootstrap="" cluster_id
  [ "$nodes" = 1 ] || [ "$nodes" = 3 ] || die "--nodes must be 1 or 3"
  dir=$(instance_dir)
  rm -rf "$dir"
  mkdir -p "$dir"
  write_log4j
  heap=${KAFKA_HEAP:-$([ "$nodes" = 1 ] && echo "-Xmx512m -Xms128m" || echo "-Xmx384m -Xms128m")}
  declare -a broker_ports controller_ports
  for i in $(seq 1 "$nodes"); do
    broker_ports[$i]=$(free_port)
    controller_ports[$i]=$(free_port)
    voters="${voters:+$voters,}$i@127.0.0.1:${controller_ports[$i]}"
    bootstrap="${bootstrap:+$bootstrap,}127.0.0.1:${broker_ports[$i]}"
  done
  local replication=$([ "$nodes" = 1 ] && echo 1 || echo 3)
  local min_isr=$([ "$nodes" = 1 ] && echo 1 || echo 2)
  for i in $(seq 1 "$nodes"); do
    mkdir -p "$dir/node-$i/data"
    cat >"$dir/node-$i/server.properties" <<EOF
# Written by scripts/kafka.sh: KRaft, combined broker+controller, node $i of $nodes.
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${broker_ports[$i]},CONTROLLER://127.0.0.1:${controller_ports[$i]}
advertised.listeners=PLAINTEXT://127.0.0.1:${broker_ports[$i]}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/node-$i/data
offsets.topic.replication.factor=$replication
transaction.state.log.replication.factor=$replication
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replication
share.coordinator.state.topic.min.isr=$min_isr
EOF
    if [ ${#settings[@]} -gt 0 ]; then printf '%s\n' "${settings[@]}" >>"$dir/node-$i/server.properties"; fi
  done
  # A Kafka cluster id is a URL-safe base64 UUID; one in 64 begins with "-",
  # which kafka-storage's argument parser takes for an option (Kafka's own
  # Uuid.randomUuid never makes such ids), so draw again until it does not.
  cluster_id=$(python3 -c '
import base64, uuid
while True:
    cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cluster_id.startswith("-"):
        print(cluster_id)
        break')
  for i in $(seq 1 "$nodes"); do
    java_args "-Xmx256m" "$kafka_dir/log4j2.properties"
    java "${jvm[@]}" kafka.tools.StorageTool format \
      -t "$cluster_id" -c "$dir/node-$i/server.properties" >"$dir/node-$i/format.log" 2>&1 \
      || { cat "$dir/node-$i/format.log" >&2; die "formatting node $i failed"; }
  done
  for i in $(seq 1 "$nodes"); do
    (
      cd "$dir/node-$i"
      exec </dev/null >"$dir/node-$i/kafka.log" 2>&1
      java_args "$heap" "$kafka_dir/log4j2.properties"
      # exec: the recorded pid must be the JVM's own, or stop would only
      # kill a wrapper shell and leave Kafka running.
      (exec java "${jvm[@]}" kafka.Kafka "$dir/node-$i/server.properties") &
      echo $! >"$dir/node-$i/pid"
    )
  done
  # "Kafka Server started" is logged once the broker is unfenced and serving.
  local deadline=$((SECONDS + ${KAFKA_START_TIMEOUT:-120})) ready
  while :; do
    ready=0
    for i in $(seq 1 "$nodes"); do
      grep -q "Kafka Server started" "$dir/node-$i/kafka.log" 2>/dev/null && ready=$((ready + 1))
      if ! kill -0 "$(cat "$dir/node-$i/pid")" 2>/dev/null; then
        tail -n 40 "$dir/node-$i/kafka.log" >&2
        stop
        die "node $i exited during start; log: $dir/node-$i/kafka.log"
      fi
    done
    [ "$ready" -eq "$nodes" ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      tail -n 40 "$dir/node-1/kafka.log" >&2
      stop
      die "Kafka did not start within ${KAFKA_START_TIMEOUT:-120} s; logs under $dir"
    fi
    sleep 0.2
  done
  echo "$bootstrap" >"$dir/bootstrap"
  echo "$bootstrap"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
name=default
nodes=1
settings=()
while [ $# -gt 0 ]; do
  case "$1" in
    --nodes) nodes=${2:?--nodes needs a value}; shift 2 ;;
    --name) name=${2:?--name needs a value}; shift 2 ;;
    --set) settings+=("${2:?--set needs KEY=VALUE}"); shift 2 ;;
    *) die "unknown option $1" ;;
  esac
done
[[ "$name" =~ ^[A-Za-z0-9_-]+$ ]] || die "--name must be alphanumeric"
case "$cmd" in
  install) install ;;
  install-streams) install_streams ;;
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) die "usage: scripts/kafka.sh install|install-streams|start|stop|status [--nodes 1|3] [--name NAME] [--set KEY=VALUE]..." ;;
esac
