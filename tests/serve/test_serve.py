"""`quantray serve` for real: Ray Serve on 127.0.0.1 (2 CPUs) serving versions registered in a real
MLflow server; answers checked against the batch path bit for bit, bad requests, and a champion
switch under bounded load."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from quantray.data.panel import Panel
from quantray.data.pipeline import Prepared
from quantray.ensemble.artifact import Ensemble, save_ensemble
from quantray.ensemble.fusion import FusionConfig, fit_fusion
from quantray.recipes.options import ServeOptions
from quantray.registry import store
from quantray.registry.store import promote, register_ensemble, rollback
from quantray.train.checkpoint import load_checkpoint

from registry_fixtures import free_port

pytestmark = pytest.mark.slow

NAME = "serve-test"
SWITCH_TIMEOUT_S = 30  # poll_s (0.5) + download and load, with room for a loaded machine


def fit_ensemble(prepared: Prepared, member_dirs: list[Path], method: str) -> Ensemble:
    members = [load_checkpoint(path) for path in member_dirs]
    model = fit_fusion(members, prepared.windows("val"), method, cost_bps=prepared.config.cost_bps,
                       config=FusionConfig(epochs=3))
    return Ensemble(model=model, pipeline=prepared.pipeline(), member_ids=tuple(p.name for p in member_dirs),
                    val_sharpe=0.5)


@pytest.fixture(scope="module")
def ensembles(mlflow_process, prepared: Prepared, member_dirs: list[Path], mlflow_server: str,
              tmp_path_factory) -> dict[str, Ensemble]:
    """v1 greedy, v2 attention, registered; v1 is champion."""
    root = tmp_path_factory.mktemp("serve-ensembles")
    found = {}
    for method, dsr, pbo in [("greedy", 0.97, 0.2), ("attention", 0.99, 0.3)]:
        ensemble = fit_ensemble(prepared, member_dirs, method)
        mv = register_ensemble(save_ensemble(root / method, ensemble), name=NAME,
                               # what the gates read: the DSR and the test Sharpe against the baselines
                               metrics={"dsr": dsr, "pbo": pbo, "test_sharpe": 1.0, "equal_weight_test_sharpe": 0.5,
                                        "time_series_momentum_test_sharpe": 0.2},
                               config={"method": method}, report_dir=None,
                               tracking_uri=mlflow_server, experiment="serve-tests", run_name=f"ensemble-{method}")
        found[str(mv.version)] = ensemble
    promote(f"models:/{NAME}/1", tracking_uri=mlflow_server)
    return found


@pytest.fixture(scope="module")
def url(ensembles: dict, mlflow_server: str) -> Iterator[str]:
    import ray

    from quantray.recipes.serve import start_serving, stop_serving

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        serving = start_serving(f"models:/{NAME}@champion",
                                ServeOptions(port=free_port(), poll_s=0.5, tracking_uri=mlflow_server))
        assert serving.version == "1"
        yield serving.url
    finally:
        stop_serving()
        ray.shutdown()


def call(url: str, path: str, body: Any = None, timeout: float = 60) -> tuple[int, dict]:
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    request = urllib.request.Request(url + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def rows(panel: Panel, dates: slice) -> list[dict]:
    out = []
    for t in range(panel.n_dates)[dates]:
        for a, asset in enumerate(panel.assets):
            if panel.mask[t, a]:
                out.append({"date": str(panel.dates[t]), "asset": asset,
                            **{f: float(panel.values[t, a, c]) for c, f in enumerate(panel.fields)}})
    return out


def positions_of(answer: dict, n_assets: int) -> np.ndarray:
    return np.array([r["position"] for r in answer["predictions"]], dtype=np.float32).reshape(-1, n_assets)


def test_predict_matches_the_pyfunc(url: str, ensembles: dict, prepared: Prepared, mlflow_server: str) -> None:
    """/predict gives what `quantray predict` (the pyfunc) gives on the same rows, bit for bit."""
    from quantray.registry.pyfunc import panel_frame

    panel = prepared.panel.head(120)
    status, answer = call(url, "/predict", {"rows": rows(panel, slice(None)), "embeddings": True})
    assert status == 200 and answer["version"] == "1"
    expected = store.load(f"models:/{NAME}/1", tracking_uri=mlflow_server).predict(
        panel_frame(panel), params={"embeddings": True})
    assert [(r["date"], r["asset"]) for r in answer["predictions"]] == list(zip(expected["date"], expected["asset"]))
    np.testing.assert_array_equal([r["position"] for r in answer["predictions"]], expected["position"].to_numpy())
    emb = expected[[c for c in expected.columns if c.startswith("emb_")]].to_numpy()
    np.testing.assert_array_equal([r["embedding"] for r in answer["predictions"]], emb)
    assert np.abs(expected["position"].to_numpy()[-panel.n_assets:]).sum() > 0  # not all zeros


def test_model_and_health(url: str) -> None:
    assert call(url, "/healthz") == (200, {"status": "ok", "version": "1"})
    status, info = call(url, "/model")
    assert status == 200
    assert (info["name"], info["version"], info["alias"], info["dsr"], info["pbo"]) == (NAME, "1", "champion", 0.97, 0.2)
    assert info["trained_from"] and info["data_source"].startswith("synthetic") and info["lookback"] == 16


def test_bars_one_day_at_a_time_equal_the_batch_and_bad_bars_change_nothing(
        url: str, ensembles: dict, prepared: Prepared) -> None:
    panel = prepared.panel
    n_days, n_assets = 250, panel.n_assets
    batch = ensembles["1"].predict(panel.head(n_days)).positions
    served = np.zeros_like(batch)
    for t in range(n_days - 1):
        status, answer = call(url, "/bars", {"rows": rows(panel, slice(t, t + 1))})
        assert status == 200, answer
        assert answer["history_dates"] == t + 1 and answer["predictions"][0]["date"] == str(panel.dates[t])
        served[t] = positions_of(answer, n_assets)[0]
    np.testing.assert_array_equal(served[:-1], batch[:-1])
    assert np.abs(batch[:-1]).sum() > 0

    # bad bars: a 4xx naming the field, one line, and the history does not move
    today, last = rows(panel, slice(n_days - 1, n_days)), rows(panel, slice(n_days - 2, n_days - 1))
    bad = {
        "asset": [{**today[0], "asset": "NOPE"}, *today[1:]],
        "'close'": [{k: v for k, v in today[0].items() if k != "close"}, *today[1:]],
        "'volume'": [{k: v for k, v in r.items() if k != "volume"} for r in today],
        "'high'": [{**today[0], "high": float("inf")}, *today[1:]],
        "'open'": [{**today[0], "open": float("nan")}, *today[1:]],
        "is not after the last bar": last,  # out of order (a date already sent)
        "duplicate date": [*today, today[0]],
    }
    for field, body in bad.items():
        status, answer = call(url, "/bars", json.dumps({"rows": body}).encode())
        assert 400 <= status < 500 and field in answer["error"] and "\n" not in answer["error"], (field, answer)
    status, answer = call(url, "/bars", {"rows": today})
    assert status == 200 and answer["history_dates"] == n_days
    np.testing.assert_array_equal(positions_of(answer, n_assets)[0], batch[-1])


def test_bad_predict_requests_are_one_line_4xx(url: str, prepared: Prepared) -> None:
    good = rows(prepared.panel.head(40), slice(None))
    cases = {
        "unknown asset 'NOPE'": [{**good[0], "asset": "NOPE"}, *good[1:]],
        "'close'": [{k: v for k, v in r.items() if k != "close"} for r in good],
        "'low'": [{**good[3], "low": float("-inf")}, *good[:3], *good[4:]],
        "duplicate date": [*good, good[5]],
        "'rows'": [],
    }
    for field, body in cases.items():
        status, answer = call(url, "/predict", json.dumps({"rows": body}).encode())
        assert status == 400 and field in answer["error"] and "\n" not in answer["error"], (field, answer)
    assert call(url, "/predict", b"{not json")[0] == 400
    assert call(url, "/nowhere")[0] == 404


def test_champion_switch_under_load_drops_nothing_and_mixes_nothing(
        url: str, ensembles: dict, prepared: Prepared, mlflow_server: str) -> None:
    """Three clients send at most 150 requests each while v2 is promoted and then rolled back."""
    panel = prepared.panel.head(60)
    body = {"rows": rows(panel, slice(None))}
    expected = {v: e.predict(panel).positions for v, e in ensembles.items()}
    assert not np.array_equal(expected["1"], expected["2"])
    answers: list[tuple[int, dict]] = []
    stop = threading.Event()

    def client() -> None:
        for _ in range(150):
            if stop.is_set():
                return
            answers.append(call(url, "/predict", body))

    clients = [threading.Thread(target=client) for _ in range(3)]
    for thread in clients:
        thread.start()
    try:
        for target, move in (("2", lambda: promote(f"models:/{NAME}/2", tracking_uri=mlflow_server)),
                             ("1", lambda: rollback(NAME, tracking_uri=mlflow_server))):
            time.sleep(1.0)
            move()
            deadline = time.monotonic() + SWITCH_TIMEOUT_S
            while call(url, "/healthz")[1]["version"] != target:
                assert time.monotonic() < deadline, f"still not serving version {target} after {SWITCH_TIMEOUT_S} s"
                time.sleep(0.1)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in clients:
            thread.join(timeout=120)
    assert answers and all(status == 200 for status, _ in answers), [a for a in answers if a[0] != 200][:1]
    versions = [answer["version"] for _, answer in answers]
    assert {"1", "2"} <= set(versions)
    for _, answer in answers:
        np.testing.assert_array_equal(positions_of(answer, panel.n_assets), expected[answer["version"]])
    assert call(url, "/model")[1]["switches"] == 2
