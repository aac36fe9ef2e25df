"""`quantray`: one entry point, a verb per job.

Each verb group is a module of this package (jobs: `quantray.jobs.commands`) that exposes
`register(subparsers)`; the parsers set `handler=` to a function taking the parsed args and
returning an exit code (or None for 0). A recipe's options are one dataclass and its flags are
generated from it (`quantray.config.add_options`). The handlers import the recipes inside, to
keep torch, ray and mlflow out of `quantray --help`.

Exit codes: 0 ok, 2 bad input (one line on stderr, no traceback), 1 internal failure,
3 a promotion the gates refused (`promote`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import Sequence

from quantray.errors import BadInput

COMMAND_MODULES: tuple[str, ...] = (
    "quantray.cli.data",
    "quantray.cli.tune",
    "quantray.cli.train",
    "quantray.cli.ensemble",
    "quantray.cli.walkforward",
    "quantray.cli.backtest",
    "quantray.cli.registry",
    "quantray.cli.serve",
    "quantray.jobs.commands",
    "quantray.cli.quickstart",
)

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT, EXIT_REFUSED = 0, 1, 2, 3


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantray",
        description="Distributed hyperparameter search and ensembling for multi-asset market models.",
    )
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.handler(args)
    except BadInput as exc:
        print(f"quantray: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("quantray: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the CLI's last line of defence
        if os.environ.get("QUANTRAY_DEBUG"):
            traceback.print_exc()
        print(f"quantray: internal error: {type(exc).__name__}: {exc} (set QUANTRAY_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL
    return EXIT_OK if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
