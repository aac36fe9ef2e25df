"""The training loop without Ray: reports, checkpoints, resume, NaN failure, weights-only load."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from quantray.config import DataConfig, FeatureConfig, ModelConfig, OptimConfig, SplitConfig, TrainConfig
from quantray.data.pipeline import prepare
from quantray.errors import BadInput
from quantray.train.checkpoint import load_checkpoint
from quantray.train.inference import run_model
from quantray.train.loop import BEST_DIR, STATE_FILE, InProcessSession, directory_reporter, fit, latest_in

DATA = DataConfig(
    source="synthetic:seed=1,assets=4,days=500",
    lookback=16,
    horizon=3,
    features=FeatureConfig(names=("log_return", "range", "volatility", "rsi"), norm_window=64),
    splits=SplitConfig(val_fraction=0.2, test_fraction=0.2, embargo=3),
)
CONFIG = TrainConfig(
    data=DATA,
    model=ModelConfig(family="transformer", arch={"d_model": 8, "n_heads": 2, "dropout": 0.0}),
    optim=OptimConfig(lr=3e-3, epochs=2, batch_dates=32),
    seed=5,
)


@pytest.fixture(scope="module")
def data():
    return prepare(DATA)


def train(config: TrainConfig, data, checkpoint_dir: Path) -> list[dict]:
    reports: list[dict] = []
    session = InProcessSession(data, config, report=directory_reporter(checkpoint_dir, reports.append),
                               latest_checkpoint=latest_in(checkpoint_dir))
    fit(config, data, session)
    return reports


def test_fit_reports_every_epoch_and_keeps_the_best_checkpoint(data, tmp_path: Path) -> None:
    reports = train(CONFIG, data, tmp_path / "ckpt")
    assert [r["epoch"] for r in reports] == [1, 2]
    for r in reports:
        assert {"val_sharpe", "val_loss", "val_ic", "val_hit_rate", "train_loss"} <= set(r)
        assert np.isfinite(r["val_sharpe"]) and np.isfinite(r["train_loss"])
    # the epoch is chosen on the early-stopping block; the run's score is that epoch's validation Sharpe
    chosen = max(reports, key=lambda r: r["stop_sharpe"])
    assert reports[-1]["best_epoch"] == chosen["epoch"]
    assert reports[-1]["best_val_sharpe"] == chosen["val_sharpe"]
    assert (tmp_path / "ckpt" / STATE_FILE).exists()

    member = load_checkpoint(tmp_path / "ckpt" / BEST_DIR)  # weights_only load inside
    assert member.config == CONFIG
    assert member.metrics["val_sharpe"] == pytest.approx(reports[-1]["best_val_sharpe"])
    val = data.windows("val")
    positions = run_model(member.model, val).positions
    np.testing.assert_allclose(positions, member.val_positions, atol=1e-5)
    assert member.val_returns.shape == (len(val),)


def test_without_a_stop_block_the_epoch_is_chosen_on_validation(tmp_path: Path) -> None:
    data_config = dataclasses.replace(DATA, splits=dataclasses.replace(DATA.splits, stop_fraction=0.0))
    config = dataclasses.replace(CONFIG, data=data_config, optim=dataclasses.replace(CONFIG.optim, epochs=3))
    reports = train(config, prepare(data_config), tmp_path / "ckpt")
    assert all("stop_sharpe" not in r for r in reports)
    chosen = max(reports, key=lambda r: r["val_sharpe"])
    assert (reports[-1]["best_epoch"], reports[-1]["best_val_sharpe"]) == (chosen["epoch"], chosen["val_sharpe"])


def test_resume_continues_where_it_stopped(data, tmp_path: Path) -> None:
    straight = train(CONFIG, data, tmp_path / "straight")
    one_epoch = dataclasses.replace(CONFIG, optim=dataclasses.replace(CONFIG.optim, epochs=1))
    train(one_epoch, data, tmp_path / "resumed")
    resumed = train(CONFIG, data, tmp_path / "resumed")
    assert [r["epoch"] for r in resumed] == [2]  # epoch 1 was not run again
    assert resumed[0]["val_sharpe"] == pytest.approx(straight[1]["val_sharpe"], abs=1e-6)
    a = torch.load(tmp_path / "straight" / STATE_FILE, weights_only=True)["model"]
    b = torch.load(tmp_path / "resumed" / STATE_FILE, weights_only=True)["model"]
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_early_stopping_ends_the_run_patience_epochs_after_the_chosen_one(data, tmp_path: Path) -> None:
    longer = dataclasses.replace(CONFIG, optim=dataclasses.replace(CONFIG.optim, epochs=6))
    straight = train(longer, data, tmp_path / "straight")
    for patience in (1, 2):
        stopped = train(dataclasses.replace(longer, optim=dataclasses.replace(longer.optim, patience=patience)),
                        data, tmp_path / f"patience{patience}")
        # the run is the straight run's first epochs, up to `patience` epochs past the chosen one
        expected = next((r["epoch"] for r in straight if r["epoch"] - r["best_epoch"] >= patience), 6)
        assert [r["epoch"] for r in stopped] == list(range(1, expected + 1))
        assert [r["val_sharpe"] for r in stopped] == pytest.approx([r["val_sharpe"] for r in straight[:expected]])

    # a model that cannot improve (lr 0: every epoch scores the same) keeps epoch 1 and stops at 1 + patience
    frozen = dataclasses.replace(longer, optim=dataclasses.replace(longer.optim, lr=0.0, patience=2))
    reports = train(frozen, data, tmp_path / "frozen")
    assert [r["epoch"] for r in reports] == [1, 2, 3] and reports[-1]["best_epoch"] == 1


def test_patience_is_a_number_of_epochs() -> None:
    with pytest.raises(BadInput, match="optim.patience"):
        OptimConfig(patience=-1)


def test_a_diverging_loss_raises_instead_of_training_on(data, tmp_path: Path) -> None:
    exploding = dataclasses.replace(CONFIG, optim=dataclasses.replace(CONFIG.optim, lr=1e30))
    with pytest.raises(FloatingPointError, match="training loss became"):
        train(exploding, data, tmp_path / "nan")
