"""A real local Ray head: `quantray cluster start`, a job through the Jobs API, `cluster stop`;
and a head started with plain `ray start --head`, reached with the token where Ray keeps it.

The submitted job is the quickstart search (`quantray submit search_spaces/quickstart.yaml
--trials 2` on a small synthetic market); it runs the project copy uploaded as the job's
working_dir, and its results land in this directory's .quantray/ as local runs' do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from quantray.cli import main
from quantray.errors import BadInput
from quantray.jobs import dashboard, local, submit

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "search_spaces" / "quickstart.yaml"
JOB_TIMEOUT_S = 240


def alive(pid: int) -> bool:
    return local.process_start_time(pid) is not None


def session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except ProcessLookupError:
        return None


def wait_for_job(address: str, token: str, job_id: str) -> dict:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        (job,) = [j for j in dashboard.jobs(address, token) if j.get("submission_id") == job_id]
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return job
        time.sleep(1)
    raise AssertionError(f"job {job_id} did not finish in {JOB_TIMEOUT_S} s")


def unauthenticated_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.cluster
def test_start_submit_watch_and_stop_only_our_processes(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = local.free_port()
    assert main(["cluster", "start", "--dashboard-port", str(port), "--num-cpus", "2"]) == 0
    state = local.read_state(workdir)
    assert state is not None and state.dashboard_url == f"http://127.0.0.1:{port}"
    assert state.temp_dir.startswith(str(workdir)), "Ray's files stay in our .quantray/"
    address, token = state.dashboard_url, state.token()

    # token authentication is on: no token -> 401, a wrong one -> 403, ours -> 200
    assert unauthenticated_status(f"{address}/api/jobs/") == 401
    with pytest.raises(BadInput, match="rejected the auth token"):
        dashboard.get_json(address, "/api/jobs/", "not-the-token")
    with pytest.raises(BadInput, match="requires a token"):
        dashboard.get_json(address, "/api/jobs/", None)

    assert main(["cluster", "status"]) == 0
    status = capsys.readouterr().out
    assert "1 alive" in status and "CPUs       2" in status and f"dashboard  {address}" in status

    # the quickstart search, through the Jobs API, with no --address: the local head is found
    assert main(["submit", str(QUICKSTART), "--trials", "2", "--data", "synthetic:assets=4,days=300",
                 "--experiment", "cluster-test"]) == 0
    submitted = capsys.readouterr().out
    job_id = submitted.split()[1]
    assert job_id.startswith("quantray-tune-quickstart-")
    job = wait_for_job(address, token, job_id)
    logs = dashboard.get_json(address, f"/api/jobs/{job_id}/logs", token)["logs"]
    assert job["status"] == "SUCCEEDED", logs[-3000:]

    # the dashboard's job API lists it, with our entrypoint and the dashboard-visible Train runs
    (listed,) = [j for j in dashboard.get_json(address, "/api/jobs/", token) if j["submission_id"] == job_id]
    assert listed["entrypoint"].startswith("python -m quantray.cli tune spaces/quickstart.yaml --address auto")
    assert listed["runtime_env"]["env_vars"]["RAY_TRAIN_ENABLE_STATE_TRACKING"] == "1"
    assert "best trial" in logs
    assert (workdir / ".quantray" / "tune" / "cluster-test").is_dir(), "results land where local runs' do"

    assert main(["jobs", "list"]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "logs", job_id]) == 0
    assert "best trial" in capsys.readouterr().out
    assert main(["jobs", "logs", job_id, "--follow"]) == 0
    assert f"job {job_id}: SUCCEEDED" in capsys.readouterr().out
    assert main(["jobs", "logs", "no-such-job"]) == 2
    assert "no job 'no-such-job'" in capsys.readouterr().err

    # `jobs stop` ends a running job
    sleeper = submit.submit_entrypoint(address, token, entrypoint="sleep 300", job_id=f"sleeper-{port}").job_id
    assert main(["jobs", "stop", sleeper]) == 0
    assert wait_for_job(address, token, sleeper)["status"] == "STOPPED"

    # A Ray that someone else started on this machine, in its own process: Ray caches its
    # authentication mode per process, so an in-process `ray.init` here would leak this test's
    # RAY_AUTH_MODE into every later test that starts Ray.
    import psutil

    bystander = subprocess.Popen(
        [sys.executable, "-c", "import ray, time; ray.init(address='local', num_cpus=1, include_dashboard=False);"
                               " print('ready', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True, env=os.environ | {"RAY_AUTH_MODE": "disabled"},  # no token in ~/.ray
    )
    try:
        assert bystander.stdout.readline().strip() == "ready"
        bystanders = {bystander.pid} | {p.pid for p in psutil.Process(bystander.pid).children(recursive=True)}
        assert len(bystanders) > 2  # the driver, its GCS and raylet
        ours = local.session_pids(state.leader_pid)
        assert state.leader_pid in ours and len(ours) > 5

        assert main(["cluster", "stop"]) == 0
        assert [pid for pid in ours if alive(pid)] == []
        assert all(alive(pid) for pid in bystanders)
    finally:
        for process in [psutil.Process(bystander.pid), *psutil.Process(bystander.pid).children(recursive=True)]:
            process.kill()  # the driver and the GCS/raylet it started, which would outlive it
        bystander.wait()
    assert local.read_state(workdir) is None
    with pytest.raises(BadInput, match="cannot reach Ray dashboard"):
        dashboard.check_reachable(address, token)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_head_started_with_plain_ray_start_takes_the_token_where_ray_keeps_it(
    plain_ray_head: Any, workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    address = plain_ray_head.dashboard_url
    token_file = plain_ray_head.home / ".ray" / "auth_token"
    assert unauthenticated_status(f"{address}/api/jobs/") == 401, "`ray start` turned token auth on"

    # no RAY_AUTH_TOKEN: status, submit and jobs find ~/.ray/auth_token as Ray's clients do
    assert main(["cluster", "status", "--address", address]) == 0
    assert "1 alive" in capsys.readouterr().out
    assert main(["submit", str(QUICKSTART), "--address", address, "--trials", "1",
                 "--data", "synthetic:assets=4,days=300", "--experiment", "plain-head"]) == 0
    job_id = capsys.readouterr().out.split()[1]
    assert main(["jobs", "list", "--address", address]) == 0
    assert job_id in capsys.readouterr().out
    assert main(["jobs", "stop", job_id, "--address", address]) == 0  # the search itself is not under test here
    assert wait_for_job(address, token_file.read_text().strip(), job_id)["status"] in ("STOPPED", "FAILED")

    # RAY_AUTH_TOKEN_PATH names the file instead, and an empty one is refused in one line
    moved = workdir / "token-elsewhere"
    token_file.rename(moved)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(moved))
    assert main(["jobs", "list", "--address", address]) == 0
    capsys.readouterr()
    moved.write_text("")
    assert main(["jobs", "list", "--address", address]) == 2
    assert "RAY_AUTH_TOKEN_PATH" in capsys.readouterr().err

    # RAY_AUTH_TOKEN comes first, as in Ray: a wrong one is used (and rejected) though a file holds the right one
    monkeypatch.setenv("RAY_AUTH_TOKEN", "not-the-token")
    assert main(["jobs", "list", "--address", address]) == 2
    assert "rejected the auth token" in capsys.readouterr().err
