"""Views to positions through the risk model: the mean-variance portfolio Σ⁻¹·view, and the same
book in training, validation and inference."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from quantray.config import RiskConfig
from quantray.data.pipeline import prepare
from quantray.train.batches import DeviceWindows
from quantray.train.checkpoint import load_checkpoint
from quantray.train.inference import run_model
from quantray.train.inference import run_batch
from quantray.train.loop import BEST_DIR, evaluate
from quantray.train.risk import risk_positions

from tests.train.test_train_loop import CONFIG, DATA, train

RISK_DATA = dataclasses.replace(DATA, risk=RiskConfig(model="one_factor"))
RISK_CONFIG = dataclasses.replace(CONFIG, data=RISK_DATA)


def random_risk(seed: int = 0, B: int = 6, A: int = 5) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(seed)
    mask = rng.random((B, A)) > 0.25
    mask[:, 0] = True
    return {"mask": torch.as_tensor(mask), "beta": torch.as_tensor(rng.uniform(0.5, 1.5, (B, A)), dtype=torch.float32),
            "idio_var": torch.as_tensor(rng.uniform(1e-4, 4e-4, (B, A)), dtype=torch.float32),
            "market_var": torch.as_tensor(rng.uniform(1e-4, 4e-4, B), dtype=torch.float32)}


def test_positions_are_the_mean_variance_portfolio_of_the_views() -> None:
    batch = random_risk()
    view = torch.as_tensor(np.random.default_rng(1).uniform(-0.4, 0.4, batch["mask"].shape), dtype=torch.float32)
    position = risk_positions(view, batch)
    for b in range(len(view)):
        active = batch["mask"][b].numpy()
        beta, idio = batch["beta"][b].numpy()[active].astype(float), batch["idio_var"][b].numpy()[active].astype(float)
        sigma = batch["market_var"][b].item() * np.outer(beta, beta) + np.diag(idio)
        expected = np.clip(np.linalg.solve(sigma, view[b].numpy()[active]) * idio.mean(), -1.0, 1.0)
        np.testing.assert_allclose(position[b].numpy()[active], expected, atol=1e-6)
        assert (position[b].numpy()[~active] == 0).all()


def test_the_book_hedges_its_market_exposure() -> None:
    """All-long views on assets that move with the market become a book with far less beta."""
    batch = random_risk()
    batch["market_var"] = batch["market_var"] * 10  # the market dominates the assets' variance
    view = torch.where(batch["mask"], 0.3, 0.0)
    position = risk_positions(view, batch)
    exposure = lambda p: (p * batch["beta"]).sum(dim=1).abs()  # noqa: E731
    assert (exposure(position) < 0.2 * exposure(view)).all()


def test_without_a_risk_model_or_correlation_the_views_are_the_positions() -> None:
    batch = random_risk()
    view = torch.as_tensor(np.random.default_rng(2).uniform(-1, 1, batch["mask"].shape), dtype=torch.float32)
    view = torch.where(batch["mask"], view, 0.0)
    assert torch.equal(risk_positions(view, {"mask": batch["mask"]}), view)
    flat = dict(batch, beta=torch.zeros_like(batch["beta"]), idio_var=torch.full_like(batch["idio_var"], 2e-4))
    torch.testing.assert_close(risk_positions(view, flat), view)


def test_a_lone_asset_trades_its_view() -> None:
    """With one active asset (a one-asset universe, or the only one trading that date) there is
    nothing to hedge against: its own variance is all market, and the book is the view."""
    batch = random_risk(B=3, A=4)
    batch["mask"] = torch.tensor([[True, False, False, False], [False, False, True, False], [True, True, False, False]])
    view = torch.where(batch["mask"], torch.tensor([[0.4, 0.0, 0.0, 0.0], [0.0, 0.0, -0.7, 0.0], [0.3, 0.2, 0.0, 0.0]]), 0.0)
    position = risk_positions(view, batch)
    torch.testing.assert_close(position[:2], view[:2])
    assert not torch.allclose(position[2], view[2])  # two assets: hedged against each other


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    data = prepare(RISK_DATA)
    directory = tmp_path_factory.mktemp("risk") / "ckpt"
    train(RISK_CONFIG, data, directory)
    return data, load_checkpoint(directory / BEST_DIR)


def test_training_validation_and_inference_trade_the_same_book(trained) -> None:
    data, member = trained
    val = data.windows("val")
    batch = DeviceWindows(val, "cpu").batch(np.arange(len(val)))
    member.model.eval()
    with torch.no_grad():
        trades = run_batch(member.model, batch).position
        views = member.model(batch["x"], batch["asset_ids"], batch["mask"]).position
    assert not torch.allclose(trades, views)  # the risk model changed them
    torch.testing.assert_close(trades, risk_positions(views, batch))
    inferred = run_model(member.model, val).positions  # the ensemble's members, backtest, pyfunc, server
    np.testing.assert_allclose(inferred, trades.numpy(), atol=1e-5)
    np.testing.assert_allclose(member.val_positions, inferred, atol=1e-5)
    np.testing.assert_allclose(evaluate(member.model, val, RISK_CONFIG).positions, inferred, atol=1e-5)


def test_device_batches_carry_the_risk_windows_carry(trained) -> None:
    windows = trained[0].windows("train")
    dates = windows.dates_idx[[0, 3, len(windows) - 1]]
    expected, actual = windows.gather(dates), DeviceWindows(windows, "cpu").gather(dates)
    for key in ("beta", "idio_var", "market_var"):
        np.testing.assert_array_equal(actual[key].numpy(), expected[key], err_msg=key)
