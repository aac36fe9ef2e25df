"""The backtest recipe: a registered model, or a trained member's checkpoint, on the test block of a
data source, against baselines, with the lead-lag analysis and the class heads' metrics."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from quantray.data.panel import Panel, bars_per_year, select_assets
from quantray.data.pipeline import DataPipeline, sample_splits
from quantray.data.sources import load_panel
from quantray.data.windows import Windows
from quantray.ensemble.build import backtest_block, write_ensemble_report
from quantray.evaluate.backtest import BacktestResult
from quantray.errors import BadInput
from quantray.evaluate.metrics import classification_metrics, confusion_matrix, lagged_cross_correlations
from quantray.evaluate.overfitting import deflated_sharpe_ratio, probabilistic_sharpe_ratio
from quantray.evaluate.report import Diagnostics, write_report
from quantray.registry.store import client_for, load, resolve_version, run_metrics
from quantray.train.checkpoint import load_checkpoint
from quantray.train.diagnostics import run_heads
from quantray.train.inference import run_model
from quantray.recipes.options import BacktestOptions
from quantray.recipes.train import member_checkpoint
from quantray.workspace import reports_dir

if TYPE_CHECKING:
    import torch

DEFAULT_MAX_LAG = 5  # lags of the data's lead-lag analysis when the model has no lead-lag attention
MEMBER = "model"  # the main strategy's name when a single trained member is backtested


@dataclass
class ModelBacktest:
    model_uri: str  # models:/NAME/VERSION with the alias resolved, or the member checkpoint's folder
    result: BacktestResult
    metrics: dict[str, float]  # the main strategy's metrics, psr, dsr when the run recorded the search,
    # and the class heads' accuracy / macro-F1 (`direction_accuracy`, `barrier_macro_f1`, ...)
    report: Path


def backtest_model(model_uri: str, options: BacktestOptions = BacktestOptions()) -> ModelBacktest:
    """Backtest `model_uri` (a registered ensemble, or a member checkpoint folder such as a
    `quantray train` run) on the test block of `options.data`, through its own data pipeline."""
    checkpoint = member_checkpoint(Path(model_uri))
    if checkpoint is not None:
        return backtest_checkpoint(checkpoint, options)
    if not model_uri.startswith("models:/") and Path(model_uri).exists():
        raise BadInput(f"{model_uri}: not a member checkpoint (no model.pt and config.json here, in best/ or "
                       f"in checkpoint/best/) and not a model URI (models:/NAME/VERSION)")
    client = client_for(options.tracking_uri)
    version = resolve_version(client, model_uri)
    pinned = f"models:/{version.name}/{version.version}"
    ensemble = load(pinned, tracking_uri=options.tracking_uri).unwrap_python_model().ensemble
    block = _test_block(ensemble.pipeline, options)
    best = ensemble.model.members[0].model
    result = _backtest(block, {"ensemble": ensemble.model.run(block.windows).positions,
                               "best_member": run_model(best, block.windows).positions}, options)

    main = result.strategies[result.main]
    metrics = {key: float(value) for key, value in main.metrics.items()}
    metrics["psr"] = probabilistic_sharpe_ratio(main.net_returns)
    recorded = run_metrics(client, version)
    if "n_trials" in recorded and "trials_sharpe_variance" in recorded:
        metrics["dsr"] = deflated_sharpe_ratio(main.net_returns, max(int(recorded["n_trials"]), 1),
                                               recorded["trials_sharpe_variance"])
    if "pbo" in recorded:
        metrics["pbo"] = recorded["pbo"]  # a property of the search, not of this data
    diagnostics = _diagnostics(best, block, ensemble.pipeline.asset_names)  # the heads of the best member
    metrics.update(_class_scores(diagnostics))
    report = write_ensemble_report(
        result, options.out or reports_dir() / f"{version.name}-{version.version}", ensemble,
        {key: metrics[key] for key in ("psr", "dsr", "pbo") if key in metrics},
        title=f"{pinned} on {block.source}", diagnostics=diagnostics,
    )
    return ModelBacktest(model_uri=pinned, result=result, metrics=metrics, report=report)


def backtest_checkpoint(path: Path, options: BacktestOptions = BacktestOptions()) -> ModelBacktest:
    """Backtest one trained member (a checkpoint folder with its fitted data pipeline)."""
    member = load_checkpoint(path)
    block = _test_block(member.pipeline, options)
    inference = run_model(member.model, block.windows, attention=True)
    result = _backtest(block, {MEMBER: inference.positions}, options)
    main = result.strategies[result.main]
    metrics = {key: float(value) for key, value in main.metrics.items()}
    metrics["psr"] = probabilistic_sharpe_ratio(main.net_returns)
    diagnostics = _diagnostics(member.model, block, member.pipeline.asset_names)
    metrics.update(_class_scores(diagnostics))
    name = path.parent.parent.name if path.name == "best" else path.name  # the train run's folder name
    report = write_report(
        result, options.out or reports_dir() / name, title=f"{path} on {block.source}",
        attention=inference.attention, asset_names=member.pipeline.asset_names,
        extra_metrics={"psr": metrics["psr"]}, diagnostics=diagnostics,
    )
    return ModelBacktest(model_uri=str(path), result=result, metrics=metrics, report=report)


@dataclass
class _Block:
    source: str
    pipeline: DataPipeline
    panel: Panel  # its assets in the trained order
    windows: Windows  # the test block's windows
    next_return: np.ndarray  # [T, A] over the whole panel


def _test_block(pipeline: DataPipeline, options: BacktestOptions) -> _Block:
    source = options.data or pipeline.config.source
    panel = select_assets(load_panel(source), pipeline.asset_names)
    everything = pipeline.windows(panel)
    test = everything.at(sample_splits(pipeline.config, everything.mask)[0].test)
    return _Block(source, pipeline, panel, test, everything.labels.next_return)


def _backtest(block: _Block, strategies: dict[str, np.ndarray], options: BacktestOptions) -> BacktestResult:
    cost = block.pipeline.config.cost_bps if options.cost_bps is None else options.cost_bps
    return backtest_block(strategies, block.windows, block.next_return, block.panel, cost_bps=cost,
                          periods_per_year=bars_per_year(block.panel.dates, block.pipeline.config.bars_per_year),
                          rebalance_every=options.rebalance_every)


def _diagnostics(model: "torch.nn.Module", block: _Block, asset_names: tuple[str, ...]) -> Diagnostics:
    """The data's lagged cross-correlations on the test block (as many lags as the model's lead-lag
    attention, else DEFAULT_MAX_LAG), the model's lead-lag attention, its class heads' confusion."""
    heads = run_heads(model, block.windows)
    max_lag = heads.lead_lag.shape[-1] - 1 if heads.lead_lag is not None else DEFAULT_MAX_LAG
    returns = block.next_return[block.windows.dates_idx]
    returns = np.where(block.panel.mask[block.windows.dates_idx], returns, np.nan)
    return Diagnostics(
        asset_names=asset_names,
        lead_lag_data=lagged_cross_correlations(returns, max_lag) if len(asset_names) > 1 else None,
        lead_lag_attention=heads.lead_lag,
        confusion={head: confusion_matrix(heads.predicted[head], heads.actual[head]) for head in heads.predicted},
    )


def _class_scores(diagnostics: Diagnostics) -> dict[str, float]:
    scores = {}
    for head, matrix in diagnostics.confusion.items():
        for key, value in classification_metrics(matrix).items():
            if key != "n":
                scores[f"{head}_{key}"] = value
    return scores
