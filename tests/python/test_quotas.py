"""Client quotas (issue 13, KIP-546 / KIP-13 / KIP-219) with real clients over TCP:
quotas set and described with Kafka's own kafka-configs (ConfigCommand), with
`runnel quota` and with raw AlterClientQuotas / DescribeClientQuotas requests
(Kafka 4.3's answers to invalid ones, measured against it, are the expected
ones here); a confluent-kafka producer and consumer over their byte rate are
throttled (slower, `throttle_time_ms` reported in librdkafka's statistics)
while every record is delivered and read; a client over its request_percentage
is throttled and muted; connections over an address's connection_creation_rate
are closed; topics beyond a controller_mutation_rate are refused (strict
versions) or their client held back; the quotas are in the cluster metadata,
so they survive a restart.

Every broker listens on 127.0.0.1 only; every wait is bounded.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from raw_requests import alter_client_quotas, create_topics_v7, describe_client_quotas  # noqa: E402
from test_cluster_admin import KAFKA_LIBS, cli, kafka_tools  # noqa: E402,F401

# A quota over which a client is throttled within a few seconds: 10 windows' worth
# (200 KB) pass at once, the rest at 20 KB/s.
RATE = 20_000
RECORD = 1_000


def kafka_configs(bootstrap, *args):
    java = shutil.which("java") or "java"
    proc = subprocess.run([java, "-Xmx256m", "-Dlog4j2.configurationFile=" + os.devnull, "-cp", os.path.join(KAFKA_LIBS, "*"),
                           "kafka.admin.ConfigCommand", "--bootstrap-server", bootstrap, *args],
                          capture_output=True, text=True, timeout=90)
    assert proc.returncode == 0, f"kafka-configs {args}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
    return proc.stdout


def create_topic(bootstrap, topic):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)


def described(bootstrap, components=(), strict=False):
    error, message, entries = describe_client_quotas(bootstrap, list(components), strict)
    assert error == 0, (error, message)
    return entries


def test_kafka_configs_tool_sets_describes_and_deletes_quotas(make_broker, kafka_tools):
    broker = make_broker()
    b = broker.bootstrap
    kafka_configs(b, "--alter", "--add-config", "producer_byte_rate=1048576,consumer_byte_rate=2097152",
                  "--entity-type", "clients", "--entity-name", "app-1")
    kafka_configs(b, "--alter", "--add-config", "request_percentage=12.5", "--entity-type", "users", "--entity-name", "alice",
                  "--entity-type", "clients", "--entity-default")
    kafka_configs(b, "--alter", "--add-config", "connection_creation_rate=7", "--entity-type", "ips", "--entity-name", "10.1.2.3")
    out = kafka_configs(b, "--describe", "--entity-type", "clients", "--entity-name", "app-1")
    assert "producer_byte_rate=1048576.0" in out and "consumer_byte_rate=2097152.0" in out, out
    out = kafka_configs(b, "--describe", "--entity-type", "users", "--entity-name", "alice", "--entity-type", "clients", "--entity-default")
    assert "request_percentage=12.5" in out, out
    assert described(b) == {
        (("client-id", "app-1"),): {"producer_byte_rate": 1048576.0, "consumer_byte_rate": 2097152.0},
        (("client-id", None), ("user", "alice")): {"request_percentage": 12.5},
        (("ip", "10.1.2.3"),): {"connection_creation_rate": 7.0},
    }
    kafka_configs(b, "--alter", "--delete-config", "producer_byte_rate", "--entity-type", "clients", "--entity-name", "app-1")
    assert described(b, [("client-id", 0, "app-1")]) == {(("client-id", "app-1"),): {"consumer_byte_rate": 2097152.0}}


def test_runnel_quota_cli_and_describe_filters(make_broker):
    b = make_broker().bootstrap
    cli(b, "quota", "set", "--user", "bob", "producer_byte_rate=4096")
    cli(b, "quota", "set", "--user", "bob", "--client-id", "etl", "consumer_byte_rate=8192", "controller_mutation_rate=2.5")
    cli(b, "quota", "set", "--client-default", "producer_byte_rate=1000000")
    checked = cli(b, "quota", "set", "--client-id", "dry", "producer_byte_rate=5", "--validate-only")
    assert "valid" in checked.stdout
    listed = cli(b, "quota", "list").stdout.splitlines()
    assert listed == [
        "entity\tkey\tvalue",
        "client-id=<default>\tproducer_byte_rate\t1000000",
        "client-id=etl, user=bob\tconsumer_byte_rate\t8192",
        "client-id=etl, user=bob\tcontroller_mutation_rate\t2.5",
        "user=bob\tproducer_byte_rate\t4096",
    ], listed
    # Filters as Kafka's: exact, default, any; strict leaves out entities with other types.
    assert set(described(b, [("user", 0, "bob")])) == {(("user", "bob"),), (("client-id", "etl"), ("user", "bob"))}
    assert set(described(b, [("user", 0, "bob")], strict=True)) == {(("user", "bob"),)}
    assert set(described(b, [("client-id", 1, None)])) == {(("client-id", None),)}
    assert set(described(b, [("client-id", 2, None)])) == {(("client-id", None),), (("client-id", "etl"), ("user", "bob"))}
    assert described(b, [], strict=True) == {}
    cli(b, "quota", "delete", "--user", "bob", "--client-id", "etl", "consumer_byte_rate", "controller_mutation_rate")
    assert set(described(b)) == {(("client-id", None),), (("user", "bob"),)}
    refused = cli(b, "quota", "set", "--ip", "10.0.0.1", "producer_byte_rate=5", check=False)
    assert refused.returncode != 0 and "Invalid configuration key producer_byte_rate" in refused.stderr, refused.stderr


def test_invalid_alterations_and_filters_are_refused_as_kafka_refuses_them(broker):
    b = broker.bootstrap
    cases = [
        ([("user", "u1")], [("no_such_key", 1.0)], "Invalid configuration key no_such_key"),
        ([("user", "u1")], [("producer_byte_rate", 10.5)], "producer_byte_rate cannot be a fractional value."),
        ([("user", "u1")], [("producer_byte_rate", -5.0)], "Quota producer_byte_rate must be greater than 0"),
        ([("user", "u1")], [("producer_byte_rate", 1e30)], "Proposed value for producer_byte_rate is too large for a LONG."),
        ([("ip", "1.2.3.4")], [("producer_byte_rate", 5.0)], "Invalid configuration key producer_byte_rate"),
        ([("ip", "1.2.3.4"), ("user", "x")], [("connection_creation_rate", 5.0)],
         "Invalid quota entity combination, IP entity shouldnot be combined with User or ClientId"),
        ([("group", "g")], [("producer_byte_rate", 5.0)], "Unhandled client quota entity type: group"),
        ([("user", "")], [("producer_byte_rate", 5.0)], "Empty user not supported"),
        ([], [("producer_byte_rate", 5.0)], "Invalid empty client quota entity"),
        ([("user", "u1")], [("producer_byte_rate", 5.0), ("producer_byte_rate", 6.0)],
         "Ignoring duplicate entity ClientQuotaEntity(entries={user=u1})"),
    ]
    for entity, ops, message in cases:
        for validate_only in (True, False):
            answer = alter_client_quotas(b, [(entity, ops)], validate_only)
            assert [(code, text) for code, text, _ in answer] == [(42, message)], (entity, ops, answer)
    # An invalid entry changes nothing; the valid one beside it is written.
    answer = alter_client_quotas(b, [([("user", "u2")], [("bogus", 1.0), ("producer_byte_rate", 7.0)]),
                                     ([("user", "u3")], [("producer_byte_rate", 9.0)])])
    assert [code for code, _, _ in answer] == [42, 0], answer
    assert described(b, [("user", 0, "u2")]) == {}
    assert described(b, [("user", 0, "u3")]) == {(("user", "u3"),): {"producer_byte_rate": 9.0}}
    # validate_only writes nothing.
    assert alter_client_quotas(b, [([("user", "u4")], [("producer_byte_rate", 9.0)])], validate_only=True)[0][0] == 0
    assert described(b, [("user", 0, "u4")]) == {}
    for components, code, message in [
        ([("user", 0, None)], 42, "Request specified MATCH_TYPE_EXACT, but set match string to null."),
        ([("user", 1, "x")], 42, "Request specified MATCH_TYPE_DEFAULT, but also specified a match string."),
        ([("group", 2, None)], 35, "Unsupported entity type group"),
        ([("user", 5, None)], 42, "Unknown match type 5"),
        ([("ip", 2, None), ("user", 2, None)], 42, "Invalid entity filter component combination. IP filter component "
                                                   "should not be used with user or clientId filter component."),
        ([("user", 2, None), ("user", 2, None)], 42, "Entity type user cannot appear more than once in the filter."),
    ]:
        assert describe_client_quotas(b, components) == (code, message, None), components


def throttle_stats():
    """A librdkafka stats_cb and the largest broker throttle (ms) it saw."""
    seen = {"max": 0}

    def on_stats(raw):
        for broker in json.loads(raw).get("brokers", {}).values():
            seen["max"] = max(seen["max"], broker.get("throttle", {}).get("max", 0))
    return seen, on_stats


def produce(bootstrap, topic, client_id, count, extra=None):
    """`count` records of RECORD bytes, 16 KB requests; (elapsed s, max throttle ms, delivery errors)."""
    seen, on_stats = throttle_stats()
    errors = []
    conf = {"bootstrap.servers": bootstrap, "client.id": client_id, "batch.size": 16384, "linger.ms": 5,
            "statistics.interval.ms": 200, "stats_cb": on_stats}
    conf.update(extra or {})
    producer = Producer(conf)
    start = time.time()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, value=b"%06d" % i + b"x" * (RECORD - 6),
                                 on_delivery=lambda err, msg: err and errors.append(err))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(120) == 0, "records left undelivered after 120 s"
    elapsed = time.time() - start
    producer.poll(0.5)  # one more statistics interval
    return elapsed, seen["max"], errors


def consume_all(bootstrap, topic, client_id, count, timeout=120):
    """Reads `count` records from the start; (elapsed s, max throttle ms, the records' sequence numbers)."""
    seen, on_stats = throttle_stats()
    consumer = Consumer({"bootstrap.servers": bootstrap, "client.id": client_id, "group.id": "q-" + uuid.uuid4().hex[:8],
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "statistics.interval.ms": 200, "stats_cb": on_stats})
    consumer.subscribe([topic])
    numbers = []
    start = time.time()
    deadline = start + timeout
    try:
        while len(numbers) < count and time.time() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            numbers.append(int(msg.value()[:6]))
        elapsed = time.time() - start
        consumer.poll(0.5)
    finally:
        consumer.close()
    return elapsed, seen["max"], numbers


def test_producer_and_consumer_over_their_byte_rate_are_throttled_and_lose_nothing(make_broker):
    broker = make_broker()
    b = broker.bootstrap
    topic = "quota-" + uuid.uuid4().hex[:8]
    create_topic(b, topic)
    count = 400  # 400 KB: 200 KB at once, then 200 KB at 20 KB/s, about 10 s
    cli(b, "quota", "set", "--client-id", "slow-producer", f"producer_byte_rate={RATE}")
    # The consumer's quota is twice the producer's: the read takes half as long in CI.
    cli(b, "quota", "set", "--client-id", "slow-consumer", f"consumer_byte_rate={2 * RATE}")

    fast_elapsed, fast_throttle, errors = produce(b, topic, "fast-producer", count)
    assert errors == [] and fast_throttle == 0, (errors, fast_throttle)
    slow_elapsed, slow_throttle, errors = produce(b, topic, "slow-producer", count)
    assert errors == [], errors
    print(f"produce {count * RECORD} B: unthrottled {fast_elapsed:.2f} s, at {RATE} B/s {slow_elapsed:.2f} s, "
          f"max throttle {slow_throttle} ms")
    assert slow_throttle > 0, "librdkafka saw no throttle_time_ms"
    # (400 KB − the 200 KB a new client may send at once) at 20 KB/s: 10 s; generous bounds.
    assert 5 < slow_elapsed < 60, slow_elapsed
    assert fast_elapsed < 5, fast_elapsed

    total = 2 * count
    fast_elapsed, fast_throttle, numbers = consume_all(b, topic, "fast-consumer", total)
    assert sorted(numbers) == sorted(list(range(count)) * 2) and fast_throttle == 0, (len(numbers), fast_throttle)
    slow_elapsed, slow_throttle, numbers = consume_all(b, topic, "slow-consumer", total, timeout=150)
    print(f"consume {total * RECORD} B: unthrottled {fast_elapsed:.2f} s, at {2 * RATE} B/s {slow_elapsed:.2f} s, "
          f"max throttle {slow_throttle} ms")
    assert sorted(numbers) == sorted(list(range(count)) * 2), f"{len(numbers)} of {total} records read"
    assert slow_throttle > 0, "librdkafka saw no throttle_time_ms"
    # 800 KB at 40 KB/s with the first window's worth at once: tens of seconds; at least well above the unthrottled read.
    assert slow_elapsed > 10 and slow_elapsed > 5 * fast_elapsed, (slow_elapsed, fast_elapsed)


class MetadataConnection:
    """One connection sending Metadata v4 requests, as a client would between its other work."""

    def __init__(self, bootstrap, client_id, topic):
        import socket

        from kafka.protocol.metadata import MetadataRequest
        host, port = bootstrap.split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        self.client_id, self.request, self.correlation_id = client_id, MetadataRequest[4]([topic], False), 0

    def metadata(self):
        """(throttle_time_ms, seconds until the answer came)."""
        import struct

        from kafka.protocol.api import RequestHeader
        from raw_requests import _read_exactly
        self.correlation_id += 1
        header = RequestHeader(self.request, correlation_id=self.correlation_id, client_id=self.client_id)
        body = header.encode() + self.request.encode()
        start = time.time()
        self.sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exactly(self.sock, 4))[0]
        answer = self.request.RESPONSE_TYPE.decode(_read_exactly(self.sock, size)[4:])
        return answer.throttle_time_ms, time.time() - start

    def close(self):
        self.sock.close()


def test_a_client_over_its_request_percentage_is_throttled_and_loses_nothing(make_broker):
    """KIP-124: `request_percentage` bounds the broker time a client's requests
    take. A client sending Metadata requests back to back gets throttle_time_ms
    once over 0.2 % of a thread, and its next request is answered no sooner
    than that (the connection is muted); another client id beside it is not
    throttled. A confluent-kafka producer over the quota is slowed and told so
    (librdkafka's statistics) and every record is delivered."""
    broker = make_broker({"quota.window.num": "2", "quota.window.size.seconds": "1"})
    b = broker.bootstrap
    topic = "rq-" + uuid.uuid4().hex[:8]
    create_topic(b, topic)
    cli(b, "quota", "set", "--client-id", "busy-client", "request_percentage=0.2")
    cli(b, "quota", "set", "--client-id", "busy-producer", "request_percentage=0.2")

    busy, other = MetadataConnection(b, "busy-client", topic), MetadataConnection(b, "other-client", topic)
    throttles, muted_for = [], None
    deadline = time.time() + 20
    for _ in range(20_000):
        if time.time() > deadline:
            break
        throttle_ms, _ = busy.metadata()
        throttles.append(throttle_ms)
        if throttle_ms > 0:
            _, waited = busy.metadata()
            muted_for = (throttle_ms, waited)
            break
    assert muted_for is not None, f"no throttle_time_ms in {len(throttles)} Metadata answers"
    throttle_ms, waited = muted_for
    print(f"throttled after {len(throttles)} requests for {throttle_ms} ms; the next answer came after {waited * 1000:.0f} ms")
    assert waited * 1000 >= throttle_ms * 0.5, "the throttled connection was not muted"
    assert [other.metadata()[0] for _ in range(200)] == [0] * 200, "another client id was throttled"
    busy.close()
    other.close()

    count = 3000
    _, fast_throttle, errors = produce(b, topic, "unlimited-producer", count, extra={"linger.ms": 0, "acks": 1})
    assert errors == [] and fast_throttle == 0, (errors, fast_throttle)
    elapsed, slow_throttle, errors = produce(b, topic, "busy-producer", count, extra={"linger.ms": 0, "acks": 1})
    print(f"produce of {count} single-record requests at request_percentage=0.2: {elapsed:.2f} s, max throttle {slow_throttle} ms")
    assert errors == [], errors
    assert slow_throttle > 0, "librdkafka saw no throttle_time_ms"
    _, _, numbers = consume_all(b, topic, "reader", 2 * count)
    assert sorted(numbers) == sorted(list(range(count)) * 2), f"{len(numbers)} of {2 * count} records read"


def test_connections_over_an_ip_connection_creation_rate_are_closed_and_others_are_not(make_broker):
    """KIP-612: `connection_creation_rate` on an ip entity. Connections from
    127.0.0.2 (a loopback address the test binds its sockets to) beyond the
    rate are held and closed unanswered, while the rate's worth is served;
    127.0.0.1's clients (a confluent-kafka producer) are untouched; once the
    window passes 127.0.0.2 is served again; removing the quota lifts it."""
    import socket
    import struct

    from kafka.protocol.api import RequestHeader
    from kafka.protocol.api_versions import ApiVersionsRequest_v0
    from raw_requests import _read_exactly

    broker = make_broker({"quota.window.num": "2", "quota.window.size.seconds": "1"})
    b = broker.bootstrap
    host, port = b.split(":")
    cli(b, "quota", "set", "--ip", "127.0.0.2", "connection_creation_rate=5")

    def served_from(source):
        """Connects from `source`; True when an ApiVersions is answered, False when the broker closes unanswered."""
        sock = socket.socket()
        sock.settimeout(10)
        sock.bind((source, 0))
        sock.connect((host, int(port)))
        try:
            req = ApiVersionsRequest_v0()
            header = RequestHeader(req, correlation_id=1, client_id="conn-rate")  # kept: encode() needs it alive
            body = header.encode() + req.encode()
            sock.sendall(struct.pack(">i", len(body)) + body)
            size = struct.unpack(">i", _read_exactly(sock, 4))[0]
            return len(_read_exactly(sock, size)) > 0
        except (ConnectionError, OSError, AssertionError, struct.error):
            return False
        finally:
            sock.close()

    started = time.time()
    burst = [served_from("127.0.0.2") for _ in range(15)]
    elapsed = time.time() - started
    print(f"15 connections back to back from 127.0.0.2 at connection_creation_rate=5 in {elapsed:.2f} s: served {burst}")
    assert burst[:5] == [True] * 5, burst
    # At most the first window's 5 and 5 a second after it (+1 for the window edges).
    assert False in burst and burst.count(True) <= 5 + 5 * elapsed + 1, f"connections beyond the rate were served: {burst}"
    assert all(served_from("127.0.0.1") for _ in range(15)), "another address was throttled"
    topic = "cr-" + uuid.uuid4().hex[:8]
    create_topic(b, topic)
    _, _, errors = produce(b, topic, "from-127.0.0.1", 50)
    assert errors == [], errors
    time.sleep(3)
    assert served_from("127.0.0.2"), "the rate fell after its window; the address is served again"
    cli(b, "quota", "delete", "--ip", "127.0.0.2", "connection_creation_rate")
    time.sleep(0.5)
    assert all(served_from("127.0.0.2") for _ in range(15)), "the removed quota still applied"


def test_controller_mutation_rate_refuses_topics_beyond_it_or_throttles_old_clients(make_broker):
    """KIP-599: `controller_mutation_rate` counts the partitions a client
    creates or deletes. A CreateTopics v7 (strict) whose first topic spends the
    budget gets THROTTLING_QUOTA_EXCEEDED for the rest and throttle_time_ms;
    they are created once the budget is back. librdkafka's older CreateTopics
    (v4, permissive) is served and then held back: its next request waits out
    the throttle. Deleting topics counts too; other clients are not limited."""
    broker = make_broker({"quota.window.num": "2", "quota.window.size.seconds": "1"})
    b = broker.bootstrap
    cli(b, "quota", "set", "--client-id", "runnel-test", "controller_mutation_rate=1")
    names = ["mut-" + uuid.uuid4().hex[:8] for _ in range(3)]
    throttle_ms, results = create_topics_v7(b, names, 3)
    errors = {name: r["error_code"] for name, r in results.items()}
    print(f"strict: throttle {throttle_ms} ms, errors {errors}")
    assert errors == {names[0]: 0, names[1]: 89, names[2]: 89}, errors
    assert 500 <= throttle_ms <= 1000, throttle_ms  # 3 partitions against a burst of 2 at 1/s
    admin = AdminClient({"bootstrap.servers": b})
    listed = admin.list_topics(timeout=20).topics
    assert names[0] in listed and names[1] not in listed and names[2] not in listed
    time.sleep(2)
    throttle_ms, results = create_topics_v7(b, [names[1]], 1)
    assert results[names[1]]["error_code"] == 0, results

    cli(b, "quota", "set", "--client-id", "bulk-admin", "controller_mutation_rate=5")
    bulk = AdminClient({"bootstrap.servers": b, "client.id": "bulk-admin"})
    wide, narrow = "wide-" + uuid.uuid4().hex[:8], "narrow-" + uuid.uuid4().hex[:8]
    started = time.time()
    bulk.create_topics([NewTopic(wide, 20, 1)])[wide].result(30)  # burst 10, so 10 short at 5/s: 2 s
    first = time.time() - started
    bulk.create_topics([NewTopic(narrow, 1, 1)])[narrow].result(30)
    second = time.time() - started - first
    print(f"permissive: 20 partitions in {first:.2f} s, the next request answered {second:.2f} s later")
    assert second >= 1.2, "the throttled client's next request was not held back"
    unlimited, after = "free-" + uuid.uuid4().hex[:8], "free2-" + uuid.uuid4().hex[:8]
    admin.create_topics([NewTopic(unlimited, 20, 1)])[unlimited].result(30)
    started = time.time()
    admin.create_topics([NewTopic(after, 1, 1)])[after].result(30)
    assert time.time() - started < 1.5, "a client without a quota was held back"
    started = time.time()
    bulk.delete_topics([wide])[wide].result(30)  # 20 more partitions: 4 s of throttle
    bulk.delete_topics([narrow])[narrow].result(30)
    assert time.time() - started >= 2.5, "deleting partitions was not counted"


def test_quotas_survive_a_restart_and_apply_after_it(make_broker):
    broker = make_broker()
    b = broker.bootstrap
    cli(b, "quota", "set", "--user", "ANONYMOUS", f"producer_byte_rate={RATE}")
    cli(b, "quota", "set", "--user-default", "--client-default", "consumer_byte_rate=123456")
    before = described(b)
    broker.restart()
    assert described(broker.bootstrap) == before == {
        (("user", "ANONYMOUS"),): {"producer_byte_rate": float(RATE)},
        (("client-id", None), ("user", None)): {"consumer_byte_rate": 123456.0},
    }
    # The user quota applies to every client of User:ANONYMOUS (plaintext), shared.
    topic = "quota-restart-" + uuid.uuid4().hex[:8]
    create_topic(broker.bootstrap, topic)
    elapsed, throttle, errors = produce(broker.bootstrap, topic, "any-client", 400)
    assert errors == [] and throttle > 0 and elapsed > 5, (elapsed, throttle, errors)
