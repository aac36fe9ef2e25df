"""`quantray ensemble`: fuse a search's best trials, backtest on the test block, register."""

from __future__ import annotations

import argparse

from quantray.config import add_options, options_from
from quantray.recipes.options import EnsembleOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `ensemble` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "ensemble",
        help="fuse the best trials of a search into a registered ensemble",
        description="Select the top-k trials of EXPERIMENT by validation Sharpe (skipping near-duplicates), "
                    "fuse them on the validation block, backtest once on the test block against baselines "
                    "(with DSR, PSR and PBO), save the ensemble and its report, and register it in MLflow. "
                    "Prints the model URI.",
    )
    parser.add_argument("experiment", metavar="EXPERIMENT", help="the search's experiment name")
    add_options(parser, EnsembleOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.ensemble import run_ensemble  # lazy: torch, mlflow

    print("\n".join(run_ensemble(args.experiment, options_from(EnsembleOptions, args)).lines()))
    return 0
