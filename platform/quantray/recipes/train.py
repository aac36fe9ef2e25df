"""The train recipe: one fixed configuration -> the training loop in this process -> a member checkpoint.

A config YAML has the sections of `TrainConfig` (data, model, loss, optim, seed) and an optional
`name`; every value is fixed (a distribution is a search's business: `quantray tune`). The run
goes through the same `loop.fit` as a trial, with an `InProcessSession` and a `directory_reporter`
(no Ray), and leaves under OUT:

    checkpoint/          the latest epoch's resume state (state.pt) and
    checkpoint/best/     the chosen epoch's member checkpoint (chosen on the early-stopping block),
                         with its fitted data pipeline
    history.json         the validation metrics of every epoch

`quantray backtest OUT` (or OUT/checkpoint/best) evaluates the member on the test block.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from quantray.config import TrainConfig, read_sections
from quantray.data.pipeline import prepare
from quantray.errors import BadInput
from quantray.recipes.options import TrainOptions
from quantray.recipes.tune import check_features
from quantray.train.checkpoint import build_model
from quantray.train.loop import BEST_DIR, FitSummary, InProcessSession, directory_reporter, fit
from quantray.tune.space import DISTRIBUTION_KINDS, load_space
from quantray.workspace import train_dir, write_json

CONFIG_SECTIONS: tuple[str, ...] = ("name", "seed", "data", "model", "loss", "optim", "pretrain")
SEARCH_SECTIONS: tuple[str, ...] = ("budget", "asha", "resources", "walkforward")
CHECKPOINT_DIR = "checkpoint"
HISTORY_FILE = "history.json"


@dataclass
class TrainResult:
    name: str
    out: Path  # the run's folder
    checkpoint: Path  # the chosen epoch's member checkpoint (out/checkpoint/best)
    summary: FitSummary
    metrics: dict[str, float]  # the chosen epoch's validation metrics
    history: list[dict[str, float]]  # every epoch's metrics
    seconds: float


def load_train_config(path: Path, options: TrainOptions = TrainOptions()) -> tuple[str, TrainConfig]:
    """(name, TrainConfig) of a fixed config YAML with the options' overrides; BadInput names the key."""
    path = Path(path)
    raw = read_sections(path, "config", CONFIG_SECTIONS + SEARCH_SECTIONS)
    for key in raw:
        if key in SEARCH_SECTIONS:
            raise BadInput(f"{path}: key '{key}': a search section (quantray tune); quantray train takes "
                           f"{', '.join(CONFIG_SECTIONS)}")
    _reject_distributions(raw, path)
    space = load_space(path)  # the search space's checks: keys, types, the model builds, training values
    config = space.resolve({}, data_source=options.data)
    if options.epochs is not None:
        config = dataclasses.replace(config, optim=dataclasses.replace(config.optim, epochs=options.epochs))
    return space.name, config


def run_train(config_path: Path, options: TrainOptions = TrainOptions()) -> TrainResult:
    """Train the configuration in `config_path` once and keep its chosen epoch's member checkpoint."""
    name, config = load_train_config(config_path, options)
    started = time.time()
    prepared = prepare(config.data)
    check_features(load_space(config_path), prepared)
    try:  # the real shapes, before the first epoch: a bad value is the config's, not the loop's
        build_model(config, prepared.pipeline())
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{config_path}: key 'model.arch': {exc}") from None

    out = Path(options.out) if options.out else train_dir() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"
    history: list[dict[str, float]] = []

    def record(metrics: Mapping[str, Any]) -> None:
        history.append({key: float(value) for key, value in metrics.items()})
        write_json(out / HISTORY_FILE, history)
        print(f"epoch {int(metrics['epoch'])}/{config.optim.epochs}  train_loss {metrics['train_loss']:.4f}  "
              f"val_sharpe {metrics['val_sharpe']:.3f}  val_ic {metrics['val_ic']:.4f}  "
              f"val_loss {metrics['val_loss']:.4f}", flush=True)

    session = InProcessSession(prepared, config, device=_device(options.device),
                               report=directory_reporter(out / CHECKPOINT_DIR, record))
    summary = fit(config, prepared, session)
    best = next(m for m in history if int(m["epoch"]) == summary.best_epoch)
    return TrainResult(name=name, out=out, checkpoint=out / CHECKPOINT_DIR / BEST_DIR, summary=summary,
                       metrics=best, history=history, seconds=time.time() - started)


def member_checkpoint(path: Path) -> Path | None:
    """The member checkpoint at `path`: a member folder, a reported checkpoint (its `best/`) or a
    `quantray train` run folder; None when `path` is none of them."""
    path = Path(path)
    for candidate in (path, path / BEST_DIR, path / CHECKPOINT_DIR / BEST_DIR):
        if (candidate / "model.pt").is_file() and (candidate / "config.json").is_file():
            return candidate
    return None


def _reject_distributions(tree: Mapping[str, Any], path: Path, prefix: str = "") -> None:
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and any(kind in value for kind in DISTRIBUTION_KINDS):
            raise BadInput(f"{path}: key '{dotted}': a distribution; quantray train takes fixed values "
                           f"(search it with quantray tune)")
        if isinstance(value, Mapping):
            _reject_distributions(value, path, prefix=f"{dotted}.")


def _device(choice: str) -> str:
    import torch  # lazy: torch is heavy

    if choice == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch.device(choice)
    except RuntimeError:
        raise BadInput(f"--device: not a torch device: '{choice}'") from None
    if choice.startswith("cuda") and not torch.cuda.is_available():
        raise BadInput(f"--device: '{choice}' but this machine has no CUDA device")
    return choice
