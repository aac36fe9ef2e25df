"""Intraday and 24/7 bars: timestamps keep their time, the bar frequency sets the annualization."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from quantray.config import DataConfig, FeatureConfig
from quantray.data.panel import bars_per_year
from quantray.data.pipeline import prepare
from quantray.data.sources import load_panel
from quantray.data.synthetic import simulate
from quantray.ensemble.build import backtest_block
from quantray.errors import BadInput
from quantray.evaluate.backtest import scaled_momentum, volatility_targeted
from quantray.evaluate.metrics import annualized_sharpe


def hourly_stamps(days: np.ndarray, hours: list[float]) -> np.ndarray:
    """Every day at each of `hours` (fractions allowed: 9.5 = 09:30)."""
    seconds = (np.asarray(hours) * 3600).astype("timedelta64[s]")
    return (days.astype("datetime64[s]")[:, None] + seconds[None, :]).reshape(-1)


def write_long_csv(path, stamps: np.ndarray, assets: int = 3, seed: int = 0) -> None:
    """A long CSV of synthetic OHLCV bars re-stamped with `stamps`."""
    panel = simulate(seed=seed, assets=assets, days=len(stamps))
    frames = []
    for a, asset in enumerate(panel.assets):
        frame = pd.DataFrame({"timestamp": [str(t).replace("T", " ") for t in stamps], "symbol": asset})
        for c, name in enumerate(panel.fields):
            frame[name] = panel.values[:, a, c]
        frames.append(frame)
    pd.concat(frames).to_csv(path, index=False)


US_HOURS = [9.5, 10.5, 11.5, 12.5, 13.5, 14.5, 15.5]  # 7 hourly bars a session


def test_hourly_stock_csv_keeps_its_times_and_annualizes_by_bars_per_session(tmp_path):
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-03-01"))
    days = days[np.is_busday(days)]
    stamps = hourly_stamps(days, US_HOURS)
    write_long_csv(tmp_path / "hourly.csv", stamps)
    panel = load_panel(f"csv:{tmp_path / 'hourly.csv'}")  # truncated to days, this was "duplicate date"
    assert panel.dates.dtype == np.dtype("datetime64[s]")
    np.testing.assert_array_equal(panel.dates, stamps)
    assert bars_per_year(panel.dates) == 252 * 7
    assert bars_per_year(panel.dates, override=1638.0) == 1638.0  # a 6.5-hour session, given by hand


def test_24_7_crypto_csv_annualizes_by_calendar_hours_and_backtests_so(tmp_path):
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-15"))  # weekends included
    stamps = hourly_stamps(days, list(range(24)))
    write_long_csv(tmp_path / "crypto.csv", stamps, seed=1)
    config = DataConfig(source=f"csv:{tmp_path / 'crypto.csv'}", lookback=16, horizon=1,
                        features=FeatureConfig(names=("log_return", "day_of_week"), norm_window=48))
    prepared = prepare(config)
    assert bars_per_year(prepared.panel.dates) == 365 * 24
    # the calendar features read the real weekday of every hourly bar (2024-01-06 was a Saturday)
    saturday = int(np.flatnonzero(prepared.panel.dates == np.datetime64("2024-01-06T13:00:00"))[0])
    names = prepared.raw_features.names
    sin = prepared.raw_features.values[saturday, 0, names.index("day_of_week_sin")]
    assert sin == pytest.approx(np.sin(2 * np.pi * 5 / 7), abs=1e-6)

    test = prepared.windows("test")
    positions = np.where(test.batch(np.arange(len(test)))["mask"], 0.5, 0.0)
    result = backtest_block({"model": positions}, test, prepared.labels.next_return, prepared.panel, cost_bps=5.0)
    main = result.strategies["model"]
    assert result.periods_per_year == 8760
    assert main.metrics["sharpe"] == pytest.approx(annualized_sharpe(main.net_returns, 8760))
    assert result.dates.dtype == np.dtype("datetime64[s]")
    assert str(result.to_dict()["dates"][0]).count(":") == 2  # the time survives the report's JSON


def test_daily_bars_stay_days_and_252_while_daily_crypto_is_365(tmp_path):
    panel = load_panel("synthetic:assets=2,days=300")
    assert panel.dates.dtype == np.dtype("datetime64[D]") and bars_per_year(panel.dates) == 252
    days = np.arange(np.datetime64("2023-01-01"), np.datetime64("2023-12-01"))  # every calendar day
    write_long_csv(tmp_path / "daily.csv", days.astype("datetime64[s]"), assets=2)
    daily = load_panel(f"csv:{tmp_path / 'daily.csv'}")
    assert daily.dates.dtype == np.dtype("datetime64[D]") and bars_per_year(daily.dates) == 365


def test_a_repeated_timestamp_is_still_a_duplicate(tmp_path):
    (tmp_path / "A.csv").write_text("date,close\n2024-01-02 10:00,1\n2024-01-02 11:00,2\n2024-01-02 11:00,3\n")
    with pytest.raises(BadInput, match=r"row 4, column 'date': duplicate date 2024-01-02T11:00:00"):
        load_panel(f"csv:{tmp_path / 'A.csv'}")


def test_bars_per_year_must_not_be_negative():
    with pytest.raises(BadInput, match="data.bars_per_year"):
        DataConfig(bars_per_year=-1.0)


def test_a_duration_horizon_becomes_bars_of_the_loaded_data(tmp_path):
    days = np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-04-01"))
    days = days[np.is_busday(days)]
    write_long_csv(tmp_path / "hourly.csv", hourly_stamps(days, US_HOURS))
    hourly = f"csv:{tmp_path / 'hourly.csv'}"
    features = FeatureConfig(names=("log_return",), norm_window=48)
    for horizon, bars in (("1d", 7), ("3h", 3), ("1w", 35), (4, 4)):
        prepared = prepare(DataConfig(source=hourly, lookback=16, horizon=horizon, features=features))
        assert prepared.config.horizon == bars
        assert prepared.labels.horizon == bars
        # purged by the horizon in bars: no training label reaches into the stop block
        split = prepared.splits[0]
        assert split.train[-1] + bars < split.stop[0]
    daily = prepare(DataConfig(source="synthetic:assets=2,days=400", lookback=16, horizon="1w"))
    assert daily.config.horizon == 5


def test_a_duration_that_is_no_whole_number_of_bars_is_refused_in_one_line(tmp_path):
    with pytest.raises(BadInput, match=r"^data.horizon: '4h' needs intraday bars, and these bars are daily"):
        prepare(DataConfig(source="synthetic:assets=2,days=400", lookback=16, horizon="4h"))
    crypto = hourly_stamps(np.arange(np.datetime64("2024-01-01"), np.datetime64("2024-01-08")), list(range(24)))
    write_long_csv(tmp_path / "crypto.csv", crypto)
    with pytest.raises(BadInput, match=r"^data.horizon: '30min' is 0.50 bars of this data"):
        prepare(DataConfig(source=f"csv:{tmp_path / 'crypto.csv'}", lookback=16, horizon="30min"))
    for typo in ("5 days", "5dd", "0d", "-2h"):
        with pytest.raises(BadInput, match=r"^data.horizon: expected a number of bars or a duration"):
            DataConfig(horizon=typo)
    with pytest.raises(BadInput, match=r"^data.horizon: must be at least 1 bar"):
        DataConfig(horizon=0)


def test_the_baselines_windows_are_a_year_and_months_of_bars_of_the_data():
    # hourly returns of constant volatility: the volatility target sees the same annual risk
    # whatever the bar, so the targeted position is the same at 252 and at 8760 bars a year
    rng = np.random.default_rng(0)
    for per_year in (252.0, 8760.0):
        per_bar = 0.20 / np.sqrt(per_year)  # 20% a year
        history = rng.normal(0.0, per_bar, (6000, 2))
        dates_idx = np.arange(3000, 6000)
        mask = np.ones((len(dates_idx), 2), dtype=bool)
        position = volatility_targeted(mask, history, dates_idx, periods_per_year=per_year)
        assert np.median(position) == pytest.approx(0.10 / 0.20, rel=0.1)
    # momentum reads a year of bars: up for a year of hours but down over the last 252 of them
    trend = np.concatenate([np.full(8760 - 252, 0.001), np.full(252, -0.001)])[:, None]
    at_end = np.array([8760])
    history = np.concatenate([trend, np.zeros((1, 1))]) + rng.normal(0.0, 1e-4, (8761, 1))
    assert scaled_momentum(history, at_end, periods_per_year=8760.0)[0, 0] > 0
    assert scaled_momentum(history, at_end, periods_per_year=252.0)[0, 0] < 0
