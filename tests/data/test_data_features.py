"""Features are causal, correct where checked by hand, and train scalers see only training dates."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import pywt
from data_helpers import late_start_panel, perturbed_after
from hypothesis import given, settings
from hypothesis import strategies as st

from quantray.config import DEFAULT_FEATURES, FeatureConfig
from quantray.data.features import GROUPS, apply_scaler, build_features, fit_scaler
from quantray.data.panel import Panel
from quantray.errors import BadInput

PANEL = late_start_panel(days=330)
SHORT_NORM = FeatureConfig(norm_window=60)  # several robust refreshes inside a short panel
EVERY_GROUP = tuple(GROUPS)  # the defaults and the opt-in groups (microstructure, calendar, pct_change)


@settings(max_examples=80, deadline=None)
@given(
    t=st.integers(min_value=0, max_value=PANEL.n_dates - 2),
    normalization=st.sampled_from(["rolling_robust", "rolling_zscore", "none"]),
    names=st.sampled_from([DEFAULT_FEATURES, EVERY_GROUP]),
    seed=st.integers(0, 2**31 - 1),
    truncate=st.booleans(),
)
def test_features_at_or_before_t_ignore_everything_after_t(t, normalization, names, seed, truncate):
    cfg = FeatureConfig(names=names, norm_window=60, normalization=normalization)
    full = build_features(PANEL, cfg)
    if truncate:
        other = build_features(PANEL.head(t + 1), cfg)
    else:
        rng = np.random.default_rng(seed)
        factor = np.exp(rng.normal(0.0, 0.2, PANEL.mask.shape))
        other = build_features(perturbed_after(PANEL, t, factor, rng.uniform(0.1, 10.0, PANEL.mask.shape)), cfg)
    assert other.names == full.names
    np.testing.assert_array_equal(other.values[:t + 1], full.values[:t + 1])
    np.testing.assert_array_equal(other.valid[:t + 1], full.valid[:t + 1])


def test_perturbing_the_past_does_change_features():
    """The causality property is not vacuous: data at t does move features at t."""
    rng = np.random.default_rng(0)
    t = 250
    factor = np.ones(PANEL.mask.shape)
    factor[:t] = np.exp(rng.normal(0, 0.2, (t, PANEL.n_assets)))
    changed = perturbed_after(PANEL, -1, factor, np.ones(PANEL.mask.shape))
    a, b = build_features(PANEL, SHORT_NORM), build_features(changed, SHORT_NORM)
    assert not np.array_equal(a.values[t - 1], b.values[t - 1])


def test_perturbing_the_past_moves_every_asset_specific_feature():
    """Each column, the opt-in ones too, reads the data it is built from (so causality is not vacuous)."""
    rng = np.random.default_rng(0)
    t = 250
    price = np.ones(PANEL.mask.shape)
    price[:t] = np.exp(rng.normal(0, 0.2, (t, PANEL.n_assets)))
    volume = np.ones(PANEL.mask.shape)
    volume[:t] = rng.uniform(0.1, 10.0, (t, PANEL.n_assets))
    # a bar rescaled as a whole keeps its shape (CLV, intraday return): lower opens and lows too
    values = PANEL.values.copy()
    open_low = [PANEL.fields.index("open"), PANEL.fields.index("low")]
    values[:t, :, open_low] *= rng.uniform(0.99, 1.0, (t, PANEL.n_assets, 1))
    shifted = Panel(PANEL.dates, PANEL.assets, PANEL.fields, values, PANEL.mask)
    cfg = dataclasses.replace(SHORT_NORM, names=EVERY_GROUP, normalization="none", cross_sectional=False)
    a, b = build_features(PANEL, cfg), build_features(perturbed_after(shifted, -1, price, volume), cfg)
    moved = {name for j, name in enumerate(a.names) if not np.array_equal(a.values[:t, :, j], b.values[:t, :, j])}
    calendar = {"day_of_week_sin", "day_of_week_cos", "month_of_year_sin", "month_of_year_cos"}
    assert moved == set(a.names) - calendar


OWN_FEATURES = (
    "log_return", "intraday_return", "overnight_return", "range", "mean_return_10", "mean_return_20",
    "momentum_21", "momentum_63", "trend_20", "trend_60", "volatility_10", "volatility_20", "volume_z_20",
    "volume_z_50",
    "return_x_volume", "rsi_14", "macd", "macd_hist", "wavelet_a3", "wavelet_d3", "wavelet_d2", "wavelet_d1")


def test_default_feature_names():
    features = build_features(PANEL)
    assert features.names == OWN_FEATURES + tuple(f"{name}_cs" for name in OWN_FEATURES)
    assert features.values.dtype == np.float32 and features.values.shape == (*PANEL.mask.shape, 44)


def test_close_only_panel_drops_the_features_that_need_other_fields():
    close_only = Panel(PANEL.dates, PANEL.assets, ("close",), PANEL.values[:, :, [3]], PANEL.mask)
    features = build_features(close_only, dataclasses.replace(SHORT_NORM, cross_sectional=False))
    assert features.names == ("log_return", "mean_return_10", "mean_return_20", "momentum_21", "momentum_63",
                              "trend_20", "trend_60",
                              "volatility_10", "volatility_20", "rsi_14", "macd", "macd_hist",
                              "wavelet_a3", "wavelet_d3", "wavelet_d2", "wavelet_d1")
    assert features.valid.any()


def test_cross_sectional_features_are_deviations_from_the_valid_assets_mean():
    cfg = dataclasses.replace(SHORT_NORM, clip=1e6)  # no clipping, to compare exactly
    features = build_features(PANEL, cfg)
    own = build_features(PANEL, dataclasses.replace(cfg, cross_sectional=False))
    n = len(own.names)
    assert features.names[n:] == tuple(f"{name}_cs" for name in own.names)
    np.testing.assert_array_equal(features.values[:, :, :n], own.values)
    partly = own.valid.any(axis=1) & ~own.valid.all(axis=1)  # the late asset is not valid yet
    for t in (int(np.flatnonzero(partly)[0]), int(np.flatnonzero(own.valid.all(axis=1))[-1])):
        valid = own.valid[t]
        expected = own.values[t, valid] - own.values[t, valid].mean(axis=0)
        np.testing.assert_allclose(features.values[t, valid, n:], expected, rtol=1e-5, atol=1e-5)
        assert np.all(features.values[t, ~valid, n:] == 0)


def test_momentum_is_the_trailing_return_in_units_of_its_volatility():
    cfg = dataclasses.replace(SHORT_NORM, names=("momentum",), normalization="none", cross_sectional=False)
    features = build_features(PANEL, cfg)
    log_close = np.log(pd.DataFrame(PANEL.field("close")).ffill())
    ret = log_close.diff()
    sigma = np.sqrt((ret ** 2).ewm(alpha=2.0 / 61, adjust=False).mean())
    t, a = 300, 0
    for j, k in enumerate(cfg.momentum_windows):
        expected = (log_close.iloc[t, a] - log_close.iloc[t - k, a]) / (sigma.iloc[t, a] * np.sqrt(k))
        assert features.valid[t, a]
        np.testing.assert_allclose(features.values[t, a, j], expected, rtol=1e-4)


def test_trend_is_the_ewma_of_returns_in_units_of_yesterdays_volatility():
    cfg = dataclasses.replace(SHORT_NORM, names=("trend",), trend_halflives=(5, 20), normalization="none",
                              cross_sectional=False)
    features = build_features(PANEL, cfg)
    ret = np.log(pd.DataFrame(PANEL.field("close")).ffill()).diff()
    sigma = np.sqrt((ret ** 2).ewm(alpha=2.0 / 61, adjust=False).mean())
    t, a = 300, 0
    z = (ret / sigma.shift(1)).iloc[: t + 1, a].dropna().to_numpy()
    for j, halflife in enumerate(cfg.trend_halflives):
        decay = 0.5 ** (1.0 / halflife)
        weights = decay ** np.arange(len(z))[::-1]  # today's return weighs 1, yesterday's decay, ...
        expected = np.sqrt(1 - decay ** 2) * np.sum(weights * z)
        assert features.valid[t, a]
        np.testing.assert_allclose(features.values[t, a, j], expected, rtol=1e-4)
    assert 0.7 < np.std(features.values[features.valid][:, 0]) < 1.5  # about unit variance


def test_invalid_rows_are_zero_and_valid_rows_finite_and_clipped():
    features = build_features(PANEL, SHORT_NORM)
    assert not features.valid[~PANEL.mask].any()  # not traded -> not valid
    assert not features.valid[:40, 2].any()  # before inception + warm-up
    assert np.all(features.values[~features.valid] == 0)
    assert np.isfinite(features.values).all()
    assert np.abs(features.values).max() <= SHORT_NORM.clip
    assert features.valid[200:, :2].all()


def test_raw_features_match_direct_computations():
    raw = build_features(PANEL, FeatureConfig(normalization="none"))
    close = pd.DataFrame(PANEL.field("close")[:, 0])
    log_ret = np.log(close).diff()
    col = {name: raw.values[:, 0, j] for j, name in enumerate(raw.names)}
    t = 300
    np.testing.assert_allclose(col["log_return"][t], log_ret.iloc[t, 0], rtol=1e-5)
    np.testing.assert_allclose(col["mean_return_20"][t], log_ret.rolling(20).mean().iloc[t, 0], rtol=1e-4)
    np.testing.assert_allclose(col["volatility_10"][t], log_ret.rolling(10).std().iloc[t, 0], rtol=1e-4)
    lv = np.log1p(pd.Series(PANEL.field("volume")[:, 0]))
    z = (lv - lv.rolling(50).mean()) / lv.rolling(50).std()
    np.testing.assert_allclose(col["volume_z_50"][t], z.iloc[t], rtol=1e-4)
    window = np.array(log_ret.iloc[t - 31:t + 1, 0])
    coeffs = pywt.wavedec(window, "db2", level=3)
    np.testing.assert_allclose(col["wavelet_d1"][t], np.log(np.mean(coeffs[-1] ** 2) + 1e-12), rtol=1e-4)
    np.testing.assert_allclose(col["wavelet_a3"][t], np.log(np.mean(coeffs[0] ** 2) + 1e-12), rtol=1e-4)
    gains, losses = log_ret.clip(lower=0), (-log_ret).clip(lower=0)
    g, lo = gains.ewm(alpha=1 / 14, adjust=False).mean(), losses.ewm(alpha=1 / 14, adjust=False).mean()
    rsi = 100 - 100 / (1 + g / lo)
    np.testing.assert_allclose(col["rsi_14"][t], (rsi.iloc[t, 0] - 50) / 50, rtol=1e-4)


def test_rolling_robust_is_median_and_iqr_of_a_trailing_window():
    raw = build_features(PANEL, FeatureConfig(normalization="none", norm_window=60))
    scaled = build_features(PANEL, SHORT_NORM)
    j, a = raw.names.index("range"), 0
    t = 21 * 10  # a refresh date: the statistics come from rows t-59..t
    window = raw.values[t - 59:t + 1, a, j]
    q25, q50, q75 = np.percentile(window, [25, 50, 75])
    expected = np.clip((raw.values[t, a, j] - q50) / ((q75 - q25) / 1.349), -5, 5)
    np.testing.assert_allclose(scaled.values[t, a, j], expected, rtol=1e-4, atol=1e-5)


def test_train_scaler_sees_only_training_dates():
    cfg = FeatureConfig(normalization="train_robust")
    train = np.arange(100, 220)
    base = build_features(PANEL, cfg)
    rng = np.random.default_rng(1)
    # change everything after the training block: validation and test data
    changed = build_features(perturbed_after(PANEL, int(train[-1]), np.exp(rng.normal(0, 0.3, PANEL.mask.shape)),
                                             rng.uniform(0.1, 10, PANEL.mask.shape)), cfg)
    for method in ("robust", "zscore", "pooled"):
        s1, s2 = fit_scaler(base, train, method), fit_scaler(changed, train, method)
        np.testing.assert_array_equal(s1.center, s2.center)
        np.testing.assert_array_equal(s1.scale, s2.scale)
    assert not np.array_equal(base.values[250:], changed.values[250:])  # the change was real
    # and the scaler is computed from exactly those rows
    scaler = fit_scaler(base, train, "zscore")
    rows = base.values[train, 0].astype(np.float64)
    level = ~base.signed
    np.testing.assert_allclose(scaler.center[0, level], rows.mean(axis=0)[level], rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(scaler.scale[0], rows.std(axis=0, ddof=1), rtol=1e-5)
    scaled = apply_scaler(base, scaler)
    assert np.abs(scaled.values).max() <= 5.0 and np.all(scaled.values[~base.valid] == 0)


def test_a_pooled_scaler_shifts_every_asset_alike_so_an_assets_own_level_survives():
    features = build_features(PANEL, FeatureConfig(normalization="none"))
    train = np.arange(100, 220)
    scaler = fit_scaler(features, train, "pooled")
    j = features.names.index("volatility_20")
    rows = features.values[train, :, j][features.valid[train]].astype(np.float64)
    q25, median, q75 = np.percentile(rows, [25, 50, 75])
    np.testing.assert_allclose(scaler.center[:, j], median)  # one center for every asset
    np.testing.assert_allclose(scaler.scale[:, j], (q75 - q25) / 1.349)
    # the assets' mean training levels keep their order and their differences, in the new units
    scaled = apply_scaler(features, scaler).values[train, :, j]
    raw = features.values[train, :, j]
    valid = features.valid[train]
    mean = lambda x: np.array([x[valid[:, a], a].mean() for a in range(x.shape[1])])  # noqa: E731
    np.testing.assert_allclose(np.diff(mean(scaled)), np.diff(mean(raw)) / scaler.scale[0, j], rtol=1e-3, atol=1e-6)
    assert not np.allclose(np.diff(mean(apply_scaler(features, fit_scaler(features, train, "robust")).values[train, :, j])),
                           np.diff(mean(scaled)), atol=0.05)  # a per-asset scaler recenters each asset


@pytest.mark.parametrize("method", ["robust", "zscore", "pooled"])
def test_train_scalers_keep_a_signed_features_zero(method):
    """A return or a trend is scaled about zero: subtracting its training median would subtract the
    drift of the training years and bet against it ever after. Levels are centered."""
    features = build_features(PANEL, FeatureConfig(normalization="none"))
    train = np.arange(100, 220)
    scaler = fit_scaler(features, train, method)
    scaled, valid = apply_scaler(features, scaler), features.valid
    for name in ("log_return", "trend_20", "trend_20_cs", "momentum_63", "macd"):
        j = features.names.index(name)
        assert features.signed[j] and (scaler.center[:, j] == 0).all(), name
        raw, out = features.values[:, :, j][valid], scaled.values[:, :, j][valid]
        assert (np.sign(out) == np.sign(raw)).all() and np.abs(out).max() > 0, name
    for name in ("volatility_20", "range"):  # levels, always positive: so are their centers
        j = features.names.index(name)
        assert not features.signed[j] and (scaler.center[:, j] > 0).all(), name


@pytest.mark.parametrize("cfg, key", [
    (FeatureConfig(names=("log_return", "nope")), "features.names"),
    (FeatureConfig(normalization="minmax"), "features.normalization"),
    (FeatureConfig(wavelet_levels=9), "features.wavelet_levels"),
    (FeatureConfig(wavelet="nope"), "features.wavelet"),
    (FeatureConfig(windows=(1,)), "features.windows"),
    (FeatureConfig(momentum_windows=(21, 0)), "features.momentum_windows"),
    (FeatureConfig(momentum_windows=()), "features.momentum_windows"),
    (FeatureConfig(trend_halflives=(20, 0)), "features.trend_halflives"),
    (FeatureConfig(names=("amihud",), amihud_window=1), "features.amihud_window"),
    (FeatureConfig(names=("corwin_schultz",), spread_window=0), "features.spread_window"),
    (FeatureConfig(names=("roll_spread",), roll_window=2), "features.roll_window"),
])
def test_bad_feature_config_names_the_key(cfg, key):
    with pytest.raises(BadInput, match=key):
        build_features(PANEL, cfg)
