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
