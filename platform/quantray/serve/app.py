"""The Ray Serve application: an ingress deployment that predicts, and one that keeps the bars.

    POST /predict   {"rows": [{date, asset, open, high, low, close, volume}, ...], "embeddings": false}
                    -> positions for every (date, asset) of the rows (0 before `lookback` dates)
    POST /bars      {"rows": today's bar per asset} -> today's positions from the whole history
    GET  /healthz   {"status": "ok", "version": ...}
    GET  /model     name, version, alias, DSR/PBO and training run of the live version

`Server` (the ingress, `--replicas` of it) holds the live version and swaps it when the alias it
follows moves: a poller thread loads the new version beside the old one and swaps one reference;
each request reads that reference once, so an answer comes from one version. Inference is batched
across clients (`serve.batch`): the windows of the queued requests are stacked into one block and
run through the ensemble in its fixed-shape batches (quantray.train.inference.padded_batches), so a
request's numbers do not depend on what it was batched with.

`BarBook` (one replica, whatever `--replicas` is) keeps the bar history, so every ingress replica
sees the same one; a bar is appended only when it is valid and after the last one.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.requests import Request
from starlette.responses import JSONResponse

from quantray.data.panel import Panel
from quantray.data.windows import Windows, stack_windows
from quantray.ensemble.fusion import FusionOutput
from quantray.errors import BadInput
from quantray.serve.history import append_bar, empty_history
from quantray.serve.live import LiveModel, current_version, load_live
from quantray.serve.requests import parse_bar, parse_predict
from quantray.registry.store import parse_model_uri

APP_NAME = "quantray"
MAX_BATCH_SIZE = 32  # queued requests stacked into one model call
BATCH_WAIT_S = 0.002  # how long a request waits for others to batch with
MAX_ONGOING_REQUESTS = 64  # per ingress replica; more queue at the proxy


@dataclass(frozen=True)
class Job:
    live: LiveModel
    windows: Windows
    embeddings: bool


def infer(jobs: list[Job]) -> list[FusionOutput]:
    """Run each version's jobs as one stacked block (per embeddings flag), split back per job."""
    results: list[FusionOutput | None] = [None] * len(jobs)
    groups: dict[tuple[int, bool], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault((id(job.live), job.embeddings), []).append(i)
    for (_, embeddings), members in groups.items():
        live = jobs[members[0]].live
        out = live.ensemble.model.run(stack_windows([jobs[i].windows for i in members]), embeddings=embeddings)
        start = 0
        for i in members:
            stop = start + len(jobs[i].windows)
            results[i] = FusionOutput(positions=out.positions[start:stop],
                                      embeddings=out.embeddings[start:stop] if embeddings else None,
                                      member_weights=None)
            start = stop
    return results  # type: ignore[return-value]


def filled(n_dates: int, n_assets: int, dates_idx: np.ndarray, out: FusionOutput | None,
           embeddings: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Positions [T, A] (and embeddings) with 0 where no window exists, as Ensemble.predict fills them."""
    positions = np.zeros((n_dates, n_assets), dtype=np.float32)
    fused = None
    if out is not None:
        positions[dates_idx] = out.positions
        if embeddings:
            fused = np.zeros((n_dates, n_assets, out.embeddings.shape[-1]), dtype=np.float32)
            fused[dates_idx] = out.embeddings
    return positions, fused


def records(dates: np.ndarray, assets: tuple[str, ...], positions: np.ndarray,
            fused: np.ndarray | None) -> list[dict[str, Any]]:
    """One record per (date, asset), date-major (the pyfunc's output order)."""
    found = []
    for t, date in enumerate(np.datetime_as_string(dates, unit="D")):
        for a, asset in enumerate(assets):
            record = {"date": str(date), "asset": asset, "position": float(positions[t, a])}
            if fused is not None:
                record["embedding"] = fused[t, a].astype(np.float64).tolist()
            found.append(record)
    return found


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(message.split())}, status_code=status)  # one line


async def json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInput(f"body: not JSON ({exc})") from None


@serve.deployment(name="bars", num_replicas=1, ray_actor_options={"num_cpus": 0})
class BarBook:
    """The bar history every ingress replica shares (one replica: one history)."""

    def __init__(self) -> None:
        self.history: Panel | None = None
        self.lock = threading.Lock()  # sync methods may run in Serve's thread pool

    def append(self, bar: Panel, assets: tuple[str, ...]) -> tuple[Panel | None, str | None]:
        """(the history with `bar`, None), or (None, why) with nothing changed."""
        with self.lock:
            try:
                extended = append_bar(self.history if self.history is not None else empty_history(assets), bar)
            except BadInput as exc:
                return None, str(exc)
            self.history = extended
            return extended, None


@serve.deployment(name="server", max_ongoing_requests=MAX_ONGOING_REQUESTS)
class Server:
    """The HTTP ingress: predicts with the live version, follows its alias."""

    def __init__(self, model_uri: str, tracking_uri: str, poll_s: float, book: DeploymentHandle) -> None:
        import torch  # lazy: only replicas run models

        torch.set_grad_enabled(False)  # inference only (run_model also runs under no_grad)
        self.model_uri, self.tracking_uri, self.poll_s, self.book = model_uri, tracking_uri, poll_s, book
        self.live = load_live(model_uri, tracking_uri)
        self.switches = 0
        self.poll_error: str | None = None
        self.stop = threading.Event()
        if parse_model_uri(model_uri)[2] is not None:  # an alias: follow it
            threading.Thread(target=self.follow, name="quantray-alias-poller", daemon=True).start()

    def __del__(self) -> None:
        self.stop.set()

    def follow(self) -> None:
        while not self.stop.wait(self.poll_s):
            try:
                version = current_version(self.model_uri, self.tracking_uri)
                if version != self.live.version:
                    self.live = load_live(self.model_uri, self.tracking_uri, version)  # the swap: one assignment
                    self.switches += 1
                self.poll_error = None
            except Exception as exc:  # noqa: BLE001 - registry unreachable: keep serving what is live
                self.poll_error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"

    @serve.batch(max_batch_size=MAX_BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def run(self, jobs: list[Job]) -> list[FusionOutput]:
        return await asyncio.to_thread(infer, jobs)

    async def __call__(self, request: Request) -> JSONResponse:
        route = (request.method, request.url.path.rstrip("/") or "/")
        handlers = {("POST", "/predict"): self.predict, ("POST", "/bars"): self.bars,
                    ("GET", "/healthz"): self.healthz, ("GET", "/model"): self.model}
        if route not in handlers:
            known = [path for method, path in handlers if path == route[1]]
            return error(405 if known else 404, f"{route[0]} {route[1]}: not served (POST /predict, POST /bars, "
                                                f"GET /healthz, GET /model)")
        try:
            return await handlers[route](request)
        except BadInput as exc:
            return error(400, str(exc))

    async def predict(self, request: Request) -> JSONResponse:
        live = self.live  # read once: the whole answer comes from this version
        parsed = parse_predict(await json_body(request), live.assets)
        windows = await asyncio.to_thread(live.windows, parsed.panel)
        out = await self.run(Job(live, windows, parsed.embeddings))
        positions, fused = filled(parsed.panel.n_dates, len(live.assets), windows.dates_idx, out, parsed.embeddings)
        return JSONResponse({"name": live.name, "version": live.version,
                             "predictions": records(parsed.panel.dates, live.assets, positions, fused)})

    async def bars(self, request: Request) -> JSONResponse:
        live = self.live
        bar = parse_bar(await json_body(request), live.assets)
        history, problem = await self.book.append.remote(bar, live.assets)
        if problem is not None:
            return error(400, problem)
        positions = np.zeros((1, len(live.assets)), dtype=np.float32)
        if history.n_dates >= live.lookback:  # before that no window exists and the position is 0
            windows = await asyncio.to_thread(live.windows, history, np.array([history.n_dates - 1]))
            positions = (await self.run(Job(live, windows, False))).positions
        return JSONResponse({"name": live.name, "version": live.version, "history_dates": int(history.n_dates),
                             "predictions": records(history.dates[-1:], live.assets, positions, None)})

    async def healthz(self, request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "version": self.live.version})

    async def model(self, request: Request) -> JSONResponse:
        live = self.live
        return JSONResponse({**live.info, "follows_alias": live.alias is not None, "poll_s": self.poll_s,
                             "switches": self.switches, "poll_error": self.poll_error})


def build_app(model_uri: str, tracking_uri: str, *, poll_s: float = 5.0, replicas: int = 1,
              replica_cpus: float = 1.0) -> serve.Application:
    """The application `quantray serve` runs: `replicas` ingress replicas and one bar book."""
    return Server.options(num_replicas=replicas, ray_actor_options={"num_cpus": replica_cpus}).bind(
        model_uri, tracking_uri, poll_s, BarBook.bind())


BUILDER_ARGS = ("model", "tracking_uri", "poll_s", "replicas", "replica_cpus")


def app_builder(args: dict[str, Any]) -> serve.Application:
    """The import path of a Serve config (KubeRay's RayService): `quantray.serve.app:app_builder`
    with args model, tracking_uri (required), poll_s, replicas, replica_cpus."""
    unknown = sorted(set(args) - set(BUILDER_ARGS))
    if unknown:
        raise BadInput(f"serve args: key '{unknown[0]}': unknown (expected {', '.join(BUILDER_ARGS)})")
    for required in ("model", "tracking_uri"):
        if not args.get(required):
            raise BadInput(f"serve args: key '{required}': required")
    return build_app(str(args["model"]), str(args["tracking_uri"]), poll_s=float(args.get("poll_s", 5.0)),
                     replicas=int(args.get("replicas", 1)), replica_cpus=float(args.get("replica_cpus", 1.0)))
