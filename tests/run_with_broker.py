"""Runs a command against a fresh broker: `run_with_broker.py -- CMD... {bootstrap}`.

Used by scripts/test.sh for the shared acceptance check, which expects a broker
that is already running with default settings.
"""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "python"))
from runnel_broker import ROOT, Broker  # noqa: E402

args = sys.argv[1:]
if args and args[0] == "--":
    args = args[1:]
broker = Broker().start()
try:
    env = dict(os.environ, ACCEPTANCE_VENV=os.path.join(ROOT, ".venv"), BOOTSTRAP=broker.bootstrap)
    cmd = [a.replace("{bootstrap}", broker.bootstrap) for a in args]
    code = subprocess.call(cmd, env=env, stdin=subprocess.DEVNULL)
    if code != 0:
        print(broker.log(), file=sys.stderr)
finally:
    stopped = broker.stop()
    broker.cleanup()
sys.exit(code)
