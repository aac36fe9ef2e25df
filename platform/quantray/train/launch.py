"""The multi-worker launcher: the training loop under Ray Train V2.

- A run that asks for one worker runs `loop.fit` in its own process (`InProcessSession`); inside a
  Tune trial that is `quantray.tune.trial.trial_main`.
- A run (a trial or a final fit) that asks for several workers builds a Ray Train V2 `TorchTrainer`
  (`run_torch_trainer`; Train V2 has no `Tuner(TorchTrainer)`); every worker runs the
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
from quantray.data.pipeline import prepare
from quantray.data.windows import Windows, ray_dataset, shard_dates
from quantray.train.loop import consecutive_batches, fit

if TYPE_CHECKING:
    import torch

# Rank 0 reports the id of its worker group's placement group, so the Tune driver can free it
# when it stops the trial (see quantray.tune.cleanup).
TRAINER_PLACEMENT_GROUP_KEY = "trainer_placement_group"


def run_torch_trainer(config: TrainConfig, *, name: str, storage: str, in_tune: bool) -> Any:
    """Run `loop.fit` on `config.workers` DDP workers under Ray Train V2; returns the Train Result."""
    import ray.train
    from ray.train.torch import TorchTrainer

    data = prepare(config.data)
    callbacks = []
    if in_tune:
        from ray.tune.integration.ray_train import TuneReportCallback

        callbacks.append(TuneReportCallback())
    use_gpu = config.gpus_per_worker > 0
    resources = {"CPU": config.cpus_per_worker, "GPU": config.gpus_per_worker} if use_gpu \
        else {"CPU": config.cpus_per_worker}
    trainer = TorchTrainer(
        train_worker,
        train_loop_config=to_dict(config),
        scaling_config=ray.train.ScalingConfig(num_workers=config.workers, use_gpu=use_gpu,
                                               resources_per_worker=resources),
        # The dates to shard, materialized here before the workers hold their CPUs: a streaming
        # dataset's tasks would wait for a CPU that DDP workers never release (a 2-CPU hang).
        datasets={"train": ray_dataset(data.windows("train", config.data.fold)).materialize()},
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

    config = resolve(TrainConfig, config_dict, where="train_loop_config")
    data = prepare(config.data)
    fit(config, data, WorkerSession(config, data.windows("train", config.data.fold)))


class WorkerSession:
    """The loop's session on a Ray Train worker: the dates of its Ray Data shard, gathered into
    windows from this worker's own features; DDP; rank-0 checkpoints."""

    def __init__(self, config: TrainConfig, windows: Windows) -> None:
        import ray.train.torch

        self.device = str(ray.train.torch.get_device())
        self._config = config
        self.train_windows = windows
        self._dates: np.ndarray | None = None

    def train_dates(self, epoch: int) -> Iterator[np.ndarray]:
        import ray.train

        if self._dates is None:  # a shard's dates are fixed: one Ray Data read per run, not per epoch
            self._dates = shard_dates(ray.train.get_dataset_shard("train"))
        dates = self._dates
        rank = ray.train.get_context().get_world_rank()
        rng = np.random.default_rng((self._config.seed, epoch, rank))
        for rows in consecutive_batches(len(dates), self._config.optim.batch_dates, rng):
            yield dates[rows]

    def prepare_model(self, model: "torch.nn.Module") -> "torch.nn.Module":
        import ray.train.torch

        # A head whose loss weight is 0 (barrier, volume, ... off in most spaces) gets no gradient, and
        # DDP's default is to wait for every parameter's gradient: the step would fail.
        return ray.train.torch.prepare_model(model, parallel_strategy_kwargs={"find_unused_parameters": True})

    def latest_checkpoint(self) -> Path | None:
        import ray.train

        return copy_out(ray.train.get_checkpoint())

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


def copy_out(checkpoint: Any) -> Path | None:
    """A local copy of a Ray checkpoint (it may live in remote storage), or None."""
    if checkpoint is None:
        return None
    target = Path(tempfile.mkdtemp(prefix="quantray-resume-"))
    with checkpoint.as_directory() as directory:
        shutil.copytree(directory, target, dirs_exist_ok=True)
    return target
