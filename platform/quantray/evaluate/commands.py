"""`quantray backtest`: a registered model on the test block of a data source, against baselines."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from quantray.evaluate.backtest import BacktestResult

REPORTS_DIR = Path(".quantray") / "reports"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's verbs to the `quantray` parser."""
    parser = subparsers.add_parser(
        "backtest",
        help="backtest a registered model on the test block, with costs and baselines",
        description="Load MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS), predict positions on SOURCE "
                    "(default: the source it was trained on) and backtest the last test_fraction of the dates "
                    "(the split of its stored data config) net of costs, against equal weight, time-series "
                    "momentum, its best single member and, on synthetic data, the oracle. Prints the metrics "
                    "and writes the report to ./.quantray/reports/NAME-VERSION/.",
    )
    parser.add_argument("model_uri", metavar="MODEL_URI")
    parser.add_argument("--data", metavar="SOURCE", help="data source (default: the model's own)")
    parser.add_argument("--cost-bps", type=float, help="cost per unit of turnover in bps (default: the model's)")
    parser.add_argument("--out", type=Path, help="report folder (default ./.quantray/reports/NAME-VERSION/)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or "
                        "a SQLite store under ./.quantray/)")
    parser.set_defaults(handler=run_backtest_command)


@dataclass
class ModelBacktest:
    model_uri: str  # models:/NAME/VERSION, the alias resolved
    result: "BacktestResult"
    metrics: dict[str, float]  # the main strategy's metrics, psr, and dsr when the run recorded the search
    report: Path


def backtest_model(model_uri: str, *, data: str | None = None, cost_bps: float | None = None,
                   tracking_uri: str | None = None, out: Path | None = None) -> ModelBacktest:
    """Backtest the registered ensemble `model_uri` on the test block of `data`."""
    import numpy as np

    from quantray.data.sources import load_panel
    from quantray.data.splits import split_dates
    from quantray.data.windows import Windows
    from quantray.ensemble.artifact import select_assets
    from quantray.ensemble.build import backtest_block, write_ensemble_report
    from quantray.evaluate.overfitting import deflated_sharpe_ratio, probabilistic_sharpe_ratio
    from quantray.registry.store import client_for, load, resolve_version, run_metrics
    from quantray.train.inference import run_model

    client = client_for(tracking_uri)
    version = resolve_version(client, model_uri)
    pinned = f"models:/{version.name}/{version.version}"
    ensemble = load(pinned, tracking_uri=tracking_uri).unwrap_python_model().ensemble
    cfg = ensemble.data
    cost = cfg.cost_bps if cost_bps is None else cost_bps

    panel = select_assets(load_panel(data or cfg.source), ensemble.asset_names)
    everything = ensemble.windows(panel)
    first_valid = int(np.argmax(everything.mask.any(axis=1)))
    test_idx = split_dates(panel.n_dates, cfg.lookback, cfg.horizon, cfg.splits, start=first_valid)[0].test
    test = Windows(everything.features, everything.labels, everything.mask, cfg.lookback, test_idx)
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
        result, out or REPORTS_DIR / f"{version.name}-{version.version}", ensemble,
        {key: metrics[key] for key in ("psr", "dsr", "pbo") if key in metrics},
        title=f"{pinned} on {data or cfg.source}",
    )
    return ModelBacktest(model_uri=pinned, result=result, metrics=metrics, report=report)


def run_backtest_command(args: argparse.Namespace) -> int:
    outcome = backtest_model(args.model_uri, data=args.data, cost_bps=args.cost_bps,
                             tracking_uri=args.tracking_uri, out=args.out)
    result = outcome.result
    print(f"{outcome.model_uri}: {len(result.strategies[result.main].net_returns)} test dates, "
          f"net of {result.cost_bps:g} bps")
    keys = ("sharpe", "sortino", "annual_return", "max_drawdown", "turnover", "hit_rate", "ic")
    print(f"{'strategy':<22}" + "".join(f"{key:>14}" for key in keys))
    for name, strategy in result.strategies.items():
        print(f"{name:<22}" + "".join(f"{strategy.metrics.get(key, float('nan')):>14.3f}" for key in keys))
    print("  ".join(f"{key} {outcome.metrics[key]:.3f}" for key in ("psr", "dsr", "pbo") if key in outcome.metrics))
    print(f"report: {outcome.report}")
    return 0
