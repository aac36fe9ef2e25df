"""Causal per-asset features over a Panel, vectorized over [T, A].

Every value at date t depends only on panel rows at or before t: rolling statistics use trailing
windows (prefix sums, pandas' recursive EMAs, trailing sliding windows), and the default
normalization is itself a trailing statistic. Prices are forward-filled over an asset's gaps so a
return spans the gap; the gap day itself is marked invalid. Calendar features are functions of
the date alone: the same for every asset, so they are neither normalized nor given a
cross-sectional deviation (it would be 0).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from quantray.config import FeatureConfig
from quantray.data.panel import Panel
from quantray.errors import BadInput

NORMALIZATIONS: tuple[str, ...] = ("rolling_robust", "rolling_zscore", "train_robust", "train_zscore", "train_pooled",
                                   "none")
ROBUST_REFRESH = 21  # days between refreshes of the rolling median/IQR (sorting 252-day windows daily is slow)
MOMENTUM_VOL_SPAN = 60  # days of the EWMA volatility that scales momentum
IQR_TO_STD = 1.349  # IQR of a unit normal: robust scales read like z-scores
_EPS = 1e-12
_AMIHUD_FLOOR = 1e-30  # a window without any price change has illiquidity 0; its log is this floor
_CS_K = 3.0 - 2.0 * np.sqrt(2.0)  # the denominator of alpha in Corwin & Schultz (2012)


@dataclass(frozen=True)
class Features:
    values: np.ndarray  # float32 [T, A, F]; 0 where not valid
    names: tuple[str, ...]  # [F]
    valid: np.ndarray  # bool [T, A]: traded, enough history, normalization statistics available
    signed: np.ndarray  # bool [F]: zero means no move (returns, trends); train_* scalers keep it zero


@dataclass(frozen=True)
class Scaler:
    """Per-asset, per-feature statistics fit on training dates (the train_* normalizations)."""

    method: str  # "zscore" or "robust"
    center: np.ndarray  # float64 [A, F]
    scale: np.ndarray  # float64 [A, F]
    clip: float


@dataclass(frozen=True)
class _Inputs:
    """Series shared by the feature groups; other fields are forward-filled when a group asks."""

    panel: Panel
    fill_rows: np.ndarray  # int64 [T, A]: the row holding the last traded value at or before t
    log_close: np.ndarray  # float64 [T, A], forward-filled over gaps
    ret: np.ndarray  # log return t-1 -> t (NaN on an asset's first date)

    def field(self, name: str) -> np.ndarray:
        """A panel field, forward-filled over gaps (float64 [T, A])."""
        return np.take_along_axis(self.panel.field(name), self.fill_rows, axis=0)


@dataclass(frozen=True)
class _Group:
    needs: tuple[str, ...]  # panel fields the group needs
    names: Callable[[FeatureConfig], tuple[str, ...]]
    build: Callable[[_Inputs, FeatureConfig], list[tuple[np.ndarray, int]]]  # ([T, A], warm-up) per name
    per_asset: bool = True  # False: a function of the date alone, kept raw and without a `_cs` column
    # True: 0 means "no move" (a return, an average of returns, a trend). The train_* scalers scale
    # it without moving its zero: its median over the training years is the drift of those years,
    # and subtracting it would bet against that drift ever after.
    signed: bool = False


def feature_names(cfg: FeatureConfig, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The feature columns `build_features` makes from a panel with these fields."""
    return tuple(name for group in _groups(cfg, fields) for name in GROUPS[group].names(cfg))


def build_features(panel: Panel, cfg: FeatureConfig = FeatureConfig()) -> Features:
    """Compute the configured features; groups needing a missing field are dropped from `names`."""
    _check_config(cfg)
    names = feature_names(cfg, panel.fields)
    if not names:
        raise BadInput(f"features.names: none of {', '.join(cfg.names)} can be built from the fields "
                       f"{', '.join(panel.fields)}")
    groups = _groups(cfg, panel.fields)
    per_asset = np.array([GROUPS[g].per_asset for g in groups for _ in GROUPS[g].names(cfg)])
    signed = np.array([GROUPS[g].signed for g in groups for _ in GROUPS[g].names(cfg)])
    inputs = _inputs(panel)
    raw = np.empty((*panel.mask.shape, len(names)), dtype=np.float32)
    j, warmup = 0, 0
    for group in groups:  # one group's float64 temporaries alive at a time
        for column, group_warmup in GROUPS[group].build(inputs, cfg):
            raw[:, :, j] = column
            j, warmup = j + 1, max(warmup, group_warmup)
    del inputs
    valid = panel.mask & (trading_age(panel.mask) >= warmup) & np.isfinite(raw).all(axis=2)
    if cfg.normalization.startswith("rolling_"):
        values, has_stats = _rolling_normalize(raw, valid, cfg, per_asset)
        valid = valid & has_stats
    else:
        values = raw  # "none", or train_* scaled later by fit_scaler/apply_scaler
    values[~valid] = 0.0
    np.nan_to_num(values, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if cfg.cross_sectional:
        # rolling_* values are clipped already, so only the new half needs it; train_* scalers
        # clip later, and "none" never does
        clip = cfg.clip if cfg.normalization.startswith("rolling_") else None
        values, names = _with_cross_sectional(values, valid, names, clip, per_asset)
        signed = np.concatenate([signed, signed[per_asset]])  # a deviation is signed as its feature is
    return Features(values, names, valid, signed)


def _with_cross_sectional(values: np.ndarray, valid: np.ndarray, names: tuple[str, ...],
                          clip: float | None, per_asset: np.ndarray) -> tuple[np.ndarray, tuple[str, ...]]:
    """Append each asset-specific feature's deviation from its mean over the valid assets of the date.

    A per-asset model then sees where an asset stands against the others (relative momentum,
    relative volatility) without cross-asset layers, and positions built on it are hedged against
    moves common to all assets. Same-date data only, so causality is kept. Features of the date
    alone (calendar) get none: their deviation is 0.
    """
    cols = np.flatnonzero(per_asset)
    own = values if len(cols) == values.shape[2] else values[:, :, cols]  # no copy in the usual case
    count = valid.sum(axis=1, keepdims=True)  # [T, 1]
    mean = own.sum(axis=1, keepdims=True) / np.maximum(count, 1)[..., None]  # invalid rows are 0
    deviation = np.where(valid[..., None], own - mean, 0.0).astype(np.float32)
    if clip is not None:
        np.clip(deviation, -clip, clip, out=deviation)
    return np.concatenate([values, deviation], axis=2), names + tuple(f"{names[j]}_cs" for j in cols)


def _date_only(names: tuple[str, ...]) -> np.ndarray:
    """bool [F]: which columns are functions of the date alone (their names do not depend on config)."""
    fixed = {n for g in GROUPS.values() if not g.per_asset for n in g.names(FeatureConfig())}
    return np.array([n in fixed for n in names], dtype=bool)


def _groups(cfg: FeatureConfig, fields: tuple[str, ...]) -> list[str]:
    return [g for g in cfg.names if g in GROUPS and all(f in fields for f in GROUPS[g].needs)]


def fit_scaler(features: Features, train_dates_idx: np.ndarray, method: str = "robust",
               clip: float = 5.0) -> Scaler:
    """Statistics from the valid rows at `train_dates_idx` only: per asset (`robust`, `zscore`), or
    robust ones over all assets' rows together (`pooled`), which shift every asset alike and so
    keep an asset's trend over the training years in its features. Signed features
    (`Features.signed`) are scaled about zero, not centered."""
    if method not in ("robust", "zscore", "pooled"):
        raise ValueError(f"unknown scaler method {method!r}")
    rows = features.values[train_dates_idx].astype(np.float64)  # [n, A, F]
    rows[~features.valid[train_dates_idx]] = np.nan
    with warnings.catch_warnings():  # all-NaN slices: assets without a valid training row
        warnings.simplefilter("ignore", RuntimeWarning)
        if method == "zscore":
            center, scale = np.nanmean(rows, axis=0), np.nanstd(rows, axis=0, ddof=1)
        else:
            pooled = rows.reshape(-1, 1, rows.shape[2]) if method == "pooled" else rows
            q25, center, q75 = np.nanpercentile(pooled, [25, 50, 75], axis=0)
            scale = (q75 - q25) / IQR_TO_STD
    center, scale = np.broadcast_to(center, rows.shape[1:]).copy(), np.broadcast_to(scale, rows.shape[1:]).copy()
    center = np.where(np.isfinite(center), center, 0.0)
    scale = np.where(np.isfinite(scale) & (scale > _EPS), scale, 1.0)
    fixed = _date_only(features.names)  # calendar columns pass through unscaled
    center[:, fixed], scale[:, fixed] = 0.0, 1.0
    center[:, features.signed] = 0.0
    return Scaler(method, center, scale, clip)


def apply_scaler(features: Features, scaler: Scaler) -> Features:
    """Scale with fitted statistics, clip, and zero the invalid rows (a new Features)."""
    values = (features.values - scaler.center[None].astype(np.float32)) / scaler.scale[None].astype(np.float32)
    np.clip(values, -scaler.clip, scaler.clip, out=values)
    values[~features.valid] = 0.0
    return Features(values.astype(np.float32, copy=False), features.names, features.valid, features.signed)


# --- inputs -----------------------------------------------------------------------------------

def _inputs(panel: Panel) -> _Inputs:
    rows = fill_rows(panel.mask)
    log_close = np.log(np.take_along_axis(panel.field("close"), rows, axis=0))
    ret = np.full_like(log_close, np.nan)
    ret[1:] = log_close[1:] - log_close[:-1]
    return _Inputs(panel, rows, log_close, ret)


def fill_rows(mask: np.ndarray) -> np.ndarray:
    """For each (t, a), the last row <= t where `mask` holds (0 before the first; causal)."""
    rows = np.where(mask, np.arange(mask.shape[0])[:, None], 0)
    np.maximum.accumulate(rows, axis=0, out=rows)
    return rows


def ffill(x: np.ndarray) -> np.ndarray:
    """Forward-fill NaN along axis 0 (causal: a value at t comes from some row <= t)."""
    return np.take_along_axis(x, fill_rows(~np.isnan(x)), axis=0)


def trading_age(mask: np.ndarray) -> np.ndarray:
    """Dates since each asset's first traded date (-1 before it)."""
    started = np.maximum.accumulate(mask, axis=0)
    return np.cumsum(started, axis=0) - 1


# --- rolling helpers (prefix sums: a value at t is a difference of sums over rows <= t) ---------

def rolling_sum(x: np.ndarray, window: int) -> np.ndarray:
    s = np.cumsum(np.nan_to_num(x), axis=0)
    out = s.copy()
    out[window:] -= s[:-window]
    return out


def rolling_mean_std(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    mean = rolling_sum(x, window) / window
    sq = rolling_sum(x * x, window) / window
    var = np.maximum(sq - mean * mean, 0.0) * window / (window - 1)
    return mean, np.sqrt(var)


def rolling_nanmean(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the finite values among the last `window` rows, and their count (mean NaN at count 0)."""
    ok = np.isfinite(x)
    n = rolling_sum(ok.astype(np.float64), window)
    total = rolling_sum(np.where(ok, x, 0.0), window)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, total / n, np.nan), n


def _enough(window: int) -> int:
    """Observations a microstructure window needs: at least half of it (gaps and zero volume drop days)."""
    return max(2, (window + 1) // 2)


def _ema(x: np.ndarray, alpha: float) -> np.ndarray:
    # pandas' recursive EMA in C; starts at each asset's first non-NaN value.
    return pd.DataFrame(x).ewm(alpha=alpha, adjust=False).mean().to_numpy()


# --- feature groups: each returns ([T, A] float64, warm-up dates) per name, in names order ---------

def _log_return(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    return [(i.ret, 1)]


def _pct_change(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    return [(np.expm1(i.ret), 1)]  # close[t] / close[t-1] - 1


def _intraday_return(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    return [(i.log_close - np.log(i.field("open")), 0)]


def _overnight_return(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    gap = np.full_like(i.log_close, np.nan)
    gap[1:] = np.log(i.field("open")[1:]) - i.log_close[:-1]
    return [(gap, 1)]


def _range(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    return [(np.log(i.field("high") / i.field("low")), 0)]


def _mean_return(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    return [(rolling_mean_std(i.ret, w)[0], w) for w in cfg.windows]


def _volatility(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    return [(rolling_mean_std(i.ret, w)[1], w) for w in cfg.windows]


def _ewma_volatility(i: _Inputs) -> np.ndarray:
    """The daily volatility at t, an EWMA (span MOMENTUM_VOL_SPAN) of squared log returns up to t."""
    return np.sqrt(_ema(i.ret * i.ret, 2.0 / (MOMENTUM_VOL_SPAN + 1)))


def _momentum(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # Volatility-scaled trailing returns (Lim, Zohren & Roberts 2019): the k-day log return over
    # sigma * sqrt(k), sigma an exponentially weighted daily volatility (span 60) known at t, so one
    # unit means "one standard deviation of a k-day move" on every asset and in every regime.
    sigma = _ewma_volatility(i)
    out = []
    for k in cfg.momentum_windows:
        trailing = np.full_like(i.log_close, np.nan)
        trailing[k:] = i.log_close[k:] - i.log_close[:-k]
        out.append((trailing / np.maximum(sigma * np.sqrt(k), _EPS), max(k, MOMENTUM_VOL_SPAN)))
    return out


def _trend(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # An exponentially weighted trend (Baz et al. 2015 build theirs from EWMAs): the EWMA of daily
    # returns in units of the volatility known the day before, scaled so that it has unit variance
    # when those are white noise. Unlike a k-day window, it weighs last week more than last quarter
    # and does not jump when a large day leaves the window.
    sigma = _ewma_volatility(i)
    # Zero before an asset's first return, so each EWMA starts from 0 at its inception (pandas would
    # seed it with the first day's value at full weight, a distortion lasting several half-lives).
    scaled = np.zeros_like(i.ret)
    scaled[1:] = np.nan_to_num(i.ret[1:] / np.maximum(sigma[:-1], _EPS))
    out = []
    for halflife in cfg.trend_halflives:
        decay = 0.5 ** (1.0 / halflife)
        trend = _ema(scaled, 1.0 - decay) * np.sqrt(1.0 - decay ** 2) / (1.0 - decay)
        # after one half-life its standard deviation is already 0.87 of the steady state's
        out.append((trend, max(MOMENTUM_VOL_SPAN, halflife) + 1))
    return out


def _volume_z(log_volume: np.ndarray, window: int) -> np.ndarray:
    mean, std = rolling_mean_std(log_volume, window)
    return (log_volume - mean) / np.maximum(std, 1e-6)


def _volume_zscores(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    lv = np.log1p(i.field("volume"))
    return [(_volume_z(lv, w), w) for w in cfg.volume_windows]


def _return_x_volume(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    w = cfg.volume_windows[0]
    return [(i.ret * _volume_z(np.log1p(i.field("volume")), w), w)]


def _rsi(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # Wilder's RSI rescaled to [-1, 1]: (RSI - 50) / 50 = (gain - loss) / (gain + loss).
    n = cfg.rsi_window
    gain = _ema(np.where(np.isnan(i.ret), np.nan, np.maximum(i.ret, 0.0)), 1.0 / n)
    loss = _ema(np.where(np.isnan(i.ret), np.nan, np.maximum(-i.ret, 0.0)), 1.0 / n)
    total = gain + loss
    rsi = np.divide(gain - loss, total, out=np.zeros_like(total), where=total > 0)
    return [(np.where(np.isnan(total), np.nan, rsi), n + 1)]


def _macd(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # On log prices, so the lines are scale-free: percent above the slow trend.
    fast, slow, signal = cfg.macd
    line = _ema(i.log_close, 2.0 / (fast + 1)) - _ema(i.log_close, 2.0 / (slow + 1))
    hist = line - _ema(line, 2.0 / (signal + 1))
    return [(line, slow), (hist, slow + signal)]


def _previous_traded(i: _Inputs, x: np.ndarray) -> np.ndarray:
    """x at each asset's last traded row strictly before t (NaN where there is none)."""
    rows = np.zeros_like(i.fill_rows)
    rows[1:] = i.fill_rows[:-1]
    started = np.zeros_like(i.panel.mask)
    started[1:] = np.maximum.accumulate(i.panel.mask, axis=0)[:-1]
    return np.where(started, np.take_along_axis(x, rows, axis=0), np.nan)


def _amihud(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # Amihud (2002): |return| per dollar traded, averaged over the traded days of the window with
    # volume (a day without either says nothing about price impact). Log-scaled: it spans orders of
    # magnitude across assets and decades, and the log makes it free of the price and volume units.
    w = cfg.amihud_window
    dollar_volume = i.panel.field("close") * i.panel.field("volume")  # NaN where not traded
    with np.errstate(invalid="ignore", divide="ignore"):
        impact = np.where(dollar_volume > 0, np.abs(np.expm1(i.ret)) / dollar_volume, np.nan)
    mean, n = rolling_nanmean(impact, w)
    return [(np.where(n >= _enough(w), np.log(np.maximum(mean, _AMIHUD_FLOOR)), np.nan), w)]


def corwin_schultz_spread(high: np.ndarray, low: np.ndarray, prev_high: np.ndarray, prev_low: np.ndarray,
                          prev_close: np.ndarray) -> np.ndarray:
    """Corwin & Schultz (2012) spread from two consecutive daily bars, negative estimates set to 0.

    A two-day range holds twice the variance of a one-day range but the spread only once, so the
    two together separate them. The second bar is first shifted by any overnight gap (its low
    above, or its high below, the first close), as in the paper, so a gap does not read as spread.
    """
    shift = np.maximum(prev_close - high, 0.0) - np.maximum(low - prev_close, 0.0)
    high, low = high + shift, low + shift
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = np.log(prev_high / prev_low) ** 2 + np.log(high / low) ** 2
        gamma = np.log(np.maximum(prev_high, high) / np.minimum(prev_low, low)) ** 2
        alpha = (np.sqrt(2.0 * beta) - np.sqrt(beta)) / _CS_K - np.sqrt(gamma / _CS_K)
    spread = 2.0 * np.expm1(alpha) / (1.0 + np.exp(alpha))
    return np.where(np.isnan(spread), np.nan, np.maximum(spread, 0.0))


def _corwin_schultz(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    w = cfg.spread_window
    high, low, close = (i.panel.field(f) for f in ("high", "low", "close"))  # NaN where not traded
    spread = corwin_schultz_spread(high, low, *(_previous_traded(i, x) for x in (high, low, close)))
    mean, n = rolling_nanmean(spread, w)
    return [(np.where(n >= _enough(w), mean, np.nan), w)]


def _roll_spread(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # Roll (1984): bid-ask bounce makes consecutive price changes negatively correlated, with
    # cov(dp_t, dp_t-1) = -s^2 / 4. On log prices s is a fraction of the price. A positive
    # covariance (trend, no visible bounce) gives 0. Pairs of consecutive traded days only.
    w = cfg.roll_window
    dp = np.where(i.panel.mask, i.ret, np.nan)
    lag = _previous_traded(i, dp)
    ok = np.isfinite(dp) & np.isfinite(lag)
    x, y = np.where(ok, dp, 0.0), np.where(ok, lag, 0.0)
    n = rolling_sum(ok.astype(np.float64), w)
    with np.errstate(invalid="ignore", divide="ignore"):
        cov = (rolling_sum(x * y, w) - rolling_sum(x, w) * rolling_sum(y, w) / n) / (n - 1)
    spread = 2.0 * np.sqrt(np.maximum(-cov, 0.0))
    return [(np.where(n >= _enough(w), spread, np.nan), w + 1)]


def _close_location(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    # Where the close sits in the day's range: 1 at the high, -1 at the low, 0 when there is no range.
    high, low, close = (i.field(f) for f in ("high", "low", "close"))
    span = high - low
    clv = np.divide((close - low) - (high - close), span, out=np.zeros_like(span), where=span > 0)
    return [(np.where(np.isnan(span), np.nan, clv), 0)]


def _cyclic(position: np.ndarray, period: int, shape: tuple[int, int]) -> list[tuple[np.ndarray, int]]:
    """sin and cos of a position in a cycle, so the last step of a cycle sits next to the first."""
    angle = 2.0 * np.pi * position / period
    return [(np.broadcast_to(np.sin(angle)[:, None], shape), 0), (np.broadcast_to(np.cos(angle)[:, None], shape), 0)]


def _day_of_week(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    days = i.panel.dates.astype("datetime64[D]").astype(np.int64)
    return _cyclic((days + 3) % 7, 7, i.log_close.shape)  # 1970-01-01 was a Thursday; Monday is 0


def _month_of_year(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    months = i.panel.dates.astype("datetime64[M]").astype(np.int64)
    return _cyclic(months % 12, 12, i.log_close.shape)  # January is 0


def _wavelet_names(cfg: FeatureConfig) -> tuple[str, ...]:
    L = cfg.wavelet_levels  # pywt.wavedec's order: approximation_L, detail_L, ..., detail_1
    return (f"wavelet_a{L}", *(f"wavelet_d{L - k}" for k in range(L)))


def _wavelet(i: _Inputs, cfg: FeatureConfig) -> list[tuple[np.ndarray, int]]:
    """Log energy per decomposition level of the returns in the trailing `wavelet_window` days."""
    import pywt

    W, L = cfg.wavelet_window, cfg.wavelet_levels
    T, A = i.ret.shape
    out = np.full((L + 1, T, A), np.nan, dtype=np.float32)
    if T >= W:
        windows = sliding_window_view(np.nan_to_num(i.ret), W, axis=0)  # [T-W+1, A, W], a view
        chunk = max(1, 2 ** 16 // max(1, A * W))  # bounds the copies pywt makes
        for start in range(0, windows.shape[0], chunk):  # chunks of dates, not dates
            coeffs = pywt.wavedec(windows[start:start + chunk], cfg.wavelet, level=L, axis=-1)
            rows = slice(W - 1 + start, W - 1 + start + coeffs[0].shape[0])
            for level, c in enumerate(coeffs):
                out[level, rows] = np.log(np.mean(c * c, axis=-1) + _EPS)
    return [(out[k], W) for k in range(L + 1)]


GROUPS: dict[str, _Group] = {
    "log_return": _Group(("close",), lambda c: ("log_return",), _log_return, signed=True),
    "intraday_return": _Group(("open", "close"), lambda c: ("intraday_return",), _intraday_return, signed=True),
    "overnight_return": _Group(("open", "close"), lambda c: ("overnight_return",), _overnight_return, signed=True),
    "range": _Group(("high", "low"), lambda c: ("range",), _range),
    "mean_return": _Group(("close",), lambda c: tuple(f"mean_return_{w}" for w in c.windows), _mean_return,
                          signed=True),
    "momentum": _Group(("close",), lambda c: tuple(f"momentum_{k}" for k in c.momentum_windows), _momentum,
                       signed=True),
    "trend": _Group(("close",), lambda c: tuple(f"trend_{h}" for h in c.trend_halflives), _trend, signed=True),
    "volatility": _Group(("close",), lambda c: tuple(f"volatility_{w}" for w in c.windows), _volatility),
    "volume_z": _Group(("volume",), lambda c: tuple(f"volume_z_{w}" for w in c.volume_windows), _volume_zscores),
    "return_x_volume": _Group(("close", "volume"), lambda c: ("return_x_volume",), _return_x_volume, signed=True),
    "rsi": _Group(("close",), lambda c: (f"rsi_{c.rsi_window}",), _rsi),
    "macd": _Group(("close",), lambda c: ("macd", "macd_hist"), _macd, signed=True),
    "wavelet": _Group(("close",), _wavelet_names, _wavelet),
    # opt-in: not in DEFAULT_FEATURES
    "pct_change": _Group(("close",), lambda c: ("pct_change",), _pct_change, signed=True),
    "amihud": _Group(("close", "volume"), lambda c: (f"amihud_{c.amihud_window}",), _amihud),
    "corwin_schultz": _Group(("high", "low", "close"), lambda c: (f"corwin_schultz_{c.spread_window}",),
                             _corwin_schultz),
    "roll_spread": _Group(("close",), lambda c: (f"roll_spread_{c.roll_window}",), _roll_spread),
    "clv": _Group(("high", "low", "close"), lambda c: ("clv",), _close_location, signed=True),
    "day_of_week": _Group((), lambda c: ("day_of_week_sin", "day_of_week_cos"), _day_of_week, per_asset=False),
    "month_of_year": _Group((), lambda c: ("month_of_year_sin", "month_of_year_cos"), _month_of_year,
                            per_asset=False),
}


def _check_config(cfg: FeatureConfig) -> None:
    import pywt

    for name in cfg.names:
        if name not in GROUPS:
            raise BadInput(f"features.names: unknown feature '{name}' (expected: {', '.join(GROUPS)})")
    if cfg.normalization not in NORMALIZATIONS:
        raise BadInput(f"features.normalization: unknown '{cfg.normalization}' "
                       f"(expected: {', '.join(NORMALIZATIONS)})")
    for key, windows in (("windows", cfg.windows), ("volume_windows", cfg.volume_windows)):
        if not windows or any(w < 2 for w in windows):
            raise BadInput(f"features.{key}: windows must be at least 2, got {list(windows)}")
    if "momentum" in cfg.names and (not cfg.momentum_windows or min(cfg.momentum_windows) < 1):
        raise BadInput(f"features.momentum_windows: need at least one window of 1 day or more, "
                       f"got {list(cfg.momentum_windows)}")
    if "trend" in cfg.names and (not cfg.trend_halflives or min(cfg.trend_halflives) < 1):
        raise BadInput(f"features.trend_halflives: need at least one half-life of 1 day or more, "
                       f"got {list(cfg.trend_halflives)}")
    for group, key, least in (("amihud", "amihud_window", 2), ("corwin_schultz", "spread_window", 2),
                              ("roll_spread", "roll_window", 3)):
        if group in cfg.names and getattr(cfg, key) < least:
            raise BadInput(f"features.{key}: must be at least {least} days, got {getattr(cfg, key)}")
    if cfg.rsi_window < 1 or min(cfg.macd) < 1 or cfg.norm_window < 2 or cfg.clip <= 0:
        raise BadInput("features: rsi_window, macd and clip must be positive, norm_window at least 2")
    if cfg.wavelet not in pywt.wavelist(kind="discrete"):
        raise BadInput(f"features.wavelet: unknown discrete wavelet '{cfg.wavelet}'")
    max_level = pywt.dwt_max_level(cfg.wavelet_window, cfg.wavelet)
    if not 1 <= cfg.wavelet_levels <= max_level:
        raise BadInput(f"features.wavelet_levels: {cfg.wavelet_levels} is not in 1..{max_level} for a "
                       f"{cfg.wavelet_window}-day window of '{cfg.wavelet}'")


# --- normalization ----------------------------------------------------------------------------

def _min_periods(window: int) -> int:
    return max(2, window // 4)


def _rolling_normalize(raw: np.ndarray, valid: np.ndarray, cfg: FeatureConfig, per_asset: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Scale each asset-specific feature by trailing statistics over `norm_window` valid rows.

    Returns (values, has_stats). Calendar columns stay raw: centring month_of_year on its trailing
    median would turn "which month" into "which month relative to the last norm_window dates".
    """
    W, min_periods = cfg.norm_window, _min_periods(cfg.norm_window)
    robust = cfg.normalization == "rolling_robust"
    out = raw  # scaled in place, one feature at a time, to keep memory at one extra [T, A] per step
    has_stats = np.ones(valid.shape, dtype=bool)
    for j in np.flatnonzero(per_asset):
        x = np.where(valid, raw[:, :, j], np.nan)
        center, scale, count = (_rolling_robust_stats if robust else _rolling_zscore_stats)(x, W)
        has_stats &= count >= min_periods
        z = (x - center) / np.maximum(scale, 1e-8)
        out[:, :, j] = np.clip(z, -cfg.clip, cfg.clip)
    return out, has_stats


def _rolling_zscore_stats(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ok = ~np.isnan(x)
    n = rolling_sum(ok.astype(np.float64), window)
    x0 = np.where(ok, x, 0.0).astype(np.float64)
    with np.errstate(all="ignore"):
        mean = rolling_sum(x0, window) / n
        var = (rolling_sum(x0 * x0, window) - n * mean * mean) / (n - 1)
    return mean, np.sqrt(np.maximum(var, 0.0)), n


def _rolling_robust_stats(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median and IQR of the trailing window, refreshed every ROBUST_REFRESH dates.

    The statistics used at t come from the window ending at the last refresh date <= t, so they
    stay causal; refreshes sit at fixed offsets from the first date, not from the last.
    """
    T, A = x.shape
    anchors = np.arange(0, T, ROBUST_REFRESH)
    which = np.arange(T) // ROBUST_REFRESH
    center, scale, count = np.empty((T, A)), np.empty((T, A)), np.empty((T, A), dtype=np.int64)
    pad = np.full(window - 1, np.nan, dtype=np.float32)
    for a in range(A):  # per asset: the sorted windows stay small ([anchors, window] float32)
        series = np.concatenate([pad, x[:, a].astype(np.float32)])
        # window ending at anchor t: series[t : t + window] = x rows t-window+1..t
        blocks = sliding_window_view(series, window)[anchors]  # a gathered copy
        blocks.sort(axis=-1)  # NaN sorts last
        n = (~np.isnan(blocks)).sum(axis=-1)
        q25, q50, q75 = (_sorted_quantile(blocks, n, q) for q in (0.25, 0.5, 0.75))
        center[:, a], scale[:, a], count[:, a] = q50[which], ((q75 - q25) / IQR_TO_STD)[which], n[which]
    return center, scale, count


def _sorted_quantile(sorted_rows: np.ndarray, n: np.ndarray, q: float) -> np.ndarray:
    """Linear-interpolated quantile of the first n entries of each sorted row (NaN where n == 0)."""
    pos = np.maximum(n - 1, 0) * q
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, np.maximum(n - 1, 0))
    frac = (pos - lo).astype(np.float32)
    a = np.take_along_axis(sorted_rows, lo[..., None], axis=-1)[..., 0]
    b = np.take_along_axis(sorted_rows, hi[..., None], axis=-1)[..., 0]
    return np.where(n > 0, a + (b - a) * frac, np.nan)
