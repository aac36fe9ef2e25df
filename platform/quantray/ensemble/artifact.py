"""The saved ensemble: everything needed to turn an OHLCV panel into positions, in one directory.

    ensemble.json   method, member trial ids, weights, validation Sharpe, the fusion settings and
                    head input sizes
    pipeline.json   the fitted data pipeline every member shares (quantray.data.pipeline), with
    scaler.npz      its training-date scaler for train_* normalization
    members/<i>/    copies of the member checkpoint directories (quantray.train.checkpoint)
    fusion.pt       the fusion head's state_dict, loadable weights-only (absent for greedy and mean)

The directory is written beside its target and swapped in (quantray.workspace.atomic_dir), so it
is whole or absent, and a failed write keeps the previous copy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantray.config import resolve
from quantray.data.panel import Panel
from quantray.data.pipeline import DataPipeline, load_pipeline
from quantray.ensemble.fusion import EnsembleModel, FusionConfig, build_head
from quantray.errors import BadInput
from quantray.train.checkpoint import load_checkpoint
from quantray.workspace import atomic_dir

# 2: fusion heads correct the members' consensus (ConsensusStart); 3: the fitted data pipeline
FORMAT_VERSION = 3


@dataclass
class Prediction:
    dates: np.ndarray  # datetime64[D] [T]
    assets: tuple[str, ...]  # [A]
    positions: np.ndarray  # float32 [T, A] in [-1, 1]; 0 where an asset lacks the history for a window
    embeddings: np.ndarray | None  # float32 [T, A, E] fused embeddings (0 where positions are), when asked


@dataclass
class Ensemble:
    """A fitted fusion of frozen members with the data pipeline it was fit through."""

    model: EnsembleModel
    pipeline: DataPipeline  # shared by every member: the only path from a panel to their inputs
    member_ids: tuple[str, ...]  # the trial ids the members come from
    val_sharpe: float  # annualized validation net Sharpe of the fused positions

    @property
    def method(self) -> str:
        return self.model.method

    @property
    def asset_names(self) -> tuple[str, ...]:
        return self.pipeline.asset_names

    def predict(self, panel: Panel, embeddings: bool = False) -> Prediction:
        """Positions for every date of `panel` (0 before an asset has `lookback` dates of features)."""
        windows = self.pipeline.windows(panel)
        out = self.model.run(windows, embeddings=embeddings)
        positions = np.zeros((panel.n_dates, self.pipeline.n_assets), dtype=np.float32)
        positions[windows.dates_idx] = out.positions
        fused = None
        if embeddings:
            fused = np.zeros((panel.n_dates, self.pipeline.n_assets, out.embeddings.shape[-1]), dtype=np.float32)
            fused[windows.dates_idx] = out.embeddings
        return Prediction(dates=panel.dates, assets=self.asset_names, positions=positions, embeddings=fused)


# ---- save / load ---------------------------------------------------------------------------------

def save_ensemble(directory: Path, ensemble: Ensemble) -> Path:
    """Write `ensemble` to `directory` atomically, keeping the previous copy until the new one is whole."""
    import torch  # lazy: the CLI imports this module's neighbours at start-up

    with atomic_dir(directory) as tmp:
        for i, member in enumerate(ensemble.model.members):
            shutil.copytree(member.path, tmp / "members" / str(i))
        if ensemble.model.head is not None:
            state = {k: v.detach().cpu() for k, v in ensemble.model.head.state_dict().items()}
            torch.save(state, tmp / "fusion.pt")
        ensemble.pipeline.save(tmp)
        (tmp / "ensemble.json").write_text(json.dumps(describe(ensemble), indent=2))
    return Path(directory)


def describe(ensemble: Ensemble) -> dict[str, Any]:
    """The ensemble.json document."""
    model = ensemble.model
    return {
        "format": FORMAT_VERSION,
        "method": model.method,
        "members": list(ensemble.member_ids),
        "weights": [float(w) for w in model.weights],
        "val_sharpe": float(ensemble.val_sharpe),
        "fusion": model.config.to_dict(),
        "head_dims": list(model.head.dims) if model.head is not None else None,
        "head_groups": list(model.head.groups) if model.method == "hierarchical" else None,
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
        head = build_head(meta["method"], meta["head_dims"], fusion, meta.get("head_groups"))
        head.load_state_dict(torch.load(directory / "fusion.pt", map_location="cpu", weights_only=True))
    return Ensemble(
        model=EnsembleModel(members, meta["method"], head, np.asarray(meta["weights"]), fusion),
        pipeline=load_pipeline(directory),
        member_ids=tuple(meta["members"]),
        val_sharpe=float(meta["val_sharpe"]),
    )
