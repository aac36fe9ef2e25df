"""Search throughput: one trial budget on the quickstart space, three ways, side by side.

1. `quantray tune` on a local Ray (Optuna TPE inside Tune, ASHA, `budget.concurrency` trials at once);
2. plain Optuna in this process: TPE, the same training function the trials run (`loop.fit`),
   `n_jobs` = cores (threads), no pruning;
3. the same with Optuna's own pruner (MedianPruner, the validation Sharpe reported every epoch).

Every run gets the same budget, data, space and seed. Printed per run: wall time, trial-epochs
per second (epochs actually trained, pruned trials' included), CPU utilization (CPU seconds of
this process and all its descendants, Ray's workers included, over wall time x cores) and the
best validation Sharpe reached (the chosen epoch's, as quantray scores a trial).

    python benchmarks/search_throughput.py [--trials 16] [--days 4000] [--space search_spaces/quickstart.yaml]
    python benchmarks/search_throughput.py --trials 4 --days 1500      # smoke check, a few minutes
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import psutil

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Figures:
    name: str
    wall_s: float
    trial_epochs: int
    cpu_s: float
    best_val_sharpe: float

    def row(self, cores: int) -> str:
        return (f"{self.name:<22} {self.wall_s:8.1f} s  {self.trial_epochs:5d} trial-epochs  "
                f"{self.trial_epochs / self.wall_s:6.3f} trial-epochs/s  "
                f"CPU {100 * self.cpu_s / (self.wall_s * cores):5.1f}%  best val Sharpe {self.best_val_sharpe:6.3f}")


class TreeCpu:
    """CPU seconds of this process and every descendant, sampled while the run lasts: Ray's
    workers are the raylet's children, not ours to wait for, so getrusage would miss them."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.seen: dict[int, float] = {}
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        me = psutil.Process()
        while not self.stopping.is_set():
            for process in [me] + me.children(recursive=True):
                try:
                    times = process.cpu_times()
                    self.seen[process.pid] = times.user + times.system
                except psutil.Error:  # gone between listing and reading: its last sample stands
                    pass
            self.stopping.wait(self.interval)

    def __enter__(self) -> "TreeCpu":
        times = psutil.Process().cpu_times()
        self.start = times.user + times.system
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stopping.set()
        self.thread.join()
        self.stopping.clear()
        self._sample_once()

    def _sample_once(self) -> None:
        times = psutil.Process().cpu_times()
        self.seen[os.getpid()] = times.user + times.system

    @property
    def seconds(self) -> float:
        return sum(self.seen.values()) - self.start


def run_quantray(space: Path, trials: int, source: str, work: Path, gpus_per_trial: float | None) -> Figures:
    from quantray.recipes.options import TuneOptions
    from quantray.recipes.tune import run_tune
    from quantray.tune.results import load_trials

    options = TuneOptions(data=source, trials=trials, experiment="throughput", storage=work / "tune",
                          gpus_per_trial=gpus_per_trial, tracking_uri=f"sqlite:///{work / 'mlflow.db'}")
    started = time.perf_counter()
    with TreeCpu() as cpu:
        summary = run_tune(space, options)
    wall = time.perf_counter() - started
    records = load_trials(summary.experiment, work / "tune").records
    epochs = sum(len(record.history) for record in records)
    print(f"quantray: {trials / wall * 3600:.1f} trials/hour", flush=True)
    return Figures("quantray tune (Ray)", wall, epochs, cpu.seconds, summary.best_val_sharpe)


def optuna_objective(space: Any, data: Any, source: str, counter: list[int], lock: threading.Lock,
                     prune: bool) -> Callable[[Any], float]:
    """The trial function quantray's trials run (`loop.fit` on the resolved config), for Optuna."""
    import optuna

    from quantray.train.loop import InProcessSession, fit

    def objective(trial: optuna.Trial) -> float:
        config = space.resolve(space.suggest(trial), data_source=source)
        best = -math.inf

        def report(metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None:
            nonlocal best
            with lock:
                counter[0] += 1
            best = max(best, metrics["best_val_sharpe"])
            trial.set_user_attr("best_val_sharpe", best)  # kept when the pruner stops the trial
            if prune:
                trial.report(metrics["val_sharpe"], int(metrics["epoch"]))
                if trial.should_prune():
                    raise optuna.TrialPruned()

        fit(config, data, InProcessSession(data, config, report=report))
        return best

    return objective


def run_optuna(space_path: Path, trials: int, source: str, cores: int, prune: bool) -> Figures:
    import dataclasses

    import optuna
    import torch

    from quantray.data.pipeline import prepare
    from quantray.tune.space import load_space

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(space_path)
    data = prepare(dataclasses.replace(space.data, source=source))  # one data section per search
    torch.set_num_threads(1)  # n_jobs threads share the cores, as Ray's one-CPU trials do
    pruner = optuna.pruners.MedianPruner(n_warmup_steps=space.asha.grace_period) if prune else optuna.pruners.NopPruner()
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=space.seed),
                                pruner=pruner)
    counter, lock = [0], threading.Lock()
    started = time.perf_counter()
    with TreeCpu() as cpu:
        study.optimize(optuna_objective(space, data, source, counter, lock, prune), n_trials=trials, n_jobs=cores)
    wall = time.perf_counter() - started
    best = max((t.user_attrs.get("best_val_sharpe", -math.inf) for t in study.trials), default=math.nan)
    return Figures("optuna + MedianPruner" if prune else "optuna (n_jobs=cores)", wall, counter[0], cpu.seconds, best)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", type=Path, default=ROOT / "search_spaces" / "quickstart.yaml")
    parser.add_argument("--trials", type=int, default=16, help="trial budget of every run (default 16)")
    parser.add_argument("--days", type=int, default=4000, help="days of the synthetic market (default 4000, the space's)")
    parser.add_argument("--gpus-per-trial", type=float, default=None,
                        help="quantray run: GPUs per trial (0.25 = four trials per GPU; default: the space's)")
    parser.add_argument("--runs", default="quantray,optuna,optuna-pruned", help="which runs, comma-separated")
    args = parser.parse_args()

    cores = os.cpu_count() or 1
    source = f"synthetic:days={args.days},signal=2"
    runs = [r.strip() for r in args.runs.split(",") if r.strip()]
    print(f"{args.space.name}: {args.trials} trials on {source}, {cores} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start", flush=True)
    results = []
    with tempfile.TemporaryDirectory(prefix="quantray-throughput-") as work:
        for run in runs:
            if run == "quantray":
                results.append(run_quantray(args.space, args.trials, source, Path(work), args.gpus_per_trial))
            elif run in ("optuna", "optuna-pruned"):
                results.append(run_optuna(args.space, args.trials, source, cores, prune=run == "optuna-pruned"))
            else:
                parser.error(f"unknown run {run!r}")
            print(results[-1].row(cores), flush=True)
    print("\nside by side:")
    for figures in results:
        print(figures.row(cores))


if __name__ == "__main__":
    main()
