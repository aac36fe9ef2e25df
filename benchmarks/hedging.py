"""Where the oracle's Sharpe comes from on the synthetic market (a benchmark, not a test).

The oracle holds Σ⁻¹μ with the true conditional mean μ and covariance Σ. This prints the gross
Sharpe of the same true μ turned into positions three simpler ways: μ/σ² per asset (no hedge; σ²
over the last year), μ demeaned over the assets (a dollar-neutral book, what `market_neutral:
true` trades), and μ as the views of the platform's own risk model (`data.risk: {model:
one_factor}`: quantray.data.risk estimates it from the bars, quantray.train.risk turns views into
positions). A large gap between the first and the others says the oracle's edge is mostly
hedging what moves every asset together.

    python benchmarks/hedging.py [--markets 0,1,2,3] [--days 4000] [--halflife 20]
"""

from __future__ import annotations

import argparse

import numpy as np


WARM_UP = 252  # dates before the estimated risk (a year of returns) counts


def sharpe(positions: np.ndarray, next_return: np.ndarray) -> float:
    pnl = np.nansum(positions[WARM_UP:-1] * next_return[WARM_UP:-1], axis=1)
    return float(pnl.mean() / pnl.std() * np.sqrt(252))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", default="0,1,2,3")
    parser.add_argument("--days", type=int, default=4000)
    parser.add_argument("--halflife", type=float, default=20.0)
    args = parser.parse_args()

    import torch

    from quantray.config import RiskConfig
    from quantray.data.risk import RISK_KEYS, build_risk
    from quantray.data.sources import load_panel
    from quantray.train.risk import risk_positions

    def risk_book(views, mask, risk):
        batch = {"mask": torch.as_tensor(mask), **{k: torch.as_tensor(getattr(risk, k)) for k in RISK_KEYS}}
        return risk_positions(torch.as_tensor(views, dtype=torch.float32), batch).double().numpy()

    print(f"{'market':>6}{'oracle':>8}{'mu/var':>8}{'demeaned':>10}{'1-factor':>10}")
    for market in (int(m) for m in args.markets.split(",")):
        panel = load_panel(f"synthetic:days={args.days},signal=2,seed={market}")
        close = panel.field("close")
        returns = np.zeros_like(close)
        returns[1:] = close[1:] / close[:-1] - 1.0
        next_return = np.vstack([returns[1:], np.zeros((1, close.shape[1]))])
        mu = panel.oracle.expected_return  # known at t for the return t -> t+1
        variance = np.array([returns[max(0, t - 251):t + 1].var(axis=0) + 1e-12 for t in range(len(returns))])
        rows = (sharpe(panel.oracle.positions, next_return), sharpe(mu / variance, next_return),
                sharpe(mu - mu.mean(axis=1, keepdims=True), next_return),
                sharpe(risk_book(mu, panel.mask, build_risk(panel, RiskConfig("one_factor", args.halflife))),
                       next_return))
        print(f"{market:>6}" + "".join(f"{v:>{w}.2f}" for v, w in zip(rows, (8, 8, 10, 10))))


if __name__ == "__main__":
    main()
