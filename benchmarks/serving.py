"""Serving throughput and latency: `quantray serve` (Ray Serve) beside `mlflow models serve` (MLflow's
own scoring server, --env-manager local) on the same registered version, on 127.0.0.1.

    .venv/bin/python benchmarks/serving.py [--requests 200] [--seconds 20]

Builds a small model the way the tests do (members trained for a few steps on a 13-asset synthetic
panel, two greedy ensembles registered in a real `mlflow server`), then for 1, 8 and 32 concurrent
clients measures requests/s and p50/p99 latency of:
  mlflow /invocations   the last `lookback` dates x 13 assets (the history a window needs)
  quantray /predict     the same rows
  quantray /bars        one date x 13 assets (the server keeps the history)
and counts failed requests while the champion moves (promote, then rollback) under 8 clients.
Each cell is bounded by --requests and --seconds. Prints a Markdown table. Not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "ensemble"))

NAME = "bench-serving"
CLIENTS = (1, 8, 32)


def post(url: str, body: bytes, timeout: float = 60) -> tuple[bool, float]:
    start = time.perf_counter()
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
            ok = response.status == 200
    except (urllib.error.URLError, OSError):
        ok = False
    return ok, time.perf_counter() - start


def load(url: str, bodies, clients: int, requests: int, seconds: float) -> dict:
    """`requests` POSTs (bounded by `seconds`) from `clients` threads; bodies(i) gives the i-th body."""
    deadline = time.monotonic() + seconds
    lock, counter, results = threading.Lock(), [0], []

    def client() -> None:
        while time.monotonic() < deadline:
            with lock:
                i = counter[0]
                counter[0] += 1
            if i >= requests:
                return
            results.append(post(url, bodies(i)))

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.perf_counter() - start
    latencies = np.array([lat for ok, lat in results if ok]) * 1000
    return {"n": len(results), "errors": sum(not ok for ok, _ in results), "rps": len(latencies) / wall,
            "p50": float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
            "p99": float(np.percentile(latencies, 99)) if len(latencies) else float("nan")}


def wait_http(url: str, process: subprocess.Popen | None, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise RuntimeError(f"{url}: no answer after {timeout} s")


def build_model(root: Path, tracking_uri: str):
    from ensemble_cases import DATA, MEMBERS, train_member

    from quantray.data.pipeline import prepare
    from quantray.ensemble.artifact import Ensemble, save_ensemble
    from quantray.ensemble.fusion import FusionConfig, fit_fusion
    from quantray.registry.store import promote, register_ensemble
    from quantray.train.checkpoint import load_checkpoint

    data = replace(DATA, source="synthetic:seed=3,assets=13,days=520")
    prepared = prepare(data)
    dirs = [train_member(prepared, family, arch, seed, root / f"trial_{seed}", data=data)
            for seed, (family, arch) in enumerate(MEMBERS)]
    for version, members in enumerate((dirs[:2], dirs), start=1):
        loaded = [load_checkpoint(p) for p in members]
        model = fit_fusion(loaded, prepared.windows("val"), "greedy", cost_bps=data.cost_bps, config=FusionConfig())
        ensemble = Ensemble(model, prepared.pipeline(), tuple(p.name for p in members), 0.5)
        register_ensemble(save_ensemble(root / f"ensemble-{version}", ensemble), name=NAME,
                          metrics={"dsr": 0.99, "pbo": 0.1}, config={}, report_dir=None,
                          tracking_uri=tracking_uri, experiment="bench-serving")
    promote(f"models:/{NAME}/1", tracking_uri=tracking_uri)
    return prepared


def records(panel, t0: int, t1: int) -> list[dict]:
    return [{"date": str(panel.dates[t]), "asset": a, **{f: float(panel.values[t, i, c]) for c, f in enumerate(panel.fields)}}
            for t in range(t0, t1) for i, a in enumerate(panel.assets)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per cell (default 200)")
    parser.add_argument("--seconds", type=float, default=20.0, help="time bound per cell (default 20)")
    args = parser.parse_args()

    import ray

    from quantray.recipes.options import ServeOptions
    from quantray.recipes.serve import start_serving, stop_serving
    from quantray.registry.store import promote, rollback

    root = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    ports = iter(free_ports(3))
    mlflow_port, quantray_port, scoring_port = next(ports), next(ports), next(ports)
    tracking = f"http://127.0.0.1:{mlflow_port}"
    processes = [subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        wait_http(f"{tracking}/health", processes[0])
        prepared = build_model(root, tracking)
        panel, lookback = prepared.panel, prepared.config.lookback
        scoring_log = (root / "scoring.log").open("wb")  # MLflow's scoring server says why it failed here
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "mlflow", "models", "serve", "-m", f"models:/{NAME}/1", "--env-manager", "local",
             "--host", "127.0.0.1", "--port", str(scoring_port)],
            env={**os.environ, "MLFLOW_TRACKING_URI": tracking, "MLFLOW_REGISTRY_URI": tracking,
                 "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"},  # its uvicorn
            stdout=scoring_log, stderr=subprocess.STDOUT))
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        serving = start_serving(f"models:/{NAME}@champion", ServeOptions(port=quantray_port, poll_s=1.0,
                                                                         tracking_uri=tracking))
        wait_http(f"{serving.url}/healthz", None)
        try:
            wait_http(f"http://127.0.0.1:{scoring_port}/ping", processes[1])
        except RuntimeError:
            print((root / "scoring.log").read_text()[-3000:], file=sys.stderr)
            raise

        last = panel.n_dates - 1
        window = records(panel, last - lookback + 1, last + 1)
        scoring_body = json.dumps({"dataframe_records": window}).encode()
        predict_body = json.dumps({"rows": window}).encode()
        # the bar history: everything before the benchmark's bars, one date at a time
        for t in range(last - lookback - 1):
            assert post(f"{serving.url}/bars", json.dumps({"rows": records(panel, t, t + 1)}).encode())[0]
        synthetic_day = [0]

        def next_bar(i: int) -> bytes:  # a new date each request: the bars after the panel's dates
            t = last - lookback - 1 + synthetic_day[0] % (lookback + 1)
            synthetic_day[0] += 1
            rows = records(panel, t, t + 1)
            date = np.datetime64(panel.dates[last]) + np.timedelta64(synthetic_day[0], "D")
            return json.dumps({"rows": [{**r, "date": str(date)} for r in rows]}).encode()

        table = []
        for clients in CLIENTS:
            for label, url, bodies in (
                    ("mlflow models serve /invocations", f"http://127.0.0.1:{scoring_port}/invocations",
                     lambda i: scoring_body),
                    ("quantray serve /predict", f"{serving.url}/predict", lambda i: predict_body),
                    ("quantray serve /bars", f"{serving.url}/bars", None)):
                if bodies is None:  # bars must arrive in date order: one client sends them
                    if clients != 1:
                        continue
                    bodies = next_bar
                result = load(url, bodies, clients, args.requests, args.seconds)
                table.append((label, clients, result))
                print(f"{label:34} {clients:>3} clients  {result['rps']:8.1f} req/s  p50 {result['p50']:7.1f} ms  "
                      f"p99 {result['p99']:7.1f} ms  errors {result['errors']}/{result['n']}", flush=True)

        # errors while the champion moves: 8 clients on /predict, promote v2 then roll back
        moved = {}

        def move() -> None:
            time.sleep(1.0)
            promote(f"models:/{NAME}/2", tracking_uri=tracking)
            moved["promoted"] = time.monotonic()
            time.sleep(4.0)
            rollback(NAME, tracking_uri=tracking)

        mover = threading.Thread(target=move)
        mover.start()
        switch = load(f"{serving.url}/predict", lambda i: predict_body, 8, 10 * args.requests, 10.0)
        mover.join()
        print(f"\nchampion switch (promote + rollback) under 8 clients: {switch['errors']} errors in "
              f"{switch['n']} requests ({switch['rps']:.1f} req/s)")
        print("\n| server | clients | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|---:|")
        for label, clients, r in table:
            print(f"| {label} | {clients} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['errors']}/{r['n']} |")
        stop_serving()
        ray.shutdown()
    finally:
        for process in processes:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


def free_ports(n: int) -> list[int]:
    import socket

    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


if __name__ == "__main__":
    main()
