"""Real members for the ensemble and registry tests: small models trained for a few steps on a
small synthetic panel and saved with save_checkpoint, the way a search leaves them. The data has a
risk model, so the fusion, the artifact, the pyfunc and the server are all tested trading the
book the members were trained on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from quantray.config import DataConfig, FeatureConfig, ModelConfig, OptimConfig, RiskConfig, SplitConfig, TrainConfig
from quantray.data.pipeline import Prepared, prepare
from quantray.train.checkpoint import build_model, save_checkpoint
from quantray.train.batches import DeviceWindows
from quantray.train.inference import run_batch
from quantray.train.loop import consecutive_batches, evaluate
from quantray.train.losses import objective

DATA = DataConfig(
    source="synthetic:seed=3,assets=4,days=520",
    lookback=16,
    horizon=3,
    cost_bps=5.0,
    features=FeatureConfig(names=("log_return", "range", "volatility", "rsi"), norm_window=64),
    splits=SplitConfig(val_fraction=0.25, test_fraction=0.2, embargo=3),
    risk=RiskConfig(model="one_factor"),
)
MEMBERS: list[tuple[str, dict[str, Any]]] = [
    ("transformer", {"d_model": 8, "n_heads": 2, "dropout": 0.0}),
    ("cnn_lstm", {"d_model": 8, "kernel_size": 3, "dropout": 0.0}),
    ("transformer", {"d_model": 12, "n_heads": 2, "dropout": 0.0, "pooling": "last"}),
]


def train_member(prepared: Prepared, family: str, arch: dict[str, Any], seed: int, directory: Path,
                 steps: int = 6, data: DataConfig = DATA) -> Path:
    """Build a real model, train it for `steps` batches with the objective, save its checkpoint."""
    config = TrainConfig(data=data, model=ModelConfig(family=family, arch=arch),
                         optim=OptimConfig(lr=3e-3, batch_dates=32), seed=seed)
    pipeline = prepared.pipeline()
    torch.manual_seed(seed)
    model = build_model(config, pipeline)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr)
    train = prepared.windows("train")
    rng = np.random.default_rng(seed)
    for step, rows in enumerate(consecutive_batches(len(train), config.optim.batch_dates, rng)):
        if step == steps:
            break
        batch = DeviceWindows(train, "cpu").batch(rows)
        loss, _ = objective(run_batch(model, batch), batch, config.loss, data.cost_bps)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    result = evaluate(model, prepared.windows("val"), config)
    save_checkpoint(directory, model, config, pipeline, result.metrics, result.returns, result.positions)
    return directory


def train_members(prepared: Prepared, root: Path) -> list[Path]:
    return [train_member(prepared, family, arch, seed, root / f"trial_{seed}")
            for seed, (family, arch) in enumerate(MEMBERS)]


# fixtures, imported by the conftest.py of tests/ensemble and tests/registry
@pytest.fixture(scope="session")
def prepared() -> Prepared:
    return prepare(DATA)


@pytest.fixture(scope="session")
def member_dirs(prepared: Prepared, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return train_members(prepared, tmp_path_factory.mktemp("members"))
