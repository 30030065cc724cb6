"""The runnel CLI's client commands against a running broker."""
import json
import subprocess
import uuid

from runnel_broker import RUNNEL


def cli(broker, *args, stdin=None, check=True):
    proc = subprocess.run([RUNNEL, "--brokers", broker.bootstrap, *args], input=stdin, capture_output=True, timeout=60)
    if check:
        assert proc.returncode == 0, (proc.stdout + proc.stderr).decode()
    return proc


def test_topic_lifecycle(broker):
    name = "cli-" + uuid.uuid4().hex[:6]
    out = cli(broker, "topic", "create", name, "--partitions", "3", "--config", "retention.ms=86400000").stdout.decode()
    assert f"created topic {name} (3 partitions)" in out
    again = cli(broker, "topic", "create", name, check=False)
    assert again.returncode != 0 and b"already exists" in again.stderr.lower()
    listing = cli(broker, "topic", "list").stdout.decode().splitlines()
    assert f"{name}\t3" in listing
    assert not any(line.startswith("__") for line in listing), "internal topics hidden without --all"
    described = cli(broker, "topic", "describe", name).stdout.decode()
    assert "retention.ms=86400000\t(set on topic)" in described
    cli(broker, "topic", "delete", name)
    assert f"{name}\t3" not in cli(broker, "topic", "list").stdout.decode().splitlines()


def test_produce_and_consume_with_keys(broker):
    name = "cli-" + uuid.uuid4().hex[:6]
    cli(broker, "topic", "create", name)
    lines = "".join(f"k{i}\tvalue {i}\n" for i in range(10)).encode()
    produced = cli(broker, "produce", name, "--key-separator", "\t", stdin=lines)
    assert b"produced 10 records" in produced.stderr
    out = cli(broker, "consume", name, "--from-beginning", "--max-messages", "10", "--print-key", "--timeout-ms", "10000").stdout.decode()
    assert out.splitlines() == [f"k{i}\tvalue {i}" for i in range(10)]
    js = cli(broker, "consume", name, "--from-beginning", "-n", "1", "--format", "json", "--timeout-ms", "10000").stdout.decode()
    record = json.loads(js.splitlines()[0])
    assert (record["key"], record["value"], record["offset"]) == ("k0", "value 0", 0)


def test_consume_with_group_commits(broker):
    name = "cli-" + uuid.uuid4().hex[:6]
    cli(broker, "topic", "create", name)
    cli(broker, "produce", name, stdin=b"a\nb\nc\n")
    group = "cli-g-" + uuid.uuid4().hex[:6]
    first = cli(broker, "consume", name, "--from-beginning", "--group", group, "-n", "2", "--timeout-ms", "15000").stdout.decode()
    assert first.splitlines() == ["a", "b"]
    rest = cli(broker, "consume", name, "--from-beginning", "--group", group, "-n", "1", "--timeout-ms", "15000").stdout.decode()
    assert rest.splitlines() == ["c"], "the group resumes after its committed offset"


def test_unreachable_broker_is_a_clear_error():
    class Nowhere:
        bootstrap = "127.0.0.1:1"

    proc = cli(Nowhere, "topic", "list", check=False)
    assert proc.returncode != 0
    assert b"cannot reach the broker at 127.0.0.1:1" in proc.stderr


def test_group_commands(broker):
    import time

    name = "cli-" + uuid.uuid4().hex[:6]
    group = "cli-grp-" + uuid.uuid4().hex[:6]
    cli(broker, "topic", "create", name, "--partitions", "2")
    cli(broker, "produce", name, "--partition", "0", stdin=b"".join(b"r%d\n" % i for i in range(6)))
    cli(broker, "consume", name, "--from-beginning", "--group", group, "-n", "4", "--timeout-ms", "15000")
    assert f"{group}\tEmpty\tClassic" in cli(broker, "group", "list").stdout.decode().splitlines()
    described = cli(broker, "group", "describe", group).stdout.decode()
    assert f"{name}\t0\t4\t6\t2" in described, described
    # While a member is active, resetting is refused.
    member = subprocess.Popen([RUNNEL, "--brokers", broker.bootstrap, "consume", name, "--group", group, "--timeout-ms", "8000"], stdout=subprocess.DEVNULL)
    try:
        deadline = time.time() + 15
        while time.time() < deadline and "Stable" not in cli(broker, "group", "describe", group).stdout.decode():
            time.sleep(0.3)
        refused = cli(broker, "group", "reset-offsets", group, "--topic", name, "--to-earliest", check=False)
        assert refused.returncode != 0 and b"active member" in refused.stderr
    finally:
        member.terminate()
        member.wait(20)
    deadline = time.time() + 30
    while time.time() < deadline:
        reset = cli(broker, "group", "reset-offsets", group, "--topic", name, "--to-earliest", "--execute", check=False)
        if reset.returncode == 0:
            break
        time.sleep(0.5)
    assert reset.returncode == 0, reset.stderr
    assert f"{name}\t0\t0\t6\t6" in cli(broker, "group", "describe", group).stdout.decode()
    cli(broker, "group", "delete", group)
    assert group not in cli(broker, "group", "list").stdout.decode()
