"""Performance metrics of per-bar strategy returns, and net returns after trading costs.

Conventions (docs/evaluation.md has the formulas and references):
- a position held at date t earns `next_return[t]`, the simple return from t to t+1 — the
  training objective's convention (quantray.train.losses);
- risk-free rate 0; annualization with `periods_per_year`: 252 (trading days) by default, the
  data's bars per year when the caller knows them (`quantray.data.panel.bars_per_year`: 365 for
  daily 24/7 markets, 8760 for hourly crypto, 1764 for hourly US stocks);
- every metric is a finite float: undefined ratios (zero variance, no drawdown, fewer than two
  periods) are 0.0, and non-finite returns are dropped, so a degenerate strategy never raises
  or warns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERIODS_PER_YEAR = 252
MIN_IC_ASSETS = 3  # a rank correlation over fewer assets is noise
COUNT_KEYS = ("n_periods", "ic_dates")  # metrics that are counts (floats in the dict, shown as ints)
CONSTANT_TOLERANCE = 1e-12  # a std below this share of max |r| is rounding noise of a constant


def performance(
    returns: np.ndarray,
    positions: np.ndarray | None = None,
    asset_returns: np.ndarray | None = None,
    periods_per_year: float = PERIODS_PER_YEAR,
) -> dict[str, float]:
    """Summary statistics of per-period returns `[T]`.

    Keys: `annual_return` (compounded, CAGR), `annual_volatility`, `sharpe`, `sortino`,
    `max_drawdown` (positive fraction of the running peak of the compounded equity curve),
    `calmar`, `hit_rate` (share of winning periods among periods with a non-zero return),
    `n_periods`. With `positions [T, A]`: `turnover` (mean Σ_a |pos[t] - pos[t-1]|, pos[-1] = 0,
    NaN positions count as 0). With `positions` and `asset_returns [T, A]`: `ic` (mean daily
    Spearman correlation between positions[t] and asset_returns[t]) and `ic_dates` (the number
    of dates it averages; dates with fewer than 3 finite assets or no dispersion are skipped).
    """
    r = _finite(returns)
    n = r.size
    out = {
        "annual_return": annual_return(r, periods_per_year),
        "annual_volatility": float(sample_std(r) * np.sqrt(periods_per_year)),
        "sharpe": annualized_sharpe(r, periods_per_year),
        "sortino": sortino_ratio(r, periods_per_year),
        "max_drawdown": max_drawdown(r),
        "calmar": 0.0,
        "hit_rate": hit_rate(r),
        "n_periods": float(n),
    }
    if out["max_drawdown"] > 0.0:
        out["calmar"] = out["annual_return"] / out["max_drawdown"]
    if positions is not None:
        out["turnover"] = turnover(positions)
        if asset_returns is not None:
            out["ic"], out["ic_dates"] = information_coefficient(positions, asset_returns)
    return out


def net_returns(
    positions: np.ndarray,
    asset_returns: np.ndarray,
    mask: np.ndarray | None = None,
    cost_bps: float = 0.0,
) -> np.ndarray:
    """Portfolio return per date `[T]` after linear trading costs.

    p[t] = Σ_a pos[t,a]·r[t,a] / n[t]  −  cost_bps/1e4 · Σ_a |pos[t,a] − pos[t−1,a]| / n[t]

    with `r = asset_returns` the simple return from t to t+1 (`labels.next_return`), n[t] the
    number of active (mask True) assets, at least 1, and pos[−1] = 0 (the first date pays for
    opening its positions). Masked assets count as position 0, so leaving the universe closes
    the position and pays for it. A non-finite return at an active asset earns 0.
    """
    pos, r, active = _aligned(positions, asset_returns, mask)
    n_active = np.maximum(active.sum(axis=1), 1).astype(np.float64)
    gross = (pos * r).sum(axis=1) / n_active
    return gross - cost_bps / 1e4 * _traded(pos) / n_active


def portfolio_weights(positions: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Capital weights `[T, A]` behind `net_returns`: pos[t,a] / n[t], 0 at masked assets.

    Their turnover Σ_a |w[t,a] − w[t−1,a]| is the share of capital traded; it equals the cost
    base of `net_returns` except on dates where the number of active assets changes.
    """
    pos = np.asarray(positions, dtype=np.float64)
    active = np.ones(pos.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if active.shape != pos.shape or pos.ndim != 2:
        raise ValueError(f"mask {active.shape} must match positions {pos.shape}, both [T, A]")
    n_active = np.maximum(active.sum(axis=1, keepdims=True), 1)
    return np.where(active, _zero_non_finite(pos), 0.0) / n_active


def rolling_sharpe(returns: np.ndarray, window: int = 63, periods_per_year: float = PERIODS_PER_YEAR) -> np.ndarray:
    """Annualized Sharpe over each trailing `window` `[T]`: NaN before a full window, 0.0 where the
    window has no variance (non-finite returns count as 0)."""
    r = _zero_non_finite(np.asarray(returns, dtype=np.float64).reshape(-1))
    out = np.full(r.shape, np.nan)
    if window < 2 or r.size < window:
        return out
    windows = np.lib.stride_tricks.sliding_window_view(r, window)  # [T - window + 1, window]
    mean, std = windows.mean(axis=1), windows.std(axis=1, ddof=1)
    varies = std > CONSTANT_TOLERANCE * np.abs(windows).max(axis=1)  # the same test as sample_std
    out[window - 1 :] = np.where(varies, mean / np.where(varies, std, 1.0), 0.0) * np.sqrt(periods_per_year)
    return out


def equity_curve(returns: np.ndarray) -> np.ndarray:
    """Compounded wealth `[T]` starting from 1 before the first period (non-finite returns = 0)."""
    return np.cumprod(1.0 + _zero_non_finite(np.asarray(returns, dtype=np.float64)))


def drawdown(returns: np.ndarray) -> np.ndarray:
    """Drawdown `[T]` of the compounded equity curve, a positive fraction in [0, 1].

    The running peak includes the starting wealth 1, so a first-period loss is a drawdown.
    """
    equity = equity_curve(returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], equity]))[1:]
    return np.clip(1.0 - equity / peak, 0.0, 1.0)


def max_drawdown(returns: np.ndarray) -> float:
    dd = drawdown(returns)
    return float(dd.max()) if dd.size else 0.0


def annual_return(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Compounded annual growth rate; −1.0 once the equity curve reaches zero, 0.0 when empty."""
    r = _finite(returns)
    if r.size == 0:
        return 0.0
    final = float(np.prod(1.0 + r))
    if final <= 0.0:
        return -1.0
    return float(np.expm1(np.log(final) * periods_per_year / r.size))


def annualized_sharpe(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualized mean / sample standard deviation; 0.0 with fewer than 2 periods or no variance."""
    r = _finite(returns)
    std = sample_std(r)
    return float(r.mean() / std * np.sqrt(periods_per_year)) if std > 0.0 else 0.0


def sortino_ratio(returns: np.ndarray, periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """Annualized mean / downside deviation sqrt(mean(min(r, 0)²)); 0.0 when there is no loss."""
    r = _finite(returns)
    if r.size < 2:
        return 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2)))
    return float(r.mean() / downside * np.sqrt(periods_per_year)) if downside > 0.0 else 0.0


def hit_rate(returns: np.ndarray) -> float:
    """Share of periods with r > 0 among periods with r != 0 (flat days are neither); 0.0 if none."""
    r = _finite(returns)
    r = r[r != 0.0]
    return float((r > 0.0).mean()) if r.size else 0.0


def turnover(positions: np.ndarray) -> float:
    """Mean over dates of Σ_a |pos[t,a] − pos[t−1,a]| with pos[−1] = 0 (NaN positions = 0)."""
    pos = _zero_non_finite(np.asarray(positions, dtype=np.float64))
    if pos.ndim != 2 or pos.shape[0] == 0:
        return 0.0
    return float(_traded(pos).mean())


def information_coefficient(positions: np.ndarray, asset_returns: np.ndarray) -> tuple[float, float]:
    """(mean daily Spearman rank correlation, number of dates used), ties ranked by their average.

    Only assets where both values are finite enter a date; dates with fewer than 3 of them or
    with all positions (or all returns) tied are skipped. (0.0, 0.0) when no date qualifies.
    """
    pos = np.asarray(positions, dtype=np.float64)
    ret = np.asarray(asset_returns, dtype=np.float64)
    if pos.shape != ret.shape or pos.ndim != 2:
        raise ValueError(f"positions {pos.shape} and asset_returns {ret.shape} must both be [T, A]")
    both = np.isfinite(pos) & np.isfinite(ret)
    # pandas ranks each row with NaN left out and ties averaged: Spearman = Pearson of the ranks
    rank_pos = pd.DataFrame(np.where(both, pos, np.nan)).rank(axis=1).to_numpy()
    rank_ret = pd.DataFrame(np.where(both, ret, np.nan)).rank(axis=1).to_numpy()
    counts = both.sum(axis=1)
    usable = counts >= MIN_IC_ASSETS
    rp = np.where(both, rank_pos - _row_nanmean(rank_pos)[:, None], 0.0)
    rr = np.where(both, rank_ret - _row_nanmean(rank_ret)[:, None], 0.0)
    cov = (rp * rr).sum(axis=1)
    scale = np.sqrt((rp**2).sum(axis=1) * (rr**2).sum(axis=1))
    usable &= scale > 1e-12
    if not usable.any():
        return 0.0, 0.0
    return float(np.mean(cov[usable] / scale[usable])), float(usable.sum())


def sample_std(r: np.ndarray) -> float:
    """Sample standard deviation of finite `r`; 0.0 below 2 periods or for a constant series
    (whose computed std is rounding noise, which would make its Sharpe astronomically large)."""
    if r.size < 2:
        return 0.0
    std = float(r.std(ddof=1))
    return std if std > CONSTANT_TOLERANCE * float(np.abs(r).max()) else 0.0


def _aligned(
    positions: np.ndarray, asset_returns: np.ndarray, mask: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions and returns as float64 [T, A] with masked assets and unknown returns set to 0."""
    pos = np.asarray(positions, dtype=np.float64)
    r = np.asarray(asset_returns, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != r.shape:
        raise ValueError(f"positions {pos.shape} and asset_returns {r.shape} must both be [T, A]")
    active = np.ones(pos.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if active.shape != pos.shape:
        raise ValueError(f"mask {active.shape} must match positions {pos.shape}")
    if not np.isfinite(pos[active]).all():
        raise ValueError("positions hold NaN or inf at active (mask True) assets")
    pos = np.where(active, pos, 0.0)
    r = np.where(active & np.isfinite(r), r, 0.0)
    return pos, r, active


def _finite(returns: np.ndarray) -> np.ndarray:
    r = np.asarray(returns, dtype=np.float64).reshape(-1)
    return r[np.isfinite(r)]


def _row_nanmean(x: np.ndarray) -> np.ndarray:
    counts = np.isfinite(x).sum(axis=1)
    return np.where(counts > 0, np.nansum(x, axis=1) / np.maximum(counts, 1), 0.0)


def _traded(pos: np.ndarray) -> np.ndarray:
    """Σ_a |pos[t,a] − pos[t−1,a]| per date `[T]`, starting from flat (pos[−1] = 0)."""
    return np.abs(np.diff(pos, axis=0, prepend=np.zeros((1, pos.shape[1])))).sum(axis=1)


def _zero_non_finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)


# ---------------------------------------------------------------- classification and lead-lag


def confusion_matrix(predicted: np.ndarray, actual: np.ndarray, n_classes: int = 3) -> np.ndarray:
    """Counts `[n_classes, n_classes]`, row = actual class, column = predicted; labels < 0
    (unknown) are left out."""
    p = np.asarray(predicted, dtype=np.int64).reshape(-1)
    a = np.asarray(actual, dtype=np.int64).reshape(-1)
    if p.shape != a.shape:
        raise ValueError(f"predicted {np.shape(predicted)} and actual {np.shape(actual)} differ")
    known = (a >= 0) & (p >= 0)
    if (a[known] >= n_classes).any() or (p[known] >= n_classes).any():
        raise ValueError(f"class labels must lie in 0..{n_classes - 1}")
    return np.bincount(a[known] * n_classes + p[known], minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_metrics(confusion: np.ndarray) -> dict[str, float]:
    """`accuracy`, `macro_f1` (the mean over classes of F1; a class never predicted nor present
    scores 0) and `n` of a confusion matrix (row = actual)."""
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum()
    if n == 0:
        return {"accuracy": 0.0, "macro_f1": 0.0, "n": 0.0}
    hits = np.diag(c)
    support, predicted = c.sum(axis=1), c.sum(axis=0)
    denominator = support + predicted  # F1 = 2·TP / (2·TP + FP + FN) = 2·TP / (support + predicted)
    f1 = np.divide(2 * hits, denominator, out=np.zeros_like(hits), where=denominator > 0)
    return {"accuracy": float(hits.sum() / n), "macro_f1": float(f1.mean()), "n": float(n)}


def lagged_cross_correlations(returns: np.ndarray, max_lag: int) -> np.ndarray:
    """`C [A, A, max_lag + 1]`: C[i, j, k] = corr(r_i[t], r_j[t − k]), how asset j's return k bars
    earlier goes with asset i's now (j leads i at k > 0). Pearson over the dates where both are
    finite; 0.0 where fewer than 3 such dates or no variance."""
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns must be [T, A], got shape {r.shape}")
    if max_lag < 0:
        raise ValueError(f"max_lag must be >= 0, got {max_lag}")
    T, A = r.shape
    out = np.zeros((A, A, max_lag + 1))
    for k in range(min(max_lag, T - 1) + 1):
        now, before = r[k:], r[: T - k]  # row t of `now` is date t + k, of `before` date t
        m_now, m_before = np.isfinite(now).astype(np.float64), np.isfinite(before).astype(np.float64)
        x, y = np.nan_to_num(now) * m_now, np.nan_to_num(before) * m_before
        # pairwise sums over the dates where both i (now) and j (before) are finite, as [A, A] products
        count = m_now.T @ m_before
        with np.errstate(invalid="ignore", divide="ignore"):
            mx, my = (x.T @ m_before) / count, (m_now.T @ y) / count
            cov = (x.T @ y) / count - mx * my
            vx = ((x * x).T @ m_before) / count - mx * mx
            vy = (m_now.T @ (y * y)) / count - my * my
            corr = cov / np.sqrt(vx * vy)
        ok = (count >= 3) & (vx > 1e-20) & (vy > 1e-20) & np.isfinite(corr)
        out[:, :, k] = np.where(ok, np.clip(corr, -1.0, 1.0), 0.0)
    return out
