"""Forward-looking labels at each date t over the horizon (t, t+h].

A label at t reads the future only through rows t+1..t+h; the thresholds that turn returns into
classes are scaled by trailing volatility known at t. Unknown labels are NaN (floats) or -1 (ints):
an asset not trading at t or t+h, or a horizon that runs past the last date.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantray.data.features import ffill, rolling_mean_std
from quantray.data.panel import Panel
from quantray.errors import BadInput

VOL_WINDOW = 20  # trailing days for an asset's volatility (direction and barrier thresholds)
MARKET_VOL_WINDOW = 60  # trailing days for the market's volatility (regime thresholds)
DIRECTION_K = 0.5  # flat band: |fwd_return| <= K * vol * sqrt(h)
BARRIER_K = 1.0  # triple-barrier distance, in units of vol * sqrt(h)
VOLATILE_K = 1.5  # a horizon is volatile when its realized market vol exceeds K * trailing vol


@dataclass(frozen=True)
class Labels:
    horizon: int
    next_return: np.ndarray  # float64 [T, A]: close[t+1] / close[t] - 1
    fwd_return: np.ndarray  # float64 [T, A]: log close[t+h] / close[t]
    direction: np.ndarray  # int64 [T, A]: 0 down, 1 flat, 2 up, -1 unknown
    barrier: np.ndarray  # int64 [T, A]: 0 lower first, 1 neither (vertical), 2 upper first, -1 unknown
    volatility: np.ndarray  # float64 [T, A]: realized daily vol over (t, t+h]
    volume: np.ndarray  # float64 [T, A]: mean log volume over (t, t+h] minus its trailing mean at t
    regime: np.ndarray  # int64 [T]: 0 down/volatile, 1 calm, 2 up, -1 unknown


def build_labels(panel: Panel, horizon: int) -> Labels:
    if horizon < 1:
        raise BadInput(f"horizon: must be at least 1, got {horizon}")
    close = panel.field("close")
    log_close = np.log(ffill(close))
    ret = np.full_like(log_close, np.nan)
    ret[1:] = log_close[1:] - log_close[:-1]
    known = panel.mask & _shift(panel.mask, horizon, fill=False)  # traded at t and at t+h

    next_return = np.where(panel.mask & _shift(panel.mask, 1, fill=False), _shift(close, 1) / close - 1.0, np.nan)
    path = np.stack([_shift(log_close, k) - log_close for k in range(1, horizon + 1)])  # [h, T, A]
    fwd_return = np.where(known, path[-1], np.nan)
    trailing_vol = rolling_mean_std(ret, VOL_WINDOW)[1]
    trailing_vol[trading_days(panel.mask) <= VOL_WINDOW] = np.nan  # not enough returns yet
    scale = trailing_vol * np.sqrt(horizon)

    future_sq = np.stack([_shift(ret, k) ** 2 for k in range(1, horizon + 1)])
    volatility = np.where(known, np.sqrt(future_sq.mean(axis=0)), np.nan)
    return Labels(
        horizon=horizon,
        next_return=next_return,
        fwd_return=fwd_return,
        direction=_direction(fwd_return, scale),
        barrier=_barrier(path, known, scale),
        volatility=volatility,
        volume=_volume_surprise(panel, horizon, known),
        regime=_regime(ret, panel.mask, horizon),
    )


def trading_days(mask: np.ndarray) -> np.ndarray:
    """Number of traded dates of each asset up to and including t."""
    return np.cumsum(mask, axis=0)


def _shift(x: np.ndarray, k: int, fill: float | bool = np.nan) -> np.ndarray:
    """out[t] = x[t + k] (the value k dates ahead), `fill` past the end."""
    out = np.full_like(x, fill)
    out[:-k or None] = x[k:]
    return out


def _direction(fwd: np.ndarray, scale: np.ndarray) -> np.ndarray:
    threshold = DIRECTION_K * scale
    out = np.where(fwd > threshold, 2, np.where(fwd < -threshold, 0, 1))
    return np.where(np.isfinite(fwd) & np.isfinite(threshold), out, -1).astype(np.int64)


def _barrier(path: np.ndarray, known: np.ndarray, scale: np.ndarray) -> np.ndarray:
    barrier = BARRIER_K * scale
    upper, lower = path >= barrier, path <= -barrier  # [h, T, A]
    h = path.shape[0]
    first_up = np.where(upper.any(axis=0), upper.argmax(axis=0), h)
    first_down = np.where(lower.any(axis=0), lower.argmax(axis=0), h)
    out = np.where(first_up < first_down, 2, np.where(first_down < first_up, 0, 1))
    return np.where(known & np.isfinite(barrier), out, -1).astype(np.int64)


def _volume_surprise(panel: Panel, horizon: int, known: np.ndarray) -> np.ndarray:
    if not panel.has("volume"):
        return np.full(panel.mask.shape, np.nan)
    log_volume = np.log1p(ffill(panel.field("volume")))
    trailing = rolling_mean_std(log_volume, VOL_WINDOW)[0]
    trailing[trading_days(panel.mask) < VOL_WINDOW] = np.nan
    future = np.stack([_shift(log_volume, k) for k in range(1, horizon + 1)]).mean(axis=0)
    return np.where(known, future - trailing, np.nan)


def _regime(ret: np.ndarray, mask: np.ndarray, horizon: int) -> np.ndarray:
    """Regime of the equal-weight market over (t, t+h], judged against its trailing volatility at t."""
    traded = mask & np.isfinite(ret)
    count = traded.sum(axis=1)
    market = np.where(count > 0, np.where(traded, ret, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)
    trailing = rolling_mean_std(market[:, None], MARKET_VOL_WINDOW)[1][:, 0]
    trailing[np.cumsum(np.isfinite(market)) <= MARKET_VOL_WINDOW] = np.nan
    future = np.stack([_shift(market, k) for k in range(1, horizon + 1)])  # [h, T]
    total, realized = future.sum(axis=0), np.sqrt((future ** 2).mean(axis=0))
    threshold = DIRECTION_K * trailing * np.sqrt(horizon)
    out = np.where((total < -threshold) | (realized > VOLATILE_K * trailing), 0, np.where(total > threshold, 2, 1))
    return np.where(np.isfinite(total) & np.isfinite(trailing), out, -1).astype(np.int64)
