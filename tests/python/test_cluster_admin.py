"""Cluster admin APIs against real `runnel serve` processes, driven by Apache
Kafka's own tools (kafka-tools 4.3.1 from scripts/kafka.sh's Maven install:
LogDirsCommand = kafka-log-dirs.sh, MetadataQuorumCommand =
kafka-metadata-quorum.sh, LeaderElectionCommand = kafka-leader-election.sh)
and the runnel CLI: DescribeLogDirs, DescribeQuorum and ElectLeaders on one
node and on three. Every wait is bounded."""
import glob
import json
import os
import re
import shutil
import subprocess
import time

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from runnel_broker import RUNNEL, Broker, free_port
from test_cluster import FAST_CLUSTER, bootstrap, partition_metadata, produce, wait_until

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KAFKA_LIBS = os.path.join(ROOT, "target", "kafka", "libs")


@pytest.fixture(scope="module")
def kafka_tools():
    """Runs one of Kafka's command-line tools; installs Kafka's jars first if needed."""
    if not glob.glob(os.path.join(KAFKA_LIBS, "kafka-tools-*.jar")):
        proc = subprocess.run([os.path.join(ROOT, "scripts", "kafka.sh"), "install"], capture_output=True, text=True, timeout=900)
        if proc.returncode != 0:
            pytest.skip(f"!!! Apache Kafka's tools could not be installed from Maven Central: {proc.stderr[-1000:]}")
    java = shutil.which("java") or "java"

    def run(tool, *args, check=True, timeout=90):
        proc = subprocess.run([java, "-Xmx256m", "-Dlog4j2.configurationFile=" + os.devnull, "-cp", os.path.join(KAFKA_LIBS, "*"),
                               f"org.apache.kafka.tools.{tool}", *args], capture_output=True, text=True, timeout=timeout)
        if check:
            assert proc.returncode == 0, f"{tool} {args} failed:\n{proc.stdout}\n{proc.stderr[-3000:]}"
        return proc
    return run


def cli(bootstrap_servers, *args, check=True):
    proc = subprocess.run([RUNNEL, "--brokers", bootstrap_servers, *args], capture_output=True, text=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def log_dirs(kafka_tools, bootstrap_servers, *args):
    """LogDirsCommand --describe's JSON: {broker id: {"logDir": ..., "partitions": {name: {...}}}}."""
    out = kafka_tools("LogDirsCommand", "--bootstrap-server", bootstrap_servers, "--describe", *args).stdout
    line = next(l for l in out.splitlines() if l.startswith("{"))
    described = {}
    for b in json.loads(line)["brokers"]:
        (log_dir,) = b["logDirs"]
        assert log_dir["error"] is None, log_dir
        described[b["broker"]] = {"logDir": log_dir["logDir"], "partitions": {p["partition"]: p for p in log_dir["partitions"]}}
    return described


def segment_bytes(data_dir, topic, partition):
    return sum(os.path.getsize(f) for f in glob.glob(os.path.join(data_dir, f"{topic}-{partition}", "*.log")))


def quorum_status(kafka_tools, bootstrap_servers):
    out = kafka_tools("MetadataQuorumCommand", "--bootstrap-server", bootstrap_servers, "describe", "--status").stdout
    return dict(re.findall(r"^(\w+):\s+(.*)$", out, re.M))


def quorum_replication(kafka_tools, bootstrap_servers):
    """--replication's table: rows of {NodeId, LogEndOffset, Lag, LastFetchTimestamp, LastCaughtUpTimestamp, Status}."""
    out = kafka_tools("MetadataQuorumCommand", "--bootstrap-server", bootstrap_servers, "describe", "--replication").stdout
    lines = [l.split() for l in out.splitlines() if l.strip()]
    header = next(l for l in lines if l[:1] == ["NodeId"])
    return [dict(zip(header, row)) for row in lines if row[0].isdigit()]


# --- one node -----------------------------------------------------------------


def test_log_dirs_of_one_node_match_its_segment_files(make_broker, kafka_tools):
    broker = make_broker()
    topic = "dirs"
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result(30)
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(50):
        producer.produce(topic, value=b"x" * 100, partition=0)
    assert producer.flush(30) == 0

    described = log_dirs(kafka_tools, broker.bootstrap, "--topic-list", topic)
    (node,) = described.values()
    assert node["logDir"] == os.path.abspath(broker.data_dir)
    # Only the topic asked for, each partition's size exactly its segment files' bytes.
    assert sorted(node["partitions"]) == [f"{topic}-0", f"{topic}-1"]
    p0, p1 = node["partitions"][f"{topic}-0"], node["partitions"][f"{topic}-1"]
    assert p0["size"] == segment_bytes(broker.data_dir, topic, 0) and p0["size"] > 50 * 100
    assert p1["size"] == 0
    assert p0["offsetLag"] == 0 and p0["isFuture"] is False

    # An unknown topic is left out, not an error (as Kafka).
    assert log_dirs(kafka_tools, broker.bootstrap, "--topic-list", "no-such-topic")[1]["partitions"] == {}
    # No filter: every partition, the internal ones included.
    every = log_dirs(kafka_tools, broker.bootstrap)[1]["partitions"]
    assert {f"{topic}-0", f"{topic}-1", "__consumer_offsets-0"} <= set(every)


def test_metadata_quorum_of_one_node(make_broker, kafka_tools):
    broker = make_broker({"node.id": "7"})
    status = quorum_status(kafka_tools, broker.bootstrap)
    assert status["LeaderId"] == "7" and int(status["LeaderEpoch"]) >= 1 and int(status["HighWatermark"]) > 0, status
    assert status["MaxFollowerLag"] == "0" and '"id": 7' in status["CurrentVoters"] and status["CurrentObservers"] == "[]", status
    (row,) = quorum_replication(kafka_tools, broker.bootstrap)
    assert row["NodeId"] == "7" and row["Status"] == "Leader" and row["Lag"] == "0" and int(row["LogEndOffset"]) > 0, row


# --- three nodes --------------------------------------------------------------


def leader_of(admin, topic):
    p = partition_metadata(admin, topic)[0]
    return p.leader if p else None


def test_three_nodes_quorum_log_dirs_and_preferred_election(kafka_tools):
    # No automatic rebalance: only ElectLeaders gives leadership back.
    voters = ",".join(f"{i + 1}@127.0.0.1:{free_port()}" for i in range(3))
    settings = dict(FAST_CLUSTER, **{"controller.quorum.voters": voters, "auto.leader.rebalance.enable": "false"})
    nodes = [Broker(dict(settings, **{"node.id": str(i + 1)})) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)

        # DescribeQuorum, asked of every node (followers ask the leader): one leader, three caught-up voters.
        leaders = set()
        for node in nodes:
            status = quorum_status(kafka_tools, node.bootstrap)
            leaders.add(status["LeaderId"])
            assert all(f'"id": {i}' in status["CurrentVoters"] for i in (1, 2, 3)), status
        assert len(leaders) == 1, f"nodes disagree on the quorum leader: {leaders}"

        def replication_caught_up():
            rows = quorum_replication(kafka_tools, nodes[0].bootstrap)
            return rows if (len(rows) == 3 and sorted(r["Status"] for r in rows) == ["Follower", "Follower", "Leader"]
                            and all(int(r["LogEndOffset"]) > 0 and int(r["Lag"]) <= 5 and int(r["LastCaughtUpTimestamp"]) > 0 for r in rows)) else None
        rows = wait_until("every voter caught up in DescribeQuorum", replication_caught_up)
        assert {r["NodeId"] for r in rows} == {"1", "2", "3"}

        topic = "elected"
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=3, config={"min.insync.replicas": "2"})])[topic].result(30)
        p = wait_until("three replicas in the ISR", lambda: (lambda p: p if p and len(p.isrs) == 3 else None)(partition_metadata(admin, topic)[0]))
        preferred = p.replicas[0]
        assert p.leader == preferred
        producer = Producer({"bootstrap.servers": bootstrap(nodes), "acks": "all", "enable.idempotence": True})
        produce(producer, topic, [f"r{i}" for i in range(100)])

        # DescribeLogDirs: every node holds a replica; followers catch up to lag 0, sizes agree.
        def replicas_described():
            described = log_dirs(kafka_tools, bootstrap(nodes), "--topic-list", topic)
            parts = [described.get(n, {}).get("partitions", {}).get(f"{topic}-0") for n in (1, 2, 3)]
            if None in parts or any(x["offsetLag"] != 0 for x in parts) or len({x["size"] for x in parts}) != 1:
                return None
            return parts
        parts = wait_until("three replicas described with lag 0 and equal sizes", replicas_described)
        assert parts[0]["size"] == segment_bytes(nodes[0].data_dir, topic, 0) > 0

        # Move leadership away from the preferred replica: stop it (a controlled
        # shutdown) and start it again; without a rebalance it stays a follower.
        preferred_node = nodes[preferred - 1]
        preferred_node.stop()
        others = [n for n in nodes if n is not preferred_node]
        other_admin = AdminClient({"bootstrap.servers": bootstrap(others)})
        wait_until("a new leader", lambda: leader_of(other_admin, topic) not in (None, -1, preferred))

        # `runnel cluster describe` names the stopped node fenced (or absent before DescribeCluster v2).
        out = cli(bootstrap(others), "cluster", "describe").stdout
        assert re.search(rf"^{preferred}\t\S+\t-\tfenced", out, re.M), out
        assert len(re.findall(r"^\d+\t-?\d+\t\S+\t\S+\t(leader|follower)$", out, re.M)) == 3, out

        preferred_node.start()
        wait_until("the preferred replica back in the ISR", lambda: (
            lambda p: p if p and sorted(p.isrs) == [1, 2, 3] else None)(partition_metadata(admin, topic)[0]), timeout=60)
        time.sleep(1)
        assert leader_of(admin, topic) != preferred, "leadership went back without an election"

        # Kafka's kafka-leader-election.sh brings it back ...
        out = kafka_tools("LeaderElectionCommand", "--bootstrap-server", bootstrap(nodes), "--election-type", "preferred",
                          "--all-topic-partitions").stdout
        # (__consumer_offsets partitions led by the stopped node are moved back too.)
        elected = re.search(r"Successfully completed leader election \(PREFERRED\) for partitions (.*)", out)
        assert elected and f"{topic}-0" in elected.group(1).split(", "), out
        # ... answered once the election is applied: the next metadata shows it.
        assert leader_of(admin, topic) == preferred
        # A second run: ELECTION_NOT_NEEDED.
        out = kafka_tools("LeaderElectionCommand", "--bootstrap-server", bootstrap(nodes), "--election-type", "preferred",
                          "--topic", topic, "--partition", "0").stdout
        assert f"Valid replica already elected for partitions {topic}-0" in out, out
        # The runnel CLI says the same.
        out = cli(bootstrap(nodes), "topic", "elect-leaders", topic).stdout
        assert out.strip() == f"{topic}\t0\tnot needed (the wanted leader already leads)", out
        # Unknown partitions fail the command with Kafka's error.
        proc = cli(bootstrap(nodes), "topic", "elect-leaders", topic, "--partition", "5", check=False)
        assert proc.returncode != 0 and "UnknownTopicOrPartition" in proc.stdout + proc.stderr, proc.stdout + proc.stderr

        # The records are all there, on the preferred leader again.
        produce(producer, topic, [f"after{i}" for i in range(10)])
    finally:
        for node in nodes:
            node.cleanup()


def test_runnel_cluster_describe_on_one_node(make_broker):
    broker = make_broker({"node.id": "3", "broker.rack": "rack-a"})
    out = cli(broker.bootstrap, "cluster", "describe").stdout
    assert re.search(r"^cluster-id\t[A-Za-z0-9_-]{22}$", out, re.M), out
    assert re.search(r"^controller\t3$", out, re.M), out
    assert re.search(rf"^3\t127\.0\.0\.1:{broker.port}\track-a\tactive, controller$", out, re.M), out
    assert re.search(r"^quorum-leader\t3$", out, re.M), out
    assert re.search(r"^3\t\d+\t0\t\d+\tleader$", out, re.M), out


def test_quorum_election_timeout_is_configured_with_kafkas_name(kafka_tools, tmp_path):
    from confluent_kafka.admin import ConfigResource
    voters = ",".join(f"{i + 1}@127.0.0.1:{free_port()}" for i in range(3))
    settings = dict(FAST_CLUSTER, **{"controller.quorum.voters": voters, "controller.quorum.election.timeout.ms": "300"})
    nodes = [Broker(dict(settings, **{"node.id": str(i + 1)})) for i in range(3)]
    try:
        for node in nodes:
            node.start()
        admin = AdminClient({"bootstrap.servers": bootstrap(nodes)})
        wait_until("three live brokers", lambda: len(admin.list_topics(timeout=5).brokers) == 3)
        described = admin.describe_configs([ConfigResource("broker", "1")])
        entry = list(described.values())[0].result(10)["controller.quorum.election.timeout.ms"]
        assert entry.value == "300" and not entry.is_default, entry

        # The quorum leader dies; the survivors elect another and the controller keeps deciding.
        leader = int(quorum_status(kafka_tools, nodes[0].bootstrap)["LeaderId"])
        nodes[leader - 1].kill9()
        survivors = [n for n in nodes if n.alive()]
        wait_until("a new quorum leader", lambda: int(quorum_status(kafka_tools, survivors[0].bootstrap)["LeaderId"]) not in (leader, -1))
        survivor_admin = AdminClient({"bootstrap.servers": bootstrap(survivors)})
        survivor_admin.create_topics([NewTopic("after-election", num_partitions=1, replication_factor=2)])["after-election"].result(30)
    finally:
        for node in nodes:
            node.cleanup()

    # Out of range: refused at start, naming the key.
    refused = subprocess.run([RUNNEL, "serve", "--data-dir", str(tmp_path / "data"), "--set", "controller.quorum.election.timeout.ms=5"],
                             capture_output=True, timeout=30)
    assert refused.returncode != 0 and b"controller.quorum.election.timeout.ms" in refused.stderr, refused.stderr
