"""Real searches on a local Ray (2 CPUs), through the CLI in a subprocess as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from quantray.config import TrainConfig, resolve
from quantray.train.checkpoint import load_checkpoint
from quantray.tune.results import load_trials

pytestmark = pytest.mark.slow

QUANTRAY = str(Path(sys.executable).with_name("quantray"))

SPACE = """
name: tiny
seed: 3
data:
  source: "synthetic:seed=2,assets=4,days=500"
  lookback: 16
  horizon: 3
  features: {{names: [log_return, range, volatility, rsi], norm_window: 64}}
  splits: {{val_fraction: 0.2, test_fraction: 0.2, embargo: 3}}
model:
  family: transformer
  arch: {{d_model: {{choice: [8, 16]}}, n_heads: 2, cross_layers: {{int: [1, 2]}}}}
loss: {{sharpe: 1.0, direction: {{float: [0.0, 0.5]}}}}
optim: {{lr: {lr}, epochs: {epochs}, batch_dates: 32}}
budget: {{trials: {trials}, concurrency: {concurrency}}}
asha: {{grace_period: 1, reduction_factor: 2, max_t: {max_t}}}
"""


def write_space(tmp_path: Path, *, lr: str = "{float: [0.001, 0.01], log: true}", epochs: int = 2,
                trials: int = 4, concurrency: int = 2, max_t: int = 0) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(SPACE.format(lr=lr, epochs=epochs, trials=trials, concurrency=concurrency, max_t=max_t))
    return path


def tune_command(space: Path, tmp_path: Path, experiment: str, *extra: str) -> list[str]:
    return [QUANTRAY, "tune", str(space), "--experiment", experiment, "--storage", str(tmp_path / "tune"),
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", *extra]


def run(command: list[str], timeout: float = 420) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=os.environ | {"CI": "1"})


def test_search_finishes_with_every_trial_in_mlflow(tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    result = run(tune_command(write_space(tmp_path), tmp_path, "e1"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "best trial" in result.stdout

    trials = load_trials("e1", tmp_path / "tune")
    assert trials.n_tried == 4
    assert trials.n_compared == 4  # epochs were chosen on the early-stopping block: one model per trial
    assert all(r.status == "TERMINATED" for r in trials.records)
    best = trials.best()
    assert best is not None and f"{best.val_sharpe:.2f}" in result.stdout
    member = load_checkpoint(best.checkpoint)
    assert member.metrics["val_sharpe"] == pytest.approx(best.val_sharpe)

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("e1")
    runs = client.search_runs([experiment.experiment_id], "tags.`quantray.kind` = 'trial'")
    assert sorted(r.data.tags["trial_id"] for r in runs) == sorted(r.trial_id for r in trials.records)
    by_id = {r.trial_id: r for r in trials.records}
    for mlflow_run in runs:
        record = by_id[mlflow_run.data.tags["trial_id"]]
        history = client.get_metric_history(mlflow_run.info.run_id, "val_sharpe")
        assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(record.history)
        assert "optim.lr" in mlflow_run.data.params
        config_file = client.download_artifacts(mlflow_run.info.run_id, "config.json", str(tmp_path))
        config = resolve(TrainConfig, json.loads(Path(config_file).read_text()), where="config.json")
        assert config.optim.lr == pytest.approx(float(mlflow_run.data.params["optim.lr"]))


def test_a_nan_trial_fails_and_the_search_goes_on(tmp_path: Path) -> None:
    space = write_space(tmp_path, lr="{choice: [0.003, 1.0e30]}", trials=4)
    result = run(tune_command(space, tmp_path, "nan"))
    trials = load_trials("nan", tmp_path / "tune")
    statuses = {r.trial_id: r.status for r in trials.records}
    assert trials.n_tried == 4, statuses
    assert "ERROR" in statuses.values() and "TERMINATED" in statuses.values(), statuses
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 failed" in result.stdout or "2 failed" in result.stdout or "3 failed" in result.stdout


def test_a_killed_search_resumes_and_keeps_its_finished_trials(tmp_path: Path) -> None:
    space = write_space(tmp_path, trials=4, concurrency=1, epochs=2)
    command = tune_command(space, tmp_path, "killed")
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    experiment_dir = tmp_path / "tune" / "killed"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and _finished_trials(experiment_dir) < 2:
            assert process.poll() is None, "the search ended before it could be killed"
            time.sleep(1)
        time.sleep(3)  # let Tune write its experiment state
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the driver and the Ray it started
        process.wait()
    before = {r.trial_id: r for r in load_trials("killed", tmp_path / "tune").records if r.status == "TERMINATED"}
    assert before, "no trial had finished when the search was killed"

    result = run(command + ["--resume"])
    assert result.returncode == 0, result.stderr[-3000:]
    after = {r.trial_id: r for r in load_trials("killed", tmp_path / "tune").records}
    assert len(after) == 4
    assert all(r.status == "TERMINATED" for r in after.values())
    for trial_id, record in before.items():
        assert after[trial_id].history == record.history  # finished trials were not run again


def test_multi_worker_trials_train_under_torchtrainer_and_asha_stops_them_without_hanging(tmp_path: Path) -> None:
    # 3 trials of 2 DDP workers (gloo) on a 2-CPU Ray, fed from Ray Data shards. ASHA's max_t (2)
    # below the epochs (3) makes it stop every trial while its TorchTrainer runs: unless the
    # stopped trainer's placement group is freed, the next trial waits for CPUs forever.
    space = write_space(tmp_path, trials=3, concurrency=1, epochs=3, max_t=2)
    result = run(tune_command(space, tmp_path, "ddp", "--workers-per-trial", "2"), timeout=540)
    assert result.returncode == 0, result.stderr[-3000:]
    trials = load_trials("ddp", tmp_path / "tune")
    assert trials.n_tried == 3
    assert all(r.status == "TERMINATED" for r in trials.records)
    assert result.stdout.count("stopped by ASHA") == 3
    for record in trials.records:
        assert 1 <= len(record.history) <= 2
        assert record.checkpoint is not None and "-train" in str(record.checkpoint)  # written by the TorchTrainer
        load_checkpoint(record.checkpoint)


def _finished_trials(experiment_dir: Path) -> int:
    count = 0
    for result_file in experiment_dir.glob("trial-*/result.json"):
        lines = [line for line in result_file.read_text().splitlines() if line.strip()]
        if lines and json.loads(lines[-1]).get("epoch") == 2:
            count += 1
    return count
