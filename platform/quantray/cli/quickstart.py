"""`quantray quickstart`: walk-forward -> register -> promote, on the embedded default."""

from __future__ import annotations

import argparse

from quantray.config import add_options, options_from
from quantray.recipes.options import QuickstartOptions, WalkForwardOptions

# the quickstart always runs here, on the embedded default, under its own names, and registers
WALKFORWARD_SKIP = ("experiment", "address", "out", "no_register")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `quickstart` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "quickstart",
        help="walk-forward search -> ensemble -> backtest -> promote, on the embedded default",
        description="Run the main job end to end on this machine: a walk-forward of a short search "
                    "(search_spaces/quickstart.yaml; refit mode: search on the first fold, refit on the later "
                    "ones), the folds' ensembles traded on test blocks that tile the last years, the stitched "
                    "record against the baselines with a report, and the last fold's ensemble registered and "
                    "promoted when the gates pass on that record.",
    )
    add_options(parser, QuickstartOptions)
    add_options(parser, WalkForwardOptions, skip=WALKFORWARD_SKIP)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.quickstart import run_quickstart  # lazy: ray, torch, mlflow

    run_quickstart(options_from(QuickstartOptions, args), options_from(WalkForwardOptions, args))
    return 0
