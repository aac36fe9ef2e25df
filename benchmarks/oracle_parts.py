"""What each part of the synthetic market's expected return earns as a view (a benchmark, not a test).

The oracle's expected return is the sum of three parts (quantray.data.synthetic.expected_return_parts):
`regime` (the market's drift under tomorrow's regime: a bet on the market's direction),
`lead_lag` (followers trailing yesterday's market) and `momentum` (the planted per-asset trend).
This trades each part, and their sum, as the view of the platform's one-factor risk model on the
test blocks of the quickstart's walk-forward folds, and prints the stitched net Sharpe beside the
oracle's (the true μ through the true covariance). A searched model that trails the oracle can
be compared with these to see which part it missed (its per-fold table shows when).

    python benchmarks/oracle_parts.py [--markets 0,1,2,3]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np
from oracle import space_with_market  # benchmarks/oracle.py: the same market-swapping rule

ROOT = Path(__file__).resolve().parents[1]
SPACE = ROOT / "search_spaces" / "quickstart.yaml"
VIEWS = ("sum", "regime", "lead_lag", "momentum")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", default="0,1,2,3")
    args = parser.parse_args()

    import torch

    from quantray.data.pipeline import prepare
    from quantray.data.sources import synthetic_arguments
    from quantray.data.synthetic import expected_return_parts
    from quantray.evaluate.metrics import annualized_sharpe, net_returns
    from quantray.train.inference import batch_tensors
    from quantray.train.risk import risk_positions
    from quantray.tune.space import load_space

    plan = load_space(SPACE).walkforward
    print(f"each part of the true expected return as the view of the one-factor risk model, stitched net "
          f"Sharpe over the quickstart's {plan.folds} walk-forward test blocks")
    print(f"{'market':<8}{'oracle':>8}" + "".join(f"{n:>10}" for n in VIEWS))
    for market in [int(m) for m in args.markets.split(",") if m]:
        with tempfile.TemporaryDirectory() as scratch:
            space = load_space(space_with_market(SPACE, market, Path(scratch)))
        data = dataclasses.replace(
            space.data, splits=dataclasses.replace(space.data.splits, folds=plan.folds, test_fraction=plan.test_fraction))
        prepared = prepare(data)
        parts = expected_return_parts(**synthetic_arguments(data.source))  # the market `prepare` loaded
        parts = {"sum": sum(parts.values()), **parts}
        returns: dict[str, list[np.ndarray]] = {name: [] for name in ("oracle", *VIEWS)}
        for fold in reversed(range(plan.folds)):  # the earliest test block first
            windows = prepared.windows("test", fold)
            batch = windows.gather(windows.dates_idx)
            books = {"oracle": prepared.panel.oracle.positions[windows.dates_idx]}
            for name in VIEWS:  # views in units of their mean size: the risk model's clip sees one scale
                view = parts[name][windows.dates_idx]
                view = view / max(np.abs(view).mean(), 1e-12)
                books[name] = risk_positions(torch.as_tensor(view), batch_tensors(batch)).numpy()
            for name, positions in books.items():
                returns[name].append(net_returns(positions, batch["next_return"], batch["mask"], data.cost_bps))
        print(f"{market:<8}" + "".join(f"{annualized_sharpe(np.concatenate(returns[n])):>{8 if n == 'oracle' else 10}.2f}"
                                       for n in ("oracle", *VIEWS)))


if __name__ == "__main__":
    main()
