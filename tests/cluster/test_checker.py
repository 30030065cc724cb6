"""The checker on hand-made histories: a valid one passes, and each kind of
anomaly the issue names is found (so a fault test that passes means something)."""
import checker


def valid_history():
    """Two writers, two partitions, every record acknowledged, group done."""
    sent = {"a": {0, 1, 2, 3}, "b": {0, 1}}
    log = {
        0: [(0, "a:0"), (1, "b:0"), (2, "a:2")],
        1: [(0, "a:1"), (1, "a:3"), (2, "b:1")],
    }
    acks = [(p, o, v) for p, records in log.items() for o, v in records]
    end_offsets = {0: 3, 1: 3}
    samples = [(1.0, 0, 1), (1.0, 1, 0), (2.0, 0, 3), (2.0, 1, 3)]
    return dict(sent=sent, acks=acks, log=log, end_offsets=end_offsets,
                commit_samples=samples, final_commits={0: 3, 1: 3})


def kinds(history):
    return sorted({kind for kind, _ in checker.check(**history)})


def test_valid_history_passes():
    assert checker.check(**valid_history()) == []


def test_unacknowledged_record_may_be_missing():
    h = valid_history()
    h["sent"]["a"].add(4)  # sent, never acknowledged, never written: indeterminate, allowed
    assert kinds(h) == []


def test_lost_acknowledged_record():
    h = valid_history()
    h["acks"].append((1, 3, "b:2"))
    h["sent"]["b"].add(2)
    assert kinds(h) == [checker.KIND_LOST]


def test_acknowledged_offset_holds_another_record():
    h = valid_history()
    # "a:2" was acknowledged at 0/2, the log has it at 0/2; claim it was acked at 1/2.
    h["acks"] = [a for a in h["acks"] if a[2] != "a:2"] + [(1, 2, "a:2")]
    assert kinds(h) == [checker.KIND_ACK_MOVED]


def test_duplicate():
    h = valid_history()
    h["log"][1].append((3, "a:3"))
    h["end_offsets"][1] = 4
    h["final_commits"][1] = 4
    # a:3 twice in partition 1: a duplicate, and its second copy is also out of order.
    assert kinds(h) == [checker.KIND_DUPLICATE, checker.KIND_REORDER]


def test_duplicate_across_partitions():
    h = valid_history()
    h["log"][0].append((3, "b:1"))
    h["end_offsets"][0] = 4
    h["final_commits"][0] = 4
    assert kinds(h) == [checker.KIND_DUPLICATE]


def test_reorder_within_a_partition():
    h = valid_history()
    h["log"][0] = [(0, "a:2"), (1, "b:0"), (2, "a:0")]
    h["acks"] = [(p, o, v) for p, records in h["log"].items() for o, v in records]
    assert kinds(h) == [checker.KIND_REORDER]


def test_phantom_record():
    h = valid_history()
    h["log"][1].append((3, "c:0"))  # writer c never existed
    h["end_offsets"][1] = 4
    h["final_commits"][1] = 4
    assert kinds(h) == [checker.KIND_PHANTOM]


def test_phantom_sequence_of_a_known_writer_and_garbage():
    h = valid_history()
    h["log"][1] += [(3, "a:99"), (4, "not ours")]
    h["end_offsets"][1] = 5
    h["final_commits"][1] = 5
    assert kinds(h) == [checker.KIND_PHANTOM]
    assert len(checker.check(**h)) == 2


def test_offset_gap():
    h = valid_history()
    h["log"][0] = [(0, "a:0"), (2, "a:2")]
    h["sent"]["b"].discard(0)
    h["acks"] = [(p, o, v) for p, records in h["log"].items() for o, v in records]
    assert kinds(h) == [checker.KIND_GAP]


def test_log_short_of_the_high_watermark():
    h = valid_history()
    h["end_offsets"][1] = 5
    h["final_commits"][1] = 5
    assert kinds(h) == [checker.KIND_GAP]


def test_log_not_starting_at_zero():
    h = valid_history()
    h["log"][0] = h["log"][0][1:]
    h["acks"] = [(p, o, v) for p, records in h["log"].items() for o, v in records]
    h["sent"]["a"].discard(0)
    assert kinds(h) == [checker.KIND_GAP]


def test_committed_offset_moving_backwards():
    h = valid_history()
    h["commit_samples"].append((1.5, 0, 0))  # between 1 (t=1.0) and 3 (t=2.0)
    assert kinds(h) == [checker.KIND_COMMIT_BACKWARDS]


def test_samples_are_ordered_by_time_not_by_arrival():
    h = valid_history()
    h["commit_samples"] = list(reversed(h["commit_samples"]))
    assert kinds(h) == []


def test_group_that_did_not_finish():
    h = valid_history()
    h["final_commits"] = {0: 3}
    assert kinds(h) == [checker.KIND_UNFINISHED]


def test_many_anomalies_are_counted_not_all_listed():
    h = valid_history()
    h["acks"] += [(0, 100 + i, f"a:{100 + i}") for i in range(50)]
    found = checker.check(**h)
    assert len(found) == checker.MAX_DETAILS_PER_KIND + 1
    assert "30 more" in found[-1][1]
    assert checker.summary(found).startswith(checker.KIND_LOST)


def test_parse_value():
    assert checker.parse_value("java-ab:12") == ("java-ab", 12)
    assert checker.parse_value("x:y:3") == ("x:y", 3)
    assert checker.parse_value("nocolon") is None
    assert checker.parse_value(":3") is None
    assert checker.parse_value("a:-1") is None
    assert checker.parse_value(None) is None
