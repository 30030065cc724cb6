"""Connection limits with Kafka's settings: max.connections.per.ip (+ overrides),
max.connections, max.connection.creation.rate and connections.max.idle.ms,
checked with raw sockets beside a real client on the same broker."""

import socket
import struct
import time

from confluent_kafka import Consumer, Producer


def api_versions_frame(correlation_id=1):
    client_id = b"limits-test"
    body = struct.pack(">hhih", 18, 0, correlation_id, len(client_id)) + client_id
    return struct.pack(">i", len(body)) + body


def connect(broker, source="127.0.0.1"):
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect(("127.0.0.1", broker.port))
    return sock


def answered(sock, timeout=5.0):
    """Sends ApiVersions v0; True when it is answered, False when the broker
    closed the connection, None when no answer came within `timeout`."""
    sock.settimeout(timeout)
    try:
        sock.sendall(api_versions_frame())
        head = sock.recv(8)
    except socket.timeout:
        return None
    except (ConnectionResetError, BrokenPipeError):
        return False
    if not head:
        return False
    size, correlation_id = struct.unpack(">ii", head)
    remaining = size - 4
    while remaining > 0:
        chunk = sock.recv(min(remaining, 65536))
        assert chunk, "the connection closed in the middle of an answer"
        remaining -= len(chunk)
    return correlation_id == 1


def closed_within(sock, seconds):
    """Waits for the broker to close `sock`; the seconds it took, or None."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        data = sock.recv(1)
    except socket.timeout:
        return None
    except ConnectionResetError:
        data = b""
    assert data == b"", "the broker sent bytes nobody asked for"
    return time.monotonic() - start


def produce_and_consume(broker, topic, count=20):
    producer = Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(count):
        producer.produce(topic, value=f"v{i}".encode())
    assert producer.flush(20) == 0
    consumer = Consumer({
        "bootstrap.servers": broker.bootstrap,
        "group.id": topic + "-g",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + 30
    while len(got) < count and time.time() < deadline:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            got.append(message.value())
    consumer.close()
    assert sorted(got) == sorted(f"v{i}".encode() for i in range(count))


def test_an_address_over_max_connections_per_ip_is_refused_and_others_are_served(make_broker, topic_name):
    # Loopback: 127.0.0.2 is the limited address, 127.0.0.1 (the real client) has an override.
    broker = make_broker({"max.connections.per.ip": "2", "max.connections.per.ip.overrides": "127.0.0.1:100"})
    held = [connect(broker, "127.0.0.2") for _ in range(2)]
    assert all(answered(s) for s in held)
    extra = connect(broker, "127.0.0.2")
    assert answered(extra) is False, "a third connection from 127.0.0.2 must be closed"
    produce_and_consume(broker, topic_name)
    held.pop().close()
    deadline = time.time() + 5
    while True:
        again = connect(broker, "127.0.0.2")
        if answered(again):
            break
        again.close()
        assert time.time() < deadline, "a closed connection's place must be given back"
        time.sleep(0.1)
    assert "rejected connection" in broker.log() and "127.0.0.2" in broker.log()
    for s in held + [extra, again]:
        s.close()


def test_at_max_connections_new_connections_wait_for_a_slot(make_broker):
    broker = make_broker({"max.connections": "3"})
    held = [connect(broker) for _ in range(3)]
    assert all(answered(s) for s in held)
    waiting = connect(broker)  # the kernel completes the handshake; the broker does not accept it yet
    assert answered(waiting, timeout=1.5) is None, "the fourth connection must wait, not be served"
    held.pop(0).close()
    # Its ApiVersions request is already sent: the answer comes once it is accepted.
    waiting.settimeout(10)
    head = waiting.recv(8)
    assert len(head) == 8 and struct.unpack(">ii", head)[1] == 1
    assert "max.connections" in broker.log()
    for s in held + [waiting]:
        s.close()


def test_max_connection_creation_rate_slows_accepts(make_broker):
    broker = make_broker({"max.connection.creation.rate": "5"})
    # The first second's worth is accepted at once; after it, 5 a second.
    start = time.monotonic()
    sockets = []
    for _ in range(15):
        s = connect(broker)
        assert answered(s, timeout=10)
        sockets.append(s)
    elapsed = time.monotonic() - start
    for s in sockets:
        s.close()
    assert 1.5 <= elapsed <= 8, f"15 connections at 5/s after a burst of 5 took {elapsed:.2f}s"


def test_idle_and_trickling_connections_are_closed_and_busy_ones_kept(make_broker, topic_name):
    broker = make_broker({"connections.max.idle.ms": "1500"})
    idle = connect(broker)
    assert answered(idle)
    # Slow loris: a frame announced as 1000 bytes, sent one byte every 200 ms.
    loris = connect(broker)
    loris.sendall(struct.pack(">i", 1000))
    busy = connect(broker)
    start = time.monotonic()
    loris_closed = None
    while time.monotonic() - start < 4:
        assert answered(busy), "a connection with a request every 300 ms must stay open"
        if loris_closed is None:
            try:
                loris.sendall(b"\0")
            except (BrokenPipeError, ConnectionResetError):
                loris_closed = time.monotonic() - start
        time.sleep(0.3)
    idle_closed = closed_within(idle, 1)
    assert idle_closed is not None, "an idle connection must be closed after connections.max.idle.ms"
    if loris_closed is None:
        loris_closed = closed_within(loris, 1)
    assert loris_closed is not None and loris_closed < 4, "trickled bytes must not keep a connection alive"
    assert "closing a connection idle" in broker.log()
    # A real client on the same broker is unaffected (librdkafka reconnects when needed).
    produce_and_consume(broker, topic_name)
    for s in (idle, loris, busy):
        s.close()
