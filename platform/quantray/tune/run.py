"""`quantray tune`: Optuna TPE proposes, ASHA stops poor trials early, every trial goes to MLflow.

The objective reported to Tune is the validation net Sharpe (`val_sharpe`), once per epoch.
Results and checkpoints live under `<storage>/<experiment>/`; `--resume` continues an
interrupted experiment there, keeping its finished trials.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quantray.errors import BadInput
from quantray.tune.space import SearchSpace, load_space

METRIC, MODE = "val_sharpe", "max"
DEFAULT_STORAGE = Path(".quantray") / "tune"


@dataclass(frozen=True)
class TuneRequest:
    space: Path
    data: str | None = None
    trials: int | None = None
    experiment: str | None = None
    address: str | None = None
    gpus_per_trial: float | None = None
    workers_per_trial: int | None = None
    resume: bool = False
    tracking_uri: str | None = None
    storage: Path = field(default_factory=lambda: default_storage())


@dataclass
class TuneSummary:
    experiment: str
    experiment_dir: Path
    n_trials: int
    n_failed: int
    best_trial: str | None
    best_val_sharpe: float
    best_checkpoint: Path | None
    seconds: float


def run_tune(request: TuneRequest) -> TuneSummary:
    """Run (or resume) a search and summarize it. Bad input fails before Ray starts."""
    space = _with_overrides(load_space(request.space), request)

    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    from quantray.data.pipeline import prepare
    from quantray.registry.store import tracking_uri as resolve_tracking_uri
    from quantray.train.launch import trial_main
    from quantray.tune.results import load_trials
    from quantray.tune.cleanup import TrainerPlacementGroupReaper
    from quantray.tune.progress import ProgressPrinter
    from quantray.tune.tracking import MlflowTrialLogger

    data_config = dataclasses.replace(space.data, source=request.data) if request.data else space.data
    prepare(data_config)  # validates the source and the history length before any trial starts
    storage = request.storage.resolve()
    experiment = _experiment_name(space, request, storage)
    experiment_dir = storage / experiment
    uri = resolve_tracking_uri(request.tracking_uri)

    # Tune warns on every snapshot when trials checkpoint each epoch (ours do, to keep `best/`)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = time.monotonic()
    print(f"experiment {experiment}: {space.budget.trials} trials, {space.budget.concurrency} at a time, "
          f"results under {experiment_dir}", flush=True)
    connect(request.address, dashboard=space.resources.workers > 1)
    trainable = tune.with_parameters(trial_main, space=space, data_source=request.data, storage=str(storage))
    trainable = tune.with_resources(trainable, _trial_resources(space))
    run_config = tune.RunConfig(
        name=experiment,
        storage_path=str(storage),
        callbacks=[
            MlflowTrialLogger(tracking_uri=uri, experiment=experiment, space=space, data_source=request.data),
            ProgressPrinter(total_trials=space.budget.trials, epochs=_epochs(space)),
            TrainerPlacementGroupReaper(),
        ],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),  # a NaN trial fails alone
        verbose=0,  # ProgressPrinter shows one line per trial event instead of Tune's tables
    )
    if request.resume and tune.Tuner.can_restore(str(experiment_dir)):
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_unfinished=True,
                                   resume_errored=False, restart_errored=False)
    else:
        seed = int(space.raw.get("seed", 0))
        searcher = OptunaSearch(space=space.suggest, metric=METRIC, mode=MODE, sampler=_tpe(seed, space.budget.trials))
        scheduler = (ASHAScheduler(metric=METRIC, mode=MODE, time_attr="training_iteration",
                                   max_t=space.asha.max_t or _epochs(space), grace_period=space.asha.grace_period,
                                   reduction_factor=space.asha.reduction_factor)
                     if space.asha.enabled else FIFOScheduler())
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(
                search_alg=searcher,
                scheduler=scheduler,
                num_samples=space.budget.trials,
                max_concurrent_trials=space.budget.concurrency,
                time_budget_s=space.budget.time_budget_s or None,
                trial_name_creator=lambda trial: f"{experiment}-{trial.trial_id}",
                trial_dirname_creator=lambda trial: f"trial-{trial.trial_id}",
                # A finished trial's process (torch and quantray imported) runs the next one. Not for
                # multi-worker trials: a stopped trial's TorchTrainer may still run in its actor.
                reuse_actors=space.resources.workers == 1,
            ),
            run_config=run_config,
        )
    tuner.fit()
    trials = load_trials(experiment, storage)
    best = trials.best()
    return TuneSummary(
        experiment=experiment,
        experiment_dir=experiment_dir,
        n_trials=trials.n_tried,
        n_failed=sum(r.status == "ERROR" for r in trials.records),
        best_trial=best.trial_id if best else None,
        best_val_sharpe=best.val_sharpe if best else float("nan"),
        best_checkpoint=best.checkpoint if best else None,
        seconds=time.monotonic() - started,
    )


def connect(address: str | None, *, dashboard: bool = False) -> None:
    """Join the cluster at `address`, or start a local Ray on this machine."""
    import ray

    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": "warning"}
    if address:
        ray.init(address=address, **quiet)
    else:
        # The dashboard process is what frees a stopped TorchTrainer's placement group (Ray #54305).
        ray.init(address="local", include_dashboard=dashboard, **quiet)


def _with_overrides(space: SearchSpace, request: TuneRequest) -> SearchSpace:
    budget, resources = space.budget, space.resources
    if request.trials is not None:
        if request.trials < 1:
            raise BadInput(f"--trials: must be at least 1, got {request.trials}")
        budget = dataclasses.replace(budget, trials=request.trials)
    if request.workers_per_trial is not None:
        if request.workers_per_trial < 1:
            raise BadInput(f"--workers-per-trial: must be at least 1, got {request.workers_per_trial}")
        resources = dataclasses.replace(resources, workers=request.workers_per_trial)
    if request.gpus_per_trial is not None:
        if request.gpus_per_trial < 0:
            raise BadInput(f"--gpus-per-trial: must not be negative, got {request.gpus_per_trial}")
        # GPUs are split over the trial's workers; fractions are allowed (several trials per GPU)
        resources = dataclasses.replace(resources, gpus_per_worker=request.gpus_per_trial / resources.workers)
    return dataclasses.replace(space, budget=budget, resources=resources)


def _trial_resources(space: SearchSpace) -> dict[str, float]:
    resources = space.resources
    if resources.workers > 1:
        # The trial only drives a TorchTrainer whose workers hold the CPUs/GPUs. Even 0.01 CPU here
        # would leave 2 workers unplaceable on a 2-CPU node, and Ray refuses an empty bundle: so the
        # trial reserves a little memory instead.
        return {"CPU": 0.0, "memory": 64 * 2**20}
    return {"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker}


def _experiment_name(space: SearchSpace, request: TuneRequest, storage: Path) -> str:
    if request.experiment:
        name = request.experiment
        if (storage / name).exists() and not request.resume:
            raise BadInput(f"--experiment: '{name}' already exists under {storage}; "
                           "pass --resume to continue it or choose another name")
        return name
    if request.resume:
        previous = sorted(storage.glob(f"{space.name}-*"), key=lambda p: p.stat().st_mtime)
        if not previous:
            raise BadInput(f"--resume: no earlier experiment of space '{space.name}' under {storage}")
        return previous[-1].name
    return f"{space.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _epochs(space: SearchSpace) -> int:
    epochs = (space.raw.get("optim") or {}).get("epochs", 10)
    if isinstance(epochs, dict):  # a distribution: ASHA's horizon is its upper end
        return int(epochs.get("int", [0, 10])[1])
    return int(epochs)


def _tpe(seed: int, trials: int) -> Any:
    import optuna

    # fewer random start-up trials than Optuna's default 10 so short searches still use TPE
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, trials // 3)), multivariate=True)


def summary_lines(summary: TuneSummary) -> list[str]:
    lines = [
        f"experiment    {summary.experiment}  ({summary.n_trials} trials, {summary.n_failed} failed, "
        f"{summary.seconds:.0f} s)",
        f"results       {summary.experiment_dir}",
    ]
    if summary.best_trial is None:
        lines.append("best trial    none finished an epoch")
    else:
        lines.append(f"best trial    {summary.best_trial}  validation net Sharpe {summary.best_val_sharpe:.2f}")
        lines.append(f"checkpoint    {summary.best_checkpoint}")
    lines.append(f"next          quantray ensemble {summary.experiment}")
    return lines


def default_storage() -> Path:
    return Path(os.environ.get("QUANTRAY_STORAGE", DEFAULT_STORAGE))
