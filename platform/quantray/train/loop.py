"""The training loop: one function, whoever runs it.

`fit` trains one model from a resolved `TrainConfig`. It gets its training windows and each
batch's dates, its model wrapping (DDP or none), its resume point and its reporting from a
`Session`, so the same code
runs in a plain process (`InProcessSession`), inside a Tune trial, or on every worker of a Ray Train
`TorchTrainer` (see quantray.train.launch). It never imports Ray.
`InProcessSession` + `directory_reporter` run it without Ray (tests, GPU benchmarks).

Batches are gathered on the session's device from device-resident features (`DeviceWindows`):
a GPU run copies the feature array once, not every batch. `optim.precision: bf16` runs the
forward passes under bfloat16 autocast on CUDA (a CPU run stays float32); `optim.compile`
trains through `torch.compile(model)` (evaluation runs the eager module, same weights).

With a `pretrain` section (epochs > 0) a fresh run first pretrains the encoder with the NT-Xent
contrastive loss on the same training batches (quantray.train.contrastive), then fine-tunes the
whole model on the objective; the pretraining epochs and their last loss are reported with every
epoch's metrics (`pretrain_epochs`, `pretrain_loss`).

Every epoch it evaluates the whole validation block and reports the validation net Sharpe
(after turnover costs, annualized), the objective's loss, IC and hit rate, with a checkpoint
holding the resume state and the chosen epoch's member checkpoint (`best/`). The epoch is chosen
on the early-stopping block (`data.splits.stop_fraction`; its net Sharpe is reported as
`stop_sharpe`), so validation sees one model per run: `best_val_sharpe` is the validation Sharpe
of the chosen epoch, the run's score. Without a stop block the epoch is chosen on validation.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Protocol

import numpy as np

from quantray import models
from quantray.config import TrainConfig
from quantray.data.panel import bars_per_year
from quantray.data.pipeline import Prepared
from quantray.data.windows import Windows
from quantray.errors import BadInput
from quantray.evaluate.metrics import PERIODS_PER_YEAR, net_returns, performance
from quantray.workspace import atomic_dir
from quantray.train.checkpoint import build_model, save_checkpoint, unwrap
from quantray.train.inference import run_batch

if TYPE_CHECKING:
    import torch

    from quantray.train.batches import DeviceWindows


BEST_DIR = "best"  # inside every reported checkpoint: the best epoch's member checkpoint
STATE_FILE = "state.pt"  # inside every reported checkpoint: weights + optimizer + epoch, to resume


class Session(Protocol):
    """What the loop needs from whoever runs it."""

    device: str
    train_windows: Windows  # what every training batch is gathered from, on `device`

    def train_dates(self, epoch: int) -> Iterable[np.ndarray]: ...  # the date indices of each batch

    def prepare_model(self, model: "torch.nn.Module") -> "torch.nn.Module": ...

    def latest_checkpoint(self) -> Path | None: ...

    def report(self, metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None: ...


@dataclass
class FitSummary:
    best_val_sharpe: float  # validation net Sharpe of the chosen epoch
    best_epoch: int  # chosen on the stop block (on validation without one)
    epochs_run: int  # fewer than optim.epochs when early stopping (`optim.patience`) ended the run
    pretrain_epochs: int = 0  # contrastive pretraining epochs run before them


def fit(config: TrainConfig, data: Prepared, session: Session) -> FitSummary:
    """Train `config` on `data`'s training windows; report after every epoch through `session`."""
    import torch

    from quantray.train.batches import DeviceWindows  # lazy: imports torch
    from quantray.train.losses import objective  # lazy: the loss imports torch

    torch.manual_seed(config.seed)  # identical initial weights on every DDP rank
    fold = config.data.fold
    pipeline = data.pipeline(fold)  # saved with every checkpoint: the only way to its inputs later
    model = build_model(config, pipeline).to(session.device)
    model = session.prepare_model(model)
    step_model = torch.compile(model) if config.optim.compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.optim.lr, weight_decay=config.optim.weight_decay)
    train_windows = DeviceWindows(session.train_windows, session.device)
    val_windows = DeviceWindows(data.windows("val", fold), session.device)
    stop_windows = DeviceWindows(data.windows("stop", fold), session.device) if len(data.splits[fold].stop) else None
    periods_per_year = bars_per_year(data.panel.dates, config.data.bars_per_year)  # annualizes val_sharpe

    with tempfile.TemporaryDirectory(prefix="quantray-best-") as scratch:
        best_dir = Path(scratch) / BEST_DIR
        start_epoch, best = 0, Best()
        resume = session.latest_checkpoint()
        if resume is not None:
            start_epoch, best = _restore(resume, model, optimizer, best_dir)
        pretrain_losses: list[float] = []
        if start_epoch == 0:  # a resumed run restored weights that were already pretrained
            pretrain_losses = pretrain(model, config, session, train_windows)
        pretrain_metrics = {"pretrain_epochs": len(pretrain_losses),
                            "pretrain_loss": pretrain_losses[-1] if pretrain_losses else math.nan}

        epochs_run = 0
        for epoch in range(start_epoch, config.optim.epochs):
            if stale(best.epoch, epoch, config.optim.patience):
                break
            epochs_run += 1
            model.train()
            train_losses = []
            for dates in session.train_dates(epoch):
                tensors = train_windows.gather(dates)
                with autocast(config, session.device):
                    out = run_batch(step_model, tensors)
                    loss, _ = objective(out, tensors, config.loss, config.data.cost_bps)
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if config.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), config.optim.grad_clip)
                optimizer.step()
                train_losses.append(loss.item())

            evaluation = evaluate(unwrap(model), val_windows, config, session.device, periods_per_year)
            metrics = {"epoch": epoch + 1, "train_loss": float(np.mean(train_losses)) if train_losses else math.nan}
            metrics.update(evaluation.metrics)
            if stop_windows is not None:
                stopping = evaluate(unwrap(model), stop_windows, config, session.device, periods_per_year)
                metrics["stop_sharpe"] = stopping.metrics["val_sharpe"]
            metrics.update(pretrain_metrics)
            score = metrics["stop_sharpe"] if stop_windows is not None else metrics["val_sharpe"]
            if score > best.score:
                best = Best(score, epoch + 1, metrics["val_sharpe"])
                save_checkpoint(best_dir, unwrap(model), config, pipeline, metrics,
                                evaluation.returns, evaluation.positions)
            metrics.update(best_val_sharpe=best.val_sharpe, best_epoch=best.epoch)
            state = {
                "model": unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best": dataclasses.astuple(best),
            }
            session.report(metrics, _checkpoint_writer(state, best_dir))

    return FitSummary(best_val_sharpe=best.val_sharpe, best_epoch=best.epoch,
                      epochs_run=epochs_run, pretrain_epochs=len(pretrain_losses))


def stale(chosen_epoch: int, epochs_done: int, patience: int) -> bool:
    """Early stopping: `patience` epochs have passed since the chosen epoch (never when 0).
    It reads only this run's own scores, so a seeded run stops at the same epoch wherever it runs."""
    return patience > 0 and epochs_done - chosen_epoch >= patience


@dataclass(frozen=True)
class Best:
    """The chosen epoch so far: its score on the block epochs are chosen on, and its validation Sharpe."""

    score: float = -math.inf
    epoch: int = 0
    val_sharpe: float = -math.inf


def pretrain(model: "torch.nn.Module", config: TrainConfig, session: Session,
             train_windows: "DeviceWindows") -> list[float]:
    """The pretraining phase: `config.pretrain.epochs` epochs of NT-Xent on the training batches,
    with its own optimizer over the model and a projection head that is then dropped. Returns
    each epoch's mean loss. Batches of pretraining epoch i are drawn as epoch optim.epochs + i, so
    they never repeat a fine-tuning epoch's order."""
    import torch

    from quantray.train.contrastive import contrastive_loss, projection_head  # lazy: imports torch

    settings = config.pretrain
    if settings.epochs == 0:
        return []
    if not models.has_encoder(config.model.family):  # a space refuses this first, naming its file
        raise BadInput(f"pretrain.epochs: the {config.model.family} family has no encoder to pretrain (its "
                       "embedding is its input); set it to 0")
    projection = projection_head(unwrap(model).embedding_dim, settings.projection).to(session.device)
    parameters = list(model.parameters()) + list(projection.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=settings.lr, weight_decay=config.optim.weight_decay)
    losses = []
    model.train()
    for epoch in range(settings.epochs):
        epoch_losses = []
        for dates in session.train_dates(config.optim.epochs + epoch):
            with autocast(config, session.device):
                loss = contrastive_loss(model, projection, train_windows.gather(dates), settings)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretraining loss became {loss.item()} at epoch {epoch + 1}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.optim.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(parameters, config.optim.grad_clip)
            optimizer.step()
            epoch_losses.append(loss.item())
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else math.nan)
    return losses


@dataclass
class Evaluation:
    metrics: dict[str, float]
    returns: np.ndarray  # net daily returns [T]
    positions: np.ndarray  # [T, A]


def evaluate(model: "torch.nn.Module", windows: "Windows | DeviceWindows", config: TrainConfig,
             device: str = "cpu", periods_per_year: float = PERIODS_PER_YEAR) -> Evaluation:
    """Validation metrics of `model` on a block: net Sharpe after costs, IC, hit rate, loss.

    One forward pass over the whole block gives both the positions and the objective's loss
    (under the run's autocast, like training). `windows` already on the device are reused."""
    import torch

    from quantray.train.batches import DeviceWindows  # lazy: imports torch
    from quantray.train.losses import objective  # lazy: the loss imports torch

    on_device = windows if isinstance(windows, DeviceWindows) else DeviceWindows(windows, device)
    model.eval()
    with torch.no_grad(), autocast(config, device):
        tensors = on_device.batch(np.arange(len(on_device)))
        out = run_batch(model, tensors)
        loss, _ = objective(out, tensors, config.loss, config.data.cost_bps)
    positions = out.position.float().cpu().numpy()
    next_return, mask = tensors["next_return"].cpu().numpy(), tensors["mask"].cpu().numpy()
    returns = net_returns(positions, next_return, mask, config.data.cost_bps)
    perf = performance(returns, positions, next_return, periods_per_year)
    metrics = {
        "val_sharpe": _finite(perf["sharpe"]),
        "val_ic": _finite(perf["ic"]),
        "val_hit_rate": _finite(perf["hit_rate"]),
        "val_turnover": _finite(perf["turnover"]),
        "val_loss": float(loss.item()),
    }
    return Evaluation(metrics=metrics, returns=returns, positions=positions)


def autocast(config: TrainConfig, device: str) -> "torch.autocast":
    """bfloat16 autocast when the run asks for it (`optim.precision: bf16`) and runs on CUDA; a
    CPU run stays float32 (bf16 on CPUs without bf16 units is slower, and its numerics differ)."""
    import torch

    enabled = config.optim.precision == "bf16" and torch.device(device).type == "cuda"
    return torch.autocast("cuda" if enabled else "cpu", dtype=torch.bfloat16, enabled=enabled)


def consecutive_batches(n_samples: int, batch_dates: int, rng: np.random.Generator) -> Iterator[np.ndarray]:
    """Row indices in blocks of consecutive dates (turnover is defined inside a block), blocks shuffled."""
    starts = np.arange(0, n_samples, batch_dates)
    for start in rng.permutation(starts):
        rows = np.arange(start, min(start + batch_dates, n_samples))
        if len(rows) >= 2:
            yield rows


ReportFn = Callable[[dict[str, float], Callable[[Path], None]], None]


class InProcessSession:
    """The loop's session when this process trains alone (a plain run or a single-worker Tune
    trial): batches are blocks of the training windows' dates; reporting is pluggable."""

    def __init__(self, data: Prepared, config: TrainConfig, *, report: ReportFn,
                 latest_checkpoint: Callable[[], Path | None] = lambda: None, device: str = "cpu") -> None:
        self.device = device
        self.train_windows = data.windows("train", config.data.fold)
        self._config = config
        self._report = report
        self._latest_checkpoint = latest_checkpoint

    def train_dates(self, epoch: int) -> Iterator[np.ndarray]:
        rng = np.random.default_rng((self._config.seed, epoch))
        dates = self.train_windows.dates_idx
        for rows in consecutive_batches(len(dates), self._config.optim.batch_dates, rng):
            yield dates[rows]

    def prepare_model(self, model: "torch.nn.Module") -> "torch.nn.Module":
        return model

    def latest_checkpoint(self) -> Path | None:
        return self._latest_checkpoint()

    def report(self, metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None:
        self._report(metrics, write_checkpoint)


def directory_reporter(checkpoint_dir: Path, on_report: Callable[[dict[str, float]], None] | None = None) -> ReportFn:
    """Keep the latest checkpoint in `checkpoint_dir` (replaced atomically each epoch)."""

    def report(metrics: dict[str, float], write_checkpoint: Callable[[Path], None]) -> None:
        with atomic_dir(checkpoint_dir) as tmp:
            write_checkpoint(tmp)
        if on_report is not None:
            on_report(metrics)

    return report


def latest_in(checkpoint_dir: Path) -> Callable[[], Path | None]:
    return lambda: checkpoint_dir if (checkpoint_dir / STATE_FILE).exists() else None


def _checkpoint_writer(state: dict[str, Any], best_dir: Path) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        import torch

        directory.mkdir(parents=True, exist_ok=True)
        torch.save(state, directory / STATE_FILE)
        if best_dir.exists():
            shutil.copytree(best_dir, directory / BEST_DIR, dirs_exist_ok=True)

    return write


def _restore(checkpoint: Path, model: "torch.nn.Module", optimizer: "torch.optim.Optimizer",
             best_dir: Path) -> tuple[int, Best]:
    import torch

    state = torch.load(checkpoint / STATE_FILE, map_location="cpu", weights_only=True)
    unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if (checkpoint / BEST_DIR).exists():
        shutil.copytree(checkpoint / BEST_DIR, best_dir, dirs_exist_ok=True)
    score, epoch, val_sharpe = state["best"]
    return int(state["epoch"]) + 1, Best(float(score), int(epoch), float(val_sharpe))


def _finite(value: float) -> float:
    return float(value) if np.isfinite(value) else 0.0
