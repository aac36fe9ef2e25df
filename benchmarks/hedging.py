"""Where the oracle's Sharpe comes from on the synthetic market (a benchmark, not a test).

The oracle holds Σ⁻¹μ with the true conditional mean μ and covariance Σ. This prints the gross
Sharpe of the same true μ turned into positions three simpler ways: μ/σ² per asset (no hedge; σ² over the last year),
μ demeaned over the assets (a dollar-neutral book, what `market_neutral: true` trades), and μ
through a one-factor risk model estimated from the bars (EWMA beta to the equal-weight market
and idiosyncratic variances, causal). A large gap between the first and the others says the
oracle's edge is mostly hedging what moves every asset together.

    python benchmarks/hedging.py [--markets 0,1,2,3] [--days 4000] [--halflife 20]
"""

from __future__ import annotations

import argparse

import numpy as np


WARM_UP = 252  # dates before the estimated risk (a year of returns) counts


def sharpe(positions: np.ndarray, next_return: np.ndarray) -> float:
    pnl = np.nansum(positions[WARM_UP:-1] * next_return[WARM_UP:-1], axis=1)
    return float(pnl.mean() / pnl.std() * np.sqrt(252))


def one_factor(returns: np.ndarray, halflife: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EWMA beta [T, A], idiosyncratic variance [T, A] and market variance [T] known at each t."""
    decay = 0.5 ** (1.0 / halflife)
    market = returns.mean(axis=1)
    var_m, cov, var_a = market[:60].var(), (returns[:60] * market[:60, None]).mean(0), returns[:60].var(0)
    beta, idio, var_market = (np.empty_like(returns), np.empty_like(returns), np.empty(len(market)))
    for t in range(len(market)):
        var_m = decay * var_m + (1 - decay) * market[t] ** 2
        cov = decay * cov + (1 - decay) * returns[t] * market[t]
        var_a = decay * var_a + (1 - decay) * returns[t] ** 2
        beta[t] = cov / var_m
        idio[t] = np.maximum(var_a - beta[t] ** 2 * var_m, 1e-3 * var_a)
        var_market[t] = var_m
    return beta, idio, var_market


def hedged(mu: np.ndarray, beta: np.ndarray, idio: np.ndarray, var_market: np.ndarray) -> np.ndarray:
    """Σ⁻¹μ for Σ = var_market·ββ' + diag(idio), by Sherman-Morrison."""
    x = mu / idio
    k = (beta * x).sum(1) / (1.0 / var_market + (beta * beta / idio).sum(1))
    return x - beta / idio * k[:, None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--markets", default="0,1,2,3")
    parser.add_argument("--days", type=int, default=4000)
    parser.add_argument("--halflife", type=float, default=20.0)
    args = parser.parse_args()

    from quantray.data.sources import load_panel

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
                sharpe(hedged(mu, *one_factor(returns, args.halflife)), next_return))
        print(f"{market:>6}" + "".join(f"{v:>{w}.2f}" for v, w in zip(rows, (8, 8, 10, 10))))


if __name__ == "__main__":
    main()
