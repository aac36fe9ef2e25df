"""`quantray tune`."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantray.config import add_options, options_from
from quantray.recipes.options import TuneOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tune` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "tune",
        help="search architectures and loss weights with Ray Tune + Optuna",
        description="Run a search over SPACE.yaml: Optuna TPE proposes, ASHA stops poor trials early on the "
                    "validation net Sharpe, every trial is logged to MLflow. Ends with the best trial and "
                    "where its checkpoint is.",
    )
    parser.add_argument("space", type=Path, metavar="SPACE.yaml", help="search-space file (see search_spaces/)")
    add_options(parser, TuneOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.tune import run_tune  # lazy: pandas, ray, torch

    summary = run_tune(args.space, options_from(TuneOptions, args))
    print("\n".join(summary.lines() + [f"next          quantray ensemble {summary.experiment}"]))
    return 0 if summary.best_trial is not None else 1
