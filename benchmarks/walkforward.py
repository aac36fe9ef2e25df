"""Walk-forward quality and cost (a benchmark, not a test).

For each synthetic market (the space's `synthetic:` source with `seed=` replaced) and each search
seed, runs `quantray walkforward` and prints the stitched out-of-sample net Sharpe, the oracle's
on the same dates, their ratio (goal: at least 0.7 on every market), the baselines, and wall
time. Per market it then compares the spread of the stitched Sharpe over search seeds with the
standard error of a Sharpe ratio measured on that many years (the verdict should not depend on
the seed more than that). `--bundled NAME` adds a real dataset, where the question is the
baselines, not the oracle.

    python benchmarks/walkforward.py [--space search_spaces/quickstart.yaml] [--markets 0,1,2,3]
                                     [--seeds 0,1,2] [--modes refit,search] [--folds 4] [--trials N]
                                     [--method mean|greedy|concat|...] [--bundled us_indices]
"""

from __future__ import annotations

import argparse
import io
import math
import tempfile
import time
from pathlib import Path

import numpy as np
from oracle import space_with_market  # benchmarks/oracle.py: the same market-swapping rule

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "quickstart.yaml")
    parser.add_argument("--markets", default="0,1,2,3", help="seeds of the synthetic market")
    parser.add_argument("--seeds", default="0,1,2", help="search seeds per market")
    parser.add_argument("--modes", default="refit", help="refit, search or both")
    parser.add_argument("--folds", type=int)
    parser.add_argument("--trials", type=int)
    parser.add_argument("--method", help="fusion method per fold (default: the walk-forward's)")
    parser.add_argument("--bundled", help="a bundled real dataset to run once per mode, e.g. us_indices")
    args = parser.parse_args()

    print(f"{'market':<22}{'mode':<7}{'seed':>5}{'years':>6}{'ensemble':>10}{'oracle':>8}{'ratio':>7}"
          f"{'eq.wt':>7}{'vol.tgt':>8}{'tsmom':>7}{'ridge':>7}{'member':>8}{'DSR':>7}{'N':>5}{'s':>6}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="quantray-walkforward-") as scratch:
        root = Path(scratch)
        for market in [int(m) for m in args.markets.split(",") if m]:
            space = space_with_market(args.space, market, root)
            for mode in args.modes.split(","):
                for seed in [int(s) for s in args.seeds.split(",")]:
                    rows.append(run_one(space, f"market {market}", mode, seed, None, args, root))
        if args.bundled:
            for mode in args.modes.split(","):
                rows.append(run_one(args.space, f"bundled:{args.bundled}", mode, 0, f"bundled:{args.bundled}",
                                    args, root))
    print_spread(rows)


def run_one(space: Path, market: str, mode: str, seed: int, data: str | None, args: argparse.Namespace,
            root: Path) -> dict:
    from quantray.recipes.console import Console
    from quantray.recipes.options import WalkForwardOptions
    from quantray.recipes.walkforward import run_walkforward

    name = f"{market.replace(' ', '').replace(':', '-')}-{mode}-{seed}"
    started = time.monotonic()
    method = {"method": args.method} if args.method else {}  # unset: WalkForwardOptions' own default
    outcome = run_walkforward(space, WalkForwardOptions(
        **method, data=data, folds=args.folds, mode=mode, trials=args.trials, seed=seed, experiment=name,
        storage=root / "tune", out=root / name, tracking_uri=f"sqlite:///{root / 'mlflow.db'}", no_register=True,
    ), console=Console(io.StringIO()))
    sharpe = {n: s.metrics["sharpe"] for n, s in outcome.result.strategies.items()}
    oracle = sharpe.get("oracle", math.nan)
    years = len(outcome.result.strategies["walkforward"].net_returns) / 252
    row = {"market": market, "mode": mode, "seed": seed, "years": years, "seconds": time.monotonic() - started,
           "ratio": sharpe["walkforward"] / oracle if oracle > 0 else math.nan, **sharpe,
           "dsr": outcome.metrics["dsr"], "n": outcome.metrics["n_trials"]}
    print(f"{market:<22}{mode:<7}{seed:>5}{years:>6.1f}{sharpe['walkforward']:>10.2f}{oracle:>8.2f}"
          f"{row['ratio']:>7.2f}{sharpe['equal_weight']:>7.2f}{sharpe['volatility_targeted']:>8.2f}"
          f"{sharpe['time_series_momentum']:>7.2f}{sharpe['ridge']:>7.2f}{sharpe['best_member']:>8.2f}"
          f"{row['dsr']:>7.3f}{int(row['n']):>5}{row['seconds']:>6.0f}", flush=True)
    return row


def print_spread(rows: list[dict]) -> None:
    """Per market and mode: the seed-to-seed spread against a Sharpe ratio's standard error."""
    print("\nseed-to-seed spread of the stitched Sharpe vs the standard error of a Sharpe over the record")
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["market"], row["mode"]), []).append(row)
    for (market, mode), group in groups.items():
        sharpes = np.array([r["walkforward"] for r in group])
        mean = float(sharpes.mean())
        standard_error = math.sqrt((1 + mean ** 2 / 2) / group[0]["years"])  # Lo (2002), iid returns
        spread = f"{sharpes.std(ddof=1):5.2f}" if len(sharpes) > 1 else "  n/a"  # one seed has no spread
        ratios = np.array([r["ratio"] for r in group])
        ratio = (f"oracle ratio {np.nanmean(ratios):5.2f} (min {np.nanmin(ratios):5.2f})"
                 if np.isfinite(ratios).any() else "no oracle on real data")  # nanmean of all-NaN warns
        print(f"{market:<22}{mode:<7} mean Sharpe {mean:5.2f}  spread over {len(group)} seeds {spread}  "
              f"standard error {standard_error:5.2f}  {ratio}  "
              f"wall {np.mean([r['seconds'] for r in group]):5.0f} s per run")


if __name__ == "__main__":
    main()
