"""`quantray promote`, `quantray rollback`, `quantray predict`: the model registry from the shell."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantray.cli import EXIT_REFUSED
from quantray.cli.data import check_table_path
from quantray.registry.store import Gates, load, promote, rollback

TRACKING_HELP = "MLflow tracking URI (default: MLFLOW_TRACKING_URI or a SQLite store under ./.quantray/)"
# the gates' defaults live in quantray.registry.store.Gates; the flags only override them


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's verbs to the `quantray` parser."""
    promote = subparsers.add_parser(
        "promote",
        help="point the champion alias at a model version, when it passes the gates",
        description="Move ALIAS (default champion) to MODEL_URI (models:/NAME/VERSION or models:/NAME@ALIAS) "
                    "when its run's Deflated Sharpe Ratio is at least --min-dsr and its test Sharpe beats the "
                    "best simple baseline by --min-excess-sharpe (and, with --max-pbo, its Probability of "
                    "Backtest Overfitting is at most that). The old holder of the alias becomes 'previous'. "
                    "A refused promotion exits 3 and leaves the aliases as they were.",
    )
    promote.add_argument("model_uri", metavar="MODEL_URI")
    promote.add_argument("--alias", default="champion", help="alias to move (default champion)")
    promote.add_argument("--min-dsr", type=float, help="gate: minimum DSR (default: the gates' own)")
    promote.add_argument("--min-excess-sharpe", type=float,
                         help="gate: minimum test Sharpe over the best baseline (default: the gates' own)")
    promote.add_argument("--max-pbo", type=float, help="gate: maximum PBO (default: no PBO gate)")
    promote.add_argument("--force", action="store_true", help="promote even when a gate fails (says so on stderr)")
    promote.add_argument("--tracking-uri", help=TRACKING_HELP)
    promote.set_defaults(handler=run_promote)

    rollback = subparsers.add_parser(
        "rollback",
        help="restore the previous champion",
        description="Swap ALIAS (default champion) with 'previous': the previous version is restored and the "
                    "demoted one becomes 'previous', so a second rollback rolls forward again.",
    )
    rollback.add_argument("name", metavar="NAME", help="registered model name")
    rollback.add_argument("--alias", default="champion", help="alias to roll back (default champion)")
    rollback.add_argument("--tracking-uri", help=TRACKING_HELP)
    rollback.set_defaults(handler=run_rollback)

    predict = subparsers.add_parser(
        "predict",
        help="positions (and embeddings) of a registered model on a data source",
        description="Load MODEL_URI from the registry and predict on SOURCE. Prints the last date's positions; "
                    "--out writes every (date, asset) row to a .csv or .parquet file.",
    )
    predict.add_argument("model_uri", metavar="MODEL_URI", help="models:/NAME/VERSION or models:/NAME@ALIAS")
    predict.add_argument("--data", required=True, metavar="SOURCE",
                         help="synthetic[:k=v,..], bundled:NAME, yfinance:T1,T2, csv:DIR, parquet:PATH")
    predict.add_argument("--out", type=Path, help="write all rows here (.csv or .parquet)")
    predict.add_argument("--embeddings", action="store_true", help="add the fused embeddings as emb_0..emb_{E-1}")
    predict.add_argument("--tracking-uri", help=TRACKING_HELP)
    predict.set_defaults(handler=run_predict)


def run_promote(args: argparse.Namespace) -> int:
    thresholds = {k: v for k, v in (("min_dsr", args.min_dsr), ("min_excess_sharpe", args.min_excess_sharpe),
                                    ("max_pbo", args.max_pbo)) if v is not None}
    result = promote(args.model_uri, alias=args.alias, gates=Gates(**thresholds), force=args.force,
                     tracking_uri=args.tracking_uri)
    if not result.promoted:
        print(f"quantray: {result.line()}", file=sys.stderr)
        return EXIT_REFUSED
    print(result.line())
    return 0


def run_rollback(args: argparse.Namespace) -> int:
    result = rollback(args.name, alias=args.alias, tracking_uri=args.tracking_uri)
    print(f"{result.name}: '{result.alias}' is version {result.restored_version} again"
          + (f"; version {result.demoted_version} is 'previous'" if result.demoted_version else ""))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from quantray.data.sources import load_panel, write_frame_atomic  # lazy: pandas
    from quantray.registry.pyfunc import panel_frame  # lazy: mlflow

    check_table_path(args.out)  # a bad --out fails before anything is computed
    panel = load_panel(args.data)  # a bad source fails before the model downloads
    model = load(args.model_uri, tracking_uri=args.tracking_uri)
    frame = model.predict(panel_frame(panel), params={"embeddings": args.embeddings})
    if args.out is None:
        last_date = frame["date"].iloc[-1]
        print(f"positions on {last_date}")
        print(frame.loc[frame["date"] == last_date, ["asset", "position"]]
              .to_string(index=False, float_format=lambda v: f"{v:+.4f}"))
        return 0
    write_frame_atomic(frame, args.out)
    print(f"wrote {len(frame)} rows to {args.out}", file=sys.stderr)
    return 0

