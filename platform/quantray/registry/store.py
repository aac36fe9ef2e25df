"""The MLflow model registry: register an ensemble, promote it behind gates, roll back, load.

Aliases carry the deployment state: `champion` is what serving loads (`models:/NAME@champion`),
`previous` the champion before it, so a rollback is one alias move. `promote` moves the alias
only when the version's run passes `Gates` (docs/evaluation.md says why these gates), and moves
it under the model's promotion lock, so two promotions at once cannot interleave their writes.

mlflow is imported inside the functions: the CLI imports this module's neighbours at start-up.
"""

from __future__ import annotations

import math
import os
import re
import socket
import sys
import time
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping

from quantray.errors import BadInput
from quantray.workspace import artifact_root, tracking_uri

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.pyfunc import PyFuncModel
    from mlflow.tracking import MlflowClient

CHAMPION = "champion"
MODEL_ARTIFACT = "model"  # the pyfunc's name inside the run
REPORT_ARTIFACT = "report"
PROGRESS_BAR_ENV = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
TRACKING_ENV, REGISTRY_ENV = "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"


def experiment_id(client: "MlflowClient", name: str) -> str:
    """The id of experiment `name`, created (with `artifact_root`'s location) when missing."""
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    root = artifact_root(client.tracking_uri)
    return client.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)


def client_for(uri: str | None) -> "MlflowClient":
    from mlflow.tracking import MlflowClient

    resolved = tracking_uri(uri)
    return MlflowClient(tracking_uri=resolved, registry_uri=resolved)


@contextmanager
def using_tracking_uri(uri: str) -> Iterator[None]:
    """Point mlflow's fluent API at `uri` for a block, then restore the previous URIs exactly.

    MLflow exports a URI it is given to the environment (MLFLOW_TRACKING_URI, MLFLOW_REGISTRY_URI)
    for subprocesses to inherit, so restoring "the previous URI" by value would export MLflow's
    default store (./mlflow.db) to every process started afterwards: the variables are restored,
    or removed, as they were. Inside, artifact transfers draw no progress bars: the CLI's stderr is
    for one-line errors.
    """
    import mlflow

    saved = {name: os.environ.get(name) for name in (TRACKING_ENV, REGISTRY_ENV, PROGRESS_BAR_ENV)}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved[TRACKING_ENV])  # None: back to MLflow's own default, unexported
        mlflow.set_registry_uri(saved[REGISTRY_ENV])
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# ---- register ------------------------------------------------------------------------------------

def register_ensemble(
    ensemble_dir: Path,
    *,
    name: str,
    metrics: Mapping[str, float],
    config: Mapping[str, Any],
    report_dir: Path | None,
    tracking_uri: str | None,
    experiment: str = "quantray",
    run_name: str = "ensemble",
    parent_run_id: str | None = None,
) -> "ModelVersion":
    """Log a run with `metrics`, `config` (as flattened params) and the report, log the ensemble
    at `ensemble_dir` as a pyfunc model and register it as a new version of `name`.

    The gates of `promote` read this run's `dsr` and `pbo` metrics.
    """
    import mlflow

    from quantray.registry.pyfunc import log_pyfunc  # lazy: it imports mlflow.pyfunc at the top

    client = client_for(tracking_uri)
    with using_tracking_uri(client.tracking_uri):
        with mlflow.start_run(experiment_id=experiment_id(client, experiment), run_name=run_name,
                              tags={"quantray.kind": "ensemble",
                                    **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {})}):
            mlflow.log_params(flatten(config))
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if _is_number(v)})
            if report_dir is not None and Path(report_dir).is_dir():
                mlflow.log_artifacts(str(report_dir), REPORT_ARTIFACT)
            info = log_pyfunc(Path(ensemble_dir), MODEL_ARTIFACT, registered_model_name=name)
    return client.get_model_version(name, str(info.registered_model_version))


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> {"data.lookback": "64", ...}; MLflow params are flat strings (<= 6000 chars)."""
    flat: dict[str, str] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ---- promote / rollback ----------------------------------------------------------------------------

GATE_BASELINES = ("equal_weight", "time_series_momentum")  # the simple strategies a model must beat


@dataclass(frozen=True)
class Gates:
    """The only home of the promotion thresholds (docs/evaluation.md, "Promotion gates").

    A version may become champion when its test-block net Sharpe, deflated for the number and
    spread of trials the search ran, is significantly above zero (`dsr >= min_dsr`), and it beats
    the best simple baseline on the same block by `min_excess_sharpe`. PBO is reported, and gates
    only when `max_pbo` is set: over near-equivalent trials it measures ranking noise.
    """

    min_dsr: float = 0.95
    min_excess_sharpe: float = 0.0
    max_pbo: float | None = None


@dataclass(frozen=True)
class PromotionResult:
    """What `promote` did. A refusal is a result (the gates did their job), not an error."""

    name: str
    version: str
    alias: str
    promoted: bool  # the alias now points at `version`
    previous_version: str | None  # the version the alias pointed to before (now `previous`), if moved
    metrics: dict[str, float]  # dsr and pbo as read from the version's run
    failed_gates: tuple[str, ...]  # why it was refused (or what --force overrode)
    forced: bool

    def line(self) -> str:
        """One line for the console."""
        gates = "  ".join(f"{key} {self.metrics[key]:.3f}" for key in ("dsr", "excess_sharpe", "pbo")
                          if key in self.metrics)
        if not self.promoted:
            return (f"{self.name} version {self.version} not promoted to '{self.alias}': "
                    f"{'; '.join(self.failed_gates)} (--force overrides)")
        previous = f"; version {self.previous_version} is 'previous'" if self.previous_version else ""
        forced = f" (forced past: {'; '.join(self.failed_gates)})" if self.forced else ""
        return f"{self.name} version {self.version} is now '{self.alias}' ({gates}){previous}{forced}"


@dataclass(frozen=True)
class RollbackResult:
    name: str
    alias: str
    restored_version: str  # now holds the alias
    demoted_version: str | None  # held the alias before; now `previous`


def previous_alias(alias: str) -> str:
    """Where the old holder of `alias` is kept: `previous` for champion, `previous-<alias>` otherwise."""
    return "previous" if alias == CHAMPION else f"previous-{alias}"


def promote(model_uri: str, *, alias: str = CHAMPION, gates: Gates = Gates(), force: bool = False,
            tracking_uri: str | None = None) -> PromotionResult:
    """Point `alias` at the version `model_uri` names when it passes `gates`.

    The old holder of the alias becomes `previous_alias(alias)`. A failed gate leaves the aliases
    as they were and returns `promoted=False` with the reasons, unless `force` (which says loudly
    on stderr what it overrides). A malformed or unknown `model_uri` raises BadInput.
    """
    client = client_for(tracking_uri)
    version = resolve_version(client, model_uri)
    metrics = run_metrics(client, version)
    if "test_sharpe" in metrics and baseline_sharpe(metrics) is not None:
        metrics["excess_sharpe"] = metrics["test_sharpe"] - baseline_sharpe(metrics)
    failed = failed_gates(metrics, gates)
    if failed and not force:
        return PromotionResult(name=version.name, version=version.version, alias=alias, promoted=False,
                               previous_version=None, metrics=metrics, failed_gates=tuple(failed), forced=False)
    if failed:
        print(f"quantray: WARNING: --force promotes {model_uri} to '{alias}' despite failed gates: "
              f"{'; '.join(failed)}", file=sys.stderr)
    with promotion_lock(client, version.name):  # read the holder and move both aliases as one step
        current = version_by_alias(client, version.name, alias)
        if current is not None and current.version != version.version:
            client.set_registered_model_alias(version.name, previous_alias(alias), current.version)
        client.set_registered_model_alias(version.name, alias, version.version)
    return PromotionResult(
        name=version.name,
        version=version.version,
        alias=alias,
        promoted=True,
        previous_version=current.version if current is not None and current.version != version.version else None,
        metrics=metrics,
        failed_gates=tuple(failed),
        forced=bool(failed),
    )


def baseline_sharpe(metrics: Mapping[str, float]) -> float | None:
    """The best test Sharpe among the simple baselines the run recorded (None: none recorded)."""
    found = [metrics[f"{name}_test_sharpe"] for name in GATE_BASELINES if f"{name}_test_sharpe" in metrics]
    return max(found) if found else None


def failed_gates(metrics: Mapping[str, float], gates: Gates) -> list[str]:
    """One line per failed gate; a missing or NaN metric fails its gate."""
    failed = []
    dsr, excess = metrics.get("dsr", math.nan), metrics.get("excess_sharpe", math.nan)
    if not dsr >= gates.min_dsr:  # also NaN
        failed.append(f"dsr {_show(dsr)} < min_dsr {gates.min_dsr:g}")
    if not excess >= gates.min_excess_sharpe:
        failed.append(f"test Sharpe over the best baseline {_show(excess)} < min_excess_sharpe "
                      f"{gates.min_excess_sharpe:g}")
    pbo = metrics.get("pbo", math.nan)
    if gates.max_pbo is not None and not pbo <= gates.max_pbo:
        failed.append(f"pbo {_show(pbo)} > max_pbo {gates.max_pbo:g}")
    return failed


# ---- the promotion lock --------------------------------------------------------------------------

LOCK_SUFFIX = ".promotion-lock"
LOCK_WAIT_S = 60.0
STALE_LOCK_S = 120.0  # a promotion takes well under a second; older than this, its holder died


def lock_name(name: str) -> str:
    return f"{name}{LOCK_SUFFIX}"


@contextmanager
def promotion_lock(client: "MlflowClient", name: str, *, wait_s: float = LOCK_WAIT_S) -> Iterator[None]:
    """Hold model `name`'s promotion lock: a registered model named `<name>.promotion-lock`.

    Creating a registered model is MLflow's one atomic create-if-absent (the name is the table's
    primary key in a SQL store, local SQLite or behind `mlflow server`): of two creators exactly
    one succeeds, so this holds against a remote server as well as a local store. Aliases alone
    are last-writer-wins. A lock older than STALE_LOCK_S (its holder died) is deleted and retaken.
    """
    from mlflow.exceptions import MlflowException

    lock, owner = lock_name(name), f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.create_registered_model(lock, description=f"promotion of '{name}' in progress ({owner})")
            break
        except MlflowException as exc:
            # the SQL store answers a lost create by reading the holder; if the holder released in
            # between, that read fails "does not exist": the lock is free, so try again at once
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                continue
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        _break_if_stale(client, lock)
        if time.monotonic() > deadline:
            raise RuntimeError(f"model '{name}': another promotion has held '{lock}' for over {wait_s:.0f} s; "
                               f"if no promotion is running, delete that registered model")
        time.sleep(0.05 + 0.1 * (uuid.uuid4().int % 10) / 10)  # jitter: waiters do not retry in step
    try:
        yield
    finally:
        client.delete_registered_model(lock)


def _break_if_stale(client: "MlflowClient", lock: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        held_since_ms = client.get_registered_model(lock).creation_timestamp or 0
        if time.time() - held_since_ms / 1000 > STALE_LOCK_S:
            client.delete_registered_model(lock)
    except MlflowException:
        pass  # released meanwhile


def _show(value: float) -> str:
    return "missing" if math.isnan(value) else f"{value:.3f}"


def rollback(name: str, *, alias: str = CHAMPION, tracking_uri: str | None = None) -> RollbackResult:
    """Swap `alias` and its `previous`: the previous holder is restored, the demoted one becomes
    `previous`, so a second rollback rolls forward again."""
    client = client_for(tracking_uri)
    _registered_model(client, name)
    keep = previous_alias(alias)
    with promotion_lock(client, name):
        restored = version_by_alias(client, name, keep)
        if restored is None:
            raise BadInput(f"model '{name}': no '{keep}' alias to roll '{alias}' back to")
        demoted = version_by_alias(client, name, alias)
        client.set_registered_model_alias(name, alias, restored.version)
        if demoted is not None and demoted.version != restored.version:
            client.set_registered_model_alias(name, keep, demoted.version)
        else:
            client.delete_registered_model_alias(name, keep)
    return RollbackResult(name=name, alias=alias, restored_version=restored.version,
                          demoted_version=demoted.version if demoted is not None else None)


# ---- lookups ------------------------------------------------------------------------------------

_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<version>[^/@]+)|@(?P<alias>[^/@]+))$")


def parse_model_uri(model_uri: str) -> tuple[str, str | None, str | None]:
    """(name, version, alias) of `models:/NAME/VERSION` or `models:/NAME@ALIAS`."""
    match = _URI.match(model_uri)
    if match is None:
        raise BadInput(f"model URI '{model_uri}': expected models:/NAME/VERSION or models:/NAME@ALIAS")
    return match["name"], match["version"], match["alias"]


def resolve_version(client: "MlflowClient", model_uri: str) -> "ModelVersion":
    """The registered version `model_uri` names; BadInput when the registry does not have it."""
    from mlflow.exceptions import MlflowException

    name, version, alias = parse_model_uri(model_uri)
    _registered_model(client, name)
    try:
        if alias is not None:
            return client.get_model_version_by_alias(name, alias)
        if version == "latest":
            versions = client.search_model_versions(f"name = '{name}'")
            return max(versions, key=lambda v: int(v.version))
        return client.get_model_version(name, version)
    except MlflowException as exc:
        raise BadInput(f"{model_uri}: not found in the registry at {client.tracking_uri} "
                       f"({_first_line(exc)})") from None


def _registered_model(client: "MlflowClient", name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException as exc:
        raise BadInput(f"model '{name}': not registered at {client.tracking_uri} ({_first_line(exc)})") from None


def version_by_alias(client: "MlflowClient", name: str, alias: str) -> "ModelVersion | None":
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def run_metrics(client: "MlflowClient", version: "ModelVersion") -> dict[str, float]:
    """The `dsr` and `pbo` (and every other metric) logged in the run that produced `version`."""
    if not version.run_id:
        return {}
    return dict(client.get_run(version.run_id).data.metrics)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def load(model_uri: str, *, tracking_uri: str | None = None) -> "PyFuncModel":
    """The pyfunc model `model_uri` names (positions and embeddings from a long OHLCV frame)."""
    import mlflow.pyfunc

    client = client_for(tracking_uri)
    version = resolve_version(client, model_uri)  # a clear BadInput before MLflow's download
    with using_tracking_uri(client.tracking_uri), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # environment-mismatch notes: quantray pins them
        return mlflow.pyfunc.load_model(f"models:/{version.name}/{version.version}")
