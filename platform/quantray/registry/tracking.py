"""Log every Tune trial to MLflow from the Tune driver: one run per trial, named by trial id.

Logging from the driver (a Tune callback) rather than inside the trial means trials that ASHA
stops, or that crash, are still recorded with their status.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback

from quantray.registry.store import experiment_id

PARENT_TAG = "mlflow.parentRunId"  # how MLflow nests runs
LOGGED_METRICS = ("train_loss", "val_loss", "val_sharpe", "val_ic", "val_hit_rate", "val_turnover",
                  "stop_sharpe", "best_val_sharpe")


class MlflowTrialLogger(Callback):
    """`resolve_config(params)` gives a trial's resolved config as a JSON-ready dict."""

    def __init__(self, *, tracking_uri: str, experiment: str, space_path: Path,
                 resolve_config: Callable[[dict[str, Any]], dict[str, Any]], parent_run_id: str | None = None) -> None:
        self._uri = tracking_uri
        self._parent_run_id = parent_run_id  # nests the trial runs (a walk-forward fold's run)
        self._experiment = experiment
        self._space_path = space_path
        self._resolve_config = resolve_config
        self._runs: dict[str, str] = {}
        self._client: Any = None
        self._experiment_id: str | None = None

    def setup(self, **info: Any) -> None:
        from mlflow.tracking import MlflowClient  # lazy: the driver imports this before it needs MLflow

        self._client = MlflowClient(tracking_uri=self._uri)
        self._experiment_id = experiment_id(self._client, self._experiment)  # artifacts beside the store

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        existing = self._client.search_runs([self._experiment_id], f"tags.trial_id = '{trial.trial_id}'", max_results=1)
        if existing:  # a resumed trial keeps its run
            self._runs[trial.trial_id] = existing[0].info.run_id
            return
        run = self._client.create_run(self._experiment_id, run_name=f"{self._experiment}-{trial.trial_id}",
                                      tags={"trial_id": trial.trial_id, "quantray.kind": "trial",
                                            "quantray.space": str(self._space_path),
                                            **({PARENT_TAG: self._parent_run_id} if self._parent_run_id else {})})
        run_id = run.info.run_id
        self._runs[trial.trial_id] = run_id
        from mlflow.entities import Param

        params = [Param(key, str(value)[:6000]) for key, value in sorted(trial.config.items())]
        self._client.log_batch(run_id, params=params)
        self._client.log_text(run_id, json.dumps(self._resolve_config(trial.config), indent=2), "config.json")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        from mlflow.entities import Metric

        run_id = self._runs.get(trial.trial_id)
        if run_id is None:
            return
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        now = int(result.get("timestamp", 0)) * 1000
        metrics = [Metric(key, float(result[key]), now, step) for key in LOGGED_METRICS
                   if isinstance(result.get(key), (int, float))]
        if metrics:
            self._client.log_batch(run_id, metrics=metrics)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "FAILED")

    def _finish(self, trial: Any, status: str) -> None:
        run_id = self._runs.pop(trial.trial_id, None)
        if run_id is not None:
            self._client.set_terminated(run_id, status=status)
