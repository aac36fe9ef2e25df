"""Launchers: how one trial runs the training loop.

- A trial that asks for one worker runs `loop.fit` inside its Tune trial process
  (`InProcessSession` reporting through `ray.tune.report`): no extra actors, about a second of
  overhead per trial.
- A trial (or a final fit) that asks for several workers builds a Ray Train V2 `TorchTrainer`
  from its Tune function trainable (Train V2 has no `Tuner(TorchTrainer)`); every worker runs the
  same `loop.fit` with a `WorkerSession` that reads its shard of a Ray Data dataset, wraps the
  model in DDP (gloo on CPU, nccl on GPU) and reports through `ray.train.report`; metrics reach
  Tune through `TuneReportCallback`.

Workers read only their config (a `TrainConfig` as a dict) and build their data from it.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

from quantray.config import TrainConfig, resolve, to_dict
from quantray.train.loop import InProcessSession, consecutive_batches, fit

if TYPE_CHECKING:
    import torch

    from quantray.data.windows import Windows

    from quantray.tune.space import SearchSpace

# Rank 0 reports the id of its worker group's placement group, so the Tune driver can free it
# when it stops the trial (see quantray.tune.cleanup).
TRAINER_PLACEMENT_GROUP_KEY = "trainer_placement_group"


def trial_main(params: dict[str, Any], *, space: "SearchSpace", data_source: str | None, storage: str) -> None:
    """The Tune function trainable: resolve this trial's config, then run the loop."""
    import ray.tune

    config = space.resolve(params, data_source=data_source)
    if config.workers > 1:
        trial_id = ray.tune.get_context().get_trial_id()
        experiment = ray.tune.get_context().get_experiment_name()
        run_torch_trainer(config, name=f"{experiment}-{trial_id}-train", storage=storage, in_tune=True)
        return
    from quantray.data.pipeline import prepare

    data = prepare(config.data)
    session = InProcessSession(data, config, report=_tune_report, latest_checkpoint=_tune_latest_checkpoint,
                               device=_device())
    fit(config, data, session)


def run_torch_trainer(config: TrainConfig, *, name: str, storage: str, in_tune: bool) -> Any:
    """Run `loop.fit` on `config.workers` DDP workers under Ray Train V2; returns the Train Result."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from quantray.data.pipeline import prepare
    from quantray.data.windows import ray_dataset

    data = prepare(config.data)
    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    use_gpu = config.gpus_per_worker > 0
    resources = {"CPU": 1.0, "GPU": config.gpus_per_worker} if use_gpu else {"CPU": 1.0}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=to_dict(config),
        scaling_config=ray.train.ScalingConfig(num_workers=config.workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        # The dates to shard, materialized here before the workers hold their CPUs: a streaming
        # dataset's tasks would wait for a CPU that DDP workers never release (a 2-CPU hang).
        datasets={"train": ray_dataset(data.windows("train")).materialize()},
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=storage,
            callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=2),  # a lost worker restarts from its checkpoint
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=1),
        ),
    )
    return trainer.fit()


def train_worker(config_dict: dict[str, Any]) -> None:
    """Ray Train worker entry point: reads only its config."""
    from quantray.data.pipeline import prepare

    config = resolve(TrainConfig, config_dict, where="train_loop_config")
    data = prepare(config.data)
    fit(config, data, WorkerSession(config, data.windows("train")))


class WorkerSession:
    """The loop's session on a Ray Train worker: the dates of its Ray Data shard, gathered into
    windows from this worker's own features; DDP; rank-0 checkpoints."""

    def __init__(self, config: TrainConfig, windows: "Windows") -> None:
        import ray.train.torch

        self.device = str(ray.train.torch.get_device())
        self._config = config
        self._windows = windows
        self._dates: np.ndarray | None = None

    def train_batches(self, epoch: int) -> Iterator[dict[str, np.ndarray]]:
        import ray.train

        from quantray.data.windows import shard_dates

        if self._dates is None:  # a shard's dates are fixed: one Ray Data read per run, not per epoch
            self._dates = shard_dates(ray.train.get_dataset_shard("train"))
        dates = self._dates
        rank = ray.train.get_context().get_world_rank()
        rng = np.random.default_rng((self._config.seed, epoch, rank))
        for rows in consecutive_batches(len(dates), self._config.optim.batch_dates, rng):
            yield self._windows.gather(dates[rows])

    def prepare_model(self, model: "torch.nn.Module") -> "torch.nn.Module":
        import ray.train.torch

        return ray.train.torch.prepare_model(model)

    def latest_checkpoint(self) -> Path | None:
        import ray.train

        return _copy_out(ray.train.get_checkpoint())

    def report(self, metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None:
        import ray.train

        if ray.train.get_context().get_world_rank() != 0:
            ray.train.report(metrics, checkpoint=None)
            return
        group = ray.util.get_current_placement_group()
        if group is not None:
            metrics = {**metrics, TRAINER_PLACEMENT_GROUP_KEY: group.id.hex()}
        with tempfile.TemporaryDirectory(prefix="quantray-ckpt-") as tmp:
            write_checkpoint(Path(tmp))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _tune_report(metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None:
    import ray.tune

    with tempfile.TemporaryDirectory(prefix="quantray-ckpt-") as tmp:
        write_checkpoint(Path(tmp))
        ray.tune.report(metrics, checkpoint=ray.tune.Checkpoint.from_directory(tmp))


def _tune_latest_checkpoint() -> Path | None:
    import ray.tune

    return _copy_out(ray.tune.get_checkpoint())


def _copy_out(checkpoint: Any) -> Path | None:
    """A local copy of a Ray checkpoint (it may live in remote storage), or None."""
    if checkpoint is None:
        return None
    target = Path(tempfile.mkdtemp(prefix="quantray-resume-"))
    with checkpoint.as_directory() as directory:
        shutil.copytree(directory, target, dirs_exist_ok=True)
    return target


def _device() -> str:
    import ray
    import torch

    return "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
