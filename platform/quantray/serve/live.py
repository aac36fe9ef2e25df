"""The registered version being served: where it comes from, loading it, and what `/model` says.

A served URI is `models:/NAME/VERSION` (pinned) or `models:/NAME@ALIAS` (followed: the server
polls the alias and loads the version it moves to beside the one it serves, then swaps).
The ensemble is loaded from the ensemble directory inside the model's artifacts (the directory
holding `ensemble.json`), not through the pyfunc wrapper, so how the pyfunc is logged does not
matter here.
"""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from quantray.config import to_dict
from quantray.data.panel import Panel
from quantray.data.windows import Windows
from quantray.ensemble.artifact import Ensemble, load_ensemble
from quantray.errors import BadInput
from quantray.registry import store


@dataclass(frozen=True)
class LiveModel:
    """One loaded version. Requests read it once, so an answer never mixes two versions."""

    ensemble: Ensemble
    name: str
    version: str
    alias: str | None
    info: dict[str, Any]  # what GET /model shows

    @property
    def assets(self) -> tuple[str, ...]:
        return self.ensemble.asset_names

    @property
    def lookback(self) -> int:
        return self.ensemble.pipeline.lookback

    def windows(self, panel: Panel, dates_idx: np.ndarray | None = None) -> Windows:
        """The ensemble's own data pipeline: the only path from a panel to its inputs."""
        return self.ensemble.pipeline.windows(panel, dates_idx)


def current_version(model_uri: str, tracking_uri: str | None) -> str:
    """The version `model_uri` names now (an alias's current target)."""
    return str(store.resolve_version(store.client_for(tracking_uri), model_uri).version)


def load_live(model_uri: str, tracking_uri: str | None, version: str | None = None) -> LiveModel:
    """Download and load the version `model_uri` names (or `version` of its model)."""
    import mlflow.artifacts  # lazy: mlflow is heavy

    name, _, alias = store.parse_model_uri(model_uri)
    client = store.client_for(tracking_uri)
    mv = store.resolve_version(client, model_uri if version is None else f"models:/{name}/{version}")
    with tempfile.TemporaryDirectory(prefix="quantray-serve-") as tmp, store.using_tracking_uri(client.tracking_uri):
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{mv.name}/{mv.version}", dst_path=tmp))
        ensemble = load_ensemble(ensemble_dir(local, f"models:/{mv.name}/{mv.version}"))  # all in memory after
    return LiveModel(ensemble, mv.name, str(mv.version), alias, describe(client, mv, alias, ensemble))


def ensemble_dir(model_dir: Path, where: str) -> Path:
    found = sorted(model_dir.rglob("ensemble.json"), key=lambda p: len(p.parts))
    if not found:
        raise BadInput(f"{where}: not a quantray ensemble (no ensemble.json in its artifacts)")
    return found[0].parent


def describe(client: Any, mv: Any, alias: str | None, ensemble: Ensemble) -> dict[str, Any]:
    """name, version, alias, DSR/PBO and when and on what the version was trained."""
    run = client.get_run(mv.run_id) if mv.run_id else None
    metrics = dict(run.data.metrics) if run else {}
    config = ensemble.pipeline.config

    def when(ms: int | None) -> str | None:
        return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).isoformat(timespec="seconds") if ms else None

    return {
        "name": mv.name,
        "version": str(mv.version),
        "alias": alias,
        "dsr": metrics.get("dsr"),
        "pbo": metrics.get("pbo"),
        "test_sharpe": metrics.get("test_sharpe"),
        "run_id": mv.run_id,
        "trained_from": when(run.info.start_time) if run else None,
        "trained_until": when(run.info.end_time) if run else None,
        "data_source": config.source,
        "splits": to_dict(config.splits),  # with the source, these fix the training block's dates
        "assets": list(ensemble.asset_names),
        "lookback": config.lookback,
        "method": ensemble.method,
        "members": list(ensemble.member_ids),
    }
