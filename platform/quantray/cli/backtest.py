"""`quantray backtest`: a registered model or a trained member's checkpoint on the test block of a
data source, against baselines."""

from __future__ import annotations

import argparse

from quantray.config import add_options, options_from
from quantray.recipes.options import BacktestOptions

METRIC_COLUMNS = ("sharpe", "sortino", "annual_return", "max_drawdown", "turnover", "hit_rate", "ic")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `backtest` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "backtest",
        help="backtest a registered model or a checkpoint on the test block, with costs and baselines",
        description="Load MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS, or the folder of a member "
                    "checkpoint: a `quantray train` run, a trial's checkpoint or its best/), predict positions on SOURCE "
                    "(default: the source it was trained on) through the data pipeline it was trained with, and "
                    "backtest the last test_fraction of the dates (the split of its stored data config) net of "
                    "costs, against equal weight, time-series momentum, its best single member and, on "
                    "synthetic data, the oracle, annualized by the data's bars per year. The report adds the "
                    "lead-lag analysis (lagged cross-correlations of the returns, the model's lead-lag attention) "
                    "and the accuracy, macro-F1 and confusion matrix of its direction and barrier heads. Prints "
                    "the metrics and writes the report to ./.quantray/reports/NAME-VERSION/ (NAME for a checkpoint).",
    )
    parser.add_argument("model_uri", metavar="MODEL_URI")
    add_options(parser, BacktestOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.backtest import backtest_model  # lazy: torch, mlflow

    outcome = backtest_model(args.model_uri, options_from(BacktestOptions, args))
    result = outcome.result
    print(f"{outcome.model_uri}: {len(result.strategies[result.main].net_returns)} test dates, "
          f"net of {result.cost_bps:g} bps, {result.periods_per_year:g} bars a year"
          + (f", rebalanced every {result.rebalance_every} bars" if result.rebalance_every > 1 else ""))
    print(f"{'strategy':<22}" + "".join(f"{key:>14}" for key in METRIC_COLUMNS))
    for name, strategy in result.strategies.items():
        print(f"{name:<22}" + "".join(f"{strategy.metrics.get(key, float('nan')):>14.3f}" for key in METRIC_COLUMNS))
    print("  ".join(f"{key} {outcome.metrics[key]:.3f}" for key in ("psr", "dsr", "pbo") if key in outcome.metrics))
    scores = [key for key in outcome.metrics if key.endswith(("_accuracy", "_macro_f1"))]
    if scores:
        print("  ".join(f"{key} {outcome.metrics[key]:.3f}" for key in scores))
    print(f"report: {outcome.report}")
    return 0
