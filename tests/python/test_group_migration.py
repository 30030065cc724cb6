"""Online migration between the classic and the consumer group protocol
(KIP-848): a rolling upgrade of a group's consumers from group.protocol=classic
to group.protocol=consumer, one member at a time, and the reverse, while
records flow. Members are separate processes (group_member.py) that commit
every record before reporting it.

What must hold: every record is consumed, nothing committed is delivered
again (committed offsets carry over the conversions), no partition is owned
by two members at once (checked on the rebalance callbacks' timestamps,
taken inside the callbacks on the system-wide monotonic clock), and the
group ends up of the new type."""
import time
import uuid

import pytest

from test_cli import cli
from test_group_churn import Feed, all_consumed, check_exactly_once_after_commit, covers, members, start_group_at_zero, wait_until  # noqa: F401
from test_groups import create_topic

PARTITIONS = 6
CLASSIC_SESSION = {"session_timeout_ms": 6000, "heartbeat_interval_ms": 500}


def ownership_intervals(member):
    """(partition, start, end) for each time the member owned a partition, from
    its "T <time> assign|revoke <p,...>" lines; end is None while it still owns it."""
    owned, intervals = {}, []
    for kind, rest in member.lines():
        if kind != "T":
            continue
        when, what, *listed = rest.split(" ")
        partitions = [int(p) for p in (listed[0].split(",") if listed and listed[0] else [])]
        for p in partitions:
            if what == "assign" and p not in owned:
                owned[p] = float(when)
            elif what == "revoke" and p in owned:
                intervals.append((p, owned.pop(p), float(when)))
    intervals.extend((p, start, None) for p, start in owned.items())
    return intervals


def check_no_double_ownership(group_members):
    by_partition = {}
    for i, m in enumerate(group_members):
        for p, start, end in ownership_intervals(m):
            by_partition.setdefault(p, []).append((start, float("inf") if end is None else end, i))
    for p, spans in by_partition.items():
        spans.sort()
        for (start_a, end_a, a), (start_b, _end_b, b) in zip(spans, spans[1:]):
            assert start_b >= end_a, (
                f"partition {p} owned by member {a} ({start_a:.3f}..{end_a:.3f}) and member {b} (from {start_b:.3f}) at once"
            )
    assert by_partition, "no rebalance callback was recorded: the check proved nothing"


def group_kind(broker, group):
    """'Consumer' or 'Classic', as `runnel group list` shows the group."""
    for line in cli(broker, "group", "list").stdout.decode().splitlines():
        fields = line.split("\t")
        if fields[0] == group:
            return fields[2]
    return None


def rolling_replace(broker, members, old_settings, new_settings, new_kind):
    topic = "mig-" + uuid.uuid4().hex[:6]
    group = "g-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, PARTITIONS)
    start_group_at_zero(broker.bootstrap, group, topic, PARTITIONS)
    feed = Feed(broker.bootstrap, topic, PARTITIONS)
    old = [members("confluent", broker.bootstrap, topic, group, **old_settings) for _ in range(3)]
    wait_until("three members sharing the partitions", lambda: covers(old, PARTITIONS) and all(m.assignment() for m in old), show=old)
    feed.send(300)
    wait_until("the first records", lambda: sum(len(m.records()) for m in old) >= 300, show=old)
    live, everyone, kinds = list(old), list(old), []
    for retiring in old:
        newcomer = members("confluent", broker.bootstrap, topic, group, **new_settings)
        everyone.append(newcomer)
        live.append(newcomer)
        wait_until("the new member getting partitions", lambda: newcomer.assignment() and covers(live, PARTITIONS), show=live)
        kinds.append(group_kind(broker, group))
        feed.send(100)
        retiring.stop()  # closes: revokes, commits nothing more, leaves the group
        assert retiring.proc.returncode == 0
        live.remove(retiring)
        wait_until("the rest sharing the partitions", lambda: covers(live, PARTITIONS), show=live)
        feed.send(100)
    wait_until("every record consumed", lambda: all_consumed(everyone, feed.sent), show=everyone)
    check_exactly_once_after_commit(everyone, feed.sent)
    check_no_double_ownership(everyone)
    wait_until(f"the group listed as {new_kind}", lambda: group_kind(broker, group) == new_kind, timeout=30)
    return kinds


# Not librdkafka's cooperative-sticky: its assignments carry assignor user
# data, which a conversion would lose, so Kafka (and Runnel) refuse the upgrade.
@pytest.mark.parametrize("strategy", ["range", "roundrobin"])
def test_rolling_upgrade_from_classic_to_consumer_protocol(broker, members, strategy):
    """Classic members (eager `range` or `roundrobin`) are replaced one by one
    by consumer-protocol members: the first newcomer converts the group, the
    classic members go on in it until they leave."""
    classic = dict(group_protocol="classic", partition_assignment_strategy=strategy, **CLASSIC_SESSION)
    kinds = rolling_replace(broker, members, classic, dict(group_protocol="consumer"), "Consumer")
    assert kinds == ["Consumer"] * 3, f"the first consumer-protocol member converts the group: {kinds}"


@pytest.mark.parametrize("strategy", ["range", "cooperative-sticky"])
def test_rolling_downgrade_from_consumer_to_classic_protocol(broker, members, strategy):
    """The reverse: classic members join the consumer-protocol group as its
    members, and when the last consumer-protocol member leaves the group
    becomes classic again."""
    classic = dict(group_protocol="classic", partition_assignment_strategy=strategy, **CLASSIC_SESSION)
    kinds = rolling_replace(broker, members, dict(group_protocol="consumer"), classic, "Classic")
    assert kinds == ["Consumer"] * 3, f"classic members join the consumer-protocol group: {kinds}"


def test_disabled_policy_keeps_protocols_apart(make_broker, members):
    """group.consumer.migration.policy=disabled: a consumer-protocol member
    cannot join a non-empty classic group (it gets nothing), and the classic
    member is undisturbed."""
    broker = make_broker({"group.consumer.migration.policy": "disabled"})
    topic = "mig-off-" + uuid.uuid4().hex[:6]
    group = "g-" + uuid.uuid4().hex[:6]
    create_topic(broker.bootstrap, topic, 2)
    classic = members("confluent", broker.bootstrap, topic, group, group_protocol="classic", **CLASSIC_SESSION)
    wait_until("the classic member owning both partitions", lambda: classic.assignment() == {0, 1}, show=[classic])
    newcomer = members("confluent", broker.bootstrap, topic, group, group_protocol="consumer")
    time.sleep(4)
    assert not newcomer.assignment(), "the consumer-protocol member must not get partitions of a classic group"
    assert classic.assignment() == {0, 1} and group_kind(broker, group) == "Classic"
