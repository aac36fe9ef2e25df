"""The search recipe: space + data -> a Tune run of the training loop, every trial in MLflow.

Results and checkpoints live under `<storage>/<experiment>/`; `resume` continues an interrupted
experiment there, keeping its finished trials.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

from quantray import models
from quantray.config import to_dict
from quantray.data.pipeline import Prepared, prepare
from quantray.data.sources import absolute_source
from quantray.errors import BadInput
from quantray.tune.results import load_trials
from quantray.tune.search import connect, experiment_name, reuse_actors, scheduler, searcher, with_overrides
from quantray.tune.space import SearchSpace, load_space
from quantray.tune.trial import trial_trainable
from quantray.recipes.console import Console, quiet_console
from quantray.recipes.options import TuneOptions
from quantray.workspace import tracking_uri, tune_storage


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

    def lines(self) -> list[str]:
        """What the CLI prints."""
        lines = [
            f"experiment    {self.experiment}  ({self.n_trials} trials, {self.n_failed} failed, {self.seconds:.0f} s)",
            f"results       {self.experiment_dir}",
        ]
        if self.best_trial is None:
            lines.append("best trial    none finished an epoch")
        else:
            lines.append(f"best trial    {self.best_trial}  validation net Sharpe {self.best_val_sharpe:.2f}")
            lines.append(f"checkpoint    {self.best_checkpoint}")
        return lines


def run_tune(space_path: Path, options: TuneOptions = TuneOptions(), console: Console | None = None) -> TuneSummary:
    """Run (or resume) a search and summarize it. Bad input fails before Ray starts.

    quantray's progress goes to `console`; without one, Ray's, Tune's and MLflow's own output goes
    to a log file under the workspace (its path printed first) and quantray's lines to the terminal.
    """
    if console is None:
        with quiet_console("tune") as console:
            return run_tune(space_path, options, console)
    options = with_absolute_paths(options)
    space = with_overrides(load_space(space_path), trials=options.trials,
                           workers_per_trial=options.workers_per_trial, gpus_per_trial=options.gpus_per_trial)
    data_config = dataclasses.replace(space.data, source=options.data) if options.data else space.data
    check_features(space, prepare(data_config))  # the source, its history and features, before any trial
    storage = (options.storage or tune_storage()).resolve()  # Ray reads a relative path as a URI
    experiment = experiment_name(space, storage, name=options.experiment, resume=options.resume)
    return run_search(space, options, storage, experiment, console)


def run_search(space: SearchSpace, options: TuneOptions, storage: Path, experiment: str, console: Console, *,
               mlflow_experiment: str | None = None, parent_run_id: str | None = None) -> TuneSummary:
    """Run the search of a validated `space` as Tune experiment `experiment` under `storage`.

    Trials are logged to MLflow experiment `mlflow_experiment` (default: `experiment`), nested
    under `parent_run_id` when given (a walk-forward fold)."""
    print(f"experiment {experiment}: {space.budget.trials} trials, {space.budget.concurrency} at a time, "
          f"results under {storage / experiment}", file=console.stream, flush=True)
    started = time.monotonic()
    connect(options.address, dashboard=space.resources.workers > 1)
    tuner = _tuner(space, options, storage, experiment, console, mlflow_experiment or experiment, parent_run_id)
    tuner.fit()
    return _summary(experiment, storage, time.monotonic() - started)


def with_absolute_paths(options: TuneOptions, base: Path | None = None) -> TuneOptions:
    """`options` with a relative `--data csv:`/`parquet:` path and `--storage` made absolute against
    `base` (default: the working directory, where the user typed them). Trials run in other
    working directories, so every recipe that hands a source to Ray calls this first; a path
    inside a space file is resolved against the file's folder by `load_space`."""
    base = base or Path.cwd()
    return dataclasses.replace(
        options,
        data=absolute_source(options.data, base) if options.data else options.data,
        storage=(base / options.storage).resolve() if options.storage else options.storage,
    )


def check_features(space: SearchSpace, prepared: Prepared) -> None:
    """A family that reads the return needs `log_return` among the data's features."""
    for family in space.families:
        if models.needs_return_feature(family) and models.RETURN_FEATURE not in prepared.feature_names:
            raise BadInput(f"{space.path}: key 'data.features.names': the {family} family builds its asset graph "
                           f"from '{models.RETURN_FEATURE}', which these features lack")


def _tuner(space: SearchSpace, options: TuneOptions, storage: Path, experiment: str,  # -> ray.tune.Tuner
           console: Console, mlflow_experiment: str, parent_run_id: str | None):
    from ray import tune  # lazy: ray is heavy

    from quantray.registry.tracking import MlflowTrialLogger  # lazy: imports ray.tune and MLflow
    from quantray.tune.cleanup import TrainerPlacementGroupReaper  # lazy: imports ray.tune
    from quantray.tune.progress import ProgressPrinter  # lazy: imports ray.tune

    # Tune warns on every snapshot when trials checkpoint each epoch (ours do, to keep `best/`)
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    reuse = reuse_actors(space, options.address)
    trainable = trial_trainable(space, experiment=experiment, data_source=options.data, storage=str(storage),
                                reuse_actors=reuse)
    logger = MlflowTrialLogger(
        tracking_uri=tracking_uri(options.tracking_uri), experiment=mlflow_experiment, space_path=space.path,
        resolve_config=lambda params: to_dict(space.resolve(params, data_source=options.data)),
        parent_run_id=parent_run_id,
    )
    run_config = tune.RunConfig(
        name=experiment,
        storage_path=str(storage),
        callbacks=[logger, ProgressPrinter(total_trials=space.budget.trials, epochs=space.epochs, patience=space.patience,
                                           stream=console.stream, log=console.log),
                   TrainerPlacementGroupReaper()],
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),  # a NaN trial fails alone
        verbose=0,  # ProgressPrinter shows one line per trial event instead of Tune's tables
    )
    experiment_dir = storage / experiment
    if options.resume and tune.Tuner.can_restore(str(experiment_dir)):
        return tune.Tuner.restore(str(experiment_dir), trainable=trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher(space),
            scheduler=scheduler(space),
            num_samples=space.budget.trials,
            max_concurrent_trials=space.budget.concurrency,
            time_budget_s=space.budget.time_budget_s or None,
            trial_name_creator=lambda trial: f"{experiment}-{trial.trial_id}",
            trial_dirname_creator=lambda trial: f"trial-{trial.trial_id}",
            reuse_actors=reuse,
        ),
        run_config=run_config,
    )


def _summary(experiment: str, storage: Path, seconds: float) -> TuneSummary:
    trials = load_trials(experiment, storage)
    best = trials.best()
    return TuneSummary(
        experiment=experiment,
        experiment_dir=storage / experiment,
        n_trials=trials.n_tried,
        n_failed=sum(r.status == "ERROR" for r in trials.records),
        best_trial=best.trial_id if best else None,
        best_val_sharpe=best.val_sharpe if best else float("nan"),
        best_checkpoint=best.checkpoint if best else None,
        seconds=seconds,
    )

