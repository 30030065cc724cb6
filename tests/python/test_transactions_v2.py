"""Transactions v2 (KIP-890): the broker finalizes `transaction.version` 2 in
ApiVersions, EndTxn v5 bumps the producer epoch at every commit/abort, a
Produce v12 adds its partition to the transaction itself, and transactions
v1 producers keep KIP-890 part 1's verification (a produce to a partition not
in the transaction is refused).

Raw requests (tests/python/raw_requests.py) pin the wire answers, which were
compared with Apache Kafka 4.3 (scripts/kafka.sh start); the Java client
(kafka-clients 4.3.0) shows that a real client speaks v2 to Runnel.
"""
import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import raw_requests as rr  # noqa: E402
from test_transactions import FAST_TXNS, create_topic, read_values  # noqa: E402

NONE, INVALID_PRODUCER_EPOCH, NOT_ENOUGH_REPLICAS, INVALID_TXN_STATE, PRODUCER_FENCED, TRANSACTION_ABORTABLE = 0, 47, 19, 48, 90, 120


@pytest.fixture
def txn_broker(make_broker):
    return make_broker(FAST_TXNS)


def init(bootstrap, txn_id):
    deadline_tries = 100
    for _ in range(deadline_tries):
        error, pid, epoch = rr.init_producer_id(bootstrap, txn_id)
        if error not in (14, 15, 51):  # loading, coordinator not available, concurrent transactions
            break
        import time
        time.sleep(0.1)
    assert error == NONE, error
    return pid, epoch


def test_api_versions_finalizes_transaction_version_2(txn_broker, make_broker):
    """As Kafka 4.3 answers: v4 lists transaction.version supported 0-2 (v3
    leaves out features whose minimum is 0), both finalize it at 2 with an
    epoch >= 0; `transaction.version=0` finalizes nothing (clients speak v1)."""
    error, apis, supported, epoch, finalized = rr.api_versions_features(txn_broker.bootstrap)
    assert error == NONE
    assert supported == {}, supported
    assert finalized.get("transaction.version") == (2, 2), finalized
    assert epoch >= 0
    body = rr.Writer().compact_string("runnel-test").compact_string("1.0").tags()
    r = rr.flexible_request(txn_broker.bootstrap, 18, 4, body, response_header_tags=False)
    assert r.int16() == NONE
    r.compact_array(lambda r: (r.int16(), r.int16(), r.int16(), r.tags()))
    r.int32()
    tags = r.tags()
    v4_supported = {n: (lo, hi) for n, lo, hi in (rr.Reader(tags[0]).compact_array(lambda t: (t.compact_string(), t.int16(), t.int16(), t.tags())[:3]))}
    assert v4_supported.get("transaction.version") == (0, 2), v4_supported
    pinned = make_broker({"transaction.version": "0"})
    _, _, _, epoch, finalized = rr.api_versions_features(pinned.bootstrap)
    assert "transaction.version" not in finalized and epoch >= 0, finalized


def test_end_txn_v5_bumps_the_epoch_and_a_produce_v12_adds_its_partition(txn_broker, topic_name):
    """A v2 producer: Produce v12 to a partition never added succeeds and the
    partition is in the transaction; EndTxn v5 answers epoch + 1 (the
    markers carry it); a retried EndTxn with the old epoch succeeds for the
    same outcome and is INVALID_TXN_STATE for the other; the next
    transaction runs at the bumped epoch (sequence 0) and fences the old one."""
    bootstrap = txn_broker.bootstrap
    create_topic(bootstrap, topic_name, partitions=2)
    txn_id = "v2-" + uuid.uuid4().hex[:8]
    pid, epoch = init(bootstrap, txn_id)
    batch = rr.transactional_batch(pid, epoch, 0, ["committed-0", "committed-1"])
    error, base, message = rr.produce_flexible(bootstrap, 12, txn_id, topic_name, 1, batch)
    assert (error, base) == (NONE, 0), message
    described = rr.describe_transaction(bootstrap, txn_id)
    assert described["state"] == "Ongoing" and described["partitions"] == {(topic_name, 1)}, described
    assert (described["producer_id"], described["producer_epoch"]) == (pid, epoch)

    assert rr.end_txn(bootstrap, txn_id, pid, epoch, commit=True) == (NONE, pid, epoch + 1)
    described = rr.describe_transaction(bootstrap, txn_id)
    assert (described["state"], described["producer_epoch"], described["partitions"]) == ("CompleteCommit", epoch + 1, set())
    # The response to the commit was lost: the client retries with the epoch it had.
    assert rr.end_txn(bootstrap, txn_id, pid, epoch, commit=True) == (NONE, pid, epoch + 1)
    assert rr.end_txn(bootstrap, txn_id, pid, epoch, commit=False)[0] == INVALID_TXN_STATE
    # The bumped epoch has no transaction open yet: a commit is INVALID_TXN_STATE (as Kafka 4.3).
    assert rr.end_txn(bootstrap, txn_id, pid, epoch + 1, commit=True)[0] == INVALID_TXN_STATE

    # The next transaction at the bumped epoch, aborted; the old epoch is fenced now.
    batch = rr.transactional_batch(pid, epoch + 1, 0, ["aborted-0"])
    error, _, message = rr.produce_flexible(bootstrap, 12, txn_id, topic_name, 0, batch)
    assert error == NONE, message
    assert rr.end_txn(bootstrap, txn_id, pid, epoch, commit=False)[0] == PRODUCER_FENCED
    assert rr.end_txn(bootstrap, txn_id, pid, epoch + 1, commit=False) == (NONE, pid, epoch + 2)
    stale = rr.transactional_batch(pid, epoch + 1, 1, ["zombie"])
    assert rr.produce_flexible(bootstrap, 12, txn_id, topic_name, 0, stale)[0] == INVALID_PRODUCER_EPOCH
    # With no transaction open, a v2 abort moves to the next epoch (Kafka 4.3 does; v4 is fenced).
    assert rr.end_txn(bootstrap, txn_id, pid, epoch + 2, commit=False) == (NONE, pid, epoch + 3)
    assert rr.end_txn(bootstrap, txn_id, pid, epoch + 3, commit=False, version=4)[0] == PRODUCER_FENCED

    assert sorted(read_values(bootstrap, topic_name, "read_committed", expect=2, idle=2.0)) == ["committed-0", "committed-1"]
    assert sorted(read_values(bootstrap, topic_name, "read_uncommitted", expect=3, idle=2.0)) == ["aborted-0", "committed-0", "committed-1"]


def test_a_v1_producer_may_not_write_to_a_partition_outside_its_transaction(txn_broker, topic_name):
    """KIP-890 part 1, as Kafka answers: Produce v10 of a transactional batch to
    a partition not added gets INVALID_TXN_STATE, v11 TRANSACTION_ABORTABLE,
    and nothing is written; once AddPartitionsToTxn added it the produce goes
    through, and EndTxn v4 keeps the epoch."""
    bootstrap = txn_broker.bootstrap
    create_topic(bootstrap, topic_name)
    txn_id = "v1-" + uuid.uuid4().hex[:8]
    pid, epoch = init(bootstrap, txn_id)
    batch = rr.transactional_batch(pid, epoch, 0, ["unverified"])
    assert rr.produce_flexible(bootstrap, 10, txn_id, topic_name, 0, batch)[0] == INVALID_TXN_STATE
    assert rr.produce_flexible(bootstrap, 11, txn_id, topic_name, 0, batch)[0] == TRANSACTION_ABORTABLE
    assert rr.describe_transaction(bootstrap, txn_id)["partitions"] == set()
    assert rr.add_partitions_to_txn(bootstrap, txn_id, pid, epoch, topic_name, [0]) == {(topic_name, 0): NONE}
    error, base, message = rr.produce_flexible(bootstrap, 11, txn_id, topic_name, 0, batch)
    assert (error, base) == (NONE, 0), message
    assert rr.end_txn(bootstrap, txn_id, pid, epoch, commit=True, version=4) == (NONE, -1, -1)
    described = rr.describe_transaction(bootstrap, txn_id)
    assert (described["state"], described["producer_epoch"]) == ("CompleteCommit", epoch)
    assert read_values(bootstrap, topic_name, "read_committed", expect=1, idle=2.0) == ["unverified"]


def test_verification_can_be_disabled_for_v1_producers(make_broker, topic_name):
    """`transaction.partition.verification.enable=false` (Kafka's switch)
    lets a v1 produce through unverified; v2's implicit add still happens."""
    broker = make_broker({**FAST_TXNS, "transaction.partition.verification.enable": "false"})
    create_topic(broker.bootstrap, topic_name)
    txn_id = "noverify-" + uuid.uuid4().hex[:8]
    pid, epoch = init(broker.bootstrap, txn_id)
    batch = rr.transactional_batch(pid, epoch, 0, ["unverified"])
    assert rr.produce_flexible(broker.bootstrap, 10, txn_id, topic_name, 0, batch)[0] == NONE


def java_tv2_run(broker, tmp_path, topic_name):
    from test_java import run_java_program
    source, sink = topic_name + "-in", topic_name + "-out"
    create_topic(broker.bootstrap, source)
    create_topic(broker.bootstrap, sink, partitions=2)
    txn_id = "java-v2-" + topic_name
    returncode, out = run_java_program(tmp_path, "TransactionsV2", broker.bootstrap, source, sink, "g-" + topic_name, txn_id, timeout=180)
    assert returncode == 0 and "PASS" in out, out[-4000:]
    return rr.describe_transaction(broker.bootstrap, txn_id)


def test_java_client_speaks_transactions_v2(txn_broker, tmp_path, topic_name):
    """The Java client (4.3.0) sees transaction.version 2 and speaks v2:
    consume-transform-produce with sendOffsetsToTransaction over four
    transactions (commit, abort, commit, commit) gives each input once to
    read_committed and commits the group's offsets; its epoch went 0 → 4, one
    bump per EndTxn (v1 keeps epoch 0, see the next test)."""
    described = java_tv2_run(txn_broker, tmp_path, topic_name)
    assert (described["state"], described["producer_epoch"]) == ("CompleteCommit", 4), described


def test_java_client_speaks_v1_when_transaction_version_is_0(make_broker, tmp_path, topic_name):
    """The same program against `transaction.version=0`: the client falls back
    to v1 (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn v4), epoch stays 0."""
    broker = make_broker({**FAST_TXNS, "transaction.version": "0"})
    described = java_tv2_run(broker, tmp_path, topic_name)
    assert (described["state"], described["producer_epoch"]) == ("CompleteCommit", 0), described
