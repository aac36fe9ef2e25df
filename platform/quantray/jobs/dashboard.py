"""Talking to a Ray dashboard over HTTP: the address, the auth token, and a few JSON endpoints.

Ray (2.52+) token authentication makes the dashboard and the Jobs API answer 401 without an
`Authorization: Bearer <token>` header. `ray start --head` turns it on when a token exists in
~/.ray/auth_token (which `ray.init()` and `ray get-auth-token --generate` write), so the token
is looked up where Ray's own clients look, in their order (see `resolve_token`).
"""

from __future__ import annotations

import json
import os
import pwd
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from quantray.errors import BadInput
from quantray.jobs.state import running_head

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
DEFAULT_TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
TOKEN_SOURCES = f"${DEFAULT_TOKEN_ENV}, ${TOKEN_PATH_ENV} or ~/.ray/auth_token"


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
    if address:
        return normalize_address(address)
    from_env = os.environ.get("RAY_ADDRESS", "")
    if from_env.startswith(("http://", "https://")):
        return normalize_address(from_env)
    state = running_head(root)
    return state.dashboard_url if state is not None else DEFAULT_ADDRESS


def resolve_token(address: str, token_env: str, root: Path) -> str | None:
    """The bearer token for `address`, or None when there is none (a cluster without auth).

    Ray 2.60's clients (AuthenticationTokenLoader) take the first of: RAY_AUTH_TOKEN when not
    empty; the file RAY_AUTH_TOKEN_PATH names, when set (an unreadable or empty one is an
    error, not a fallthrough); $HOME/.ray/auth_token. quantray follows that order, with the
    variable named by --token-env in place of RAY_AUTH_TOKEN, and the head `quantray cluster
    start` runs here next after it, for that head's own dashboard only.
    """
    from_env = os.environ.get(token_env, "")
    if from_env:
        return from_env.strip() or None
    state = running_head(root)
    if state is not None and state.dashboard_url == address:
        return state.token()
    named_file = os.environ.get(TOKEN_PATH_ENV, "")
    if named_file:
        token = read_token_file(Path(named_file))
        if token is None:
            raise BadInput(f"{TOKEN_PATH_ENV}={named_file}: no token there (missing, unreadable or empty file)")
        return token
    return read_token_file(ray_home() / ".ray" / "auth_token")


def ray_home() -> Path:
    """The home directory Ray's token loader uses: $HOME, or the account's when HOME is unset or empty."""
    return Path(os.environ.get("HOME") or pwd.getpwuid(os.getuid()).pw_dir)


def read_token_file(path: Path) -> str | None:
    """The file's first line without surrounding whitespace, as Ray reads it; None when missing or empty."""
    try:
        first_line = path.read_bytes().decode().split("\n", 1)[0]
    except (OSError, UnicodeDecodeError):
        return None
    return first_line.strip() or None


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
                f"the Ray dashboard at {address} requires a token and none was found in {TOKEN_SOURCES} "
                "(`ray get-auth-token` prints it on the head)"
            ) from exc
        if exc.code == 403:
            raise BadInput(
                f"the Ray dashboard at {address} rejected the auth token (the first found in {TOKEN_SOURCES})"
            ) from exc
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
