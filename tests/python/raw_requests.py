"""Single Kafka requests over a plain socket, encoded and decoded by kafka-python's
protocol classes: for answers a client library does not expose (the producer id
InitProducerId hands out)."""
import socket
import struct

from kafka.protocol.api import RequestHeader
from kafka.protocol.init_producer_id import InitProducerIdRequest_v1


def request(bootstrap, req, timeout=30.0, correlation_id=1):
    """Sends `req` (a non-flexible version) to `bootstrap` and returns the decoded response."""
    host, port = bootstrap.rsplit(":", 1)
    # kafka-python's encode is a weak method: the header must stay referenced while it encodes.
    header = RequestHeader(req, correlation_id=correlation_id, client_id="runnel-test")
    body = header.encode() + req.encode()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        frame = _read_exactly(sock, size)
    (answered,) = struct.unpack_from(">i", frame)
    assert answered == correlation_id, f"response to correlation id {answered}, sent {correlation_id}"
    return req.RESPONSE_TYPE.decode(frame[4:])


def _read_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError(f"connection closed after {len(data)} of {n} bytes")
        data += chunk
    return data


def init_producer_id(bootstrap, transactional_id=None, timeout_ms=60000):
    """InitProducerId v1: (error_code, producer_id, producer_epoch)."""
    resp = request(bootstrap, InitProducerIdRequest_v1(transactional_id=transactional_id, transaction_timeout_ms=timeout_ms))
    return resp.error_code, resp.producer_id, resp.producer_epoch


def transaction_coordinator(bootstrap, transactional_id):
    """FindCoordinator v1 (key type 1) to `bootstrap`: (error_code, node_id, "host:port")."""
    from kafka.protocol.find_coordinator import FindCoordinatorRequest
    resp = request(bootstrap, FindCoordinatorRequest[1](transactional_id, 1))
    return resp.error_code, resp.coordinator_id, f"{resp.host}:{resp.port}"


def producer_ids(bootstrap, count, transactional_prefix=None, retry_for_s=20.0):
    """`count` producer ids from one broker (idempotent, or transactional with ids
    `<prefix>-<i>`, asked of the coordinator `bootstrap` names, as clients do);
    COORDINATOR_LOAD_IN_PROGRESS (14), COORDINATOR_NOT_AVAILABLE (15) and
    NOT_COORDINATOR (16) are retried, as clients do."""
    import time
    ids = []
    for i in range(count):
        txn = f"{transactional_prefix}-{i}" if transactional_prefix else None
        deadline = time.time() + retry_for_s
        while True:
            target = bootstrap
            if txn is not None:
                found, _, address = transaction_coordinator(bootstrap, txn)
                if found != 0 and time.time() < deadline:
                    time.sleep(0.1)
                    continue
                assert found == 0, f"FindCoordinator for {txn} from {bootstrap}: error {found}"
                target = address
            error, pid, epoch = init_producer_id(target, txn)
            if error in (14, 15, 16) and time.time() < deadline:
                time.sleep(0.1)
                continue
            assert error == 0, f"InitProducerId to {bootstrap} (transactional id {txn}): error {error}"
            assert epoch == 0 and pid >= 0, (pid, epoch)
            ids.append(pid)
            break
    return ids


# --- Flexible (KIP-482) requests that kafka-python does not have: a minimal
# writer and reader, enough for ApiVersions v3, EndTxn v4-5, Produce v9-12,
# AddPartitionsToTxn v3 and DescribeTransactions v0.

class Writer:
    def __init__(self):
        self.buf = bytearray()

    def int8(self, v):
        self.buf += struct.pack(">b", v)
        return self

    def int16(self, v):
        self.buf += struct.pack(">h", v)
        return self

    def int32(self, v):
        self.buf += struct.pack(">i", v)
        return self

    def int64(self, v):
        self.buf += struct.pack(">q", v)
        return self

    def uvarint(self, v):
        while v >= 0x80:
            self.buf.append((v & 0x7F) | 0x80)
            v >>= 7
        self.buf.append(v)
        return self

    def compact_string(self, s):
        if s is None:
            return self.uvarint(0)
        data = s.encode()
        self.uvarint(len(data) + 1)
        self.buf += data
        return self

    def compact_bytes(self, b):
        if b is None:
            return self.uvarint(0)
        self.uvarint(len(b) + 1)
        self.buf += b
        return self

    def compact_array(self, items, write_item):
        self.uvarint(len(items) + 1)
        for item in items:
            write_item(self, item)
        return self

    def tags(self):
        return self.uvarint(0)


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def _take(self, fmt):
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def int8(self):
        return self._take(">b")

    def int16(self):
        return self._take(">h")

    def int32(self):
        return self._take(">i")

    def int64(self):
        return self._take(">q")

    def uvarint(self):
        shift = value = 0
        while True:
            byte = self.data[self.pos]
            self.pos += 1
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7

    def compact_string(self):
        n = self.uvarint()
        if n == 0:
            return None
        s = self.data[self.pos:self.pos + n - 1].decode()
        self.pos += n - 1
        return s

    def compact_array(self, read_item):
        n = self.uvarint()
        return None if n == 0 else [read_item(self) for _ in range(n - 1)]

    def tags(self):
        """Tagged fields: {tag: raw bytes}."""
        out = {}
        for _ in range(self.uvarint()):
            tag, size = self.uvarint(), self.uvarint()
            out[tag] = self.data[self.pos:self.pos + size]
            self.pos += size
        return out


def flexible_request(bootstrap, api_key, version, body, timeout=30.0, correlation_id=7, response_header_tags=True):
    """Sends a flexible request (header v2) and returns a Reader over the response
    body; ApiVersions' response header is v0 (no tags)."""
    host, port = bootstrap.rsplit(":", 1)
    header = Writer().int16(api_key).int16(version).int32(correlation_id)
    client_id = b"runnel-test"
    header.int16(len(client_id))
    header.buf += client_id
    header.tags()
    frame = bytes(header.buf) + bytes(body.buf)
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", _read_exactly(sock, 4))[0]
        data = _read_exactly(sock, size)
    reader = Reader(data)
    assert reader.int32() == correlation_id
    if response_header_tags:
        reader.tags()
    return reader


def api_versions_features(bootstrap):
    """ApiVersions v3: (error, {api: (min, max)}, supported {name: (min, max)},
    finalized_epoch, finalized {name: (min_level, max_level)})."""
    body = Writer().compact_string("runnel-test").compact_string("1.0").tags()
    r = flexible_request(bootstrap, 18, 3, body, response_header_tags=False)
    error = r.int16()
    apis = dict(r.compact_array(lambda r: (r.int16(), (r.int16(), r.int16(), r.tags())[:2])) or [])
    r.int32()  # throttle
    tags = r.tags()
    supported, finalized, epoch = {}, {}, -1
    if 0 in tags:
        t = Reader(tags[0])
        for name, lo, hi in t.compact_array(lambda t: (t.compact_string(), t.int16(), t.int16(), t.tags())[:3]) or []:
            supported[name] = (lo, hi)
    if 1 in tags:
        epoch = Reader(tags[1]).int64()
    if 2 in tags:
        t = Reader(tags[2])
        # FinalizedFeatureKey: name, max_version_level, min_version_level.
        for name, hi, lo in t.compact_array(lambda t: (t.compact_string(), t.int16(), t.int16(), t.tags())[:3]) or []:
            finalized[name] = (lo, hi)
    return error, apis, supported, epoch, finalized


def end_txn(bootstrap, transactional_id, producer_id, epoch, commit, version=5):
    """EndTxn v3-5: (error, producer_id, producer_epoch); v<5 answer no id/epoch (-1)."""
    body = Writer().compact_string(transactional_id).int64(producer_id).int16(epoch).int8(1 if commit else 0).tags()
    r = flexible_request(bootstrap, 26, version, body)
    r.int32()
    error = r.int16()
    if version >= 5:
        return error, r.int64(), r.int16()
    return error, -1, -1


def add_partitions_to_txn(bootstrap, transactional_id, producer_id, epoch, topic, partitions):
    """AddPartitionsToTxn v3 (a client's): the per-partition error codes."""
    body = (Writer().compact_string(transactional_id).int64(producer_id).int16(epoch)
            .compact_array([topic], lambda w, t: w.compact_string(t).compact_array(partitions, lambda w, p: w.int32(p)).tags())
            .tags())
    r = flexible_request(bootstrap, 24, 3, body)
    r.int32()
    results = r.compact_array(lambda r: (r.compact_string(), r.compact_array(lambda r: (r.int32(), r.int16(), r.tags())[:2]), r.tags())[:2])
    return {(name, p): e for name, parts in results for p, e in parts}


def transactional_batch(producer_id, epoch, base_sequence, values):
    """A transactional record batch (magic 2) of `values`."""
    from kafka.record.default_records import DefaultRecordBatchBuilder
    import time
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=1, producer_id=producer_id,
                                        producer_epoch=epoch, base_sequence=base_sequence, batch_size=1 << 20)
    now = int(time.time() * 1000)
    for i, v in enumerate(values):
        builder.append(i, timestamp=now, key=None, value=v.encode(), headers=[])
    return bytes(builder.build())


def produce_flexible(bootstrap, version, transactional_id, topic, partition, records, acks=-1):
    """Produce v9-12 of one partition: (error_code, base_offset, error_message)."""
    body = (Writer().compact_string(transactional_id).int16(acks).int32(30000)
            .compact_array([topic], lambda w, t: w.compact_string(t).compact_array(
                [partition], lambda w, p: w.int32(p).compact_bytes(records).tags()).tags())
            .tags())
    r = flexible_request(bootstrap, 0, version, body)

    def partition_response(r):
        index, error, base = r.int32(), r.int16(), r.int64()
        r.int64(), r.int64()
        r.compact_array(lambda r: (r.int32(), r.compact_string(), r.tags()))
        message = r.compact_string()
        r.tags()
        return index, error, base, message

    topics = r.compact_array(lambda r: (r.compact_string(), r.compact_array(partition_response), r.tags())[:2])
    _, parts = topics[0]
    _, error, base, message = parts[0]
    return error, base, message


def describe_transaction(bootstrap, transactional_id):
    """DescribeTransactions v0 of one id: dict of its fields (partitions as a set of (topic, p))."""
    body = Writer().compact_array([transactional_id], lambda w, t: w.compact_string(t)).tags()
    r = flexible_request(bootstrap, 65, 0, body)
    r.int32()

    def state(r):
        out = {"error": r.int16(), "id": r.compact_string(), "state": r.compact_string(), "timeout_ms": r.int32(),
               "start_ms": r.int64(), "producer_id": r.int64(), "producer_epoch": r.int16()}
        topics = r.compact_array(lambda r: (r.compact_string(), r.compact_array(lambda r: r.int32()), r.tags())[:2]) or []
        out["partitions"] = {(t, p) for t, ps in topics for p in ps}
        r.tags()
        return out

    return r.compact_array(state)[0]


def alter_client_quotas(bootstrap, entries, validate_only=False, version=1):
    """AlterClientQuotas v1: `entries` = [([(entity_type, name or None)], [(key, value or None to remove)])].
    Returns [(error_code, error_message, [(entity_type, name)])] as answered."""
    def entry(w, e):
        entity, ops = e
        w.compact_array(entity, lambda w, p: w.compact_string(p[0]).compact_string(p[1]).tags())
        w.compact_array(ops, lambda w, op: _float64(w.compact_string(op[0]), op[1] or 0.0).int8(1 if op[1] is None else 0).tags())
        w.tags()
    body = Writer().compact_array(entries, entry).int8(1 if validate_only else 0).tags()
    r = flexible_request(bootstrap, 49, version, body)
    r.int32()  # throttle
    return r.compact_array(
        lambda r: (r.int16(), r.compact_string(), r.compact_array(lambda r: (r.compact_string(), r.compact_string(), r.tags())[:2]), r.tags())[:3]
    )


def describe_client_quotas(bootstrap, components, strict=False, version=1):
    """DescribeClientQuotas v1: `components` = [(entity_type, match_type, match)] (0 exact, 1 default, 2 any).
    Returns (error_code, error_message, {((type, name), ...): {key: value}} or None)."""
    body = Writer().compact_array(components, lambda w, c: w.compact_string(c[0]).int8(c[1]).compact_string(c[2]).tags())
    body.int8(1 if strict else 0).tags()
    r = flexible_request(bootstrap, 48, version, body)
    r.int32()  # throttle
    error, message = r.int16(), r.compact_string()
    entries = r.compact_array(
        lambda r: (
            tuple(sorted(r.compact_array(lambda r: (r.compact_string(), r.compact_string(), r.tags())[:2]))),
            dict(r.compact_array(lambda r: (r.compact_string(), r._take(">d"), r.tags())[:2])),
            r.tags(),
        )[:2]
    )
    return error, message, (None if entries is None else dict(entries))


def _float64(w, v):
    w.buf += struct.pack(">d", v)
    return w


def create_topics_v7(bootstrap, topics, partitions):
    """A raw CreateTopics v7 (client id runnel-test) of `topics`, each with
    `partitions` partitions and replication factor 1: (throttle_time_ms,
    {topic: {error_code, num_partitions, configs (names), topic_config_error_code}})."""

    def topic(w, name):
        w.compact_string(name).int32(partitions).int16(1).compact_array([], None).compact_array([], None).tags()
    body = Writer().compact_array(topics, topic).int32(30000).int8(0).tags()
    r = flexible_request(bootstrap, 19, 7, body)
    throttle_ms = r.int32()

    def config(r):
        name = r.compact_string()
        r.compact_string(), r.int8(), r.int8(), r.int8(), r.tags()
        return name

    def result(r):
        name = r.compact_string()
        r.pos += 16  # topic id
        error_code = r.int16()
        r.compact_string()
        num_partitions, _ = r.int32(), r.int16()
        configs = r.compact_array(config)
        tags = r.tags()
        config_error = struct.unpack(">h", tags[0])[0] if 0 in tags else 0
        return name, {"error_code": error_code, "num_partitions": num_partitions, "configs": configs,
                      "topic_config_error_code": config_error}
    return throttle_ms, dict(r.compact_array(result))
