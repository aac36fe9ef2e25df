"""`quantray train CONFIG.yaml`: train one fixed configuration, without a search."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantray.config import add_options, options_from
from quantray.recipes.options import TrainOptions

METRIC_KEYS = ("val_sharpe", "val_ic", "val_hit_rate", "val_turnover", "val_loss")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `train` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "train",
        help="train one fixed configuration (no search) and keep its checkpoint",
        description="Train CONFIG.yaml (the sections data, model, loss, optim, seed and an optional name; every "
                    "value fixed) in this process with the training loop a search trial runs. Prints the "
                    "validation metrics of every epoch and of the one chosen on the early-stopping block, and keeps "
                    "that epoch's member "
                    "checkpoint, with its fitted data pipeline, under ./.quantray/train/NAME-TIMESTAMP/ "
                    "(`quantray backtest` takes that folder).",
    )
    parser.add_argument("config", type=Path, metavar="CONFIG.yaml", help="a fixed training configuration")
    add_options(parser, TrainOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.train import run_train  # lazy: torch, pandas

    result = run_train(args.config, options_from(TrainOptions, args))
    print(f"{result.name}: chosen epoch {result.summary.best_epoch} of {len(result.history)} "
          f"({result.seconds:.0f} s)")
    print("  ".join(f"{key} {result.metrics[key]:.4f}" for key in METRIC_KEYS if key in result.metrics))
    print(f"checkpoint    {result.checkpoint}")
    print(f"next          quantray backtest {result.out}")
    return 0
