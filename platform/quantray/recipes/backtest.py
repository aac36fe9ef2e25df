"""The backtest recipe: a registered model on the test block of a data source, against baselines."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from quantray.data.panel import select_assets
from quantray.data.pipeline import sample_splits
from quantray.data.sources import load_panel
from quantray.ensemble.build import backtest_block, write_ensemble_report
from quantray.evaluate.backtest import BacktestResult
from quantray.evaluate.overfitting import deflated_sharpe_ratio, probabilistic_sharpe_ratio
from quantray.registry.store import client_for, load, resolve_version, run_metrics
from quantray.train.inference import run_model
from quantray.recipes.options import BacktestOptions
from quantray.workspace import reports_dir


@dataclass
class ModelBacktest:
    model_uri: str  # models:/NAME/VERSION, the alias resolved
    result: BacktestResult
    metrics: dict[str, float]  # the main strategy's metrics, psr, and dsr when the run recorded the search
    report: Path


def backtest_model(model_uri: str, options: BacktestOptions = BacktestOptions()) -> ModelBacktest:
    """Backtest the registered ensemble `model_uri` on the test block of `options.data`, through the
    data pipeline it was trained with."""
    client = client_for(options.tracking_uri)
    version = resolve_version(client, model_uri)
    pinned = f"models:/{version.name}/{version.version}"
    ensemble = load(pinned, tracking_uri=options.tracking_uri).unwrap_python_model().ensemble
    pipeline = ensemble.pipeline
    cost = pipeline.config.cost_bps if options.cost_bps is None else options.cost_bps
    source = options.data or pipeline.config.source

    panel = select_assets(load_panel(source), pipeline.asset_names)
    everything = pipeline.windows(panel)
    test = everything.at(sample_splits(pipeline.config, everything.mask)[0].test)
    result = backtest_block(
        {"ensemble": ensemble.model.run(test).positions,
         "best_member": run_model(ensemble.model.members[0].model, test).positions},
        test, everything.labels.next_return, panel, cost_bps=cost,
    )

    main = result.strategies[result.main]
    metrics = {key: float(value) for key, value in main.metrics.items()}
    metrics["psr"] = probabilistic_sharpe_ratio(main.net_returns)
    recorded = run_metrics(client, version)
    if "n_trials" in recorded and "trials_sharpe_variance" in recorded:
        metrics["dsr"] = deflated_sharpe_ratio(main.net_returns, max(int(recorded["n_trials"]), 1),
                                               recorded["trials_sharpe_variance"])
    if "pbo" in recorded:
        metrics["pbo"] = recorded["pbo"]  # a property of the search, not of this data
    report = write_ensemble_report(
        result, options.out or reports_dir() / f"{version.name}-{version.version}", ensemble,
        {key: metrics[key] for key in ("psr", "dsr", "pbo") if key in metrics},
        title=f"{pinned} on {source}",
    )
    return ModelBacktest(model_uri=pinned, result=result, metrics=metrics, report=report)
