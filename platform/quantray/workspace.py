"""The workspace: where quantray keeps its state, and how it writes files without losing any.

Everything local lives under one root, `./.quantray/` (relative to the working directory the
command runs in):

    tune/          search results and checkpoints (QUANTRAY_STORAGE overrides)
    ensembles/     fused ensembles with their metrics and reports
    walkforward/   walk-forward records: stitched returns, per-fold tables, reports
    reports/       backtest reports of registered models
    cache/         downloaded market data (QUANTRAY_CACHE overrides)
    mlflow.db      the default MLflow store (MLFLOW_TRACKING_URI or --tracking-uri override)
    mlartifacts/   artifacts of the experiments in that store
    cluster.json   the local Ray head `quantray cluster start` runs

Writers never leave a half-written file or folder: `write_text`/`write_json` go through a
temporary sibling and `os.replace`; `replace_dir` renames the previous copy aside before the new
one moves in, so a crash at any point leaves the old copy or the new one, never neither.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(".quantray")
STORAGE_ENV = "QUANTRAY_STORAGE"
CACHE_ENV = "QUANTRAY_CACHE"
MLFLOW_DB = "mlflow.db"
MLFLOW_ARTIFACTS = "mlartifacts"


def root() -> Path:
    return ROOT


def tune_storage() -> Path:
    """Where searches keep their trials: QUANTRAY_STORAGE, else ./.quantray/tune."""
    return Path(os.environ.get(STORAGE_ENV) or ROOT / "tune")


def ensembles_dir() -> Path:
    return ROOT / "ensembles"


def walkforward_dir() -> Path:
    return ROOT / "walkforward"


def reports_dir() -> Path:
    return ROOT / "reports"


def train_dir() -> Path:
    """Where `quantray train` keeps its runs."""
    return ROOT / "train"


def cache_dir() -> Path:
    """Where downloads are cached: QUANTRAY_CACHE, else ./.quantray/cache."""
    return Path(os.environ.get(CACHE_ENV) or ROOT / "cache")


def tracking_uri(cli_value: str | None = None) -> str:
    """The MLflow tracking URI: `--tracking-uri`, else MLFLOW_TRACKING_URI, else a local SQLite store.

    The local default is `sqlite:///<cwd>/.quantray/mlflow.db` (absolute, so Ray workers and
    subprocesses in other directories reach the same store).
    """
    if cli_value:
        return cli_value
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    folder = ROOT.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / MLFLOW_DB}"


def artifact_root(uri: str) -> str | None:
    """Where new MLflow experiments keep artifacts: beside a SQLite file; the server's choice otherwise."""
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///"):]).parent / MLFLOW_ARTIFACTS).resolve().as_uri()


# ---- atomic writes -------------------------------------------------------------------------------

def write_bytes(path: Path, data: bytes, mode: int = 0o644) -> Path:
    """Write `data` to `path` through a temporary sibling and a rename: whole or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)  # mkstemp creates 0600; results are meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode())


def write_json(path: Path, document: Any) -> Path:
    """JSON, atomically (NaN kept as NaN: Python's json reads it back)."""
    return write_text(path, json.dumps(document, indent=2))


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary sibling path for a library that writes files itself; renamed to `path` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_dir(path: Path) -> Iterator[Path]:
    """An empty temporary sibling folder to fill; on success it replaces `path` (`replace_dir`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        replace_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def replace_dir(new: Path, target: Path) -> None:
    """Move folder `new` to `target`, replacing what is there, without ever losing both copies.

    The previous copy is renamed aside first and deleted only once the new one is in place; if
    the new one cannot move in, the previous copy is put back.
    """
    new, target = Path(new), Path(target)
    if not target.exists():
        os.replace(new, target)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
    os.replace(target, aside / target.name)
    try:
        os.replace(new, target)
    except BaseException:
        os.replace(aside / target.name, target)
        shutil.rmtree(aside, ignore_errors=True)
        raise
    shutil.rmtree(aside, ignore_errors=True)
