"""Fixtures for quantray.jobs: a short working directory (Ray's Unix socket paths must fit) with its
own HOME, so no test reads or writes the real ~/.ray/auth_token, and a head started with plain
`ray start --head`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from quantray.errors import BadInput

RAY = Path(sys.executable).parent / "ray"
HEAD_START_TIMEOUT_S = 120


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh, short cwd and HOME; a head left running by a failed test is stopped on the way out."""
    from quantray.jobs import local

    path = Path(tempfile.mkdtemp(prefix="qr-", dir="/tmp"))
    monkeypatch.chdir(path)
    for name in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "RAY_AUTH_MODE", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    (path / "home").mkdir()
    monkeypatch.setenv("HOME", str(path / "home"))
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


@dataclass(frozen=True)
class PlainHead:
    dashboard_url: str
    home: Path  # the HOME it was started with; Ray's token is in home/.ray/auth_token


@pytest.fixture
def plain_ray_head(workdir: Path) -> Iterator[PlainHead]:
    """A head started as a user starts one: `ray start --head`, no RAY_AUTH_* set, in the test's HOME.

    A token in ~/.ray/auth_token (written by Ray's own `ray get-auth-token --generate`, as
    `ray.init()` writes it) is what makes `ray start` turn token authentication on. The head runs in
    a process session of its own and is ended by session at the end, never by `ray stop` (which
    would end every Ray on the machine).
    """
    from quantray.jobs import dashboard, local

    home = Path(os.environ["HOME"])
    env = {name: value for name, value in os.environ.items() if not name.startswith(("RAY_AUTH_", "RAY_ADDRESS"))}
    env["PATH"] = f"{RAY.parent}{os.pathsep}{env.get('PATH', '')}"  # job entrypoints run this venv's python
    subprocess.run([str(RAY), "get-auth-token", "--generate"], env=env, check=True, capture_output=True, timeout=60)
    assert (home / ".ray" / "auth_token").is_file()

    port, dashboard_port = local.free_port(), local.free_port()
    command = [
        str(RAY), "start", "--head", "--num-cpus=1", f"--port={port}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        # not about auth: ports that default to fixed numbers another Ray on this machine may hold,
        # and a temp dir of its own instead of the shared /tmp/ray
        f"--dashboard-agent-listen-port={local.free_port()}", f"--ray-client-server-port={local.free_port()}",
        f"--temp-dir={workdir / 'ray'}",
    ]
    starter = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True)
    head = PlainHead(dashboard_url=f"http://127.0.0.1:{dashboard_port}", home=home)
    try:
        output, _ = starter.communicate(timeout=HEAD_START_TIMEOUT_S)
        assert starter.returncode == 0, output[-3000:]
        token = (home / ".ray" / "auth_token").read_text().strip()
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while not any(node["alive"] for node in dashboard.nodes(head.dashboard_url, token, quiet=True)):
            assert time.monotonic() < deadline, f"the head was not ready after {HEAD_START_TIMEOUT_S} s"
            time.sleep(0.5)
        yield head
    finally:
        starter.kill()  # when `ray start` itself hung; it has exited otherwise
        starter.wait()
        # `ray start` exits once the head runs; the head's processes keep its session id
        local.end_session(starter.pid)
        assert local.session_pids(starter.pid) == []
