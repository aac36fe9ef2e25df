"""`quantray quickstart`: the whole job on the embedded default.

tune (search_spaces/quickstart.yaml) -> ensemble of the best trials -> backtest and report on the
untouched test block -> promote to the `champion` alias when the gates pass. Local Ray, the
MLflow store under ./.quantray/, and the synthetic market unless --data names another source.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from quantray.errors import BadInput

SPACE_NAME = "quickstart.yaml"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `quickstart` to the `quantray` parser."""
    parser = subparsers.add_parser(
        "quickstart",
        help="tune -> ensemble -> backtest -> promote, on the embedded default",
        description="Run the main job end to end on this machine: a short search "
                    "(search_spaces/quickstart.yaml), an ensemble of the best trials, an honest backtest "
                    "with a report, and a gated promotion to the MLflow registry.",
    )
    parser.add_argument("--data", metavar="SOURCE", help="data source (default: the synthetic market); e.g. csv:DIR")
    parser.add_argument("--space", type=Path, help=f"search space (default: search_spaces/{SPACE_NAME})")
    parser.add_argument("--trials", type=int, help="number of trials (default: the space's budget)")
    parser.add_argument("--top-k", type=int, default=5, help="ensemble members (default 5, as quantray ensemble)")
    parser.add_argument("--method", default="concat", choices=("concat", "attention", "greedy"),
                        help="fusion method (default concat)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: a SQLite store under ./.quantray/)")
    parser.add_argument("--storage", type=Path, help="where trials and checkpoints go (default ./.quantray/tune)")
    parser.set_defaults(handler=run)


def default_space() -> Path:
    """search_spaces/quickstart.yaml in the working directory, else in the source checkout."""
    here = Path("search_spaces") / SPACE_NAME
    if here.is_file():
        return here
    checkout = Path(__file__).resolve().parents[2] / "search_spaces" / SPACE_NAME
    if checkout.is_file():
        return checkout
    raise BadInput(f"--space: no {here} here; pass --space PATH to a search-space file")


def run(args: argparse.Namespace) -> int:
    from quantray.ensemble.build import build_ensemble
    from quantray.registry.store import promote, tracking_uri
    from quantray.tune.run import TuneRequest, default_storage, run_tune, summary_lines

    uri = tracking_uri(args.tracking_uri)
    storage = (args.storage or default_storage()).resolve()
    print("== 1/3 tune", flush=True)
    summary = run_tune(TuneRequest(space=args.space or default_space(), data=args.data, trials=args.trials,
                                   tracking_uri=uri, storage=storage))
    print("\n".join(summary_lines(summary)[:-1]), flush=True)
    if summary.best_trial is None:
        print("quantray: no trial finished an epoch; nothing to ensemble", file=sys.stderr)
        return 1

    print(f"\n== 2/3 ensemble ({args.method}, top {args.top_k}) and backtest on the test block", flush=True)
    result = build_ensemble(summary.experiment, storage=storage, top_k=args.top_k, method=args.method,
                            tracking_uri=uri)
    print("\n".join(result.lines()))
    print(f"report        {result.out / 'report' / 'report.html'}")

    print("\n== 3/3 promote", flush=True)
    try:
        promotion = promote(result.model_uri, tracking_uri=uri)
    except BadInput as refused:  # the gates did their job: say why, the run itself succeeded
        print(f"not promoted  {refused}")
    else:
        before = f" (previous champion v{promotion.previous_version} kept as 'previous')" \
            if promotion.previous_version else ""
        print(f"promoted      {promotion.name} v{promotion.version} is now '{promotion.alias}'{before}")
    print(f"\nMLflow        {uri}   (mlflow ui --backend-store-uri {uri})")
    return 0
