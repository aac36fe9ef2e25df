"""The Tune function trainable: one trial = resolve its config from the space, run the loop.

A trial that asks for one worker runs `loop.fit` inside its Tune trial process (an
`InProcessSession` reporting through `ray.tune.report`): no extra actors, about a second of
overhead per trial. A trial that asks for several workers drives a Ray Train `TorchTrainer`
(`quantray.train.launch.run_torch_trainer`), whose metrics reach Tune through `TuneReportCallback`.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

from quantray.data.pipeline import prepare
from quantray.train.launch import copy_out, run_torch_trainer
from quantray.train.loop import InProcessSession, fit
from quantray.tune.search import trial_resources
from quantray.tune.space import SearchSpace


def trial_main(params: dict[str, Any], *, space: SearchSpace, data_source: str | None, storage: str) -> None:
    """Resolve this trial's config from its sampled `params`, then run the training loop."""
    import ray.tune  # lazy: this module is imported by the driver before Ray starts

    config = space.resolve(params, data_source=data_source)
    if config.workers > 1:
        trial_id = ray.tune.get_context().get_trial_id()
        experiment = ray.tune.get_context().get_experiment_name()
        run_torch_trainer(config, name=f"{experiment}-{trial_id}-train", storage=storage, in_tune=True)
        return
    data = prepare(config.data)
    session = InProcessSession(data, config, report=_tune_report, latest_checkpoint=_tune_latest_checkpoint,
                               device=_device())
    fit(config, data, session)


def trial_trainable(space: SearchSpace, *, experiment: str, data_source: str | None, storage: str,
                    reuse_actors: bool) -> type:  # -> type[ray.tune.Trainable]
    """`trial_main` as the Trainable class Tune runs, the space and paths bound (through the object
    store) and the trial's resources attached.

    Its actor's repr is `trial <trial id> (<experiment>)`: the Ray dashboard shows it in the Actors
    page's Repr column and names the actor's tasks after it (`... .train`), `ray list actors
    --detail` as `repr_name`. Ray records the repr once, when the actor is created, so an actor Tune
    reuses for later trials would go on naming its first: with `reuse_actors` the repr names only
    the experiment (`trials of <experiment>`).
    """
    from ray import tune  # lazy: this module is imported by the driver before Ray starts
    from ray.tune.trainable import wrap_function

    function = tune.with_parameters(trial_main, space=space, data_source=data_source, storage=storage)
    base = wrap_function(tune.with_resources(function, trial_resources(space)))

    class QuantrayTrial(base):  # type: ignore[misc, valid-type]  # a class Tune builds at run time
        def __repr__(self) -> str:
            return f"trials of {experiment}" if reuse_actors else f"trial {self.trial_id} ({experiment})"

    QuantrayTrial.__qualname__ = "QuantrayTrial"  # the dashboard's Class column, not `trial_trainable.<locals>...`
    return QuantrayTrial


def _tune_report(metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None:
    import ray.tune

    with tempfile.TemporaryDirectory(prefix="quantray-ckpt-") as tmp:
        write_checkpoint(Path(tmp))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(tmp))


def _tune_latest_checkpoint() -> Path | None:
    import ray.tune

    return copy_out(ray.tune.get_checkpoint())


def _device() -> str:
    import ray
    import torch

    return "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
