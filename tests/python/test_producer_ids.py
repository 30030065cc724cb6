"""Producer ids come from blocks of the metadata quorum's controller: one node
never hands out an id twice, across clean restarts and kill -9, and a data
directory whose broker issued ids from its local counter (the release before
the controller's blocks) keeps them unique after the upgrade."""
import json
import os

import pytest

from raw_requests import producer_ids
from runnel_broker import Broker

# The MetaStore value the local counter kept: every id below it may have been issued.
LEGACY_KEY = "producer.id.next.block"


def test_ids_never_repeat_across_clean_restarts_and_kill9(make_broker):
    broker = make_broker()
    issued = producer_ids(broker.bootstrap, 5) + producer_ids(broker.bootstrap, 3, "before-restart")
    broker.restart()
    issued += producer_ids(broker.bootstrap, 5) + producer_ids(broker.bootstrap, 3, "after-restart")
    broker.kill9()
    broker.start()
    issued += producer_ids(broker.bootstrap, 5) + producer_ids(broker.bootstrap, 3, "after-kill")
    assert len(set(issued)) == len(issued), f"a producer id was issued twice: {issued}"


def write_legacy_high_water(data_dir, high_water):
    """What the local counter did before every block: put the next block's start into
    meta/values.json (an atomic replace of the whole JSON object), keeping the rest."""
    path = os.path.join(data_dir, "meta", "values.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    values = {}
    if os.path.exists(path):
        with open(path) as f:
            values = json.load(f)
    values[LEGACY_KEY] = str(high_water)
    with open(path + ".tmp", "w") as f:
        json.dump(values, f, indent=2)
    os.replace(path + ".tmp", path)


@pytest.mark.parametrize("layout", ["before-the-quorum", "with-the-quorum"])
def test_ids_of_the_local_counter_stay_unique_after_the_upgrade(tmp_path, layout):
    """`before-the-quorum`: a data directory of a release without the metadata quorum
    (only meta/values.json with the counter). `with-the-quorum`: the release just before
    this one (quorum log and the local counter): the quorum has already been started,
    then the counter's value is set as that release left it after issuing ids below 7000."""
    data_dir = str(tmp_path / "data")
    high_water = 7000
    if layout == "with-the-quorum":
        first = Broker(data_dir=data_dir).start()
        try:
            first.stop()
        finally:
            first.cleanup()
    write_legacy_high_water(data_dir, high_water)
    broker = Broker(data_dir=data_dir).start()
    try:
        issued = producer_ids(broker.bootstrap, 5) + producer_ids(broker.bootstrap, 3, "upgraded")
        assert min(issued) >= high_water, f"an id the local counter may have issued was handed out again: {issued}"
        broker.restart()
        again = producer_ids(broker.bootstrap, 5)
        assert min(again) >= high_water and not set(again) & set(issued), (issued, again)
    finally:
        broker.cleanup()
