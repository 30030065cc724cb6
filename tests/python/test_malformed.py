"""Bad input gets a clear error or a closed connection, never a crash, and other clients carry on."""
import socket
import struct

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition


def request(api_key, version, body=b"", correlation_id=1, client_id=b"raw"):
    header = struct.pack(">hhih", api_key, version, correlation_id, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def send_and_read(broker, data, timeout=5.0):
    """Sends raw bytes; returns the response frame, or None if the broker closed the connection."""
    with socket.create_connection(("127.0.0.1", broker.port), timeout=timeout) as s:
        s.sendall(data)
        try:
            head = s.recv(4, socket.MSG_WAITALL)
        except (ConnectionResetError, socket.timeout):
            return None
        if len(head) < 4:
            return None
        (size,) = struct.unpack(">i", head)
        return s.recv(size, socket.MSG_WAITALL)


def assert_still_serving(broker):
    assert broker.alive(), "broker process died:\n" + broker.log()
    topic = "after-attack"
    p = Producer({"bootstrap.servers": broker.bootstrap})
    delivered = []
    p.produce(topic, value=b"ok", on_delivery=lambda e, m: delivered.append(e))
    p.flush(15)
    assert delivered == [None]
    c = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "x"})
    low, high = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
    c.close()
    assert high >= 1


ATTACKS = {
    "garbage": b"\x13\x37" * 50,
    "negative length": struct.pack(">i", -5) + b"abc",
    "huge length": struct.pack(">i", 0x7FFFFFFF) + b"\x00" * 16,
    "truncated body": struct.pack(">i", 100) + b"\x00\x03\x00\x01",
    "unknown api key": request(999, 0),
    "http": b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "forged array count": request(3, 1, struct.pack(">i", 0x7FFFFFFF)),
    "forged compact array count": request(3, 12, b"\x00" + b"\xff\xff\xff\xff\x0f"),
    "unsupported produce version": request(0, 1, b"\x00" * 10),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_attack_closes_only_that_connection(broker, name):
    response = send_and_read(broker, ATTACKS[name])
    assert response is None, f"{name}: expected the connection to be closed, got {response!r}"
    assert_still_serving(broker)


def test_unsupported_api_versions_version_gets_v0_answer(broker):
    # ApiVersions v99 with a flexible (v2) header: answered in v0 format with UNSUPPORTED_VERSION.
    body = request(18, 99) + b""
    frame = bytearray(body)
    frame += b"\x00"  # tagged fields of the v2 header
    frame[0:4] = struct.pack(">i", len(frame) - 4)
    response = send_and_read(broker, bytes(frame))
    assert response is not None
    correlation_id, error_code, count = struct.unpack(">ihi", response[:10])
    assert correlation_id == 1
    assert error_code == 35
    keys = [struct.unpack(">hhh", response[10 + 6 * i:16 + 6 * i]) for i in range(count)]
    assert (18, 0, 4) in keys


def test_many_bad_connections_in_a_row(broker):
    for i in range(50):
        send_and_read(broker, ATTACKS["forged array count" if i % 2 else "garbage"], timeout=2)
    assert_still_serving(broker)
