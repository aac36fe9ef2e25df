"""Talking to a Ray dashboard over HTTP: the address, the auth token, and a few JSON endpoints.

Ray (2.52+) token authentication makes the dashboard and the Jobs API answer 401 without an
`Authorization: Bearer <token>` header. The token comes, in order, from the environment
variable the user names (`--token-env`, default RAY_AUTH_TOKEN) or, for the head that
`quantray cluster start` runs here, from its token file.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from quantray.errors import BadInput

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_TOKEN_ENV = "RAY_AUTH_TOKEN"


def normalize_address(address: str) -> str:
    """`http(s)://host:port` without a trailing slash; a bare `host:port` gets http://."""
    address = address.strip().rstrip("/")
    if "://" not in address:
        address = f"http://{address}"
    parsed = urllib.parse.urlparse(address)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise BadInput(f"--address {address!r}: expected the dashboard URL, e.g. http://HOST:8265")
    return address


def resolve_address(address: str | None, root: Path) -> str:
    """--address, else RAY_ADDRESS when it is a URL, else the local head's dashboard, else :8265."""
    from quantray.jobs import local

    if address:
        return normalize_address(address)
    from_env = os.environ.get("RAY_ADDRESS", "")
    if from_env.startswith(("http://", "https://")):
        return normalize_address(from_env)
    state = local.read_state(root)
    if state is not None and local.is_running(state):
        return state.dashboard_url
    return DEFAULT_ADDRESS


def resolve_token(address: str, token_env: str, root: Path) -> str | None:
    """The bearer token for `address`, or None when the cluster runs without auth."""
    from quantray.jobs import local

    if os.environ.get(token_env):
        return os.environ[token_env].strip()
    state = local.read_state(root)
    if state is not None and local.is_running(state) and state.dashboard_url == address:
        return state.token()
    return None


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def get_json(address: str, path: str, token: str | None, *, timeout_s: float = 10.0) -> Any:
    """GET a dashboard endpoint; unreachable or unauthorized -> BadInput with one line."""
    request = urllib.request.Request(f"{address}{path}", headers=auth_headers(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read().decode())
    except urllib.error.HTTPError as exc:
        if exc.code == 401:
            raise BadInput(
                f"the Ray dashboard at {address} requires a token: set {DEFAULT_TOKEN_ENV} (or name the "
                "variable with --token-env)"
            ) from exc
        if exc.code == 403:
            raise BadInput(f"the Ray dashboard at {address} rejected the auth token") from exc
        raise BadInput(f"the Ray dashboard at {address} answered {exc.code} for {path}") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInput(f"cannot reach Ray dashboard at {address} ({reason})") from exc


def check_reachable(address: str, token: str | None) -> str:
    """The cluster's Ray version; raises BadInput when the dashboard cannot be used."""
    return str(get_json(address, "/api/version", token, timeout_s=5.0).get("ray_version", "?"))


def nodes(address: str, token: str | None, *, quiet: bool = False) -> list[dict[str, Any]]:
    """The cluster's nodes: id, ip, alive, head, resources (total). quiet: [] when unreachable."""
    try:
        payload = get_json(address, "/api/v0/nodes?limit=1000&detail=true", token, timeout_s=5.0)
    except BadInput:
        if quiet:
            return []
        raise
    rows = payload.get("data", {}).get("result", {}).get("result", [])
    return [
        {
            "node_id": row.get("node_id", ""),
            "ip": row.get("node_ip", ""),
            "alive": row.get("state") == "ALIVE",
            "head": bool(row.get("is_head_node")),
            "resources": row.get("resources_total", {}),
        }
        for row in rows
    ]


def jobs(address: str, token: str | None) -> list[dict[str, Any]]:
    """The dashboard's job list (GET /api/jobs/), newest first."""
    listed = get_json(address, "/api/jobs/", token)
    return sorted(listed, key=lambda job: job.get("start_time") or 0, reverse=True)
