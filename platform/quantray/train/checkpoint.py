"""A trained member on disk: weights (loadable weights-only), resolved config, validation record.

Layout of a checkpoint directory:
    model.pt            state_dict, loads with torch.load(weights_only=True)
    config.json         {"config": TrainConfig as a dict, "shape": ModelShape as a dict}
    metrics.json        the metrics of the epoch this checkpoint is from
    val_returns.npy     net daily returns on the validation block [Tv]
    val_positions.npy   positions on the validation block [Tv, A]
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quantray.config import TrainConfig, resolve, to_dict
from quantray.errors import BadInput

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ModelShape:
    """What a model was built for, beyond its architecture arguments."""

    n_assets: int
    n_features: int
    lookback: int
    asset_names: tuple[str, ...]
    feature_names: tuple[str, ...]


@dataclass
class Member:
    """A loaded checkpoint: the model in eval mode plus everything recorded with it."""

    model: "torch.nn.Module"
    config: TrainConfig
    shape: ModelShape
    metrics: dict[str, float]
    val_returns: np.ndarray
    val_positions: np.ndarray
    path: Path


def build_model(config: TrainConfig, shape: ModelShape) -> "torch.nn.Module":
    from quantray import models

    return models.build(
        config.model.family,
        n_assets=shape.n_assets,
        n_features=shape.n_features,
        lookback=shape.lookback,
        **config.model.arch,
    )


def save_checkpoint(
    path: Path,
    model: "torch.nn.Module",
    config: TrainConfig,
    shape: ModelShape,
    metrics: dict[str, float],
    val_returns: np.ndarray,
    val_positions: np.ndarray,
) -> None:
    """Write a checkpoint directory atomically (a sibling temp dir, then a rename)."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
        torch.save(state, tmp / "model.pt")
        meta = {"config": to_dict(config), "shape": asdict(shape)}
        (tmp / "config.json").write_text(json.dumps(meta, indent=2))
        (tmp / "metrics.json").write_text(json.dumps({k: float(v) for k, v in metrics.items()}, indent=2))
        np.save(tmp / "val_returns.npy", np.asarray(val_returns, dtype=np.float64))
        np.save(tmp / "val_positions.npy", np.asarray(val_positions, dtype=np.float32))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_checkpoint(path: Path, device: str = "cpu") -> Member:
    """Load a checkpoint directory; the weights load with `weights_only=True`."""
    import torch

    path = Path(path)
    if not (path / "model.pt").is_file() or not (path / "config.json").is_file():
        raise BadInput(f"{path}: not a quantray checkpoint (needs model.pt and config.json)")
    meta = json.loads((path / "config.json").read_text())
    config = resolve(TrainConfig, meta["config"], where=str(path / "config.json"), key="config")
    raw = meta["shape"]
    shape = ModelShape(
        n_assets=int(raw["n_assets"]),
        n_features=int(raw["n_features"]),
        lookback=int(raw["lookback"]),
        asset_names=tuple(raw["asset_names"]),
        feature_names=tuple(raw["feature_names"]),
    )
    model = build_model(config, shape)
    model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
    model.to(device).eval()
    metrics: dict[str, Any] = json.loads((path / "metrics.json").read_text()) if (path / "metrics.json").exists() else {}
    return Member(
        model=model,
        config=config,
        shape=shape,
        metrics=metrics,
        val_returns=np.load(path / "val_returns.npy"),
        val_positions=np.load(path / "val_positions.npy"),
        path=path,
    )


def unwrap(model: "torch.nn.Module") -> "torch.nn.Module":
    """The module inside a DistributedDataParallel wrapper, or the model itself."""
    return getattr(model, "module", model)
