"""`quantray backtest`: a registered model on the test block of a data source, against baselines."""

from __future__ import annotations

import argparse

from quantray.config import add_options, options_from
from quantray.recipes.options import BacktestOptions

METRIC_COLUMNS = ("sharpe", "sortino", "annual_return", "max_drawdown", "turnover", "hit_rate", "ic")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `backtest` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "backtest",
        help="backtest a registered model on the test block, with costs and baselines",
        description="Load MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS), predict positions on SOURCE "
                    "(default: the source it was trained on) through the data pipeline it was trained with, and "
                    "backtest the last test_fraction of the dates (the split of its stored data config) net of "
                    "costs, against equal weight, time-series momentum, its best single member and, on "
                    "synthetic data, the oracle. Prints the metrics and writes the report to "
                    "./.quantray/reports/NAME-VERSION/.",
    )
    parser.add_argument("model_uri", metavar="MODEL_URI")
    add_options(parser, BacktestOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.backtest import backtest_model  # lazy: torch, mlflow

    outcome = backtest_model(args.model_uri, options_from(BacktestOptions, args))
    result = outcome.result
    print(f"{outcome.model_uri}: {len(result.strategies[result.main].net_returns)} test dates, "
          f"net of {result.cost_bps:g} bps")
    print(f"{'strategy':<22}" + "".join(f"{key:>14}" for key in METRIC_COLUMNS))
    for name, strategy in result.strategies.items():
        print(f"{name:<22}" + "".join(f"{strategy.metrics.get(key, float('nan')):>14.3f}" for key in METRIC_COLUMNS))
    print("  ".join(f"{key} {outcome.metrics[key]:.3f}" for key in ("psr", "dsr", "pbo") if key in outcome.metrics))
    print(f"report: {outcome.report}")
    return 0
