"""A Jepsen-style checker for a Kafka workload history (issue 11's "Proof").

Pure functions over plain data, so hand-made histories unit-test it
(tests/cluster/test_checker.py). A history is:

- ``sent``: every value a producer handed to its client, ``{writer: {seq, ...}}``
  (values are ``"<writer>:<seq>"``; a value may or may not reach the log unless acked);
- ``acks``: every acknowledged record, ``[(partition, offset, value), ...]``;
- ``log``: the topic read back from offset 0 after the run, ``{partition: [(offset, value), ...]}``;
- ``end_offsets``: each partition's high watermark when it was read back;
- ``commit_samples``: the group's committed offsets over time, ``[(time, partition, offset), ...]``;
- ``final_commits``: the group's committed offsets at the end, ``{partition: offset}``.

``check`` returns a list of anomalies (empty = the history is valid), each a
``(kind, detail)`` pair; kinds are the ``KIND_*`` constants.
"""
from collections import defaultdict

KIND_LOST = "lost-ack"                   # acknowledged, not in the log
KIND_ACK_MOVED = "ack-offset-mismatch"   # acknowledged at (p, o), but (p, o) holds something else
KIND_DUPLICATE = "duplicate"             # a value in the log more than once
KIND_REORDER = "reorder"                 # one writer's records in a partition out of send order
KIND_PHANTOM = "phantom"                 # a value in the log that no producer sent
KIND_GAP = "offset-gap"                  # offsets in a partition not dense from 0 to the high watermark
KIND_COMMIT_BACKWARDS = "commit-backwards"  # a committed offset moved backwards
KIND_UNFINISHED = "group-unfinished"     # the group did not consume to the end

MAX_DETAILS_PER_KIND = 20


def parse_value(value):
    """``"writer:seq"`` -> ``(writer, seq)``, or None when it is not one of ours."""
    if not isinstance(value, str) or ":" not in value:
        return None
    writer, _, seq = value.rpartition(":")
    if not writer or not seq.isdigit():
        return None
    return writer, int(seq)


def check(sent, acks, log, end_offsets, commit_samples=(), final_commits=None):
    anomalies = []
    counts = defaultdict(int)

    def report(kind, detail):
        counts[kind] += 1
        if counts[kind] <= MAX_DETAILS_PER_KIND:
            anomalies.append((kind, detail))

    # Where each value sits in the log (it may sit at several places: a duplicate).
    places = defaultdict(list)
    for partition, records in log.items():
        for offset, value in records:
            places[value].append((partition, offset))
    at = {(p, o): v for p, records in log.items() for o, v in records}

    # Every acknowledged record is in the log, at the offset it was acknowledged with.
    for partition, offset, value in acks:
        if value not in places:
            report(KIND_LOST, f"{value!r} acknowledged at {partition}/{offset} is not in the log")
        elif at.get((partition, offset)) != value:
            report(KIND_ACK_MOVED, f"{value!r} acknowledged at {partition}/{offset}, "
                                   f"found at {places[value]}, {partition}/{offset} holds {at.get((partition, offset))!r}")

    # Exactly once, and nothing that was never sent.
    for value, where in places.items():
        if len(where) > 1:
            report(KIND_DUPLICATE, f"{value!r} appears {len(where)} times: {sorted(where)}")
        parsed = parse_value(value)
        if parsed is None or parsed[1] not in sent.get(parsed[0], ()):
            report(KIND_PHANTOM, f"{value!r} at {where[0][0]}/{where[0][1]} was never sent")

    # In order per partition: each writer's sequence numbers rise with the offset.
    for partition, records in sorted(log.items()):
        last = {}
        for offset, value in sorted(records):
            parsed = parse_value(value)
            if parsed is None:
                continue
            writer, seq = parsed
            if writer in last and seq <= last[writer][1]:
                report(KIND_REORDER, f"partition {partition}: {value!r} at offset {offset} "
                                     f"after {writer}:{last[writer][1]} at offset {last[writer][0]}")
            last[writer] = (offset, seq)

    # Offsets dense from 0 to the high watermark (no retention, no compaction, no transactions).
    for partition in sorted(set(log) | set(end_offsets)):
        offsets = sorted(o for o, _ in log.get(partition, ()))
        expected = 0
        for offset in offsets:
            if offset != expected:
                report(KIND_GAP, f"partition {partition}: offset {offset} follows {expected - 1}")
            expected = offset + 1
        end = end_offsets.get(partition)
        if end is not None and expected != end:
            report(KIND_GAP, f"partition {partition}: read up to {expected}, high watermark {end}")

    # Committed offsets never move backwards.
    last_commit = {}
    for when, partition, offset in sorted(commit_samples, key=lambda s: s[0]):
        if offset < 0:
            continue
        before = last_commit.get(partition)
        if before is not None and offset < before[1]:
            report(KIND_COMMIT_BACKWARDS, f"partition {partition}: committed {offset} at t={when:.3f} "
                                          f"after {before[1]} at t={before[0]:.3f}")
        last_commit[partition] = (when, offset)

    # The group finished: it committed every partition's high watermark.
    if final_commits is not None:
        for partition, end in sorted(end_offsets.items()):
            committed = final_commits.get(partition, -1)
            if committed != end:
                report(KIND_UNFINISHED, f"partition {partition}: committed {committed}, high watermark {end}")

    for kind, n in counts.items():
        if n > MAX_DETAILS_PER_KIND:
            anomalies.append((kind, f"... {n - MAX_DETAILS_PER_KIND} more {kind} anomalies"))
    return anomalies


def summary(anomalies):
    """One line per kind with its count, then the details."""
    if not anomalies:
        return "valid"
    by_kind = defaultdict(int)
    for kind, _ in anomalies:
        by_kind[kind] += 1
    head = ", ".join(f"{kind}: {n}" for kind, n in sorted(by_kind.items()))
    return head + "\n" + "\n".join(f"  {kind}: {detail}" for kind, detail in anomalies)
