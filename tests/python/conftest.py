import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from runnel_broker import RUNNEL, Broker  # noqa: E402

# Consumer groups start at once in tests; Kafka's 3 s default is exercised by the seed acceptance run.
# KIP-848 groups get short server-side timers so that a killed member is noticed within seconds.
FAST_GROUPS = {
    "group.initial.rebalance.delay.ms": "0",
    "group.consumer.session.timeout.ms": "6000",
    "group.consumer.heartbeat.interval.ms": "500",
}


def pytest_sessionstart(session):
    if not os.access(RUNNEL, os.X_OK):
        pytest.exit(f"{RUNNEL} is missing: run cargo build --release first", returncode=1)


@pytest.fixture(scope="session")
def broker():
    """A broker shared by the tests that need nothing special."""
    b = Broker(FAST_GROUPS).start()
    yield b
    b.cleanup()


@pytest.fixture
def make_broker():
    """Factory for brokers with their own settings and data directory."""
    made = []

    def make(settings=None, **kwargs):
        merged = dict(FAST_GROUPS)
        merged.update(settings or {})
        b = Broker(merged, **kwargs).start()
        made.append(b)
        return b

    yield make
    for b in made:
        b.cleanup()


@pytest.fixture
def topic_name():
    return "t-" + uuid.uuid4().hex[:10]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for name in ("broker",):
            b = item.funcargs.get(name)
            if isinstance(b, Broker):
                report.sections.append(("broker log", b.log()))
