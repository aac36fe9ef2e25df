"""A risk model known at every date: what turns a model's views into the positions it trades.

`one_factor` (`data.risk.model`): each asset's return is beta x the market's (the equal-weight
mean of the assets' returns) plus an idiosyncratic part, with exponentially weighted moments
(`data.risk.halflife` bars) of the close-to-close returns up to and including t. The trained
positions are then Σ⁻¹·view (quantray.train.risk), the mean-variance portfolio of the views: long
and short legs hedge each other's market exposure in proportion to their betas, and the market
itself is held in proportion to how calm it is. On the planted-signal market, the oracle's own
expected returns through this model reach 0.81-1.05 of the oracle's Sharpe, against 0.37-0.66 for
the same views without it (`benchmarks/hedging.py`, docs/models.md).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from quantray.config import RiskConfig
from quantray.data.panel import Panel

# below this share of one bar's weight an asset has no moments yet: it gets the date's median
_NO_HISTORY = 1e-9


# the batch keys a risk model adds (`Windows.gather`), named after RiskArrays' fields
RISK_KEYS: tuple[str, ...] = ("beta", "idio_var", "market_var")


@dataclass(frozen=True)
class RiskArrays:
    beta: np.ndarray  # float32 [T, A]: beta to the equal-weight market, known at t
    idio_var: np.ndarray  # float32 [T, A] > 0: idiosyncratic variance per bar
    market_var: np.ndarray  # float32 [T] > 0: the market's variance per bar


def build_risk(panel: Panel, config: RiskConfig) -> RiskArrays | None:
    """The configured risk model of `panel` (None for `none`); row t uses returns up to t only."""
    if config.model == "none":
        return None
    close = panel.field("close")
    returns = np.full(close.shape, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        returns[1:] = close[1:] / close[:-1] - 1.0
    returns[~panel.mask] = np.nan  # an untraded bar has no return (and the next one none either)
    returns[1:][~panel.mask[:-1]] = np.nan
    return one_factor(returns, config.halflife)


def one_factor(returns: np.ndarray, halflife: float) -> RiskArrays:
    """EWMA one-factor moments of simple returns [T, A] (NaN = unknown), bias-corrected by the
    weight seen so far, so an asset's first bars count fully rather than against a zero start."""
    T, A = returns.shape
    decay = 0.5 ** (1.0 / halflife)
    known = np.isfinite(returns)
    with warnings.catch_warnings():  # a date without any return (the first): an all-NaN row
        warnings.simplefilter("ignore", RuntimeWarning)
        market = np.nanmean(returns, axis=1)
    # per asset, over the bars it traded: weight, E[r m], E[r²], E[m²]; and E[m²] over every bar
    moments = np.empty((4, T, A))
    market_var = np.empty(T)
    weight, rm, rr, mm = np.zeros(A), np.zeros(A), np.zeros(A), np.zeros(A)
    weight_m, mm_all = 0.0, 0.0
    for t in range(T):  # the recursion is sequential; what follows from the moments is vectorized below
        m = market[t]
        if np.isfinite(m):
            weight_m, mm_all = decay * weight_m + (1 - decay), decay * mm_all + (1 - decay) * m * m
            seen = known[t]
            r = np.where(seen, returns[t], 0.0)
            step = np.where(seen, 1 - decay, 0.0)
            keep = np.where(seen, decay, 1.0)
            weight, rm, rr, mm = keep * weight + step, keep * rm + step * r * m, keep * rr + step * r * r, \
                keep * mm + step * m * m
        moments[:, t] = weight, rm, rr, mm
        market_var[t] = mm_all / weight_m if weight_m > 0 else np.nan
    weight, rm, rr, mm = moments
    with np.errstate(divide="ignore", invalid="ignore"):
        has = weight > _NO_HISTORY
        beta = np.where(has & (mm > 0), rm / np.where(mm > 0, mm, 1.0), 0.0)
        var = np.where(has, rr / np.where(has, weight, 1.0), np.nan)
        var_m = np.where(has, mm / np.where(has, weight, 1.0), 0.0)
        idio = np.maximum(var - beta * beta * var_m, 1e-3 * var)  # at least a thousandth of the total
    return RiskArrays(beta.astype(np.float32), _positive(idio).astype(np.float32),
                      _positive(market_var[:, None])[:, 0].astype(np.float32))


def _positive(variance: np.ndarray) -> np.ndarray:
    """Variances [T, A] with unknown or zero entries set to the date's median of the known ones
    (1e-4, a 1% daily move, when none is known): the transform divides by them."""
    ok = np.isfinite(variance) & (variance > 0)
    with warnings.catch_warnings():  # a date where none is known: an all-NaN row
        warnings.simplefilter("ignore", RuntimeWarning)
        median = np.nanmedian(np.where(ok, variance, np.nan), axis=1, keepdims=True)
    median = np.where(np.isfinite(median), median, 1e-4)
    return np.where(ok, variance, median)
