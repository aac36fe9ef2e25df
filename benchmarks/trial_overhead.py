"""Seconds of overhead per trial: Tune launching a TorchTrainer per trial vs quantray's launcher.

Both run the same near-empty trial (a tiny model, one short epoch on a small synthetic panel)
through Ray Tune on a local Ray, one trial at a time:
  plain     the Train V2 pattern: a Tune function trainable that builds a TorchTrainer (1 worker)
  quantray  quantray's launcher: a single-worker trial runs the loop inside the Tune trial

    python benchmarks/trial_overhead.py [--trials 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time

from quantray.config import DataConfig, FeatureConfig, ModelConfig, OptimConfig, SplitConfig, TrainConfig

CONFIG = TrainConfig(
    data=DataConfig(source="synthetic:seed=0,assets=4,days=400", lookback=16, horizon=3,
                    features=FeatureConfig(names=("log_return", "range"), norm_window=32),
                    splits=SplitConfig(val_fraction=0.2, test_fraction=0.2, embargo=2)),
    model=ModelConfig(family="cnn_lstm", arch={"d_model": 8, "conv_layers": 1}),
    optim=OptimConfig(epochs=1, batch_dates=64),
)


def plain_trial(params: dict, storage: str) -> None:
    import ray.tune

    from quantray.train.launch import run_torch_trainer

    config = dataclasses.replace(CONFIG, seed=params["seed"], workers=1)
    run_torch_trainer(config, name=f"plain-{ray.tune.get_context().get_trial_id()}", storage=storage, in_tune=True)


def quantray_trial(params: dict, storage: str) -> None:
    from quantray.data.pipeline import prepare
    from quantray.tune.trial import _tune_latest_checkpoint, _tune_report
    from quantray.train.loop import InProcessSession, fit

    config = dataclasses.replace(CONFIG, seed=params["seed"])
    data = prepare(config.data)
    fit(config, data, InProcessSession(data, config, report=_tune_report, latest_checkpoint=_tune_latest_checkpoint))


def seconds_of_work(trials: int) -> float:
    """The same trial with no Ray at all: what neither pattern can avoid."""
    from quantray.data.pipeline import prepare
    from quantray.train.loop import InProcessSession, fit

    start = time.perf_counter()
    for seed in range(trials):
        config = dataclasses.replace(CONFIG, seed=seed)
        data = prepare(config.data)
        fit(config, data, InProcessSession(data, config, report=lambda metrics, write: None))
    return (time.perf_counter() - start) / trials


def seconds_per_trial(trainable, resources: dict, trials: int, storage: str, name: str, *,
                      reuse_actors: bool) -> float:
    from ray import tune

    tuner = tune.Tuner(
        tune.with_resources(tune.with_parameters(trainable, storage=storage), resources),
        param_space={"seed": tune.grid_search(list(range(trials)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=1, reuse_actors=reuse_actors),
        run_config=tune.RunConfig(name=name, storage_path=storage, verbose=0),
    )
    start = time.perf_counter()
    results = tuner.fit()
    elapsed = time.perf_counter() - start
    errors = [r.error for r in results if r.error]
    if errors:
        raise RuntimeError(f"{name}: {errors[0]}")
    return elapsed / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4)
    args = parser.parse_args()

    import ray

    work = seconds_of_work(args.trials)
    ray.init(address="local", num_cpus=2, include_dashboard=True, log_to_driver=False, logging_level="error")
    with tempfile.TemporaryDirectory() as storage:
        # as quantray.tune.run configures it: trial actors are reused
        quantray = seconds_per_trial(quantray_trial, {"CPU": 1}, args.trials, storage, "quantray", reuse_actors=True)
        # the trial only drives the TorchTrainer: like quantray, it reserves memory, not a CPU
        plain = seconds_per_trial(plain_trial, {"CPU": 0, "memory": 64 * 2**20}, args.trials, storage, "plain",
                                  reuse_actors=False)
    ray.shutdown()
    print(f"trials per pattern          {args.trials}")
    print(f"work (same trial, no Ray)    {work:6.2f} s/trial")
    print(f"plain (Tune -> TorchTrainer) {plain:6.2f} s/trial   overhead {plain - work:6.2f} s")
    print(f"quantray launcher            {quantray:6.2f} s/trial   overhead {quantray - work:6.2f} s")
    print(f"overhead ratio plain / quantray {(plain - work) / max(quantray - work, 1e-9):6.1f}x")


if __name__ == "__main__":
    main()
