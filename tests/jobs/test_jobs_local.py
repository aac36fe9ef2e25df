"""quantray.jobs.local without Ray: the state file, the process session, and what `stop` kills."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from quantray.cli import main
from quantray.jobs import local


def fake_head(workdir: Path) -> tuple[subprocess.Popen, local.HeadState]:
    """A session leader with a child, recorded as if `cluster start` had started it."""
    leader = subprocess.Popen(["sh", "-c", "sleep 300 & sleep 300; wait"], start_new_session=True)
    deadline = time.monotonic() + 5
    while len(local.session_pids(leader.pid)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    state = local.HeadState(
        leader_pid=leader.pid, leader_start=local.process_start_time(leader.pid) or 0,
        pids=tuple(local.session_pids(leader.pid)), gcs_address="127.0.0.1:1", dashboard_url="http://127.0.0.1:1",
        temp_dir=str(workdir), token_path=str(workdir / "token"), log_path=str(workdir / "log"),
    )
    local.write_state(workdir, state)
    return leader, state


def test_stop_ends_the_recorded_session_and_nothing_else(workdir: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])  # e.g. someone else's Ray
    leader, state = fake_head(workdir)
    try:
        assert len(state.pids) == 3 and local.read_state(workdir) == state
        assert local.is_running(state)
        assert sorted(local.stop_head(workdir, timeout_s=5)) == list(state.pids)
        assert local.session_pids(leader.pid) == []
        assert bystander.poll() is None
        assert local.read_state(workdir) is None
    finally:
        bystander.kill()
        bystander.wait()
        leader.kill()
        leader.wait()


def test_a_reused_pid_is_not_our_head(workdir: Path) -> None:
    leader, state = fake_head(workdir)
    try:
        stale = local.HeadState(**{**state.__dict__, "leader_start": state.leader_start + 1})
        assert not local.is_running(stale)
        local.write_state(workdir, stale)
        assert local.stop_head(workdir) == []  # forgets the record, signals nobody
        assert leader.poll() is None
    finally:
        leader.kill()
        leader.wait()


def test_start_refuses_a_busy_dashboard_port(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["cluster", "start", "--dashboard-port", str(port)]) == 2
    assert f"--dashboard-port {port} is already in use" in capsys.readouterr().err
    assert local.read_state(workdir) is None


def test_start_refuses_a_second_head(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    leader, _ = fake_head(workdir)
    try:
        assert main(["cluster", "start", "--dashboard-port", str(local.free_port())]) == 2
        assert "already running" in capsys.readouterr().err
    finally:
        leader.kill()
        leader.wait()


def test_corrupt_state_file_names_itself(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local.state_path(workdir).parent.mkdir(parents=True)
    local.state_path(workdir).write_text("{not json")
    assert main(["cluster", "stop"]) == 2
    assert "cluster.json: not a quantray cluster state file" in capsys.readouterr().err


def test_ray_temp_dir_stays_short_enough_for_unix_sockets(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60)
    assert len(str(local.ray_temp_dir(deep))) <= local.MAX_TEMP_DIR_CHARS
    assert local.ray_temp_dir(Path("/tmp/qr")) == Path("/tmp/qr/.quantray/ray")
