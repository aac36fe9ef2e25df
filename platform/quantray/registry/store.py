"""The MLflow model registry: register an ensemble, promote it behind gates, roll back, load.

Aliases carry the deployment state: `champion` is what serving loads (`models:/NAME@champion`),
`previous` the champion before it, so a rollback is one alias move. `promote` moves the alias
only when the version's run shows a Deflated Sharpe Ratio of at least `min_dsr` and a
Probability of Backtest Overfitting of at most `max_pbo`.

mlflow is imported inside the functions: the CLI imports this module's neighbours at start-up.
"""

from __future__ import annotations

import math
import os
import re
import sys
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
    """Point mlflow's fluent API at `uri` for a block, then restore the previous URIs.

    Inside, artifact transfers draw no progress bars: the CLI's stderr is for one-line errors.
    """
    import mlflow

    before, before_registry = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    before_bar = os.environ.get(PROGRESS_BAR_ENV)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    os.environ[PROGRESS_BAR_ENV] = "false"
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before_registry)
        if before_bar is None:
            os.environ.pop(PROGRESS_BAR_ENV, None)
        else:
            os.environ[PROGRESS_BAR_ENV] = before_bar


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

@dataclass(frozen=True)
class Gates:
    """A version may become champion only when dsr >= min_dsr and pbo <= max_pbo."""

    min_dsr: float = 0.95
    max_pbo: float = 0.5


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
        gates = "  ".join(f"{key} {self.metrics[key]:.3f}" for key in ("dsr", "pbo") if key in self.metrics)
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
    failed = failed_gates(metrics, gates)
    if failed and not force:
        return PromotionResult(name=version.name, version=version.version, alias=alias, promoted=False,
                               previous_version=None, metrics=metrics, failed_gates=tuple(failed), forced=False)
    if failed:
        print(f"quantray: WARNING: --force promotes {model_uri} to '{alias}' despite failed gates: "
              f"{'; '.join(failed)}", file=sys.stderr)
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


def failed_gates(metrics: Mapping[str, float], gates: Gates) -> list[str]:
    """One line per failed gate; a missing or NaN metric fails its gate."""
    failed = []
    dsr, pbo = metrics.get("dsr", math.nan), metrics.get("pbo", math.nan)
    if not dsr >= gates.min_dsr:  # also NaN
        failed.append(f"dsr {_show(dsr)} < min_dsr {gates.min_dsr:g}")
    if not pbo <= gates.max_pbo:
        failed.append(f"pbo {_show(pbo)} > max_pbo {gates.max_pbo:g}")
    return failed


def _show(value: float) -> str:
    return "missing" if math.isnan(value) else f"{value:.3f}"


def rollback(name: str, *, alias: str = CHAMPION, tracking_uri: str | None = None) -> RollbackResult:
    """Swap `alias` and its `previous`: the previous holder is restored, the demoted one becomes
    `previous`, so a second rollback rolls forward again."""
    client = client_for(tracking_uri)
    _registered_model(client, name)
    keep = previous_alias(alias)
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
