"""`quantray walkforward`: the whole search -> ensemble -> backtest judged across many years."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantray.config import add_options, options_from
from quantray.recipes.options import WalkForwardOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `walkforward` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "walkforward",
        help="judge a space walk-forward: folds whose test blocks tile many years, nothing chosen on the future",
        description="Cut the history into expanding folds whose test blocks tile its end. For each fold, search "
                    "(or refit the first fold's best configurations), select and fuse members on its own "
                    "validation block, and trade its test block once. Prints the stitched out-of-sample record "
                    "against baselines on the same dates and costs, with a Deflated Sharpe whose N counts every "
                    "configuration compared, writes the report, and registers the last fold's ensemble.",
    )
    parser.add_argument("space", type=Path, metavar="SPACE.yaml", help="search-space file (see search_spaces/)")
    add_options(parser, WalkForwardOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.walkforward import run_walkforward  # lazy: ray, torch, mlflow

    outcome = run_walkforward(args.space, options_from(WalkForwardOptions, args))
    print("\n".join(outcome.lines()))
    return 0
