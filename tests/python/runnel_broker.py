"""Starting and stopping real `runnel serve` processes for the black-box tests."""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUNNEL = os.environ.get("RUNNEL_BIN", os.path.join(ROOT, "target", "release", "runnel"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=20.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """One runnel broker on a loopback port with its own data directory."""

    def __init__(self, settings=None, data_dir=None, port=None, env=None):
        self.settings = dict(settings or {})
        self.env = dict(os.environ, **(env or {}))
        self.own_dir = data_dir is None
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="runnel-test-")
        self.port = port or free_port()
        self.proc = None
        self.log_path = os.path.join(self.data_dir + "-logs", "broker.log") if self.own_dir else None
        self.log_path = self.log_path or tempfile.mktemp(prefix="runnel-log-")
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def command(self):
        cmd = [RUNNEL, "serve", "--listen", self.bootstrap, "--data-dir", self.data_dir]
        for key, value in self.settings.items():
            cmd += ["--set", f"{key}={value}"]
        return cmd

    def start(self, timeout=30.0):
        served_before = self._serving_lines()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL, env=self.env)
        log.close()
        if not wait_for_port(self.port, timeout, self.proc):
            raise RuntimeError(f"broker did not start on {self.bootstrap}:\n{self.log()}")
        # The port is bound before the logs are loaded; a single node says when it
        # serves. (A cluster node waits for its peers, which may not be started yet.)
        if "controller.quorum.voters" not in self.settings:
            deadline = time.time() + timeout
            while self._serving_lines() <= served_before:
                if not self.alive() or time.time() > deadline:
                    raise RuntimeError(f"broker on {self.bootstrap} did not start serving:\n{self.log()}")
                time.sleep(0.02)
        return self

    def _serving_lines(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().count(b"runnel: serving Kafka clients on")
        except OSError:
            return 0

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-200_000:]
        except OSError:
            return "(no log)"

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0):
        """Clean shutdown (SIGTERM); returns the exit code."""
        if not self.alive():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise RuntimeError(f"broker ignored SIGTERM for {timeout}s:\n{self.log()}")

    def kill9(self):
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def restart(self):
        self.stop()
        return self.start()

    def cleanup(self):
        self.kill9()
        if self.own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            shutil.rmtree(self.data_dir + "-logs", ignore_errors=True)
