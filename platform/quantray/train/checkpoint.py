"""A trained member on disk: weights (loadable weights-only), resolved config, validation record.

Layout of a checkpoint directory:
    model.pt            state_dict, loads with torch.load(weights_only=True)
    config.json         {"config": TrainConfig as a dict}
    pipeline.json       the fitted data pipeline the model was trained through (quantray.data.pipeline),
    scaler.npz          with its train_* scaler when there is one
    metrics.json        the metrics of the epoch this checkpoint is from
    val_returns.npy     net daily returns on the validation block [Tv]
    val_positions.npy   positions on the validation block [Tv, A]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantray.config import TrainConfig, resolve, to_dict
from quantray.data.pipeline import DataPipeline, load_pipeline
from quantray.errors import BadInput
from quantray.workspace import atomic_dir

if TYPE_CHECKING:
    import torch


@dataclass
class Member:
    """A loaded checkpoint: the model in eval mode plus everything recorded with it."""

    model: "torch.nn.Module"
    config: TrainConfig
    pipeline: DataPipeline  # the only way to make this model's inputs from a panel
    metrics: dict[str, float]
    val_returns: np.ndarray
    val_positions: np.ndarray
    path: Path


def build_model(config: TrainConfig, pipeline: DataPipeline) -> "torch.nn.Module":
    from quantray import models  # lazy: the families import torch

    return models.build(
        config.model.family,
        n_assets=pipeline.n_assets,
        n_features=pipeline.n_features,
        lookback=pipeline.lookback,
        feature_names=pipeline.feature_names,
        news_dim=pipeline.news_dim,
        **config.model.arch,
    )


def save_checkpoint(
    path: Path,
    model: "torch.nn.Module",
    config: TrainConfig,
    pipeline: DataPipeline,
    metrics: dict[str, float],
    val_returns: np.ndarray,
    val_positions: np.ndarray,
) -> None:
    """Write a checkpoint directory atomically (a sibling temp dir, then a rename)."""
    import torch

    with atomic_dir(path) as tmp:
        state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
        torch.save(state, tmp / "model.pt")
        (tmp / "config.json").write_text(json.dumps({"config": to_dict(config)}, indent=2))
        pipeline.save(tmp)
        (tmp / "metrics.json").write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2))
        np.save(tmp / "val_returns.npy", np.asarray(val_returns, dtype=np.float64))
        np.save(tmp / "val_positions.npy", np.asarray(val_positions, dtype=np.float32))


def load_checkpoint(path: Path, device: str = "cpu") -> Member:
    """Load a checkpoint directory; the weights load with `weights_only=True`."""
    import torch

    path = Path(path)
    if not (path / "model.pt").is_file() or not (path / "config.json").is_file():
        raise BadInput(f"{path}: not a quantray checkpoint (needs model.pt and config.json)")
    meta = json.loads((path / "config.json").read_text())
    config = resolve(TrainConfig, meta["config"], where=str(path / "config.json"), key="config")
    pipeline = load_pipeline(path)
    model = build_model(config, pipeline)
    model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
    model.to(device).eval()
    metrics: dict[str, Any] = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
    return Member(
        model=model,
        config=config,
        pipeline=pipeline,
        metrics=metrics,
        val_returns=np.load(path / "val_returns.npy"),
        val_positions=np.load(path / "val_positions.npy"),
        path=path,
    )


def unwrap(model: "torch.nn.Module") -> "torch.nn.Module":
    """The module inside a DistributedDataParallel wrapper, or the model itself."""
    return getattr(model, "module", model)
