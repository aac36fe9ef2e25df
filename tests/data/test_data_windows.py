"""Windows: views over the features, batches equal to naive slicing, the same through Ray Data."""

from __future__ import annotations

import pickle

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from quantray.config import DataConfig, FeatureConfig, NewsConfig, RiskConfig, SplitConfig
from quantray.data.pipeline import prepare
from quantray.data.windows import Windows, ray_dataset, shard_dates, stack_windows

CFG = DataConfig(source="synthetic:assets=4,days=500,seed=2", lookback=16, horizon=3,
                 features=FeatureConfig(norm_window=60))


@pytest.fixture(scope="module")
def prepared():
    return prepare(CFG)


def test_batch_equals_naive_slicing(prepared):
    windows = prepared.windows("train")
    rows = np.array([0, 5, len(windows) - 1, 7])
    batch = windows.batch(rows)
    values, L = prepared.features.values, CFG.lookback
    for b, t in enumerate(windows.dates_idx[rows]):
        np.testing.assert_array_equal(batch["x"][b], values[t - L + 1:t + 1].transpose(1, 0, 2))
        valid = prepared.features.valid
        np.testing.assert_array_equal(batch["mask"][b], valid[t] & valid[t - L + 1])
        np.testing.assert_array_equal(batch["next_return"][b],
                                      np.nan_to_num(prepared.labels.next_return[t]).astype(np.float32))
        np.testing.assert_array_equal(batch["direction"][b], prepared.labels.direction[t])
        np.testing.assert_array_equal(batch["barrier"][b], prepared.labels.barrier[t])
        assert batch["regime"][b] == prepared.labels.regime[t] and batch["date_idx"][b] == t
    assert batch["x"].shape == (4, 4, L, prepared.n_features) and batch["x"].dtype == np.float32
    assert batch["x"].flags.c_contiguous
    np.testing.assert_array_equal(batch["asset_ids"], np.arange(4))
    assert batch["label_mask"].dtype == bool and not (batch["label_mask"] & ~batch["mask"]).any()
    assert batch["barrier"].dtype == np.int64 and set(np.unique(batch["barrier"])) <= {-1, 0, 1, 2}


def test_windows_are_views_and_pickle_without_the_view(prepared):
    windows = prepared.windows("val")
    assert np.shares_memory(windows.view, prepared.features.values)
    assert windows.view.base is not None
    blob = pickle.dumps(windows)
    assert len(blob) < 2 * prepared.features.values.nbytes + 1_000_000  # not the L-times-larger windows
    clone = pickle.loads(blob)
    np.testing.assert_array_equal(clone.batch(slice(0, 8))["x"], windows.batch(slice(0, 8))["x"])


def test_parts_use_the_split_dates(prepared):
    split = prepared.splits[0]
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(prepared.windows(part).dates_idx, getattr(split, part))
    assert prepared.n_assets == 4 and prepared.asset_names == ("SPY", "QQQ", "IWM", "DIA")
    assert prepared.n_features == len(prepared.feature_names) == prepared.features.values.shape[2]
    # the first training window starts where some asset's features are valid
    first = prepared.windows("train").batch(np.array([0]))
    assert first["mask"].any()


def test_train_scaler_per_fold():
    cfg = DataConfig(source="synthetic:assets=3,days=700", lookback=8, horizon=2,
                     features=FeatureConfig(normalization="train_zscore"), splits=SplitConfig(folds=2))
    prepared = prepare(cfg)
    fold0 = prepared.windows("train", fold=0).features
    fold1 = prepared.windows("train", fold=1).features
    assert fold0 is prepared.features.values and not np.array_equal(fold0, fold1)
    train = prepared.splits[0].train
    valid = prepared.features.valid[train]
    rows = [prepared.features.values[train][:, a][valid[:, a]] for a in range(3)]
    level = ~prepared.features.signed  # signed features are scaled about their own zero
    # z-scored on fold 0's training dates
    np.testing.assert_allclose(np.array([r.mean(axis=0) for r in rows])[:, level], 0.0, atol=0.05)


def test_bad_windows_arguments(prepared):
    with pytest.raises(ValueError):
        Windows(prepared.features.values, prepared.labels, prepared.features.valid, 16, np.array([3]))
    with pytest.raises(ValueError):
        prepared.windows("holdout")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Ray Data's own deprecated context options
def test_ray_dataset_shards_give_the_same_arrays_as_batch(prepared):
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        windows = prepared.windows("train")
        shards = ray_dataset(windows).streaming_split(2, equal=False)  # what two Train workers get
        # The shards of a streaming split advance together: read them at once, as workers do.
        with ThreadPoolExecutor(max_workers=2) as pool:
            shard_date_lists = list(pool.map(shard_dates, shards))
        got: dict[str, list] = {}
        for dates in shard_date_lists:
            assert np.all(np.diff(dates) > 0)  # sorted, no repeats
            for start in range(0, len(dates), 64):
                for key, value in windows.gather(dates[start:start + 64]).items():
                    got.setdefault(key, []).append(value)
        dates = np.concatenate(got["date_idx"])
        order = np.argsort(dates)
        np.testing.assert_array_equal(dates[order], windows.dates_idx)  # every date exactly once
        expected = windows.batch(np.arange(len(windows)))
        for key, value in expected.items():
            if key == "asset_ids":
                continue
            np.testing.assert_array_equal(np.concatenate(got[key])[order], value, err_msg=key)
    finally:
        ray.shutdown()


def test_stacked_blocks_give_each_sample_its_own_blocks_batch():
    # the server stacks the windows of queued requests into one block: every sample's batch (its
    # features, risk, and news, whose window here reaches further back than the lookback) must be
    # the one its own request gives, never rows of the request stacked before it
    config = DataConfig(source="synthetic:assets=4,days=500,seed=2", lookback=16, horizon=3,
                        features=FeatureConfig(norm_window=60), risk=RiskConfig(model="one_factor"),
                        news=NewsConfig(source="synthetic:seed=2,informed=0.5", dim=16, window=24))
    prepared = prepare(config)
    pipeline = prepared.pipeline()
    parts = [pipeline.windows(prepared.panel.head(n)) for n in (300, 180, 420)]
    stacked = stack_windows(parts)
    assert len(stacked) == sum(len(w) for w in parts)
    start = 0
    for part in parts:
        rows = np.arange(start, start + len(part))
        want, got = part.batch(np.arange(len(part))), stacked.batch(rows)
        assert set(got) == set(want) and {"news", "news_mask", "beta"} <= set(got)
        for key in set(want) - {"date_idx"}:
            np.testing.assert_array_equal(got[key], want[key], err_msg=key)
        start += len(part)
