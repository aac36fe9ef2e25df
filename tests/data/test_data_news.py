"""The news channel's data side: the timestamp rule, the TF-IDF fit on training bars only, the
fitted pipeline's round trip, and the synthetic stream's planted information."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from quantray.config import DataConfig, FeatureConfig, NewsConfig, SplitConfig
from quantray.data.news import NewsItems, align_news, usable_bar
from quantray.data.pipeline import load_pipeline, prepare
from quantray.data.synthetic import BEARISH, BULLISH, synthetic_news
from quantray.errors import BadInput

DATA = DataConfig(
    source="synthetic:seed=3,assets=3,days=300",
    lookback=8,
    horizon=2,
    features=FeatureConfig(names=("log_return",), norm_window=32),
    splits=SplitConfig(val_fraction=0.2, test_fraction=0.2, embargo=2),
)


def write_news(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["date", "asset", "text"])
        writer.writerows(rows)
    return path


def with_news(path: Path, **news) -> DataConfig:
    return dataclasses.replace(DATA, news=NewsConfig(source=f"csv:{path}", dim=64, **news))


def test_timestamp_rule_news_after_the_close_is_used_from_the_next_bar() -> None:
    bars = np.array(["2024-01-04", "2024-01-05", "2024-01-08", "2024-01-09"], dtype="datetime64[D]")  # Thu Fri Mon Tue
    stamps = np.array(["2024-01-04", "2024-01-06", "2024-01-09", "2024-01-03"], dtype="datetime64[D]")  # Thu Sat Tue Wed
    np.testing.assert_array_equal(usable_bar(stamps, bars, "next_bar"), [1, 2, 4, 0])  # Tue's: beyond the panel
    np.testing.assert_array_equal(usable_bar(stamps, bars, "same_bar"), [0, 2, 3, 0])
    items = NewsItems(stamps, ("", "SPY", "", "XYZ"), ("fed cuts", "spy rallies", "late", "unknown asset"), None)
    daily = align_news(items, bars, "next_bar", ("SPY", "QQQ"))
    assert daily.documents == ("", "fed cuts", "spy rallies spy:spy spy:rallies", "")
    np.testing.assert_array_equal(daily.present, [False, True, True, False])


def test_a_decision_sees_the_news_of_the_bar_before_it(tmp_path: Path) -> None:
    prepared = prepare(DATA)
    dates = prepared.panel.dates
    k = 150
    path = write_news(tmp_path / "news.csv", [(str(dates[k]), "", "merger announced")])
    for rule, first in (("next_bar", k + 1), ("same_bar", k)):
        pipeline = prepare(with_news(path, rule=rule, window=2)).pipeline()
        windows = pipeline.windows(prepared.panel)
        rows = np.searchsorted(windows.dates_idx, [first - 1, first, first + 1, first + 2])
        batch = windows.batch(rows)
        # news_mask [4, 2], oldest bar first: the item appears at its first usable bar, then ages out
        np.testing.assert_array_equal(batch["news_mask"], [[False, False], [False, True], [True, False], [False, False]])
        assert np.abs(batch["news"][1, 1]).sum() > 0 and np.abs(batch["news"][0]).sum() == 0


def test_tfidf_is_fit_on_training_bars_only(tmp_path: Path) -> None:
    prepared = prepare(DATA)
    dates = prepared.panel.dates
    rng = np.random.default_rng(0)
    words = ["rates", "fed", "oil", "jobs", "tech", "china", "earnings", "bonds"]
    rows = [(str(d), "", " ".join(rng.choice(words, 4))) for d in dates]
    base = prepare(with_news(write_news(tmp_path / "a.csv", rows)))
    train = base.splits[0].train
    last_read = train.max()  # the last bar a training sample reads (next_bar: stamped the bar before)
    later = [(d, a, "völlig neue wörter " + t if i >= last_read else t) for i, (d, a, t) in enumerate(rows)]
    changed = prepare(with_news(write_news(tmp_path / "b.csv", later)))
    np.testing.assert_array_equal(changed.pipeline().news_embedder.idf, base.pipeline().news_embedder.idf)
    tokens_base, tokens_changed = base.news_tokens(), changed.news_tokens()
    np.testing.assert_array_equal(tokens_changed.values[:last_read + 1], tokens_base.values[:last_read + 1])
    # and the test can fail: the same change inside the training bars moves the fit
    earlier = [(d, a, "völlig neue wörter " + t if i == train[10] else t) for i, (d, a, t) in enumerate(rows)]
    moved = prepare(with_news(write_news(tmp_path / "c.csv", earlier)))
    assert not np.array_equal(moved.pipeline().news_embedder.idf, base.pipeline().news_embedder.idf)


def test_pipeline_with_news_round_trips(tmp_path: Path) -> None:
    config = dataclasses.replace(DATA, news=NewsConfig(source="synthetic:seed=2,informed=0.5", dim=32, window=3))
    prepared = prepare(config)
    pipeline = prepared.pipeline()
    pipeline.save(tmp_path)
    loaded = load_pipeline(tmp_path)
    assert loaded.news_dim == 32 and loaded.same_as(pipeline)
    want = prepared.windows("test")
    got = loaded.windows(prepared.panel, want.dates_idx)
    rows = np.arange(len(want))
    np.testing.assert_array_equal(got.batch(rows)["news"], want.batch(rows)["news"])
    np.testing.assert_array_equal(got.batch(rows)["news_mask"], want.batch(rows)["news_mask"])


def test_synthetic_news_predicts_the_sign_of_the_next_decisions_market_return() -> None:
    prepared = prepare(DATA)
    closes = prepared.panel.field("close")
    stamps, texts = synthetic_news(prepared.panel.dates, closes, seed=1, informed=0.4)
    market = np.nanmean(closes[1:] / closes[:-1] - 1.0, axis=1)
    signs = []
    for s, text in enumerate(texts[:-2]):
        words = set(text.split())
        if words & set(BULLISH) or words & set(BEARISH):
            assert bool(words & set(BULLISH)) == (market[s + 1] > 0)  # the return the decision at s+1 earns
            signs.append(s)
    assert 0.3 < len(signs) / (len(texts) - 2) < 0.5
    # the labels agree: next_return at the decision bar s+1 is that market move
    decisions = np.array(signs) + 1
    np.testing.assert_allclose(prepared.labels.next_return[decisions].mean(axis=1), market[decisions], rtol=1e-6)


def test_bad_news_config_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="data.news.rule"):
        prepare(dataclasses.replace(DATA, news=NewsConfig(source="synthetic", rule="whenever")))
    with pytest.raises(BadInput, match="'date' column"):
        (tmp_path / "bad.csv").write_text("day,text\n2024-01-02,hello\n")
        prepare(dataclasses.replace(DATA, news=NewsConfig(source=f"csv:{tmp_path / 'bad.csv'}")))
