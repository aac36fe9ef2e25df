"""What a feature's normalization leaves of a slow signal (a benchmark, not a test).

The synthetic market's planted signal is a months-long per-asset trend. This trades one fixed
rule, no training: the view tanh(momentum_21) (the 21-day volatility-scaled return, as each
normalization scales it) through the platform's one-factor risk model, on the test blocks of the
quickstart's walk-forward folds, and prints the stitched net Sharpe per normalization beside the
oracle's. A rolling normalization centers each feature on its trailing year, which subtracts the
slow part of a trend; the train_* ones fit one scaler per fold on its training dates.

    python benchmarks/normalization.py [--markets 0,1,2,3] [--feature momentum_21|trend_20|...]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NORMALIZATIONS = ("rolling_robust", "rolling_zscore", "train_robust", "train_zscore", "train_pooled", "none")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", default="0,1,2,3")
    parser.add_argument("--feature", default="momentum_21")
    args = parser.parse_args()

    import torch

    from quantray.data.pipeline import prepare
    from quantray.evaluate.metrics import annualized_sharpe, net_returns
    from quantray.train.inference import batch_tensors
    from quantray.train.risk import risk_positions
    from quantray.tune.space import load_space

    space = load_space(ROOT / "search_spaces" / "quickstart.yaml")
    plan = space.walkforward
    print(f"tanh({args.feature}) through the one-factor risk model, stitched net Sharpe over the "
          f"quickstart's {plan.folds} walk-forward test blocks")
    print(f"{'market':<8}{'oracle':>8}" + "".join(f"{n:>16}" for n in NORMALIZATIONS))
    for market in [int(m) for m in args.markets.split(",") if m]:
        row, oracle = [], None
        for normalization in NORMALIZATIONS:
            data = dataclasses.replace(
                space.data, source=f"synthetic:days=4000,signal=2,seed={market}",
                features=dataclasses.replace(space.data.features, normalization=normalization),
                splits=dataclasses.replace(space.data.splits, folds=plan.folds, test_fraction=plan.test_fraction))
            prepared = prepare(data)
            column = prepared.features.names.index(args.feature)
            rule, best = [], []
            for fold in reversed(range(plan.folds)):  # the earliest test block first
                windows = prepared.windows("test", fold)
                batch = windows.gather(windows.dates_idx)
                view = np.tanh(prepared.fold_features(fold).values[windows.dates_idx][:, :, column])
                positions = risk_positions(torch.as_tensor(view), batch_tensors(batch)).numpy()
                rule.append(net_returns(positions, batch["next_return"], batch["mask"], data.cost_bps))
                best.append(net_returns(prepared.panel.oracle.positions[windows.dates_idx], batch["next_return"],
                                        batch["mask"], data.cost_bps))
            row.append(annualized_sharpe(np.concatenate(rule)))
            oracle = oracle if oracle is not None else annualized_sharpe(np.concatenate(best))
        print(f"{market:<8}{oracle:>8.2f}" + "".join(f"{s:>16.2f}" for s in row))


if __name__ == "__main__":
    main()
