"""NT-Xent contrastive pretraining: the loss, every family's encoder, and the loop's phase."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from quantray import models
from quantray.config import PretrainConfig
from quantray.data.pipeline import prepare
from quantray.errors import BadInput
from quantray.train.contrastive import contrastive_loss, nt_xent, projection_head
from quantray.train.batches import DeviceWindows
from quantray.train.loop import InProcessSession, directory_reporter, fit, latest_in

from test_train_loop import CONFIG, DATA


@pytest.fixture(scope="module")
def data():
    return prepare(DATA)


def test_nt_xent_rewards_matching_pairs() -> None:
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(32, 8, generator=generator)
    matched = nt_xent(a, a + 0.05 * torch.randn(32, 8, generator=generator), temperature=0.1)
    shuffled = nt_xent(a, a[torch.randperm(32, generator=generator)], temperature=0.1)
    assert matched < 0.5 < np.log(63) / 2 < shuffled
    # a uniform similarity is chance: log(2N - 1)
    assert nt_xent(torch.ones(4, 3), torch.ones(4, 3), temperature=1.0) == pytest.approx(np.log(7), rel=1e-5)


@pytest.mark.parametrize(("family", "augment"),
                         [(f, "jitter") for f in models.FAMILIES if models.has_encoder(f)]
                         + [("transformer", "adjacent"), ("gnn", "both")])
def test_any_familys_encoder_pretrains(data, family: str, augment: str) -> None:
    pipeline = data.pipeline()
    torch.manual_seed(0)
    model = models.build(family, n_assets=pipeline.n_assets, n_features=pipeline.n_features, lookback=pipeline.lookback,
                         feature_names=pipeline.feature_names, d_model=8, **({} if family == "cnn_lstm" else {"n_heads": 2}))
    projection = projection_head(model.embedding_dim, 16)
    tensors = DeviceWindows(data.windows("train"), "cpu").batch(np.arange(16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = contrastive_loss(model, projection, tensors, PretrainConfig(epochs=1, augment=augment))
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_pretraining_a_family_without_an_encoder_is_refused_naming_the_key(data, tmp_path: Path) -> None:
    assert not models.has_encoder("linear") and models.has_encoder("transformer")
    linear = dataclasses.replace(CONFIG.model, family="linear", arch={})
    config = dataclasses.replace(CONFIG, model=linear, pretrain=PretrainConfig(epochs=1))
    session = InProcessSession(data, config, report=directory_reporter(tmp_path / "a", lambda _: None),
                               latest_checkpoint=latest_in(tmp_path / "a"))
    with pytest.raises(BadInput, match="pretrain.epochs: the linear family has no encoder"):
        fit(config, data, session)
    assert not (tmp_path / "a").exists() or not any((tmp_path / "a").iterdir())  # nothing trained, nothing kept


def test_the_loop_pretrains_then_fine_tunes_and_reports_the_pretraining(data, tmp_path: Path) -> None:
    config = dataclasses.replace(CONFIG, pretrain=PretrainConfig(epochs=3, temperature=0.2, augment="both", lr=3e-3))
    reports: list[dict] = []
    session = InProcessSession(data, config, report=directory_reporter(tmp_path / "a", reports.append),
                               latest_checkpoint=latest_in(tmp_path / "a"))
    summary = fit(config, data, session)
    assert summary.pretrain_epochs == 3 and summary.epochs_run == config.optim.epochs
    assert [r["epoch"] for r in reports] == [1, 2]
    assert all(r["pretrain_epochs"] == 3 and np.isfinite(r["pretrain_loss"]) for r in reports)
    plain: list[dict] = []
    fit(CONFIG, data, InProcessSession(data, CONFIG, report=directory_reporter(tmp_path / "b", plain.append)))
    assert plain[0]["pretrain_epochs"] == 0 and plain[0]["val_loss"] != reports[0]["val_loss"]
    # a resumed run does not pretrain again
    longer = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=3))
    resumed = fit(longer, data, InProcessSession(data, longer, report=directory_reporter(tmp_path / "a"),
                                                 latest_checkpoint=latest_in(tmp_path / "a")))
    assert resumed.pretrain_epochs == 0 and resumed.epochs_run == 1


def test_bad_pretrain_settings_are_bad_input() -> None:
    with pytest.raises(BadInput, match="pretrain.augment"):
        PretrainConfig(augment="rotate")
    with pytest.raises(BadInput, match="temperature"):
        PretrainConfig(temperature=0.0)
