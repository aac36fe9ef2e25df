"""The model registry against a real MLflow server: register, gated promotion, rollback, and
loading the champion in a fresh process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from quantray.cli import main
from quantray.data.pipeline import Prepared
from quantray.data.sources import load_panel
from quantray.ensemble.artifact import Ensemble, save_ensemble
from quantray.ensemble.fusion import FusionConfig, fit_fusion
from quantray.registry import store
from quantray.registry.store import Gates, promote, register_ensemble, rollback
from quantray.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow

QUANTRAY = Path(sys.executable).with_name("quantray")
NAME = "registry-test"
PASSING_SHARPES = {"test_sharpe": 1.0, "equal_weight_test_sharpe": 0.4, "time_series_momentum_test_sharpe": 0.2}


def fit_ensemble(prepared: Prepared, member_dirs: list[Path], method: str) -> Ensemble:
    members = [load_checkpoint(path) for path in member_dirs]
    model = fit_fusion(members, prepared.windows("val"), method, cost_bps=prepared.config.cost_bps,
                       config=FusionConfig(epochs=5))
    return Ensemble(model=model, pipeline=prepared.pipeline(), member_ids=tuple(p.name for p in member_dirs),
                    val_sharpe=0.5)


@pytest.fixture(scope="module")
def versions(mlflow_process, prepared: Prepared, member_dirs: list[Path], mlflow_server: str,
             tmp_path_factory) -> dict:
    """Two registered versions: v1 greedy, v2 attention, both passing the default gates.

    (The server starts first and the members train while it comes up.)"""
    root = tmp_path_factory.mktemp("ensembles")
    ensembles, registered, dirs = {}, {}, {}
    for version, (method, dsr, pbo) in enumerate([("greedy", 0.97, 0.2), ("attention", 0.99, 0.3)], start=1):
        ensemble = fit_ensemble(prepared, member_dirs, method)
        directory = save_ensemble(root / method, ensemble)
        report = root / f"report-{method}"
        report.mkdir()
        (report / "report.html").write_text("<html>report</html>")
        mv = register_ensemble(directory, name=NAME, metrics={"dsr": dsr, "pbo": pbo, **PASSING_SHARPES},
                               config={"method": method, "data": {"lookback": 16}}, report_dir=report,
                               tracking_uri=mlflow_server, experiment="registry-tests", run_name=f"ensemble-{method}")
        assert mv.version == str(version)
        ensembles[mv.version], registered[mv.version], dirs[mv.version] = ensemble, mv, directory
    return {"ensembles": ensembles, "versions": registered, "dirs": dirs}


def aliases(uri: str) -> dict[str, str]:
    return dict(store.client_for(uri).get_registered_model(NAME).aliases)


def test_registered_version_carries_its_run(mlflow_server: str, versions: dict) -> None:
    client = store.client_for(mlflow_server)
    mv = versions["versions"]["2"]
    run = client.get_run(mv.run_id)
    assert run.info.run_name == "ensemble-attention"
    assert run.data.metrics["dsr"] == pytest.approx(0.99) and run.data.params["data.lookback"] == "16"
    assert [a.path for a in client.list_artifacts(mv.run_id, "report")] == ["report/report.html"]


def test_promotion_is_gated_and_rollback_restores(mlflow_server: str, versions: dict, capsys) -> None:
    uri = ["--tracking-uri", mlflow_server]
    assert main(["promote", f"models:/{NAME}/1", *uri]) == 0
    assert aliases(mlflow_server) == {"champion": "1"}

    # v2's PBO 0.3 fails a 0.25 gate: exit 3 (refused, not bad input), one line naming the gate, nothing moves
    capsys.readouterr()
    assert main(["promote", f"models:/{NAME}/2", "--max-pbo", "0.25", *uri]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pbo 0.300 > max_pbo 0.25" in err
    assert aliases(mlflow_server) == {"champion": "1"}

    result = promote(f"models:/{NAME}/2", gates=Gates(), tracking_uri=mlflow_server)
    assert (result.version, result.previous_version, result.forced) == ("2", "1", False)
    assert aliases(mlflow_server) == {"champion": "2", "previous": "1"}

    assert main(["rollback", NAME, *uri]) == 0
    assert aliases(mlflow_server) == {"champion": "1", "previous": "2"}


def test_force_overrides_a_failed_gate_loudly(mlflow_server: str, versions: dict, capsys) -> None:
    result = promote(f"models:/{NAME}/1", alias="staging", gates=Gates(min_dsr=0.999), force=True,
                     tracking_uri=mlflow_server)
    assert result.forced and result.failed_gates == ("dsr 0.970 < min_dsr 0.999",)
    assert "WARNING: --force" in capsys.readouterr().err
    assert aliases(mlflow_server)["staging"] == "1"


def test_champion_loads_in_a_fresh_process(mlflow_server: str, versions: dict, tmp_path: Path) -> None:
    promote(f"models:/{NAME}/2", tracking_uri=mlflow_server)
    out = tmp_path / "positions.csv"
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow_server}
    done = subprocess.run([str(QUANTRAY), "predict", f"models:/{NAME}@champion", "--data", versions["ensembles"]["2"]
                           .pipeline.config.source, "--out", str(out), "--embeddings"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    rows = pd.read_csv(out)
    expected = versions["ensembles"]["2"].predict(load_panel(versions["ensembles"]["2"].pipeline.config.source), embeddings=True)
    n_dates, n_assets = expected.positions.shape
    assert list(rows.columns[:3]) == ["date", "asset", "position"] and len(rows) == n_dates * n_assets
    assert rows["asset"].tolist()[:n_assets] == list(expected.assets)
    np.testing.assert_allclose(rows["position"].to_numpy().reshape(n_dates, n_assets), expected.positions, atol=1e-6)
    emb = rows[[c for c in rows.columns if c.startswith("emb_")]].to_numpy()
    np.testing.assert_allclose(emb.reshape(expected.embeddings.shape), expected.embeddings, atol=1e-5)


def test_predict_prints_the_last_date(mlflow_server: str, versions: dict, capsys) -> None:
    source = versions["ensembles"]["1"].pipeline.config.source
    assert main(["predict", f"models:/{NAME}/1", "--data", source, "--tracking-uri", mlflow_server]) == 0
    out = capsys.readouterr().out
    last = versions["ensembles"]["1"].predict(load_panel(source))
    assert f"positions on {str(last.dates[-1])}" in out
    for asset in last.assets:
        assert asset in out


def test_backtest_verb_writes_a_report(mlflow_server: str, versions: dict, tmp_path: Path, capsys) -> None:
    assert main(["backtest", f"models:/{NAME}/1", "--tracking-uri", mlflow_server, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for strategy in ("ensemble", "best_member", "equal_weight", "time_series_momentum", "oracle"):
        assert strategy in out
    assert (tmp_path / "report.html").exists()


def test_cli_errors_are_one_line_exit_2(mlflow_server: str, versions: dict, prepared: Prepared,
                                        tmp_path: Path, capsys) -> None:
    uri = ["--tracking-uri", mlflow_server]
    assert main(["promote", "models:/no-such-model/1", *uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no-such-model" in err

    assert main(["promote", f"models:/{NAME}/99", *uri]) == 2
    assert "models:/registry-test/99" in capsys.readouterr().err

    assert main(["rollback", NAME, "--alias", "nobody", *uri]) == 2
    assert "no 'previous-nobody' alias" in capsys.readouterr().err

    # a CSV panel without the third asset: the prediction names it
    panel = prepared.panel
    keep = [a for i, a in enumerate(panel.assets) if i != 2]
    rows = [{"date": str(d), "asset": a, **{f: panel.values[t, i, c] for c, f in enumerate(panel.fields)}}
            for t, d in enumerate(panel.dates) for i, a in enumerate(panel.assets) if a in keep]
    csv = tmp_path / "three.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    assert main(["predict", f"models:/{NAME}/1", "--data", f"csv:{csv}", *uri]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"asset '{panel.assets[2]}' is missing" in err


@pytest.mark.parametrize("version", ["1", "2"])
def test_the_registered_model_predicts_what_training_measured(mlflow_server: str, versions: dict,
                                                              prepared: Prepared, version: str) -> None:
    """One data pipeline: the pyfunc, fed the raw OHLCV rows, returns bit for bit the positions the
    training side computed on the test block (which its backtest and DSR were judged on)."""
    from quantray.registry.pyfunc import panel_frame

    pyfunc = store.load(f"models:/{NAME}/{version}", tracking_uri=mlflow_server)
    rows = pyfunc.predict(panel_frame(prepared.panel))
    n_dates, n_assets = prepared.panel.n_dates, prepared.panel.n_assets
    served = rows["position"].to_numpy().reshape(n_dates, n_assets).astype(np.float32)
    test = prepared.windows("test")
    measured = versions["ensembles"][version].model.run(test).positions
    np.testing.assert_array_equal(served[test.dates_idx], measured)


def test_the_model_is_logged_as_code_and_loads_without_unpickling(mlflow_server: str, versions: dict,
                                                                  tmp_path: Path) -> None:
    """MLflow warns that a pickled python_model "may execute arbitrary code during deserialization"."""
    import warnings

    from mlflow.models import Model

    records: list[logging.LogRecord] = []
    listener = logging.Handler()
    listener.emit = records.append  # MLflow's logger does not propagate to pytest's caplog
    logging.getLogger("mlflow").addHandler(listener)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            mv = register_ensemble(versions["dirs"]["1"], name=f"{NAME}-code", metrics={"dsr": 0.99},
                                   config={}, report_dir=None, tracking_uri=mlflow_server, experiment="registry-tests")
            pyfunc = store.load(f"models:/{mv.name}/{mv.version}", tracking_uri=mlflow_server)
    finally:
        logging.getLogger("mlflow").removeHandler(listener)
    said = "\n".join([r.getMessage() for r in records] + [str(w.message) for w in caught])
    assert "arbitrary code" not in said and "CloudPickle" not in said, said

    import mlflow.artifacts

    with store.using_tracking_uri(mlflow_server):
        local = Path(mlflow.artifacts.download_artifacts(f"models:/{mv.name}/{mv.version}", dst_path=str(tmp_path)))
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert "MLmodel" in files and not any(f.endswith(".pkl") for f in files), files
    flavor = Model.load(str(local / "MLmodel")).flavors["python_function"]
    assert flavor.get("model_code_path", "").endswith("model_code.py"), flavor
    ensemble = pyfunc.unwrap_python_model().ensemble  # what `quantray backtest` reads
    assert ensemble.member_ids == versions["ensembles"]["1"].member_ids


def test_two_promotions_at_once_keep_champion_and_previous_consistent(mlflow_server: str, versions: dict) -> None:
    """Both promotions land, one after the other: whichever is champion, the other is `previous`."""
    import threading

    name = f"{NAME}-race"
    for _ in range(3):
        register_ensemble(versions["dirs"]["1"], name=name, metrics={"dsr": 0.99, "pbo": 0.1, **PASSING_SHARPES},
                          config={}, report_dir=None, tracking_uri=mlflow_server, experiment="registry-tests")
    client = store.client_for(mlflow_server)
    for round_ in range(4):
        client.set_registered_model_alias(name, "champion", "1")
        client.delete_registered_model_alias(name, "previous")
        start = threading.Barrier(2)
        outcomes: dict[str, object] = {}

        def promote_now(version: str) -> None:
            start.wait()
            outcomes[version] = promote(f"models:/{name}/{version}", tracking_uri=mlflow_server)

        threads = [threading.Thread(target=promote_now, args=(v,)) for v in ("2", "3")]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        state = dict(client.get_registered_model(name).aliases)
        assert {state["champion"], state["previous"]} == {"2", "3"}, f"round {round_}: {state}"
        # each promotion reports the version it really demoted
        assert sorted(r.previous_version for r in outcomes.values()) == ["1", state["previous"]], outcomes
    assert not client.search_registered_models(f"name = '{store.lock_name(name)}'")  # released


def test_the_lock_is_taken_when_its_holder_releases_between_the_create_and_its_read(mlflow_server: str) -> None:
    """MLflow's SQL store answers a lost create by reading the holder; when the holder has just
    released, that read raises RESOURCE_DOES_NOT_EXIST out of `create_registered_model` (CI saw a
    promotion thread die of it). The lock is free then: the waiter takes it."""
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    real = store.client_for(mlflow_server)

    class ReleasedMeanwhile:  # the real client, but its first create loses to a holder that is gone by the read
        creates = 0

        def create_registered_model(self, name: str, **kwargs):
            self.creates += 1
            if self.creates == 1:
                raise MlflowException(f"Registered Model with name={name} not found", error_code=RESOURCE_DOES_NOT_EXIST)
            return real.create_registered_model(name, **kwargs)

        def __getattr__(self, attr: str):
            return getattr(real, attr)

    client = ReleasedMeanwhile()
    with store.promotion_lock(client, f"{NAME}-released", wait_s=5):
        assert real.get_registered_model(store.lock_name(f"{NAME}-released"))
    assert client.creates == 2
    assert not real.search_registered_models(f"name = '{store.lock_name(NAME + '-released')}'")


def test_using_a_tracking_uri_leaves_the_environment_as_it_was(tmp_path: Path, monkeypatch) -> None:
    """MLflow exports the URIs it is given; restoring by value used to export ./mlflow.db to every
    subprocess started afterwards (a `quantray predict` then looked in the wrong store)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    with store.using_tracking_uri(f"sqlite:///{tmp_path / 'inside.db'}"):
        assert os.environ["MLFLOW_TRACKING_URI"].endswith("inside.db")
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    with store.using_tracking_uri(f"sqlite:///{tmp_path / 'inside.db'}"):
        pass
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:1"
