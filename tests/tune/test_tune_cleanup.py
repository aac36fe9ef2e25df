"""The driver frees a stopped trial's trainer placement group, exactly that one, once."""

from __future__ import annotations

import pytest
import ray
from ray.util.placement_group import placement_group, placement_group_table

from quantray.train.launch import TRAINER_PLACEMENT_GROUP_KEY
from quantray.tune.cleanup import release_trainer_placement_group

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_release_removes_only_the_reported_group(local_ray) -> None:
    stopped = placement_group([{"CPU": 1}])
    other = placement_group([{"CPU": 1}])
    ray.get([stopped.ready(), other.ready()])
    assert ray.available_resources().get("CPU", 0) == 0

    assert release_trainer_placement_group({TRAINER_PLACEMENT_GROUP_KEY: stopped.id.hex()})
    table = placement_group_table()
    assert table[stopped.id.hex()]["state"] == "REMOVED"
    assert table[other.id.hex()]["state"] == "CREATED"
    assert not release_trainer_placement_group({TRAINER_PLACEMENT_GROUP_KEY: stopped.id.hex()})  # already gone
    assert not release_trainer_placement_group({"val_sharpe": 1.0})  # single-worker trials report none
