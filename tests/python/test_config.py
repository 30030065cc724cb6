"""Broker configuration and logging, checked through real `runnel serve`
processes: config files and flags in Kafka's forms, their precedence, what
Metadata advertises (confluent-kafka), the config reference, and the logs.

Every broker here listens on loopback only. The wildcard-listener cases
(0.0.0.0) run the broker inside a private network namespace (`unshare -n`),
whose only interface is its own loopback; they are skipped where namespaces
are not permitted.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from runnel_broker import ROOT, RUNNEL, free_port, wait_for_port  # noqa: E402

ANSI_ESCAPE = re.compile(rb"\x1b\[[0-9;]*[A-Za-z]")


class Serve:
    """A `runnel serve` with exactly the given arguments, in its own working directory."""

    def __init__(self, args, env=None):
        self.workdir = tempfile.mkdtemp(prefix="runnel-config-")
        self.log_path = os.path.join(self.workdir, "broker.log")
        self.args = list(args)
        self.env = dict(os.environ, **(env or {}))
        self.proc = None

    def path(self, *parts):
        return os.path.join(self.workdir, *parts)

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)

    def launch(self):
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [RUNNEL, "serve", *self.args], cwd=self.workdir, env=self.env,
                stdout=log, stderr=log, stdin=subprocess.DEVNULL,
            )
        return self

    def start(self, port, timeout=30.0):
        self.launch()
        if not wait_for_port(port, timeout, self.proc):
            raise AssertionError(f"runnel serve {self.args} did not listen on {port}:\n{self.log_text()}")
        return self

    def wait_exit(self, timeout=30.0):
        return self.proc.wait(timeout)

    def log_bytes(self):
        with open(self.log_path, "rb") as f:
            return f.read()

    def log_text(self):
        return self.log_bytes().decode("utf-8", "replace")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


@pytest.fixture
def serve():
    made = []

    def make(*args, env=None):
        s = Serve(args, env)
        made.append(s)
        return s

    yield make
    for s in made:
        s.cleanup()


def advertised_brokers(bootstrap):
    """(host, port) of every broker the Metadata response names."""
    from confluent_kafka.admin import AdminClient

    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=15)
    return sorted((b.host, b.port) for b in metadata.brokers.values())


def round_trip(bootstrap, timeout=30.0):
    """Produces one record and consumes it back through whatever the broker advertises."""
    from confluent_kafka import Consumer, Producer

    topic = "config-" + uuid.uuid4().hex[:8]
    value = uuid.uuid4().hex.encode()
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": int(timeout * 1000)})
    delivered = []
    producer.produce(topic, value, on_delivery=lambda err, msg: delivered.append(err))
    producer.flush(timeout)
    assert delivered == [None], f"produce through {bootstrap} failed: {delivered}"
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": "g-" + topic, "auto.offset.reset": "earliest",
    })
    try:
        consumer.subscribe([topic])
        deadline = time.time() + timeout
        while time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                assert msg.value() == value
                return
        raise AssertionError(f"no record consumed back through {bootstrap} within {timeout}s")
    finally:
        consumer.close()


def topic_dirs(data_dir):
    return [d for d in os.listdir(data_dir) if d.startswith("config-")] if os.path.isdir(data_dir) else []


def test_config_file_listeners_advertised_listeners_and_log_dirs_are_used(serve):
    port = free_port()
    s = serve("--config", "server.properties")
    data = s.path("kafka-logs")
    s.write("server.properties", (
        "# Kafka's forms\n"
        f"listeners=PLAINTEXT://127.0.0.1:{port}\n"
        f"advertised.listeners=PLAINTEXT://localhost:{port}\n"
        f"log.dirs={data}\n"
    ))
    s.start(port)
    assert advertised_brokers(f"127.0.0.1:{port}") == [("localhost", port)]
    round_trip(f"127.0.0.1:{port}")
    assert topic_dirs(data), f"log.dirs={data} holds no topic; broker log:\n{s.log_text()}"
    assert not os.path.exists(s.path("runnel-data")), "the default data directory was used instead of log.dirs"


def test_kraft_server_properties_with_a_controller_listener_and_log_dir(serve):
    """Kafka's own KRaft server.properties names a CONTROLLER listener; a single node ignores it."""
    port = free_port()
    s = serve("--config", "server.properties")
    data = s.path("logs-by-log-dir")
    s.write("server.properties", (
        "process.roles=broker,controller\n"
        "node.id=1\n"
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{free_port()}\n"
        "controller.listener.names=CONTROLLER\n"
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT\n"
        f"log.dir={data}\n"
    ))
    s.start(port)
    assert advertised_brokers(f"127.0.0.1:{port}") == [("127.0.0.1", port)]
    round_trip(f"127.0.0.1:{port}")
    assert topic_dirs(data)


def test_set_listeners_moves_the_advertised_address_too(serve):
    port = free_port()
    s = serve("--set", f"listeners=PLAINTEXT://127.0.0.1:{port}", "--data-dir", "data").start(port)
    assert advertised_brokers(f"127.0.0.1:{port}") == [("127.0.0.1", port)]
    round_trip(f"127.0.0.1:{port}")
    assert topic_dirs(s.path("data"))


def test_ipv6_listener(serve):
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    s = serve("--set", f"listeners=PLAINTEXT://[::1]:{port}", "--data-dir", "data").launch()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("::1", port), timeout=0.5).close()
            break
        except OSError:
            assert s.proc.poll() is None, s.log_text()
            time.sleep(0.05)
    assert advertised_brokers(f"[::1]:{port}") == [("::1", port)]
    round_trip(f"[::1]:{port}")


def test_port_zero_advertises_the_port_actually_bound(serve):
    s = serve("--listen", "127.0.0.1:0", "--data-dir", "data").launch()
    deadline, port = time.time() + 30, None
    while time.time() < deadline and port is None:
        found = re.search(r"serving Kafka clients on 127\.0\.0\.1:(\d+)", s.log_text())
        port = int(found.group(1)) if found else None
        assert s.proc.poll() is None, s.log_text()
        time.sleep(0.05)
    assert port, s.log_text()
    assert advertised_brokers(f"127.0.0.1:{port}") == [("127.0.0.1", port)]
    round_trip(f"127.0.0.1:{port}")


def test_precedence_flags_over_set_over_file_over_defaults(serve):
    file_port, set_port, flag_port = free_port(), free_port(), free_port()
    s = serve("--config", "server.properties", "--set", f"listeners=PLAINTEXT://127.0.0.1:{set_port}")
    s.write("server.properties", f"listeners=PLAINTEXT://127.0.0.1:{file_port}\nlog.dirs=from-file\nnum.partitions=3\n")
    s.start(set_port)
    assert advertised_brokers(f"127.0.0.1:{set_port}") == [("127.0.0.1", set_port)]
    round_trip(f"127.0.0.1:{set_port}")
    assert topic_dirs(s.path("from-file")), "log.dirs from the file is used when nothing overrides it"
    s.stop()

    s2 = serve("--config", "server.properties", "--set", f"listeners=PLAINTEXT://127.0.0.1:{set_port}",
               "--listen", f"127.0.0.1:{flag_port}", "--data-dir", "from-flag",
               "--advertised-listener", f"localhost:{flag_port}")
    s2.write("server.properties", f"listeners=PLAINTEXT://127.0.0.1:{file_port}\nlog.dirs=from-file\n"
             f"advertised.listeners=PLAINTEXT://127.0.0.1:{file_port}\n")
    s2.start(flag_port)
    assert advertised_brokers(f"127.0.0.1:{flag_port}") == [("localhost", flag_port)]
    round_trip(f"127.0.0.1:{flag_port}")
    assert topic_dirs(s2.path("from-flag")) and not topic_dirs(s2.path("from-file"))
    for unused in (file_port, set_port):
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", unused), timeout=1).close()


def test_environment_variables_count_as_the_flags(serve):
    port = free_port()
    s = serve("--set", "listeners=PLAINTEXT://127.0.0.1:1", env={"RUNNEL_LISTEN": f"127.0.0.1:{port}", "RUNNEL_DATA_DIR": "env-data"})
    s.start(port)
    round_trip(f"127.0.0.1:{port}")
    assert topic_dirs(s.path("env-data"))


@pytest.mark.parametrize("listeners,names", [
    ("SSL://127.0.0.1:{port}", ["listener SSL", "needs a key store", "ssl.keystore.location"]),
    ("SASL_PLAINTEXT://127.0.0.1:{port}", ["listener SASL_PLAINTEXT", "sasl.enabled.mechanisms="]),
])
def test_a_security_listener_with_kafkas_defaults_is_refused_naming_what_to_set(serve, listeners, names):
    # Kafka's defaults give no key store (an SSL listener needs one) and GSSAPI
    # (which Runnel does not serve): the broker refuses to start and says which
    # setting to give (tests/python/test_security.py starts these listeners with their settings).
    port = free_port()
    s = serve("--set", "listeners=" + listeners.format(port=port), "--data-dir", "data").launch()
    assert s.wait_exit() != 0
    log = s.log_text()
    assert all(name in log for name in names), log
    assert "panicked" not in log


def test_bad_listener_value_names_the_key_and_the_form(serve):
    s = serve("--set", "listeners=PLAINTEXT://localhost", "--data-dir", "data").launch()
    assert s.wait_exit() != 0
    log = s.log_text()
    assert "listeners" in log and "NAME://HOST:PORT" in log, log


# --- the wildcard listener, inside a private network namespace ---

def _bring_loopback_up():
    import fcntl
    import struct

    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sh", fcntl.ioctl(s, siocgifflags, struct.pack("16sh", b"lo", 0)))[1]
        fcntl.ioctl(s, siocsifflags, struct.pack("16sh", b"lo", flags | iff_up))


def _wildcard_probe(listen, hostname=None):
    """Runs inside the namespace: a broker on `listen`, and what Metadata advertises."""
    _bring_loopback_up()
    if hostname:
        socket.sethostname(hostname)
    port = free_port()
    s = Serve(["--listen", listen.format(port=port), "--data-dir", "data"])
    try:
        s.launch()
        listening = wait_for_port(port, 30, s.proc)
        result = {"port": port, "hostname": socket.gethostname(), "listening": listening}
        if listening:
            result["advertised"] = advertised_brokers(f"127.0.0.1:{port}")
        else:
            result["exit_code"] = s.proc.poll()
        result["log"] = s.log_text()
        print(json.dumps(result))
    finally:
        s.cleanup()


def run_in_private_network(listen, *, new_uts=False, hostname=None):
    unshare = shutil.which("unshare")
    if unshare is None or subprocess.run([unshare, "-n", "true"], capture_output=True).returncode != 0:
        pytest.skip("network namespaces are not permitted here (unshare -n)")
    flags = ["-n", "-u"] if new_uts else ["-n"]
    if new_uts and subprocess.run([unshare, *flags, "true"], capture_output=True).returncode != 0:
        pytest.skip("UTS namespaces are not permitted here (unshare -u)")
    code = (f"import sys; sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r}); "
            f"import test_config; test_config._wildcard_probe({listen!r}, {hostname!r})")
    proc = subprocess.run([unshare, *flags, sys.executable, "-c", code], capture_output=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    return json.loads(proc.stdout.decode().strip().splitlines()[-1])


@pytest.mark.parametrize("listen", ["0.0.0.0:{port}", "PLAINTEXT://:{port}"])
def test_wildcard_listener_advertises_the_hostname(listen):
    result = run_in_private_network(listen)
    assert result["listening"], result["log"]
    assert result["advertised"] == [[result["hostname"], result["port"]]], result["log"]
    assert "0.0.0.0" not in [host for host, _ in result["advertised"]]
    assert f"{result['hostname']}:{result['port']}" in result["log"], "the advertised address is logged at start"


def test_wildcard_listener_with_an_unresolvable_hostname_refuses_and_says_what_to_set():
    result = run_in_private_network("0.0.0.0:{port}", new_uts=True, hostname="runnel-no-such-host.invalid")
    assert not result["listening"] and result["exit_code"] not in (None, 0), result
    assert "advertised.listeners=PLAINTEXT://HOST:" in result["log"], result["log"]


# --- help and the config reference ---

def test_serve_help_lists_only_serve_options():
    out = subprocess.run([RUNNEL, "serve", "--help"], capture_output=True, timeout=30)
    assert out.returncode == 0
    text = out.stdout.decode()
    for option in ("--listen", "--data-dir", "--advertised-listener", "--config", "--set", "--log-format"):
        assert option in text, text
    for client_option in ("--brokers", "--client-config"):
        assert client_option not in text, text
    refused = subprocess.run([RUNNEL, "serve", "--brokers", "127.0.0.1:1"], capture_output=True, timeout=30)
    assert refused.returncode != 0 and b"--brokers" in refused.stderr


def test_client_options_work_before_and_after_the_subcommand(serve):
    port = free_port()
    serve("--listen", f"127.0.0.1:{port}", "--data-dir", "data").start(port)
    name = "config-" + uuid.uuid4().hex[:6]
    bootstrap = f"127.0.0.1:{port}"
    created = subprocess.run([RUNNEL, "topic", "create", name, "--brokers", bootstrap], capture_output=True, timeout=60)
    assert created.returncode == 0, created.stderr
    for argv in (["--brokers", bootstrap, "topic", "list"], ["topic", "list", "--brokers", bootstrap]):
        listed = subprocess.run([RUNNEL, *argv], capture_output=True, timeout=60)
        assert listed.returncode == 0 and f"{name}\t1" in listed.stdout.decode().splitlines(), (argv, listed)


def test_config_reference_is_generated_and_committed():
    generated = subprocess.run([RUNNEL, "serve", "--print-config-reference"], capture_output=True, timeout=30)
    assert generated.returncode == 0
    with open(os.path.join(ROOT, "docs", "configuration.md"), "rb") as f:
        assert f.read() == generated.stdout, "docs/configuration.md is stale: runnel serve --print-config-reference > docs/configuration.md"
    text = generated.stdout.decode()
    for key in ("listeners", "advertised.listeners", "log.dirs", "num.partitions", "auto.create.topics.enable", "retention.ms", "cleanup.policy"):
        assert f"| `{key}` |" in text


# --- logs ---

def test_logs_to_a_file_have_no_colour_codes(serve):
    port = free_port()
    s = serve("--listen", f"127.0.0.1:{port}", "--data-dir", "data").start(port)
    round_trip(f"127.0.0.1:{port}")
    s.stop()
    log = s.log_bytes()
    assert b"INFO" in log and b"broker started" in log
    assert not ANSI_ESCAPE.search(log), log[:500]


def test_json_log_lines_parse_and_runnel_log_still_filters(serve):
    port = free_port()
    s = serve("--listen", f"127.0.0.1:{port}", "--data-dir", "data", "--log-format", "json").start(port)
    round_trip(f"127.0.0.1:{port}")
    s.stop()
    lines = [line for line in s.log_text().splitlines() if line.strip()]
    events = [json.loads(line) for line in lines]
    assert any(e["level"] == "INFO" and e["fields"]["message"] == "broker started" for e in events), lines

    quiet = serve("--listen", f"127.0.0.1:{port}", "--data-dir", "data", "--log-format", "json", env={"RUNNEL_LOG": "warn"})
    quiet.start(port)
    quiet.stop()
    levels = {json.loads(line)["level"] for line in quiet.log_text().splitlines() if line.strip()}
    assert levels <= {"WARN", "ERROR"}, levels


def test_client_disconnects_are_not_logged_at_info(serve):
    port = free_port()
    s = serve("--listen", f"127.0.0.1:{port}", "--data-dir", "data").start(port)
    # Clients that go away abruptly: a reset (SO_LINGER 0) mid-frame, as a killed client does.
    import struct
    for _ in range(5):
        c = socket.create_connection(("127.0.0.1", port), timeout=5)
        c.sendall(struct.pack(">i", 100) + b"\x00\x12")
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    # And the CLI, start to end.
    subprocess.run([RUNNEL, "--brokers", f"127.0.0.1:{port}", "topic", "list"], capture_output=True, timeout=60, check=True)
    time.sleep(1)
    s.stop()
    lines = ANSI_ESCAPE.sub(b"", s.log_bytes()).decode("utf-8", "replace").splitlines()
    noisy = [line for line in lines if " INFO " in line and ("closing connection" in line or "connection closed" in line)]
    assert not noisy, "\n".join(noisy)


def test_os_errors_are_printed_once(serve):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        s = serve("--listen", f"127.0.0.1:{port}", "--data-dir", "data").launch()
        assert s.wait_exit() != 0
    log = s.log_text()
    assert f"cannot listen on 127.0.0.1:{port}" in log, log
    assert log.count("(os error 98)") == 1, log

    missing = serve("--config", "no-such-file.properties").launch()
    assert missing.wait_exit() != 0
    log = missing.log_text()
    assert "no-such-file.properties" in log and log.count("(os error 2)") == 1, log
