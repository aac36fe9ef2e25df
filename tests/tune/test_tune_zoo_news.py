"""The zoo configs of seeds 000 and 001 train for an epoch (test_tune_space validates them)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import optuna
import pytest

from quantray.data.pipeline import prepare
from quantray.train.loop import InProcessSession, fit
from quantray.tune.space import load_space

ZOO = Path(__file__).resolve().parents[2] / "search_spaces" / "zoo"


@pytest.mark.parametrize("name", ["news_cross_attention_spy", "embedding_suite"])
def test_zoo_config_trains_for_an_epoch(name: str) -> None:
    space = load_space(ZOO / f"{name}.yaml")
    config = space.resolve(space.suggest(optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()))
    # an epoch of the config with its options as they are, made small: a narrower model, a shorter
    # window, fewer training dates (a long test block) and one pretraining epoch
    data = dataclasses.replace(
        config.data, lookback=24,
        source=config.data.source + (",days=500" if "synthetic" in config.data.source else ""),
        splits=dataclasses.replace(config.data.splits, val_fraction=0.1, test_fraction=0.75 if "bundled" in config.data.source else 0.3))
    config = dataclasses.replace(
        config, data=data, model=dataclasses.replace(config.model, arch={**config.model.arch, "d_model": 16}),
        optim=dataclasses.replace(config.optim, epochs=1),
        pretrain=dataclasses.replace(config.pretrain, epochs=min(config.pretrain.epochs, 1)))
    prepared = prepare(config.data)
    reports: list[dict] = []
    summary = fit(config, prepared, InProcessSession(prepared, config, report=lambda m, w: reports.append(m)))
    assert summary.epochs_run == 1 and np.isfinite(reports[0]["val_sharpe"]) and np.isfinite(reports[0]["train_loss"])
    assert reports[0]["pretrain_epochs"] == summary.pretrain_epochs
    if config.data.news.enabled:
        assert config.model.arch["news_attention"] and prepared.pipeline().news_dim == config.data.news.dim
