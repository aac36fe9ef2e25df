"""`quantray quickstart`: tune -> ensemble -> backtest -> promote, on the embedded default."""

from __future__ import annotations

import argparse
import sys

from quantray.config import add_options, options_from
from quantray.recipes.options import EnsembleOptions, QuickstartOptions, TuneOptions

# the quickstart always runs here, on the embedded default: no cluster, no resuming, its own names
TUNE_SKIP = ("experiment", "address", "resume", "workers_per_trial", "gpus_per_trial")
ENSEMBLE_SKIP = ("storage", "tracking_uri", "name", "out", "max_corr")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `quickstart` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "quickstart",
        help="tune -> ensemble -> backtest -> promote, on the embedded default",
        description="Run the main job end to end on this machine: a short search "
                    "(search_spaces/quickstart.yaml), an ensemble of the best trials, an honest backtest "
                    "with a report, and a gated promotion to the MLflow registry.",
    )
    add_options(parser, QuickstartOptions)
    add_options(parser, TuneOptions, skip=TUNE_SKIP)
    add_options(parser, EnsembleOptions, skip=ENSEMBLE_SKIP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.quickstart import run_quickstart  # lazy: ray, torch, mlflow

    outcome = run_quickstart(options_from(QuickstartOptions, args), options_from(TuneOptions, args),
                             options_from(EnsembleOptions, args))
    if outcome.ensemble is None:
        print("quantray: no trial finished an epoch; nothing to ensemble", file=sys.stderr)
        return 1
    return 0
