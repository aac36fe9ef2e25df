"""On a cluster, each running trial is found on the Ray dashboard by its trial id and experiment."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import ray
from ray.util.state import list_actors

from quantray.jobs.local import free_port
from quantray.recipes.console import Console
from quantray.recipes.options import TuneOptions
from quantray.recipes.tune import run_tune
from quantray.tune.results import load_trials

pytestmark = pytest.mark.slow

# two trials one after the other: a reused actor would show the second under the first's name
SPACE = """
name: dash
seed: 1
data:
  source: "synthetic:seed=2,assets=3,days=300"
  lookback: 16
  horizon: 3
  features: {names: [log_return, range], norm_window: 32}
  splits: {val_fraction: 0.2, test_fraction: 0.2, embargo: 3}
model: {family: transformer, arch: {d_model: {choice: [8, 16]}, n_heads: 2, cross_layers: 1}}
optim: {lr: 0.003, epochs: 1, batch_dates: 32}
budget: {trials: 2, concurrency: 1}
asha: {enabled: false}
"""


@pytest.fixture
def cluster() -> Iterator[str]:
    """A Ray with its dashboard (the state API reads through it); yields the address a search joins."""
    ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_port=free_port(), log_to_driver=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


class ActorWatcher(threading.Thread):
    """Lists the live actors through Ray's state API, as the dashboard's Actors page does, until stopped."""

    def __init__(self, address: str) -> None:
        super().__init__(daemon=True)
        self.address = address  # this test's Ray: others may run on the machine
        self.seen: set[tuple[str, str]] = set()  # (class name, repr)
        self.error: Exception | None = None
        self.done = threading.Event()

    def run(self) -> None:
        try:
            while not self.done.is_set():
                for actor in list_actors(address=self.address, filters=[("state", "=", "ALIVE")], detail=True,
                                         raise_on_missing_output=False):
                    self.seen.add((actor.class_name, actor.repr_name))
                time.sleep(0.2)
        except Exception as exc:  # reported by the test, not lost with the thread
            self.error = exc


def test_each_running_trial_actor_names_its_trial_and_experiment(cluster: str, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    space = tmp_path / "dash.yaml"
    space.write_text(SPACE)
    options = TuneOptions(address=cluster, experiment="dash-e1", storage=tmp_path / "tune",
                          tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    watcher = ActorWatcher(cluster)
    watcher.start()
    try:
        summary = run_tune(space, options, Console(io.StringIO()))
    finally:
        watcher.done.set()
        watcher.join(timeout=30)
    assert watcher.error is None, watcher.error
    assert (summary.n_trials, summary.n_failed) == (2, 0)

    trial_ids = [r.trial_id for r in load_trials("dash-e1", tmp_path / "tune").records]
    reprs = {repr_name for _, repr_name in watcher.seen}
    for trial_id in trial_ids:
        assert f"trial {trial_id} (dash-e1)" in reprs, (trial_id, watcher.seen)
    assert {name for name, repr_name in watcher.seen if "dash-e1" in repr_name} == {"QuantrayTrial"}
