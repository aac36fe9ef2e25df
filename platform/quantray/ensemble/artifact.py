"""The saved ensemble: everything needed to turn an OHLCV panel into positions, in one directory.

    ensemble.json   method, member trial ids, weights, validation Sharpe, the shared DataConfig,
                    asset and feature names, the fusion settings and head input sizes
    members/<i>/    copies of the member checkpoint directories (quantray.train.checkpoint)
    fusion.pt       the fusion head's state_dict, loadable weights-only (absent for greedy)
    scaler.npz      the training-date scaler (center, scale [A, F]) for train_* normalization

The directory is written beside its target and renamed into place, so it is whole or absent.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantray.config import DataConfig, resolve, to_dict
from quantray.data.features import Scaler, apply_scaler, build_features
from quantray.data.labels import build_labels
from quantray.data.panel import Oracle, Panel
from quantray.data.windows import Windows
from quantray.ensemble.fusion import EnsembleModel, FusionConfig, build_head
from quantray.errors import BadInput
from quantray.train.checkpoint import load_checkpoint

FORMAT_VERSION = 2  # 2: fusion heads correct the members' consensus (ConsensusStart)


@dataclass
class Prediction:
    dates: np.ndarray  # datetime64[D] [T]
    assets: tuple[str, ...]  # [A]
    positions: np.ndarray  # float32 [T, A] in [-1, 1]; 0 where an asset lacks the history for a window
    embeddings: np.ndarray | None  # float32 [T, A, E] fused embeddings (0 where positions are), when asked


@dataclass
class Ensemble:
    """A fitted fusion of frozen members with the data recipe it was fit on."""

    model: EnsembleModel
    data: DataConfig  # shared by every member: source, lookback, horizon, costs, features, splits
    asset_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    member_ids: tuple[str, ...]  # the trial ids the members come from
    val_sharpe: float  # annualized validation net Sharpe of the fused positions
    scaler: Scaler | None = None  # for train_* normalization; None for rolling/none

    @property
    def method(self) -> str:
        return self.model.method

    @property
    def lookback(self) -> int:
        return self.data.lookback

    def predict(self, panel: Panel, embeddings: bool = False) -> Prediction:
        """Positions for every date of `panel` (0 before an asset has `lookback` dates of features)."""
        panel = select_assets(panel, self.asset_names)
        windows = self.windows(panel)
        out = self.model.run(windows, embeddings=embeddings)
        positions = np.zeros((panel.n_dates, panel.n_assets), dtype=np.float32)
        positions[windows.dates_idx] = out.positions
        fused = None
        if embeddings:
            fused = np.zeros((panel.n_dates, panel.n_assets, out.embeddings.shape[-1]), dtype=np.float32)
            fused[windows.dates_idx] = out.embeddings
        return Prediction(dates=panel.dates, assets=panel.assets, positions=positions, embeddings=fused)

    def windows(self, panel: Panel) -> Windows:
        """Windows at every date of `panel` with a full lookback, features built as in training."""
        if panel.n_dates < self.lookback:
            raise BadInput(f"panel: {panel.n_dates} dates, fewer than the ensemble's lookback {self.lookback}")
        features = build_features(panel, self.data.features)
        if features.names != self.feature_names:
            missing = [name for name in self.feature_names if name not in features.names]
            raise BadInput(f"panel: cannot build feature(s) {', '.join(missing) or 'in the trained order'} "
                           f"the ensemble was trained on (panel fields: {', '.join(panel.fields)})")
        if self.scaler is not None:
            features = apply_scaler(features, self.scaler)
        labels = build_labels(panel, self.data.horizon)  # only for Windows' shape; unknown at the end
        return Windows(features.values, labels, features.valid, self.lookback,
                       np.arange(self.lookback - 1, panel.n_dates))


def select_assets(panel: Panel, assets: tuple[str, ...]) -> Panel:
    """`panel` restricted to `assets`, in that order (the models' ticker embeddings are by position)."""
    index = {name: i for i, name in enumerate(panel.assets)}
    missing = [name for name in assets if name not in index]
    if missing:
        raise BadInput(f"panel: asset '{missing[0]}' is missing (the ensemble trades {', '.join(assets)}; "
                       f"the panel has {', '.join(panel.assets)})")
    order = [index[name] for name in assets]
    if order == list(range(panel.n_assets)):
        return panel
    oracle = None
    if panel.oracle is not None:
        oracle = Oracle(panel.oracle.positions[:, order], panel.oracle.sharpe, panel.oracle.expected_return[:, order])
    origins = tuple(panel.origins[i] for i in order) if panel.origins else ()
    return Panel(panel.dates, assets, panel.fields, panel.values[:, order], panel.mask[:, order], oracle, origins)


# ---- save / load ---------------------------------------------------------------------------------

def save_ensemble(directory: Path, ensemble: Ensemble) -> Path:
    """Write `ensemble` to `directory` atomically (a sibling temp dir, then a rename)."""
    import torch

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for i, member in enumerate(ensemble.model.members):
            shutil.copytree(member.path, tmp / "members" / str(i))
        if ensemble.model.head is not None:
            state = {k: v.detach().cpu() for k, v in ensemble.model.head.state_dict().items()}
            torch.save(state, tmp / "fusion.pt")
        if ensemble.scaler is not None:
            np.savez(tmp / "scaler.npz", center=ensemble.scaler.center, scale=ensemble.scaler.scale)
        (tmp / "ensemble.json").write_text(json.dumps(describe(ensemble), indent=2))
        if directory.exists():
            shutil.rmtree(directory)
        os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def describe(ensemble: Ensemble) -> dict[str, Any]:
    """The ensemble.json document."""
    model = ensemble.model
    return {
        "format": FORMAT_VERSION,
        "method": model.method,
        "members": list(ensemble.member_ids),
        "weights": [float(w) for w in model.weights],
        "val_sharpe": float(ensemble.val_sharpe),
        "data": to_dict(ensemble.data),
        "asset_names": list(ensemble.asset_names),
        "feature_names": list(ensemble.feature_names),
        "fusion": model.config.to_dict(),
        "head_dims": list(model.head.dims) if model.head is not None else None,
        "scaler": None if ensemble.scaler is None else {"method": ensemble.scaler.method,
                                                         "clip": float(ensemble.scaler.clip)},
    }


def load_ensemble(directory: Path) -> Ensemble:
    """Read an ensemble directory written by `save_ensemble`; the weights load weights-only."""
    import torch

    directory = Path(directory)
    where = directory / "ensemble.json"
    if not where.is_file():
        raise BadInput(f"{directory}: not a quantray ensemble (no ensemble.json)")
    meta = json.loads(where.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise BadInput(f"{where}: key 'format': expected {FORMAT_VERSION}, got {meta.get('format')!r}")
    members = [load_checkpoint(directory / "members" / str(i)) for i in range(len(meta["members"]))]
    fusion = resolve(FusionConfig, meta["fusion"], where=str(where), key="fusion")
    head = None
    if meta["head_dims"] is not None:
        head = build_head(meta["method"], meta["head_dims"], fusion)
        head.load_state_dict(torch.load(directory / "fusion.pt", map_location="cpu", weights_only=True))
    scaler = None
    if meta["scaler"] is not None:
        arrays = np.load(directory / "scaler.npz")
        scaler = Scaler(meta["scaler"]["method"], arrays["center"], arrays["scale"], meta["scaler"]["clip"])
    return Ensemble(
        model=EnsembleModel(members, meta["method"], head, np.asarray(meta["weights"]), fusion),
        data=resolve(DataConfig, meta["data"], where=str(where), key="data"),
        asset_names=tuple(meta["asset_names"]),
        feature_names=tuple(meta["feature_names"]),
        member_ids=tuple(meta["members"]),
        val_sharpe=float(meta["val_sharpe"]),
        scaler=scaler,
    )
