"""`quantray serve`: a registered ensemble behind an HTTP endpoint on Ray Serve (docs/serving.md)."""

from __future__ import annotations

import argparse

from quantray.config import add_options, options_from
from quantray.recipes.options import ServeOptions


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `serve` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "serve",
        help="serve a registered model over HTTP on Ray Serve, following its alias",
        description="Serve MODEL (models:/NAME/VERSION or models:/NAME@ALIAS) on Ray Serve: POST /predict "
                    "(OHLCV rows -> positions), POST /bars (today's bar per asset -> today's positions; the "
                    "server keeps the history), GET /healthz, GET /model. Served by alias, it polls the "
                    "registry every --poll-s seconds and switches to the version the alias moves to "
                    "(promote, rollback) without dropping a request.",
    )
    parser.add_argument("model_uri", metavar="MODEL")
    add_options(parser, ServeOptions)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from quantray.recipes.serve import run_serve  # lazy: ray, torch, mlflow

    run_serve(args.model_uri, options_from(ServeOptions, args))
    return 0
