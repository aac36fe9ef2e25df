"""Fixtures for quantray.jobs: a short working directory (Ray's Unix socket paths must fit)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from quantray.errors import BadInput


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, short cwd; a head left running by a failed test is stopped on the way out."""
    from quantray.jobs import local

    path = Path(tempfile.mkdtemp(prefix="qr-", dir="/tmp"))
    monkeypatch.chdir(path)
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield path
    finally:
        try:
            state = local.read_state(path)
        except BadInput:  # a test wrote a broken state file on purpose
            state = None
        if state is not None and local.is_running(state):
            local.stop_head(path)
        shutil.rmtree(path, ignore_errors=True)
