"""`quantray tune`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `tune` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "tune",
        help="search architectures and loss weights with Ray Tune + Optuna",
        description="Run a search over SPACE.yaml: Optuna TPE proposes, ASHA stops poor trials early on the "
                    "validation net Sharpe, every trial is logged to MLflow. Ends with the best trial and "
                    "where its checkpoint is.",
    )
    add_tune_arguments(parser)
    parser.set_defaults(handler=run)


def add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a search; `quantray submit` passes the same ones to the cluster."""
    parser.add_argument("space", type=Path, metavar="SPACE.yaml", help="search-space file (see search_spaces/)")
    parser.add_argument("--data", metavar="SOURCE", help="override the space's data source "
                        "(synthetic[:k=v,..], bundled:NAME, yfinance:T1,T2, csv:DIR, parquet:PATH)")
    parser.add_argument("--trials", type=int, help="number of trials (overrides the space's budget)")
    parser.add_argument("--experiment", help="experiment name (default: the space name and a timestamp)")
    parser.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    parser.add_argument("--gpus-per-trial", type=float, help="GPUs per trial; fractions share a GPU")
    parser.add_argument("--workers-per-trial", type=int, help="DDP workers per trial (>1 uses Ray Train)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted experiment")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or "
                        "a SQLite store under ./.quantray/)")
    parser.add_argument("--storage", type=Path, help="where results and checkpoints go (default ./.quantray/tune)")


def run(args: argparse.Namespace) -> int:
    from quantray.tune.run import TuneRequest, default_storage, run_tune, summary_lines

    summary = run_tune(TuneRequest(
        space=args.space, data=args.data, trials=args.trials, experiment=args.experiment, address=args.address,
        gpus_per_trial=args.gpus_per_trial, workers_per_trial=args.workers_per_trial, resume=args.resume,
        tracking_uri=args.tracking_uri, storage=args.storage or default_storage(),
    ))
    print("\n".join(summary_lines(summary)))
    return 0 if summary.best_trial is not None else 1
