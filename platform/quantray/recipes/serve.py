"""`quantray serve`: run the Serve application for a registered model and keep it running.

Wires quantray.serve to Ray: checks the model URI against the registry (a bad URI fails before
Ray starts), joins `--address` or starts a local Ray, starts Serve's HTTP proxy on host:port and
deploys the application. Following an alias happens inside the replicas (they poll the
registry), so it works the same under `quantray serve` and under a KubeRay RayService.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from quantray.recipes.options import ServeOptions
from quantray.serve.live import current_version
from quantray.tune.search import connect
from quantray.workspace import tracking_uri

APP_NAME = "quantray"


@dataclass(frozen=True)
class Serving:
    url: str  # http://host:port
    model_uri: str
    version: str  # the version live when it started
    tracking_uri: str


def start_serving(model_uri: str, options: ServeOptions) -> Serving:
    """Deploy the application and return once its replicas answer (the caller keeps Ray alive)."""
    from ray import serve  # lazy: ray is heavy

    from quantray.serve.app import build_app  # lazy: it imports ray.serve at the top

    uri = tracking_uri(options.tracking_uri)  # resolved here: replicas run in other processes
    version = current_version(model_uri, uri)
    connect(options.address)
    serve.start(http_options={"host": options.host, "port": options.port})
    serve.run(build_app(model_uri, uri, poll_s=options.poll_s, replicas=options.replicas,
                        replica_cpus=options.replica_cpus),
              name=APP_NAME, route_prefix="/", blocking=False)
    return Serving(f"http://{options.host}:{options.port}", model_uri, version, uri)


def stop_serving() -> None:
    """Shut Serve down on the cluster this process is connected to."""
    from ray import serve  # lazy: ray is heavy

    serve.shutdown()


def run_serve(model_uri: str, options: ServeOptions) -> None:
    """Serve until interrupted, then take the application down."""
    serving = start_serving(model_uri, options)
    print(f"serving {model_uri} (version {serving.version}) at {serving.url}: POST /predict, POST /bars, "
          f"GET /healthz, GET /model; Ctrl-C stops", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        stop_serving()
