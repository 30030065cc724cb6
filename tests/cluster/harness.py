"""Real broker processes for the fault tests: Apache Kafka or Runnel, one
network namespace per node.

Topology (``NamespaceNetwork``, needs root, `ip` and `nft`): a hub namespace
holds a bridge; each node's namespace is joined to it by a veth pair, and the
test process (in the root namespace) by one more, so clients reach every node
and a node can be cut off from its peers alone (nft rules inside its
namespace drop its traffic to and from the other nodes, clients still reach
it) or entirely (its link down). Every name carries a per-run id, and the
owner's pid is recorded in /run/runnel-faults, so parallel runs do not collide
and a crashed run's namespaces are removed by the next run. Without root or
`nft`, ``LoopbackNetwork`` runs the nodes on 127.0.0.1 and network faults are
skipped (loudly).

Both backends get the same ``server.properties`` (Kafka's names; Runnel takes
them as they are). ``Cluster`` starts, stops, kills, pauses and wipes nodes and
answers "who leads partition p" / "who is the active controller" from the
nodes themselves. Every wait is bounded.
"""
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNEL = os.environ.get("RUNNEL_BIN", os.path.join(ROOT, "target", "release", "runnel"))
KAFKA_LIBS = os.environ.get("KAFKA_LIBS", os.path.join(ROOT, "target", "kafka", "libs"))
STATE_DIR = "/run/runnel-faults"
PREFIX = "rnf"  # every namespace and interface of the harness starts with this

BROKER_PORT = 9092
CONTROLLER_PORT = 9093


class Unavailable(Exception):
    """The harness cannot run here (not root, a tool missing): tests skip with this message."""


def run(*argv, check=True, timeout=30, input=None):
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test process dies, however it
    dies (a crashed run must not leave brokers and clients running)."""
    import ctypes
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout, interval=0.2, what="condition"):
    """Polls predicate until it returns something truthy; raises TimeoutError after timeout."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # a node may be down mid-fault: keep polling
            last_error = e
        time.sleep(interval)
    raise TimeoutError(f"{what}: not reached within {timeout}s" + (f" (last error: {last_error})" if last_error else ""))


# ---------------------------------------------------------------- networks

def _pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


class LoopbackNetwork:
    """Every node on 127.0.0.1 with its own ports; no network faults."""
    namespaces = False

    def __init__(self, nodes):
        self.nodes = nodes
        self.ports = {i: (free_port(), free_port()) for i in range(1, nodes + 1)}

    def address(self, node_id):
        return "127.0.0.1"

    def broker_port(self, node_id):
        return self.ports[node_id][0]

    def controller_port(self, node_id):
        return self.ports[node_id][1]

    def wrap(self, node_id, argv):
        return argv

    def isolate(self, node_id, from_clients=False):
        raise Unavailable("network faults need network namespaces (root, `ip`, `nft`)")

    heal = isolate

    def close(self):
        pass


class NamespaceNetwork:
    """One network namespace per node, joined to a bridge in a hub namespace."""
    namespaces = True

    @staticmethod
    def available():
        if os.geteuid() != 0:
            return "not root"
        for tool in ("ip", "nft"):
            if shutil.which(tool) is None:
                return f"`{tool}` is not installed (scripts/test.sh installs nftables)"
        return None

    @staticmethod
    def remove_leftovers():
        """Namespaces and interfaces of runs whose owner process is gone."""
        os.makedirs(STATE_DIR, exist_ok=True)
        for entry in os.listdir(STATE_DIR):
            run_id = entry[:-len(".pid")] if entry.endswith(".pid") else None
            if run_id is None:
                continue
            try:
                with open(os.path.join(STATE_DIR, entry)) as f:
                    owner = int(f.read().strip() or 0)
            except (OSError, ValueError):
                owner = 0
            if owner and _pid_alive(owner):
                continue
            NamespaceNetwork._remove(run_id)
            try:
                os.unlink(os.path.join(STATE_DIR, entry))
            except FileNotFoundError:
                pass
        # Namespaces of ours with no state file at all (the state dir was wiped).
        known = {e[:-4] for e in os.listdir(STATE_DIR) if e.endswith(".pid")}
        for line in run("ip", "netns", "list").stdout.splitlines():
            name = line.split()[0] if line.split() else ""
            m = re.fullmatch(PREFIX + r"([0-9a-f]{6})-\w+", name)
            if m and m.group(1) not in known:
                NamespaceNetwork._remove(m.group(1))

    @staticmethod
    def _remove(run_id):
        names = [line.split()[0] for line in run("ip", "netns", "list").stdout.splitlines() if line.split()]
        for name in names:
            if name.startswith(f"{PREFIX}{run_id}-"):
                # Processes still inside die first, or the namespace lingers.
                for pid in run("ip", "netns", "pids", name, check=False).stdout.split():
                    try:
                        os.kill(int(pid), signal.SIGKILL)
                    except (ProcessLookupError, ValueError):
                        pass
                run("ip", "netns", "del", name, check=False)
        run("ip", "link", "del", f"{PREFIX}{run_id}h", check=False)

    def __init__(self, nodes):
        why = self.available()
        if why:
            raise Unavailable(why)
        self.remove_leftovers()
        self.nodes = nodes
        self.run_id = uuid.uuid4().hex[:6]
        with open(os.path.join(STATE_DIR, self.run_id + ".pid"), "w") as f:
            f.write(str(os.getpid()))
        self.subnet = self._pick_subnet()
        self.hub = f"{PREFIX}{self.run_id}-hub"
        self.host_if = f"{PREFIX}{self.run_id}h"
        self.isolated = {}
        try:
            self._create()
        except Exception:
            self.close()
            raise

    def _pick_subnet(self):
        """A 10.x.y.0/24 no route of this machine covers (addresses only inside our namespaces)."""
        routes = run("ip", "-4", "route", "show", "table", "all").stdout
        used = set(re.findall(r"\b10\.(\d+)\.(\d+)\.", routes))
        for _ in range(200):
            b, c = random.randint(200, 250), random.randint(0, 255)
            if (str(b), str(c)) not in used and f"10.{b}.0.0/16" not in routes and "10.0.0.0/8" not in routes:
                return f"10.{b}.{c}"
        raise Unavailable("no free 10.x.y.0/24 subnet for the test namespaces")

    def ns(self, node_id):
        return f"{PREFIX}{self.run_id}-n{node_id}"

    def address(self, node_id):
        return f"{self.subnet}.{10 + node_id}"

    def broker_port(self, node_id):
        return BROKER_PORT

    def controller_port(self, node_id):
        return CONTROLLER_PORT

    def _create(self):
        hub = self.hub
        run("ip", "netns", "add", hub)
        run("ip", "-n", hub, "link", "add", "br0", "type", "bridge")
        run("ip", "-n", hub, "link", "set", "br0", "up")
        # The test process's own leg: the root namespace reaches the nodes through it.
        run("ip", "link", "add", self.host_if, "type", "veth", "peer", "name", "host", "netns", hub)
        run("ip", "-n", hub, "link", "set", "host", "master", "br0", "up")
        run("ip", "addr", "add", f"{self.subnet}.1/24", "dev", self.host_if)
        run("ip", "link", "set", self.host_if, "up")
        for i in range(1, self.nodes + 1):
            ns = self.ns(i)
            veth = f"{PREFIX}{self.run_id}n{i}"
            run("ip", "netns", "add", ns)
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", hub, "link", "add", f"n{i}", "type", "veth", "peer", "name", veth, "netns", ns)
            run("ip", "-n", hub, "link", "set", f"n{i}", "master", "br0", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", veth)
            run("ip", "-n", ns, "link", "set", veth, "up")

    def wrap(self, node_id, argv):
        # `ip netns exec` execs the command itself: the pid we get is the broker's.
        return ["ip", "netns", "exec", self.ns(node_id)] + list(argv)

    def isolate(self, node_id, from_clients=False):
        """Cuts node_id off from the other nodes (and from the clients too if asked):
        packets are dropped, as on a broken link, so connections hang rather than fail fast."""
        if from_clients:
            run("ip", "-n", self.hub, "link", "set", f"n{node_id}", "down")
        else:
            peers = ", ".join(self.address(i) for i in range(1, self.nodes + 1) if i != node_id)
            rules = (
                "table inet runnel_fault {\n"
                f"  chain in {{ type filter hook input priority 0; policy accept; ip saddr {{ {peers} }} drop; }}\n"
                f"  chain out {{ type filter hook output priority 0; policy accept; ip daddr {{ {peers} }} drop; }}\n"
                "}\n")
            run("ip", "netns", "exec", self.ns(node_id), "nft", "-f", "-", input=rules)
        self.isolated[node_id] = from_clients

    def heal(self, node_id):
        from_clients = self.isolated.pop(node_id, None)
        if from_clients:
            run("ip", "-n", self.hub, "link", "set", f"n{node_id}", "up")
        elif from_clients is not None:
            run("ip", "netns", "exec", self.ns(node_id), "nft", "delete", "table", "inet", "runnel_fault")

    def close(self):
        self._remove(self.run_id)
        try:
            os.unlink(os.path.join(STATE_DIR, self.run_id + ".pid"))
        except FileNotFoundError:
            pass


# ---------------------------------------------------------------- backends

def server_properties(node_id, listen_host, broker_port, controller_port, voters, data_dir, settings):
    """One node's config with Kafka's names; Runnel reads the same file."""
    lines = [
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={voters}",
        f"listeners=PLAINTEXT://{listen_host}:{broker_port},CONTROLLER://{listen_host}:{controller_port}",
        f"advertised.listeners=PLAINTEXT://{listen_host}:{broker_port}",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "controller.listener.names=CONTROLLER",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
    ]
    lines += [f"{k}={v}" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


class KafkaBackend:
    """Apache Kafka 4.3.1 from scripts/kafka.sh's Maven install (target/kafka/libs)."""
    name = "kafka"

    def __init__(self):
        if not os.path.isdir(KAFKA_LIBS) or not any(n.startswith("kafka_2.13-") for n in os.listdir(KAFKA_LIBS)):
            proc = run(os.path.join(ROOT, "scripts", "kafka.sh"), "install", check=False, timeout=900)
            if proc.returncode != 0:
                raise Unavailable(f"Apache Kafka could not be installed: {proc.stderr[-2000:]}")
        self.cluster_id = None

    @staticmethod
    def java(heap, log4j):
        return [shutil.which("java") or "java", *heap.split(), "-XX:+UseG1GC", "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={log4j}", "-cp", os.path.join(KAFKA_LIBS, "*")]

    def prepare(self, cluster):
        self.cluster_id = self.cluster_id or _kafka_cluster_id()
        self.log4j = os.path.join(cluster.workdir, "log4j2.properties")
        with open(self.log4j, "w") as f:
            f.write("rootLogger.level = INFO\nrootLogger.appenderRef.stdout.ref = STDOUT\n"
                    "appender.stdout.type = Console\nappender.stdout.name = STDOUT\n"
                    "appender.stdout.layout.type = PatternLayout\n"
                    "appender.stdout.layout.pattern = [%d] %p %m (%c)%n\n")

    def format(self, node):
        """Kafka needs formatted storage (meta.properties with the cluster id) before it starts."""
        os.makedirs(node.data_dir, exist_ok=True)
        run(*self.java("-Xmx256m", self.log4j), "kafka.tools.StorageTool", "format", "-t", self.cluster_id,
            "-c", node.config_path, timeout=120)

    def command(self, node):
        heap = os.environ.get("KAFKA_HEAP", "-Xmx384m -Xms128m")
        return self.java(heap, self.log4j) + ["kafka.Kafka", node.config_path]

    def ready(self, node):
        # Logged once the broker is registered, unfenced and serving.
        return "Kafka Server started" in node.log_since_start()


class RunnelBackend:
    name = "runnel"

    def __init__(self):
        if not os.access(RUNNEL, os.X_OK):
            raise Unavailable(f"{RUNNEL} is not built (cargo build --release)")

    def prepare(self, cluster):
        pass

    def format(self, node):
        os.makedirs(node.data_dir, exist_ok=True)

    def command(self, node):
        return [RUNNEL, "serve", "--config", node.config_path]

    def ready(self, node):
        # Printed once `runnel serve` serves. Its port accepts connections
        # earlier (bound first, served only once registered and unfenced), so
        # a connect would call a node ready that the controller does not count
        # yet: CreateTopics with RF 3 then fails with INVALID_REPLICATION_FACTOR.
        return "runnel: serving Kafka clients on" in node.log_since_start()


def _kafka_cluster_id():
    import base64
    # One id in 64 would begin with "-", which kafka-storage's parser takes for
    # an option (Kafka's Uuid.randomUuid never makes one): draw again.
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


BACKENDS = {"kafka": KafkaBackend, "runnel": RunnelBackend}


# ---------------------------------------------------------------- nodes and the cluster

class Node:
    def __init__(self, cluster, node_id):
        self.cluster = cluster
        self.id = node_id
        self.dir = os.path.join(cluster.workdir, f"node-{node_id}")
        self.data_dir = os.path.join(self.dir, "data")
        self.config_path = os.path.join(self.dir, "server.properties")
        self.log_path = os.path.join(self.dir, "node.log")
        self.host = cluster.network.address(node_id)
        self.port = cluster.network.broker_port(node_id)
        self.proc = None
        self.paused = False
        self._log_start = 0
        os.makedirs(self.dir, exist_ok=True)

    @property
    def bootstrap(self):
        return f"{self.host}:{self.port}"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def log_since_start(self):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, n=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-n:]
        except OSError:
            return "(no log)"

    def start(self, wait=True, timeout=120):
        assert not self.alive(), f"node {self.id} is already running"
        self._log_start = os.path.getsize(self.log_path) if os.path.exists(self.log_path) else 0
        log = open(self.log_path, "ab")
        log.write(f"\n===== harness: starting node {self.id} at {time.strftime('%H:%M:%S')}\n".encode())
        log.flush()
        self._log_start = log.tell()
        argv = self.cluster.network.wrap(self.id, self.cluster.backend.command(self))
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, cwd=self.dir,
                                     preexec_fn=die_with_parent,
                                     env=dict(os.environ, RUNNEL_LOG=os.environ.get("RUNNEL_LOG", "info")))
        log.close()
        self.paused = False
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=120):
        def ready():
            if not self.alive():
                raise AssertionError(f"node {self.id} exited during start ({self.proc.returncode}):\n{self.log_tail()}")
            return self.cluster.backend.ready(self)
        try:
            wait_until(ready, timeout, what=f"node {self.id} ready")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.log_tail()}") from None

    def signal(self, sig):
        if self.alive():
            os.kill(self.proc.pid, sig)

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self.paused = False

    def terminate(self, timeout=60):
        """SIGTERM (a controlled shutdown) and wait for the exit; returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        if self.paused:
            self.resume()
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            raise AssertionError(f"node {self.id} ignored SIGTERM for {timeout}s:\n{self.log_tail()}")

    def pause(self):
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self):
        self.signal(signal.SIGCONT)
        self.paused = False

    def wipe(self):
        """Deletes the node's data directory (the node must be down) and formats it anew."""
        assert not self.alive(), "wipe a stopped node"
        shutil.rmtree(self.data_dir, ignore_errors=True)
        self.cluster.backend.format(self)


class Cluster:
    """N combined broker+controller nodes of one backend."""

    def __init__(self, backend="runnel", nodes=3, settings=None, network=None, workdir=None):
        self.backend = BACKENDS[backend]() if isinstance(backend, str) else backend
        self.size = nodes
        self.own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix=f"runnel-cluster-{self.backend.name}-")
        if network is None:
            network = "netns" if NamespaceNetwork.available() is None else "loopback"
        self.network = NamespaceNetwork(nodes) if network == "netns" else LoopbackNetwork(nodes)
        self.settings = dict(default_settings(nodes))
        self.settings.update(settings or {})
        self.nodes = {i: Node(self, i) for i in range(1, nodes + 1)}
        voters = ",".join(f"{i}@{self.network.address(i)}:{self.network.controller_port(i)}" for i in self.nodes)
        for node in self.nodes.values():
            with open(node.config_path, "w") as f:
                f.write(server_properties(node.id, node.host, node.port, self.network.controller_port(node.id),
                                          voters, node.data_dir, self.settings))

    @property
    def bootstrap(self):
        return ",".join(n.bootstrap for n in self.nodes.values())

    def start(self, timeout=180):
        self.backend.prepare(self)
        for node in self.nodes.values():
            self.backend.format(node)
        for node in self.nodes.values():
            node.start(wait=False)
        for node in self.nodes.values():
            node.wait_ready(timeout)
        return self

    def close(self):
        for node in self.nodes.values():
            if node.paused:
                node.resume()
            node.kill9()
        self.network.close()

    def cleanup_files(self):
        if self.own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # ------------------------------------------------------------ what the nodes say

    def metadata(self, topic, node=None, timeout=5.0):
        """Partition metadata as one node (by default any live one) sees it:
        {partition: (leader, replicas, isr)}; leader -1 when there is none."""
        from kafka.protocol.metadata import MetadataRequest
        candidates = [node] if node is not None else [n for n in self.nodes.values() if n.alive() and not n.paused]
        last_error = None
        for n in candidates:
            try:
                response = self._ask(n, MetadataRequest[1](topics=[topic]), timeout)
                topics = [t for t in response.topics if t[1] == topic]
                if not topics or topics[0][0] != 0:
                    raise LookupError(f"node {n.id}: topic {topic} error {topics[0][0] if topics else 'missing'}")
                return {p[1]: (p[2], list(p[3]), list(p[4])) for p in topics[0][3]}
            except Exception as e:
                last_error = e
        raise ConnectionError(f"no node answered Metadata: {last_error}")

    def leader(self, topic, partition, node=None):
        return self.metadata(topic, node)[partition][0]

    def ask(self, node_id, request, timeout=5.0):
        """Sends one kafka-python protocol request to one node and returns its
        answer (ConnectionError when it does not answer in time)."""
        return self._ask(self.nodes[node_id], request, timeout)

    @staticmethod
    def _ask(n, request, timeout):
        from kafka.conn import BrokerConnection
        conn = BrokerConnection(n.host, n.port, socket.AF_INET, request_timeout_ms=int(timeout * 1000),
                                api_version=(2, 1))
        try:
            conn.connect_blocking(timeout)
            if not conn.connected():
                raise ConnectionError(f"cannot connect to node {n.id}")
            future = conn.send(request)
            deadline = time.monotonic() + timeout
            while not future.is_done and time.monotonic() < deadline:
                for response, f in conn.recv():
                    f.success(response)
                time.sleep(0.01)
            if not future.is_done or future.failed():
                raise ConnectionError(f"no answer from node {n.id} to {type(request).__name__}")
            return future.value
        finally:
            conn.close()

    def controller(self):
        """The active controller (the metadata quorum's leader), from DescribeQuorum."""
        if self.size == 1:
            return 1
        # Kafka's own tool (kafka-tools, from scripts/kafka.sh's install) asks the live nodes.
        live = ",".join(n.bootstrap for n in self.nodes.values() if n.alive() and not n.paused)
        proc = run(*KafkaBackend.java("-Xmx128m", os.devnull), "org.apache.kafka.tools.MetadataQuorumCommand",
                   "--bootstrap-server", live, "describe", "--status", check=False, timeout=60)
        m = re.search(r"LeaderId:\s*(\d+)", proc.stdout)
        if not m:
            raise RuntimeError(f"DescribeQuorum gave no leader: {proc.stdout[-500:]} {proc.stderr[-1500:]}")
        return int(m.group(1))

    def create_topic(self, topic, partitions, replication, min_insync, timeout=60):
        from confluent_kafka.admin import AdminClient, NewTopic
        admin = AdminClient({"bootstrap.servers": self.bootstrap})
        new = NewTopic(topic, num_partitions=partitions, replication_factor=replication,
                       config={"min.insync.replicas": str(min_insync)})
        admin.create_topics([new], request_timeout=30)[topic].result(timeout=timeout)
        self.wait_healthy(topic, partitions, replication, timeout)

    def wait_healthy(self, topic, partitions, replication, timeout=120):
        """Every node up, and every partition led with a full ISR in every node's view."""
        def healthy():
            if not all(n.alive() and not n.paused for n in self.nodes.values()):
                return False
            for n in self.nodes.values():
                meta = self.metadata(topic, n)
                if len(meta) != partitions:
                    return False
                for leader, replicas, isr in meta.values():
                    if leader < 0 or len(replicas) != replication or sorted(isr) != sorted(replicas):
                        return False
            return True
        wait_until(healthy, timeout, interval=0.5, what=f"topic {topic} fully replicated on every node")


def default_settings(nodes):
    """Test settings for both backends: short failure detection, so each fault cycle takes seconds."""
    replication = 3 if nodes >= 3 else 1
    return {
        "broker.session.timeout.ms": 3000,
        "broker.heartbeat.interval.ms": 500,
        "replica.lag.time.max.ms": 5000,
        "default.replication.factor": replication,
        "min.insync.replicas": 2 if nodes >= 3 else 1,
        "offsets.topic.replication.factor": replication,
        "offsets.topic.num.partitions": 5,
        "transaction.state.log.replication.factor": replication,
        "transaction.state.log.min.isr": 2 if nodes >= 3 else 1,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "unclean.leader.election.enable": "false",
    }
