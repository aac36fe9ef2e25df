"""`quantray data show|check|export SOURCE`."""

from __future__ import annotations

import argparse
from pathlib import Path

from quantray.config import DataConfig
from quantray.errors import BadInput

SOURCE_HELP = ("synthetic[:seed=..,assets=..,days=..] | bundled:NAME | yfinance:T1,T2[,start=..,end=..] | "
               "csv:DIR|FILE | parquet:PATH")
TABLE_SUFFIXES = (".parquet", ".pq", ".csv")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` and its verbs to the `quantray` parser."""
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
    _add_window_arguments(check)
    check.set_defaults(handler=_check)

    export = verbs.add_parser("export", help="write model features and labels, one row per (date, asset)",
                              description="Write one row per traded (date, asset): the features exactly as "
                                          "the models see them (through the same fitted data pipeline as "
                                          "training) and the labels as label_* columns. Parquet or CSV by the "
                                          "extension of --out.")
    export.add_argument("source", metavar="SOURCE", help=SOURCE_HELP)
    export.add_argument("--out", required=True, type=Path, help="output file, .parquet or .csv")
    _add_window_arguments(export)
    export.set_defaults(handler=_export)


def _add_window_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--lookback", type=int, default=DataConfig.lookback,
                        help="window length in dates each asset must cover (default %(default)s)")
    parser.add_argument("--horizon", type=_bars_or_duration, default=DataConfig.horizon,
                        help="label horizon: a number of bars, or a duration such as 4h, 5d, 1w "
                             "(default %(default)s bars)")


def _bars_or_duration(text: str) -> int | str:
    return int(text) if text.strip().isdigit() else text


def check_table_path(path: Path | None) -> None:
    """An output table must be .parquet or .csv (None: no file asked for)."""
    if path is not None and path.suffix.lower() not in TABLE_SUFFIXES:
        raise BadInput(f"--out {path}: must end in .parquet or .csv")


def _show(args: argparse.Namespace) -> int:
    from quantray.data.report import summarize  # lazy: pandas
    from quantray.data.sources import load_panel  # lazy: pandas

    print(summarize(load_panel(args.source), args.source))
    return 0


def _check(args: argparse.Namespace) -> int:
    from quantray.data.pipeline import prepare  # lazy: pandas

    prepared = prepare(DataConfig(source=args.source, lookback=args.lookback, horizon=args.horizon))
    panel, (split, *_) = prepared.panel, prepared.splits
    print(f"ok: {args.source}: {panel.n_assets} assets, {panel.n_dates} dates {panel.dates[0]}..{panel.dates[-1]}, "
          f"{int(panel.mask.sum())} rows, fields {','.join(panel.fields)}, {prepared.n_features} features, "
          f"horizon {prepared.config.horizon} bars, "
          f"{len(split.train)}/{len(split.stop)}/{len(split.val)}/{len(split.test)} train/stop/val/test sample dates")
    return 0


def _export(args: argparse.Namespace) -> int:
    from quantray.data.pipeline import prepare  # lazy: pandas
    from quantray.data.report import export_frame  # lazy: pandas
    from quantray.data.sources import write_frame_atomic  # lazy: pandas

    check_table_path(args.out)
    frame = export_frame(prepare(DataConfig(source=args.source, lookback=args.lookback, horizon=args.horizon)))
    write_frame_atomic(frame, args.out)
    print(f"wrote {len(frame)} rows x {len(frame.columns)} columns to {args.out}")
    return 0
