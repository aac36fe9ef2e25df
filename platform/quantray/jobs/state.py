"""What `quantray cluster start` recorded about its Ray head, and whether that head still runs.

The bottom of `quantray.jobs`: `dashboard` reads it to find the local head's address and token,
`local` writes it when it starts a head. It imports neither.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

from quantray.errors import BadInput
from quantray.workspace import ROOT, write_text

STATE_DIR = ROOT  # ./.quantray, the workspace
STATE_FILE = "cluster.json"


@dataclass(frozen=True)
class HeadState:
    """What `quantray cluster start` recorded in .quantray/cluster.json."""

    leader_pid: int  # the `ray start --block` process; its session holds every Ray process
    leader_start: int  # its start time in clock ticks since boot, guards against PID reuse
    pids: tuple[int, ...]  # the session's processes right after start
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    token_path: str
    log_path: str

    def token(self) -> str:
        return Path(self.token_path).read_text().strip()


def state_path(root: Path) -> Path:
    return root / STATE_DIR / STATE_FILE


def read_state(root: Path) -> HeadState | None:
    path = state_path(root)
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        return HeadState(**{**raw, "pids": tuple(raw["pids"])})
    except (ValueError, TypeError, KeyError) as exc:
        raise BadInput(f"{path}: not a quantray cluster state file ({exc}); delete it if no head is running") from exc


def write_state(root: Path, state: HeadState) -> None:
    write_text(state_path(root), json.dumps(dataclasses.asdict(state), indent=2) + "\n")


def proc_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on, or None when the process is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    return stat.rsplit(")", 1)[1].split()


def process_start_time(pid: int) -> int | None:
    """Start time in clock ticks since boot (field 22), or None if gone or a zombie."""
    fields = proc_stat(pid)
    return None if fields is None or fields[0] == "Z" else int(fields[19])


def is_running(state: HeadState) -> bool:
    return process_start_time(state.leader_pid) == state.leader_start


def running_head(root: Path) -> HeadState | None:
    """The head recorded under `root` when it still runs, else None."""
    state = read_state(root)
    return state if state is not None and is_running(state) else None
