"""The faults of issue 11's "Proof", one cycle each, and the run that wraps
them in the workload and the checker. Used by test_faults.py (a few cycles,
CI) and soak.py (hundreds, scripts/soak.sh).

A fault function takes a ``Run`` and injects one fault, waits for the cluster
to react (a new leader, a new controller), heals it and waits until every
partition is fully replicated again; it returns a short description. Waits
are bounded; a fault that the cluster does not survive raises.
"""
import os
import random
import signal
import time
import uuid

import checker
import harness
import workload as workload_mod

# Faults that need more than one node (a new leader must come from elsewhere)
# or network namespaces; the others make sense on a single node too.
MULTI_NODE = {"kill-controller", "partition-leader", "partition-coordinator", "wipe-node"}
NEEDS_NAMESPACES = {"partition-leader", "partition-coordinator"}


class Run:
    """A topic, the workload on it, and what the faults need to know."""

    def __init__(self, cluster, partitions=6, rate=100.0, java=True, log=print, max_seconds=900):
        self.cluster = cluster
        self.partitions = partitions
        self.replication = 3 if cluster.size >= 3 else 1
        self.min_insync = 2 if cluster.size >= 3 else 1
        self.topic = "faults-" + uuid.uuid4().hex[:8]
        self.workdir = os.path.join(cluster.workdir, self.topic)
        self.rate = rate
        self.java = java
        self.max_seconds = max_seconds  # the writers' and readers' own time limit
        self.log = log
        self.workload = None
        self.rng = random.Random()
        # How long a node stays failed: past broker.session.timeout.ms, so the
        # controller must notice.
        self.session_timeout = int(cluster.settings["broker.session.timeout.ms"]) / 1000.0

    def start(self):
        self.cluster.create_topic(self.topic, self.partitions, self.replication, self.min_insync)
        self.workload = workload_mod.Workload(self.cluster, self.topic, self.partitions, self.workdir,
                                              rate=self.rate, java=self.java, max_seconds=self.max_seconds)
        self.workload.start()
        # The workload is running before the first fault: both writers acknowledged.
        if not self.workload.wait_acks(50, 90):
            raise AssertionError("the workload got no acknowledgements before the faults started:\n"
                                 + "\n".join(self.workload.output(w) for w in self.workload.producers))

    def healthy(self, timeout=180):
        """The data topic, and the group's __consumer_offsets once it exists, fully
        replicated: the next fault starts from a healthy cluster, as an operator's
        next step would (a kill-all leaves one ISR member per partition until the
        others catch up; wiping that member's disk then would lose the group's
        commits on any broker)."""
        started = time.monotonic()
        self.cluster.wait_healthy(self.topic, self.partitions, self.replication, timeout)
        offsets_partitions = int(self.cluster.settings.get("offsets.topic.num.partitions", 0))
        if offsets_partitions and self._offsets_topic_exists():
            left = max(30.0, timeout - (time.monotonic() - started))
            self.cluster.wait_healthy("__consumer_offsets", offsets_partitions, self.replication, left)

    def _offsets_topic_exists(self):
        try:
            return bool(self.cluster.metadata("__consumer_offsets"))
        except (LookupError, ConnectionError):
            return False

    def progressing(self, timeout=120):
        """The writers get acknowledgements again after the fault (liveness)."""
        before = self.workload.acked_count()
        if not self.workload.wait_acks(before + 20, timeout):
            raise AssertionError(f"no new acknowledgements within {timeout}s after the fault")

    def random_partition(self):
        return self.rng.randrange(self.partitions)

    def leader(self, partition):
        return harness.wait_until(lambda: _positive(self.cluster.leader(self.topic, partition)), 30,
                                  what=f"a leader for partition {partition}")

    def wait_new_leader(self, partition, old, ask=None, timeout=60, topic=None):
        """Waits until the cluster (as the nodes in `ask` see it) names a leader other than `old`."""
        ask = ask or [n for i, n in self.cluster.nodes.items() if i != old]
        topic = topic or self.topic
        def moved():
            leaders = {self.cluster.leader(topic, partition, node) for node in ask}
            return len(leaders) == 1 and -1 not in leaders and old not in leaders and leaders.pop()
        return harness.wait_until(moved, timeout, interval=0.2,
                                  what=f"a new leader for {topic} partition {partition} (old: node {old})")

    def finish(self, group_timeout=180):
        """Stops the writers, waits for the group, reads everything back and checks it.
        Returns (anomalies, stats)."""
        # A writer that died (a fatal client error) fails the run, after the
        # checker has judged what it had acknowledged until then.
        writer_errors = self.workload.stop_producers()
        history = self.workload.history()
        log, ends = workload_mod.read_back(self.cluster.bootstrap, self.topic, self.partitions)
        finished = self.workload.wait_group_finished(ends, group_timeout)
        self.workload.stop()
        anomalies = checker.check(history["sent"], history["acks"], log, ends,
                                  self.workload.samples, self.workload.final_commits())
        stats = {
            "sent": sum(len(s) for s in history["sent"].values()),
            "acked": len(history["acks"]),
            "failed": history["failures"],
            "in_log": sum(len(r) for r in log.values()),
            "commit_samples": len(self.workload.samples),
            "group_finished": finished,
            "unfinished_writers": history["unfinished_writers"],
            "writer_errors": writer_errors,
        }
        return anomalies, stats


def _positive(leader):
    return leader if leader is not None and leader >= 0 else None


# ---------------------------------------------------------------- the faults

def kill_leader(run):
    """kill -9 of a partition's leader; on a cluster another replica must take over."""
    p = run.random_partition()
    old = run.leader(p)
    node = run.cluster.nodes[old]
    node.kill9()
    if run.cluster.size > 1:
        new = run.wait_new_leader(p, old)
        what = f"killed node {old} (leader of {p}), node {new} took over"
    else:
        time.sleep(run.session_timeout)
        what = f"killed node {old}"
    node.start()
    run.healthy()
    return what


def kill_controller(run):
    """kill -9 of the active controller; a new one must be elected."""
    old = run.cluster.controller()
    node = run.cluster.nodes[old]
    node.kill9()
    new = harness.wait_until(lambda: (lambda c: c != old and c)(run.cluster.controller()), 60,
                             interval=0.5, what=f"a new active controller (old: node {old})")
    node.start()
    run.healthy()
    return f"killed controller {old}, node {new} took over"


def rolling_restart(run):
    """SIGTERM (controlled shutdown) and restart of every node, one after the other."""
    codes = []
    for node in run.cluster.nodes.values():
        code = node.terminate(timeout=90)
        codes.append(code)
        node.start()
        run.healthy()
    if any(c not in (0, 143, -signal.SIGTERM) for c in codes):
        raise AssertionError(f"a node exited with {codes} on SIGTERM")
    return f"rolling restart, exit codes {codes}"


def partition_leader(run):
    """Cuts a partition's leader off from the other nodes (clients still reach it):
    a new leader must take over; on rejoin the old one truncates its unacknowledged tail."""
    p = run.random_partition()
    old = run.leader(p)
    run.cluster.network.isolate(old)
    try:
        new = run.wait_new_leader(p, old, timeout=90)
        time.sleep(run.session_timeout)  # the old leader keeps receiving produces meanwhile
    finally:
        run.cluster.network.heal(old)
    run.healthy()
    return f"isolated node {old} (leader of {p}), node {new} took over"


def _java_string_hash(s):
    """Java's String.hashCode (unsigned), which Kafka maps a group to its partition with."""
    units = s.encode("utf-16-be")
    h = 0
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h


def partition_coordinator(run):
    """Cuts the consumer group's coordinator (the leader of the group's
    __consumer_offsets partition) off from the other nodes (clients still reach
    it): another node must take the group over, and the sampler must never read
    committed offsets older than it read before. On Runnel the isolated node,
    its session with the controller lapsed, must also stop answering for the
    group: FindCoordinator and OffsetFetch sent to it directly get
    COORDINATOR_NOT_AVAILABLE / NOT_COORDINATOR, not its stale cache."""
    from kafka.protocol.commit import OffsetFetchRequest
    from kafka.protocol.find_coordinator import FindCoordinatorRequest
    group = run.workload.group
    offsets = harness.wait_until(lambda: run._offsets_topic_exists() and run.cluster.metadata("__consumer_offsets"),
                                 60, what="the __consumer_offsets topic")
    p = (_java_string_hash(group) & 0x7FFFFFFF) % len(offsets)
    old = harness.wait_until(lambda: _positive(run.cluster.leader("__consumer_offsets", p)), 30,
                             what=f"a leader for __consumer_offsets partition {p}")
    run.cluster.network.isolate(old)
    try:
        new = run.wait_new_leader(p, old, timeout=90, topic="__consumer_offsets")
        time.sleep(run.session_timeout)  # the members and the sampler go on meanwhile
        found = run.cluster.ask(old, FindCoordinatorRequest[1](group, 0))
        fetched = run.cluster.ask(old, OffsetFetchRequest[3](group, [(run.topic, list(range(run.partitions)))]))
    finally:
        run.cluster.network.heal(old)
    run.healthy()
    partition_errors = {e for _, partitions in fetched.topics for (_, _, _, e) in partitions}
    refused = fetched.error_code in (15, 16) or (partition_errors and partition_errors <= {15, 16})
    answers = (f"FindCoordinator: error {found.error_code} coordinator {found.coordinator_id}; "
               f"OffsetFetch: error {fetched.error_code}, partition errors {sorted(partition_errors)}")
    if run.cluster.backend.name == "runnel" and not (refused and (found.error_code != 0 or found.coordinator_id != old)):
        raise AssertionError(f"isolated node {old} still answered for group {group} after its session lapsed: {answers}")
    return f"isolated node {old} (coordinator, __consumer_offsets-{p}), node {new} took over; the isolated node's {answers}"


def pause_leader(run):
    """SIGSTOP of a partition's leader past the session timeout, then SIGCONT:
    the zombie must be fenced (its late answers must not acknowledge anything lost)."""
    p = run.random_partition()
    old = run.leader(p)
    node = run.cluster.nodes[old]
    node.pause()
    try:
        if run.cluster.size > 1:
            new = run.wait_new_leader(p, old, timeout=90)
            time.sleep(1.0)
            what = f"paused node {old} (leader of {p}), node {new} took over"
        else:
            time.sleep(run.session_timeout + 1)
            what = f"paused node {old} for {run.session_timeout + 1:.0f}s"
    finally:
        node.resume()
    run.healthy()
    return what


def kill_all(run):
    """kill -9 of every node at once, then restart them all."""
    for node in run.cluster.nodes.values():
        node.kill9()
    time.sleep(1.0)
    for node in run.cluster.nodes.values():
        node.start(wait=False)
    for node in run.cluster.nodes.values():
        node.wait_ready(180)
    run.healthy()
    return "killed every node"


def wipe_node(run):
    """kill -9 of one node (a follower of some partition), its data directory
    wiped, restarted: it must re-replicate."""
    victim = run.rng.choice(list(run.cluster.nodes))
    node = run.cluster.nodes[victim]
    node.kill9()
    node.wipe()
    node.start()
    run.healthy(timeout=240)
    return f"wiped node {victim}"


FAULTS = {
    "kill-leader": kill_leader,
    "kill-controller": kill_controller,
    "rolling-restart": rolling_restart,
    "partition-leader": partition_leader,
    "partition-coordinator": partition_coordinator,
    "pause-leader": pause_leader,
    "kill-all": kill_all,
    "wipe-node": wipe_node,
}


def applicable(fault, cluster):
    """None if the fault can run on this cluster, else why not."""
    if fault in MULTI_NODE and cluster.size < 3:
        return f"{fault} needs a cluster of 3 (this one has {cluster.size} node)"
    if fault in NEEDS_NAMESPACES and not cluster.network.namespaces:
        return f"{fault} needs network namespaces (root, `ip`, `nft`)"
    return None


def run_faults(cluster, faults, cycles, pause_between=2.0, log=print, rate=100.0, java=True):
    """The workload on a fresh topic, `cycles` rounds of the given faults, then the checker.
    Returns (anomalies, stats, events)."""
    run = Run(cluster, rate=rate, java=java, log=log)
    run.start()
    events = []
    try:
        for cycle in range(cycles):
            for name in faults:
                started = time.monotonic()
                what = FAULTS[name](run)
                run.progressing()
                events.append((name, what, time.monotonic() - started))
                log(f"cycle {cycle + 1}/{cycles} {name}: {what} ({time.monotonic() - started:.1f}s)")
                time.sleep(pause_between)
        anomalies, stats = run.finish()
    finally:
        if run.workload is not None:
            run.workload.stop()
    stats["topic"] = run.topic
    return anomalies, stats, events
