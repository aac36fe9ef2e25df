"""Sources: synthetic, bundled, csv, parquet, long frames and yfinance (offline, recorded frame)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data_helpers import late_start_panel, write_ticker_csvs

from quantray.config import DataConfig
from quantray.data import sources
from quantray.data.panel import panel_from_long_frame
from quantray.data.pipeline import prepare
from quantray.data.sources import load_panel, parse_yfinance_frame
from quantray.errors import BadInput


def test_synthetic_is_deterministic_for_a_seed():
    a, b = load_panel("synthetic:seed=7,assets=5,days=400"), load_panel("synthetic:seed=7,assets=5,days=400")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.oracle.positions, b.oracle.positions)
    assert a.oracle.sharpe == b.oracle.sharpe
    c = load_panel("synthetic:seed=8,assets=5,days=400")
    assert not np.array_equal(a.values, c.values)


def test_synthetic_defaults_bars_and_oracle():
    panel = load_panel("synthetic")
    assert panel.values.shape == (1500, 8, 5) and panel.fields == ("open", "high", "low", "close", "volume")
    assert panel.assets == ("SPY", "QQQ", "IWM", "DIA", "EFA", "EEM", "XLF", "XLE")
    o, h, lo, c, v = (panel.values[:, :, i] for i in range(5))
    assert (h >= np.maximum(o, c)).all() and (lo <= np.minimum(o, c)).all() and (lo > 0).all() and (v > 0).all()
    assert np.all(np.diff(panel.dates.astype(np.int64)) > 0) and np.is_busday(panel.dates).all()
    oracle = panel.oracle
    assert 1.0 < oracle.sharpe < 4.0
    assert oracle.positions.shape == (1500, 8) and np.abs(oracle.positions).max() <= 1.0
    # the oracle's expected returns carry a real, small edge over the realized next-day returns
    next_return = c[1:] / c[:-1] - 1
    ic = np.mean([np.corrcoef(oracle.expected_return[:-1, a], next_return[:, a])[0, 1] for a in range(8)])
    assert 0.02 < ic < 0.2
    # the realized Sharpe is what the positions earn
    pnl = (oracle.positions[:-1] * next_return).sum(axis=1)
    assert oracle.sharpe == pytest.approx(pnl.mean() / pnl.std() * np.sqrt(252))


def test_synthetic_expected_return_parts_sum_to_the_oracles():
    from quantray.data.synthetic import MarketParams, expected_return_parts, simulate

    params = MarketParams(signal_kappa=0.08)
    panel = simulate(seed=3, assets=8, days=500, params=params)
    parts = expected_return_parts(seed=3, assets=8, days=500, params=params)
    assert sorted(parts) == ["lead_lag", "momentum", "regime"]
    np.testing.assert_array_equal(parts["regime"] + parts["lead_lag"] + parts["momentum"], panel.oracle.expected_return)
    # the regime's drift moves every asset one way (betas are positive); only followers lag the market
    signs = np.sign(parts["regime"])
    assert (signs == signs[:, :1]).all()
    followers = [panel.assets.index(n) for n in ("IWM", "EFA", "EEM", "XLE")]
    assert (parts["lead_lag"][:, [0, 1, 3]] == 0).all() and (parts["lead_lag"][:, followers] != 0).all()


def test_a_synthetic_sources_arguments_draw_the_market_it_loads():
    from quantray.data.synthetic import expected_return_parts

    source = "synthetic:seed=2,assets=4,days=400,signal=2"
    panel = load_panel(source)
    arguments = sources.synthetic_arguments(source)
    assert (arguments["seed"], arguments["assets"], arguments["days"]) == (2, 4, 400)
    parts = expected_return_parts(**arguments)
    np.testing.assert_array_equal(sum(parts.values()), panel.oracle.expected_return)
    with pytest.raises(BadInput, match="not a synthetic: source"):
        sources.synthetic_arguments("bundled:us_indices")


def test_synthetic_oracle_sharpe_is_positive_across_seeds():
    assert all(load_panel(f"synthetic:seed={s},assets=4,days=600").oracle.sharpe > 0 for s in range(4))


@pytest.mark.parametrize("name, assets, fields", [
    ("us_indices", ("SP500", "NASDAQ"), ("open", "high", "low", "close", "volume")),
    ("sp500_stocks", None, ("close",)),
    ("factors", ("MTUM", "QUAL", "SIZE", "USMV", "VLUE"), ("close",)),
])
def test_bundled_datasets_load(name, assets, fields):
    panel = load_panel(f"bundled:{name}")
    assert panel.fields == fields and panel.n_dates > 2000 and panel.mask.mean() > 0.95
    if assets:
        assert sorted(panel.assets) == sorted(assets)
    else:
        assert panel.n_assets == 21 and "AAPL" in panel.assets and "SP500" in panel.assets
    assert np.isfinite(panel.values[panel.mask]).all()


def test_bundled_dataset_prepares():
    prepared = prepare(DataConfig(source="bundled:factors", lookback=32))
    assert prepared.n_assets == 5 and "log_return" in prepared.feature_names and "range" not in prepared.feature_names
    assert len(prepared.windows("train")) > 1000


def test_csv_folder_with_different_inception_dates(tmp_path):
    panel = late_start_panel()
    folder = write_ticker_csvs(tmp_path / "prices", panel)
    loaded = load_panel(f"csv:{folder}")
    order = [loaded.assets.index(a) for a in panel.assets]
    np.testing.assert_array_equal(loaded.mask[:, order], panel.mask)
    np.testing.assert_allclose(loaded.values[:, order][panel.mask], panel.values[panel.mask])
    assert loaded.origins[order[2]].endswith(f"{panel.assets[2]}.csv")
    prepared = prepare(DataConfig(source=f"csv:{folder}", lookback=16))
    late = loaded.assets.index(panel.assets[2])
    valid = prepared.features.valid[:, late]
    assert not valid[:40].any() and not valid[200] and valid[201:].all()


def test_close_only_csv_works(tmp_path):
    panel = late_start_panel()
    folder = write_ticker_csvs(tmp_path / "closes", panel, fields=("close",))
    prepared = prepare(DataConfig(source=f"csv:{folder}", lookback=16))
    assert prepared.panel.fields == ("close",)
    assert "volume_z_20" not in prepared.feature_names and "rsi_14" in prepared.feature_names
    assert prepared.windows("train").batch(np.arange(3))["x"].shape[-1] == prepared.n_features


def test_ticker_names_come_from_file_names(tmp_path):
    for name in ("BRK.B.csv", "spy.csv.gz"):
        frame = pd.DataFrame({"Date": ["2020-01-02", "2020-01-03"], "Close": [1.0, 1.1]})
        frame.to_csv(tmp_path / name, index=False)
    assert load_panel(f"csv:{tmp_path}").assets == ("BRK.B", "spy")


def test_long_csv_with_ticker_column_and_adj_close(tmp_path):
    path = tmp_path / "long.csv"
    path.write_text("Date,Ticker,Close,Adj Close\n2020-01-02,AAA,10,5\n2020-01-03,AAA,11,5.5\n"
                    "2020-01-03,BBB,20,20\n2020-01-02,BBB,21,21\n")
    panel = load_panel(f"csv:{path}")
    assert panel.assets == ("AAA", "BBB") and panel.fields == ("close",)
    np.testing.assert_allclose(panel.field("close"), [[5, 21], [5.5, 20]])  # adjusted, sorted by date


def test_parquet_and_long_frame_share_the_validation(tmp_path):
    frame = pd.DataFrame({"date": pd.to_datetime(["2021-01-04", "2021-01-05", "2021-01-04"]),
                          "asset": ["X", "X", "Y"], "close": [1.0, 1.1, 2.0], "volume": [10, 12, 5]})
    path = tmp_path / "p.parquet"
    frame.to_parquet(path)
    panel = load_panel(f"parquet:{path}")
    assert panel.assets == ("X", "Y") and panel.fields == ("close", "volume")
    assert panel.mask.tolist() == [[True, True], [True, False]]
    same = panel_from_long_frame(frame)
    np.testing.assert_array_equal(same.values, panel.values)
    bad = frame.assign(close=[1.0, -1.0, 2.0])
    with pytest.raises(BadInput, match=r"^frame: row 2, column 'close': price must be positive"):
        panel_from_long_frame(bad)
    bad.to_parquet(path)
    with pytest.raises(BadInput, match=r"p\.parquet: row 2, column 'close'"):
        load_panel(f"parquet:{path}")


# --- yfinance: the recorded frame has yfinance 1.x's download() shape ----------------------------

def recorded_yfinance_frame(auto_adjust: bool = True) -> pd.DataFrame:
    """What yfinance.download(['SPY', 'QQQ'], auto_adjust=...) returns: (Price, Ticker) columns,
    sorted by Price, tz-naive 'Date' index; QQQ starts a day late (NaN row)."""
    dates = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=70), name="Date")
    rng = np.random.default_rng(0)
    data = {}
    for ticker, start in (("QQQ", 400.0), ("SPY", 470.0)):
        close = start * np.exp(np.cumsum(rng.normal(0, 0.01, len(dates))))
        data[("Close", ticker)] = close
        data[("High", ticker)] = close * 1.01
        data[("Low", ticker)] = close * 0.99
        data[("Open", ticker)] = close * 1.001
        data[("Volume", ticker)] = rng.integers(10**6, 10**7, len(dates))
        if not auto_adjust:
            data[("Adj Close", ticker)] = close * 0.98
    frame = pd.DataFrame(data, index=dates)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["Price", "Ticker"])
    frame = frame.sort_index(axis=1, level=0)
    frame.loc[dates[0], (slice(None), "QQQ")] = np.nan
    return frame


def test_parse_yfinance_frame():
    long = parse_yfinance_frame(recorded_yfinance_frame(), ["QQQ", "SPY"])
    assert list(long.columns) == ["date", "asset", "open", "high", "low", "close", "volume"]
    assert (long["asset"] == "QQQ").sum() == 69 and (long["asset"] == "SPY").sum() == 70
    panel = panel_from_long_frame(long)
    assert panel.assets == ("QQQ", "SPY") and not panel.mask[0, 0] and panel.mask[1:].all()
    adjusted = parse_yfinance_frame(recorded_yfinance_frame(auto_adjust=False), ["QQQ", "SPY"])
    np.testing.assert_allclose(adjusted["close"], long["close"] * 0.98)
    np.testing.assert_allclose(adjusted["high"], long["high"] * 0.98)
    single = recorded_yfinance_frame().xs("SPY", axis=1, level="Ticker")  # multi_level_index=False
    assert len(parse_yfinance_frame(single, ["SPY"])) == 70


def test_yfinance_downloads_once_then_reads_the_cache_offline(tmp_path, monkeypatch):
    import yfinance

    monkeypatch.setenv("QUANTRAY_CACHE", str(tmp_path / "cache"))
    calls = []

    def recorded_download(tickers, **kwargs):
        calls.append((tuple(tickers), kwargs.get("start")))
        return recorded_yfinance_frame()

    monkeypatch.setattr(yfinance, "download", recorded_download)
    first = load_panel("yfinance:SPY,QQQ,start=2024-01-01")
    assert calls == [(("QQQ", "SPY"), "2024-01-01")]
    assert list((tmp_path / "cache").glob("yfinance_*.parquet"))

    def offline(*args, **kwargs):
        raise ConnectionError("network is unreachable")

    monkeypatch.setattr(yfinance, "download", offline)
    again = load_panel("yfinance:qqq,spy,start=2024-01-01")  # same tickers, other spelling
    np.testing.assert_array_equal(again.values, first.values)
    with pytest.raises(BadInput, match="download failed .*network is unreachable.* no cache"):
        load_panel("yfinance:IWM")


@pytest.mark.parametrize("source, match", [
    ("yfinance:", "at least one ticker"),
    ("yfinance:SPY,start=2020-13-01", "key 'start' must be a date"),
    ("yfinance:SPY,when=2020-01-01", "unknown key 'when'"),
    ("yfinance:SP Y!", "not a ticker"),
])
def test_bad_yfinance_sources(source, match):
    with pytest.raises(BadInput, match=match):
        sources.parse_yfinance_source(source.partition(":")[2], source)
