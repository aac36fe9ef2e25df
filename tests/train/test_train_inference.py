"""Every way a trained model is run reads what it was trained on: its news tokens go in, in
inference (positions) as in the diagnostics (the class heads)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from quantray import models
from quantray.config import DataConfig, FeatureConfig, NewsConfig
from quantray.data.pipeline import prepare
from quantray.data.windows import Windows
from quantray.train.diagnostics import run_heads
from quantray.train.inference import run_model

DATA = DataConfig(source="synthetic:assets=4,days=400,seed=3", lookback=16, horizon=3,
                  features=FeatureConfig(norm_window=60),
                  news=NewsConfig(source="synthetic:seed=3,informed=0.5", dim=16, window=4))


def test_inference_and_diagnostics_read_the_news() -> None:
    prepared = prepare(DATA)
    windows = prepared.windows("test")
    torch.manual_seed(0)
    model = models.build("transformer", n_assets=windows.n_assets, n_features=windows.n_features,
                         lookback=DATA.lookback, feature_names=prepared.features.names, news_dim=16,
                         d_model=16, n_heads=2, news_attention=True).eval()
    other_news = dataclasses.replace(windows.news, values=np.random.default_rng(0).normal(
        size=windows.news.values.shape).astype(np.float32))
    other = Windows(windows.features, windows.labels, windows.mask, windows.lookback, windows.dates_idx,
                    other_news, windows.risk)
    assert not np.allclose(run_model(model, windows).positions, run_model(model, other).positions)
    heads, other_heads = run_heads(model, windows), run_heads(model, other)
    assert heads.predicted and any(not np.array_equal(heads.predicted[h], other_heads.predicted[h])
                                   for h in heads.predicted)
