"""Relative data paths are resolved where the user typed them, so trials in other directories read them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from quantray.data.sources import absolute_source, load_panel
from quantray.data.synthetic import simulate
from quantray.errors import BadInput
from quantray.jobs import submit
from quantray.recipes.options import TuneOptions
from quantray.recipes.tune import with_absolute_paths
from quantray.tune.space import load_space

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from data_helpers import write_ticker_csvs  # noqa: E402

SPACE = """
name: paths
data:
  source: "{source}"
  lookback: 16
  horizon: 3
  features: {{names: [log_return, range, volatility], norm_window: 64}}
  splits: {{val_fraction: 0.2, test_fraction: 0.2, embargo: 3}}
model: {{family: transformer, arch: {{d_model: 8, n_heads: 2, cross_layers: 1}}}}
optim: {{lr: {{float: [0.001, 0.01], log: true}}, epochs: {epochs}, batch_dates: 32}}
budget: {{trials: 2, concurrency: 2}}
asha: {{enabled: false}}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's folder: prices/ (one CSV per ticker) and spaces/s.yaml reading ../prices; cwd is the folder."""
    write_ticker_csvs(tmp_path / "prices", simulate(seed=1, assets=3, days=400))
    (tmp_path / "spaces").mkdir()
    (tmp_path / "spaces" / "s.yaml").write_text(SPACE.format(source="csv:../prices", epochs=1))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_absolute_source_only_touches_relative_file_paths(tmp_path: Path) -> None:
    assert absolute_source("csv:prices", tmp_path) == f"csv:{tmp_path / 'prices'}"
    assert absolute_source("parquet: ../x.parquet", tmp_path / "a") == f"parquet:{tmp_path / 'x.parquet'}"
    assert absolute_source("csv:/data/prices", tmp_path) == "csv:/data/prices"
    for other in ("synthetic:days=300", "bundled:factors", "yfinance:SPY", "synthetic"):
        assert absolute_source(other, tmp_path) == other


def test_a_relative_data_flag_still_loads_from_another_directory(project: Path, tmp_path_factory) -> None:
    options = with_absolute_paths(TuneOptions(data="csv:prices"))
    os.chdir(tmp_path_factory.mktemp("trial_dir"))  # where Ray runs a trial
    assert load_panel(options.data).assets == ("IWM", "QQQ", "SPY")


def test_a_relative_path_in_a_space_file_is_relative_to_the_file(project: Path, tmp_path_factory) -> None:
    space = load_space("spaces/s.yaml")
    os.chdir(tmp_path_factory.mktemp("trial_dir"))
    config = space.resolve({"optim.lr": 0.003})
    assert config.data.source == f"csv:{project / 'prices'}"
    assert load_panel(config.data.source).assets == ("IWM", "QQQ", "SPY")


def test_submit_gives_a_local_head_absolute_paths(project: Path) -> None:
    space = project / "spaces" / "s.yaml"
    from_space = submit.with_job_data(space, TuneOptions(), cluster_sees_local_files=True)
    assert from_space.data == f"csv:{project / 'prices'}"
    from_flag = submit.with_job_data(space, TuneOptions(data="csv:prices"), cluster_sees_local_files=True)
    assert from_flag.data == f"csv:{project / 'prices'}"


def test_submit_refuses_a_relative_path_a_remote_cluster_cannot_see(project: Path) -> None:
    space = project / "spaces" / "s.yaml"
    with pytest.raises(BadInput, match=r"^--data: 'csv:prices' is a path on this machine"):
        submit.with_job_data(space, TuneOptions(data="csv:prices"), cluster_sees_local_files=False)
    with pytest.raises(BadInput, match=r"key 'data.source': 'csv:../prices' is a path on this machine"):
        submit.with_job_data(space, TuneOptions(), cluster_sees_local_files=False)
    shared = TuneOptions(data="csv:/mnt/shared/prices")  # the cluster's own path: the job's driver checks it
    assert submit.with_job_data(space, shared, cluster_sees_local_files=False) == shared
    synthetic = TuneOptions(data="synthetic:days=300")
    assert submit.with_job_data(space, synthetic, cluster_sees_local_files=False) == synthetic


@pytest.mark.slow
def test_tune_with_a_relative_csv_path_runs_its_trials(project: Path) -> None:
    """The bug as a user met it: `quantray tune SPACE --data csv:prices` failed every trial. ~40 s."""
    quantray = str(Path(sys.executable).with_name("quantray"))
    result = subprocess.run(
        [quantray, "tune", "spaces/s.yaml", "--data", "csv:prices", "--experiment", "rel",
         "--tracking-uri", f"sqlite:///{project / 'mlflow.db'}"],
        capture_output=True, text=True, timeout=400, env=os.environ | {"CI": "1"}, cwd=project,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "(2 trials, 0 failed" in result.stdout, result.stdout
