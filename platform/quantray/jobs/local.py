"""A local Ray head with the dashboard that this project starts and stops itself.

`start_head` runs `ray start --head --block` as the leader of a new process session, so every
Ray process it spawns (GCS, raylet, dashboard, agents, workers) shares the leader's session id.
`stop_head` signals only that session. It never runs `ray stop`, which kills every Ray
instance on the machine, including ones that other people started.

Token authentication is on: the head reads a token generated here from a file under
`.quantray/`, and clients send it as a bearer header (see `quantray.jobs.dashboard`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from quantray.errors import BadInput
from quantray.workspace import write_bytes
from quantray.jobs import dashboard
from quantray.jobs.state import (
    STATE_DIR,
    HeadState,
    is_running,
    proc_stat,
    process_start_time,
    read_state,
    state_path,
    write_state,
)

DEFAULT_DASHBOARD_PORT = 8265
# sun_path holds 107 bytes; Ray puts sockets at <temp>/session_<date>_<pid>/sockets/plasma_store
MAX_TEMP_DIR_CHARS = 40


def session_pids(leader_pid: int) -> list[int]:
    """Every live (non-zombie) process whose session id (field 6) is `leader_pid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = proc_stat(int(entry))
            if fields is not None and fields[0] != "Z" and int(fields[3]) == leader_pid:
                found.append(int(entry))
    return sorted(found)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def ray_executable() -> str:
    """The `ray` script beside this interpreter (the venv's), so the head runs our Ray."""
    beside = Path(sys.executable).parent / "ray"
    if beside.exists():
        return str(beside)
    raise BadInput(f"no `ray` executable beside {sys.executable}; install quantray's dependencies into this environment")


def ray_temp_dir(root: Path) -> Path:
    """Ray's --temp-dir: under .quantray/ when the path is short enough for Unix sockets."""
    local = (root / STATE_DIR / "ray").resolve()
    if len(str(local)) <= MAX_TEMP_DIR_CHARS:
        return local
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"quantray-{os.getuid()}-{digest}"


def head_environment(token_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # never attach to someone else's cluster
    env.pop("RAY_AUTH_TOKEN", None)  # it would take precedence over our token file
    env["RAY_AUTH_MODE"] = "token"
    env["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env["RAY_TRAIN_ENABLE_STATE_TRACKING"] = "1"  # the dashboard's Train tab
    # job entrypoints run `python ...`: make that this environment's interpreter
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def head_command(
    temp_dir: Path,
    *,
    host: str,
    gcs_port: int,
    dashboard_port: int,
    num_cpus: int | None,
    num_gpus: int | None,
) -> list[str]:
    command = [
        ray_executable(), "start", "--head", "--block",
        f"--port={gcs_port}",
        f"--dashboard-host={host}",
        f"--dashboard-port={dashboard_port}",
        # these default to fixed ports (52365, 10001) that another Ray on this machine may hold
        f"--dashboard-agent-listen-port={free_port()}",
        f"--ray-client-server-port={free_port()}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
    ]
    if num_cpus is not None:
        command.append(f"--num-cpus={num_cpus}")
    if num_gpus is not None:
        command.append(f"--num-gpus={num_gpus}")
    return command


def start_head(
    root: Path,
    *,
    host: str = "127.0.0.1",
    dashboard_port: int = DEFAULT_DASHBOARD_PORT,
    num_cpus: int | None = None,
    num_gpus: int | None = None,
    timeout_s: float = 120.0,
) -> HeadState:
    """Start a Ray head with the dashboard and token auth; record it in .quantray/cluster.json."""
    previous = read_state(root)
    if previous is not None and is_running(previous):
        raise BadInput(
            f"a quantray Ray head is already running (pid {previous.leader_pid}, {previous.dashboard_url}); "
            "run `quantray cluster stop` first"
        )
    if not port_is_free(dashboard_port, host):
        raise BadInput(f"--dashboard-port {dashboard_port} is already in use on {host}; pick another port")

    state_dir = root / STATE_DIR
    token_path = state_dir / "ray_auth_token"
    write_bytes(token_path, secrets.token_hex(32).encode(), mode=0o600)
    temp_dir = ray_temp_dir(root)
    temp_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "ray-head.log"
    gcs_port = free_port()
    command = head_command(
        temp_dir, host=host, gcs_port=gcs_port, dashboard_port=dashboard_port, num_cpus=num_cpus, num_gpus=num_gpus
    )
    with open(log_path, "w") as log:
        leader = subprocess.Popen(
            command, cwd=root, env=head_environment(token_path), stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    dashboard_host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    state = HeadState(
        leader_pid=leader.pid,
        leader_start=process_start_time(leader.pid) or 0,
        pids=(leader.pid,),
        gcs_address=f"127.0.0.1:{gcs_port}",
        dashboard_url=f"http://{dashboard_host}:{dashboard_port}",
        temp_dir=str(temp_dir),
        token_path=str(token_path.resolve()),
        log_path=str(log_path.resolve()),
    )
    # record the leader before waiting, so `stop` can clean up a head that never became ready
    write_state(root, state)
    try:
        wait_until_ready(state, leader, timeout_s)
    except BaseException:
        stop_head(root)
        raise
    state = dataclasses.replace(state, pids=tuple(session_pids(leader.pid)))
    write_state(root, state)
    return state


def wait_until_ready(state: HeadState, leader: subprocess.Popen, timeout_s: float) -> None:
    """Wait until the dashboard answers and the head node is alive."""
    deadline = time.monotonic() + timeout_s
    token = state.token()
    while time.monotonic() < deadline:
        if leader.poll() is not None:
            raise RuntimeError(f"`ray start` exited with code {leader.returncode}; see {state.log_path}")
        if any(node["alive"] for node in dashboard.nodes(state.dashboard_url, token, quiet=True)):
            return
        time.sleep(0.5)
    raise RuntimeError(f"the Ray head was not ready after {timeout_s:.0f} s; see {state.log_path}")


def stop_head(root: Path, *, timeout_s: float = 30.0) -> list[int]:
    """Stop the head recorded in .quantray/cluster.json and every process of its session.

    SIGTERM to the leader first (`ray start --block` shuts down what it started), then SIGTERM
    and finally SIGKILL to whatever is left in the session. Returns the session's PIDs.
    """
    state = read_state(root)
    if state is None:
        raise BadInput(f"no Ray head recorded in {state_path(root)}; nothing to stop")
    members: list[int] = []
    if is_running(state):
        members = session_pids(state.leader_pid)
        os.kill(state.leader_pid, signal.SIGTERM)
        wait_until(lambda: process_start_time(state.leader_pid) is None, timeout_s, state.leader_pid)
        end_session(state.leader_pid)
    state_path(root).unlink(missing_ok=True)
    return members


def end_session(session_id: int, grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL, whatever is left in process session `session_id` (its leader may be gone)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in session_pids(session_id):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if wait_until(lambda: not session_pids(session_id), grace_s, session_id):
            return


def wait_until(done: Callable[[], bool], timeout_s: float, leader_pid: int) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        reap(leader_pid)
        if done():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def reap(pid: int) -> None:
    """Collect the leader's exit status when this process started it (no zombie left)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
