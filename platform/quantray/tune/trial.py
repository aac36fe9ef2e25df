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
