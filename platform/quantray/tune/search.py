"""The parts of a search: Optuna TPE proposes, ASHA stops poor trials early, Tune runs trials.

The objective reported to Tune, once per epoch, is the validation net Sharpe of the epoch chosen so
far (`best_val_sharpe`: chosen on the early-stopping block, see quantray.train.loop), the score
the trial is later ranked by.
`quantray.recipes.tune` wires these parts with the data, MLflow and the console.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from quantray.config import check_gpus
from quantray.errors import BadInput
from quantray.tune.space import SearchSpace

METRIC, MODE = "best_val_sharpe", "max"


def with_overrides(space: SearchSpace, *, trials: int | None, workers_per_trial: int | None,
                   gpus_per_trial: float | None) -> SearchSpace:
    """The space with the command line's budget and resources."""
    budget, resources = space.budget, space.resources
    if trials is not None:
        if trials < 1:
            raise BadInput(f"--trials: must be at least 1, got {trials}")
        budget = dataclasses.replace(budget, trials=trials)
    if workers_per_trial is not None:
        if workers_per_trial < 1:
            raise BadInput(f"--workers-per-trial: must be at least 1, got {workers_per_trial}")
        resources = dataclasses.replace(resources, workers=workers_per_trial)
    if gpus_per_trial is not None:
        if gpus_per_trial < 0:
            raise BadInput(f"--gpus-per-trial: must not be negative, got {gpus_per_trial}")
        # GPUs are split over the trial's workers; fractions are allowed (several trials per GPU)
        check_gpus(gpus_per_trial / resources.workers, "--gpus-per-trial (per worker)")
        resources = dataclasses.replace(resources, gpus_per_worker=gpus_per_trial / resources.workers)
    return dataclasses.replace(space, budget=budget, resources=resources)


def connect(address: str | None, *, dashboard: bool = False) -> None:
    """Join the cluster at `address`, or start a local Ray on this machine."""
    import ray  # lazy: ray is heavy and only a running search needs it

    if ray.is_initialized():
        return
    quiet = {"log_to_driver": False, "configure_logging": True, "logging_level": "warning"}
    if address:
        ray.init(address=address, **quiet)
    else:
        # The dashboard process is what frees a stopped TorchTrainer's placement group (Ray #54305).
        ray.init(address="local", include_dashboard=dashboard, **quiet)


def experiment_name(space: SearchSpace, storage: Path, *, name: str | None, resume: bool) -> str:
    """`name`, or the space's name and a timestamp; with `resume`, the latest experiment of the space."""
    if name:
        if (storage / name).exists() and not resume:
            raise BadInput(f"--experiment: '{name}' already exists under {storage}; "
                           "pass --resume to continue it or choose another name")
        return name
    if resume:
        previous = sorted(storage.glob(f"{space.name}-*"), key=lambda p: p.stat().st_mtime)
        if not previous:
            raise BadInput(f"--resume: no earlier experiment of space '{space.name}' under {storage}")
        return previous[-1].name
    return timestamped(space.name)


def timestamped(name: str, now: float | None = None) -> str:
    """`<name>-<local time>`: a new experiment's default name."""
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"


def trial_resources(space: SearchSpace) -> dict[str, float]:
    resources = space.resources
    if resources.workers > 1:
        # The trial only drives a TorchTrainer whose workers hold the CPUs/GPUs. Even 0.01 CPU here
        # would leave 2 workers unplaceable on a 2-CPU node, and Ray refuses an empty bundle: so the
        # trial reserves a little memory instead.
        return {"CPU": 0.0, "memory": 64 * 2**20}
    return {"CPU": resources.cpus_per_worker, "GPU": resources.gpus_per_worker}


def reuse_actors(space: SearchSpace, address: str | None) -> bool:
    """Whether a finished trial's actor (torch and quantray imported) runs the next trial.

    Only in a Ray started here, which has no dashboard to watch: it saves a process start per trial.
    On a cluster each trial gets an actor of its own, named after it on the dashboard (Ray records
    an actor's repr once, when it is created; see `trial.trial_trainable`). Never for multi-worker
    trials: a stopped trial's TorchTrainer may still run in its actor.
    """
    return space.resources.workers == 1 and not address


def searcher(space: SearchSpace) -> Any:
    """Optuna's TPE through Tune, seeded by the space, multivariate; in generations when the
    budget asks for a reproducible search (`Budget.reproducible`)."""
    import optuna  # lazy: heavy
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    trials = space.budget.trials
    # fewer random start-up trials than Optuna's default 10 so short searches still use TPE
    sampler = optuna.samplers.TPESampler(seed=space.seed, n_startup_trials=max(2, min(10, trials // 3)),
                                         multivariate=True)
    # every family once, in the order the space lists them, before TPE chooses among them: with a
    # few trials and several families, one the random start-up never drew would never be judged
    first = [{"model.family": family} for family in space.families] if len(space.families) > 1 else None
    search = OptunaSearch(space=space.suggest, metric=METRIC, mode=MODE, sampler=sampler, points_to_evaluate=first)
    if space.budget.reproducible:
        # batch: the next generation is suggested only once the whole previous one has reported, so
        # TPE always sees the same history, whatever order trials finish in
        return ConcurrencyLimiter(search, max_concurrent=space.budget.concurrency, batch=True)
    return search


def scheduler(space: SearchSpace) -> Any:
    """ASHA on the trial's score per epoch (FIFO when the space turns it off, or asks for a
    reproducible search: ASHA's decisions depend on which trial reports first)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler  # lazy: ray

    if not space.asha.enabled or space.budget.reproducible:
        return FIFOScheduler()
    return ASHAScheduler(metric=METRIC, mode=MODE, time_attr="training_iteration",
                         max_t=space.asha.max_t or space.epochs, grace_period=space.asha.grace_period,
                         reduction_factor=space.asha.reduction_factor)
