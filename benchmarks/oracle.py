"""How close the ensemble gets to the oracle on the synthetic market (a quality benchmark).

Runs a search (default search_spaces/quickstart.yaml: a fixed seed and a fixed synthetic market),
fuses its best trials with each fusion method, backtests on the untouched test block, and prints
test net Sharpe divided by the oracle's on the same block, for the ensemble and for the best
single member. Goal: the ensemble at least 0.7 of the oracle.

`--markets 1,2,3` repeats the whole run on other draws of the same synthetic market (the space's
`synthetic:` source with `seed=` replaced): one market's test block is a single draw, and how
much the ratio moves between draws is part of the answer.

`--news` runs the same search with the synthetic news stream (informed 0.3) and the
transformer's news cross-attention added, and nothing else changed: with `--markets`, what the
news channel is worth at equal search.

    python benchmarks/oracle.py [--space search_spaces/quickstart.yaml] [--trials N] [--top-k 5]
                                [--markets 0,1,2,3] [--news]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "quickstart.yaml")
    parser.add_argument("--trials", type=int)
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--methods", default="concat,attention,greedy")
    parser.add_argument("--markets", help="comma-separated seeds of the synthetic market (default: the space's)")
    parser.add_argument("--news", action="store_true", help="add the synthetic news stream and news attention")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="quantray-oracle-") as scratch:
        root = Path(scratch)
        markets = [None] if args.markets is None else [int(seed) for seed in args.markets.split(",")]
        for market in markets:
            space = args.space if market is None else space_with_market(args.space, market, root)
            if args.news:
                space = space_with_news(space, root)
            run_one(space, market, args, root / f"market-{market}")


def space_with_market(space: Path, seed: int, root: Path) -> Path:
    """A copy of `space` whose synthetic source draws the market with `seed`."""
    import yaml

    raw = yaml.safe_load(space.read_text())
    source = raw["data"]["source"]
    if not source.startswith("synthetic"):
        raise SystemExit(f"--markets needs a synthetic source; {space} has {source!r}")
    name, _, options = source.partition(":")
    options = ",".join(o for o in options.split(",") if o and not o.startswith("seed="))
    raw["data"]["source"] = f"{name}:seed={seed}" + (f",{options}" if options else "")
    copy = root / f"{space.stem}-market{seed}.yaml"
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    return copy


def space_with_news(space: Path, root: Path) -> Path:
    """A copy of `space` that reads the synthetic news stream, its transformers through news attention."""
    import yaml

    raw = yaml.safe_load(space.read_text())
    raw["data"]["news"] = {"source": "synthetic:seed=0,informed=0.3"}
    arch = raw["model"]["arch"]
    transformer = arch["transformer"] if "transformer" in arch else arch  # conditional or a single family
    transformer["news_attention"] = True
    copy = root / f"{space.stem}-news.yaml"
    copy.write_text(yaml.safe_dump(raw, sort_keys=False))
    return copy


def run_one(space: Path, market: int | None, args: argparse.Namespace, root: Path) -> None:
    from quantray.recipes.ensemble import build_ensemble
    from quantray.recipes.options import EnsembleOptions, TuneOptions
    from quantray.recipes.tune import run_tune

    uri = f"sqlite:///{root / 'mlflow.db'}"
    root.mkdir(parents=True)
    summary = run_tune(space, TuneOptions(trials=args.trials, tracking_uri=uri, storage=root / "tune"))
    rows = []
    for method in args.methods.split(","):
        built = build_ensemble(summary.experiment, EnsembleOptions(
            storage=root / "tune", top_k=args.top_k, method=method, out=root / "ensembles" / method))
        sharpe = {name: s.metrics["sharpe"] for name, s in built.result.strategies.items()}
        rows.append((method, len(built.ensemble.member_ids), sharpe["ensemble"], sharpe["best_member"],
                     sharpe.get("oracle", float("nan"))))

    where = ("the space's market" if market is None else f"market seed {market}") + (", with news" if args.news else "")
    print(f"\nspace {args.space.name}, {where}, {summary.n_trials} trials; "
          "test block net Sharpe (annualized, after costs)")
    print(f"{'method':10} {'members':>7} {'ensemble':>9} {'best member':>12} {'oracle':>7} "
          f"{'ensemble/oracle':>16} {'member/oracle':>14}")
    for method, members, ensemble, member, oracle in rows:
        ratio = (lambda x: f"{x / oracle:.2f}" if oracle > 0 else "n/a (oracle <= 0)")
        print(f"{method:10} {members:7d} {ensemble:9.2f} {member:12.2f} {oracle:7.2f} "
              f"{ratio(ensemble):>16} {ratio(member):>14}", flush=True)


if __name__ == "__main__":
    main()
