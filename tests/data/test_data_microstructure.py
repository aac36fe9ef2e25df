"""Opt-in features: microstructure proxies and calendar encodings on tiny hand-computed panels,
degradation when fields are missing, and the seed-004 feature set. Causality of every group is
proven in test_data_features.py."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import yaml
from data_helpers import late_start_panel

from quantray.config import FeatureConfig, resolve
from quantray.data.features import apply_scaler, build_features, corwin_schultz_spread, fit_scaler
from quantray.data.panel import Panel

ROOT = Path(__file__).resolve().parents[2]
RAW = FeatureConfig(normalization="none", cross_sectional=False)
CALENDAR = ("day_of_week_sin", "day_of_week_cos", "month_of_year_sin", "month_of_year_cos")


def bars(close, high=None, low=None, volume=None, dates=None) -> Panel:
    """One asset, by default one bar per calendar day from 2024-01-01; only the fields given."""
    columns = {"high": high, "low": low, "close": close, "volume": volume}
    fields = tuple(name for name, column in columns.items() if column is not None)
    values = np.stack([np.asarray(columns[f], dtype=np.float64) for f in fields], axis=-1)[:, None, :]
    if dates is None:
        dates = np.datetime64("2024-01-01") + np.arange(len(close))
    return Panel(np.asarray(dates, dtype="datetime64[D]"), ("X",), fields, values,
                 np.ones((len(close), 1), dtype=bool))


def column(panel: Panel, name: str, cfg: FeatureConfig) -> tuple[np.ndarray, np.ndarray]:
    features = build_features(panel, cfg)
    return features.values[:, 0, features.names.index(name)], features.valid[:, 0]


def test_pct_change_is_the_simple_return():
    values, valid = column(bars([100.0, 110.0, 99.0]), "pct_change", dataclasses.replace(RAW, names=("pct_change",)))
    np.testing.assert_allclose(values[1:], [0.1, -0.1], rtol=1e-6)
    assert valid.tolist() == [False, True, True]


def test_roll_spread_of_a_bouncing_price():
    # closes bounce 100, 101, 100, ...: changes +-d, cov of consecutive changes over 4 pairs is
    # -4 d^2 / 3 (sample covariance, the means are 0), so the spread is 2 d sqrt(4/3)
    d = np.log(1.01)
    cfg = dataclasses.replace(RAW, names=("roll_spread",), roll_window=4)
    values, valid = column(bars([100.0, 101.0] * 6), "roll_spread_4", cfg)
    assert not valid[:5].any() and valid[5:].all()  # 4 pairs need 5 changes, 6 closes
    np.testing.assert_allclose(values[5:], 2 * d * np.sqrt(4 / 3), rtol=1e-5)


def test_roll_spread_is_zero_when_changes_trend():
    close = 100 * np.exp(np.cumsum(0.01 * np.sin(np.arange(40) / 6)))  # slowly turning: positive autocovariance
    values, valid = column(bars(close), "roll_spread_10", dataclasses.replace(RAW, names=("roll_spread",),
                                                                               roll_window=10))
    assert valid[11:].all() and np.all(values[11:] == 0)


def test_corwin_schultz_reads_a_still_days_range_as_the_spread():
    # the same bar twice: no price variance, so the whole range is spread, (H - L) / midpoint
    one = corwin_schultz_spread(*(np.array([v]) for v in (101.0, 100.0, 101.0, 100.0, 100.5)))
    np.testing.assert_allclose(one, [1.0 / 100.5], rtol=1e-9)
    cfg = dataclasses.replace(RAW, names=("corwin_schultz",), spread_window=3)
    values, valid = column(bars([100.5] * 6, [101.0] * 6, [100.0] * 6), "corwin_schultz_3", cfg)
    assert not valid[:3].any() and valid[3:].all()
    np.testing.assert_allclose(values[3:], 1.0 / 100.5, rtol=1e-6)


def test_corwin_schultz_sets_negative_estimates_to_zero_and_ignores_overnight_gaps():
    # a trend inside two adjacent bars: the two-day range exceeds what one spread explains
    trend = corwin_schultz_spread(*(np.array([v]) for v in (102.0, 101.0, 101.0, 100.0, 101.0)))
    assert trend[0] == 0.0
    # the second bar gapped up 9.8 above the first close: estimated as if its low were that close
    gapped = corwin_schultz_spread(*(np.array([v]) for v in (112.0, 110.0, 102.0, 100.0, 100.2)))
    shifted = corwin_schultz_spread(*(np.array([v]) for v in (102.2, 100.2, 102.0, 100.0, 100.2)))
    np.testing.assert_allclose(gapped, shifted, rtol=1e-12)
    assert shifted[0] > 0


def test_clv_is_one_at_the_high_minus_one_at_the_low_and_zero_without_range():
    high, low = [102.0, 102.0, 102.0, 100.0, 102.0], [100.0, 100.0, 100.0, 100.0, 98.0]
    close = [102.0, 100.0, 101.0, 100.0, 101.0]
    values, valid = column(bars(close, high, low), "clv", dataclasses.replace(RAW, names=("clv",)))
    np.testing.assert_allclose(values, [1.0, -1.0, 0.0, 0.0, 0.5])
    assert valid.all()


def test_amihud_is_the_log_mean_impact_per_dollar_skipping_days_without_volume():
    close = 100 * 1.01 ** np.arange(8)
    volume = 1e6 / close  # dollar volume 1e6 every day
    volume[5] = 0.0  # no trade volume: says nothing about impact, left out of the mean
    cfg = dataclasses.replace(RAW, names=("amihud",), amihud_window=3)
    values, valid = column(bars(close, volume=volume), "amihud_3", cfg)
    assert not valid[:3].any() and valid[3:].all()
    np.testing.assert_allclose(values[3:], np.log(0.01 / 1e6), rtol=1e-6)


def test_amihud_is_higher_for_the_thinner_asset():
    panel = late_start_panel()
    values = panel.values.copy()
    values[:, 1, panel.fields.index("volume")] /= 100  # asset 1 trades a hundredth of its volume
    thin = Panel(panel.dates, panel.assets, panel.fields, values, panel.mask)
    cfg = dataclasses.replace(RAW, names=("amihud",))
    base, after = build_features(panel, cfg), build_features(thin, cfg)
    ok = base.valid[:, 1]
    np.testing.assert_allclose(after.values[ok, 1, 0] - base.values[ok, 1, 0], np.log(100), rtol=1e-4)


def test_calendar_encodings_of_known_dates():
    # 2024-01-01 is a Monday in January; 2024-04-04 a Thursday in April
    panel = bars([100.0, 101.0], dates=["2024-01-01", "2024-04-04"])
    features = build_features(panel, dataclasses.replace(RAW, names=("day_of_week", "month_of_year")))
    assert features.names == CALENDAR
    angle = 2 * np.pi * 3 / 7
    np.testing.assert_allclose(features.values[:, 0], [[0, 1, 0, 1], [np.sin(angle), np.cos(angle), 1, 0]],
                               atol=1e-6)


@pytest.mark.parametrize("normalization", ["rolling_robust", "rolling_zscore", "train_zscore", "train_robust", "train_pooled"])
def test_calendar_features_have_no_cs_column_and_are_not_normalized(normalization):
    panel = late_start_panel()
    names = ("log_return", "day_of_week", "clv", "month_of_year")
    features = build_features(panel, FeatureConfig(names=names, normalization=normalization, norm_window=60))
    if normalization.startswith("train_"):
        features = apply_scaler(features, fit_scaler(features, np.arange(60, 200), normalization[6:]))
    assert features.names == ("log_return", *CALENDAR[:2], "clv", *CALENDAR[2:], "log_return_cs", "clv_cs")
    raw = build_features(panel, dataclasses.replace(RAW, names=("day_of_week", "month_of_year")))
    valid = features.valid
    for name in CALENDAR:
        j = features.names.index(name)
        np.testing.assert_array_equal(features.values[valid, j], raw.values[valid, CALENDAR.index(name)])
    # the asset-specific columns are normalized: not the raw log returns
    assert np.abs(features.values[valid, 0]).std() > 0.1


@pytest.mark.parametrize("fields, kept", [
    (("close",), ("pct_change", "roll_spread_63", *CALENDAR)),
    (("high", "low", "close"), ("pct_change", "corwin_schultz_21", "roll_spread_63", "clv", *CALENDAR)),
    (("high", "low", "close", "volume"),
     ("pct_change", "amihud_21", "corwin_schultz_21", "roll_spread_63", "clv", *CALENDAR)),
    (("close", "volume"), ("pct_change", "amihud_21", "roll_spread_63", *CALENDAR)),
])
def test_opt_in_groups_needing_a_missing_field_are_dropped(fields, kept):
    panel = late_start_panel()
    picked = [panel.fields.index(f) for f in fields]
    reduced = Panel(panel.dates, panel.assets, fields, panel.values[:, :, picked], panel.mask)
    names = ("pct_change", "amihud", "corwin_schultz", "roll_spread", "clv", "day_of_week", "month_of_year")
    features = build_features(reduced, FeatureConfig(names=names, norm_window=60))
    own = tuple(n for n in kept if n not in CALENDAR)
    assert features.names == kept + tuple(f"{n}_cs" for n in own)
    assert features.valid.any() and np.isfinite(features.values).all()


def test_seed_004_zoo_config_builds_exactly_its_nine_features():
    space = yaml.safe_load((ROOT / "search_spaces" / "zoo" / "cnn_lstm_classifier.yaml").read_text())
    cfg = resolve(FeatureConfig, space["data"]["features"], where="cnn_lstm_classifier.yaml", key="data.features")
    features = build_features(late_start_panel(), cfg)
    assert features.names == ("pct_change", "log_return", "mean_return_10", "mean_return_20", "volatility_10",
                              "volatility_20", "volume_z_20", "volume_z_50", "return_x_volume")
    assert cfg.normalization.startswith("train_") and not cfg.cross_sectional
