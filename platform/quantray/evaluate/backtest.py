"""Backtest strategies side by side on one block of dates, with costs, against baselines.

Every strategy is a positions array `[T, A]` on the same dates and assets; a position held at
date t earns `asset_returns[t]` = `labels.next_return[t]` (t -> t+1), costs are charged on the
change of positions (see `metrics.net_returns`). Baselines are built here from information
known at each date, so they are causal in the same way as the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from quantray.evaluate.metrics import (
    PERIODS_PER_YEAR,
    drawdown,
    equity_curve,
    net_returns,
    performance,
    portfolio_weights,
)

VOLATILITY_YEARS = 60 / 252  # the baselines' volatility EWMA span, in years: 60 daily bars


@dataclass(frozen=True)
class StrategyResult:
    net_returns: np.ndarray  # [T] after costs
    equity: np.ndarray  # [T] compounded wealth, 1 before the first date
    drawdown: np.ndarray  # [T] positive fraction below the running peak
    metrics: dict[str, float]  # metrics.performance on net returns, capital weights, asset returns


@dataclass(frozen=True)
class BacktestResult:
    main: str  # the strategy under evaluation; the others are baselines
    strategies: dict[str, StrategyResult]  # in the order given, main included
    dates: np.ndarray | None  # datetime64[D] [T] (datetime64[s] for intraday bars), None without a calendar
    cost_bps: float
    periods_per_year: float = PERIODS_PER_YEAR  # what the metrics were annualized with
    rebalance_every: int = 1  # bars between rebalances

    @property
    def baselines(self) -> list[str]:
        return [name for name in self.strategies if name != self.main]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (dates as ISO strings)."""
        return {
            "main": self.main,
            "cost_bps": float(self.cost_bps),
            "dates": None if self.dates is None else [str(d) for d in as_dates(self.dates)],
            "periods_per_year": float(self.periods_per_year),
            "rebalance_every": int(self.rebalance_every),
            "strategies": {
                name: {
                    "metrics": {key: float(value) for key, value in s.metrics.items()},
                    "net_returns": s.net_returns.tolist(),
                    "equity": s.equity.tolist(),
                    "drawdown": s.drawdown.tolist(),
                }
                for name, s in self.strategies.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BacktestResult:
        """Inverse of `to_dict` (e.g. a result read back from a registered model's artifacts)."""
        dates = data["dates"]
        return cls(
            main=data["main"],
            strategies={
                name: StrategyResult(
                    net_returns=np.asarray(s["net_returns"], dtype=np.float64),
                    equity=np.asarray(s["equity"], dtype=np.float64),
                    drawdown=np.asarray(s["drawdown"], dtype=np.float64),
                    metrics=dict(s["metrics"]),
                )
                for name, s in data["strategies"].items()
            },
            dates=None if dates is None else as_dates(np.asarray(dates, dtype="datetime64")),
            cost_bps=float(data["cost_bps"]),
            periods_per_year=float(data.get("periods_per_year", PERIODS_PER_YEAR)),
            rebalance_every=int(data.get("rebalance_every", 1)),
        )


def run_backtest(
    strategies: Mapping[str, np.ndarray],
    asset_returns: np.ndarray,
    mask: np.ndarray | None = None,
    *,
    cost_bps: float,
    dates: np.ndarray | None = None,
    main: str | None = None,
    periods_per_year: float = PERIODS_PER_YEAR,
    rebalance_every: int = 1,
) -> BacktestResult:
    """Net returns, equity, drawdown and metrics of each named positions array `[T, A]`.

    `main` (default: the first name) is the strategy under evaluation, the rest are baselines
    (`equal_weight`, `time_series_momentum`, the best single member, the synthetic oracle...).
    Turnover and IC are measured on capital weights pos / n_active (`metrics.portfolio_weights`),
    IC against the returns of active assets only. `periods_per_year` annualizes the metrics (the
    data's bars per year); with `rebalance_every` N > 1 every strategy trades only every N-th bar
    and holds its positions in between (`hold_between_rebalances`), so it pays costs only then.
    """
    if not strategies:
        raise ValueError("run_backtest needs at least one strategy")
    main = next(iter(strategies)) if main is None else main
    if main not in strategies:
        raise ValueError(f"main strategy {main!r} is not one of {sorted(strategies)}")
    returns = np.asarray(asset_returns, dtype=np.float64)
    active = np.ones(returns.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if dates is not None and len(dates) != returns.shape[0]:
        raise ValueError(f"{len(dates)} dates for {returns.shape[0]} rows of asset_returns")
    active_returns = np.where(active, returns, np.nan)
    results = {}
    for name, positions in strategies.items():
        if np.shape(positions) != returns.shape:
            raise ValueError(f"strategy {name!r}: positions {np.shape(positions)} != asset_returns {returns.shape}")
        positions = hold_between_rebalances(positions, rebalance_every)
        net = net_returns(positions, returns, active, cost_bps)
        weights = portfolio_weights(positions, active)
        results[name] = StrategyResult(
            net_returns=net,
            equity=equity_curve(net),
            drawdown=drawdown(net),
            metrics=performance(net, weights, active_returns, periods_per_year),
        )
    return BacktestResult(
        main=main,
        strategies=results,
        dates=None if dates is None else as_dates(np.asarray(dates)),
        cost_bps=float(cost_bps),
        periods_per_year=float(periods_per_year),
        rebalance_every=int(rebalance_every),
    )


def as_dates(dates: np.ndarray) -> np.ndarray:
    """Dates as datetime64[D], or datetime64[s] when they are intraday bars."""
    unit, _ = np.datetime_data(dates.dtype)
    return dates.astype("datetime64[D]" if unit in ("Y", "M", "W", "D") else "datetime64[s]")


def hold_between_rebalances(positions: np.ndarray, every: int) -> np.ndarray:
    """Positions `[T, A]` traded only at bars 0, N, 2N, ... and held in between (N = `every`).

    The position held from bar t is the one decided at the last rebalance at or before t, so
    holding stays causal; between rebalances nothing is traded, so nothing is paid.
    """
    if isinstance(every, bool) or not isinstance(every, (int, np.integer)) or every < 1:
        raise ValueError(f"rebalance_every must be a positive integer, got {every!r}")
    pos = np.asarray(positions)
    if every == 1:
        return pos
    last_rebalance = np.arange(pos.shape[0]) // every * every
    return pos[last_rebalance]


def equal_weight(mask: np.ndarray) -> np.ndarray:
    """Long 1 in every active asset `[T, A]`: equal capital weights, held.

    Positions stay constant while the universe does, so after the first date it pays costs only
    when an asset enters or leaves (in the objective's convention positions are per-asset
    targets; the drift of a true buy-and-hold portfolio is not traded or charged).
    """
    return np.asarray(mask, dtype=bool).astype(np.float64)


def time_series_momentum(next_return: np.ndarray, dates_idx: np.ndarray, lookback: int = 60) -> np.ndarray:
    """Sign of each asset's trailing `lookback`-day return, known at the close of each date.

    `next_return [T_full, A]` covers the whole history (row s: the return from s to s+1), and
    `dates_idx [T]` picks the backtest dates in it, so the first backtest dates see the history
    before the block. The signal at date t compounds next_return[t - lookback : t], i.e. the
    return from t - lookback to t; rows >= t are never read. The window is cut at the start of
    the array; unknown (NaN) returns count as 0, so an asset with no history gets position 0.
    """
    r = np.asarray(next_return, dtype=np.float64)
    idx = np.asarray(dates_idx, dtype=np.int64)
    if r.ndim != 2:
        raise ValueError(f"next_return must be [T, A], got shape {r.shape}")
    if lookback < 1:
        raise ValueError(f"lookback must be >= 1, got {lookback}")
    if idx.size and (idx.min() < 0 or idx.max() >= r.shape[0]):
        raise ValueError(f"dates_idx must lie in [0, {r.shape[0]}), got [{idx.min()}, {idx.max()}]")
    # log growth, clipped above -100% so a wiped-out asset stays finite
    growth = np.log1p(np.maximum(np.nan_to_num(r, nan=0.0, posinf=0.0, neginf=0.0), -1.0 + 1e-12))
    cumulative = np.concatenate([np.zeros((1, r.shape[1])), np.cumsum(growth, axis=0)])  # row t: sum of rows < t
    trailing = cumulative[idx] - cumulative[np.maximum(idx - lookback, 0)]
    return np.sign(trailing)


def trailing_volatility(next_return: np.ndarray, dates_idx: np.ndarray, span: int = 60,
                        periods_per_year: float = PERIODS_PER_YEAR) -> np.ndarray:
    """Annualized EWMA volatility `[T, A]` of each asset's per-bar returns known at the close of each
    date in `dates_idx` (rows < t of `next_return`, as `time_series_momentum` reads them).

    NaN until an asset has `span` // 2 returns: a volatility estimate needs some history.
    """
    r = np.nan_to_num(np.asarray(next_return, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    known = np.isfinite(np.asarray(next_return, dtype=np.float64))
    alpha = 2.0 / (span + 1.0)
    variance = np.zeros(r.shape[1])
    weight = np.zeros(r.shape[1])  # debiasing: the EWMA of a constant 1 over the same rows
    count = np.zeros(r.shape[1])
    before = np.empty_like(r)  # row t: the estimate from rows < t
    for t in range(r.shape[0]):
        with np.errstate(invalid="ignore", divide="ignore"):
            before[t] = np.where(count >= span // 2, np.sqrt(variance / weight * periods_per_year), np.nan)
        update = known[t]
        variance = np.where(update, (1 - alpha) * variance + alpha * r[t] ** 2, variance)
        weight = np.where(update, (1 - alpha) * weight + alpha, weight)
        count = count + update
    return before[np.asarray(dates_idx, dtype=np.int64)]


def volatility_scaled(positions: np.ndarray, next_return: np.ndarray, dates_idx: np.ndarray, *,
                      target: float = 0.10, span: int | None = None, cap: float = 1.0,
                      periods_per_year: float = PERIODS_PER_YEAR) -> np.ndarray:
    """`positions [T, A]` scaled per asset to an annualized volatility of `target`, at most `cap`
    (0 while an asset's volatility is not yet estimated). The volatility's EWMA span is about
    three months of bars unless given (60 daily bars)."""
    span = span if span is not None else max(2, round(periods_per_year * VOLATILITY_YEARS))
    vol = trailing_volatility(next_return, dates_idx, span, periods_per_year)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(np.isfinite(vol) & (vol > 0), np.minimum(cap, target / vol), 0.0)
    return np.asarray(positions, dtype=np.float64) * scale


def volatility_targeted(mask: np.ndarray, next_return: np.ndarray, dates_idx: np.ndarray, **scaling: float
                        ) -> np.ndarray:
    """Buy and hold every active asset, each scaled to the target volatility (`volatility_scaled`)."""
    return volatility_scaled(equal_weight(mask), next_return, dates_idx, **scaling)


def scaled_momentum(next_return: np.ndarray, dates_idx: np.ndarray, lookback: int | None = None,
                    periods_per_year: float = PERIODS_PER_YEAR, **scaling: float) -> np.ndarray:
    """Time-series momentum as in Moskowitz, Ooi & Pedersen (2012): the sign of each asset's
    trailing 12-month return (`lookback` bars: a year of them unless given), scaled to a target
    volatility."""
    lookback = lookback if lookback is not None else round(periods_per_year)
    return volatility_scaled(time_series_momentum(next_return, dates_idx, lookback), next_return, dates_idx,
                             periods_per_year=periods_per_year, **scaling)


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge regression of `y [n]` on standardized `x [n, F]`: (mean, scale, coefficients with the
    intercept last). The "is deep learning worth it" baseline: linear, on the same features."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = np.concatenate([(x - mean) / scale, np.ones((len(x), 1))], axis=1)
    penalty = alpha * np.eye(z.shape[1])
    penalty[-1, -1] = 0.0  # the intercept is not shrunk
    return mean, scale, np.linalg.solve(z.T @ z + penalty, z.T @ y)


def ridge_positions(features: np.ndarray, valid: np.ndarray, target: np.ndarray, train_idx: np.ndarray,
                    dates_idx: np.ndarray, alpha: float = 1.0) -> np.ndarray:
    """Positions `[T, A]` on `dates_idx` from a ridge regression of `target [T_full, A]` (e.g. the
    forward return) on the date's features `[T_full, A, F]`, fit on the valid rows of `train_idx`
    only. A prediction becomes a position by dividing by the predictions' standard deviation on the
    training rows and squashing with tanh, so positions are in (-1, 1)."""
    rows = np.asarray(train_idx, dtype=np.int64)
    keep = valid[rows] & np.isfinite(target[rows])
    x_train, y_train = features[rows][keep].astype(np.float64), target[rows][keep].astype(np.float64)
    if len(y_train) < features.shape[-1] + 2:
        return np.zeros((len(dates_idx), features.shape[1]))
    mean, scale, coef = fit_ridge(x_train, y_train, alpha)

    def predict(x: np.ndarray) -> np.ndarray:
        return ((x - mean) / scale) @ coef[:-1] + coef[-1]

    spread = predict(x_train).std()
    if not spread > 0:
        return np.zeros((len(dates_idx), features.shape[1]))
    idx = np.asarray(dates_idx, dtype=np.int64)
    positions = np.tanh(predict(features[idx].astype(np.float64)) / spread)
    return np.where(valid[idx], positions, 0.0)
