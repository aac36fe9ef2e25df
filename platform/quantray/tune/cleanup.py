"""Free a stopped multi-worker trial's TorchTrainer placement group from the Tune driver.

When ASHA stops a trial, Tune ends the trial's actor; the Train controller it started dies with
it, and its workers' placement group is left for Ray Train's own cleaner, an actor that polls the
controller through the State API. When that fails (no dashboard, a busy machine, a stop before the
worker group registered) the group keeps its CPUs/GPUs and the next trial waits forever (Ray
#54305, #65443). Rank 0 reports its group's id with every result, so the driver knows exactly which
group belongs to the trial and removes it as soon as the trial stops; a group Ray already removed
is left alone.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from quantray.train.launch import TRAINER_PLACEMENT_GROUP_KEY


class TrainerPlacementGroupReaper(Callback):
    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release_trainer_placement_group(trial.last_result or {})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        release_trainer_placement_group(trial.last_result or {})


def release_trainer_placement_group(result: dict) -> bool:
    """Remove the placement group named in `result`, if it still exists; True if removed."""
    import ray
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    group_hex = result.get(TRAINER_PLACEMENT_GROUP_KEY)
    if not group_hex:
        return False
    state = placement_group_table().get(group_hex, {}).get("state")
    if state in (None, "REMOVED"):
        return False
    remove_placement_group(PlacementGroup(ray.PlacementGroupID(bytes.fromhex(group_hex))))
    return True
