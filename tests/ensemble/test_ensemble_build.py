"""`quantray ensemble` after a real (tiny) search: selection, fusion, the test-block backtest with
DSR/PSR/PBO, the saved artifact, the MLflow run and the registered model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from quantray.data.sources import load_panel
from quantray.ensemble.artifact import load_ensemble
from quantray.recipes.ensemble import run_ensemble
from quantray.recipes.options import EnsembleOptions
from quantray.registry.store import client_for
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
  features: {names: [log_return, range, volatility, rsi], norm_window: 64}
  splits: {val_fraction: 0.2, test_fraction: 0.2, embargo: 3}
model:
  family: transformer
  arch: {d_model: {choice: [8, 16]}, n_heads: 2, cross_layers: {int: [1, 2]}}
loss: {sharpe: 1.0, direction: {float: [0.0, 0.5]}}
optim: {lr: {float: [0.001, 0.01], log: true}, epochs: 1, batch_dates: 32}
budget: {trials: 2, concurrency: 2}
asha: {enabled: false}
"""


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-trial search: its storage folder (experiment 'tiny')."""
    root = tmp_path_factory.mktemp("search")
    (root / "tiny.yaml").write_text(SPACE)
    done = subprocess.run(
        [QUANTRAY, "tune", str(root / "tiny.yaml"), "--experiment", "tiny", "--storage", str(root / "tune"),
         "--tracking-uri", f"sqlite:///{root / 'mlflow.db'}"],
        capture_output=True, text=True, timeout=400, env=os.environ | {"CI": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


def test_ensemble_of_a_search_is_backtested_saved_and_registered(search: Path, tmp_path: Path) -> None:
    uri = f"sqlite:///{search / 'mlflow.db'}"
    result = run_ensemble("tiny", EnsembleOptions(storage=search / "tune", top_k=2, method="greedy", tracking_uri=uri,
                                                  out=tmp_path / "out", max_corr=0.999))

    trials = load_trials("tiny", search / "tune")
    ranked = sorted((r for r in trials.records if r.checkpoint), key=lambda r: -r.val_sharpe)
    assert result.members[0] == ranked[0].trial_id and 1 <= len(result.members) <= 2
    assert result.model_uri == "models:/tiny/1"
    assert set(result.baselines) == {"best_member", "ridge", "equal_weight", "volatility_targeted",
                                     "time_series_momentum", "oracle"}
    if result.baselines["oracle"] > 0:
        assert result.oracle_ratio == pytest.approx(result.test_sharpe / result.baselines["oracle"])
    else:  # a ratio to an oracle that lost money would be meaningless
        assert result.oracle_ratio is None

    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_trials"] == 2.0
    assert 0.0 <= metrics["dsr"] <= metrics["psr"] <= 1.0  # deflating never raises the bar's probability
    assert 0.0 <= metrics["pbo"] <= 1.0 and metrics["test_sharpe"] == pytest.approx(result.test_sharpe)
    assert (tmp_path / "out" / "report" / "report.html").exists()

    ensemble = load_ensemble(tmp_path / "out" / "ensemble")
    assert ensemble.member_ids == result.members and ensemble.method == "greedy"
    assert ensemble.val_sharpe >= ranked[0].val_sharpe - 1e-6  # greedy starts from the best member
    prediction = ensemble.predict(load_panel(ensemble.pipeline.config.source))
    assert np.isfinite(prediction.positions).all() and np.abs(prediction.positions).max() <= 1.0

    client = client_for(uri)
    version = client.get_model_version("tiny", "1")
    run = client.get_run(version.run_id)
    assert run.info.run_name == "ensemble-greedy"
    assert client.get_experiment(run.info.experiment_id).name == "tiny"  # beside the search's trial runs
    assert run.data.metrics["dsr"] == pytest.approx(metrics["dsr"]) and run.data.params["method"] == "greedy"
    assert "report/report.html" in [a.path for a in client.list_artifacts(run.info.run_id, "report")]


def test_ensemble_cli_prints_the_model_uri_and_rejects_bad_input(search: Path, tmp_path: Path, capsys) -> None:
    from quantray.cli import main

    uri = f"sqlite:///{search / 'mlflow.db'}"
    common = ["--storage", str(search / "tune"), "--tracking-uri", uri, "--out", str(tmp_path / "cli")]
    code = main(["ensemble", "tiny", "--top-k", "3", "--method", "attention", *common])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "models:/tiny/" in out and "oracle ratio" in out and "DSR" in out
    assert (tmp_path / "cli" / "ensemble" / "fusion.pt").exists()
    assert main(["ensemble", "no-such-experiment", *common]) == 2
    assert "no-such-experiment" in capsys.readouterr().err
    assert main(["ensemble", "tiny", "--top-k", "0", *common]) == 2
