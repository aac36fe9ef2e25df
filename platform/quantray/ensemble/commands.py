"""`quantray ensemble`: fuse a search's best trials, backtest on the test block, register."""

from __future__ import annotations

import argparse
from pathlib import Path


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
    parser.add_argument("--top-k", type=int, default=5, help="members to fuse (default 5)")
    parser.add_argument("--method", choices=("concat", "attention", "greedy"), default="concat",
                        help="concat: MLP over concatenated embeddings; attention: attention over members; "
                             "greedy: Caruana ensemble selection over positions (default concat)")
    parser.add_argument("--max-corr", type=float, default=0.95,
                        help="skip a trial whose validation returns correlate above this with a member (default 0.95)")
    parser.add_argument("--storage", type=Path, help="where the search's results are (default ./.quantray/tune)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or "
                        "a SQLite store under ./.quantray/)")
    parser.add_argument("--name", help="registered model name (default: the experiment name)")
    parser.add_argument("--out", type=Path, help="output folder (default ./.quantray/ensembles/EXPERIMENT/)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.ensemble.build import build_ensemble
    from quantray.tune.run import default_storage

    result = build_ensemble(
        args.experiment, storage=args.storage or default_storage(), top_k=args.top_k, method=args.method,
        tracking_uri=args.tracking_uri, out=args.out, name=args.name, max_corr=args.max_corr,
    )
    print("\n".join(result.lines()))
    return 0
