"""The walk-forward recipe: search -> ensemble -> backtest, judged across many years.

The history is cut into expanding folds whose test blocks tile its end with no gap and no
overlap (`data.splits` with `folds` and `test_fraction`: `quantray.data.splits`, purged and
embargoed at every boundary). For each fold, everything is chosen from data strictly before its
test block:

- search mode (the reference): a fresh search on the fold's training and validation blocks;
- refit mode: one search on the earliest fold; each later fold retrains that search's `top_k`
  best configurations on its own, longer, training block (all folds' refits in one pool of Ray
  tasks, as many at once as the search ran trials);

then the fold's members are selected and fused on its own validation block (each run's epoch was
chosen before, on the early-stopping block at the end of its training history) and its ensemble
trades its test block once. The test blocks'
positions are stitched into one out-of-sample record and backtested against baselines on exactly
the same dates and costs. Searches run in generations (`Budget.reproducible`), so the same
command with the same seed gives the same numbers.

The Deflated Sharpe of the stitched record counts, as N, every model compared on validation
data: each trial and refit of every fold (each epoch of them when a space has no early-stopping
block, `splits.stop_fraction: 0`, for then the epoch is picked on validation too).
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from quantray.config import DataConfig, TrainConfig, resolve, to_dict
from quantray.data.pipeline import Prepared, prepare
from quantray.ensemble.build import (
    backtest_block,
    choose_members,
    fit_ensemble,
    ridge_baseline,
    save_ensemble_outputs,
    validation_matrix,
)
from quantray.ensemble.artifact import Ensemble
from quantray.ensemble.fusion import FusionConfig
from quantray.errors import BadInput
from quantray.evaluate.backtest import BacktestResult
from quantray.evaluate.metrics import annualized_sharpe
from quantray.evaluate.overfitting import (
    deflated_sharpe_ratio,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
)
from quantray.evaluate.report import write_walkforward_report
from quantray.data.sources import absolute_source
from quantray.recipes.console import Console, quiet_console
from quantray.recipes.options import TuneOptions, WalkForwardOptions
from quantray.recipes.tune import check_features, run_search
from quantray.registry.store import client_for, experiment_id, register_ensemble
from quantray.train.checkpoint import Member, load_checkpoint
from quantray.train.inference import run_model
from quantray.train.loop import BEST_DIR, InProcessSession, directory_reporter, fit
from quantray.tune.results import TrialRecord, load_trials
from quantray.tune.search import connect, experiment_name, with_overrides
from quantray.tune.space import SearchSpace, WalkForwardConfig, check_walkforward, load_space
from quantray.workspace import tracking_uri, tune_storage, walkforward_dir, write_json

MAIN = "walkforward"
PBO_SPLITS = 16
MAX_CORR = 0.95  # members whose validation returns correlate above this are near-duplicates
COLUMN = {MAIN: "ensemble", "best_member": "best member", "equal_weight": "equal wt", "volatility_targeted": "vol target",
          "time_series_momentum": "tsmom"}  # console headers


@dataclass
class FoldResult:
    """One fold: what was chosen before its test block, and what it then did there."""

    index: int  # chronological, 0 = the earliest test block
    split_fold: int  # its `data.fold` (quantray.data.splits numbers folds from the latest)
    test_dates: np.ndarray  # date indices of its test block
    candidates: list[TrialRecord]  # every configuration trained for this fold (trials or refits)
    configs: dict[str, dict[str, Any]]  # candidate id -> its resolved TrainConfig
    member_ids: tuple[str, ...]
    fusion_weights: tuple[float, ...]
    positions: dict[str, np.ndarray]  # strategy -> positions [n_test, A]: the ensemble, best member, ridge
    n_compared: int  # models compared on this fold's validation block (TrialRecord.n_compared)
    pbo: float  # PBO by CSCV over the candidates' validation returns (NaN with too few)
    val_sharpe: float  # the fused ensemble on its validation block
    ensemble: Ensemble = field(repr=False)

    def summary(self) -> dict[str, Any]:
        return {"fold": self.index, "split_fold": self.split_fold, "members": list(self.member_ids),
                "fusion_weights": list(self.fusion_weights), "configs": {k: self.configs[k] for k in self.member_ids},
                "n_compared": self.n_compared, "pbo": self.pbo, "val_sharpe": self.val_sharpe}


@dataclass
class WalkForwardResult:
    experiment: str
    mode: str
    folds: list[FoldResult]
    result: BacktestResult  # the stitched test blocks, every strategy on the same dates and costs
    fold_rows: list[dict[str, Any]]  # per fold: dates and each strategy's Sharpe on its block
    metrics: dict[str, float]
    out: Path
    seconds: float
    model_uri: str | None = None  # the last fold's ensemble, registered
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """What the CLI prints."""
        sharpes = {name: s.metrics["sharpe"] for name, s in self.result.strategies.items()}
        n_dates = len(self.result.strategies[MAIN].net_returns)
        dates = self.result.dates
        columns = "".join(f"{COLUMN.get(name, name)[:11]:>12}" for name in sharpes)
        rows = [f"walk-forward  {self.experiment}: {self.mode} mode, {len(self.folds)} folds, {n_dates} stitched "
                f"test dates {dates[0]}..{dates[-1]} ({self.seconds:.0f} s); net Sharpe per test block:",
                f"{'fold':<6}{'test dates':<24}{columns}"]
        for row in self.fold_rows:
            rows.append(f"{row['fold']:<6}{row['start'] + '..' + row['end']:<24}"
                        + "".join(f"{row[name]:>12.2f}" for name in sharpes))
        rows.append(f"{'all':<6}{'stitched':<24}" + "".join(f"{v:>12.2f}" for v in sharpes.values()))
        verdict = (f"DSR {self.metrics['dsr']:.3f} (N = {int(self.metrics['n_trials'])} models compared)  "
                   f"PSR {self.metrics['psr']:.3f}  PBO {self.metrics['pbo']:.3f}")
        if "oracle_ratio" in self.metrics:
            verdict = f"oracle ratio {self.metrics['oracle_ratio']:.2f}  " + verdict
        rows += [f"overfitting   {verdict}", f"report        {self.out / 'report' / 'report.html'}"]
        if self.model_uri:
            rows.append(f"model         {self.model_uri} (the last fold's ensemble)")
        return rows


def run_walkforward(space_path: Path, options: WalkForwardOptions = WalkForwardOptions(),
                    fusion: FusionConfig = FusionConfig(), console: Console | None = None) -> WalkForwardResult:
    """Judge `space_path`'s whole procedure walk-forward; register the last fold's ensemble.

    quantray's progress goes to `console`; without one, Ray's, Tune's and MLflow's own output goes
    to a log file under the workspace (its path printed first) and quantray's lines to the terminal.
    """
    if console is None:
        with quiet_console("walkforward") as console:
            return run_walkforward(space_path, options, fusion, console)
    say = console.say
    started = time.monotonic()
    space, plan = _plan(space_path, options)
    data = dataclasses.replace(
        space.data, source=absolute_source(options.data) if options.data else space.data.source,
        splits=dataclasses.replace(space.data.splits, folds=plan.folds, test_fraction=plan.test_fraction))
    prepared = prepare(data)  # the source, its history and the fold layout: bad input fails here
    check_features(space, prepared)
    storage = (options.storage or tune_storage()).resolve()  # Ray reads a relative path as a URI
    experiment = experiment_name(space, storage, name=options.experiment or
                                 f"{space.name}-walkforward-{time.strftime('%Y%m%d-%H%M%S')}", resume=False)
    out = options.out or walkforward_dir() / experiment
    uri = tracking_uri(options.tracking_uri)
    tune_options = TuneOptions(address=options.address, tracking_uri=uri, storage=storage)
    connect(options.address)

    client = client_for(uri)
    parent = client.create_run(experiment_id(client, experiment), run_name=f"{experiment}",
                               tags={"quantray.kind": "walkforward", "quantray.space": str(space.path)})
    folds: list[FoldResult] = []
    search_histories: dict[str, list[float]] = {}
    refits: dict[int, tuple[dict[str, dict[str, Any]], list[TrialRecord]]] = {}  # refit: the later folds'
    for index, split_fold in enumerate(reversed(range(plan.folds))):  # the earliest test block first
        fold_data = dataclasses.replace(data, fold=split_fold)
        fold_run = client.create_run(parent.info.experiment_id, run_name=f"{experiment}-fold{index}",
                                     tags={"quantray.kind": "walkforward-fold", "mlflow.parentRunId": parent.info.run_id})
        if plan.mode == "search" or index == 0:
            say(f"== fold {index}: search ({space.budget.trials} trials) on the dates before "
                f"{prepared.panel.dates[prepared.splits[split_fold].test[0]]}")
            fold_space = space.with_data(fold_data)
            summary = run_search(fold_space, tune_options, storage, f"{experiment}-fold{index}", console,
                                 mlflow_experiment=experiment, parent_run_id=fold_run.info.run_id)
            records = load_trials(summary.experiment, storage).records
            configs = {r.trial_id: to_dict(fold_space.resolve(r.params)) for r in records}
            search_histories[f"fold {index}"] = [r.val_sharpe for r in records]
        else:
            configs, records = refits[index]
            say(f"== fold {index}: {len(records)} refits on the dates before "
                f"{prepared.panel.dates[prepared.splits[split_fold].test[0]]}")
        fold = _fold_result(index, split_fold, records, configs, prepared, plan, options.method, fusion)
        _log_fold(client, fold_run.info.run_id, fold)
        folds.append(fold)
        say(f"   members {', '.join(fold.member_ids)}; validation Sharpe of the fusion {fold.val_sharpe:.2f}")
        if plan.mode == "refit" and index == 0 and plan.folds > 1:
            best = {r.trial_id: configs[r.trial_id] for r in _ranked(records)[:plan.top_k]}
            say(f"== folds 1-{plan.folds - 1}: refit {len(best)} configurations on each fold's dates "
                f"({len(best) * (plan.folds - 1)} trainings, {space.budget.concurrency} at a time)")
            refits = _refit_later_folds(best, data, plan.folds, storage / experiment, space.budget.concurrency)

    result, fold_rows = _stitch(folds, prepared)
    metrics = _stitched_metrics(result, folds)
    _write_outputs(out, experiment, plan, folds, result, fold_rows, metrics, search_histories)
    client.log_batch(parent.info.run_id, metrics=[_metric(k, v) for k, v in metrics.items() if _finite(v)],
                     params=[_param("mode", plan.mode), _param("folds", plan.folds), _param("top_k", plan.top_k),
                             _param("method", options.method), _param("data.source", data.source)])
    client.log_artifacts(parent.info.run_id, str(out / "report"), "report")
    client.set_terminated(parent.info.run_id, "FINISHED")

    outcome = WalkForwardResult(experiment, plan.mode, folds, result, fold_rows, metrics, out,
                                time.monotonic() - started)
    if not options.no_register:
        outcome.model_uri = _register_last_fold(outcome, space.name, options, fusion, uri, parent.info.run_id)
    return outcome


# ---- planning -------------------------------------------------------------------------------------

def _plan(space_path: Path, options: WalkForwardOptions) -> tuple[SearchSpace, WalkForwardConfig]:
    space = with_overrides(load_space(space_path), trials=options.trials, workers_per_trial=None, gpus_per_trial=None)
    space = dataclasses.replace(space, budget=dataclasses.replace(space.budget, reproducible=True))
    if options.seed is not None:
        space = space.with_seed(options.seed)
    plan = dataclasses.replace(space.walkforward, **{k: v for k, v in (("folds", options.folds),
                                                                          ("mode", options.mode)) if v is not None})
    check_walkforward(plan, "--folds/--mode" if options.folds or options.mode else space.path)
    if space.resources.workers > 1:
        raise BadInput(f"{space.path}: key 'resources.workers': walk-forward runs single-worker trials "
                       "(its refits train in parallel Ray tasks instead)")
    return space, plan


def _ranked(records: list[TrialRecord]) -> list[TrialRecord]:
    usable = [r for r in records if r.checkpoint is not None and math.isfinite(r.val_sharpe)]
    return sorted(usable, key=lambda r: (-r.val_sharpe, r.trial_id))


def _train_config(config: dict[str, Any]) -> TrainConfig:
    return resolve(TrainConfig, config, where="walk-forward configuration")


# ---- refits ---------------------------------------------------------------------------------------

def _refit_later_folds(best: dict[str, dict[str, Any]], data: DataConfig, n_folds: int, root: Path,
                       concurrency: int) -> dict[int, tuple[dict[str, dict[str, Any]], list[TrialRecord]]]:
    """Each later fold's configurations (the first search's `best`, on the fold's data) and their
    refits. All folds' refits share one pool of Ray tasks, at most `concurrency` at once, the next
    starting as soon as one ends; each is seeded and trains on one CPU, so its result is the same
    whatever runs beside it."""
    import ray  # lazy: only a running walk-forward needs it

    resolved = {tid: _train_config(config) for tid, config in best.items()}
    folds = {index: {tid: to_dict(dataclasses.replace(config, data=dataclasses.replace(data, fold=n_folds - 1 - index)))
                     for tid, config in resolved.items()}
             for index in range(1, n_folds)}  # fold index i tests the i-th block from the earliest
    task = ray.remote(num_cpus=1)(_refit_one)
    # the latest folds' refits first: they train on the most dates, and the short ones fill in beside them
    pending = [(index, tid, config) for index, configs in sorted(folds.items(), reverse=True)
               for tid, config in configs.items()]
    running: dict[Any, tuple[int, str]] = {}
    records: dict[tuple[int, str], TrialRecord] = {}
    while pending or running:
        while pending and len(running) < concurrency:
            index, tid, config = pending.pop(0)
            # named for the dashboard's task list, as the search's trials are (`QuantrayTrial`)
            named = task.options(name=f"refit {tid} fold {index} ({root.name})")
            running[named.remote(tid, config, str(root / f"fold{index}" / tid))] = (index, tid)
        done, _ = ray.wait(list(running), num_returns=1)
        records[running.pop(done[0])] = ray.get(done[0])
    return {index: (configs, [records[(index, tid)] for tid in configs]) for index, configs in folds.items()}


def _refit_one(trial_id: str, config_dict: dict[str, Any], directory: str) -> TrialRecord:
    config = _train_config(config_dict)
    history: list[float] = []
    data = prepare(config.data)
    session = InProcessSession(data, config, report=directory_reporter(Path(directory),
                                                                       lambda m: history.append(m["val_sharpe"])))
    summary = fit(config, data, session)
    checkpoint = Path(directory) / BEST_DIR
    return TrialRecord(trial_id=trial_id, status="TERMINATED", val_sharpe=summary.best_val_sharpe,
                       checkpoint=checkpoint if (checkpoint / "model.pt").exists() else None, history=history,
                       epoch_on_stop_block=len(data.splits[config.data.fold].stop) > 0)


# ---- one fold -------------------------------------------------------------------------------------

def _fold_result(index: int, split_fold: int, records: list[TrialRecord], configs: dict[str, dict[str, Any]],
                 prepared: Prepared, plan: WalkForwardConfig, method: str, fusion: FusionConfig) -> FoldResult:
    """Select, fuse on the fold's validation block, trade its test block once."""
    selected, returns = choose_members(records, plan.top_k, MAX_CORR, where=f"walk-forward fold {index}")
    members: list[Member] = [load_checkpoint(r.checkpoint) for r in selected]
    ensemble = fit_ensemble(members, tuple(r.trial_id for r in selected), prepared, method, fusion, split_fold)
    test = prepared.windows("test", split_fold)
    positions = {
        MAIN: ensemble.model.run(test).positions,
        "best_member": run_model(members[0].model, test).positions,
        "ridge": ridge_baseline(prepared, split_fold, test.dates_idx),
    }
    matrix = validation_matrix(returns, len(members[0].val_returns))
    pbo = math.nan
    if matrix.shape[1] >= 2 and matrix.shape[0] >= PBO_SPLITS:
        pbo = probability_of_backtest_overfitting(matrix, n_splits=PBO_SPLITS).pbo
    return FoldResult(
        index=index, split_fold=split_fold, test_dates=test.dates_idx, candidates=records, configs=configs,
        member_ids=ensemble.member_ids, fusion_weights=tuple(float(w) for w in ensemble.model.weights),
        positions=positions, n_compared=sum(r.n_compared for r in records), pbo=float(pbo),
        val_sharpe=float(ensemble.val_sharpe), ensemble=ensemble,
    )


# ---- the stitched record --------------------------------------------------------------------------

def _stitch(folds: list[FoldResult], prepared: Prepared) -> tuple[BacktestResult, list[dict[str, Any]]]:
    """Concatenate the folds' test blocks (checked to tile) and backtest every strategy on them."""
    dates_idx = np.concatenate([f.test_dates for f in folds])
    if len(dates_idx) and not np.array_equal(dates_idx, np.arange(dates_idx[0], dates_idx[-1] + 1)):
        raise RuntimeError("walk-forward test blocks do not tile: a gap or an overlap between folds")
    windows = prepared.windows("test", 0).at(dates_idx)  # validity does not depend on the fold's scaler
    strategies = {name: np.concatenate([f.positions[name] for f in folds]) for name in folds[0].positions}
    result = backtest_block(strategies, windows, prepared.labels.next_return, prepared.panel,
                            cost_bps=prepared.config.cost_bps)
    rows, start = [], 0
    for fold in folds:
        end = start + len(fold.test_dates)
        row: dict[str, Any] = {"fold": fold.index, "start": str(prepared.panel.dates[fold.test_dates[0]]),
                               "end": str(prepared.panel.dates[fold.test_dates[-1]]), "n_dates": len(fold.test_dates)}
        for name, strategy in result.strategies.items():  # net of costs, switching costs at boundaries included
            row[name] = annualized_sharpe(strategy.net_returns[start:end])
        rows.append(row)
        start = end
    return result, rows


def _stitched_metrics(result: BacktestResult, folds: list[FoldResult]) -> dict[str, float]:
    """The stitched record's statistics, DSR with N = every configuration compared on validation
    data, PSR, and PBO (the mean of the folds')."""
    main = result.strategies[MAIN]
    # test_* as in a single split's metrics: the stitched test blocks are this procedure's test record,
    # and the promotion gates read these names
    metrics = {f"test_{key}": float(value) for key, value in main.metrics.items()}
    for name, strategy in result.strategies.items():
        if name != MAIN:
            metrics[f"{name}_test_sharpe"] = float(strategy.metrics["sharpe"])
    if "oracle" in result.strategies and metrics["oracle_test_sharpe"] > 0.0:
        metrics["oracle_ratio"] = metrics["test_sharpe"] / metrics["oracle_test_sharpe"]
    n_compared = sum(f.n_compared for f in folds)
    # V, the spread of what each selection compared: the variance of the candidates' per-period validation
    # Sharpe within a fold, averaged over folds (folds' validation blocks differ by regime: pooling them
    # would count that difference as selection luck)
    variances = [float(np.var(sharpes, ddof=1)) for sharpes in map(_candidate_sharpes, folds) if len(sharpes) > 1]
    variance = float(np.mean(variances)) if variances else 0.0
    pbos = [f.pbo for f in folds if math.isfinite(f.pbo)]
    metrics.update(
        n_trials=float(n_compared), trials_sharpe_variance=variance,
        psr=probabilistic_sharpe_ratio(main.net_returns),
        dsr=deflated_sharpe_ratio(main.net_returns, max(n_compared, 1), variance),
        pbo=float(np.mean(pbos)) if pbos else math.nan,
        n_folds=float(len(folds)), n_test_dates=float(len(main.net_returns)),
    )
    return metrics


def _candidate_sharpes(fold: FoldResult) -> list[float]:
    """Per-period validation Sharpe of every candidate of `fold` with a checkpoint."""
    return [annualized_sharpe(np.load(Path(r.checkpoint) / "val_returns.npy"), periods_per_year=1)
            for r in fold.candidates if r.checkpoint is not None]


def _write_outputs(out: Path, experiment: str, plan: WalkForwardConfig, folds: list[FoldResult],
                   result: BacktestResult, fold_rows: list[dict[str, Any]], metrics: dict[str, float],
                   search_histories: dict[str, list[float]]) -> None:
    write_json(out / "metrics.json", metrics)
    write_json(out / "folds.json", {"rows": fold_rows, "folds": [f.summary() for f in folds]})
    write_json(out / "backtest.json", result.to_dict())
    headline = {k: metrics[k] for k in ("dsr", "psr", "pbo", "n_trials", "oracle_ratio") if k in metrics}
    boundaries = [result.dates[sum(r["n_dates"] for r in fold_rows[:i])] for i in range(1, len(fold_rows))]
    write_walkforward_report(result, out / "report", title=f"{experiment}: walk-forward ({plan.mode} mode)",
                             fold_rows=fold_rows, fold_starts=boundaries, search_histories=search_histories,
                             extra_metrics=headline)


def _register_last_fold(outcome: WalkForwardResult, name: str, options: WalkForwardOptions, fusion: FusionConfig,
                        uri: str, parent_run_id: str) -> str:
    """Register the last fold's ensemble (trained on the most data) with the stitched record's
    metrics, which `quantray promote` judges: long enough for the gates to have power."""
    last = outcome.folds[-1]
    directory = outcome.out / "ensemble-last-fold"
    save_ensemble_outputs(directory, last.ensemble, outcome.result, outcome.metrics)
    version = register_ensemble(
        directory / "ensemble", name=name, metrics=outcome.metrics,
        config={"experiment": outcome.experiment, "mode": outcome.mode, "method": options.method,
                "members": ",".join(last.member_ids), "data": to_dict(last.ensemble.pipeline.config),
                "fusion": fusion.to_dict()},
        report_dir=outcome.out / "report", tracking_uri=uri, experiment=outcome.experiment,
        run_name="ensemble-last-fold", parent_run_id=parent_run_id,
    )
    return f"models:/{version.name}/{version.version}"


# ---- MLflow ---------------------------------------------------------------------------------------

def _log_fold(client: Any, run_id: str, fold: FoldResult) -> None:
    client.log_batch(run_id, metrics=[_metric(k, v) for k, v in (("val_sharpe", fold.val_sharpe), ("pbo", fold.pbo),
                                                                  ("n_compared", fold.n_compared)) if _finite(v)],
                     params=[_param("members", ",".join(fold.member_ids)), _param("split_fold", fold.split_fold)])
    client.log_dict(run_id, fold.summary(), "fold.json")
    client.set_terminated(run_id, "FINISHED")


def _metric(key: str, value: float) -> Any:
    from mlflow.entities import Metric  # lazy: mlflow

    return Metric(key, float(value), int(time.time() * 1000), 0)


def _param(key: str, value: Any) -> Any:
    from mlflow.entities import Param  # lazy: mlflow

    return Param(key, str(value)[:6000])


def _finite(value: float) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)
