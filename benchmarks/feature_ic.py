"""How much of the oracle's information the features carry (a diagnostic benchmark, not a test).

On a synthetic market, prints the information coefficient on the training block (correlation
with the next bar's return, pooled over dates and assets, and cross-sectional: both demeaned over
the assets of the date) of the oracle's expected return and of every model feature (as fold 0's
pipeline scales it), then the test-block IC and gross Sharpe (equal weight over the assets) of
rules with nothing fit but a sign: hold sign(training IC) x tanh(feature), for the strongest
features; and of the ridge baseline (fit on the training block). How much of the oracle's
information the features carry, and how much of it holds out of sample.

    python benchmarks/feature_ic.py [--source synthetic:days=4000,signal=2] [--lookback 32] [--top 8]
"""

from __future__ import annotations

import argparse
import warnings

import numpy as np


def ic(x: np.ndarray, y: np.ndarray) -> float:
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 else float("nan")


def demeaned(a: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a date where no asset is known: NaN row
        return a - np.nanmean(a, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", default="synthetic:days=4000,signal=2")
    parser.add_argument("--lookback", type=int, default=32)
    parser.add_argument("--top", type=int, default=8, help="features shown, by |IC|")
    args = parser.parse_args()

    from quantray.config import DataConfig
    from quantray.data.pipeline import prepare
    from quantray.evaluate.backtest import ridge_positions
    from quantray.evaluate.metrics import annualized_sharpe

    prepared = prepare(DataConfig(source=args.source, lookback=args.lookback))
    if prepared.panel.oracle is None:
        raise SystemExit(f"{args.source}: no oracle (a synthetic source has one)")
    target = prepared.labels.next_return
    expected = prepared.panel.oracle.expected_return
    features = prepared.fold_features(0)
    split = prepared.splits[0]

    def rule_sharpe(positions: np.ndarray, dates: np.ndarray) -> float:
        return annualized_sharpe(np.nanmean(positions * np.nan_to_num(target[dates]), axis=1))

    train, test = split.train, split.test
    print(f"{args.source}: IC against the next bar's return on the training block, then the test block's")
    print(f"{'signal':28}{'train IC':>9}{'XS IC':>8}{'test IC':>9}{'test Sharpe':>13}")
    oracle = prepared.panel.oracle.positions
    print(f"{'oracle':28}{ic(expected[train].ravel(), target[train].ravel()):9.3f}"
          f"{ic(demeaned(expected[train]).ravel(), demeaned(target[train]).ravel()):8.3f}"
          f"{ic(expected[test].ravel(), target[test].ravel()):9.3f}{rule_sharpe(oracle[test], test):13.2f}")
    rows = []
    for i, name in enumerate(features.names):
        x = features.values[..., i]
        pooled = ic(x[train].ravel(), target[train].ravel())
        rule = np.sign(pooled) * np.tanh(x[test])
        rows.append((name, pooled, ic(demeaned(x[train]).ravel(), demeaned(target[train]).ravel()),
                     ic(rule.ravel(), target[test].ravel()), rule_sharpe(rule, test)))
    for name, pooled, cross, held, sharpe in sorted(rows, key=lambda r: -abs(r[1]))[: args.top]:
        label = ("-" if pooled < 0 else "") + f"tanh({name})"
        print(f"{label:28}{pooled:9.3f}{cross:8.3f}{held:9.3f}{sharpe:13.2f}")
    ridge = ridge_positions(features.values, features.valid, target, train, test)
    print(f"{'ridge (fit on train)':28}{'':17}{ic(ridge.ravel(), target[test].ravel()):9.3f}"
          f"{rule_sharpe(ridge, test):13.2f}")


if __name__ == "__main__":
    main()
