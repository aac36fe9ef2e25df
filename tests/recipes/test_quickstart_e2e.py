"""The main job as the README runs it: `quantray quickstart` (a walk-forward, then a gated
promotion) in a fresh folder, then a prediction from another process. And the gates: over several seeds the quickstart promotes on the
planted-signal market and refuses on a market without signal.

Cost (2 CPUs): about 3 minutes per quickstart run at this reduced budget (3 trials); 5 runs.
The end-to-end test was measured at 2:42 for 4 trials on 1200 days; the gate test uses the
space's own 2500 days, on which the quickstart's signal is strong enough to measure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

QUANTRAY = str(Path(sys.executable).with_name("quantray"))
TRIALS = "3"
NOISE = ("Configuration for experiment", "TensorBoard", "Token authentication", "Creating initial MLflow database",
         "Updating database tables", "Traceback", "arbitrary code")


def quickstart(folder: Path, data: str) -> subprocess.CompletedProcess:
    folder.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "QUANTRAY_STORAGE")}
    return subprocess.run([QUANTRAY, "quickstart", "--trials", TRIALS, "--data", data], cwd=folder,
                          capture_output=True, text=True, timeout=1200, env=env | {"CI": "1"})


def field(stdout: str, name: str) -> str:
    match = re.search(rf"^{name}\s+(\S+)", stdout, re.MULTILINE)
    assert match, f"no '{name}' line in:\n{stdout}"
    return match.group(1)


def test_quickstart_end_to_end_then_predict_from_a_fresh_process(tmp_path: Path) -> None:
    data = "synthetic:days=1000,signal=2,seed=0"
    done = quickstart(tmp_path, data)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for noise in NOISE:  # Ray's, Tune's and MLflow's output is in the log, not on the console
        assert noise not in out + done.stderr, noise
    log = Path(field(out, "log"))
    assert log.is_file() and log.is_relative_to(tmp_path / ".quantray") and log.stat().st_size > 0
    assert re.search(r"^\[\s*\d+s\] start ", out, re.MULTILINE) and ": 3 trials, " in out
    assert re.search(r"^walk-forward .*refit mode, 4 folds", out, re.MULTILINE)

    report = tmp_path / field(out, "report")
    assert report.is_file() and report.is_relative_to(tmp_path / ".quantray")
    model_uri = field(out, "model")
    assert model_uri == "models:/quickstart/1"  # every quickstart is a new version of one model
    decision = re.search(r"^(promoted|not promoted)\s+(.*)$", out, re.MULTILINE)
    assert decision, out  # the gate decision, one line

    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path / '.quantray' / 'mlflow.db'}"
    name = model_uri.split("/")[1]
    aliases = dict(MlflowClient(tracking_uri=store, registry_uri=store).get_registered_model(name).aliases)
    assert aliases == ({"champion": "1"} if decision.group(1) == "promoted" else {}), (aliases, decision.group(2))

    predicted = subprocess.run([QUANTRAY, "predict", model_uri, "--data", data, "--out", "p.csv"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert predicted.returncode == 0, predicted.stderr
    rows = pd.read_csv(tmp_path / "p.csv")
    assert list(rows.columns[:3]) == ["date", "asset", "position"] and len(rows) % 8 == 0
    assert rows["position"].abs().max() > 0 and rows["position"].notna().all()


@pytest.mark.parametrize("seed", [1])
@pytest.mark.parametrize(("signal", "promoted"), [("2", True), ("0", False)])
def test_the_gates_promote_with_signal_and_refuse_without(tmp_path: Path, seed: int, signal: str,
                                                          promoted: bool) -> None:
    done = quickstart(tmp_path, f"synthetic:days=2500,signal={signal},seed={seed}")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    decision = re.search(r"^(promoted|not promoted)\s+(.*)$", done.stdout, re.MULTILINE)
    assert decision, done.stdout
    assert (decision.group(1) == "promoted") == promoted, done.stdout[-2500:]
