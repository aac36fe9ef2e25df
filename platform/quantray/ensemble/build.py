"""Building an ensemble from trained members: select, fuse, backtest once, summarise, save.

The steps, each a function the recipes (quantray.recipes.ensemble, the walk-forward) chain:

1. `choose_members`: of the candidate trials, keep those that share the best one's data
   pipeline and select the top-k by validation Sharpe without near-duplicates;
2. `fit_ensemble`: freeze them and fit the fusion on the validation block only;
3. `backtest_on_test`: touch the test block once, with costs, against equal weight, time-series
   momentum, the best single member and (synthetic data) the oracle;
4. `summary_metrics`: PSR, DSR with N = configurations compared, PBO by CSCV over every trial's
   validation returns;
5. `save_ensemble_outputs`, `write_ensemble_report`: the artifact, metrics.json, backtest.json and
   the report. Registration in MLflow is the registry's business, not this module's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from quantray.data.panel import Panel, bars_per_year
from quantray.data.pipeline import DataPipeline, Prepared
from quantray.data.windows import Windows
from quantray.ensemble.artifact import Ensemble, save_ensemble
from quantray.ensemble.fusion import FusionConfig, block_labels, fit_fusion
from quantray.ensemble.select import load_val_returns, select_members, usable
from quantray.errors import BadInput
from quantray.train.inference import batch_tensors
from quantray.train.risk import risk_positions
from quantray.evaluate.backtest import (
    BacktestResult,
    equal_weight,
    ridge_positions,
    run_backtest,
    scaled_momentum,
    volatility_targeted,
)
from quantray.evaluate.metrics import net_returns, annualized_sharpe
from quantray.evaluate.overfitting import (
    deflated_sharpe_ratio,
    probabilistic_sharpe_ratio,
    probability_of_backtest_overfitting,
    sharpe_variance,
)
from quantray.evaluate.report import Diagnostics, write_report
from quantray.train.checkpoint import Member
from quantray.train.inference import run_model
from quantray.tune.results import TrialRecord
from quantray.workspace import write_json

MAIN = "ensemble"
PBO_SPLITS = 16


def choose_members(records: Sequence[TrialRecord], top_k: int, max_corr: float, *, where: str
                   ) -> tuple[list[TrialRecord], dict[str, np.ndarray]]:
    """The selected trials (best first) and the validation returns of every trial that shares the
    best trial's data recipe (members must see the same windows)."""
    candidates = [r for r in records if usable(r)]
    if not candidates:
        raise BadInput(f"{where}: no trial finished an epoch with a checkpoint")
    recipe = data_recipe(max(candidates, key=lambda r: r.val_sharpe))
    compatible = [r for r in candidates if data_recipe(r) == recipe]
    returns = load_val_returns(compatible)
    selected = select_members(compatible, top_k, max_corr, returns)
    if not selected:
        raise BadInput(f"{where}: no checkpoint holds val_returns.npy")
    return selected, returns


def fit_ensemble(members: Sequence[Member], member_ids: tuple[str, ...], prepared: Prepared, method: str,
                 fusion: FusionConfig, fold: int = 0) -> Ensemble:
    """Fit the fusion on fold `fold`'s validation block and measure it there (in-sample for the fusion)."""
    cost = prepared.config.cost_bps
    val = prepared.windows("val", fold)
    model = fit_fusion(members, val, method, cost_bps=cost, config=fusion)
    labels = block_labels(val)
    return Ensemble(
        model=model,
        pipeline=prepared.pipeline(fold),
        member_ids=member_ids,
        val_sharpe=annualized_sharpe(net_returns(model.run(val).positions, labels["next_return"], labels["mask"], cost),
                                     bars_per_year(prepared.panel.dates, prepared.config.bars_per_year)),
    )


def backtest_on_test(ensemble: Ensemble, prepared: Prepared, fold: int = 0
                     ) -> tuple[BacktestResult, np.ndarray | None]:
    """The ensemble and its best member on fold `fold`'s test block against the baselines, and the
    best member's mean cross-asset attention there (None for families without it)."""
    test = prepared.windows("test", fold)
    best_member = run_model(ensemble.model.members[0].model, test, attention=True)
    result = backtest_block(
        {MAIN: ensemble.model.run(test).positions, "best_member": best_member.positions,
         "ridge": ridge_baseline(prepared, fold, test.dates_idx)},
        test, prepared.labels.next_return, prepared.panel, cost_bps=ensemble.pipeline.config.cost_bps,
        periods_per_year=bars_per_year(prepared.panel.dates, prepared.config.bars_per_year),
    )
    return result, best_member.attention


def ridge_baseline(prepared: Prepared, fold: int, dates_idx: np.ndarray) -> np.ndarray:
    """A ridge regression of the next return on the same (scaled) features, fit on the fold's
    training dates, its views through the same risk model as the members when the data has one:
    is the deep model worth it?"""
    features = prepared.fold_features(fold)
    views = ridge_positions(features.values, features.valid, prepared.labels.next_return,
                            prepared.splits[fold].train, dates_idx)
    if prepared.risk is None:
        return views
    risk = batch_tensors(prepared.windows("test", fold).gather(dates_idx))
    return risk_positions(torch.as_tensor(views, dtype=torch.float32), risk).numpy()


def save_ensemble_outputs(out: Path, ensemble: Ensemble, result: BacktestResult, metrics: dict[str, float]) -> None:
    save_ensemble(out / "ensemble", ensemble)
    write_json(out / "metrics.json", metrics)
    write_json(out / "backtest.json", result.to_dict())


def data_recipe(record: TrialRecord) -> dict[str, Any]:
    """The trial's DataConfig as stored in its checkpoint (members must share it)."""
    return json.loads((Path(record.checkpoint) / "config.json").read_text())["config"]["data"]


def check_pipelines(members: Sequence[Member], pipeline: DataPipeline) -> None:
    """Every member must make its inputs exactly as `pipeline` does (same data, scaler, orders)."""
    for member in members:
        if not member.pipeline.same_as(pipeline):
            raise BadInput(f"{member.path}: trained through a different data pipeline (assets "
                           f"{', '.join(member.pipeline.asset_names)}, {member.pipeline.n_features} features) "
                           f"than the data source gives now ({', '.join(pipeline.asset_names)}, "
                           f"{pipeline.n_features} features)")


def backtest_block(strategies: dict[str, np.ndarray], windows: Windows, next_return: np.ndarray,
                   panel: Panel, *, cost_bps: float, periods_per_year: float | None = None,
                   rebalance_every: int = 1) -> BacktestResult:
    """Backtest `strategies` (positions [n, A] on `windows`' dates; the first is the main one)
    with the baselines, on the same dates and costs: equal-weight buy & hold, buy & hold scaled to
    a target volatility, time-series momentum (Moskowitz, Ooi & Pedersen 2012) and, on synthetic
    data, the oracle. Annualized by `periods_per_year` (default: inferred from the panel's bars),
    every strategy rebalanced every `rebalance_every` bars."""
    labels = block_labels(windows)
    dates_idx = windows.dates_idx
    per_year = bars_per_year(panel.dates) if periods_per_year is None else periods_per_year
    everything = dict(strategies)
    everything["equal_weight"] = equal_weight(labels["mask"])
    # the baselines' windows (a year of momentum, months of volatility) are in bars of this data
    everything["volatility_targeted"] = volatility_targeted(labels["mask"], next_return, dates_idx,
                                                            periods_per_year=per_year)
    everything["time_series_momentum"] = scaled_momentum(next_return, dates_idx, periods_per_year=per_year)
    if panel.oracle is not None:
        everything["oracle"] = panel.oracle.positions[dates_idx]
    return run_backtest(everything, labels["next_return"], labels["mask"], cost_bps=cost_bps,
                        dates=panel.dates[dates_idx], main=next(iter(strategies)),
                        periods_per_year=per_year, rebalance_every=rebalance_every)


def validation_matrix(returns: dict[str, np.ndarray], length: int) -> np.ndarray:
    """Validation returns [Tv, N] of every trial with a checkpoint on the members' validation block."""
    columns = [r for r in returns.values() if len(r) == length]
    return np.nan_to_num(np.stack(columns, axis=1), nan=0.0, posinf=0.0, neginf=0.0)


def summary_metrics(result: BacktestResult, trial_matrix: np.ndarray, n_compared: int) -> dict[str, float]:
    """Test metrics of every strategy, and PSR/DSR/PBO of the main one; the DSR's N is
    `n_compared`, every model compared on validation data (`Trials.n_compared`)."""

    main = result.strategies[result.main]
    metrics = {f"test_{key}": float(value) for key, value in main.metrics.items()}
    for name in result.baselines:
        metrics[f"{name}_test_sharpe"] = float(result.strategies[name].metrics["sharpe"])
    # "x% of the oracle" only means something when the oracle itself made money on this block;
    # a ratio of two negative Sharpes would read as a success.
    if "oracle" in result.strategies and metrics["oracle_test_sharpe"] > 0.0:
        metrics["oracle_ratio"] = metrics["test_sharpe"] / metrics["oracle_test_sharpe"]
    variance = sharpe_variance(trial_matrix.T)
    metrics["n_trials"] = float(n_compared)
    metrics["trials_sharpe_variance"] = variance
    metrics["psr"] = probabilistic_sharpe_ratio(main.net_returns)
    metrics["dsr"] = deflated_sharpe_ratio(main.net_returns, max(n_compared, 1), variance)
    metrics["pbo"] = pbo(trial_matrix)
    return metrics


def pbo(trial_matrix: np.ndarray) -> float:
    """PBO by CSCV over [Tv, N]; NaN when there are fewer than 2 trials or 16 dates to split."""

    n_dates, n_trials = trial_matrix.shape
    if n_trials < 2 or n_dates < PBO_SPLITS:
        return math.nan
    return probability_of_backtest_overfitting(trial_matrix, n_splits=PBO_SPLITS).pbo


def write_ensemble_report(result: BacktestResult, out_dir: Path, ensemble: Ensemble,
                          headline: dict[str, float], *, title: str, trial_history: Sequence[float] | None = None,
                          attention: np.ndarray | None = None, diagnostics: Diagnostics | None = None) -> Path:
    """The backtest report with the ensemble's member weights (and the search, attention when given)."""

    return write_report(
        result, out_dir, title=title,
        trial_history=trial_history,
        ensemble_weights={f"{i}: {tid}": float(w) for i, (tid, w) in
                          enumerate(zip(ensemble.member_ids, ensemble.model.weights))},
        attention=attention,
        asset_names=ensemble.asset_names,
        extra_metrics=headline,
        diagnostics=diagnostics,
    )
