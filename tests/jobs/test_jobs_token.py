"""Where quantray finds a Ray cluster's auth token: where Ray's own clients find it, in their order."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from quantray.errors import BadInput
from quantray.jobs import dashboard
from quantray.jobs.state import HeadState, process_start_time, state_path, write_state

ADDRESS = "http://head.example:8265"
REFUSED = "refused"

# Ray's AuthenticationTokenLoader, asked in a fresh process (it caches per process) for each case
RAY_LOADER = """
import json, os, sys
from ray._raylet import AuthenticationTokenLoader
loader = AuthenticationTokenLoader.instance()
found = []
for case in json.loads(sys.argv[1]):
    for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH", "HOME"):
        os.environ.pop(name, None)
    os.environ.update(case)
    loader.reset_cache()
    try:
        found.append(loader.get_raw_token(ignore_auth_mode=True) if loader.has_token(ignore_auth_mode=True) else None)
    except Exception:
        found.append("refused")
print(json.dumps(found))
"""


def token_cases(tmp: Path) -> list[dict[str, str]]:
    home, empty_home, bare_home = tmp / "home", tmp / "empty-home", tmp / "bare-home"
    for path, text in [(home, " home-token\n"), (empty_home, "")]:
        (path / ".ray").mkdir(parents=True)
        (path / ".ray" / "auth_token").write_text(text)
    bare_home.mkdir()
    named, two_lines, blank_first, empty = tmp / "named", tmp / "two-lines", tmp / "blank-first", tmp / "empty"
    named.write_text(" path-token \n")
    two_lines.write_text("path-token\r\nsecond line\n")  # Ray reads the first line only
    blank_first.write_text("\npath-token\n")
    empty.write_text("  \n")
    home_blank_first = tmp / "home-blank-first"
    (home_blank_first / ".ray").mkdir(parents=True)
    (home_blank_first / ".ray" / "auth_token").write_text("\nhome-token\n")
    return [
        {"RAY_AUTH_TOKEN": "env-token", "RAY_AUTH_TOKEN_PATH": str(named), "HOME": str(home)},
        {"RAY_AUTH_TOKEN": " env-token\n", "HOME": str(home)},
        {"RAY_AUTH_TOKEN": "", "RAY_AUTH_TOKEN_PATH": str(named), "HOME": str(home)},
        {"RAY_AUTH_TOKEN": "   ", "HOME": str(home)},
        {"RAY_AUTH_TOKEN_PATH": str(named), "HOME": str(home)},
        {"RAY_AUTH_TOKEN_PATH": str(tmp / "missing"), "HOME": str(home)},
        {"RAY_AUTH_TOKEN_PATH": str(empty), "HOME": str(home)},
        {"RAY_AUTH_TOKEN_PATH": str(two_lines), "HOME": str(home)},
        {"RAY_AUTH_TOKEN_PATH": str(blank_first), "HOME": str(home)},
        {"RAY_AUTH_TOKEN": "env-token\nsecond line", "HOME": str(home)},
        {"RAY_AUTH_TOKEN_PATH": "", "HOME": str(home)},
        {"HOME": str(home)},
        {"HOME": str(empty_home)},
        {"HOME": str(bare_home)},
        {"HOME": str(home_blank_first)},
    ]


def quantray_token(case: dict[str, str], root: Path, monkeypatch: pytest.MonkeyPatch) -> str | None:
    with monkeypatch.context() as patch:
        for name in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            patch.delenv(name, raising=False)
        for name, value in case.items():
            patch.setenv(name, value)
        try:
            return dashboard.resolve_token(ADDRESS, dashboard.DEFAULT_TOKEN_ENV, root)
        except BadInput:
            return REFUSED


def test_the_token_is_the_one_rays_own_loader_finds(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = token_cases(workdir / "cases")
    ray = subprocess.run([sys.executable, "-c", RAY_LOADER, json.dumps(cases)], capture_output=True, text=True,
                         timeout=120, env={"PATH": os.environ["PATH"]})
    assert ray.returncode == 0, ray.stderr[-2000:]
    expected = json.loads(ray.stdout.strip().splitlines()[-1])
    assert expected == [
        "env-token", "env-token", "path-token", None, "path-token", REFUSED, REFUSED, "path-token", REFUSED,
        "env-token\nsecond line", "home-token", "home-token", None, None, None,
    ], "Ray's loader changed: follow it"
    assert [quantray_token(case, workdir, monkeypatch) for case in cases] == expected


def test_a_token_path_that_holds_no_token_is_one_line_naming_the_variable(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(workdir / "missing"))
    with pytest.raises(BadInput, match=r"^RAY_AUTH_TOKEN_PATH=.*missing: no token there"):
        dashboard.resolve_token(ADDRESS, dashboard.DEFAULT_TOKEN_ENV, workdir)


@pytest.fixture
def recorded_head(workdir: Path) -> Iterator[HeadState]:
    """A live process recorded as the head `quantray cluster start` runs here, with its token file."""
    sleeper = subprocess.Popen(["sleep", "60"], start_new_session=True)
    token_path = workdir / ".quantray" / "ray_auth_token"
    token_path.parent.mkdir()
    token_path.write_text("local-head-token\n")
    state = HeadState(leader_pid=sleeper.pid, leader_start=process_start_time(sleeper.pid) or 0, pids=(sleeper.pid,),
                      gcs_address="127.0.0.1:1", dashboard_url="http://127.0.0.1:18265", temp_dir=str(workdir),
                      token_path=str(token_path), log_path=str(workdir / "log"))
    write_state(workdir, state)
    try:
        yield state
    finally:
        sleeper.kill()
        sleeper.wait()
        state_path(workdir).unlink()


def test_the_local_heads_token_comes_after_the_variable_and_before_rays_files(
    recorded_head: HeadState, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (workdir / "home" / ".ray").mkdir()
    (workdir / "home" / ".ray" / "auth_token").write_text("home-token")
    own = recorded_head.dashboard_url
    assert dashboard.resolve_address(None, workdir) == own
    assert dashboard.resolve_token(own, "RAY_AUTH_TOKEN", workdir) == "local-head-token"
    assert dashboard.resolve_token(ADDRESS, "RAY_AUTH_TOKEN", workdir) == "home-token", "only for its own dashboard"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(workdir / "missing"))
    assert dashboard.resolve_token(own, "RAY_AUTH_TOKEN", workdir) == "local-head-token"
    monkeypatch.setenv("MY_TOKEN", "named-token")
    assert dashboard.resolve_token(own, "MY_TOKEN", workdir) == "named-token"
