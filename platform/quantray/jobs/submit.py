"""Submitting `quantray tune` to a Ray cluster through the Ray Jobs API, and managing jobs.

The job carries the project as its runtime_env working_dir: a staged copy laid out like an
installed package (`quantray/`, `quantray/models/`) plus the search space under `spaces/`.
The entrypoint runs `python -m quantray.cli` from that directory, so the submitted code wins
over whatever quantray version the cluster's image has installed, and Ray puts the same
directory on every worker's path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import importlib.util
import re
import shlex
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import quantray
from quantray.config import to_arguments
from quantray.errors import BadInput
from quantray.jobs import dashboard, local
from quantray.recipes.options import TuneOptions
from quantray.tune.search import timestamped
from quantray.tune.space import SearchSpace, load_space
from quantray.workspace import ROOT, tracking_uri, tune_storage

SPACES_DIR = "spaces"
# what never travels with a job: caches, local state, virtual environments
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", ROOT.name, ".venv", ".git", ".pytest_cache", "*.egg-info")
JOB_ENV_VARS = {
    "RAY_TRAIN_ENABLE_STATE_TRACKING": "1",  # trials' Train runs show in the dashboard
    "PYTHONUNBUFFERED": "1",  # logs stream as they are written
}


def tune_arguments(space_in_job: str, options: TuneOptions) -> list[str]:
    """The `quantray tune` argument list the job runs: the job attaches to its own cluster, and
    every other option travels as given (generated from the recipe's options, so none is lost)."""
    return ["tune", space_in_job, "--address", "auto", *to_arguments(options, skip=("address",))]


def is_local_head(address: str, root: Path) -> bool:
    """Whether `address` is the head `quantray cluster start` runs on this machine (it sees our files)."""
    state = local.read_state(root)
    return state is not None and local.is_running(state) and state.dashboard_url == address


def with_local_defaults(options: TuneOptions, address: str, root: Path) -> TuneOptions:
    """For the head `quantray cluster start` runs here, keep results where local runs keep theirs.

    Elsewhere the job's defaults apply: its directory, and the cluster's MLFLOW_TRACKING_URI.
    """
    if not is_local_head(address, root):
        return options
    return dataclasses.replace(
        options,
        tracking_uri=options.tracking_uri or tracking_uri(None),
        storage=(options.storage or root / tune_storage()).resolve(),
    )


def with_job_data(space: Path, options: TuneOptions, *, cluster_sees_local_files: bool) -> TuneOptions:
    """The options a job gets for a `csv:`/`parquet:` source, from `--data` or the space file.

    A cluster on this machine reads the path made absolute where it was typed (the working
    directory for `--data`, the space file's folder for the space's own). Any other cluster cannot
    see a relative path here: refused in one line. An absolute path travels as the cluster's path
    (say, a shared mount), and the job's driver checks it before any trial starts.
    """
    from quantray.data.sources import absolute_source, is_file_source  # lazy: pandas; the CLI imports us at start

    validate_space(space)
    typed, base, key = options.data, Path.cwd(), "--data"
    if typed is None:
        typed, base, key = space_source(space), space.parent, f"{space}: key 'data.source'"
    if typed is None or not is_file_source(typed):
        return options
    if cluster_sees_local_files:
        return dataclasses.replace(options, data=absolute_source(typed, base))
    if not Path(typed.partition(":")[2].strip()).expanduser().is_absolute():
        raise BadInput(f"{key}: '{typed}' is a path on this machine, which the cluster cannot see; copy the data "
                       "where every node can read it and give that absolute path")
    return options


def space_source(space: Path) -> str | None:
    """`data.source` as written in the space file (load_space makes a relative path absolute)."""
    import yaml  # lazy: only submit reads the raw file

    source = ((yaml.safe_load(space.read_text()) or {}).get("data") or {}).get("source")
    return source if isinstance(source, str) else None


def cli_entrypoint(arguments: list[str]) -> str:
    return shlex.join(["python", "-m", "quantray.cli", *arguments])


def submission_id(space: Path, now: float | None = None) -> str:
    """`quantray-tune-<space>-<UTC time>`: recognisable in `ray job list` and the dashboard, and
    short enough (<= 46 characters) for the Kubernetes names KubeRay derives from a RayJob's."""
    stem = re.sub(r"[^a-z0-9]+", "-", space.stem.lower()).strip("-")[:16].strip("-") or "space"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    return f"quantray-tune-{stem}-{stamp}"


def space_in_job(space: Path) -> str:
    return f"{SPACES_DIR}/{space.name}"


def package_roots() -> tuple[Path, Path]:
    """Where the installed `quantray` and `quantray.models` packages live (editable or not)."""
    models = importlib.util.find_spec("quantray.models")
    if models is None or not models.submodule_search_locations:
        raise RuntimeError("the quantray.models package cannot be found")
    return Path(quantray.__file__).parent, Path(list(models.submodule_search_locations)[0])


def stage_working_dir(destination: Path, spaces: tuple[Path, ...] = ()) -> Path:
    """Copy the project into `destination` in installed layout; return `destination`."""
    package, models = package_roots()
    shutil.copytree(package, destination / "quantray", ignore=_ignore_nested(models, IGNORED))
    shutil.copytree(models, destination / "quantray" / "models", ignore=IGNORED, dirs_exist_ok=True)
    for space in spaces:
        (destination / SPACES_DIR).mkdir(exist_ok=True)
        shutil.copy2(space, destination / SPACES_DIR / space.name)
    return destination


def _ignore_nested(models: Path, base: Any) -> Any:
    """In a regular install quantray/models sits inside quantray/: copy it once, from `models`."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        skipped = set(base(directory, names))
        skipped.update(name for name in names if Path(directory, name).resolve() == models.resolve())
        return skipped

    return ignore


def directory_size(path: Path) -> int:
    return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())


def runtime_env(working_dir: Path, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    return {"working_dir": str(working_dir), "env_vars": {**JOB_ENV_VARS, **(extra_env or {})}}


def job_client(address: str, token: str | None) -> Any:
    """A JobSubmissionClient for `address` that sends the token itself (no process-wide auth state)."""
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=dashboard.auth_headers(token))


@dataclass(frozen=True)
class Submitted:
    job_id: str
    address: str
    upload_bytes: int


def submit_entrypoint(
    address: str,
    token: str | None,
    *,
    entrypoint: str,
    job_id: str,
    spaces: tuple[Path, ...] = (),
    extra_env: dict[str, str] | None = None,
    metadata: dict[str, str] | None = None,
) -> Submitted:
    """Stage the project, check the dashboard answers, and submit `entrypoint` as job `job_id`."""
    dashboard.check_reachable(address, token)
    with tempfile.TemporaryDirectory(prefix="quantray-job-") as staging:
        working_dir = stage_working_dir(Path(staging), spaces)
        size = directory_size(working_dir)
        client = job_client(address, token)
        submitted = client.submit_job(
            entrypoint=entrypoint,
            submission_id=job_id,
            runtime_env=runtime_env(working_dir, extra_env),
            metadata={"submitted_by": "quantray", **(metadata or {})},
        )
    return Submitted(job_id=submitted, address=address, upload_bytes=size)


def validate_space(space: Path) -> SearchSpace:
    """Fail here, before contacting the cluster, when the space file is missing or malformed."""
    if not space.is_file():
        raise BadInput(f"{space}: no such search-space file")
    return load_space(space)


def submit_tune(address: str, token: str | None, space: Path, options: TuneOptions, *, now: float | None = None) -> Submitted:
    """Submit `quantray tune SPACE ...` as a Ray job; the space travels with the project copy."""
    loaded = validate_space(space)
    options = with_experiment(loaded, options, now)
    entrypoint = cli_entrypoint(tune_arguments(space_in_job(space), options))
    job_id = submission_id(space, now)
    return submit_entrypoint(address, token, entrypoint=entrypoint, job_id=job_id, spaces=(space,),
                             metadata=job_metadata(space, loaded, options, job_id))


def with_experiment(loaded: SearchSpace, options: TuneOptions, now: float | None = None) -> TuneOptions:
    """A new search's experiment is named here, as `quantray tune` would name it, so the job's
    metadata names the experiment its trials' actors show on the dashboard (`trial <id> (<experiment>)`).
    A resumed search keeps choosing its latest experiment on the cluster."""
    if options.experiment or options.resume:
        return options
    return dataclasses.replace(options, experiment=timestamped(loaded.name, now))


def job_metadata(space: Path, loaded: SearchSpace, options: TuneOptions, job_id: str) -> dict[str, str]:
    """What the dashboard's job page shows: the experiment, the space (`loaded` is its file
    `space`), the data and the budget."""
    return {
        "experiment": options.experiment or f"the latest {loaded.name}-* on the cluster (resumed)",
        "space": space.name,
        "data": options.data or loaded.data.source,
        "trials": str(options.trials or loaded.budget.trials),
        "concurrency": str(loaded.budget.concurrency),
        "epochs_per_trial": str(loaded.epochs),
        "submission_id": job_id,
    }


def list_jobs(address: str, token: str | None) -> list[dict[str, Any]]:
    dashboard.check_reachable(address, token)
    return dashboard.jobs(address, token)


def job_logs(address: str, token: str | None, job_id: str) -> str:
    dashboard.check_reachable(address, token)
    client = job_client(address, token)
    _require_job(client, job_id, address)
    return client.get_job_logs(job_id)


def follow_logs(address: str, token: str | None, job_id: str) -> Iterator[str]:
    """Yield log chunks as the job writes them, until it ends."""
    dashboard.check_reachable(address, token)
    client = job_client(address, token)
    _require_job(client, job_id, address)
    stream = client.tail_job_logs(job_id)
    loop = asyncio.new_event_loop()
    try:
        while True:
            try:
                yield loop.run_until_complete(stream.__anext__())
            except StopAsyncIteration:
                return
    finally:
        loop.run_until_complete(stream.aclose())
        loop.close()


def stop_job(address: str, token: str | None, job_id: str) -> bool:
    dashboard.check_reachable(address, token)
    client = job_client(address, token)
    _require_job(client, job_id, address)
    return bool(client.stop_job(job_id))


def job_status(address: str, token: str | None, job_id: str) -> str:
    client = job_client(address, token)
    return str(_require_job(client, job_id, address).status.value)


def _require_job(client: Any, job_id: str, address: str) -> Any:
    try:
        return client.get_job_info(job_id)
    except RuntimeError as exc:  # the SDK raises RuntimeError for a 404
        if "404" in str(exc) or "does not exist" in str(exc):
            raise BadInput(f"no job {job_id!r} on the Ray cluster at {address}") from exc
        raise

