"""CLI verbs of the data layer: `quantray data show|check|export SOURCE`."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantray.config import DataConfig

SOURCE_HELP = ("synthetic[:seed=..,assets=..,days=..] | bundled:NAME | yfinance:T1,T2[,start=..,end=..] | "
               "csv:DIR|FILE | parquet:PATH")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add this package's verbs to the `quantray` parser."""
    data = subparsers.add_parser("data", help="inspect, validate and export data sources",
                                 description="Inspect, validate and export a data SOURCE.")
    verbs = data.add_subparsers(dest="data_verb", metavar="VERB", required=True)

    show = verbs.add_parser("show", help="summary: assets, date range, rows, gaps, columns",
                            description="Print a summary of SOURCE: assets, dates, rows, gaps, columns, "
                                        "and each asset's first and last date.")
    show.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    show.set_defaults(handler=_show)

    check = verbs.add_parser("check", help="validate; exit 2 with the first problem",
                             description="Validate SOURCE: every row, enough history for the lookback, and "
                                         "enough dates for the default train/val/test split. Prints 'ok: ...' "
                                         "or the first problem (exit 2).")
    check.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    check.add_argument("--lookback", type=int, default=DataConfig.lookback,
                       help="window length in dates each asset must cover (default %(default)s)")
    check.set_defaults(handler=_check)

    export = verbs.add_parser("export", help="write model features and labels, one row per (date, asset)",
                              description="Write one row per traded (date, asset): the features exactly as "
                                          "the models see them (causal rolling normalization) and the "
                                          "labels as label_* columns. Parquet or CSV by the extension of --out.")
    export.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    export.add_argument("--out", required=True, type=Path, help="output file, .parquet or .csv")
    export.add_argument("--lookback", type=int, default=DataConfig.lookback,
                        help="window length each asset must cover (default %(default)s)")
    export.add_argument("--horizon", type=int, default=DataConfig.horizon,
                        help="label horizon in dates (default %(default)s)")
    export.set_defaults(handler=_export)


def _show(args: argparse.Namespace) -> int:
    from quantray.data.report import summarize
    from quantray.data.sources import load_panel

    print(summarize(load_panel(args.source), args.source))
    return 0


def _check(args: argparse.Namespace) -> int:
    from quantray.config import SplitConfig
    from quantray.data.features import build_features
    from quantray.data.panel import check_history
    from quantray.data.pipeline import first_valid_date
    from quantray.data.sources import load_panel
    from quantray.data.splits import split_dates

    panel = load_panel(args.source)
    check_history(panel, args.lookback)
    features = build_features(panel)
    (split,) = split_dates(panel.n_dates, args.lookback, DataConfig.horizon, SplitConfig(),
                           start=first_valid_date(features))
    print(f"ok: {args.source}: {panel.n_assets} assets, {panel.n_dates} dates {panel.dates[0]}..{panel.dates[-1]}, "
          f"{int(panel.mask.sum())} rows, fields {','.join(panel.fields)}, {len(features.names)} features, "
          f"{len(split.train)}/{len(split.val)}/{len(split.test)} train/val/test sample dates")
    return 0


def _export(args: argparse.Namespace) -> int:
    from quantray.data.report import export_frame
    from quantray.data.sources import load_panel, write_frame_atomic
    from quantray.errors import BadInput

    if args.out.suffix.lower() not in (".parquet", ".pq", ".csv"):
        raise BadInput(f"--out {args.out}: must end in .parquet or .csv")
    frame = export_frame(load_panel(args.source), args.lookback, args.horizon)
    write_frame_atomic(frame, args.out)
    print(f"wrote {len(frame)} rows x {len(frame.columns)} columns to {args.out}")
    return 0
